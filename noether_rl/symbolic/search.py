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

The inner step (``SearchConfig.step_rule``). One plain SGD step on the readout multiplies the formula's
one-step change dg = g(x + f dt) - g(x) by about 1 - kappa, kappa ~ 2 lr dt^2 |grad g|^2 (|features|^2 + 1):
it grows with the state, so an lr chosen on validation states can overshoot (|1 - kappa| > 1: the step
amplifies the violation it corrects, the next state is further out, kappa larger) beyond them. Measured
(``benchmarks/discover_blowup.py``, dimensionless spring k=4, m=1, the pick of its 8b7b469 run, 100 new
trajectories of the generator, seed 1, never the test split): at the chosen lr 0.316 the step overshoots at 80 % (the pick,
meta-tailored) / 98 % (the true energy) of the states above the training energy range, 13 % / 16 % inside
it; the meta-tailored MLP without the step is fine there (RMSE 0.25 / 0.29, MLP 0.57), and the true
energy's tailored rollout blew up (RMSE 5e7) from one new start inside the range that the training starts
did not contain. ``"polyak"`` (the step that zeroes the linearised inner loss, times lr; capped by the
engine's trust radius) changes dg by 1 - lr/2 at every state: lr in (0, 4) cannot overshoot anywhere, and
:data:`POLYAK_LRS` is its grid (lr = 2 removes the linearised violation).
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
# the inner-lr grid for step_rule="polyak" (as lr_exponents): its lr is scale-free, dg changes by 1 - lr/2,
# so the stable range (0, 4) is covered in steps of 0.5 (gain +0.75 ... -0.75), fixed from that rule
POLYAK_LRS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
POLYAK_LR_EXPONENTS = tuple(math.log10(v) for v in POLYAK_LRS)


@dataclass(frozen=True)
class SearchConfig:
    hidden: int = 200
    pretrain_steps: int = 2000
    pretrain_lr: float = 1e-3
    weight_decay: float = 1e-4
    # the inner-lr grid (log10), for the default step_rule "polyak"; with step_rule="sgd" pass LR_EXPONENTS
    # (the paper's 10^-3 .. 10^1)
    lr_exponents: tuple[float, ...] = POLYAK_LR_EXPONENTS
    top_k: int = 20
    meta_epochs: int = 100
    meta_lr: float = 1e-3
    meta_batch: int | None = None  # None: full batch (one outer step per epoch, like HNN's training)
    adapt: str = "readout"  # per-example weights adapted: "readout" (output layer) or "weights" (all)
    diverge_factor: float = 10.0
    select_horizon: int = 10  # validation rollouts used for selection: windows of this many steps
    # a rollout whose RMSE exceeds this many times the training states' RMS spread has diverged (left the data)
    blowup_factor: float = 10.0
    # the stability check (pipeline) also rolls out from the training starts scaled by this factor about the
    # training states' mean (1.0: the training starts only); such a rollout has no reference, so it diverged
    # when non-finite or when its RMS distance from the mean exceeds ``blowup_factor`` x the states' RMS spread
    stability_scale: float = 1.0
    # the inner step of every Noether tailoring step (TailorConfig.step_rule): "sgd" (the paper's lr * grad;
    # its effect on the formula grows with |grad g|^2 |features|^2, i.e. with the state) or "polyak" (the
    # step that zeroes the linearised inner loss, times lr: the same relative effect at every state).
    # Default "polyak": chosen on the VALIDATION trajectories of all six checked systems (validation rollout RMSE
    # polyak vs sgd, same winners: pendulum 0.039 vs 0.115, spring 0.048 vs 0.067, spring k=3 m=0.7 0.056 vs
    # 0.076, pendulum l=0.8 0.178 vs 0.275, real pendulum 0.00771 vs 0.00775) and because sgd's pick blew up
    # beyond the training range on the dimensionless spring (new generator trajectories, not the test split)
    step_rule: str = "polyak"
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stability_scale) and self.stability_scale >= 1.0):
            raise ValueError(f"SearchConfig.stability_scale must be a finite number >= 1, got {self.stability_scale}")
        if self.step_rule not in ("sgd", "normalized", "polyak"):
            raise ValueError(f"SearchConfig.step_rule must be sgd | normalized | polyak, got {self.step_rule!r}")


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
    tc = TailorConfig(steps=1, lr=lr, step_rule=cfg.step_rule, order="second")  # type: ignore[arg-type]
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
           cfg: SearchConfig, progress: Callable[[int], None] | None = None,
           per_window: np.ndarray | None = None) -> np.ndarray:
    """Rollout RMSE of the pre-trained MLP with one Noether step per query, for every formula and inner
    lr: [n_formulas, n_lrs] (inf where the rollout blew up).

    ref [N, T, D] / t [N, T]: the selection data (validation windows, :func:`rollout_windows`);
    ``per_window`` (optional, [n_formulas, n_lrs, N]) receives each window's RMSE."""
    out = np.full((len(formulas), len(cfg.lr_exponents)), np.inf)
    for i, g in enumerate(formulas):  # a few hundred formulas at most; each rollout is batched
        for j, k in enumerate(cfg.lr_exponents):
            r = rollout_rmse(pred, g, 10.0 ** k, ref, t, dt, cfg)[0]
            out[i, j] = float(np.mean(r))
            if per_window is not None:
                per_window[i, j] = r
        if progress is not None:
            progress(1)
    out[~np.isfinite(out)] = np.inf
    return out


