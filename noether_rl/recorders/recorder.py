"""Record scripted-policy episodes of a pixel env to disk (one ``.npz`` shard per episode + manifest).

Determinism: episode ``i`` uses ``np.random.SeedSequence(seed, spawn_key=(i,))`` for both its env reset
seed and its policy rng, and shards are written byte-deterministically, so a recording depends only on
its config (not on ``num_envs`` nor on interruptions).

Parallelism: with ``num_envs = K > 1`` whole episodes (step, draw, compress, write) run in ``K`` worker
processes. On 2 cores this beats a vector env stepping in lockstep because zlib compression of the
shards, not the physics, dominates, and it parallelises too.

Reliability: the manifest (config, ``complete: false``) is written first; each shard is written
atomically; a rerun of the same command skips shards that are present and valid, removes stray temp
files, and finishes byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import logging
import multiprocessing as mp
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import noether_rl.envs  # noqa: F401  (registers the package's environment ids)
from noether_rl._version import __version__
from noether_rl.data.recording import (
    CONFIG_KEYS,
    FORMAT_VERSION,
    MANIFEST,
    check_shard_matches,
    preview_name,
    read_shard,
    shard_name,
    write_npz,
)
from noether_rl.errors import DataError, UserError
from noether_rl.recorders.policies import POLICIES, PolicyFactory
from noether_rl.utils.io import atomic_open, atomic_output_path, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

PREVIEW_EPISODES = 3
PREVIEW_SCALE = 4
PREVIEW_FPS = 20
_SHARD_RE = re.compile(r"^episode_(\d{5})\.npz$")
_PREVIEW_RE = re.compile(r"^preview_(\d{5})\.mp4$")
_TMP_RE = re.compile(
    r"^(\.(manifest\.json|episode_\d{5}\.npz|preview_\d{5}\.mp4)\..*\.tmp(\.mp4)?|\.write-probe\..*)$"
)


@dataclass(frozen=True)
class RecordConfig:
    """What to record. Only ``env_id, policy, episodes, steps, size, seed`` define the output bytes.

    Args:
        env_id: Gymnasium id of a pixel env (``info["state"]`` = true state), e.g. ``noether_rl/PixelPendulum-v0``.
        policy: a name in :data:`noether_rl.recorders.POLICIES`.
        episodes, steps: number of episodes and steps per episode (frames per episode = steps + 1).
        size: frame height = width in pixels.
        seed: root seed; episode ``i`` is seeded from ``(seed, i)``.
        out: output directory (created; must be empty, or hold this same recording to resume).
        num_envs: worker processes recording episodes in parallel.
        preview: also write mp4 previews of the first few episodes.
        progress: show a tqdm progress bar.
    """

    env_id: str
    policy: str
    episodes: int
    steps: int
    size: int
    seed: int
    out: str | os.PathLike[str]
    num_envs: int = 1
    preview: bool = False
    progress: bool = True


# ------------------------------------------------------------------------------------------ seeding
def episode_seeds(seed: int, i: int) -> tuple[int, np.random.Generator]:
    """(env reset seed, policy rng) of episode ``i``, derived from ``(seed, i)`` only."""
    env_ss, policy_ss = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(2)
    return int(env_ss.generate_state(1, np.uint32)[0]), np.random.default_rng(policy_ss)


# ---------------------------------------------------------------------------------------- validation
def _validate(cfg: RecordConfig) -> None:
    for name in ("episodes", "steps", "size", "num_envs"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if cfg.size < 8:
        raise UserError(f"size must be at least 8 pixels, got {cfg.size}")
    if cfg.episodes > 99999:
        raise UserError(f"episodes must be at most 99999, got {cfg.episodes}")
    if not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if cfg.policy not in POLICIES:
        raise UserError(f"unknown policy {cfg.policy!r}; choose from {', '.join(sorted(POLICIES))}")
    if cfg.env_id not in gym.registry:
        ours = sorted(k for k in gym.registry if k.startswith("noether_rl/"))
        raise UserError(f"unknown env {cfg.env_id!r}; available: {', '.join(ours)}")


def make_env_kwargs(cfg: RecordConfig) -> dict[str, Any]:
    """Keyword arguments for ``gymnasium.make`` (spec kwargs, frame size, episode length)."""
    spec = gym.spec(cfg.env_id)
    return {**spec.kwargs, "size": int(cfg.size), "max_episode_steps": int(cfg.steps)}


def make_env(cfg: RecordConfig) -> gym.Env:
    try:
        env = gym.make(cfg.env_id, **make_env_kwargs(cfg))
    except (TypeError, ValueError, gym.error.Error) as e:
        raise UserError(f"cannot make env {cfg.env_id!r} with size={cfg.size}: {e}") from None
    shape = env.observation_space.shape
    if shape != (cfg.size, cfg.size, 3) or env.observation_space.dtype != np.uint8:
        env.close()
        raise UserError(f"env {cfg.env_id!r} does not give uint8 RGB frames [{cfg.size}, {cfg.size}, 3]")
    return env


def config_dict(cfg: RecordConfig) -> dict[str, Any]:
    """The manifest fields that define a recording (compared on resume)."""
    return {
        "format_version": FORMAT_VERSION,
        "env_id": cfg.env_id,
        "env_kwargs": make_env_kwargs(cfg),
        "policy": cfg.policy,
        "seed": int(cfg.seed),
        "episodes": int(cfg.episodes),
        "steps": int(cfg.steps),
        "size": int(cfg.size),
    }


# ------------------------------------------------------------------------------------------ episodes
def run_episode(env: gym.Env, factory: PolicyFactory, seed: int, i: int, steps: int) -> dict[str, np.ndarray]:
    """Roll out episode ``i``. Returns the shard arrays (frames uint8 [T+1, H, W, 3], actions [T, A], ...)."""
    reset_seed, rng = episode_seeds(seed, i)
    obs, info = env.reset(seed=reset_seed)
    policy = factory(rng)
    a_dim = int(np.prod(env.action_space.shape))
    frames = np.empty((steps + 1, *obs.shape), dtype=np.uint8)
    states = np.empty((steps + 1, 2), dtype=np.float32)
    actions = np.empty((steps, a_dim), dtype=np.float32)
    rewards = np.empty(steps, dtype=np.float32)
    terminated = np.zeros(steps, dtype=bool)
    truncated = np.zeros(steps, dtype=bool)
    frames[0], states[0] = obs, info["state"]
    for t in range(steps):
        action = np.asarray(policy(obs, info["state"], rng), dtype=np.float32).reshape(a_dim)
        obs, reward, term, trunc, info = env.step(action)
        frames[t + 1], states[t + 1], actions[t], rewards[t] = obs, info["state"], action, reward
        terminated[t], truncated[t] = term, trunc
        if (term or trunc) and t < steps - 1:
            raise UserError(
                f"env {env.spec.id if env.spec else env} ended episode {i} after {t + 1} of {steps} steps"
            )
    return {
        "frames": frames,
        "actions": actions,
        "rewards": rewards,
        "states": states,
        "terminated": terminated,
        "truncated": truncated,
    }


def write_episode(out: Path, i: int, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(out / shard_name(i), "wb") as f:
        write_npz(f, arrays)


# worker-process state (one env per worker)
_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """Exit this worker if the recording process dies (e.g. ``kill -9``) instead of lingering."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_init(cfg: RecordConfig, parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _WORKER["cfg"] = cfg
    _WORKER["env"] = make_env(cfg)


