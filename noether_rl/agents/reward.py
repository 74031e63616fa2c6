"""Reward models for imagined transitions: a small CNN learned from recorded rewards, or a user function.

A reward model maps a batch of transitions to rewards::

    reward(prev_frames [M, C, H, W], actions [M, A], next_frames [M, C, H, W]) -> [M]

(frames float in [0, 1]; ``actions[m]`` takes ``prev_frames[m]`` to ``next_frames[m]``.)

Learned reward: :class:`RewardCNN`, a small CNN on the frame *pair* plus the action. Why a CNN on the
(predicted) frames rather than a head on the predictor's latent:

- it only needs observations, so one reward model serves every predictor behind the ``Predictor``
  protocol (SVG, Noether-tailored SVG, ...) and the tailored/untailored comparison uses the very same
  reward model;
- it is trained on real recorded frames, independently of the video model (no predictor retraining),
  and what tailoring changes in the predicted frames changes the predicted reward consistently;
- the pair (x_t, x_{t+1}) carries the angular velocity that Pendulum's reward
  ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`` needs; a single frame does not.

Its cost is one small CNN pass per imagined frame (batched over all candidates and steps at once).
A user function ``fn(action [M, A], next_obs [M, C, H, W]) -> [M]`` is wrapped by :class:`FunctionReward`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from noether_rl.data import load_manifest, open_episode
from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open


class RewardModel(Protocol):
    def __call__(self, prev_frames: Tensor, actions: Tensor, next_frames: Tensor) -> Tensor:
        """[M, C, H, W], [M, A], [M, C, H, W] -> rewards [M]."""
        ...


class FunctionReward:
    """A user reward ``fn(action [M, A], next_obs [M, C, H, W] float in [0, 1]) -> Tensor [M]``."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn = fn

    def __call__(self, prev_frames: Tensor, actions: Tensor, next_frames: Tensor) -> Tensor:
        r = torch.as_tensor(self.fn(actions, next_frames), device=next_frames.device)
        return r.reshape(next_frames.shape[0]).to(next_frames.dtype)


@dataclass(frozen=True)
class RewardConfig:
    image_size: int = 32
    channels: int = 3
    action_dim: int = 1
    width: int = 16
    hidden: int = 64


_SEQ_ROWS = 512  # transitions per conv call in RewardCNN.score_sequence


