"""Training: baseline SVG, Noether meta-training (Alg. 1), checkpoints, DDP."""

from noether_rl.training.checkpoint import load_checkpoint, save_checkpoint
from noether_rl.training.config import DataConfig, TrainConfig, config_from_dict
from noether_rl.training.trainer import EpisodeWindows, Objective, frame_mse, train

__all__ = ["DataConfig", "TrainConfig", "config_from_dict", "EpisodeWindows", "Objective", "frame_mse", "train",
           "load_checkpoint", "save_checkpoint"]