def _worker_record(i: int) -> int:
    cfg: RecordConfig = _WORKER["cfg"]
    arrays = run_episode(_WORKER["env"], POLICIES[cfg.policy], cfg.seed, i, cfg.steps)
    write_episode(Path(cfg.out), i, arrays)
    return i


# ------------------------------------------------------------------------------------- output folder
def _prepare_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"output directory {out} is not writable: {e.strerror or e}") from None


def _scan_dir(out: Path, episodes: int) -> set[int]:
    """Remove stray temp files; return the shard indices present. Raise on foreign files."""
    present: set[int] = set()
    for p in sorted(out.iterdir()):
        name = p.name
        if name == MANIFEST or _PREVIEW_RE.match(name):
            continue
        if _TMP_RE.match(name) and p.is_file():
            p.unlink(missing_ok=True)  # left by an interrupted write
            continue
        m = _SHARD_RE.match(name)
        if m and int(m.group(1)) < episodes and p.is_file():
            present.add(int(m.group(1)))
            continue
        raise UserError(
            f"output directory {out} holds {name!r}, which is not part of this recording; use an empty or new directory"
        )
    return present


def _read_existing_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s is corrupt; re-recording every episode", path)
        return None
    if not isinstance(manifest, dict) or any(k not in manifest for k in CONFIG_KEYS):
        log.warning("%s is corrupt; re-recording every episode", path)
        return None
    return manifest


def _config_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str:
    diffs = [
        f"{k}={found.get(k)!r} (want {expected[k]!r})" for k in CONFIG_KEYS if found.get(k) != expected[k]
    ]
    return ", ".join(diffs)


