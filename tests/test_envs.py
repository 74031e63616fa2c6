"""noether_rl/PixelPendulum-v0: API checkers, dynamics identical to Pendulum-v1, frames, info state."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import noether_rl  # noqa: F401  (registers the env ids)
from noether_rl.envs import PIXEL_PENDULUM_ID


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")
    warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")


def test_registered_with_time_limit() -> None:
    env = gym.make(PIXEL_PENDULUM_ID)
    assert env.spec is not None and env.spec.max_episode_steps == 200
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    for t in range(200):
        obs, r, term, trunc, info = env.step(np.zeros(1, np.float32))
        assert not term
        assert trunc == (t == 199)


def test_gymnasium_env_checker() -> None:
    env = gym.make(PIXEL_PENDULUM_ID, render_mode="rgb_array")
    gym_check_env(env.unwrapped)
    gym_check_env(env)


def test_sb3_env_checker() -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make(PIXEL_PENDULUM_ID))


def test_dynamics_and_reward_match_pendulum_v1() -> None:
    ours = gym.make(PIXEL_PENDULUM_ID, size=32).unwrapped
    ref = gym.make("Pendulum-v1").unwrapped
    _, info = ours.reset(seed=3)
    ref.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-2, 2, size=1).astype(np.float32)
        _, r, _, _, info = ours.step(a)
        ref_obs, ref_r, _, _, _ = ref.step(a)
        assert r == pytest.approx(float(ref_r))
        theta = np.arctan2(ref_obs[1], ref_obs[0])
        assert info["state"][0] == pytest.approx(theta, abs=1e-5)
        assert info["state"][1] == pytest.approx(ref_obs[2], abs=1e-5)


def test_state_option_and_info() -> None:
    env = gym.make(PIXEL_PENDULUM_ID, size=32)
    _, info = env.reset(seed=0, options={"state": [2 * np.pi + 0.25, -0.5]})
    assert info["state"].dtype == np.float32
    np.testing.assert_allclose(info["state"], [0.25, -0.5], atol=1e-6)
    _, info = env.reset(seed=0, options={"state": [np.pi, 0.0]})
    assert -np.pi <= info["state"][0] < np.pi + 1e-6


def test_frames_show_the_rod_where_theta_points() -> None:
    env = gym.make(PIXEL_PENDULUM_ID, size=64, render_mode="rgb_array")
    red = {}
    for name, theta in (("up", 0.0), ("down", np.pi), ("left", np.pi / 2)):
        obs, _ = env.reset(seed=0, options={"state": [theta, 0.0]})
        np.testing.assert_array_equal(obs, env.render())
        mask = (obs[..., 0] > 150) & (obs[..., 1] < 120)
        ys, xs = np.nonzero(mask)
        red[name] = (ys.mean(), xs.mean())
    assert red["up"][0] < 28 < 36 < red["down"][0]  # rows: up is above the pivot
    assert red["left"][1] < 28  # positive theta is counter-clockwise: rod to the left


def test_size_kwarg_and_determinism() -> None:
    a = gym.make(PIXEL_PENDULUM_ID, size=48)
    b = gym.make(PIXEL_PENDULUM_ID, size=48)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    assert oa.shape == (48, 48, 3)
    np.testing.assert_array_equal(oa, ob)
    for _ in range(5):
        oa = a.step(np.array([1.0], np.float32))[0]
        ob = b.step(np.array([1.0], np.float32))[0]
    np.testing.assert_array_equal(oa, ob)
