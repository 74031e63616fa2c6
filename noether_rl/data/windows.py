"""Fixed-length windows of frames and actions over a recording, as a torch ``Dataset``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from noether_rl.data.recording import load_manifest, open_episode, verify_recording
from noether_rl.errors import UserError


@dataclass(frozen=True)
class EpisodeSplit:
    """Disjoint episode ids: ``train`` fits weights, ``val`` selects (hyper-parameters, variants,
    epochs), ``test`` is touched only for the final report."""

    train: list[int]
    val: list[int]
    test: list[int]

    def to_dict(self) -> dict[str, list[int]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def episode_split(n_episodes: int, train_episodes: int, val_episodes: int = 0) -> EpisodeSplit:
    """Episodes ``[0, train)`` train, ``[train, train+val)`` validation, the rest test (in recording order)."""
    if n_episodes <= 0 or not 0 < train_episodes <= n_episodes or val_episodes < 0 \
            or train_episodes + val_episodes > n_episodes:
        raise UserError(f"need 0 < train_episodes and train_episodes + val_episodes <= n_episodes, got "
                        f"{train_episodes} + {val_episodes} of {n_episodes}")
    ids = list(range(n_episodes))
    t, v = train_episodes, train_episodes + val_episodes
    return EpisodeSplit(train=ids[:t], val=ids[t:v], test=ids[v:])


def split_episodes(n_episodes: int, train_episodes: int) -> tuple[list[int], list[int]]:
    """First ``train_episodes`` episode ids for training, the rest held out (no validation split)."""
    s = episode_split(n_episodes, train_episodes, 0)
    return s.train, s.test


class WindowDataset(Dataset):
    """Windows of ``L = n_past + n_future`` consecutive frames that never cross an episode boundary.

    The episodes' frames are loaded into memory once as uint8 and converted per item. Item ``k`` is a dict:

    - ``frames``: float32 ``[L, C, H, W]`` in [0, 1]
    - ``actions``: float32 ``[L-1, A]``; ``actions[t]`` produces ``frames[t+1]``
    - ``episode``: int episode id, ``start``: int index of the window's first frame in the episode

    Windows start at ``0, stride, 2*stride, ...`` in every episode (in the order of ``episodes``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        n_past: int,
        n_future: int,
        episodes: Sequence[int] | None = None,
        stride: int = 1,
        verify: bool = True,
    ) -> None:
        if n_past < 1 or n_future < 0 or stride < 1:
            raise UserError(
                f"need n_past >= 1, n_future >= 0, stride >= 1; got {n_past}, {n_future}, {stride}"
            )
        self.root = Path(root)
        manifest = verify_recording(self.root) if verify else load_manifest(self.root)
        self.length = n_past + n_future
        self.episodes = list(range(manifest["episodes"])) if episodes is None else [int(e) for e in episodes]
        if manifest["steps"] + 1 < self.length:
            raise UserError(
                f"windows of {self.length} frames do not fit episodes of {manifest['steps'] + 1} frames"
            )
        self._frames: list[np.ndarray] = []  # per episode uint8 [T+1, H, W, 3]
        self._actions: list[np.ndarray] = []  # per episode float32 [T, A]
        for e in self.episodes:
            arrays = open_episode(self.root, e, check_hash=False, manifest=manifest)
            self._frames.append(arrays["frames"])
            self._actions.append(arrays["actions"])
        starts = range(0, manifest["steps"] + 2 - self.length, stride)
        self._index = np.array([(j, s) for j in range(len(self.episodes)) for s in starts], dtype=np.int64)
        self._index = self._index.reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._index)

    def _window(self, k: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        j, s = (int(v) for v in self._index[k])
        return self._frames[j][s : s + self.length], self._actions[j][s : s + self.length - 1], j, s

    def __getitem__(self, k: int) -> dict[str, torch.Tensor | int]:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        frames, actions, j, s = self._window(k % len(self))
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return {
            "frames": x,
            "actions": torch.from_numpy(actions.copy()),
            "episode": self.episodes[j],
            "start": s,
        }

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows at once: frames uint8 ``[N, L, H, W, C]``, actions float32 ``[N, L-1, A]``."""
        if len(self) == 0:
            raise UserError("no windows in this dataset")
        frames = np.stack([self._window(k)[0] for k in range(len(self))])
        actions = np.stack([self._window(k)[1] for k in range(len(self))])
        return torch.from_numpy(frames), torch.from_numpy(actions)
