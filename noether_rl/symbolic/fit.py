"""Conservation filter: fit every candidate's parameters at once and keep the conserved ones.

Measure (scale-free). Data come as *segments* ``[S, T, D]`` (whole trajectories, or windows of a
long one). For a formula ``f`` with values ``v[s, t]``::

    r(f) = mean_s Var_t v[s, t] / Var_{s,t} v[s, t]

i.e. the fraction of ``f``'s variance that happens *along* segments (1 - R^2 of a one-way ANOVA).
It is invariant to the scale and offset of ``f``, so a formula cannot look conserved by being tiny
or by a large constant, and a spike at one point does not help (it lands in one segment's variance
too). On *random* sequences -- the same points shuffled across segments -- every formula has
``r ~ 1 - 1/T``.

Fit (paper §4.2): the parameters are fitted by Adam to minimise ``r`` on the true segments (``log r`` stalls Adam at its sharp minimum),
and separately on the random sequences; a candidate survives when ``r_random / r_true >= min_ratio``
(paper: two orders of magnitude). Parameters are fitted in characteristic units: each parameter's
unit (solved from the formula) is measured in scales of M, L, T fitted to the data's RMS, so every
parameter starts at O(1) whatever the system's constants and units. Candidates that may pass are then
refined in rounds until their parameters stop moving (``refine_rounds``, ``refine_tol``): a stalled fit
would otherwise survive as a less conserved twin of a law that deduplication cannot merge.

Noisy observations (no clean states). White noise of std ``s_d`` on input ``d`` adds about
``sum_d (df/dx_d)^2 s_d^2`` to every within-segment variance, so even the true law has ``r`` of
0.1-0.2 on HNN's noisy data and none passes 100x. Given ``noise_std`` (estimated from the data by
:func:`estimate_noise_std`), the filter measures how much of ``f``'s variance the noise alone would
cause (``noise_frac``, :func:`noise_fraction`) and judges the rest: ``r_signal = max(r - (1 - 1/T)
noise_frac, 0)`` must be ``min_ratio`` x below ``r_random``, and at most ``max_noise_fraction`` of
``f``'s spread may be noise (a formula steep enough to be all noise is not a measured law). Without
noise ``r_signal = r``. The fit itself still minimises ``r`` (errors in variables bias coefficients a
little, measured: +3 % on HNN's spring at noise 0.1, +12 % on a spring whose smallest orbits are
about as large as the noise, ``tests/test_symbolic_fit.py``).

Batching: all candidates of a chunk (``chunk_size``) and all restarts are one ``[C*R, P]`` parameter
tensor evaluated by the vectorised interpreter (:mod:`noether_rl.symbolic.program`); the only Python
loops are over chunks, optimiser steps and program positions.

Duplicates: survivors whose fitted values are affinely equivalent on the data (|corr| >= 1 - tol), or
differ by less than they vary along trajectories anyway (the same law with slightly different fitted
constants, :func:`deduplicate`), are one observable law; the simplest, then best conserved, is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from noether_rl.errors import UserError
from noether_rl.symbolic.dsl import Expr
from noether_rl.symbolic.program import Programs, compile_programs, evaluate, parameter_log_scales, subset
from noether_rl.symbolic.units import Dim


@dataclass(frozen=True)
class FilterConfig:
    steps: int = 100
    lr: float = 0.1
    final_lr_factor: float = 1e-3
    # second, longer fit (from the first fit's parameters) for the candidates that may pass: r_true <= this
    refine_below: float = 0.1
    refine_steps: int = 300
    refine_lr: float = 0.02
    # the refinement runs in rounds of refine_steps (each from the previous round's parameters, the lr
    # schedule restarted) until a round moves no parameter by more than refine_tol characteristic units
    # or no longer lowers r, at most refine_rounds rounds: one round moves a parameter by at most ~1 unit
    refine_rounds: int = 10  # 0 = no refinement (the first fit only)
    refine_tol: float = 1e-3
    restarts: int = 2  # restart 0 starts every parameter at 1 characteristic unit, the others at N(0, 1)
    min_ratio: float = 100.0
    # noisy data: a survivor's variance may be at most this fraction observation noise (its spread across
    # trajectories must be measurable above the noise)
    max_noise_fraction: float = 0.5
    chunk_size: int = 4096
    max_segments: int = 32
    max_points_per_segment: int = 12
    dedup_tol: float = 1e-7  # |corr| >= 1 - dedup_tol: affinely identical values (one law, whatever the data)
    # and the same law with slightly different constants (see deduplicate): 1 - corr^2 <= dedup_rel x the
    # pair's larger r, and <= dedup_max (a small difference: |corr| >= 1 - dedup_max / 2)
    dedup_rel: float = 4.0
    dedup_max: float = 1e-5
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.refine_rounds < 0 or not self.refine_tol > 0:
            raise UserError(f"FilterConfig: need refine_rounds >= 0 and refine_tol > 0, got {self.refine_rounds} "
                            f"and {self.refine_tol}")


@dataclass
class FitResult:
    """Per candidate (in input order): fitted parameters (physical units), r on true and random data.

    With observation noise (``noise_std`` given to :func:`fit_candidates`), ``noise_frac`` is the part
    of each formula's variance that the noise alone explains and ``r_signal`` the part of its variation
    along trajectories that the noise does not explain: ``max(r_true - (1 - 1/T) noise_frac, 0)``
    (without noise both are ``0`` and ``r_true``). ``r_random`` is nan for candidates that could not
    pass anyway (``r_signal > 1/min_ratio`` or too noisy).
    """

    params: np.ndarray  # [C, P]
    r_true: np.ndarray  # [C]
    r_random: np.ndarray  # [C]
    noise_frac: np.ndarray | None = None  # [C]
    r_signal: np.ndarray | None = None  # [C]

    def __post_init__(self) -> None:
        if self.noise_frac is None:
            self.noise_frac = np.zeros_like(self.r_true)
        if self.r_signal is None:
            self.r_signal = self.r_true.copy()

    @property
    def ratio(self) -> np.ndarray:
        """r_random / r_signal (inf where the noise explains all variation along trajectories)."""
        with np.errstate(all="ignore"):
            return self.r_random / self.r_signal


def conservation_ratio(values: Tensor, S: int, T: int) -> Tensor:
    """r = mean within-segment variance / total variance; values [C, S*T] -> [C] (nan if non-finite)."""
    v = values.reshape(values.shape[0], S, T)
    seg_mean = v.mean(2, keepdim=True)
    within = (v - seg_mean).pow(2).mean(dim=(1, 2))
    total = (v - seg_mean.mean(1, keepdim=True)).pow(2).mean(dim=(1, 2))
    r = within / (total + 1e-300)
    # not a measurement: an overflowing total (float32 spikes such as q^4/p^8 near p = 0) would give r = 0,
    # and a formula whose spread is at the dtype's rounding level (cos(1e-4 q^2) in float32) is quantised
    # to a few levels, constant within segments
    level = (1e3 * torch.finfo(v.dtype).eps * v.mean(dim=(1, 2)).abs()) ** 2
    ok = torch.isfinite(r) & torch.isfinite(total) & (total > level) & (total > 0)
    return torch.where(ok, r, torch.full_like(r, float("nan")))


def prepare_segments(segments: np.ndarray, cfg: FilterConfig) -> np.ndarray:
    """Check and subsample segments [S, T, D] (evenly spaced segments and time points)."""
    x = np.asarray(segments, dtype=np.float64)
    if x.ndim != 3:
        raise UserError(f"conservation data must be [segments, time, inputs], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UserError("trajectories contain NaN or infinite values; remove or repair them first")
    if x.shape[0] < 2:
        raise UserError(f"need at least 2 trajectories (or windows) to measure conservation, got {x.shape[0]}")
    if x.shape[1] < 4:
        raise UserError(f"trajectories are too short to measure conservation: {x.shape[1]} points (need >= 4)")
    si = np.unique(np.linspace(0, x.shape[0] - 1, min(cfg.max_segments, x.shape[0])).round().astype(int))
    ti = np.unique(np.linspace(0, x.shape[1] - 1, min(cfg.max_points_per_segment, x.shape[1])).round().astype(int))
    return x[si][:, ti]


def estimate_noise_std(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Observation-noise std per input, from the data alone: x [N, T, D], t [N, T] -> [D].

    Difference-based estimator: on five equally spaced points the fourth difference
    ``x[k] - 4 x[k+1] + 6 x[k+2] - 4 x[k+3] + x[k+4]`` of white noise of std ``s`` has std ``sqrt(70) s``,
    while a smooth signal's is ``O((omega dt)^4)`` (a few 1e-3 of its amplitude at 30-50 points per period).
    Robust: the median absolute fourth difference / (0.6745 sqrt(70)). Only runs of the most common time
    step count (a gap is not a difference). Zeros when no trajectory has 5 such points. Coarsely sampled
    data make it an over-estimate (the signal leaks in), which makes the filter more lenient, not stricter.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim != 3 or t.shape != x.shape[:2] or x.shape[1] < 5:
        return np.zeros(x.shape[-1] if x.ndim else 0)
    h = np.diff(t, axis=1)
    vals, counts = np.unique(np.round(h, 9), return_counts=True)
    nominal = float(vals[np.argmax(counts)])
    even = np.abs(h - nominal) <= 1e-3 * nominal  # [N, T-1]
    ok = even[:, :-3] & even[:, 1:-2] & even[:, 2:-1] & even[:, 3:]  # [N, T-4]: 4 even steps from k
    d4 = x[:, :-4] - 4 * x[:, 1:-3] + 6 * x[:, 2:-2] - 4 * x[:, 3:-1] + x[:, 4:]
    if not ok.any():
        return np.zeros(x.shape[-1])
    return np.median(np.abs(d4[ok]), axis=0) / (0.6745 * np.sqrt(70.0))


def noise_fraction(prog: Programs, x: Tensor, theta: Tensor, noise_std: np.ndarray) -> Tensor:
    """Fraction of each formula's variance that observation noise of std ``noise_std`` [D] alone would
    cause: ``mean_points sum_d ((f(x + s_d e_d) - f(x - s_d e_d)) / 2)^2 / Var f`` -> [C] (nan if
    non-finite). The secant over +-1 std is the first-order propagation ``(df/dx_d)^2 s_d^2`` for smooth
    formulas and does not blow up for steep ones. x [N, D], theta [C, P] (float64 recommended)."""
    with torch.no_grad():
        v = evaluate(prog, x, theta)
        total = v.var(1, unbiased=False)
        noise = torch.zeros_like(total)
        for d, s in enumerate(np.asarray(noise_std, dtype=np.float64)):  # D inputs: a handful
            if s <= 0:
                continue
            e = torch.zeros_like(x[0])
            e[d] = float(s)
            noise = noise + ((evaluate(prog, x + e, theta) - evaluate(prog, x - e, theta)) / 2).pow(2).mean(1)
        out = noise / total
        return torch.where(torch.isfinite(out) & (total > 0), out, torch.full_like(out, float("nan")))


def base_log_scales(x: np.ndarray, units: Sequence[Dim]) -> np.ndarray:
    """log characteristic scales of (M, L, T) so that each input's RMS is ~1 in them (least squares)."""
    U = np.array([[float(v) for v in u.vec] for u in units])
    rms = np.sqrt(np.mean(x.reshape(-1, x.shape[-1]) ** 2, axis=0)) + 1e-12
    return np.linalg.lstsq(U, np.log(rms), rcond=None)[0] if np.any(U) else np.zeros(3)


