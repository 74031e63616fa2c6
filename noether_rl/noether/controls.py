"""Controls that isolate what tailoring adds (used by the Fig. 3 experiment and available to any domain).

:class:`LearnedAdaptation` is the "free-running fine-tune" control: the predictor's adaptables become plain
parameters shared by all examples, trained by the same free-running outer loss and budget as a Noether
Network, with no inner step. A Noether Network that beats it gains from *per-example, conservation-driven*
adaptation, not from the free-running objective or from the extra parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from noether_rl.noether.predictor import Prediction, Predictor


class LearnedAdaptation(nn.Module):
    """A :class:`Predictor` whose ``adapt`` defaults to learned, example-independent tensors of ``kind``
    (initialised at identity, so it starts exactly as the wrapped predictor)."""

    def __init__(self, predictor: Predictor, kind: str, horizon: int) -> None:
        super().__init__()
        if not isinstance(predictor, nn.Module):
            raise TypeError("LearnedAdaptation wraps an nn.Module predictor")
        self.predictor = predictor
        self.kind = kind
        self.horizon = horizon
        init = predictor.adaptables(1, horizon, kind=kind)
        self.adapt = nn.ParameterDict({k: nn.Parameter(v[0].detach().clone()) for k, v in init.items()})

    @property
    def stochastic(self) -> bool:
        return self.predictor.stochastic

    def adaptables(self, batch_size: int, horizon: int, *, kind: str, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        return self.predictor.adaptables(batch_size, horizon, kind=kind, device=device, dtype=dtype)

    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, adapt: dict[str, Tensor] | None = None,
                generator: torch.Generator | None = None, target: Tensor | None = None) -> Prediction:
        if adapt is None:
            B = context.shape[0]
            adapt = {k: p.expand(B, *p.shape) for k, p in self.adapt.items()}
        return self.predictor.rollout(context, actions, horizon, adapt=adapt, generator=generator, target=target)
