"""Noether Network: any :class:`Predictor` + an embedding g_phi + one tailoring call (paper Alg. 1).

    x̃      = predictor.rollout(context, actions, horizon)                 # initial prediction
    adapt'  = tailor(L(g_phi; x0, x̃(adapt)), adapt = predictor.adaptables(kind=cfg.adapt))   # K inner steps
    x̂      = predictor.rollout(context, actions, horizon, adapt=adapt')   # final prediction

The domain supplies the predictor (SVG on frames, an MLP on states, ...), what is adapted (its
``adaptables(kind=...)``: LSTM activations, CN gamma/beta, per-example weights) and g_phi (any module
``[N, k * obs...] -> [N, D]``; ``pairs=True`` means it reads two consecutive steps concatenated on dim 1).
Neither this class nor the engine looks inside any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from noether_rl.models.noether import noether_loss
from noether_rl.noether.predictor import Predictor
from noether_rl.tailoring import TailorConfig, TailorResult, tailor


@dataclass(frozen=True)
class NoetherConfig:
    """tailor: inner loop (steps, lr, step rule, optimizer, order).
    adapt: the ``kind`` passed to ``predictor.adaptables`` (SVG: "hidden" | "cell" | "code" [+ "_per_step"]
        | "cn"; state-space MLP: "weights").
    form: Noether loss 2(a) ("a": each predicted step vs the last observed one) or 2(b) ("b": consecutive).
    distance: "mse" (squared L2 of embeddings) or "cosine".
    learn_inner_lr: meta-learn log(inner lr) with the outer loss (Meta-SGD), initialised at ``tailor.lr``.
    """

    # default chosen on validation episodes (benchmarks/step_rule_ablation.py; see docs/ARCHITECTURE.md)
    tailor: TailorConfig = field(default_factory=lambda: TailorConfig(steps=1, lr=0.25, step_rule="normalized",
                                                                      order="second"))
    adapt: str = "hidden"
    form: str = "a"
    distance: str = "mse"
    learn_inner_lr: bool = False

    def __post_init__(self) -> None:
        if self.form not in ("a", "b"):
            raise ValueError(f"NoetherConfig.form must be 'a' or 'b', got {self.form!r}")
        if self.distance not in ("mse", "cosine"):
            raise ValueError(f"NoetherConfig.distance must be 'mse' or 'cosine', got {self.distance!r}")
        if self.learn_inner_lr and self.tailor.lr <= 0:
            raise ValueError("NoetherConfig.learn_inner_lr needs an initial tailor.lr > 0")


@dataclass
class NoetherOutput:
    pred: Tensor  # [B, horizon, *obs] final (tailored) prediction
    initial: Tensor  # [B, horizon, *obs] untailored prediction (detached)
    result: TailorResult | None  # None when no inner step was taken
    kl: Tensor | None  # [B] (stochastic predictor), else None
    inner_lr: float  # the inner lr this call used (learned, configured or overridden)
    step_rule: str  # label of the inner step rule, for results


class NoetherNetwork(nn.Module):
    """predictor + embedding g_phi. No recurrent state, batch size or device stored."""

    def __init__(self, predictor: Predictor, embedding: nn.Module, cfg: NoetherConfig) -> None:
        super().__init__()
        if not isinstance(predictor, Predictor) or not isinstance(predictor, nn.Module):
            raise TypeError(f"{type(predictor).__name__} is not an nn.Module implementing the Predictor protocol "
                            "(stochastic, adaptables, rollout)")
        self.cfg = cfg
        self.predictor = predictor
        self.embedding = embedding
        # Meta-SGD inner learning rate (log scale); frozen unless learn_inner_lr
        self.log_inner_lr = nn.Parameter(torch.tensor(math.log(max(cfg.tailor.lr, 1e-30))),
                                         requires_grad=cfg.learn_inner_lr)

    @property
    def pairs(self) -> bool:
        return bool(getattr(self.embedding, "pairs", False))

    def inner_lr(self, override: float | None = None) -> Tensor | float:
        """The inner lr: an explicit ``override`` always wins; else the learned lr (``learn_inner_lr``,
        a tensor the outer loss trains); else ``cfg.tailor.lr``."""
        if override is not None:
            return float(override)
        if self.cfg.learn_inner_lr:
            return self.log_inner_lr.exp()
        return float(self.cfg.tailor.lr)

    def anchor(self, context: Tensor) -> Tensor:
        """Observed steps the Noether loss anchors on: [B, 2 or 1, *obs], ending at the last context step."""
        k = 2 if self.pairs else 1
        if context.shape[1] < k:
            raise ValueError(f"g_phi takes {k} consecutive steps but the context has {context.shape[1]}")
        return context[:, -k:]

    def inner_loss(self, context: Tensor, pred: Tensor) -> Tensor:
        """Per-example Noether loss [B] of a prediction [B, horizon, *obs] after ``context``."""
        return noether_loss(self.embedding, self.anchor(context), pred, form=self.cfg.form,
                            distance=self.cfg.distance, pairs=self.pairs)

    def predict(
        self,
        context: Tensor,
        actions: Tensor,
        horizon: int,
        *,
        target: Tensor | None = None,
        tailor_cfg: TailorConfig | None = None,
        inner_lr: float | None = None,
        generator: torch.Generator | None = None,
    ) -> NoetherOutput:
        """context [B, n_past, *obs]; actions [B, n_past+horizon-1, A] -> tailored prediction.

        target: the true future, only for predictors that use it in training (SVG-LP's posterior).
        tailor_cfg: overrides ``cfg.tailor`` (e.g. ``steps=0`` for the untailored prediction);
        inner_lr: an explicit inner lr, used as given (see :meth:`inner_lr`).
        The engine runs first order by itself when gradients are off (evaluation, planners).
        """
        tcfg = tailor_cfg or self.cfg.tailor
        generator = self._call_generator(context, generator)
        lr = self.inner_lr(inner_lr)
        lr_value = float(lr.detach()) if isinstance(lr, Tensor) else lr
        label = tcfg.label if not isinstance(lr, Tensor) else f"{tcfg.label} (learned lr {lr_value:.3g})"

        if tcfg.steps == 0:
            r = self.predictor.rollout(context, actions, horizon, generator=_fork(generator), target=target)
            return NoetherOutput(pred=r.pred, initial=r.pred.detach(), result=None, kl=r.kl, inner_lr=lr_value,
                                 step_rule=label)
        res, initial, rollout = self._inner_loop(context, actions, horizon, tcfg, lr, generator, target, None)
        r = rollout(res.adapted)
        return NoetherOutput(pred=r.pred, initial=initial, result=res, kl=r.kl, inner_lr=lr_value, step_rule=label)

    def tailor_adaptables(self, context: Tensor, actions: Tensor, horizon: int, *,
                          tailor_cfg: TailorConfig | None = None, inner_lr: float | None = None,
                          generator: torch.Generator | None = None, warm: Any | None = None) -> TailorResult | None:
        """The inner loop of :meth:`predict` without its final rollout, for callers that roll the tailored
        adaptables out themselves (e.g. shared by many candidate action sequences): the result (``adapted``
        ``[B, ...]``), or None when ``steps == 0``. warm: the predictor's warm start on these inputs if the
        caller already computed it (``predictor.warm_start(..., kind=cfg.adapt, generator=generator)``, which
        advanced ``generator``): it is not computed again, and the result is the one :meth:`predict` would
        reach with the generator as it was before that warm start."""
        tcfg = tailor_cfg or self.cfg.tailor
        if tcfg.steps == 0:
            return None
        generator = self._call_generator(context, generator)
        return self._inner_loop(context, actions, horizon, tcfg, self.inner_lr(inner_lr), generator, None, warm)[0]

    def _call_generator(self, context: Tensor, generator: torch.Generator | None) -> torch.Generator | None:
        """Every rollout of one call must see the same z samples: a stochastic predictor without a generator
        gets a fresh seeded one (a CPU RNG draw, no device sync)."""
        if generator is not None or not self.predictor.stochastic:
            return generator
        seed = int(torch.randint(2**62, (), device="cpu"))
        return torch.Generator(device=context.device).manual_seed(seed)

    def _inner_loop(self, context: Tensor, actions: Tensor, horizon: int, tcfg: TailorConfig, lr: Tensor | float,
                    generator: torch.Generator | None, target: Tensor | None,
                    warm: Any | None) -> tuple[TailorResult, Tensor, Callable[[dict[str, Tensor] | None], Any]]:
        """One tailoring call -> (result, the initial prediction (detached), rollout(adapt) sharing the warm start)."""
        # predictors that can (SVG) compute the context part once and share it between the rollouts
        gen = _fork(generator)
        if warm is None and hasattr(self.predictor, "warm_start"):
            warm = self.predictor.warm_start(context, actions, horizon, kind=self.cfg.adapt, generator=gen,
                                             target=target)

        def rollout(adapt: dict[str, Tensor] | None):
            kw = {"warm": warm} if warm is not None else {}
            return self.predictor.rollout(context, actions, horizon, adapt=adapt, generator=_fork(gen), target=target,
                                          **kw)

        B = context.shape[0]
        adapt0 = self.predictor.adaptables(B, horizon, kind=self.cfg.adapt, device=context.device, dtype=context.dtype)
        initial: list[Tensor] = []

        def loss_fn(adapt: dict[str, Tensor]) -> Tensor:  # [B]
            pred = rollout(adapt).pred
            if not initial:
                initial.append(pred.detach())
            return self.inner_loss(context, pred)

        if isinstance(lr, Tensor):
            res = tailor(loss_fn, adapt0, tcfg, lr=lr)
        else:
            res = tailor(loss_fn, adapt0, tcfg if tcfg.lr == lr else replace(tcfg, lr=lr))
        return res, initial[0], rollout


def _fork(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    g = torch.Generator(device=generator.device)
    g.set_state(generator.get_state())
    return g