class RewardCNN(nn.Module):
    """cat(prev, next) [2C, H, W] -> 3 stride-2 convs (w, 2w, 2w) + ReLU -> adaptive pool 4x4 -> concat
    action -> MLP -> reward, de-normalised by the training targets' mean/std (buffers)."""

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.convs = nn.Sequential(
            nn.Conv2d(2 * cfg.channels, w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Linear(2 * w * 16 + cfg.action_dim, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, 1))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def _after_first_conv(self, h: Tensor, actions: Tensor) -> Tensor:
        """First conv's output (pre-activation) [M, w, H/2, W/2] -> normalised reward [M]. The ReLUs act in
        place on conv outputs (autograd-safe); the pooling is skipped where it is an identity (maps already
        4x4, e.g. 32x32 frames)."""
        for m in self.convs[1:]:
            if isinstance(m, nn.ReLU):
                h = F.relu_(h)
            elif isinstance(m, nn.AdaptiveAvgPool2d) and tuple(h.shape[-2:]) == (4, 4):
                continue
            else:
                h = m(h)
        h = h.flatten(1)
        return self.head(torch.cat([h, actions.to(h.dtype)], 1))[:, 0]

    def normalized(self, prev_frames: Tensor, actions: Tensor, next_frames: Tensor) -> Tensor:
        return self._after_first_conv(self.convs[0](torch.cat([prev_frames, next_frames], 1)), actions)

    def forward(self, prev_frames: Tensor, actions: Tensor, next_frames: Tensor) -> Tensor:
        return self.normalized(prev_frames, actions, next_frames) * self.std + self.mean

    def score_sequence(self, first: Tensor, frames: Tensor, actions: Tensor) -> Tensor:
        """Rewards of the transitions of ``M`` frame sequences: first [M, C, H, W] (frame 0), frames
        [M, T, C, H, W] (frames 1..T), actions [M, T, A] -> [M, T]; equal to ``forward`` on the pairs
        (frame t, frame t+1) up to float rounding, without building them: the first conv on
        ``cat(prev, next)`` is split into its prev and next halves, each frame is convolved once with both
        (stacked) and the halves of consecutive frames are added. Sequences run in chunks of about
        ``_SEQ_ROWS`` transitions on CPU (cache-sized; contiguous slices, no copies), all at once elsewhere."""
        M, T = frames.shape[:2]
        conv = self.convs[0]
        C = self.cfg.channels
        k = conv.out_channels
        w = torch.cat([conv.weight[:, :C], conv.weight[:, C:]], 0)  # [2k, C, kh, kw]: prev half, next half
        bias = conv.bias.view(1, 1, k, 1, 1)

        def part(first: Tensor, frames: Tensor, actions: Tensor) -> Tensor:
            m = frames.shape[0]
            y = F.conv2d(frames.flatten(0, 1), w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
            y = y.reshape(m, T, 2, k, *y.shape[2:])  # [m, T, 2, k, h, w]
            h = y[:, :, 1] + bias.to(y.dtype)  # next halves + bias (a new tensor)
            h[:, 0] += F.conv2d(first, w[:k], None, conv.stride, conv.padding, conv.dilation, conv.groups)
            if T > 1:
                h[:, 1:] += y[:, :-1, 0]  # prev half of frame t-1
            return self._after_first_conv(h.flatten(0, 1), actions.flatten(0, 1)).view(m, T)

        rows = max(1, _SEQ_ROWS // max(T, 1)) if frames.device.type == "cpu" else M
        r = torch.cat([part(first[i:i + rows], frames[i:i + rows], actions[i:i + rows]) for i in range(0, M, rows)])
        return r * self.std + self.mean


@dataclass(frozen=True)
class RewardFitConfig:
    """Fit a :class:`RewardCNN` on the transitions of ``train`` episodes of a recording; report the MSE on
    ``val`` episodes (nothing is selected on it; the last epoch is kept)."""

    data: str
    train: tuple[int, ...]
    val: tuple[int, ...] = ()
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    width: int = 16
    seed: int = 0


def _transitions(root: str, episodes: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """-> frames uint8 [E, T+1, H, W, 3], actions [E, T, A], rewards [E, T] (CPU)."""
    manifest = load_manifest(root)
    fr, ac, rw = [], [], []
    for i in episodes:
        ep = open_episode(root, i, check_hash=False, manifest=manifest)
        fr.append(torch.from_numpy(np.ascontiguousarray(ep["frames"])))
        ac.append(torch.from_numpy(ep["actions"]))
        rw.append(torch.from_numpy(ep["rewards"]))
    return torch.stack(fr), torch.stack(ac), torch.stack(rw)


def _pairs(frames: Tensor, idx: Tensor, T: int, device: torch.device) -> tuple[Tensor, Tensor]:
    e, t = idx // T, idx % T
    prev = frames[e, t].to(device).permute(0, 3, 1, 2).float() / 255
    nxt = frames[e, t + 1].to(device).permute(0, 3, 1, 2).float() / 255
    return prev, nxt


@torch.no_grad()
def reward_mse(model: RewardCNN, frames: Tensor, actions: Tensor, rewards: Tensor, device: torch.device,
               batch_size: int = 1024) -> float:
    E, T = rewards.shape
    total, n = 0.0, E * T
    for s in range(0, n, batch_size):
        idx = torch.arange(s, min(n, s + batch_size))
        prev, nxt = _pairs(frames, idx, T, device)
        pred = model(prev, actions.reshape(-1, actions.shape[-1])[idx].to(device), nxt)
        total += float((pred - rewards.reshape(-1)[idx].to(device)).pow(2).sum())
    return total / max(n, 1)


def reward_fit_settings(cfg: RewardFitConfig) -> dict[str, Any]:
    """What a fitted reward model depends on, to decide whether a saved one may be reused: the content of the
    episodes it was fit and validated on (``episodes_sha256``: sha256 of their shards' sha256s in the
    recording's manifest, so a moved recording still matches and a re-recorded one does not), the train / val
    episode indices and the other fit settings (epochs, batch size, lr, width, seed). JSON-able."""
    shards = load_manifest(cfg.data)["shards"]
    episodes = [*cfg.train, *cfg.val]
    bad = [i for i in episodes if not 0 <= i < len(shards)]
    if bad:
        raise UserError(f"reward fit episodes {bad} are not in {cfg.data} ({len(shards)} episodes)")
    digest = hashlib.sha256(json.dumps([shards[i]["sha256"] for i in episodes]).encode()).hexdigest()
    settings = dataclasses.asdict(cfg)
    del settings["data"]
    return {**settings, "train": list(cfg.train), "val": list(cfg.val), "episodes_sha256": digest}


def fit_reward(cfg: RewardFitConfig, device: torch.device | str = "cpu") -> tuple[RewardCNN, dict[str, Any]]:
    """Train a reward CNN; returns it (eval mode) and a summary with train/val MSE."""
    device = torch.device(device)
    if not cfg.train:
        raise UserError("reward fit needs at least one training episode")
    frames, actions, rewards = _transitions(cfg.data, cfg.train)
    E, T1, H, W, C = frames.shape
    if H != W:
        raise UserError(f"reward fit needs square frames, got {H}x{W}")
    T = T1 - 1
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = RewardCNN(RewardConfig(image_size=H, channels=C, action_dim=actions.shape[-1], width=cfg.width)).to(device)
    model.mean.fill_(float(rewards.mean()))
    model.std.fill_(float(rewards.std().clamp(min=1e-6)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    flat_a, flat_r = actions.reshape(E * T, -1), rewards.reshape(E * T)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(E * T, generator=g)
        for s in range(0, E * T, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            prev, nxt = _pairs(frames, idx, T, device)
            target = (flat_r[idx].to(device) - model.mean) / model.std
            loss = F.mse_loss(model.normalized(prev, flat_a[idx].to(device), nxt), target)
            if not torch.isfinite(loss):
                raise UserError("reward fit diverged (non-finite loss); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    summary: dict[str, Any] = {"train_mse": reward_mse(model, frames, actions, rewards, device),
                               "reward_var_train": float(rewards.var()), "train_episodes": list(cfg.train),
                               "data": str(cfg.data), "fit_settings": reward_fit_settings(cfg)}
    if cfg.val:
        vf, va, vr = _transitions(cfg.data, cfg.val)
        summary.update(val_mse=reward_mse(model, vf, va, vr, device), reward_var_val=float(vr.var()),
                       val_episodes=list(cfg.val))
    return model, summary


def save_reward(path: str | os.PathLike[str], model: RewardCNN, summary: dict[str, Any]) -> Path:
    """Atomically write a reward model: a plain dict ``{"kind": "reward", "reward_config", "model", "summary"}``."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"kind": "reward", "reward_config": dataclasses.asdict(model.cfg), "model": model.state_dict(),
                "summary": summary}, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getbuffer())
    return path


def load_reward(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> RewardCNN:
    """Load :func:`save_reward`'s file (``weights_only``); a wrong or damaged file -> one-line UserError."""
    return load_reward_with_summary(path, device)[0]


def load_reward_with_summary(path: str | os.PathLike[str],
                             device: torch.device | str = "cpu") -> tuple[RewardCNN, dict[str, Any]]:
    """:func:`load_reward` and the summary saved with the model (``fit_reward``'s; files written before the
    fit settings were stored have no ``"fit_settings"`` key)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reward model {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001  (any failure to parse the user's file)
        raise UserError(f"{path} is not a readable reward model ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "reward":
        kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
        raise UserError(f"{path} is a {kind!r} checkpoint, not a reward model")
    model = RewardCNN(RewardConfig(**ckpt["reward_config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise UserError(f"reward model {path} does not match its own config; refit it") from None
    summary = ckpt.get("summary")
    return model.to(device).eval(), dict(summary) if isinstance(summary, dict) else {}


def pendulum_angle_from_frames(frames: Tensor) -> Tensor:
    """Rough pendulum angle (0 = upright) from PixelPendulum frames [M, 3, H, W] in [0, 1]: the direction
    of the centroid of red rod pixels from the image centre. Used by :func:`pendulum_pixel_reward`."""
    r, gch, b = frames[:, 0], frames[:, 1], frames[:, 2]
    mask = ((r - 0.5 * (gch + b)) > 0.25).to(frames.dtype)  # rod (204, 77, 77) against white
    M, H, W = mask.shape
    ys = torch.arange(H, device=frames.device, dtype=frames.dtype) - (H - 1) / 2
    xs = torch.arange(W, device=frames.device, dtype=frames.dtype) - (W - 1) / 2
    n = mask.sum((1, 2)).clamp(min=1)
    cy = (mask * ys[:, None]).sum((1, 2)) / n  # image rows grow downwards
    cx = (mask * xs[None, :]).sum((1, 2)) / n
    # upright rod: centroid above the centre (cy < 0); Pendulum's theta grows counter-clockwise
    return torch.atan2(-cx, -cy)


def pendulum_pixel_reward(action: Tensor, next_obs: Tensor) -> Tensor:
    """A hand-written user reward for PixelPendulum from the predicted frame alone:
    ``-(theta^2 + 0.001 u^2)`` with theta read off the pixels (no velocity term)."""
    th = pendulum_angle_from_frames(next_obs)
    return -(th.pow(2) + 0.001 * action.pow(2).sum(-1))


__all__ = ["FunctionReward", "RewardCNN", "RewardConfig", "RewardFitConfig", "RewardModel", "fit_reward",
           "load_reward", "load_reward_with_summary", "pendulum_angle_from_frames", "pendulum_pixel_reward",
           "reward_fit_settings", "reward_mse", "save_reward"]
