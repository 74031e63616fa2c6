"""Rebuild a trained pixel-video model (SVG or Noether Network) from a checkpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from noether_rl.errors import UserError
from noether_rl.models import SVG
from noether_rl.noether import LearnedAdaptation, NoetherNetwork
from noether_rl.training.checkpoint import load_checkpoint
from noether_rl.training.config import TrainConfig, config_from_dict
from noether_rl.training.trainer import build_network

VIDEO_KINDS = ("svg", "noether", "svg_adapted")  # checkpoint kinds of the pixel-video recipe


@dataclass
class LoadedModel:
    kind: str  # "svg" | "noether" | "svg_adapted" (free-running fine-tune control)
    config: TrainConfig
    module: nn.Module  # SVG or NoetherNetwork, in eval mode, on the device
    epoch: int
    path: str = ""

    @property
    def svg(self) -> SVG:
        if isinstance(self.module, (NoetherNetwork, LearnedAdaptation)):
            return self.module.predictor  # type: ignore[return-value]
        return self.module  # type: ignore[return-value]


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("kind") not in VIDEO_KINDS:
        raise UserError(f"{path} is a {ckpt.get('kind')!r} checkpoint, not a pixel-video SVG/Noether model")
    try:
        cfg = config_from_dict(ckpt["config"])
        module = build_network(cfg)
        module.load_state_dict({k.removeprefix("net."): v for k, v in ckpt["model"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} does not hold a model this version can rebuild ({str(e).splitlines()[0][:120]})") from None
    module.to(device).eval()
    return LoadedModel(kind=str(ckpt["kind"]), config=cfg, module=module, epoch=int(ckpt["epoch"]), path=str(path))