def selection_units(n: int, T: int, horizon: int, min_units: int = 4) -> tuple[np.ndarray, str]:
    """Independent units for standard errors of validation scores: the unit of every window of
    :func:`rollout_windows` (n trajectories of T points, windows of ``horizon + 1`` points) -> [W] ids.

    Overlapping windows are not independent. With >= ``min_units`` trajectories the units are the
    trajectories; otherwise (one long measurement) each trajectory's start points are cut into
    contiguous blocks of at least ``2 (horizon + 1)`` starts, so that windows of two blocks share at
    most the ``horizon`` points at their common edge."""
    L = min(horizon + 1, T)
    n_starts = T - L + 1
    if n >= min_units:
        return np.repeat(np.arange(n), n_starts), f"{n} validation trajectories"
    nb = max(1, n_starts // (2 * L))
    block = np.minimum(np.arange(n_starts) * nb // n_starts, nb - 1)
    return ((np.arange(n)[:, None] * nb + block[None]).reshape(-1),
            f"{n * nb} blocks of contiguous start points ({nb} per validation trajectory, >= {2 * L} starts each)")


def one_standard_error_pick(per_window: np.ndarray, units: np.ndarray,
                            prefer: Sequence[tuple[float, ...]]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The one-standard-error rule over candidates' validation scores (lower is better).

    per_window [K, W]: each candidate's score on every window; units [W]: the independent unit of each
    window (:func:`selection_units`); prefer: one sort key per candidate (smaller = preferred, e.g. the
    filter's conservation measure), fixed before the scores are seen. The best is the lowest mean score;
    each candidate's paired difference to it is averaged per unit, and a candidate whose mean difference
    is at most one standard error of that difference (over units) is not significantly worse. Among
    those, the most preferred wins (then the lower mean score).

    Returns (winner, best, mean difference [K], its s.e. [K]) (inf where a candidate has a non-finite
    score). A candidate with any non-finite window score is never picked; ValueError when no candidate has
    finite scores on every window (nothing to pick: the caller drops diverged candidates first)."""
    S = np.asarray(per_window, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != len(units) or len(prefer) != S.shape[0]:
        raise ValueError(f"one_standard_error_pick: per_window must be [K, W] with W = len(units) and K = "
                         f"len(prefer), got {S.shape}, {len(units)} units, {len(prefer)} keys")
    K = S.shape[0]
    finite = np.isfinite(S).all(1) if S.shape[1] else np.zeros(K, dtype=bool)
    if not finite.any():
        raise ValueError(f"one_standard_error_pick: none of the {K} candidates has a finite score on every "
                         "window; drop diverged candidates before selecting")
    ids, inv = np.unique(units, return_inverse=True)
    n = np.bincount(inv, minlength=len(ids))
    with np.errstate(all="ignore"):
        mean = S.mean(1)
        best = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
        per_unit = np.stack([np.bincount(inv, weights=S[k], minlength=len(ids)) / n for k in range(K)])
        d = per_unit - per_unit[best]
        m = d.mean(1)
        se = d.std(1, ddof=1) / np.sqrt(len(ids)) if len(ids) > 1 else np.zeros(K)
    m = np.where(np.isfinite(m), m, np.inf)
    se = np.where(np.isfinite(m) & np.isfinite(se), se, np.inf)
    tied = [k for k in range(K) if np.isfinite(m[k]) and m[k] <= se[k]]
    win = min(tied, key=lambda k: (tuple(prefer[k]), mean[k], k))
    return win, best, m, se


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


def rollouts_unstable(pred: StateSpacePredictor, g: nn.Module | None, lr: float, ref: np.ndarray, t: np.ndarray,
                      dt: float, cfg: SearchConfig) -> bool:
    """Stability over the training range: True when a rollout from any trajectory's first state of ``ref``
    [N, T, D] (the training data) is non-finite or has an RMSE above ``blowup_factor`` x the states' RMS
    spread (it left the data).

    With ``cfg.stability_scale`` > 1, also from those starts scaled by it about the states' mean, where no
    reference exists: non-finite, or an RMS distance from the mean above ``blowup_factor`` x the spread.
    (A tailored model can be stable on the training starts and blow up just beyond them: measured on a
    dimensionless spring, see ``benchmarks/discover_blowup.py``.)"""
    centre = ref.mean(axis=(0, 1))
    spread = float(np.sqrt(np.mean((ref - centre) ** 2)))
    r = rollout_rmse(pred, g, lr, ref, t, dt, cfg)[0]
    if (~np.isfinite(r)).any() or (r > cfg.blowup_factor * spread).any():
        return True
    if cfg.stability_scale == 1.0:
        return False
    far = np.broadcast_to(centre + cfg.stability_scale * (ref[:, :1] - centre), ref.shape)
    ro = rollout_rmse(pred, g, lr, far, t, dt, cfg)[1]  # rollouts from the scaled starts (only far[:, 0] is used)
    with np.errstate(all="ignore"):
        dist = np.sqrt(((ro - centre) ** 2).mean(axis=(1, 2)))
    return bool((~np.isfinite(dist)).any() or (dist > cfg.blowup_factor * spread).any())


__all__ = ["CallableFormula", "FittedFormula", "LR_EXPONENTS", "POLYAK_LRS", "POLYAK_LR_EXPONENTS", "MetaResult",
           "SearchConfig", "meta_tailor", "noether_net", "pretrain_mlp", "rollout", "rollout_rmse", "rollout_windows", "rollouts_unstable", "screen",
           "tailored_field", "one_standard_error_pick", "selection_units", "tailored_field_ok", "training_loss"]
