"""Screening and meta-tailoring (noether_rl.symbolic.search): a non-finite inner step is divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from noether_rl.data.systems import GenerateConfig, generate, spring
from noether_rl.symbolic.search import (
    SearchConfig,
    meta_tailor,
    noether_net,
    one_standard_error_pick,
    pretrain_mlp,
    rollout_windows,
    rollouts_unstable,
    screen,
    selection_units,
    tailored_field_ok,
)

CFG = SearchConfig(hidden=8, pretrain_steps=20, meta_epochs=2, lr_exponents=(-2.0, -1.0), dtype="float64",
                   step_rule="sgd")


class SqrtQ(nn.Module):
    """g = sqrt(q): NaN (non-finite inner loss) wherever q < 0."""

    pairs = False

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :1].sqrt()


class Quadratic(nn.Module):
    pairs = False

    def forward(self, x: Tensor) -> Tensor:
        return x.pow(2).sum(1, keepdim=True)


def _data() -> tuple:
    traj = generate(spring(), GenerateConfig(n_trajectories=4, noise_std=0.0, seed=0, n_points=12))
    xs, ys = traj.targets()
    return traj, torch.as_tensor(xs), torch.as_tensor(ys)


def test_non_finite_inner_step_is_divergence_not_a_silent_fallback() -> None:
    traj, x, y = _data()
    dt = traj.nominal_dt()
    pred0 = pretrain_mlp(x, y, dt, CFG, 0)
    # the tailored field is NaN exactly where the inner step failed (q < 0), never the untailored MLP's
    f, ok = tailored_field_ok(noether_net(pred0, SqrtQ(), 0.1, CFG), x)
    assert torch.equal(ok, x[:, 0] >= 0) and bool((~ok).any()) and bool(ok.any())
    assert bool(torch.isnan(f[~ok]).all()) and bool(torch.isfinite(f[ok]).all())
    # meta-tailoring with such a formula diverges, with the reason
    bad = meta_tailor(pred0, SqrtQ(), 0.1, x, y, CFG, 0)
    assert bad.diverged and bad.reason == "non-finite inner step in epoch 1"
    assert bad.curve == [math.inf]  # caught at once, not after an epoch trained on the untailored fall-back
    good = meta_tailor(pred0, Quadratic(), 0.1, x, y, CFG, 0)
    assert not good.diverged and good.reason is None
    # the screen scores it inf at every inner lr (its rollouts diverge), a sound formula finitely
    vx, vt = rollout_windows(traj.x_clean, traj.t, 3)
    S = screen(pred0, [SqrtQ(), Quadratic()], vx, vt, dt, CFG)
    assert np.isinf(S[0]).all() and np.isfinite(S[1]).all()


def test_selection_units_never_count_overlapping_windows_as_independent() -> None:
    u, note = selection_units(5, 20, 4)  # >= 4 trajectories: one unit each
    assert u.shape == (5 * 16,) and list(np.unique(u)) == list(range(5)) and "5 validation trajectories" in note
    u, note = selection_units(1, 89, 10)  # one long measurement: blocks of >= 22 contiguous start points
    assert u.shape == (79,) and list(np.unique(u)) == [0, 1, 2] and np.all(np.diff(u) >= 0)
    assert np.bincount(u).min() >= 22


def test_one_standard_error_pick() -> None:
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(6), 10)
    base = rng.uniform(1.0, 2.0, 6).repeat(10)  # shared unit effects: paired differences remove them
    a = base + 0.010  # the lowest
    b = base + 0.010 + rng.normal(0, 0.002, 60)  # within noise of a
    c = base + 0.050  # clearly worse
    S = np.stack([a, b, c])
    # b is tied with a and preferred (e.g. better conserved): the rule picks it; c is never picked
    win, best, m, se = one_standard_error_pick(S, units, [(2.0,), (1.0,), (0.0,)])
    assert best == 0 and win == 1 and m[2] > se[2] and m[0] == 0
    # with the preference the other way round, the lowest wins
    assert one_standard_error_pick(S, units, [(0.0,), (1.0,), (2.0,)])[0] == 0
    # a non-finite candidate is never tied
    S2 = np.stack([a, np.where(np.arange(60) == 3, np.inf, b)])
    assert one_standard_error_pick(S2, units, [(1.0,), (0.0,)])[0] == 0


def test_one_standard_error_pick_refuses_when_nothing_is_finite() -> None:
    units = np.repeat(np.arange(3), 2)
    with pytest.raises(ValueError, match="none of the 2 candidates has a finite score"):
        one_standard_error_pick(np.stack([np.full(6, np.inf), np.full(6, np.nan)]), units, [(0.0,), (1.0,)])
    with pytest.raises(ValueError, match="none of the 2 candidates"):  # every candidate non-finite somewhere
        one_standard_error_pick(np.stack([np.r_[np.inf, np.ones(5)], np.r_[np.ones(5), np.nan]]), units,
                                [(0.0,), (1.0,)])
    with pytest.raises(ValueError, match="none of the 0 candidates"):
        one_standard_error_pick(np.zeros((0, 6)), units, [])
    with pytest.raises(ValueError, match="must be"):  # shapes that do not match
        one_standard_error_pick(np.ones((2, 5)), units, [(0.0,), (1.0,)])
    # one finite candidate among non-finite ones: it is picked and is the best, the others are inf
    win, best, m, se = one_standard_error_pick(np.stack([np.full(6, np.nan), np.ones(6)]), units,
                                               [(0.0,), (1.0,)])
    assert (win, best) == (1, 1) and np.isinf(m[0]) and np.isinf(se[0]) and m[1] == 0.0


class _Cubic:
    """dx/dt = x^3: bounded from small starts over t in [0, 1], blows up (t* = 1 / (2 x0^2)) from larger ones."""

    def vector_field(self, x: Tensor, adapted: object = None) -> Tensor:
        return x.pow(3)


def test_stability_check_from_starts_scaled_beyond_the_training_range() -> None:
    t = np.linspace(0.0, 1.0, 11)
    x0 = np.array([-0.5, -0.4, 0.4, 0.5])
    ref = (x0[:, None] / np.sqrt(1.0 - 2.0 * x0[:, None] ** 2 * t[None]))[..., None]  # exact, [4, 11, 1]
    tt = np.broadcast_to(t, (4, 11)).copy()
    dt = float(t[1] - t[0])
    assert not rollouts_unstable(_Cubic(), None, 0.0, ref, tt, dt, CFG)  # stable from the training starts
    # ... and from 20 % beyond them, but not from 2.5x (x0 = 1.25 blows up at t = 0.32)
    assert not rollouts_unstable(_Cubic(), None, 0.0, ref, tt, dt, SearchConfig(dtype="float64", stability_scale=1.2))
    assert rollouts_unstable(_Cubic(), None, 0.0, ref, tt, dt, SearchConfig(dtype="float64", stability_scale=2.5))
    with pytest.raises(ValueError, match="stability_scale"):
        SearchConfig(stability_scale=0.5)
    with pytest.raises(ValueError, match="step_rule"):
        SearchConfig(step_rule="adam")


def _gain(pred: object, g: nn.Module, lr: float, x: Tensor, dt: float, cfg: SearchConfig) -> Tensor:
    """How one tailoring step scales the formula's one-step change: (g(x + f' dt) - g(x)) / (g(x + f dt) - g(x))."""
    f0 = pred.vector_field(x)  # type: ignore[attr-defined]
    f1, _ = tailored_field_ok(noether_net(pred, g, lr, cfg), x)  # type: ignore[arg-type]
    g0 = g(x)[:, 0]
    return ((g(x + f1 * dt)[:, 0] - g0) / (g(x + f0 * dt)[:, 0] - g0)).detach()


def test_polyak_inner_step_acts_the_same_at_every_state_scale_sgd_does_not() -> None:
    """One SGD step on the readout changes the formula's one-step change by a factor 1 - kappa with kappa
    ~ lr |grad g|^2 |features|^2, growing with the state (overshoot, |gain| > 1, far out); the Polyak step
    zeroes the linearised loss times lr: gain ~ 1 - lr/2 at any scale."""
    traj, x, y = _data()
    dt = traj.nominal_dt()
    pred0 = pretrain_mlp(x, y, dt, CFG, 0)
    g = Quadratic()
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    near, far = 0.3 * d, 3.0 * d
    sgd = CFG
    polyak = SearchConfig(hidden=8, dtype="float64", step_rule="polyak")
    lr_sgd = 0.3
    g_near, g_far = _gain(pred0, g, lr_sgd, near, dt, sgd), _gain(pred0, g, lr_sgd, far, dt, sgd)
    assert float(g_near.abs().median()) < 1.0 < float(g_far.abs().median())  # the same lr overshoots far out
    for lr in (0.5, 1.0):
        for xs in (near, far):
            gp = _gain(pred0, g, lr, xs, dt, polyak)
            assert float((gp - (1 - lr / 2)).abs().median()) < 0.1, (lr, gp)