def _fit_chunk(prog: Programs, log_scale: Tensor, x: Tensor, S: int, T: int, cfg: FilterConfig,
               gen: torch.Generator, start: Tensor | None = None, steps: int | None = None,
               lr: float | None = None) -> tuple[Tensor, Tensor]:
    """Fit one chunk with restarts; returns (physical params [C, P], r [C]) of the best restart.

    ``start`` (physical params [C, P]) replaces the restarts by one run from there (refinement).
    """
    Cn, P = log_scale.shape
    has_params = bool(prog.max_params > 0)
    R = cfg.restarts if has_params and start is None else 1
    steps = cfg.steps if steps is None else steps
    lr = cfg.lr if lr is None else lr
    rep = subset(prog, np.tile(np.arange(Cn), R))
    if start is not None:
        init = [start.to(x.dtype) / log_scale.exp()]
    else:
        init = [torch.ones(Cn, P, dtype=x.dtype)]
        init += [torch.randn(Cn, P, generator=gen, dtype=x.dtype) for _ in range(R - 1)]
    theta = torch.cat(init, 0).requires_grad_(True)
    scale = log_scale.exp().repeat(R, 1)
    if has_params and steps > 0:
        opt = torch.optim.Adam([theta], lr=lr)
        # exponential decay to lr * final_lr_factor: large early moves, then a precise minimum
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.final_lr_factor ** (1.0 / steps))
        for _ in range(steps):
            r = conservation_ratio(evaluate(rep, x, theta * scale), S, T)
            loss = torch.where(torch.isfinite(r), r, torch.zeros_like(r))
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            theta.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            sched.step()
    with torch.no_grad():
        phys = theta * scale
        r = conservation_ratio(evaluate(rep, x, phys), S, T).reshape(R, Cn)
        best = torch.nan_to_num(r, nan=float("inf")).argmin(0)
        rows = best * Cn + torch.arange(Cn)
        return phys[rows], r.gather(0, best.unsqueeze(0)).squeeze(0)


