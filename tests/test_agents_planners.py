"""Planners: each finds the optimum of a known quadratic, respects bounds, survives NaN scores, is seeded."""

from __future__ import annotations

import math

import pytest
import torch

from noether_rl.agents.planners import (
    CEM,
    ICEM,
    MPPI,
    CEMConfig,
    ICEMConfig,
    MPPIConfig,
    colored_noise,
    make_planner,
)
from noether_rl.errors import UserError

H, A = 6, 2
LOW, HIGH = [-1.0, -2.0], [1.0, 2.0]


def _planners(seed: int = 0):
    return {
        "cem": CEM(H, LOW, HIGH, CEMConfig(population=64, elites=8, iterations=12), seed=seed),
        "icem": ICEM(H, LOW, HIGH, ICEMConfig(population=64, elites=8, iterations=12), seed=seed),
        "mppi": MPPI(H, LOW, HIGH, MPPIConfig(population=64, iterations=12, temperature=0.3, noise_std=0.3), seed=seed),
    }


def quadratic(target: torch.Tensor):
    def f(x: torch.Tensor) -> torch.Tensor:  # [..., H, A] -> [...]
        return -(x - target).pow(2).sum((-1, -2))
    return f


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
def test_finds_quadratic_optimum(name):
    target = torch.tensor([0.4, -1.1]).expand(H, A)
    planner = _planners()[name]
    plan = planner.plan(quadratic(target))
    assert plan.shape == (H, A)
    start = quadratic(target)(torch.zeros(H, A))  # -8.2 at the centre of the box
    assert quadratic(target)(plan) > 0.03 * start  # > 97% of the way to the optimum (0)
    assert (plan - target).abs().max() < 0.3, (plan - target).abs().max()
    # warm start: a second call starts from the solution and stays at least as good
    planner.advance(0)
    again = planner.plan(quadratic(target))
    assert quadratic(target)(again) >= quadratic(target)(plan) - 0.05


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
def test_respects_bounds_and_finds_the_boundary_optimum(name):
    target = torch.tensor([3.0, -5.0]).expand(H, A)  # outside the box: optimum at (1, -2)
    planner = _planners()[name]
    seen = []

    def f(x):
        seen.append(x)
        return quadratic(target)(x)

    plan = planner.plan(f)
    for x in [*seen, plan]:
        assert (x[..., 0] >= -1).all() and (x[..., 0] <= 1).all()
        assert (x[..., 1] >= -2).all() and (x[..., 1] <= 2).all()
    assert (plan - torch.tensor([1.0, -2.0])).abs().max() < 0.25


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
def test_nan_and_inf_scores_count_as_minus_inf(name):
    target = torch.tensor([0.5, 0.5]).expand(H, A)

    def f(x):  # NaN where the first action is negative, +inf where the second is above 1.5: both are "bad"
        s = quadratic(target)(x)
        s = torch.where(x[:, 0, 0] < 0, torch.full_like(s, math.nan), s)
        return torch.where(x[:, 0, 1] > 1.5, torch.full_like(s, math.inf), s)

    plan = _planners()[name].plan(f)
    assert torch.isfinite(plan).all()
    assert plan[0, 0] >= 0 and plan[0, 1] <= 1.5 + 1e-6
    # every score non-finite: no crash, a finite in-bounds plan
    planner = _planners()[name]
    plan = planner.plan(lambda x: torch.full(x.shape[:-2], math.nan))
    assert torch.isfinite(plan).all() and (plan[..., 0].abs() <= 1).all()


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
def test_seeded_batched_and_reset(name):
    target = torch.tensor([[0.2, 0.3], [-0.5, 1.0]])[:, None].expand(2, H, A)

    def fb(x):  # [B, N, H, A] -> [B, N]
        return -(x - target[:, None]).pow(2).sum((-1, -2))

    p1, p2 = _planners(seed=3)[name], _planners(seed=3)[name]
    a, b = p1.plan(fb, batch_size=2), p2.plan(fb, batch_size=2)
    assert a.shape == (2, H, A) and torch.equal(a, b)
    assert (a - target).abs().max() < 0.3
    p1.reset(seed=3)
    p3 = _planners(seed=3)[name]
    assert torch.equal(p1.plan(fb, batch_size=2), p3.plan(fb, batch_size=2))
    assert not torch.equal(_planners(seed=4)[name].plan(fb, batch_size=2), a)


def test_advance_shifts_warm_start():
    p = CEM(4, [-1.0], [1.0], CEMConfig(population=16, elites=4, iterations=2))
    p.plan(lambda x: -(x - 0.7).pow(2).sum((-1, -2)))
    mean = p._mean.clone()
    p.advance(1)
    assert torch.equal(p._mean[:, :3], mean[:, 1:]) and torch.equal(p._mean[:, 3], torch.zeros(1, 1))
    assert torch.equal(p.warm_start(), p._mean[0]) and torch.equal(p.warm_start(1), p._mean)
    p.reset()
    assert p._mean is None
    assert torch.equal(p.warm_start(3), torch.zeros(3, 4, 1))  # no warm start: the centre of the bounds


def test_colored_noise_unit_variance_and_errors():
    g = torch.Generator().manual_seed(0)
    x = colored_noise(2.0, (4000,), 16, g, torch.device("cpu"))
    assert x.shape == (4000, 16) and abs(x.var().item() - 1.0) < 0.2
    lag1 = (x[:, 1:] * x[:, :-1]).mean() / x.var()
    assert lag1 > 0.5  # pink/red noise is smooth in time
    with pytest.raises(UserError):
        make_planner("nope", 4, [-1.0], [1.0])
    with pytest.raises(UserError):
        CEM(4, [1.0], [-1.0])
