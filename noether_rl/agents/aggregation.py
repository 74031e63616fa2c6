"""Data aggregation for model-based RL: record the planner's own real-env episodes and add them to training data.

A world model trained on one policy's data is queried by the planner on other action sequences; model-based
RL methods (PETS, PlaNet, Dreamer) close that gap by alternating: act in the real env with the current model,
add those episodes to the data, retrain. Two pieces, used by ``reproduce pendulum-control``:

- :func:`record_policy_episodes`: seeded real-env episodes of any SB3-style ``predict`` (e.g.
  :meth:`MPCAgent.predict`), all envs stepped in lockstep so the policy sees one batch per step, written as
  recording shards (the recorder's format: frames, actions, rewards, states, terminated, truncated);
- :func:`spliced_recording`: a recording made of a base recording's first ``train`` episodes, then the extra
  episodes, then the base's remaining (validation and test) episodes unchanged, so the base's episode split
  stays valid with ``train_episodes = train + n_extra`` (files are hard links when possible).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from noether_rl.data import load_manifest
from noether_rl.data.recording import MANIFEST, read_shard, shard_name
from noether_rl.errors import UserError
from noether_rl.recorders.recorder import write_episode
from noether_rl.utils.io import atomic_write_json, sha256_file

Predict = Callable[..., tuple[np.ndarray, Any]]


def with_action_noise(predict: Predict, sigma: float, low: np.ndarray, high: np.ndarray, seed: int) -> Predict:
    """``predict`` whose actions get i.i.d. Gaussian noise of std ``sigma`` (clipped to ``[low, high]``, the
    env's action bounds), from its own seeded generator: exploration for collected episodes, so the model also
    sees the effect of actions other than the planner's choice in the states the planner visits. ``sigma`` 0:
    ``predict`` itself. The policy's recurrent ``state`` passes through unchanged."""
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise UserError(f"action noise sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return predict
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(low), np.asarray(high)

    def noisy(observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
              deterministic: bool = False) -> tuple[np.ndarray, Any]:
        action, state = predict(observation, state, episode_start, deterministic)
        action = np.asarray(action)
        return np.clip(action + sigma * rng.standard_normal(action.shape), lo, hi).astype(action.dtype), state

    return noisy


def record_policy_episodes(predict: Predict, make_env: Callable[[], gym.Env], seeds: Sequence[int], steps: int,
                           out: str | os.PathLike[str], first_index: int = 0) -> list[float]:
    """Run one ``steps``-step episode per seed (lockstep: ``predict(obs [n, ...], None, episode_start, True)``),
    write episode ``first_index + i`` of seed ``i`` to ``out`` as a recording shard; -> the episodes' returns.
    The env must put its true state in ``info["state"]`` (the package's pixel envs do) and must not end an
    episode before ``steps``."""
    if not seeds or steps < 1:
        raise UserError(f"need at least one seed and steps >= 1, got {len(seeds)} seeds and steps={steps}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    envs = [make_env() for _ in seeds]
    try:
        resets = [e.reset(seed=int(s)) for e, s in zip(envs, seeds)]
        obs = np.stack([o for o, _ in resets])
        n, a_dim = len(envs), int(np.prod(envs[0].action_space.shape))
        ep: dict[str, np.ndarray] = {
            "frames": np.empty((n, steps + 1, *obs.shape[1:]), np.uint8),
            "states": np.empty((n, steps + 1, np.size(resets[0][1]["state"])), np.float32),
            "actions": np.empty((n, steps, a_dim), np.float32), "rewards": np.empty((n, steps), np.float32),
            "terminated": np.zeros((n, steps), bool), "truncated": np.zeros((n, steps), bool)}
        ep["frames"][:, 0] = obs
        ep["states"][:, 0] = [info["state"] for _, info in resets]
        start = np.ones(n, bool)
        for t in range(steps):
            act, _ = predict(obs, None, start.copy(), True)
            act = np.asarray(act, np.float32).reshape(n, a_dim)
            if not np.isfinite(act).all():
                raise RuntimeError(f"the policy returned a non-finite action at step {t}")
            start[:] = False
            obs = obs.copy()  # a policy may keep the array it was given
            for i, env in enumerate(envs):
                o, r, term, trunc, info = env.step(act[i])
                if not math.isfinite(r):
                    raise RuntimeError(f"the real env returned a non-finite reward at step {t} of seed {seeds[i]}")
                if (term or trunc) and t < steps - 1:
                    raise UserError(f"the env ended the episode of seed {seeds[i]} after {t + 1} of {steps} steps")
                obs[i] = o
                ep["frames"][i, t + 1], ep["states"][i, t + 1] = o, info["state"]
                ep["actions"][i, t], ep["rewards"][i, t], ep["terminated"][i, t], ep["truncated"][i, t] = \
                    act[i], r, term, trunc
    finally:
        for e in envs:
            e.close()
    for i in range(n):
        write_episode(out, first_index + i, {k: v[i] for k, v in ep.items()})
    return ep["rewards"].sum(1).astype(np.float64).tolist()


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to (or else a copy of) ``src``, replaced atomically."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def spliced_recording(base: str | os.PathLike[str], extra: str | os.PathLike[str], n_extra: int, train: int,
                      out: str | os.PathLike[str], tag: str = "extra") -> Path:
    """Write to ``out`` the recording: ``base`` episodes ``[0, train)``, ``extra`` shards ``[0, n_extra)``,
    then ``base`` episodes ``[train, end)``. The extra shards must match the base's frame size and length.
    The manifest names no paths (policy ``"<base policy>+<tag>"``), so a moved copy is the same recording to
    :func:`noether_rl.training.trainer.run_identity`."""
    base, extra, out = Path(base), Path(extra), Path(out)
    m = load_manifest(base)
    if not 0 < train <= m["episodes"]:
        raise UserError(f"train={train} must be in 1..{m['episodes']} (the base recording's episodes)")
    out.mkdir(parents=True, exist_ok=True)
    sources = [base / shard_name(i) for i in range(train)] + [extra / shard_name(i) for i in range(n_extra)] \
        + [base / shard_name(i) for i in range(train, m["episodes"])]
    for src in sources[train: train + n_extra]:
        if not src.is_file():
            raise UserError(f"missing episode {src}")
        a = read_shard(src)
        if a["frames"].shape[:3] != (m["steps"] + 1, m["size"], m["size"]) or len(a["actions"]) != m["steps"]:
            raise UserError(f"{src} has frames {a['frames'].shape} / {len(a['actions'])} actions; the base recording "
                            f"{base} has {m['steps']} steps of {m['size']}x{m['size']} frames")
    (out / MANIFEST).unlink(missing_ok=True)  # the directory is a recording again only when complete
    shards = []
    for j, src in enumerate(sources):
        if not src.is_file():
            raise UserError(f"missing episode {src}")
        dst = out / shard_name(j)
        _link_or_copy(src, dst)
        shards.append({"name": dst.name, "sha256": sha256_file(dst), "length": m["steps"],
                       "bytes": dst.stat().st_size})
    manifest = {k: v for k, v in m.items() if k not in ("shards", "episode_seeds")}
    manifest |= {"policy": f"{m['policy']}+{tag}", "episodes": len(sources), "shards": shards, "complete": True}
    atomic_write_json(out / MANIFEST, manifest)
    load_manifest(out)  # the result must be a valid recording
    return out


__all__ = ["record_policy_episodes", "spliced_recording", "with_action_noise"]