def fit_candidates(exprs: Sequence[Expr], units: Sequence[Dim], segments: np.ndarray,
                   cfg: FilterConfig = FilterConfig(), *, device: str | torch.device = "cpu",
                   progress: Callable[[int], None] | None = None,
                   noise_std: Sequence[float] | np.ndarray | None = None) -> FitResult:
    """Fit every formula on the true segments and on shuffled (random) sequences of the same points.

    ``noise_std`` [D]: the observations' noise std (e.g. :func:`estimate_noise_std`); then a formula is
    judged by the variation along trajectories that the noise does not explain (``FitResult.r_signal``).
    """
    seg = prepare_segments(segments, cfg)
    S, T, D = seg.shape
    if len(units) != D:
        raise UserError(f"{len(units)} input units given but the data have {D} inputs per state")
    noise = np.zeros(D) if noise_std is None else np.asarray(noise_std, dtype=np.float64).reshape(-1)
    if noise.shape != (D,) or not np.all(np.isfinite(noise)) or (noise < 0).any():
        raise ValueError(f"noise_std must be {D} finite non-negative numbers, got {noise_std}")
    dtype = getattr(torch, cfg.dtype)
    rng = np.random.default_rng(cfg.seed)
    flat = seg.reshape(S * T, D)
    shuffled = flat[rng.permutation(S * T)]
    x_true = torch.as_tensor(flat, dtype=dtype, device=device)
    x_rand = torch.as_tensor(shuffled, dtype=dtype, device=device)
    lb = base_log_scales(seg, units)
    K = max(e.size for e in exprs)
    P = max(1, max(e.n_params for e in exprs))
    params = np.zeros((len(exprs), P))
    r_true = np.full(len(exprs), np.nan)
    r_rand = np.full(len(exprs), np.nan)
    gen = torch.Generator().manual_seed(cfg.seed)
    # a formula can only pass if r_true <= 1/min_ratio (r <= 1 always), so only those are fitted on the
    # random sequences; the others keep r_random = nan ("not needed")
    def run(ids: np.ndarray, data: Tensor, refine: bool, count: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Fit candidates ``ids`` on ``data`` chunk by chunk; returns (params, r) for them."""
        out_p = np.zeros((len(ids), P))
        out_r = np.full(len(ids), np.nan)
        # parameter-free formulas need no fitting: they get their own chunks (no optimiser steps there)
        order = np.argsort([exprs[i].n_params > 0 for i in ids], kind="stable")
        for s0 in range(0, len(ids), cfg.chunk_size):
            pos = order[s0:s0 + cfg.chunk_size]
            free = np.array([exprs[i].n_params == 0 for i in ids[pos]])
            for part in (pos[free], pos[~free]):
                if len(part) == 0:
                    continue
                chunk = [exprs[i] for i in ids[part]]
                prog = compile_programs(chunk, K)
                ls = parameter_log_scales(chunk, units, lb)
                ls_full = np.zeros((len(chunk), P))
                ls_full[:, :ls.shape[1]] = ls
                lst = torch.as_tensor(ls_full, dtype=dtype, device=device)
                if refine:
                    start = torch.as_tensor(params[ids[part]], dtype=dtype, device=device)
                    p_fit, r_fit = _fit_chunk(prog, lst, data, S, T, cfg, gen, start=start,
                                              steps=cfg.refine_steps, lr=cfg.refine_lr)
                else:
                    p_fit, r_fit = _fit_chunk(prog, lst, data, S, T, cfg, gen)
                out_p[part] = p_fit.detach().cpu().numpy()
                out_r[part] = r_fit.cpu().numpy()
            if progress is not None and count:
                progress(len(pos))
        return out_p, out_r

    noise_frac = np.zeros(len(exprs))
    x64 = torch.as_tensor(flat, dtype=torch.float64, device=device)

    def measure_noise(ids: np.ndarray) -> None:
        """noise_frac of candidates ``ids`` at their fitted parameters (chunked; float64)."""
        for s0 in range(0, len(ids), cfg.chunk_size):
            part = ids[s0:s0 + cfg.chunk_size]
            prog = compile_programs([exprs[i] for i in part], K)
            th = torch.as_tensor(params[part], dtype=torch.float64, device=device)
            noise_frac[part] = noise_fraction(prog, x64, th, noise).cpu().numpy()

    def signal(ids: np.ndarray | slice) -> np.ndarray:
        return np.maximum(r_true[ids] - (1.0 - 1.0 / T) * noise_frac[ids], 0.0)

    noisy = bool((noise > 0).any())
    everything = np.arange(len(exprs))
    params[:], r_true[:] = run(everything, x_true, refine=False, count=True)
    if noisy:
        measure_noise(everything)
    # refine the candidates that may pass until their parameters stop moving (keep a round's fit only where
    # it is better). Measured on a spring with k=3, m=0.7 (filter on noise-free states): one round left
    # q^2 - p^2/c0 at c0 = -2.071 (r 5.6e-5; the first fit ended at -1.14, and a round's decaying lr moves
    # ~1 unit), while its 14 reparametrisations reached -2.1 (r ~1e-14): an unconverged twin of the
    # exact law, kept apart by deduplication, that the validation rollouts then picked
    cand = np.flatnonzero((signal(everything) <= cfg.refine_below) & np.array([e.n_params > 0 for e in exprs]))
    active = cand if cfg.refine_steps > 0 else cand[:0]
    rounds = 0
    if len(cand):
        unit = np.ones((len(exprs), P))  # characteristic units of the refined candidates' parameters
        ls = parameter_log_scales([exprs[i] for i in cand], units, lb)
        unit[cand, :ls.shape[1]] = np.exp(ls)
    while len(active) and rounds < cfg.refine_rounds:
        rounds += 1
        p2, r2 = run(active, x_true, refine=True)
        better = np.isfinite(r2) & ~(r2 >= r_true[active])
        moved = (np.abs(p2 - params[active]) / unit[active] > cfg.refine_tol).any(1)
        params[active[better]] = p2[better]
        r_true[active[better]] = r2[better]
        if noisy and better.any():
            measure_noise(active[better])
        active = active[better & moved]
    # a formula can only pass if r_signal <= 1/min_ratio (r <= 1 always) and the noise leaves its spread
    # measurable, so only those are fitted on the random sequences; the others keep r_random = nan
    r_sig = signal(everything)
    maybe = np.flatnonzero((r_sig <= 1.0 / cfg.min_ratio) & (noise_frac <= cfg.max_noise_fraction))
    if len(maybe):
        _, r_rand[maybe] = run(maybe, x_rand, refine=False)
    # unused parameter slots are reported as 0
    for c, e in enumerate(exprs):
        params[c, e.n_params:] = 0.0
    return FitResult(params=params, r_true=r_true, r_random=r_rand, noise_frac=noise_frac, r_signal=r_sig)


def survivors(fit: FitResult, cfg: FilterConfig = FilterConfig()) -> np.ndarray:
    """Indices of candidates whose variation along trajectories (beyond what observation noise explains) is
    >= ``min_ratio`` times smaller than on random data, and whose spread is not mostly noise."""
    nf, rs = fit.noise_frac, fit.r_signal
    assert nf is not None and rs is not None
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(fit.r_true) & np.isfinite(fit.r_random) & np.isfinite(nf) & (nf <= cfg.max_noise_fraction)
              & (fit.r_random >= cfg.min_ratio * rs))
    return np.flatnonzero(ok)


def deduplicate(exprs: Sequence[Expr], params: np.ndarray, segments: np.ndarray, idx: np.ndarray,
                cfg: FilterConfig = FilterConfig(), r: np.ndarray | None = None,
                groups: dict[int, list[int]] | None = None, n_exact: list[int] | None = None) -> np.ndarray:
    """Keep one of each group of observationally equivalent fitted formulas; returns indices (sorted).

    For fitted formulas A, B (values on the filter data, centred), ``e = 1 - corr(A, B)^2`` is the part
    of B that no affine map of A explains (scale- and offset-free). Two passes:

    1. identical: ``e <= 2 dedup_tol`` (``|corr| >= 1 - dedup_tol``); the simplest (fewest nodes, then
       fewest parameters) is kept.
    2. (when ``r``, each formula's conservation ratio on the same data -- ``FitResult.r_true``, its
       variation along trajectories, noise included -- is given) the same law with slightly different
       fitted constants (``p^2 + 1.077 q^2`` vs ``p^2 + 1.08 q^2`` from two programs): the pass-1
       representatives, best conserved first, each join the first kept one with
       ``e <= min(dedup_max, dedup_rel * max(r_A, r_B))``: B differs from A by little, and by no more
       than the pair varies along trajectories anyway, so B is A plus a non-conserved deviation, not a
       second law. The best conserved of such a group is its representative. Two well-conserved but
       different quantities (``r`` far below their difference ``e``, e.g. H and a nonlinear function
       of H) stay apart, and so do different laws that are merely similar on the data (``dedup_max``).
       Measured (filter data of ``discover``): the ideal spring's ``0.9989 p^2 + q^2`` (a float32 fit
       that stalled, r 3.9e-7) vs ``p^2 + q^2`` (r 9e-14): e = 4e-7, merged; on the real pendulum
       ``-0.4059 p^2 + cos q`` vs ``p^2 - 2.465 cos q`` (r 5.1e-3): e = 1.2e-6, merged; the quadratic
       ``p^2 + 1.077 q^2`` vs that energy form: e = 6.1e-3 (|corr| 0.997), kept apart.

    ``groups`` (optional, filled in): kept index -> the indices merged into it; ``n_exact`` (optional):
    receives the number of formulas left after pass 1.
    """
    if len(idx) == 0:
        return idx
    seg = prepare_segments(segments, cfg)
    x = torch.as_tensor(seg.reshape(-1, seg.shape[-1]), dtype=torch.float64)
    sub = [exprs[i] for i in idx]
    prog = compile_programs(sub, max(e.size for e in sub))
    with torch.no_grad():
        v = evaluate(prog, x, torch.as_tensor(params[idx], dtype=torch.float64))
    v = v - v.mean(1, keepdim=True)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    rs = np.zeros(len(idx)) if r is None else np.nan_to_num(np.asarray(r, dtype=np.float64)[idx], nan=np.inf)
    merged: dict[int, list[int]] = {}

    def one_pass(order: list[int], tol_of: Callable[[list[int], int], np.ndarray]) -> list[int]:
        kept: list[int] = []
        for j in order:  # survivors are few (hundreds): a loop over them, vectorised over the kept ones
            if kept:
                corr = (v[kept] @ v[j]).clamp(-1.0, 1.0).numpy()
                hit = np.flatnonzero(1.0 - corr ** 2 <= tol_of(kept, j))
                if len(hit):
                    k = kept[int(hit[0])]
                    merged.setdefault(k, []).extend([j, *merged.pop(j, [])])
                    continue
            kept.append(j)
        return kept

    simplest = sorted(range(len(idx)), key=lambda j: (sub[j].size, sub[j].n_params, rs[j], sub[j].key))
    kept = one_pass(simplest, lambda kept, j: np.full(len(kept), 2.0 * cfg.dedup_tol))
    if n_exact is not None:
        n_exact.append(len(kept))
    if r is not None and cfg.dedup_rel > 0:
        best_first = sorted(kept, key=lambda j: (rs[j], sub[j].size, sub[j].n_params, sub[j].key))
        kept = one_pass(best_first, lambda kept, j: np.maximum(
            2.0 * cfg.dedup_tol, np.minimum(cfg.dedup_max, cfg.dedup_rel * np.maximum(rs[kept], rs[j]))))
    if groups is not None:
        for k in kept:
            if merged.get(k):
                groups[int(idx[k])] = sorted(int(idx[m]) for m in merged[k])
    return idx[np.array(sorted(kept), dtype=np.int64)]


__all__ = ["FilterConfig", "FitResult", "base_log_scales", "conservation_ratio", "deduplicate", "estimate_noise_std",
           "fit_candidates", "noise_fraction", "prepare_segments", "survivors"]
