"""A world model for agents: a predictor (optionally a Noether Network, tailored at prediction time) plus a
reward model, with ONE batched entry point :meth:`WorldModel.imagine`.

Shapes (``C, H, W`` the model's frame shape, ``A`` the action dim):

- ``context``          ``[B, n_past, C, H, W]`` float in [0, 1] (or uint8 ``[B, n_past, H, W, C]``): the
  last ``n_past`` observed frames of ``B`` independent problems (envs);
- ``context_actions``  ``[B, n_past-1, A]``: the actions that produced context frames 1..n_past-1;
- ``action_seqs``      ``[B, N, T, A]``: ``N`` candidate sequences of ``T`` actions per problem; action
  ``t`` takes imagined frame ``t-1`` (the last context frame for t = 0) to imagined frame ``t``;
- returns :class:`Imagined` with ``frames [B, N, T, C, H, W]`` and ``rewards [B, N, T]``.

Everything runs under ``torch.no_grad()`` on the model's device, all ``B * N`` candidates in one rollout.

When tailoring happens (``tailor=True`` and the model is a Noether Network), mode ``"shared"`` (default):
once per call, per problem, on the context and a rollout of the *mean* candidate sequence (the centre of
the planner's current search distribution): ``NoetherNetwork.predict`` on ``B`` examples returns the adapted
tensors ``[B, ...]``, which are then shared by (expanded over) the ``N`` candidates of that problem for the
single batched rollout of all candidates. Cost: one tailoring call on ``B`` examples (an inner-loss rollout,
its backward and a final rollout, all of size ``B``), i.e. about one extra rollout on top of the ``B * N``
candidate rollout, not one per candidate. Mode ``"per_candidate"`` (the alternative, for measurements)
tailors every candidate on its own rollout: ``predict`` on ``B * N`` examples (~3-4x the untailored cost).
``benchmarks/mpc_speed.py`` measures both (speed, and the frame error against the real env).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from noether_rl.agents.reward import RewardModel
from noether_rl.errors import UserError
from noether_rl.noether import NoetherNetwork, frames_to_tensor, tensor_to_frames
from noether_rl.tailoring import TailorConfig

TailorMode = Literal["shared", "per_candidate"]


# -- observation <-> tensor (switch to the core's conversion when ``noether_rl.noether`` exports one) -----
# the package's one uint8 observation <-> model tensor conversion (public API of noether_rl.noether)
obs_to_tensor = frames_to_tensor
tensor_to_obs = tensor_to_frames


@dataclass
class Imagined:
    frames: Tensor  # [B, N, T, C, H, W] imagined frames in [0, 1]
    rewards: Tensor  # [B, N, T] predicted rewards (may be non-finite: planners treat those as -inf)


class WorldModel:
    """predictor or Noether Network + reward model; see the module docstring.

    model: an ``nn.Module`` implementing the ``Predictor`` protocol, or a :class:`NoetherNetwork`.
    reward: a reward model (:mod:`noether_rl.agents.reward`).
    n_past: context frames the model is conditioned on.
    tailor_cfg: the inner loop used when tailoring (default: the network's own, first order).
    """

    def __init__(self, model: nn.Module, reward: RewardModel, *, n_past: int, action_dim: int,
                 frame_shape: tuple[int, int, int], tailor_cfg: TailorConfig | None = None,
                 tailor_mode: TailorMode = "shared") -> None:
        if n_past < 1:
            raise UserError(f"n_past must be >= 1, got {n_past}")
        if tailor_mode not in ("shared", "per_candidate"):
            raise UserError(f"tailor_mode must be 'shared' or 'per_candidate', got {tailor_mode!r}")
        self.model = model.eval()
        self.network = model if isinstance(model, NoetherNetwork) else None
        self.predictor = model.predictor if self.network is not None else model
        self.reward = reward
        if isinstance(reward, nn.Module):
            reward.eval()
        self.n_past = int(n_past)
        self.action_dim = int(action_dim)
        self.frame_shape = tuple(int(s) for s in frame_shape)  # (C, H, W)
        if self.network is not None:
            tc = tailor_cfg or self.network.cfg.tailor
            self.tailor_cfg: TailorConfig | None = replace(tc, order="first")
        else:
            self.tailor_cfg = None
        self.tailor_mode: TailorMode = tailor_mode

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], reward: RewardModel, *, device: torch.device | str = "cpu",
                        n_past: int | None = None, inner_steps: int | None = None, inner_lr: float | None = None,
                        tailor_mode: TailorMode = "shared") -> WorldModel:
        """An SVG or Noether checkpoint (``noether-rl train`` / ``meta-train``). ``n_past`` defaults to the
        training context length; ``inner_steps``/``inner_lr`` override the tailoring inner loop."""
        from noether_rl.training.loading import load_model

        loaded = load_model(path, device)
        if loaded.kind not in ("svg", "noether"):
            raise UserError(f"{path} is a {loaded.kind!r} checkpoint; planning needs an SVG or Noether checkpoint")
        module = loaded.module
        svg = loaded.svg
        cfg = svg.cfg
        tcfg = None
        if isinstance(module, NoetherNetwork):
            changes: dict = {}
            if inner_steps is not None:
                changes["steps"] = inner_steps
            if inner_lr is not None:
                changes["lr"] = inner_lr
            tcfg = replace(module.cfg.tailor, **changes)
        return cls(module, reward, n_past=n_past or loaded.config.data.n_past, action_dim=cfg.action_dim,
                   frame_shape=(cfg.channels, cfg.image_size, cfg.image_size), tailor_cfg=tcfg,
                   tailor_mode=tailor_mode)

    # -- properties -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        t = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return t.device if t is not None else torch.device("cpu")

    @property
    def can_tailor(self) -> bool:
        return self.network is not None and self.tailor_cfg is not None and self.tailor_cfg.steps > 0

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Observation shape ``(H, W, C)`` (uint8) the model sees."""
        C, H, W = self.frame_shape
        return (H, W, C)

    # -- model calls (the only two places that talk to the core) --------------------------------------
    def _rollout(self, context: Tensor, actions: Tensor, horizon: int, adapt: dict[str, Tensor] | None,
                 generator: torch.Generator | None) -> Tensor:
        return self.predictor.rollout(context, actions, horizon, adapt=adapt, generator=generator).pred

    def _tailored(self, context: Tensor, actions: Tensor, horizon: int,
                  generator: torch.Generator | None) -> tuple[dict[str, Tensor] | None, Tensor]:
        """One ``NoetherNetwork.predict`` call: (tailored adaptables [B, ...] or None if no step was taken,
        the tailored prediction [B, horizon, C, H, W])."""
        assert self.network is not None
        out = self.network.predict(context, actions, horizon, tailor_cfg=self.tailor_cfg, generator=generator)
        return (None if out.result is None else out.result.adapted), out.pred

    # -- the entry point ------------------------------------------------------------------------------
    def _check(self, context: Tensor, context_actions: Tensor, action_seqs: Tensor) -> Tensor:
        if context.dtype == torch.uint8:
            context = obs_to_tensor(context, self.device)
        context = context.to(self.device, torch.float32)
        if context.dim() != 5 or tuple(context.shape[2:]) != self.frame_shape or context.shape[1] < self.n_past:
            raise UserError(f"context must be [B, >={self.n_past}, {', '.join(map(str, self.frame_shape))}] frames, "
                            f"got {list(context.shape)}")
        B = context.shape[0]
        if action_seqs.dim() != 4 or action_seqs.shape[0] != B or action_seqs.shape[-1] != self.action_dim:
            raise UserError(f"action_seqs must be [B={B}, N, T, A={self.action_dim}], got {list(action_seqs.shape)}")
        if tuple(context_actions.shape) != (B, self.n_past - 1, self.action_dim):
            raise UserError(f"context_actions must be [B={B}, n_past-1={self.n_past - 1}, A={self.action_dim}], "
                            f"got {list(context_actions.shape)}")
        return context[:, -self.n_past:]

    @torch.no_grad()
    def imagine(self, context: Tensor, context_actions: Tensor, action_seqs: Tensor, *, tailor: bool = True,
                generator: torch.Generator | None = None) -> Imagined:
        """Imagine ``N`` candidate futures per problem (shapes in the module docstring), batched."""
        context = self._check(context, context_actions, action_seqs)
        dev = self.device
        ctx_a = context_actions.to(dev, torch.float32)
        seqs = action_seqs.to(dev, torch.float32)
        B, N, T, A = seqs.shape
        P = self.n_past
        full = torch.cat([ctx_a[:, None].expand(B, N, P - 1, A), seqs], 2).reshape(B * N, P - 1 + T, A)
        ctx = context[:, None].expand(B, N, *context.shape[1:]).reshape(B * N, *context.shape[1:])
        adapt, pred = None, None
        if tailor and self.can_tailor:
            if self.tailor_mode == "shared" and N > 1:
                ref = torch.cat([ctx_a, seqs.mean(1)], 1)  # the mean candidate [B, P-1+T, A]
                shared, _ = self._tailored(context, ref, T, generator)
                if shared is not None:
                    adapt = {k: v[:, None].expand(B, N, *v.shape[1:]).reshape(B * N, *v.shape[1:])
                             for k, v in shared.items()}
            else:  # per candidate (with N = 1 both modes coincide): predict's own final rollout is the answer
                _, pred = self._tailored(ctx, full, T, generator)
        if pred is None:
            pred = self._rollout(ctx, full, T, adapt, generator)  # [B*N, T, C, H, W]
        prev = torch.cat([ctx[:, -1:], pred[:, :-1]], 1)
        r = self.reward(prev.flatten(0, 1), seqs.reshape(B * N * T, A), pred.flatten(0, 1))
        return Imagined(frames=pred.view(B, N, T, *pred.shape[2:]), rewards=r.reshape(B, N, T))


__all__ = ["Imagined", "TailorMode", "WorldModel", "obs_to_tensor", "tensor_to_obs"]
