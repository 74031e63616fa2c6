"""Public prediction API for users and agents: observations in, predictions out, tailored or not.

- :func:`frames_to_tensor` / :func:`tensor_to_frames`: uint8 observation histories ``[..., T, H, W, C]``
  (Gymnasium / recordings) <-> model tensors ``[..., T, C, H, W]`` float in [0, 1].
- :func:`make_predict`: one function ``(context, actions) -> prediction`` for a plain
  :class:`Predictor` or a :class:`NoetherNetwork` (tailored, first order: no meta-gradient is needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.noether.network import NoetherNetwork
from noether_rl.noether.predictor import Predictor
from noether_rl.tailoring import TailorConfig

# (context [B, n_past, *obs], actions [B, >= n_past+horizon-1, A]) -> prediction [B, horizon, *obs]
Predict = Callable[[Tensor, Tensor], Tensor]


def frames_to_tensor(obs: np.ndarray | Tensor, device: torch.device | str | None = None) -> Tensor:
    """uint8 ``[..., H, W, C]`` (numpy or torch) -> float32 ``[..., C, H, W]`` in [0, 1] on ``device``."""
    x = torch.as_tensor(obs, device=device)
    if x.dtype != torch.uint8 or x.dim() < 3:
        raise UserError(f"observations must be uint8 images [..., H, W, C], got {x.dtype} {list(x.shape)}")
    return x.movedim(-1, -3).float().div_(255.0)


def tensor_to_frames(x: Tensor) -> Tensor:
    """float ``[..., C, H, W]`` in [0, 1] -> uint8 ``[..., H, W, C]`` (rounded, clamped, NaN -> 0; same device)."""
    return torch.nan_to_num(x.detach(), nan=0.0).clamp(0, 1).mul(255.0).round().to(torch.uint8).movedim(-3, -1)


def make_predict(model: nn.Module, horizon: int, *, tailor: bool = True, tailor_cfg: TailorConfig | None = None,
                 inner_lr: float | None = None) -> Predict:
    """A prediction function for ``model`` (a :class:`NoetherNetwork` or any :class:`Predictor`).

    Noether models tailor with their trained config (``tailor_cfg`` overrides it; ``inner_lr`` is used as
    given), in first order; ``tailor=False`` gives the same network's untailored prediction.
    """
    if isinstance(model, NoetherNetwork):
        tcfg = replace(tailor_cfg or model.cfg.tailor, order="first")
        if not tailor:
            tcfg = replace(tcfg, steps=0)

        def predict(context: Tensor, actions: Tensor) -> Tensor:
            return model.predict(context, actions, horizon, tailor_cfg=tcfg, inner_lr=inner_lr).pred

        return predict
    if not isinstance(model, Predictor):
        raise TypeError(f"{type(model).__name__} is neither a NoetherNetwork nor a Predictor")

    def predict_plain(context: Tensor, actions: Tensor) -> Tensor:
        return model.rollout(context, actions, horizon).pred

    return predict_plain


__all__ = ["Predict", "frames_to_tensor", "tensor_to_frames", "make_predict"]
