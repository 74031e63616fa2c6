"""Per-example module weights with ``torch.func`` (functional_call + vmap).

Lets the engine adapt the *weights* of any module per example (state-space MLPs): expand each
parameter to ``[B, *shape]``, hand the dict to :func:`noether_rl.tailoring.tailor`, and evaluate the
module with :func:`call_per_example` inside the loss.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn
from torch.func import functional_call, vmap


def per_example_params(module: nn.Module, batch_size: int, names: Iterable[str] | None = None) -> dict[str, Tensor]:
    """name -> parameter expanded to [B, *shape] (a view: gradients flow back to the shared parameter)."""
    params = dict(module.named_parameters())
    keep = list(params) if names is None else list(names)
    missing = [n for n in keep if n not in params]
    if missing:
        raise KeyError(f"{type(module).__name__} has no parameters {missing}; it has {sorted(params)}")
    return {n: params[n].unsqueeze(0).expand(batch_size, *params[n].shape) for n in keep}


def call_per_example(module: nn.Module, params: dict[str, Tensor], *args: Tensor) -> Tensor:
    """Evaluate ``module`` with per-example parameters.

    params: name -> [B, *shape] (a subset of the module's parameters; the rest are shared).
    args: inputs with leading batch dim B. Returns the module output with leading dim B.
    """

    def one(p: dict[str, Tensor], *xs: Tensor) -> Tensor:
        # vmap strips the batch dim; the module sees a batch of one example
        out = functional_call(module, p, tuple(x.unsqueeze(0) for x in xs))
        return out.squeeze(0)

    return vmap(one, in_dims=(0,) + (0,) * len(args))(params, *args)


__all__ = ["per_example_params", "call_per_example"]
