"""Stable-Baselines3 agents for pixel observations of any size (SB3's NatureCNN needs >= 36x36 frames)."""

from __future__ import annotations

import os

import gymnasium as gym
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from noether_rl.errors import UserError


class SmallCNN(BaseFeaturesExtractor):
    """conv4x4/2 (32) -> conv4x4/2 (64) -> conv3x3/2 (64) -> adaptive pool 4x4 -> linear ``features_dim``
    (ReLU). Takes SB3's channel-first, [0, 1]-normalised images."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        c = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.linear = nn.Sequential(nn.Linear(64 * 16, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))


ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}


def sb3_logger(folder: str | os.PathLike[str] | None = None) -> Logger:
    """SB3's training logger, set explicitly: with ``folder``, its metrics go to ``folder/progress.csv``;
    without, nowhere. (SB3's default logger makes an empty ``$TMPDIR/SB3-<date>`` folder on every ``learn``.)"""
    if folder is None:
        return Logger(folder=None, output_formats=[])
    return configure(os.fspath(folder), format_strings=["csv"])


def make_sb3_agent(algo: str, env, *, seed: int = 0, device: torch.device | str = "cpu",
                   steps: int = 20000, log_dir: str | os.PathLike[str] | None = None) -> BaseAlgorithm:
    """PPO or SAC with :class:`SmallCNN` features (SAC's replay buffer capped at ``min(steps, 100k)``);
    training metrics go to ``log_dir/progress.csv`` (None: not logged; see :func:`sb3_logger`)."""
    policy_kwargs = {"features_extractor_class": SmallCNN, "features_extractor_kwargs": {"features_dim": 128},
                     "net_arch": [64, 64]}
    model: BaseAlgorithm
    if algo == "ppo":
        n_steps = max(16, min(256, steps // max(env.num_envs, 1)))
        model = PPO("CnnPolicy", env, n_steps=n_steps, batch_size=min(64, n_steps * env.num_envs), seed=seed,
                    device=device, policy_kwargs=policy_kwargs, verbose=0)
    elif algo == "sac":
        model = SAC("CnnPolicy", env, buffer_size=min(steps, 100_000), learning_starts=min(1000, steps // 10),
                    seed=seed, device=device, policy_kwargs=policy_kwargs, verbose=0)
    else:
        raise UserError(f"unknown algorithm {algo!r}; choose ppo or sac")
    model.set_logger(sb3_logger(log_dir))
    return model


def load_agent(algo: str, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> BaseAlgorithm:
    if algo not in ALGOS:
        raise UserError(f"unknown algorithm {algo!r}; choose ppo or sac")
    try:
        return ALGOS[algo].load(str(path), device=device,
                                custom_objects={"policy_kwargs": {"features_extractor_class": SmallCNN,
                                                                  "features_extractor_kwargs": {"features_dim": 128},
                                                                  "net_arch": [64, 64]}})
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise UserError(f"{path} is not a saved {algo.upper()} agent ({type(e).__name__}); delete it to retrain") from None


__all__ = ["ALGOS", "SmallCNN", "load_agent", "make_sb3_agent", "sb3_logger"]
