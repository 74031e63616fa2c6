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
    screen,
    selection_units,
    tailored_field_ok,
)

CFG = SearchConfig(hidden=8, pretrain_steps=20, meta_epochs=2, lr_exponents=(-2.0, -1.0), dtype="float64")


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
