"""MPC with a perfect model of a tiny synthetic pixel system beats random inside SB3's evaluate_policy."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from noether_rl.agents.mpc import MPCAgent, MPCConfig
from noether_rl.agents.planners import CEM, ICEM, MPPI, CEMConfig, ICEMConfig, MPPIConfig
from noether_rl.agents.reward import FunctionReward
from noether_rl.agents.world_model import WorldModel
from noether_rl.errors import UserError
from noether_rl.noether import Prediction

SIDE, TARGET, STEP = 8, 0.5, 0.25


def render(x: np.ndarray) -> np.ndarray:
    """Position x in [-1, 1] as the brightness of channel 0 of an 8x8 frame (uint8 [..., 8, 8, 3])."""
    v = np.round((np.asarray(x) + 1) / 2 * 255).astype(np.uint8)
    out = np.zeros((*v.shape, SIDE, SIDE, 3), np.uint8)
    out[..., 0] = v[..., None, None]
    return out


def decode(frames: torch.Tensor) -> torch.Tensor:  # [..., 3, 8, 8] in [0, 1] -> x
    return frames[..., 0, :, :].mean((-1, -2)) * 2 - 1


class DotEnv(gymnasium.Env):
    """x' = clip(x + 0.25 u, -1, 1); reward -|x' - 0.5|; 20 steps."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return render(np.float32(self.x)), {}

    def step(self, a):
        self.x = float(np.clip(self.x + STEP * float(np.clip(a, -1, 1)[0]), -1, 1))
        self.t += 1
        return render(np.float32(self.x)), -abs(self.x - TARGET), False, self.t >= 20, {}


class PerfectDot(nn.Module):
    """The exact dynamics behind the Predictor protocol (reads x off the last context frame)."""

    stochastic = False

    def adaptables(self, batch_size, horizon, *, kind, device=None, dtype=None):
        return {}

    def rollout(self, context, actions, horizon, *, adapt=None, generator=None, target=None):
        x = decode(context[:, -1])
        P = context.shape[1]
        frames = []
        for t in range(horizon):
            x = (x + STEP * actions[:, P - 1 + t, 0].clamp(-1, 1)).clamp(-1, 1)
            frames.append(torch.from_numpy(render(x.numpy())).permute(0, 3, 1, 2).float() / 255)
        return Prediction(pred=torch.stack(frames, 1))


def perfect_world_model(nan: bool = False) -> WorldModel:
    def reward(a, x):
        r = -(decode(x) - TARGET).abs()
        return torch.where(a[:, 0] > 0.9, torch.full_like(r, math.nan), r) if nan else r

    return WorldModel(PerfectDot(), FunctionReward(reward), n_past=2, action_dim=1, frame_shape=(3, SIDE, SIDE))


def _planner(name: str, seed: int = 0):
    return {"cem": lambda: CEM(6, [-1.0], [1.0], CEMConfig(population=32, elites=4, iterations=3), seed=seed),
            "icem": lambda: ICEM(6, [-1.0], [1.0], ICEMConfig(population=32, elites=4, iterations=3), seed=seed),
            "mppi": lambda: MPPI(6, [-1.0], [1.0], MPPIConfig(population=32, iterations=3), seed=seed)}[name]()


class RandomPolicy:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return self.rng.uniform(-1, 1, size=(obs.shape[0], 1)).astype(np.float32), None


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
def test_mpc_with_perfect_model_beats_random_in_evaluate_policy(name):
    venv = DummyVecEnv([lambda: Monitor(DotEnv())] * 2)
    venv.seed(0)
    agent = MPCAgent(perfect_world_model(), _planner(name), MPCConfig(replan_every=2))
    mpc, mpc_std = evaluate_policy(agent, venv, n_eval_episodes=4, deterministic=True)
    venv.seed(0)
    rnd, rnd_std = evaluate_policy(RandomPolicy(0), venv, n_eval_episodes=4)
    assert mpc > rnd + 3.0, (mpc, rnd)
    assert mpc > -4.0  # reaches the target within ~6 steps from anywhere and stays there
    st = agent.stats()
    assert st["plan_calls"] > 0 and st["control_rate_hz"] > 0 and st["nonfinite_scores"] == 0


def test_single_env_predict_replans_and_records_imagined():
    env = DotEnv()
    agent = MPCAgent(perfect_world_model(), _planner("cem"), MPCConfig(replan_every=3, record_imagined=True))
    obs, _ = env.reset(seed=1)
    for _ in range(6):
        a, state = agent.predict(obs)
        assert a.shape == (1,) and -1 <= a[0] <= 1 and state is None
        obs, *_ = env.step(a)
        assert np.abs(agent.imagined_next[0].astype(int) - obs.astype(int)).max() <= 1  # perfect model
    assert agent.plan_calls == 2
    with pytest.raises(UserError, match="uint8 observations"):
        agent.predict(np.zeros((16, 16, 3), np.uint8))


def test_nan_rewards_from_the_model_do_not_crash_the_planner():
    env = DotEnv()
    agent = MPCAgent(perfect_world_model(nan=True), _planner("icem"), MPCConfig())
    obs, _ = env.reset(seed=2)
    for _ in range(4):
        a, _ = agent.predict(obs)
        assert np.isfinite(a).all() and a[0] <= 0.9  # candidates with a NaN score are never chosen
        obs, *_ = env.step(a)
    assert agent.stats()["nonfinite_scores"] > 0


@pytest.mark.parametrize("every,per_plan", [("plan", 1), ("iteration", 3)])
def test_mpc_tailors_once_per_planning_step_on_the_warm_start(every, per_plan):
    from test_agents_world_model import tiny_world_model

    wm = tiny_world_model()
    calls: list[torch.Tensor] = []
    inner = wm._tailored

    def counting(context, actions, horizon, generator, *rest):
        calls.append(actions[:, wm.n_past - 1:].clone())
        return inner(context, actions, horizon, generator, *rest)

    wm._tailored = counting  # type: ignore[method-assign]
    planner = CEM(3, [-2.0], [2.0], CEMConfig(population=8, elites=2, iterations=3), seed=0)
    agent = MPCAgent(wm, planner, MPCConfig(tailor_every=every))
    obs = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    agent.predict(obs)
    assert len(calls) == per_plan and calls[0].shape == (2, 3, 1)
    mean_after_first = planner.warm_start(2)
    agent.predict(obs)
    assert len(calls) == 2 * per_plan
    if every == "plan":  # tailored on the previous plan shifted by the one executed step
        shifted = torch.cat([mean_after_first[:, 1:], torch.zeros(2, 1, 1)], 1)
        torch.testing.assert_close(calls[1], shifted)
