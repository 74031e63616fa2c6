"""The tailoring engine: K inner gradient steps on a per-example loss over a dict of tensors.

Domain-free by design (paper, Alg. 1 lines 3-5): the caller supplies

* ``loss_fn(adaptables) -> Tensor[B]``: the per-example inner (Noether) loss of a prediction made
  with the given adaptables, and
* ``adaptables``: a dict of tensors whose leading dimension is the batch ``B`` (LSTM modulations,
  conditional-normalisation gamma/beta, per-example copies of module weights, ...).

Per-example semantics. The engine differentiates ``loss_fn(...).sum()``. Because example ``i``'s
loss depends only on example ``i``'s slice of every adaptable, the gradient of the sum w.r.t. that
slice is exactly the gradient of example ``i``'s own loss: each example takes its own step, which
does not depend on the batch size or on the other examples. (A batch *mean* would silently scale
every step by 1/B.) The caller is responsible for ``loss_fn`` being per-example (no batch norm in
train mode, no batch-coupled statistics) -- ``tests/test_tailoring.py`` checks this property.

First vs second order is decided in exactly one place, :func:`_inner_grads`: in second order the
inner gradient is itself differentiable (``create_graph=True``), so an outer loss on the adapted
prediction back-propagates into the parameters of the inner loss (g_phi); in first order the inner
gradient is treated as a constant (the adapted tensors still depend on the initial ones).

The engine works when the caller runs under ``torch.no_grad()`` (planners, envs): it enables grad
internally for the inner steps and returns detached tensors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LossFn = Callable[[dict[str, Tensor]], Tensor]


StepRule = Literal["sgd", "normalized", "polyak"]


@dataclass(frozen=True)
class TailorConfig:
    """Inner-loop settings.

    steps: number of inner steps K (paper: 1).
    lr: inner learning rate lambda_in (its meaning depends on ``step_rule``).
    step_rule (SGD only; see :func:`_step_direction`):
        "sgd": the paper's plain step ``lr * g``. Scale-dependent: with an untrained g_phi the inner
            gradients can be ~1e-6 and the step does nothing until the lr is re-tuned.
        "normalized": ``lr * g / |g|`` per example: always a step of length ``lr`` (scale-free, but it
            never shrinks, so several steps cannot converge).
        "polyak": a trust-region Polyak step ``lr * min(L / |g|^2, trust_radius / |g|) * g`` per example:
            the step that zeroes the linearised (non-negative) inner loss L, capped at length
            ``lr * trust_radius``. Scale-free (multiplying L by c leaves it unchanged) and it shrinks
            as the loss goes to zero, so many steps converge.
    optimizer: "sgd" (paper's training setting) or "adam" (paper Fig. 6, many steps; scale-free itself).
    order: "second" differentiates through the inner step (meta-training g_phi); "first" cuts it.
        When the caller has gradients disabled (planners, evaluation) the engine runs first order anyway.
    only_on_improvement: keep the adapted tensors of an example only if its inner loss went down
        (costs one extra evaluation of ``loss_fn``).
    max_grad_norm: optional per-example clip of the inner gradient's global norm (None = off; "sgd" rule only,
        the other rules fix the step length themselves).
    trust_radius: the cap of the "polyak" step length (times ``lr``).
    """

    steps: int = 1
    lr: float = 1e-2
    optimizer: Literal["sgd", "adam"] = "sgd"
    order: Literal["first", "second"] = "second"
    step_rule: StepRule = "sgd"
    only_on_improvement: bool = False
    max_grad_norm: float | None = None
    trust_radius: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"TailorConfig.steps must be an integer >= 0, got {self.steps!r}")
        if not _finite_number(self.lr) or self.lr < 0:
            raise ValueError(f"TailorConfig.lr must be a finite number >= 0, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"TailorConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.order not in ("first", "second"):
            raise ValueError(f"TailorConfig.order must be 'first' or 'second', got {self.order!r}")
        if self.step_rule not in ("sgd", "normalized", "polyak"):
            raise ValueError(f"TailorConfig.step_rule must be sgd | normalized | polyak, got {self.step_rule!r}")
        if self.step_rule != "sgd" and self.optimizer != "sgd":
            raise ValueError(f"TailorConfig.step_rule={self.step_rule!r} applies to optimizer='sgd' only "
                             "(Adam is scale-free already)")
        if self.max_grad_norm is not None:
            if not _finite_number(self.max_grad_norm) or self.max_grad_norm <= 0:
                raise ValueError(f"TailorConfig.max_grad_norm must be a finite number > 0 or None, got {self.max_grad_norm!r}")
            if self.step_rule != "sgd":
                raise ValueError(f"TailorConfig.max_grad_norm has no effect with step_rule={self.step_rule!r}; "
                                 "use trust_radius (polyak) or lr (normalized) to bound the step")
        if not _finite_number(self.trust_radius) or self.trust_radius <= 0:
            raise ValueError(f"TailorConfig.trust_radius must be a finite number > 0, got {self.trust_radius!r}")
        b1, b2 = self.adam_betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1) or not _finite_number(self.adam_eps) or self.adam_eps <= 0:
            raise ValueError(f"TailorConfig: adam_betas must lie in [0, 1) and adam_eps > 0, got {self.adam_betas}, "
                             f"{self.adam_eps}")

    @property
    def label(self) -> str:
        """Short description for results: e.g. ``"polyak lr=1 x1 (sgd)"``."""
        rule = self.step_rule if self.optimizer == "sgd" else "adam"
        return f"{rule} lr={self.lr:g} x{self.steps}"


def _finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class TailorResult:
    """adapted: the tailored tensors (same keys/shapes as the input).
    inner_losses: [K, B] per-example inner loss before each step (K = steps).
    final_losses: [B] inner loss after the last step, or None when it was not evaluated.
    ok: [B] bool, False where an example hit a non-finite loss, gradient or adapted value (any step,
        including the result of the last one) and fell back to its untailored tensors.
    improved: [B] bool where only_on_improvement kept the adapted tensors, else None.
    """

    adapted: dict[str, Tensor]
    inner_losses: Tensor
    final_losses: Tensor | None
    ok: Tensor
    improved: Tensor | None = None

    @property
    def n_fallback(self) -> Tensor:
        """Number of examples that fell back to their untailored tensors (0-dim tensor, on device)."""
        return (~self.ok).sum()


def _batch_mask(mask: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, 1, ..., 1] broadcastable against ``like``."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 1)))


def _per_example_finite(t: Tensor) -> Tensor:
    """[B, ...] -> [B] bool: all entries of the example finite."""
    return torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)


def _inner_grads(losses: Tensor, params: dict[str, Tensor], order: str) -> dict[str, Tensor]:
    """Gradient of sum_i loss_i w.r.t. each adaptable. THE one place first/second order is decided."""
    second = order == "second"
    grads = torch.autograd.grad(
        losses.sum(), list(params.values()), create_graph=second, allow_unused=True
    )
    out: dict[str, Tensor] = {}
    for (name, p), g in zip(params.items(), grads):
        if g is None:  # adaptable not used by the loss: zero step
            g = torch.zeros_like(p)
        out[name] = g if second else g.detach()
    return out


def _sq_norm(grads: dict[str, Tensor]) -> Tensor:
    """Per-example squared global norm over all adaptables: [B]."""
    return sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads.values())  # type: ignore[return-value]


def _step_direction(grads: dict[str, Tensor], losses: Tensor, cfg: TailorConfig) -> dict[str, Tensor]:
    """The SGD update direction before multiplying by lr, per the step rule (see :class:`TailorConfig`).

    The tiny constant (the dtype's smallest normal number) only keeps 0/0 finite: it is far below any
    gradient scale, so the rules stay scale-free (an absolute eps such as 1e-12 is not: it is comparable to
    the squared norm of a 1e-6 gradient).
    """
    if cfg.step_rule == "sgd":
        return _clip_per_example(grads, cfg.max_grad_norm) if cfg.max_grad_norm is not None else grads
    sq = _sq_norm(grads)  # [B]
    tiny = torch.finfo(sq.dtype).tiny
    if cfg.step_rule == "normalized":
        scale = (sq + tiny).rsqrt()  # 1 / |g|
    else:  # polyak with a trust region: min(L / |g|^2, r / |g|)
        loss = losses.clamp(min=0).to(sq.dtype)
        scale = torch.minimum(loss / (sq + tiny), cfg.trust_radius * (sq + tiny).rsqrt())
    return {k: g * _batch_mask(scale, g) for k, g in grads.items()}


def _clip_per_example(grads: dict[str, Tensor], max_norm: float) -> dict[str, Tensor]:
    sq = _sq_norm(grads)  # [B]
    scale = (max_norm * (sq + torch.finfo(sq.dtype).tiny).rsqrt()).clamp(max=1.0)  # [B]
    return {k: g * _batch_mask(scale, g) for k, g in grads.items()}


def tailor(
    loss_fn: LossFn,
    adaptables: Mapping[str, Tensor],
    cfg: TailorConfig = TailorConfig(),
    *,
    lr: Tensor | None = None,
) -> TailorResult:
    """Take ``cfg.steps`` inner steps on ``loss_fn`` from ``adaptables``; see the module docstring.

    loss_fn: adaptables -> per-example loss [B].
    adaptables: name -> Tensor [B, ...] (all with the same leading B).
    lr: optional learning rate tensor (scalar, or [B]) replacing ``cfg.lr``; when it requires grad,
        the outer loss trains it (Meta-SGD style), in first and second order alike.
    """
    if not adaptables:
        raise ValueError("tailor() needs at least one adaptable tensor")
    if torch.is_inference_mode_enabled():
        raise RuntimeError("tailor() cannot run under torch.inference_mode() (the inner step needs autograd); "
                           "use torch.no_grad() instead")
    outer_grad = torch.is_grad_enabled()
    order = cfg.order if outer_grad else "first"  # no outer gradient: nothing to differentiate through
    init = dict(adaptables)
    B = next(iter(init.values())).shape[0]
    for name, t in init.items():
        if t.dim() == 0 or t.shape[0] != B:
            raise ValueError(f"adaptable {name!r} has shape {tuple(t.shape)}; expected leading batch dim {B}")

    with torch.enable_grad():
        # leaves for autograd.grad; tensors already in a graph (e.g. per-example weights expanded from
        # module parameters) keep their history so the outer loss reaches the parameters.
        # Without an outer gradient every adaptable becomes a fresh leaf: a view made under no_grad can claim
        # requires_grad=True while carrying no graph, and would silently get a zero inner gradient.
        params = {k: (t if (t.requires_grad and outer_grad) else t.detach().requires_grad_(True))
                  for k, t in init.items()}
        start = params
        ok = torch.ones(B, dtype=torch.bool, device=next(iter(init.values())).device)
        inner_losses: list[Tensor] = []
        m = {k: torch.zeros_like(p) for k, p in params.items()} if cfg.optimizer == "adam" else {}
        v = {k: torch.zeros_like(p) for k, p in params.items()} if cfg.optimizer == "adam" else {}
        b1, b2 = cfg.adam_betas
        step_lr: Tensor | float = cfg.lr if lr is None else lr

        def scaled(g: Tensor) -> Tensor:  # lr * g, with a per-example lr broadcast over the example's dims
            if isinstance(step_lr, Tensor) and step_lr.dim() == 1:
                return _batch_mask(step_lr, g) * g
            return step_lr * g

        for step in range(cfg.steps):
            losses = loss_fn(params)  # [B]
            if losses.shape != (B,):
                raise ValueError(f"loss_fn must return per-example losses of shape [{B}], got {tuple(losses.shape)}")
            grads = _inner_grads(losses, params, order)
            finite = torch.isfinite(losses)
            for g in grads.values():
                finite = finite & _per_example_finite(g)
            ok = ok & finite  # stays on device: no host sync in the loop
            grads = {k: torch.where(_batch_mask(finite, g), g, torch.zeros_like(g)) for k, g in grads.items()}
            if cfg.optimizer == "sgd":
                safe_losses = torch.where(finite, losses, torch.zeros_like(losses))
                d = _step_direction(grads, safe_losses, cfg)
                params = {k: p - scaled(d[k]) for k, p in params.items()}
            else:
                t = step + 1
                m = {k: b1 * m[k] + (1 - b1) * grads[k] for k in params}
                v = {k: b2 * v[k] + (1 - b2) * grads[k] * grads[k] for k in params}
                params = {
                    # eps inside the sqrt keeps the step twice differentiable at v = 0
                    k: p - scaled((m[k] / (1 - b1**t)) / (v[k] / (1 - b2**t) + cfg.adam_eps**2).sqrt())
                    for k, p in params.items()
                }
            for p in params.values():  # the step itself may overflow (huge lr): check its result too
                ok = ok & _per_example_finite(p.detach())
            inner_losses.append(losses.detach())

        final_losses = None
        improved = None
        if cfg.only_on_improvement and cfg.steps > 0:
            final = loss_fn(params)  # [B]
            improved = torch.isfinite(final) & (final.detach() < inner_losses[0])
            final_losses = final.detach()
            ok_keep = ok & improved
        else:
            ok_keep = ok
        # fall back to the untailored tensors where the inner loop failed (or did not improve)
        adapted = {k: torch.where(_batch_mask(ok_keep, p), p, start[k]) for k, p in params.items()}

    if cfg.steps > 0:
        bad = ~ok
        if bad.any():  # one host sync per call, after the loop
            warnings.warn(
                f"tailoring: non-finite inner loss, gradient or step for {int(bad.sum())} of {B} examples; "
                "they use their untailored prediction (lower the inner lr, or use step_rule='polyak')",
                RuntimeWarning,
                stacklevel=2,
            )
    if not outer_grad:
        adapted = {k: p.detach() for k, p in adapted.items()}
    stacked = torch.stack(inner_losses) if inner_losses else torch.zeros(0, B, device=ok.device)
    return TailorResult(adapted=adapted, inner_losses=stacked, final_losses=final_losses, ok=ok, improved=improved)
