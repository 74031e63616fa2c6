"""The ``Predictor`` protocol: what a sequence model must offer to become a Noether Network.

Every domain (pixel video with SVG, state-space MLPs, the agents' world model) implements this
small interface; :class:`noether_rl.noether.NoetherNetwork`, the trainer and the agents only talk
to it. Shapes (``*obs`` is the observation shape: ``[C, H, W]`` for frames, ``[D]`` for states):

- ``context``  ``[B, n_past, *obs]``: observed steps the prediction starts from.
- ``actions``  ``[B, n_past + horizon - 1, A]`` (``A`` may be 0): ``actions[:, t]`` produces step ``t+1``.
- ``target``   ``[B, horizon, *obs]`` or None: the true future, for predictors that need it in
  training (a stochastic model's posterior). Never used to *predict* at evaluation time.
- ``adapt``    name -> ``[B, ...]`` per-example tensors from :meth:`Predictor.adaptables` (or an
  adapted copy of them); ``None`` means the un-adapted model.
- returns :class:`Prediction` with ``pred`` ``[B, horizon, *obs]``.

Contract: example ``i`` of the output depends only on example ``i`` of the inputs and of ``adapt``
(no batch-coupled statistics in the rollout), so per-example tailoring is independent of the
batch size. Nothing recurrent is stored on the module; device and dtype follow the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class Prediction:
    """pred: [B, horizon, *obs]; kl: [B] per-example regulariser for stochastic predictors (else None)."""

    pred: Tensor
    kl: Tensor | None = None


@runtime_checkable
class Predictor(Protocol):
    """A batched, explicitly-stateless sequence predictor (see the module docstring for shapes)."""

    @property
    def stochastic(self) -> bool:
        """True if :meth:`rollout` samples (then a ``generator`` makes it reproducible)."""
        ...

    def adaptables(self, batch_size: int, horizon: int, *, kind: str, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """Identity per-example tensors (leading dim ``batch_size``) the inner loop may adapt.

        ``kind`` names what is adapted (predictor-specific, e.g. ``"hidden"``, ``"cn"``, ``"weights"``);
        ``rollout(..., adapt=adaptables(...))`` must equal ``rollout(..., adapt=None)``.
        """
        ...

    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, adapt: dict[str, Tensor] | None = None,
                generator: torch.Generator | None = None, target: Tensor | None = None) -> Prediction:
        """Predict ``horizon`` steps after ``context`` (shapes in the module docstring)."""
        ...


__all__ = ["Prediction", "Predictor"]
