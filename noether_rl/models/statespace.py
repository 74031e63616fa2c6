"""State-space models: the vanilla MLP vector field (HNN's baseline), the HNN, and Noether embeddings.

- :class:`VectorFieldMLP` predicts ``dx/dt`` (2 -> 200 -> 200 -> 2, tanh).
- :class:`HNN` learns a scalar ``H_theta(q, p)``; its vector field is the symplectic gradient
  ``(dH/dp, -dH/dq)`` by autograd.
- :class:`StateSpacePredictor` makes either one a :class:`noether_rl.noether.predictor.Predictor`:
  ``rollout`` integrates from the last context state with fixed steps ``dt`` (``"euler"``:
  ``x + f(x) dt``, the integrator that matches the paper's finite-difference Noether loss; ``"rk4"``
  optional). ``adaptables(kind="weights")`` are per-example copies of the field's weights
  (``noether_rl.tailoring.per_example_params``), evaluated with ``call_per_example``; with
  ``adapt=None`` the plain module runs (cheap path).
- Embeddings g for the Noether loss ``|g(x_t) - g(x_t + f(x_t) dt)|^2`` (modules ``[N, D] -> [N, E]``
  with ``pairs = False``): :class:`FormulaEmbedding` (a given formula, e.g. the true H for the
  oracle), :class:`EnergyForm` (``p^2 - c cos q``) and :class:`StateEmbedding` (a learned g_phi,
  2 -> 64 -> 64 -> 8, tanh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.noether.predictor import Prediction
from noether_rl.tailoring import call_per_example, per_example_params


@dataclass(frozen=True)
class MLPConfig:
    """dim: state dimension; hidden/depth: hidden width and number of hidden layers; tanh activations."""

    dim: int = 2
    hidden: int = 200
    depth: int = 2

    def __post_init__(self) -> None:
        if self.dim < 1 or self.hidden < 1 or self.depth < 1:
            raise UserError(f"MLPConfig needs positive dim/hidden/depth, got {self}")


def _mlp(d_in: int, hidden: int, depth: int, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.Tanh()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class VectorFieldMLP(nn.Module):
    """x [..., D] -> dx/dt [..., D] (HNN's vanilla MLP baseline)."""

    def __init__(self, cfg: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = _mlp(cfg.dim, cfg.hidden, cfg.depth, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class HNN(nn.Module):
    """Hamiltonian Neural Network: H_theta [..., 2] -> [...]; forward gives (dH/dp, -dH/dq)."""

    def __init__(self, cfg: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        if cfg.dim != 2:
            raise UserError(f"HNN is implemented for one degree of freedom (dim=2), got dim={cfg.dim}")
        self.cfg = cfg
        self.net = _mlp(cfg.dim, cfg.hidden, cfg.depth, 1)

    def energy(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        outer = torch.is_grad_enabled()  # training: keep the graph so the loss reaches theta
        with torch.enable_grad():
            xi = x if x.requires_grad else x.detach().requires_grad_(True)
            (dH,) = torch.autograd.grad(self.energy(xi).sum(), xi, create_graph=outer)
        out = torch.stack([dH[..., 1], -dH[..., 0]], -1)
        return out if outer else out.detach()


@dataclass(frozen=True)
class PredictorConfig:
    """dt: integration step; integrator: "euler" (matches the finite-difference Noether loss) or "rk4"."""

    dt: float
    integrator: str = "euler"

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise UserError(f"dt must be positive, got {self.dt}")
        if self.integrator not in ("euler", "rk4"):
            raise UserError(f"integrator must be 'euler' or 'rk4', got {self.integrator!r}")


def integrate_step(field: Callable[[Tensor], Tensor], x: Tensor, dt: float | Tensor, integrator: str) -> Tensor:
    """One step of ``integrator`` for ``dx/dt = field(x)``; ``dt`` a float or a per-example [B, 1] tensor."""
    if integrator == "euler":
        return x + field(x) * dt
    k1 = field(x)
    k2 = field(x + 0.5 * dt * k1)
    k3 = field(x + 0.5 * dt * k2)
    k4 = field(x + dt * k3)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


class StateSpacePredictor(nn.Module):
    """A vector-field model as a :class:`~noether_rl.noether.predictor.Predictor` (deterministic, no actions).

    context [B, n_past, D] (only the last state is used), actions [B, n_past + horizon - 1, 0],
    -> pred [B, horizon, D]. ``adapt`` (kind "weights"): name -> [B, *param shape] per-example weights.
    """

    def __init__(self, field: nn.Module, cfg: PredictorConfig) -> None:
        super().__init__()
        self.field = field
        self.cfg = cfg

    @property
    def stochastic(self) -> bool:
        return False

    def adaptables(self, batch_size: int, horizon: int, *, kind: str = "weights", device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """kind "weights": every weight and bias of the field; "readout": the output layer's only
        (the same kind of step on 402 instead of 41k numbers per example: ~30x cheaper on CPU)."""
        if kind == "weights":
            names = None
        elif kind == "readout":
            last = [n for n, _ in self.field.named_parameters()][-2:]
            names = last
        else:
            raise UserError(f"StateSpacePredictor adapts kind='weights' or 'readout', got {kind!r}")
        params = per_example_params(self.field, batch_size, names)
        if not torch.is_grad_enabled():
            # views of parameters made under no_grad still say requires_grad=True but carry no graph: the
            # engine would then take them as graph tensors and get no inner gradient. Give it plain tensors.
            params = {k: v.detach() for k, v in params.items()}
        if dtype is not None or device is not None:
            params = {k: v.to(device=device, dtype=dtype) for k, v in params.items()}
        return params

    def vector_field(self, x: Tensor, adapt: dict[str, Tensor] | None = None) -> Tensor:
        """x [B, D] -> dx/dt [B, D] with the shared weights (adapt=None) or per-example ones."""
        if adapt is None:
            return self.field(x)
        return call_per_example(self.field, adapt, x)

    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, adapt: dict[str, Tensor] | None = None,
                generator: torch.Generator | None = None, target: Tensor | None = None) -> Prediction:
        if context.dim() != 3 or context.shape[1] < 1:
            raise UserError(f"context must be [B, n_past>=1, D], got {list(context.shape)}")
        x = context[:, -1]
        out = []
        for _ in range(horizon):  # the rollout itself: one integrator step per predicted state
            x = integrate_step(lambda z: self.vector_field(z, adapt), x, self.cfg.dt, self.cfg.integrator)
            out.append(x)
        return Prediction(pred=torch.stack(out, 1), kl=None)


class FormulaEmbedding(nn.Module):
    """g(x) = formula(x) for a given formula (torch-compatible callable x [N, D] -> [N]); no parameters."""

    pairs = False

    def __init__(self, formula: Callable[[Tensor], Tensor], name: str = "formula") -> None:
        super().__init__()
        self.formula = formula
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return self.formula(x).unsqueeze(-1)


class EnergyForm(nn.Module):
    """g(q, p) = p^2 - c cos q (the real pendulum's energy form; ``c`` fitted on training data)."""

    pairs = False

    def __init__(self, c: float) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor(float(c)))

    def forward(self, x: Tensor) -> Tensor:
        return (x[..., 1] ** 2 - self.c.to(x.dtype) * torch.cos(x[..., 0])).unsqueeze(-1)


class StateEmbedding(nn.Module):
    """Learned g_phi: [N, dim] -> [N, out] (2 -> 64 -> 64 -> 8, tanh: smooth, so conserved quantities
    such as energies are easy to represent and the inner gradient is informative)."""

    pairs = False

    def __init__(self, dim: int = 2, hidden: int = 64, out: int = 8) -> None:
        super().__init__()
        self.net = _mlp(dim, hidden, 2, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def conservation_loss(embedding: nn.Module, x: Tensor, x_next: Tensor) -> Tensor:
    """Per-example Noether loss [B]: ``|g(x) - g(x_next)|^2`` summed over g's outputs. x, x_next [B, D]."""
    return (embedding(x) - embedding(x_next)).pow(2).sum(-1)


__all__ = ["MLPConfig", "VectorFieldMLP", "HNN", "PredictorConfig", "StateSpacePredictor", "integrate_step",
           "FormulaEmbedding", "EnergyForm", "StateEmbedding", "conservation_loss"]
