"""The world model as Gymnasium env, vector env and SB3 VecEnv: checkers, determinism, autoreset, PPO plumbing."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import VecCheckNan

import noether_rl.envs  # noqa: F401
from noether_rl.agents.dream import sb3_logger
from noether_rl.agents.model_env import (
    EnvContexts,
    RecordingContexts,
    SB3WorldModelVecEnv,
    WorldModelEnv,
    WorldModelVectorEnv,
)
from noether_rl.agents.reward import FunctionReward
from noether_rl.agents.world_model import WorldModel
from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork

S, P = 32, 3
ACT = spaces.Box(-2.0, 2.0, (1,), np.float32)


def tiny_wm(noether: bool = False, reward=None, stochastic: bool = False) -> WorldModel:
    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer", stochastic=stochastic,
                        z_dim=4))
    model = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)), NoetherConfig()) \
        if noether else svg
    reward = reward or FunctionReward(lambda a, x: -x.mean((1, 2, 3)) - 0.01 * a.pow(2).sum(-1))
    return WorldModel(model, reward, n_past=P, action_dim=1, frame_shape=(3, S, S))


@pytest.fixture(scope="module")
def contexts():
    return EnvContexts(lambda: gymnasium.make("noether_rl/PixelPendulum-v0", size=S), n_past=P)


@pytest.mark.parametrize("noether", [False, True])
def test_env_passes_gymnasium_and_sb3_checkers(contexts, noether):
    env = WorldModelEnv(tiny_wm(noether), contexts, ACT, max_episode_steps=5)
    gym_check_env(env, skip_render_check=False)
    sb3_check_env(env, warn=False)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (S, S, 3) and obs.dtype == np.uint8
    for t in range(5):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        assert isinstance(r, float) and not term and trunc == (t == 4)
    frame = env.render()
    assert np.array_equal(frame, obs)


def test_env_reset_from_given_context_and_recording(contexts, tiny_recording):
    env = WorldModelEnv(tiny_wm(), RecordingContexts(str(tiny_recording), [0, 1], P), ACT)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (S, S, 3)
    frames, actions = contexts.sample(np.random.default_rng(0), 1)
    obs, _ = env.reset(options={"context": (frames[0], actions[0])})
    assert np.array_equal(obs, frames[0, -1])


def test_nonfinite_reward_raises_or_is_replaced(contexts):
    nan_reward = FunctionReward(lambda a, x: torch.full((x.shape[0],), float("nan")))
    env = WorldModelEnv(tiny_wm(reward=nan_reward), contexts, ACT)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="non-finite"):
        env.step(np.zeros(1, np.float32))
    env = WorldModelEnv(tiny_wm(reward=nan_reward), contexts, ACT, nonfinite_reward=-100.0)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(1, np.float32))
    assert r == -100.0 and info["nonfinite_reward"]


def test_vector_env_matches_single_env_seeded_and_autoresets(contexts):
    wm = tiny_wm()
    venv = WorldModelVectorEnv(wm, contexts, ACT, num_envs=3, max_episode_steps=2)
    obs, _ = venv.reset(seed=5)
    assert obs.shape == (3, S, S, 3) and venv.observation_space.contains(obs)
    frames, actions = contexts.sample(np.random.default_rng(5), 3)  # the same contexts the venv drew
    assert np.array_equal(obs, frames[:, -1])
    acts = np.array([[1.0], [-0.5], [2.0]], np.float32)
    o1, r1, te, tr, info = venv.step(acts)
    assert r1.shape == (3,) and not te.any() and not tr.any() and info == {}
    # each sub-env equals a single env started from the same context under the same action
    single = WorldModelEnv(wm, contexts, ACT)
    for i in range(3):
        single.reset(options={"context": (frames[i], actions[i])})
        o, r, *_ = single.step(acts[i])
        assert np.array_equal(o, o1[i]) and np.isclose(r, r1[i], rtol=1e-5, atol=1e-6)
    o2, r2, te, tr, info = venv.step(acts)
    assert tr.all() and info["_final_obs"].all() and info["final_obs"][0].shape == (S, S, 3)
    assert not np.array_equal(o2, np.stack(list(info["final_obs"])))  # reset within the step (SAME_STEP)
    # same seed -> same rollouts
    again = WorldModelVectorEnv(wm, contexts, ACT, num_envs=3, max_episode_steps=2)
    again.reset(seed=5)
    assert np.array_equal(again.step(acts)[0], o1)
    # tensors stay on the device
    obs_t, r_t, _ = again.step_tensor(torch.zeros(3, 1))
    assert obs_t.dtype == torch.uint8 and obs_t.device == wm.device and r_t.shape == (3,)


def test_sb3_vec_env_trains_ppo_a_few_steps(contexts):
    venv = VecCheckNan(SB3WorldModelVecEnv(WorldModelVectorEnv(tiny_wm(), contexts, ACT, num_envs=2,
                                                                max_episode_steps=4)), raise_exception=True)
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (2, S, S, 3)
    _, _, dones, infos = venv.step(np.zeros((2, 1), np.float32))
    assert not dones.any()
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [8]})
    model.set_logger(sb3_logger())  # not SB3's default, which leaves an empty $TMPDIR/SB3-<date> folder
    model.learn(16)
    venv.reset()
    for _ in range(4):
        _, _, dones, infos = venv.step(np.zeros((2, 1), np.float32))
    assert dones.all() and infos[0]["terminal_observation"].shape == (S, S, 3) and infos[0]["TimeLimit.truncated"]


@pytest.mark.parametrize("vector", [False, True])
def test_stochastic_model_with_cuda_graphs_is_seeded_from_the_env(contexts, vector):
    """A graphed rollout cannot take an explicit generator: the env seeds the device's default generator from
    its seed instead (CPU here, through the EagerReplay backend)."""
    from noether_rl.agents.cuda_graph import EagerReplay

    wm = tiny_wm(stochastic=True)
    wm.use_cuda_graph(True, backend=EagerReplay())
    context = contexts.sample(np.random.default_rng(0), 2)
    acts = np.linspace(-2, 2, 8, dtype=np.float32).reshape(4, 2, 1)

    def rollout(seed: int) -> np.ndarray:
        torch.rand(7)  # other users of the default generator before the reset do not matter
        if vector:
            env = WorldModelVectorEnv(wm, contexts, ACT, 2, max_episode_steps=10)
            env.reset(seed=seed)
            return np.stack([env.step(a)[1] for a in acts])
        env = WorldModelEnv(wm, contexts, ACT, max_episode_steps=10)
        env.reset(seed=seed, options={"context": (context[0][0], context[1][0])})
        return np.array([env.step(a[0])[1] for a in acts])

    rollout(2)  # captures the graph (a capture's warm-up runs draw from the default generator too)
    a, b, c = rollout(0), rollout(0), rollout(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert wm.graph_stats()["captures"] == 1 and wm.graph_stats()["replays"] == 4 * len(acts)
