"""Data aggregation: the policy's own episodes as recording shards, spliced into a recording's training part."""

from __future__ import annotations

import numpy as np
import pytest

from noether_rl.agents.aggregation import record_policy_episodes, spliced_recording, with_action_noise
from noether_rl.agents.runs import make_real_env
from noether_rl.data import episode_split, load_manifest, open_episode
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.errors import UserError
from noether_rl.recorders import RecordConfig, record


def _env():
    return make_real_env(PIXEL_PENDULUM_ID, (8, 8, 3), 5)


def _policy(scale: float):
    def predict(obs, state=None, episode_start=None, deterministic=False):
        assert obs.shape[1:] == (8, 8, 3)  # one batch of all envs per step
        return np.full((len(obs), 1), scale, np.float32) * obs.mean((1, 2, 3))[:, None] / 255, None
    return predict


def test_recorded_policy_episodes_are_valid_shards_with_the_returns(tmp_path):
    rets = record_policy_episodes(_policy(2.0), _env, [3, 4], 5, tmp_path / "x", first_index=1)
    again = record_policy_episodes(_policy(2.0), _env, [3, 4], 5, tmp_path / "y", first_index=1)
    assert rets == again and len(rets) == 2
    for i, r in zip((1, 2), rets):
        ep = np.load(tmp_path / "x" / f"episode_{i:05d}.npz")
        assert ep["frames"].shape == (6, 8, 8, 3) and ep["actions"].shape == (5, 1) and ep["states"].shape == (6, 2)
        assert ep["rewards"].sum() == pytest.approx(r, rel=1e-5)
        np.testing.assert_array_equal(ep["frames"], np.load(tmp_path / "y" / f"episode_{i:05d}.npz")["frames"])
    assert not (tmp_path / "x" / "episode_00000.npz").exists()


def test_spliced_recording_puts_the_extra_episodes_after_the_training_ones(tmp_path):
    base = record(RecordConfig(env_id=PIXEL_PENDULUM_ID, policy="random", episodes=3, steps=5, size=8, seed=0,
                               out=tmp_path / "base", progress=False))
    record_policy_episodes(_policy(-1.0), _env, [7, 8], 5, tmp_path / "extra")
    out = spliced_recording(base, tmp_path / "extra", 2, 2, tmp_path / "mix")
    m = load_manifest(out)
    assert m["episodes"] == 5 and m["complete"]
    order = [("base", 0), ("base", 1), ("extra", 0), ("extra", 1), ("base", 2)]
    for j, (src, i) in enumerate(order):
        want = np.load(tmp_path / src / f"episode_{i:05d}.npz")["actions"]
        np.testing.assert_array_equal(open_episode(out, j)["actions"], want)  # sha256 checked too
    split = episode_split(5, 2 + 2, 1)  # the base's validation / test episodes keep their place at the end
    assert split.test == [] and split.val == [4]
    with pytest.raises(UserError, match="missing episode"):
        spliced_recording(base, tmp_path / "extra", 3, 2, tmp_path / "bad")


def test_bad_input_and_non_finite_actions_are_refused(tmp_path):
    with pytest.raises(UserError, match="at least one seed"):
        record_policy_episodes(_policy(1.0), _env, [], 5, tmp_path / "x")

    def nan_policy(obs, state=None, episode_start=None, deterministic=False):
        return np.full((len(obs), 1), np.nan, np.float32), None

    with pytest.raises(RuntimeError, match="non-finite action"):
        record_policy_episodes(nan_policy, _env, [1], 5, tmp_path / "y")
    base = record(RecordConfig(env_id=PIXEL_PENDULUM_ID, policy="random", episodes=2, steps=5, size=8, seed=0,
                               out=tmp_path / "base", progress=False))
    record_policy_episodes(_policy(1.0), lambda: make_real_env(PIXEL_PENDULUM_ID, (8, 8, 3), 4), [1], 4,
                           tmp_path / "short")
    with pytest.raises(UserError, match="has 5 steps"):  # an episode of another length
        spliced_recording(base, tmp_path / "short", 1, 1, tmp_path / "mix")


def test_action_noise_is_seeded_clipped_and_zero_means_unchanged():
    def const(obs, state=None, episode_start=None, deterministic=False):
        return np.full((len(obs), 1), 1.5, np.float32), "s"

    obs = np.zeros((4000, 2, 2, 3), np.uint8)
    low, high = np.array([-2.0], np.float32), np.array([2.0], np.float32)
    assert with_action_noise(const, 0.0, low, high, 0) is const
    a1, st = with_action_noise(const, 1.0, low, high, 7)(obs)
    a2, _ = with_action_noise(const, 1.0, low, high, 7)(obs)
    a3, _ = with_action_noise(const, 1.0, low, high, 8)(obs)
    assert st == "s" and a1.dtype == np.float32 and a1.shape == (4000, 1)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)
    assert a1.min() >= -2.0 and a1.max() <= 2.0 and (a1 == 2.0).mean() > 0.2  # 1.5 + N(0, 1) > 2 about 31 %
    inside = a1[a1 < 2.0]
    assert abs(np.median(a1) - 1.5) < 0.1 and inside.std() > 0.5
    with pytest.raises(UserError, match="sigma"):
        with_action_noise(const, -1.0, low, high, 0)
