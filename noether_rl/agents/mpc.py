"""Model-predictive control: the glue between a :class:`WorldModel` and a planner.

The objective handed to the planner scores all candidate action sequences of all envs in ONE
:meth:`WorldModel.imagine` call: ``score = sum_t discount^t * reward_t`` over the horizon (non-finite
predicted rewards make a candidate's score non-finite, which the planners count as ``-inf``).

:class:`MPCAgent` exposes Stable-Baselines3's ``predict(observation, state=None, episode_start=None,
deterministic=False) -> (action, state)`` so ``stable_baselines3.common.evaluation.evaluate_policy`` works
unchanged, with one env or a ``VecEnv`` of several (one planning problem per env, batched). It keeps its own
window of the last ``n_past`` observations and of the actions it returned between them (it assumes the
returned action is executed). At an episode start the window is padded by repeating the first observation
with zero actions until ``n_past`` real frames have been seen. It replans every ``replan_every`` steps,
executing the plan's next action in between, and warm-starts each plan from the previous one shifted by
the steps executed since.

Per planning step the world model is prepared ONCE (:meth:`WorldModel.prepare`: the context encoding and,
when tailoring, one tailoring call on the context and the planner's warm start, i.e. the previous plan
shifted), and every optimiser iteration scores its candidates from that shared preparation
(:meth:`WorldModel.imagine_prepared`). ``MPCConfig.tailor_every="iteration"`` (for measurements) instead
tailors in every objective call, on the mean of that iteration's candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from noether_rl.agents.planners import Planner
from noether_rl.agents.world_model import Prepared, WorldModel, obs_to_tensor, tensor_to_obs
from noether_rl.errors import UserError


@dataclass(frozen=True)
class MPCConfig:
    """replan_every: steps between plans (1 = replan every step). tailor: tailor the Noether model when
    scoring. discount: per-step reward discount inside the horizon. record_imagined: also imagine the
    chosen plan (one extra 1-candidate rollout per plan, from the same preparation) so :attr:`MPCAgent.imagined_next` holds the model's
    prediction of the next frame (for side-by-side videos). tailor_every: "plan" (tailor once per planning
    step, on the warm-start plan; the default) or "iteration" (once per optimiser iteration, on the mean
    candidate; the measured alternative)."""

    replan_every: int = 1
    tailor: bool = True
    discount: float = 1.0
    record_imagined: bool = False
    tailor_every: Literal["plan", "iteration"] = "plan"


class MPCAgent:
    """Model-predictive control with a world model and a planner (see the module docstring)."""

    def __init__(self, world_model: WorldModel, planner: Planner, cfg: MPCConfig = MPCConfig()) -> None:
        if cfg.replan_every < 1:
            raise UserError(f"replan_every must be >= 1, got {cfg.replan_every}")
        if planner.action_dim != world_model.action_dim:
            raise UserError(f"planner has action dim {planner.action_dim}, the world model {world_model.action_dim}")
        if cfg.tailor_every not in ("plan", "iteration"):
            raise UserError(f"tailor_every must be 'plan' or 'iteration', got {cfg.tailor_every!r}")
        if cfg.replan_every > planner.horizon:
            raise UserError(f"replan_every={cfg.replan_every} exceeds the planning horizon {planner.horizon}")
        self.wm, self.planner, self.cfg = world_model, planner, cfg
        self.n_envs = 0
        self._frames: Tensor | None = None  # [n, P, C, H, W]
        self._acts: Tensor | None = None  # [n, P-1, A]
        self._plan: Tensor | None = None  # [n, H, A]
        self._since = 0  # steps executed from the current plan
        self._last: Tensor | None = None  # [n, A] last returned action
        self.imagined_next: np.ndarray | None = None  # uint8 [n, H, W, C]: predicted next frame
        self._imagined: Tensor | None = None
        self.plan_calls = 0
        self.plan_seconds = 0.0
        self.calls = 0  # predict() calls
        self.steps = 0  # actions returned (calls x envs)
        self.seconds = 0.0  # wall time inside predict()
        self._nonfinite = torch.zeros((), dtype=torch.long, device=world_model.device)
        self._discounts = cfg.discount ** torch.arange(planner.horizon, dtype=torch.float32, device=world_model.device)

    # -- bookkeeping ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the history, plan and warm start of every env."""
        self.n_envs = 0
        self._frames = self._acts = self._plan = self._last = self._imagined = None
        self._since = 0
        self.planner.reset()

    def stats(self) -> dict[str, Any]:
        """Counts and timings. control_rate_hz: ``predict()`` calls per second of time spent inside
        ``predict`` (the control frequency each env gets; all envs are served by one call)."""
        return {"plan_calls": self.plan_calls, "predict_calls": self.calls, "actions": self.steps,
                "seconds_per_plan": self.plan_seconds / max(self.plan_calls, 1),
                "control_rate_hz": self.calls / self.seconds if self.seconds > 0 else float("nan"),
                "nonfinite_scores": int(self._nonfinite)}

    def _start(self, idx: Tensor, obs: Tensor) -> None:
        """Episode start for envs ``idx`` (bool [n]): fill their window with the first observation."""
        assert self._frames is not None and self._acts is not None
        m = idx[:, None, None, None, None]
        self._frames = torch.where(m, obs[:, None].expand_as(self._frames), self._frames)
        self._acts = torch.where(idx[:, None, None], torch.zeros_like(self._acts), self._acts)
        self.planner.forget(idx)  # the other envs keep their warm start

    def _objective(self, seqs: Tensor, prep: Prepared | None) -> Tensor:  # [n, N, H, A] -> [n, N]
        if prep is None:  # tailor_every="iteration"
            out = self.wm.imagine(self._frames, self._acts, seqs, tailor=self.cfg.tailor)
        else:
            out = self.wm.imagine_prepared(prep, seqs)
        scores = (out.rewards * self._discounts[: out.rewards.shape[-1]]).sum(-1)
        self._nonfinite += (~torch.isfinite(scores)).sum()
        return scores

    # -- the SB3 policy interface ---------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """observation uint8 [H, W, C] or [n, H, W, C] -> action [A] or [n, A] (float32), state (None).
        ``deterministic`` is accepted for SB3 compatibility (the planner is seeded either way)."""
        t_start = time.perf_counter()
        obs_np = np.asarray(observation)
        single = obs_np.shape == self.wm.obs_shape
        if single:
            obs_np = obs_np[None]
        if obs_np.shape[1:] != self.wm.obs_shape or obs_np.dtype != np.uint8:
            raise UserError(f"MPCAgent expects uint8 observations of shape {self.wm.obs_shape} (the world model's), "
                            f"got {obs_np.dtype} {list(obs_np.shape)}; make the env at the model's frame size")
        n = obs_np.shape[0]
        dev = self.wm.device
        obs = obs_to_tensor(obs_np, dev)
        if n != self.n_envs or self._frames is None:
            self.reset()
            self.n_envs = n
            self._frames = obs[:, None].expand(n, self.wm.n_past, *obs.shape[1:]).clone()
            self._acts = torch.zeros(n, self.wm.n_past - 1, self.wm.action_dim, device=dev)
            self._last = torch.zeros(n, self.wm.action_dim, device=dev)
            starts = np.ones(n, dtype=bool)
        else:
            assert self._acts is not None and self._last is not None
            self._frames = torch.cat([self._frames[:, 1:], obs[:, None]], 1)
            self._acts = torch.cat([self._acts, self._last[:, None]], 1)[:, 1:]
            starts = np.zeros(n, dtype=bool) if episode_start is None else np.asarray(episode_start, bool).reshape(n)
        replan = self._plan is None or self._since >= self.cfg.replan_every
        if starts.any():
            self._start(torch.as_tensor(starts, device=dev), obs)
            replan = True
        if replan:
            t0 = time.perf_counter()
            if self._plan is not None:
                self.planner.advance(self._since)
            prep = None
            if self.cfg.tailor_every == "plan" or not (self.cfg.tailor and self.wm.can_tailor):
                prep = self.wm.prepare(self._frames, self._acts, self.planner.horizon, tailor=self.cfg.tailor,
                                       plan=self.planner.warm_start(n))
            self._plan = self.planner.plan(lambda seqs: self._objective(seqs, prep), batch_size=n)
            if self.cfg.record_imagined:
                im = self.wm.imagine_prepared(prep, self._plan[:, None]) if prep is not None else \
                    self.wm.imagine(self._frames, self._acts, self._plan[:, None], tailor=self.cfg.tailor)
                self._imagined = im.frames[:, 0]  # [n, horizon, C, H, W]
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            self.plan_seconds += time.perf_counter() - t0
            self.plan_calls += 1
            self._since = 0
        action = self._plan[:, self._since]
        if self._imagined is not None:
            self.imagined_next = tensor_to_obs(self._imagined[:, self._since]).cpu().numpy()
        self._since += 1
        self._last = action
        out = action.cpu().numpy().astype(np.float32)
        self.calls += 1
        self.steps += n
        self.seconds += time.perf_counter() - t_start
        return (out[0] if single else out), None


__all__ = ["MPCAgent", "MPCConfig"]