def _valid_shard(out: Path, i: int, cfg: RecordConfig, a_dim: int, entry: dict[str, Any] | None) -> bool:
    """Trust a shard listed in a complete manifest by its size and sha256; check any other by reading it."""
    path = out / shard_name(i)
    if entry is not None:
        size = path.stat().st_size
        if size == 0 or size != entry.get("bytes", size):  # an empty file can match a bad manifest's hash
            log.warning("re-recording %s: %d bytes", path.name, size)
            return False
        return sha256_file(path) == entry.get("sha256")
    try:
        arrays = read_shard(path)
        check_shard_matches(path, arrays, cfg.steps, cfg.size)
    except DataError as e:
        log.warning("re-recording %s: %s", path.name, e)
        return False
    return arrays["actions"].shape[1] == a_dim


def _manifest(cfg: RecordConfig, a_dim: int, shards: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    return {
        **config_dict(cfg),
        "action_dim": a_dim,
        "episode_seeds": [episode_seeds(cfg.seed, i)[0] for i in range(cfg.episodes)],
        "package_version": __version__,
        "complete": complete,
        "shards": shards,
    }


# ------------------------------------------------------------------------------------------ previews
def write_preview(path: Path, frames: np.ndarray, scale: int = PREVIEW_SCALE, fps: int = PREVIEW_FPS) -> None:
    """Write ``frames`` (uint8 [T, H, W, 3]) as an mp4, upscaled ``scale`` x (nearest), atomically."""
    import imageio.v2 as imageio

    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    with atomic_output_path(path) as tmp:  # temp name: .<name>.XXXX.tmp.mp4
        imageio.mimwrite(tmp, list(big), fps=fps, codec="libx264", quality=8, macro_block_size=1)


def _write_previews(out: Path, cfg: RecordConfig) -> None:
    for i in range(min(PREVIEW_EPISODES, cfg.episodes)):
        path = out / preview_name(i)
        if not path.exists():
            write_preview(path, read_shard(out / shard_name(i))["frames"])


# --------------------------------------------------------------------------------------------- main
def _run_pending(cfg: RecordConfig, env: gym.Env, pending: list[int], done: int) -> None:
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    bar = tqdm(total=cfg.episodes, initial=done, unit="ep", desc="record", disable=not cfg.progress)
    try:
        if cfg.num_envs == 1 or len(pending) <= 1:
            for i in pending:
                write_episode(out, i, run_episode(env, POLICIES[cfg.policy], cfg.seed, i, cfg.steps))
                bar.update(1)
            return
        ctx = mp.get_context("spawn")  # safe with torch/pygame already loaded in the parent
        workers = min(cfg.num_envs, len(pending))
        with cf.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_worker_init, initargs=(cfg, os.getpid())
        ) as pool:
            for _ in pool.map(_worker_record, pending):
                bar.update(1)
    finally:
        bar.close()


def record(cfg: RecordConfig) -> Path:
    """Record ``cfg.episodes`` episodes to ``cfg.out`` (resuming if it holds the same recording).

    Returns the output directory. Raises :class:`UserError` on invalid arguments or an output directory
    that holds something else.
    """
    _validate(cfg)
    out = Path(cfg.out)
    cfg = dataclasses.replace(cfg, out=str(out))
    _prepare_dir(out)
    expected = config_dict(cfg)
    existing = _read_existing_manifest(out)
    if existing is not None and (diff := _config_mismatch(existing, expected)):
        raise UserError(f"output directory {out} holds a different recording ({diff}); use another --out")
    present = _scan_dir(out, cfg.episodes)
    env = make_env(cfg)
    try:
        a_dim = int(np.prod(env.action_space.shape))
        known: dict[str, dict[str, Any]] = {}
        if existing is not None and existing.get("complete") and isinstance(existing.get("shards"), list):
            known = {s["name"]: s for s in existing["shards"] if isinstance(s, dict) and "name" in s}
        else:
            atomic_write_json(out / MANIFEST, _manifest(cfg, a_dim, [], complete=False))
            if existing is None:
                present = set()  # no trusted manifest: re-record every shard (same bytes anyway)
        valid = {i for i in sorted(present) if _valid_shard(out, i, cfg, a_dim, known.get(shard_name(i)))}
        pending = [i for i in range(cfg.episodes) if i not in valid]
        _run_pending(cfg, env, pending, done=len(valid))
    finally:
        env.close()
    if cfg.preview:
        _write_previews(out, cfg)
    shards = [
        {"name": shard_name(i), "sha256": sha256_file(out / shard_name(i)), "length": int(cfg.steps),
         "bytes": (out / shard_name(i)).stat().st_size}
        for i in range(cfg.episodes)
    ]
    atomic_write_json(out / MANIFEST, _manifest(cfg, a_dim, shards, complete=True))
    return out
