"""Fixed-length windows of frames and actions over a recording, as a torch ``Dataset``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

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


class EpisodeWindows:
    """All windows of ``L = n_past + n_future`` consecutive steps of some episodes of a recording, the one
    window dataset of the package. Windows never cross an episode; they start at ``0, stride, ...`` in every
    episode (in the order of ``episodes``). The episodes are held on ``device`` as uint8 and gathered by
    index, so a batch costs no Python loop per example.

    - ``batch(idx [B])`` -> frames float ``[B, L, C, H, W]`` in [0, 1], actions float32 ``[B, L-1, A]``
      (``actions[:, t]`` produces ``frames[:, t+1]``);
    - ``states(idx)`` -> true env states ``[B, L, S]`` (when the recording has them);
    - ``episode_of(idx)`` -> recording episode id of each window ``[B]`` (for per-episode statistics);
    - ``ds[k]`` -> one window as a dict (``frames``, ``actions``, ``episode``, ``start``), for a DataLoader.
    """

    def __init__(self, root: str | os.PathLike[str], n_past: int, n_future: int, episodes: Sequence[int] | None = None,
                 stride: int = 1, device: torch.device | str = "cpu", verify: bool = False) -> None:
        if n_past < 1 or n_future < 0 or stride < 1:
            raise UserError(f"need n_past >= 1, n_future >= 0, stride >= 1; got {n_past}, {n_future}, {stride}")
        self.root = Path(root)
        manifest = verify_recording(self.root) if verify else load_manifest(self.root)
        self.L = n_past + n_future
        self.episodes = list(range(len(manifest["shards"]))) if episodes is None else [int(e) for e in episodes]
        if not self.episodes:
            raise UserError(f"no episodes selected from {self.root}")
        eps = [open_episode(self.root, e, check_hash=False, manifest=manifest) for e in self.episodes]
        T1 = min(e["frames"].shape[0] for e in eps)
        if T1 < self.L:
            raise UserError(f"windows of {self.L} frames do not fit episodes of {T1} frames in {self.root}")
        self.frames = torch.stack([torch.from_numpy(e["frames"][:T1]) for e in eps]).to(device)  # [E, T+1, H, W, C]
        self.actions = torch.stack([torch.from_numpy(e["actions"][: T1 - 1]) for e in eps]).float().to(device)
        self._states = (torch.stack([torch.from_numpy(e["states"][:T1]) for e in eps]).float().to(device)
                        if all("states" in e for e in eps) else None)  # [E, T+1, S]
        self._episode_ids = torch.tensor(self.episodes, device=device)
        starts = torch.arange(0, T1 - self.L + 1, stride)
        ep_idx = torch.arange(len(eps)).repeat_interleave(len(starts))
        self.index = torch.stack([ep_idx, starts.repeat(len(eps))], 1).to(device)  # [N, 2] (position, start)

    def __len__(self) -> int:
        return self.index.shape[0]

    def _time(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        ep, start = self.index[idx, 0], self.index[idx, 1]
        return ep[:, None], start[:, None] + torch.arange(self.L, device=idx.device)  # [B, 1], [B, L]

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """idx [B] -> frames float [B, L, C, H, W] in [0, 1], actions [B, L-1, A]."""
        ep, t = self._time(idx)
        frames = self.frames[ep, t]  # [B, L, H, W, C] uint8
        return frames.permute(0, 1, 4, 2, 3).float().div_(255.0), self.actions[ep, t[:, :-1]]

    def states(self, idx: Tensor) -> Tensor:
        """idx [B] -> true states [B, L, S] (e.g. the pendulum's (theta, theta_dot))."""
        if self._states is None:
            raise UserError(f"the recording {self.root} has no true states")
        ep, t = self._time(idx)
        return self._states[ep, t]

    def episode_of(self, idx: Tensor) -> Tensor:
        """idx [B] -> recording episode id of each window [B]."""
        return self._episode_ids[self.index[idx, 0]]

    def __getitem__(self, k: int) -> dict[str, Tensor | int]:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        idx = torch.tensor([k % len(self)], device=self.index.device)
        frames, actions = self.batch(idx)
        return {"frames": frames[0], "actions": actions[0], "episode": int(self.episode_of(idx)[0]),
                "start": int(self.index[idx[0], 1])}
