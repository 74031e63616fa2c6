"""The synthetic ramp env: Gymnasium contract, physics, headless drawing, recording into the dataset format."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from noether_rl.envs import SYNTHETIC_RAMP_ID
from noether_rl.envs.ramp import G, SyntheticRampEnv
from noether_rl.errors import UserError

ZERO = np.zeros(1, dtype=np.float32)


def _rollout(env: SyntheticRampEnv, seed: int, steps: int = 21) -> tuple[np.ndarray, np.ndarray]:
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["full_state"]]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(ZERO)
        assert reward == 0.0 and not term and not trunc
        frames.append(obs)
        states.append(info["full_state"])
    return np.stack(frames), np.stack(states)


def test_check_env_passes() -> None:
    for kw in ({}, {"occluder_prob": 1.0, "size": 32}):
        env = gym.make(SYNTHETIC_RAMP_ID, render_mode="rgb_array", **kw)
        check_env(env.unwrapped, skip_render_check=False)
        env.close()


def test_registered_spaces_and_episode_length() -> None:
    env = gym.make(SYNTHETIC_RAMP_ID, size=32)
    assert env.observation_space.shape == (32, 32, 3) and env.observation_space.dtype == np.uint8
    assert env.action_space == gym.spaces.Discrete(1) and env.action_space.sample() == 0
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and info["state"].shape == (2,) and info["state"].dtype == np.float32
    n = 0
    while True:
        *_, term, trunc, _ = env.step(ZERO)
        n += 1
        if term or trunc:
            break
    assert n == 21 and trunc  # 22 frames = 2 conditioning + 20 predicted
    env.close()


def test_seeded_and_randomised() -> None:
    env = SyntheticRampEnv(size=32)
    f0, s0 = _rollout(env, 3)
    f1, s1 = _rollout(env, 3)
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(s0, s1)
    f2, _ = _rollout(env, 4)
    assert not np.array_equal(f0, f2)
    assert len({(b.shape, b.color) for seed in range(12) for b in (env.reset(seed=seed) and env.bodies)}) > 12
    assert f0[0].std() > 10 and not np.array_equal(f0[0], f0[-1])  # a drawn scene that moves


def test_physics_slide_collision_and_friction() -> None:
    env = SyntheticRampEnv(size=32)
    env.reset(seed=0)
    slider, target = env.bodies
    s0, a = slider.s, G * (math.sin(env.angle) - slider.mu * math.cos(env.angle))
    assert a > 0 and target.v == 0.0
    env.step(ZERO)
    t = 1 / env.fps
    assert slider.v == pytest.approx(a * t, rel=1e-6)  # uniform acceleration on the incline
    assert slider.s - s0 == pytest.approx(0.5 * a * t * t, rel=1e-6)
    # a collision on the table conserves momentum and applies the restitution
    env.reset(seed=1)
    slider, target = env.bodies
    slider.s, slider.v = target.s - target.half - slider.half + 1e-4, 1.0
    slider.mu = target.mu = 0.0
    p_before = slider.mass * slider.v
    env._physics(1e-3)
    assert target.v > 0
    assert slider.mass * slider.v + target.mass * target.v == pytest.approx(p_before, rel=1e-9)
    assert target.v - slider.v == pytest.approx(env.restitution * 1.0, rel=1e-9)
    # friction stops objects on the table, never reverses them
    env.reset(seed=2)
    _, states = _rollout(env, 2, steps=80)
    assert (states[:, 1] >= 0).all() and (states[:, 3] >= 0).all() and states[-1, 3] == 0.0
    assert states[:, 3].max() > 0  # the resting object was hit


def test_occluder_enters_in_front() -> None:
    plain, occl = SyntheticRampEnv(size=32), SyntheticRampEnv(size=32, occluder_prob=1.0)
    fp, sp = _rollout(plain, 5)
    fo, so = _rollout(occl, 5)
    np.testing.assert_array_equal(sp, so)  # same scene, only the occluder differs
    assert occl.occluder is not None and not np.array_equal(fp, fo)


def test_actions_are_rejected() -> None:
    env = SyntheticRampEnv(size=16)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(ZERO)
    env.reset(seed=0)
    with pytest.raises(UserError, match="no actions"):
        env.step(np.ones(1, dtype=np.float32))
    with pytest.raises(UserError, match="no actions"):
        env.step(np.zeros(2, dtype=np.float32))
    env.step(0)
    env.step(np.zeros(1, dtype=np.float32))
    with pytest.raises(ValueError):
        SyntheticRampEnv(angle_range=(30, 10))


def test_draws_headless_without_touching_sdl_env() -> None:
    code = (
        "import os\n"
        "import noether_rl.envs.ramp as r, numpy as np\n"
        "os.environ.pop('SDL_VIDEODRIVER', None)\n"
        "env = r.SyntheticRampEnv(size=24)\n"
        "obs, _ = env.reset(seed=0)\n"
        "obs, *_ = env.step(np.zeros(1, np.float32))\n"
        "assert obs.shape == (24, 24, 3) and obs.std() > 5\n"
        "print('SDL_VIDEODRIVER' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_recorded_with_the_zero_policy(tmp_path: Path) -> None:
    from noether_rl.data import verify_recording, windows
    from noether_rl.recorders import RecordConfig, record

    window_cls = getattr(windows, "EpisodeWindows", None) or windows.WindowDataset  # the one window dataset

    cfg = RecordConfig(env_id=SYNTHETIC_RAMP_ID, policy="zero", episodes=2, steps=21, size=32, seed=0,
                       out=tmp_path / "ramp", num_envs=1, preview=False, progress=False)
    record(cfg)
    manifest = verify_recording(tmp_path / "ramp")
    assert manifest["env_id"] == SYNTHETIC_RAMP_ID and manifest["action_dim"] == 1
    ds = window_cls(tmp_path / "ramp", n_past=2, n_future=20)
    assert len(ds) == 2
    item = ds[0]
    assert item["frames"].shape == (22, 3, 32, 32) and not item["actions"].any()
    frames, _ = _rollout(SyntheticRampEnv(size=32), seed=_episode_seed(0))
    np.testing.assert_array_equal((item["frames"].permute(0, 2, 3, 1) * 255).round().byte().numpy(), frames)
    with pytest.raises(UserError, match="no actions"):
        record(RecordConfig(env_id=SYNTHETIC_RAMP_ID, policy="random", episodes=1, steps=5, size=16, seed=0,
                            out=tmp_path / "bad", num_envs=1, progress=False))


def _episode_seed(i: int) -> int:
    from noether_rl.recorders import episode_seeds

    return episode_seeds(0, i)[0]
