"""Recipes behind ``noether-rl plan`` and ``noether-rl dream-train``: build a world model from a checkpoint
and a reward model, run seeded real-env episodes, write ``results.json`` (and videos).

Statistics: one return per real-env episode; episodes are seeded ``seed, seed+1, ...`` (so two runs with the
same seeds see the same initial states and can be compared pairwise); mean ± standard error over episodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import noether_rl.envs  # noqa: F401  (registers the env ids)
from noether_rl.agents.mpc import MPCAgent, MPCConfig
from noether_rl.agents.planners import make_planner
from noether_rl.agents.reward import (
    FunctionReward,
    RewardFitConfig,
    RewardModel,
    fit_reward,
    load_reward,
    load_reward_with_summary,
    pendulum_pixel_reward,
    reward_fit_settings,
    save_reward,
)
from noether_rl.agents.world_model import WorldModel
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.errors import UserError
from noether_rl.utils.device import resolve_device
from noether_rl.utils.io import atomic_write_json, read_json_or_none, sha256_file

REWARDS = ("learned", "pendulum-pixels")


def mean_se(xs: Sequence[float]) -> dict[str, Any]:
    x = np.asarray(xs, dtype=np.float64)
    n = x.size
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(x.mean()) if n else float("nan"), "se": se, "n": int(n), "values": x.tolist()}


def make_real_env(env_id: str, obs_shape: tuple[int, int, int], max_steps: int | None = None) -> gym.Env:
    """The real env at the model's frame size (``size=`` kwarg when the env takes one); a mismatching
    observation shape is a one-line :class:`UserError`."""
    kwargs: dict[str, Any] = {}
    if max_steps is not None:
        kwargs["max_episode_steps"] = int(max_steps)
    try:
        env = gym.make(env_id, size=obs_shape[0], **kwargs)
    except TypeError:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise UserError(f"cannot make env {env_id!r}: {e}") from None
    if env.observation_space.shape != obs_shape:
        raise UserError(f"env {env_id} gives observations of shape {env.observation_space.shape} but the "
                        f"checkpoint's model expects {obs_shape}")
    if not isinstance(env.action_space, gym.spaces.Box):
        raise UserError(f"env {env_id} has a {type(env.action_space).__name__} action space; planning needs a Box")
    return env


@dataclass(frozen=True)
class RewardSpec:
    """kind: "learned" (a reward CNN fit on the recorded rewards of the checkpoint's training episodes, or
    loaded from ``path``) or "pendulum-pixels" (the hand-written pixel-angle reward).
    path: a reward model to use as is (fit and written there when the file is missing); None = ``OUT/reward.pt``,
    reused only when it was fit with the same settings (``reward_fit_settings``: the episodes' content and
    indices, epochs, ...), otherwise a UserError asks to delete it or give it as ``path``. data: recording to
    fit on (default: the checkpoint's). val_episodes: held-out episodes after the training ones, for the
    reported MSE."""

    kind: str = "learned"
    path: str | None = None
    data: str | None = None
    epochs: int = 10
    val_episodes: int = 5


def build_reward(spec: RewardSpec, train_cfg: Any, device: torch.device, out: Path,
                 progress: bool = False) -> tuple[RewardModel, dict[str, Any]]:
    if spec.kind not in REWARDS:
        raise UserError(f"unknown reward {spec.kind!r}; choose one of {list(REWARDS)}")
    if spec.kind == "pendulum-pixels":
        return FunctionReward(pendulum_pixel_reward), {"kind": spec.kind}
    path = Path(spec.path) if spec.path else out / "reward.pt"
    if spec.path and path.is_file():  # given explicitly: used as is
        return load_reward(path, device), {"kind": "learned", "path": str(path), "reused": True}
    from noether_rl.data import load_manifest

    data = spec.data or train_cfg.data.root
    fit_cfg = None
    if data and Path(data, "manifest.json").is_file():
        n = len(load_manifest(data)["shards"])
        n_train = min(train_cfg.data.train_episodes, n)
        val = tuple(range(n_train, min(n, n_train + spec.val_episodes)))
        fit_cfg = RewardFitConfig(data=str(data), train=tuple(range(n_train)), val=val, epochs=spec.epochs)
    if path.is_file():  # the default OUT/reward.pt of an earlier run
        model, saved = load_reward_with_summary(path, device)
        info: dict[str, Any] = {"kind": "learned", "path": str(path), "reused": True, "fit": saved}
        stored = saved.get("fit_settings")
        if not isinstance(stored, dict):  # written before the fit settings were stored
            return model, {**info, "settings_unknown": True}
        if fit_cfg is None:
            return model, {**info, "settings_checked": False, "why": f"no recording at {data!r} to compare with"}
        want = reward_fit_settings(fit_cfg)
        diff = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
        if diff:
            raise UserError(f"{path} was fit with other settings ({', '.join(diff)} differ); delete it to refit, or "
                            f"give it explicitly (plan / dream-train: --reward-model {path}) to use it as is")
        return model, info
    if fit_cfg is None:
        raise UserError(f"no recording at {data!r} to fit the reward model on; give --reward-data DIR, "
                        "--reward-model PATH or --reward pendulum-pixels")
    t0 = time.perf_counter()
    model, summary = fit_reward(fit_cfg, device)
    summary["wall_time_s"] = time.perf_counter() - t0
    save_reward(path, model, summary)
    return model, {"kind": "learned", "path": str(path), "reused": False, "fit": summary, "data": str(data)}


def load_world_model(checkpoint: str, reward: RewardSpec, device: torch.device, out: Path, *,
                     inner_steps: int | None = None, inner_lr: float | None = None,
                     tailor_mode: str = "shared") -> tuple[WorldModel, dict[str, Any]]:
    from noether_rl.training.loading import load_model

    loaded = load_model(checkpoint, device)
    WorldModel.check_loaded(loaded)  # before fitting a reward model for it
    rmodel, rinfo = build_reward(reward, loaded.config, device, out)
    wm = WorldModel.from_loaded(loaded, rmodel, inner_steps=inner_steps, inner_lr=inner_lr,
                                tailor_mode=tailor_mode)  # type: ignore[arg-type]
    info = {"checkpoint": str(checkpoint), "kind": loaded.kind, "n_past": wm.n_past, "frame_shape": wm.frame_shape,
            "can_tailor": wm.can_tailor, "tailor_cfg": asdict(wm.tailor_cfg) if wm.tailor_cfg else None,
            "inner_lr": wm.inner_lr, "reward": rinfo}
    return wm, info


Policy = Callable[..., tuple[np.ndarray, Any]]


def run_episodes(predict: Policy, make_env: Callable[[], gym.Env], seeds: Sequence[int], *,
                 on_step: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                 progress: bool = False) -> list[float]:
    """Run one episode per seed, all in lockstep (``predict`` gets a batch [n, ...] of observations, SB3
    style). A finished episode's env is frozen (its last observation keeps being passed, its reward
    ignored) until all are done. ``on_step(t, obs_before, actions)`` sees every step. -> returns per seed."""
    envs = [make_env() for _ in seeds]
    obs = np.stack([e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)])
    n = len(envs)
    returns = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    start = np.ones(n, dtype=bool)
    t = 0
    from tqdm import tqdm

    bar = tqdm(desc="episodes", unit="step", disable=not progress)
    while not done.all():
        actions, _ = predict(obs, None, start, True)
        actions = np.asarray(actions, np.float32).reshape(n, -1)
        if on_step is not None:
            on_step(t, obs, actions)
        start[:] = False
        for i, env in enumerate(envs):
            if done[i]:
                continue
            o, r, term, trunc, _ = env.step(actions[i])
            if not math.isfinite(r):
                raise UserError(f"the real env returned a non-finite reward at step {t} of episode {i}")
            returns[i] += r
            obs[i] = o
            done[i] = term or trunc
        t += 1
        bar.update(1)
    bar.close()
    for e in envs:
        e.close()
    return returns.tolist()


def random_policy(action_space: gym.spaces.Box, seed: int) -> Policy:
    rng = np.random.default_rng(seed)

    def predict(obs, state=None, episode_start=None, deterministic=False):
        return rng.uniform(action_space.low, action_space.high, size=(len(obs), *action_space.shape)).astype(
            np.float32), None

    return predict


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class PlanConfig:
    checkpoint: str
    out: str
    env_id: str = PIXEL_PENDULUM_ID
    planner: str = "cem"
    tailor: bool = True
    episodes: int = 10
    seed: int = 0
    horizon: int = 15
    population: int = 128
    iterations: int = 3
    replan_every: int = 1
    max_steps: int | None = None
    reward: RewardSpec = RewardSpec()
    video: bool = True
    device: str = "auto"
    progress: bool = True
    precision: str = "float32"  # of the candidate rollouts: float32 | bfloat16 (see WorldModel)


def run_plan(cfg: PlanConfig, wm: WorldModel | None = None, wm_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """MPC on ``cfg.episodes`` seeded real-env episodes (all planned in one batch); writes results.json and
    (``video``) ``episode0.mp4``: the real frames beside the model's prediction of each of them."""
    from noether_rl.eval import side_by_side_video
    from noether_rl.eval.results import write_results

    if cfg.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {cfg.episodes}")
    if cfg.precision not in ("float32", "bfloat16"):
        raise UserError(f"--precision must be float32 or bfloat16, got {cfg.precision!r}")
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if wm is None:
        wm, wm_info = load_world_model(cfg.checkpoint, cfg.reward, device, out)
    wm.precision = cfg.precision  # type: ignore[assignment]
    probe = make_real_env(cfg.env_id, wm.obs_shape, cfg.max_steps)
    space = probe.action_space
    probe.close()
    planner = make_planner(cfg.planner, cfg.horizon, space.low, space.high, population=cfg.population,
                           iterations=cfg.iterations, seed=cfg.seed, device=device)
    agent = MPCAgent(wm, planner, MPCConfig(replan_every=cfg.replan_every, tailor=cfg.tailor,
                                            record_imagined=cfg.video))
    real, imagined = [], []

    def on_step(t, obs, actions):
        real.append(obs[0].copy())
        if agent.imagined_next is not None:
            imagined.append(agent.imagined_next[0].copy())

    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    t0 = time.perf_counter()
    returns = run_episodes(agent.predict, lambda: make_real_env(cfg.env_id, wm.obs_shape, cfg.max_steps), seeds,
                           on_step=on_step, progress=cfg.progress)
    wall = time.perf_counter() - t0
    video = None
    if cfg.video and len(imagined) > 1:
        # imagined[t] predicts the frame after real[t], i.e. real[t+1]
        video = side_by_side_video({"real": np.stack(real[1:]), "imagined": np.stack(imagined[:-1])},
                                   out / "episode0.mp4", fps=20, scale=4)
    results = {
        "command": "plan", "config": asdict(cfg), "device": str(device), "world_model": wm_info,
        "seeds": seeds, "returns": mean_se(returns), "stats": agent.stats(),
        "control_rate_hz": agent.stats()["control_rate_hz"], "envs_per_call": len(seeds),
        "video": str(video) if video else None, "wall_time_s": wall,
    }
    write_results(out / "results.json", results)
    return results


