"""The world model as an environment: Gymnasium ``Env``, a batched Gymnasium ``VectorEnv`` that keeps its
state on the device, and a Stable-Baselines3 ``VecEnv`` adapter.

An episode starts from real context frames (``n_past`` frames and the ``n_past-1`` actions between them,
drawn by a :class:`ContextSampler`: a recording, or the first steps of the real env under a policy); the
observation is the last context frame. Each step imagines the next frame and the reward with
:meth:`WorldModel.imagine` (horizon 1), conditioned on a sliding window of the last ``n_past`` frames
(observed, then imagined) and actions -- the predictor keeps no hidden state between steps, exactly as in
training, where it always starts from ``n_past`` frames. With ``tailor=True`` a Noether model is tailored
at every step on that window. Episodes never terminate; they are truncated after ``max_episode_steps``.

Observation ``Box(0, 255, (H, W, 3), uint8)`` at the model's frame size; actions are clipped to the
action space. A non-finite predicted reward raises (``nonfinite_reward=None``) or is replaced by the given
value and flagged in ``info["nonfinite_reward"]``; it is never passed on silently.

Randomness of a stochastic predictor: an explicit generator seeded from the env's seed at reset; with the
world model's CUDA graphs on, the device's default generator seeded from it instead (a graph cannot take an
explicit generator; reproducibility then depends on that default generator, see ``_generator``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices
from torch import Tensor

from noether_rl.agents.world_model import WorldModel, obs_to_tensor, tensor_to_obs
from noether_rl.errors import UserError


class ContextSampler(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """-> frames uint8 ``[n, n_past, H, W, C]``, actions float32 ``[n, n_past-1, A]``."""
        ...


class RecordingContexts:
    """Contexts cut from episodes of a recording (``noether-rl record``): a uniformly drawn episode and
    start. The frames of the chosen episodes are held in memory as uint8."""

    def __init__(self, root: str, episodes: Sequence[int], n_past: int) -> None:
        from noether_rl.data import load_manifest, open_episode

        manifest = load_manifest(root)
        if not episodes:
            raise UserError("RecordingContexts needs at least one episode")
        eps = [open_episode(root, i, check_hash=False, manifest=manifest) for i in episodes]
        self.frames = [e["frames"] for e in eps]
        self.actions = [e["actions"] for e in eps]
        self.n_past = int(n_past)
        if min(len(f) for f in self.frames) < self.n_past:
            raise UserError(f"episodes of {root} are shorter than n_past={n_past}")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        P = self.n_past
        fr, ac = [], []
        for _ in range(n):
            e = int(rng.integers(len(self.frames)))
            s = int(rng.integers(len(self.frames[e]) - P + 1))
            fr.append(self.frames[e][s : s + P])
            ac.append(self.actions[e][s : s + P - 1])
        return np.stack(fr), np.stack(ac).astype(np.float32)


class EnvContexts:
    """Contexts from the real env: reset with a seed drawn from ``rng``, then ``n_past-1`` steps of
    ``policy(obs, rng) -> action`` (default: uniform random actions)."""

    def __init__(self, env_fn: Callable[[], gym.Env], n_past: int,
                 policy: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> None:
        self.env = env_fn()
        self.n_past = int(n_past)
        self.policy = policy
        space = self.env.action_space
        if not isinstance(space, spaces.Box):
            raise UserError("EnvContexts needs a Box action space")
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        fr, ac = [], []
        for _ in range(n):
            obs, _ = self.env.reset(seed=int(rng.integers(2**31 - 1)))
            frames, actions = [obs], []
            for _ in range(self.n_past - 1):
                a = (self.policy(obs, rng) if self.policy is not None
                     else rng.uniform(self._low, self._high).astype(np.float32))
                obs, *_ = self.env.step(a)
                frames.append(obs)
                actions.append(np.asarray(a, dtype=np.float32).reshape(-1))
            fr.append(np.stack(frames))
            ac.append(np.stack(actions) if actions else np.zeros((0, self._low.size), np.float32))
        return np.stack(fr), np.stack(ac)

    def close(self) -> None:
        self.env.close()


class _Batch:
    """The batched state of ``n`` model envs, on the model's device: a window of the last ``n_past`` frames
    [n, P, C, H, W] and ``n_past-1`` actions [n, P-1, A], and the step counters (host ints)."""

    def __init__(self, wm: WorldModel, action_space: spaces.Box, n: int, tailor: bool) -> None:
        if not isinstance(action_space, spaces.Box) or action_space.shape != (wm.action_dim,):
            raise UserError(f"action space must be a Box of shape ({wm.action_dim},), got {action_space}")
        self.wm, self.n, self.tailor = wm, n, tailor
        dev = wm.device
        self.low = torch.as_tensor(action_space.low, dtype=torch.float32, device=dev)
        self.high = torch.as_tensor(action_space.high, dtype=torch.float32, device=dev)
        P, A = wm.n_past, wm.action_dim
        self.frames = torch.zeros(n, P, *wm.frame_shape, device=dev)
        self.actions = torch.zeros(n, P - 1, A, device=dev)
        self.t = np.zeros(n, dtype=np.int64)
        self.generator: torch.Generator | None = None

    def set(self, idx: np.ndarray, frames: np.ndarray, actions: np.ndarray) -> None:
        f = np.asarray(frames)
        if f.dtype != np.uint8 or f.shape[1:] != (self.wm.n_past, *self.wm.obs_shape):
            raise UserError(f"context frames must be uint8 [n, {self.wm.n_past}, {', '.join(map(str, self.wm.obs_shape))}], "
                            f"got {f.dtype} {list(f.shape)}")
        i = torch.as_tensor(idx, device=self.wm.device)
        self.frames[i] = obs_to_tensor(f, self.wm.device)
        self.actions[i] = torch.as_tensor(actions, dtype=torch.float32, device=self.wm.device).reshape(
            len(idx), self.wm.n_past - 1, self.wm.action_dim)
        self.t[idx] = 0

    def step(self, action: Tensor) -> tuple[Tensor, Tensor]:
        """action [n, A] -> (next frames [n, C, H, W] float, rewards [n]); advances the window."""
        a = torch.maximum(torch.minimum(action.to(self.wm.device, torch.float32).reshape(self.n, -1), self.high),
                          self.low)
        out = self.wm.imagine(self.frames, self.actions, a[:, None, None], tailor=self.tailor,
                              generator=self.generator)
        frame, reward = out.frames[:, 0, 0], out.rewards[:, 0, 0]
        self.frames = torch.cat([self.frames[:, 1:], frame[:, None]], 1)
        self.actions = torch.cat([self.actions, a[:, None]], 1)[:, 1:]  # [n, P-1, A] (also for P = 1)
        self.t += 1
        return frame, reward

    def obs(self) -> Tensor:
        """uint8 [n, H, W, C] on the device: the last frame of each window."""
        return tensor_to_obs(self.frames[:, -1])


def _check_rewards(r: np.ndarray, nonfinite_reward: float | None) -> tuple[np.ndarray, np.ndarray]:
    bad = ~np.isfinite(r)
    if bad.any():
        if nonfinite_reward is None:
            raise RuntimeError(f"the world model predicted a non-finite reward for {int(bad.sum())} env(s); "
                               "pass nonfinite_reward=<value> to replace it")
        r = np.where(bad, np.float32(nonfinite_reward), r)
    return r, bad


def _generator(wm: WorldModel, rng: np.random.Generator) -> torch.Generator | None:
    """At reset: the generator of a stochastic predictor's samples, seeded from the env's ``rng`` (None for a
    deterministic predictor). With CUDA graphs on (``wm.cuda_graph`` at reset) a graphed rollout can only
    sample from the device's default generator, so that one is seeded from ``rng`` instead (the default CUDA
    generator of ``wm.device``; the CPU one under a CPU test backend) and None is returned: the samples are
    then reproducible only while nothing else (e.g. an agent sampling actions on the same device) draws from
    that default generator between the env's steps (a graph's capture, with its warm-up runs, draws from it
    too: the rollout that captures differs from a later one with the same seed), and the reseeding at reset
    affects those other users."""
    if not getattr(wm.predictor, "stochastic", False):
        return None
    seed = int(rng.integers(2**62))
    if not wm.cuda_graph:
        return torch.Generator(device=wm.device).manual_seed(seed)
    if wm.device.type == "cuda":
        with torch.cuda.device(wm.device):
            torch.cuda.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
    return None


class WorldModelEnv(gym.Env):
    """One imagined environment (see the module docstring).

    reset options: ``{"context": (frames uint8 [n_past, H, W, C], actions [n_past-1, A])}`` starts from the
    given frames instead of a sampled context.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, world_model: WorldModel, contexts: ContextSampler, action_space: spaces.Box, *,
                 max_episode_steps: int = 200, tailor: bool = True, render_mode: str | None = "rgb_array",
                 nonfinite_reward: float | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.wm, self.contexts = world_model, contexts
        self.action_space = action_space
        self.observation_space = spaces.Box(0, 255, world_model.obs_shape, np.uint8)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.nonfinite_reward = nonfinite_reward
        self._batch = _Batch(world_model, action_space, 1, tailor)
        self._last: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "context" in options:
            frames, actions = options["context"]
            frames, actions = np.asarray(frames)[None], np.asarray(actions, np.float32)[None]
        else:
            frames, actions = self.contexts.sample(self.np_random, 1)
        self._batch.set(np.arange(1), frames, actions)
        self._batch.generator = _generator(self.wm, self.np_random)
        self._last = self._batch.obs()[0].cpu().numpy()
        return self._last.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        _, r = self._batch.step(torch.as_tensor(np.asarray(action, np.float32)))
        rewards, bad = _check_rewards(r.cpu().numpy().astype(np.float32), self.nonfinite_reward)
        self._last = self._batch.obs()[0].cpu().numpy()
        truncated = bool(self._batch.t[0] >= self.max_episode_steps)
        info = {"nonfinite_reward": True} if bad[0] else {}
        return self._last.copy(), float(rewards[0]), False, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._last is None:
            return None
        return self._last.copy()


