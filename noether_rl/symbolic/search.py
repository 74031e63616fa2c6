"""Screen and meta-tailor the conserved formulas (paper §4.2): which conservation law helps prediction?

Uses the state-space domain as it is: :class:`~noether_rl.models.statespace.VectorFieldMLP` as a
:class:`~noether_rl.models.statespace.StateSpacePredictor` (per-example weights as adaptables), the
generic :class:`~noether_rl.noether.NoetherNetwork` with a fitted formula as its fixed g, and the
tailoring engine underneath. Nothing here knows which system the data came from.

1. :func:`pretrain_mlp`: HNN's baseline, full-batch Adam on MSE(f(x), dx/dt).
2. :func:`screen`: the pre-trained MLP with one Noether inner step per query (each formula as the
   loss, every inner lr ``10^k``) rolls out short windows of held-out *validation* trajectories (part
   of the training data, see :func:`rollout_windows`); their RMSE ranks the formulas (each at its best
   lr). (The one-step dx/dt MSE cannot rank them: the pre-trained MLP already fits the derivatives, so
   it always prefers the smallest lr. One long rollout cannot either: measured on the real pendulum, a
   74-s rollout's RMSE moved by 60 % between models whose one-step loss agreed to 4 digits -- phase
   drift, not the law, decided.)
3. :func:`meta_tailor`: the top formulas are meta-tailored (outer loss: MSE of the tailored dx/dt,
   second order through the inner step) from the pre-trained MLP; runs whose loss goes non-finite
   (including a non-finite inner step at any point) or ends above ``diverge_factor`` x its start are
   dropped, with the reason; the caller ranks the rest on validation windows like the screen.

A non-finite inner step is divergence everywhere (screen, meta-tailoring, rollouts): the tailored
dx/dt is NaN there (:func:`tailored_field_ok`), never the untailored MLP's.
4. :func:`rollout_rmse`: long-term prediction from each test trajectory's first state (Euler with the
   data's time step, tailoring at every step when a formula is given).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from noether_rl.models.statespace import MLPConfig, PredictorConfig, StateSpacePredictor, VectorFieldMLP
from noether_rl.noether import NoetherConfig, NoetherNetwork
from noether_rl.symbolic.dsl import Expr
from noether_rl.symbolic.program import evaluate_one
from noether_rl.tailoring import TailorConfig

LR_EXPONENTS = tuple(-3.0 + 0.5 * i for i in range(9))  # 10^-3 ... 10^1


@dataclass(frozen=True)
class SearchConfig:
    hidden: int = 200
    pretrain_steps: int = 2000
    pretrain_lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_exponents: tuple[float, ...] = LR_EXPONENTS
    top_k: int = 20
    meta_epochs: int = 100
    meta_lr: float = 1e-3
    meta_batch: int | None = None  # None: full batch (one outer step per epoch, like HNN's training)
    adapt: str = "readout"  # per-example weights adapted: "readout" (output layer) or "weights" (all)
    diverge_factor: float = 10.0
    select_horizon: int = 10  # validation rollouts used for selection: windows of this many steps
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)


class FittedFormula(nn.Module):
    """A fitted formula as a fixed Noether embedding g: x [N, D] -> [N, 1], standardised on training data
    (so that one inner-lr grid serves formulas of any scale)."""

    pairs = False

    def __init__(self, expr: Expr, params: Sequence[float], x_train: Tensor) -> None:
        super().__init__()
        self.expr = expr
        self.register_buffer("params", torch.as_tensor(np.asarray(params[: max(1, expr.n_params)], dtype=np.float64)))
        with torch.no_grad():
            v = self.raw(x_train.double())
        self.register_buffer("mu", v.mean())
        self.register_buffer("sd", v.std().clamp_min(1e-12))

    def raw(self, x: Tensor) -> Tensor:
        return evaluate_one(self.expr, x, self.params.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return ((self.raw(x) - self.mu.to(x.dtype)) / self.sd.to(x.dtype)).unsqueeze(-1)


class CallableFormula(nn.Module):
    """A reference g given as a torch callable x [N, D] -> [N] (e.g. a known energy), standardised likewise."""

    pairs = False

    def __init__(self, fn: Callable[[Tensor], Tensor], x_train: Tensor) -> None:
        super().__init__()
        self.fn = fn
        with torch.no_grad():
            v = fn(x_train.double())
        self.register_buffer("mu", v.mean())
        self.register_buffer("sd", v.std().clamp_min(1e-12))

    def forward(self, x: Tensor) -> Tensor:
        return ((self.fn(x) - self.mu.to(x.dtype)) / self.sd.to(x.dtype)).unsqueeze(-1)


def pretrain_mlp(x: Tensor, y: Tensor, dt: float, cfg: SearchConfig, seed: int) -> StateSpacePredictor:
    """HNN's vanilla MLP: ``pretrain_steps`` full-batch Adam steps on MSE(f(x), dx/dt)."""
    torch.manual_seed(seed)
    field_ = VectorFieldMLP(MLPConfig(dim=x.shape[1], hidden=cfg.hidden)).to(x.dtype)
    opt = torch.optim.Adam(field_.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.pretrain_steps):
        loss = (field_(x) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if not torch.isfinite(loss):
        raise RuntimeError("MLP pre-training diverged")
    return StateSpacePredictor(field_, PredictorConfig(dt=dt))


def noether_net(pred: StateSpacePredictor, g: nn.Module, lr: float, cfg: SearchConfig) -> NoetherNetwork:
    tc = TailorConfig(steps=1, lr=lr, step_rule="sgd", order="second")
    return NoetherNetwork(pred, g, NoetherConfig(tailor=tc, adapt=cfg.adapt, form="a"))


def tailored_field_ok(net: NoetherNetwork, x: Tensor) -> tuple[Tensor, Tensor]:
    """x [B, D] -> (dx/dt [B, D] with each example's weights tailored by one Noether step at x, ok [B]).

    ``ok`` is False where the inner step was non-finite (loss, gradient or step); there dx/dt is NaN:
    such a point diverged, it never falls back silently to the untailored MLP (the engine's fall-back
    and its warning are replaced by this NaN, which every caller counts as divergence)."""
    B = x.shape[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="tailoring: non-finite", category=RuntimeWarning)
        out = net.predict(x[:, None], x.new_zeros(B, 1, 0), 1)
    if out.result is None:
        return net.predictor.vector_field(x, None), torch.ones(B, dtype=torch.bool, device=x.device)  # type: ignore[operator]
    f = net.predictor.vector_field(x, out.result.adapted)  # type: ignore[operator]
    ok = out.result.ok
    return torch.where(ok[:, None], f, torch.full_like(f, float("nan"))), ok


def tailored_field(net: NoetherNetwork, x: Tensor) -> Tensor:
    """x [B, D] -> dx/dt with each example's weights tailored by one Noether step at x (NaN where that
    step was non-finite, see :func:`tailored_field_ok`)."""
    return tailored_field_ok(net, x)[0]


def screen(pred: StateSpacePredictor, formulas: Sequence[nn.Module], ref: np.ndarray, t: np.ndarray, dt: float,
           cfg: SearchConfig, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Rollout RMSE of the pre-trained MLP with one Noether step per query, for every formula and inner
    lr: [n_formulas, n_lrs] (inf where the rollout blew up).

    ref [N, T, D] / t [N, T]: the selection data (validation windows, :func:`rollout_windows`)."""
    out = np.full((len(formulas), len(cfg.lr_exponents)), np.inf)
    for i, g in enumerate(formulas):  # a few hundred formulas at most; each rollout is batched
        for j, k in enumerate(cfg.lr_exponents):
            out[i, j] = float(np.mean(rollout_rmse(pred, g, 10.0 ** k, ref, t, dt, cfg)[0]))
        if progress is not None:
            progress(1)
    out[~np.isfinite(out)] = np.inf
    return out


@dataclass
class MetaResult:
    predictor: StateSpacePredictor
    curve: list[float]
    diverged: bool
    reason: str | None = None  # why it diverged (None when it did not)

    @property
    def final(self) -> float:
        return self.curve[-1] if self.curve and not self.diverged else math.inf


def meta_tailor(pred0: StateSpacePredictor, g: nn.Module, lr: float, x: Tensor, y: Tensor, cfg: SearchConfig,
                seed: int) -> MetaResult:
    """Alg. 1 with a fixed g: fine-tune a copy of the pre-trained MLP through one inner step per point."""
    pred = copy.deepcopy(pred0)
    net = noether_net(pred, g, lr, cfg)
    opt = torch.optim.Adam(pred.parameters(), lr=cfg.meta_lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    batch = cfg.meta_batch or n
    curve: list[float] = []
    for _ in range(cfg.meta_epochs):
        perm = torch.randperm(n, generator=gen)
        tot = torch.zeros((), dtype=x.dtype)
        for s in range(0, n, batch):
            b = perm[s:s + batch]
            f, ok = tailored_field_ok(net, x[b])
            loss = (f - y[b]).pow(2).mean()
            if not torch.isfinite(loss):  # one host sync per outer step; the cause only on this failure path
                why = ("non-finite inner step" if not bool(ok.all()) else "non-finite training loss")
                return MetaResult(pred, curve + [math.inf], True, f"{why} in epoch {len(curve) + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot = tot + loss.detach() * b.numel()
        curve.append(float(tot) / n)  # one host sync per epoch
    diverged = (not math.isfinite(curve[-1])) or curve[-1] > cfg.diverge_factor * curve[0]
    reason = (f"training loss rose {curve[-1] / curve[0]:.3g}x (limit {cfg.diverge_factor:g}x)"
              if diverged and math.isfinite(curve[-1]) else "non-finite training loss" if diverged else None)
    return MetaResult(pred, curve, diverged, reason)


def training_loss(pred: StateSpacePredictor, g: nn.Module | None, lr: float, x: Tensor, y: Tensor,
                  cfg: SearchConfig) -> float:
    with torch.no_grad():
        f = pred.vector_field(x) if g is None else tailored_field(noether_net(pred, g, lr, cfg), x)
        return float((f - y).pow(2).mean())


def rollout_windows(x: np.ndarray, t: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ``horizon + 1`` consecutive points (stride 1) of trajectories x [N, T, D] / t [N, T]:
    ([W, horizon+1, D], [W, horizon+1]); whole trajectories when they are shorter. Starting a short
    rollout at every point averages over the start states' noise and keeps phase drift out of the score."""
    L = min(horizon + 1, x.shape[1])
    idx = np.arange(x.shape[1] - L + 1)[:, None] + np.arange(L)[None]  # [n_starts, L]
    xw = x[:, idx].reshape(-1, L, x.shape[2])
    tw = t[:, idx].reshape(-1, L)
    return xw, tw


def rollout(pred: StateSpacePredictor, g: nn.Module | None, lr: float, x0: Tensor, t: np.ndarray, dt: float,
            cfg: SearchConfig) -> Tensor:
    """Euler rollout from x0 [B, D] over time stamps t [T] shared by the batch (a gap of m*dt takes m
    steps); tailoring at every step when ``g`` is given. Returns [B, T, D] (index 0 = x0)."""
    net = None if g is None else noether_net(pred, g, lr, cfg)
    m = np.maximum(1, np.rint(np.diff(t) / dt).astype(int))
    xs = [x0]
    x = x0
    with torch.no_grad():
        for mk in m:  # the rollout itself; each step is batched over B
            for _ in range(int(mk)):
                f = pred.vector_field(x) if net is None else tailored_field(net, x)
                x = x + f * dt
            xs.append(x)
    return torch.stack(xs, 1)


def rollout_rmse(pred: StateSpacePredictor, g: nn.Module | None, lr: float, ref: np.ndarray, t: np.ndarray,
                 dt: float, cfg: SearchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-trajectory RMSE [N] of rollouts from ``ref[:, 0]`` against ``ref`` [N, T, D]; also the rollouts.

    Trajectories are grouped by their time spacing (one batched rollout per group)."""
    dtype = getattr(torch, cfg.dtype)
    out = np.full(ref.shape, np.nan)
    keys = [tuple(np.round(np.diff(ti), 6)) for ti in t]
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        x0 = torch.as_tensor(ref[idx, 0], dtype=dtype)
        out[idx] = rollout(pred, g, lr, x0, t[idx[0]], dt, cfg).double().numpy()
    with np.errstate(all="ignore"):
        rmse = np.sqrt(((out - ref) ** 2).mean(axis=(1, 2)))
    return np.where(np.isfinite(rmse), rmse, np.inf), out


__all__ = ["CallableFormula", "FittedFormula", "LR_EXPONENTS", "MetaResult", "SearchConfig", "meta_tailor",
           "noether_net", "pretrain_mlp", "rollout", "rollout_rmse", "rollout_windows", "screen", "tailored_field",
           "tailored_field_ok", "training_loss"]
