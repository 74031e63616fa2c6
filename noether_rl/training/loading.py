"""Rebuild a trained model (SVG or Noether Network) from a checkpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from noether_rl.models import SVG
from noether_rl.noether import NoetherNetwork
from noether_rl.training.checkpoint import load_checkpoint
from noether_rl.training.config import TrainConfig, config_from_dict


@dataclass
class LoadedModel:
    kind: str  # "svg" | "noether"
    config: TrainConfig
    module: nn.Module  # SVG or NoetherNetwork, in eval mode, on the device
    epoch: int

    @property
    def svg(self) -> SVG:
        return self.module.predictor if isinstance(self.module, NoetherNetwork) else self.module  # type: ignore[return-value]


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    ckpt = load_checkpoint(path, map_location=device)
    cfg = config_from_dict(ckpt["config"])
    svg = SVG(cfg.model)
    module: nn.Module = NoetherNetwork(svg, cfg.noether) if cfg.noether is not None else svg
    state = {k.removeprefix("net."): v for k, v in ckpt["model"].items()}
    module.load_state_dict(state)
    module.to(device).eval()
    return LoadedModel(kind=str(ckpt.get("kind", "svg")), config=cfg, module=module, epoch=int(ckpt["epoch"]))