class WorldModelVectorEnv(VectorEnv):
    """``num_envs`` imagined environments stepped in one batched model call; the state stays on the model's
    device (:meth:`step_tensor` takes and returns device tensors; :meth:`step` is the numpy API).
    Autoreset: SAME_STEP (a finished env is reset within the step that ended it; its last observation is
    in ``infos["final_obs"]``), as Stable-Baselines3 expects."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, world_model: WorldModel, contexts: ContextSampler, action_space: spaces.Box, num_envs: int, *,
                 max_episode_steps: int = 200, tailor: bool = True, render_mode: str | None = "rgb_array",
                 nonfinite_reward: float | None = None) -> None:
        if num_envs < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs}")
        self.wm, self.contexts = world_model, contexts
        self.num_envs = int(num_envs)
        self.single_action_space = action_space
        self.single_observation_space = spaces.Box(0, 255, world_model.obs_shape, np.uint8)
        self.action_space = batch_space(action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.nonfinite_reward = nonfinite_reward
        self._batch = _Batch(world_model, action_space, self.num_envs, tailor)
        self._ready = False

    @property
    def rng(self) -> np.random.Generator:
        return self.np_random

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed, options=options)
        frames, actions = self.contexts.sample(self.np_random, self.num_envs)
        self._batch.set(np.arange(self.num_envs), frames, actions)
        self._batch.generator = _generator(self.wm, self.np_random)
        self._ready = True
        return self._batch.obs().cpu().numpy(), {}

    def step_tensor(self, actions: Tensor) -> tuple[Tensor, Tensor, np.ndarray]:
        """actions [n, A] (any device) -> (obs uint8 [n, H, W, C], rewards [n], truncated bool [n] on the host),
        all tensors on the model's device; no autoreset (call :meth:`reset_done`)."""
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        _, r = self._batch.step(actions)
        return self._batch.obs(), r, self._batch.t >= self.max_episode_steps

    def reset_done(self, done: np.ndarray) -> None:
        """Start new episodes (sampled contexts) in the envs where ``done``."""
        idx = np.flatnonzero(done)
        if idx.size:
            frames, actions = self.contexts.sample(self.np_random, idx.size)
            self._batch.set(idx, frames, actions)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs_t, r_t, truncated = self.step_tensor(torch.as_tensor(np.asarray(actions, np.float32)))
        obs = obs_t.cpu().numpy()
        rewards, bad = _check_rewards(r_t.cpu().numpy().astype(np.float32), self.nonfinite_reward)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = truncated.copy()
        infos: dict[str, Any] = {}
        if bad.any():
            infos["nonfinite_reward"], infos["_nonfinite_reward"] = bad.copy(), bad.copy()
        if truncated.any():
            final = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(truncated):
                final[i] = obs[i].copy()
            infos["final_obs"], infos["_final_obs"] = final, truncated.copy()
            infos["final_info"] = {}
            infos["_final_info"] = truncated.copy()
            self.reset_done(truncated)
            obs = np.where(truncated[:, None, None, None], self._batch.obs().cpu().numpy(), obs)
        return obs, rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None or not self._ready:
            return None
        return tuple(self._batch.obs().cpu().numpy())


class SB3WorldModelVecEnv(VecEnv):
    """Stable-Baselines3 ``VecEnv`` over a :class:`WorldModelVectorEnv` (dones = truncations; the last
    observation of a finished episode in ``infos[i]["terminal_observation"]``, and
    ``infos[i]["TimeLimit.truncated"] = True``)."""

    def __init__(self, venv: WorldModelVectorEnv) -> None:
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds[0] is not None else None
        obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.float32).reshape(self.num_envs, -1)

    def step_wait(self):
        assert self._actions is not None, "step_async first"
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if "nonfinite_reward" in infos:
            for i in np.flatnonzero(infos["nonfinite_reward"]):
                out[i]["nonfinite_reward"] = True
        return obs, rewards, dones, out

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.venv, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [getattr(self.venv, method_name)(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        imgs = self.venv.render()
        return list(imgs) if imgs is not None else [None] * self.num_envs


__all__ = ["ContextSampler", "EnvContexts", "RecordingContexts", "SB3WorldModelVecEnv", "WorldModelEnv",
           "WorldModelVectorEnv"]