# ----------------------------------------------------------------------------------------- dream-train
@dataclass(frozen=True)
class DreamConfig:
    checkpoint: str
    out: str
    algo: str = "ppo"
    steps: int = 20000
    env_id: str = PIXEL_PENDULUM_ID
    n_envs: int = 8
    tailor: bool = True
    max_episode_steps: int = 200
    eval_episodes: int = 10
    eval_max_steps: int | None = None  # real-env episode length (default: the env's)
    seed: int = 0
    reward: RewardSpec = RewardSpec()
    device: str = "auto"
    progress: bool = True


def _agent_key(cfg: DreamConfig) -> dict[str, Any]:
    """What a saved agent was trained with: the world model's and reward model's contents and the SB3 settings."""
    reward = cfg.reward.path if cfg.reward.kind == "learned" and cfg.reward.path else None
    return {"checkpoint_sha256": sha256_file(cfg.checkpoint),
            "reward": sha256_file(reward) if reward and Path(reward).is_file() else cfg.reward.kind,
            "algo": cfg.algo, "steps": cfg.steps, "n_envs": cfg.n_envs, "seed": cfg.seed, "tailor": cfg.tailor,
            "max_episode_steps": cfg.max_episode_steps, "env_id": cfg.env_id}


def run_dream_train(cfg: DreamConfig, wm: WorldModel | None = None,
                    wm_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train an SB3 agent inside the world model (contexts: the real env's first ``n_past`` frames under
    random actions), save it (``agent.zip``; SB3's training metrics in ``sb3/progress.csv``, nothing written
    outside ``out``), evaluate it on seeded real-env episodes; writes results.json. A finished ``agent.zip``
    is reused by a rerun only when ``agent.json`` says it was trained with the same world model and reward
    (sha256) and SB3 settings. The real-env evaluation runs through :func:`run_episodes`, not SB3's
    ``evaluate_policy``: one episode per seed ``seed, seed+1, ...`` (the seeds of ``plan`` and of the demo's
    other rows, so returns pair per episode; ``evaluate_policy`` plays several episodes per env through
    autoreset, whose starts are not seeded one by one). The saved agent works in ``evaluate_policy`` too."""
    from noether_rl.agents.dream import load_agent, make_sb3_agent
    from noether_rl.agents.model_env import EnvContexts, SB3WorldModelVecEnv, WorldModelVectorEnv
    from noether_rl.eval.results import write_results
    from noether_rl.utils.io import atomic_output_path

    if cfg.algo not in ("ppo", "sac"):
        raise UserError(f"--algo must be ppo or sac, got {cfg.algo!r}")
    if cfg.steps < 1 or cfg.n_envs < 1:
        raise UserError("--steps and --n-envs must be >= 1")
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if wm is None:
        wm, wm_info = load_world_model(cfg.checkpoint, cfg.reward, device, out)
    probe = make_real_env(cfg.env_id, wm.obs_shape)
    space = probe.action_space
    probe.close()
    agent_path = out / "agent.zip"
    key = _agent_key(cfg)
    t0 = time.perf_counter()
    if agent_path.is_file() and read_json_or_none(out / "agent.json") == key:
        model = load_agent(cfg.algo, agent_path, device)
        reused = True
    else:
        contexts = EnvContexts(lambda: make_real_env(cfg.env_id, wm.obs_shape), wm.n_past)
        venv = SB3WorldModelVecEnv(WorldModelVectorEnv(wm, contexts, space, cfg.n_envs,
                                                       max_episode_steps=cfg.max_episode_steps, tailor=cfg.tailor))
        venv.seed(cfg.seed)
        model = make_sb3_agent(cfg.algo, venv, seed=cfg.seed, device=device, steps=cfg.steps, log_dir=out / "sb3")
        model.learn(cfg.steps, progress_bar=False)
        with atomic_output_path(agent_path) as tmp:
            model.save(tmp)
            # SB3 appends .zip when missing; tmp already ends with .zip
        atomic_write_json(out / "agent.json", key)  # what the agent was trained in (a rerun reuses it only then)
        reused = False
    train_wall = time.perf_counter() - t0

    seeds = [cfg.seed + i for i in range(cfg.eval_episodes)]  # the same seeds as `plan` (paired comparisons)

    def predict(obs, state=None, episode_start=None, deterministic=True):
        return model.predict(obs, deterministic=True)

    returns = run_episodes(predict, lambda: make_real_env(cfg.env_id, wm.obs_shape, cfg.eval_max_steps), seeds,
                           progress=cfg.progress)
    results = {"command": "dream-train", "config": asdict(cfg), "device": str(device), "world_model": wm_info,
               "agent": str(agent_path), "sb3_log": str(out / "sb3" / "progress.csv"), "reused_agent": reused,
               "train_wall_time_s": train_wall,
               "eval_seeds": seeds, "returns": mean_se(returns)}
    write_results(out / "results.json", results)
    return results


__all__ = ["DreamConfig", "PlanConfig", "REWARDS", "RewardSpec", "build_reward", "load_world_model",
           "make_real_env", "mean_se", "random_policy", "run_dream_train", "run_episodes", "run_plan"]
