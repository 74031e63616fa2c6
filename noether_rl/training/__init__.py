"""Training: the generic loop (:func:`fit`) and the pixel-video recipe (:func:`train`), checkpoints, DDP."""

from noether_rl.data import EpisodeWindows
from noether_rl.training.checkpoint import load_checkpoint, save_checkpoint
from noether_rl.training.config import DataConfig, TrainConfig, config_from_dict
from noether_rl.training.fit import FitConfig, StepOutput, fit
from noether_rl.training.trainer import Objective, build_network, frame_mse, train

__all__ = ["DataConfig", "TrainConfig", "config_from_dict", "EpisodeWindows", "FitConfig", "StepOutput", "fit",
           "Objective", "build_network", "frame_mse", "train", "load_checkpoint", "save_checkpoint"]
