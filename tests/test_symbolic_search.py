"""Screening and meta-tailoring (noether_rl.symbolic.search): a non-finite inner step is divergence."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from noether_rl.data.systems import GenerateConfig, generate, spring
from noether_rl.symbolic.search import (
    SearchConfig,
    meta_tailor,
    noether_net,
    pretrain_mlp,
    rollout_windows,
    screen,
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
