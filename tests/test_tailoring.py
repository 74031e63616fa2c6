"""Tests for the generic tailoring engine (noether_rl.tailoring)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from torch import nn

from noether_rl.tailoring import TailorConfig, call_per_example, per_example_params, tailor

D = 3


def _toy(dtype=torch.float64, seed=0):
    """A tiny 'predictor' x_hat = tanh(W x) + shift and a learned embedding g_phi (MLP)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, D, generator=g, dtype=dtype) * 0.5
    g_phi = nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)
    torch.manual_seed(seed)
    for p in g_phi.parameters():
        nn.init.normal_(p, std=0.7)
    return W, g_phi


def _predict(W, x0, adapt):
    return torch.tanh(x0 @ W.T) * adapt["scale"] + adapt["shift"]  # [B, D]


def _inner_loss(g_phi, W, x0):
    def loss_fn(adapt):
        xh = _predict(W, x0, adapt)
        return (g_phi(x0) - g_phi(xh)).pow(2).sum(-1)  # [B]

    return loss_fn


def _identity(B, dtype=torch.float64):
    return {"scale": torch.ones(B, D, dtype=dtype), "shift": torch.zeros(B, D, dtype=dtype)}


def test_one_step_lowers_inner_loss():
    W, g_phi = _toy()
    x0 = torch.randn(5, D, dtype=torch.float64)
    res = tailor(_inner_loss(g_phi, W, x0), _identity(5), TailorConfig(lr=0.05, only_on_improvement=False, steps=1))
    after = _inner_loss(g_phi, W, x0)(res.adapted)
    assert res.inner_losses.shape == (1, 5)
    assert (after < res.inner_losses[0]).all()


def test_per_example_independence_and_batch_size_invariance():
    W, g_phi = _toy()
    x0 = torch.randn(4, D, dtype=torch.float64)
    cfg = TailorConfig(lr=0.1, steps=3)
    full = tailor(_inner_loss(g_phi, W, x0), _identity(4), cfg).adapted
    single = tailor(_inner_loss(g_phi, W, x0[:1]), _identity(1), cfg).adapted
    torch.testing.assert_close(full["shift"][:1], single["shift"])  # not scaled by 1/B
    x0b = x0.clone()
    x0b[1:] += 10.0  # change the other examples only
    other = tailor(_inner_loss(g_phi, W, x0b), _identity(4), cfg).adapted
    torch.testing.assert_close(full["shift"][0], other["shift"][0])
    assert not torch.allclose(full["shift"][1], other["shift"][1])


def test_second_order_meta_gradient_reaches_g_phi_and_matches_finite_differences():
    W, g_phi = _toy()
    x0 = torch.randn(3, D, dtype=torch.float64)
    target = torch.randn(3, D, dtype=torch.float64)
    names = [n for n, _ in g_phi.named_parameters()]

    def outer(*phi):
        params = dict(zip(names, phi))

        def loss_fn(adapt):
            xh = _predict(W, x0, adapt)
            gp = lambda z: torch.func.functional_call(g_phi, params, (z,))  # noqa: E731
            return (gp(x0) - gp(xh)).pow(2).sum(-1)

        res = tailor(loss_fn, _identity(3), TailorConfig(lr=0.3, steps=2, order="second"))
        return (_predict(W, x0, res.adapted) - target).pow(2).mean()

    phi = tuple(p.detach().clone().requires_grad_(True) for p in g_phi.parameters())
    grads = torch.autograd.grad(outer(*phi), phi)
    assert sum(g.abs().sum() for g in grads) > 0
    assert torch.autograd.gradcheck(outer, phi, eps=1e-6, atol=1e-6)


def test_first_order_equals_second_order_with_graph_cut():
    W, g_phi = _toy()
    x0 = torch.randn(3, D, dtype=torch.float64)
    target = torch.randn(3, D, dtype=torch.float64)
    base = _identity(3)
    theta = {k: v.clone().requires_grad_(True) for k, v in base.items()}  # shared "weights" (outer-trained)

    fo = tailor(_inner_loss(g_phi, W, x0), theta, TailorConfig(lr=0.2, steps=2, order="first")).adapted
    # manual second order with the inner gradient detached
    p = dict(theta)
    for _ in range(2):
        loss = _inner_loss(g_phi, W, x0)(p).sum()
        gr = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        p = {k: v - 0.2 * gk.detach() for (k, v), gk in zip(p.items(), gr)}
    torch.testing.assert_close(fo["shift"], p["shift"])
    out_fo = torch.autograd.grad((_predict(W, x0, fo) - target).pow(2).sum(), list(theta.values()))
    out_cut = torch.autograd.grad((_predict(W, x0, p) - target).pow(2).sum(), list(theta.values()))
    for a, b in zip(out_fo, out_cut):
        torch.testing.assert_close(a, b)
    # and phi gets no gradient through a first-order step
    res = tailor(_inner_loss(g_phi, W, x0), _identity(3), TailorConfig(lr=0.2, order="first"))
    out = (_predict(W, x0, res.adapted) - target).pow(2).sum()
    assert not out.requires_grad or all(
        g is None for g in torch.autograd.grad(out, list(g_phi.parameters()), allow_unused=True)
    )


def test_works_under_no_grad_and_returns_detached():
    W, g_phi = _toy(dtype=torch.float32)
    x0 = torch.randn(2, D)
    with torch.no_grad():
        res = tailor(_inner_loss(g_phi, W, x0), _identity(2, torch.float32), TailorConfig(lr=0.1))
    assert not res.adapted["shift"].requires_grad
    assert res.adapted["shift"].abs().sum() > 0


def test_nonfinite_example_falls_back_with_warning():
    W, g_phi = _toy()
    x0 = torch.randn(3, D, dtype=torch.float64)
    x0[1, 0] = float("nan")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = tailor(_inner_loss(g_phi, W, x0), _identity(3), TailorConfig(lr=0.1))
    assert any("non-finite" in str(x.message) for x in w)
    assert res.ok.tolist() == [True, False, True]
    torch.testing.assert_close(res.adapted["shift"][1], torch.zeros(D, dtype=torch.float64))
    assert res.adapted["shift"][0].abs().sum() > 0


def test_only_on_improvement_reverts_examples_that_got_worse():
    W, g_phi = _toy()
    x0 = torch.randn(6, D, dtype=torch.float64)
    res = tailor(_inner_loss(g_phi, W, x0), _identity(6), TailorConfig(lr=50.0, only_on_improvement=True))
    assert res.improved is not None and res.final_losses is not None
    kept = res.improved
    assert (~kept).any()  # a huge lr overshoots somewhere
    torch.testing.assert_close(res.adapted["shift"][~kept], torch.zeros_like(res.adapted["shift"][~kept]))


def test_adam_steps_and_config_validation():
    W, g_phi = _toy()
    x0 = torch.randn(2, D, dtype=torch.float64)
    res = tailor(_inner_loss(g_phi, W, x0), _identity(2), TailorConfig(lr=0.01, steps=20, optimizer="adam"))
    assert res.inner_losses.shape == (20, 2)
    assert (res.inner_losses[-1] < res.inner_losses[0]).all()
    with pytest.raises(ValueError):
        TailorConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per-example"):
        tailor(lambda a: a["shift"].sum(), _identity(2), TailorConfig())


def test_per_example_module_weights_with_torch_func():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    params = per_example_params(net, 4)
    torch.testing.assert_close(call_per_example(net, params, x), net(x))

    def loss_fn(p):
        y = call_per_example(net, p, x)
        return (y.pow(2).sum(-1) - 1.0).pow(2)  # [B]

    res = tailor(loss_fn, params, TailorConfig(lr=0.05, steps=2, order="first"))
    w = res.adapted["0.weight"]
    assert w.shape == (4, 8, 2)
    assert not torch.allclose(w[0], w[1])  # each example got its own weights
    # outer gradient reaches the shared module parameter through the first-order path
    out = call_per_example(net, res.adapted, x).sum()
    (g,) = torch.autograd.grad(out, [net[0].weight])
    assert g.abs().sum() > 0
    with pytest.raises(KeyError, match="has no parameters"):
        per_example_params(net, 2, ["nope"])


def test_normalized_step_has_length_lr_per_example():
    W, g_phi = _toy()
    x0 = torch.randn(4, D, dtype=torch.float64)
    x0[0] *= 100.0  # very different gradient scales across examples
    res = tailor(_inner_loss(g_phi, W, x0), _identity(4), TailorConfig(lr=0.3, step_rule="normalized"))
    delta = torch.cat([(res.adapted[k] - _identity(4)[k]).reshape(4, -1) for k in ("scale", "shift")], 1)
    torch.testing.assert_close(delta.norm(dim=1), torch.full((4,), 0.3, dtype=torch.float64))
    with pytest.raises(ValueError, match="sgd.* only"):
        TailorConfig(step_rule="normalized", optimizer="adam")


def test_tensor_lr_is_trained_by_the_outer_loss_in_first_order():
    W, g_phi = _toy()
    x0 = torch.randn(3, D, dtype=torch.float64)
    log_lr = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    res = tailor(_inner_loss(g_phi, W, x0), _identity(3), TailorConfig(order="first"), lr=log_lr.exp())
    ref = tailor(_inner_loss(g_phi, W, x0), _identity(3), TailorConfig(order="first", lr=float(torch.e**-1)))
    torch.testing.assert_close(res.adapted["shift"].detach(), ref.adapted["shift"])
    (g,) = torch.autograd.grad(_predict(W, x0, res.adapted).pow(2).sum(), [log_lr])
    assert g.abs() > 0


def test_polyak_step_is_scale_free_and_converges():
    """The trust-region Polyak rule: the same step whatever the loss scale, and a shrinking step."""
    target = torch.tensor([[1.0, -2.0], [0.5, 0.5]])

    def loss(scale: float):
        return lambda a: scale * (a["x"] - target).pow(2).sum(1)

    x0 = {"x": torch.zeros(2, 2)}
    cfg = TailorConfig(lr=1.0, step_rule="polyak", trust_radius=10.0)
    small = tailor(loss(1e-9), x0, cfg).adapted["x"]
    big = tailor(loss(1e3), x0, cfg).adapted["x"]
    torch.testing.assert_close(small, big)
    res = tailor(loss(1.0), x0, replace(cfg, steps=30))
    torch.testing.assert_close(res.adapted["x"], target, atol=1e-4, rtol=0)  # converges (halves the error per step)
    assert (res.inner_losses[1:6] < res.inner_losses[:5]).all()
    capped = tailor(loss(1.0), x0, replace(cfg, trust_radius=0.1)).adapted["x"]
    torch.testing.assert_close(capped.norm(dim=1), torch.full((2,), 0.1))


def test_config_rejects_values_that_make_no_sense():
    for bad in (dict(lr=float("nan")), dict(lr=float("inf")), dict(lr=-1.0), dict(steps=1.5), dict(steps=True),
                dict(steps=-1), dict(max_grad_norm=-1.0), dict(max_grad_norm=1.0, step_rule="normalized"),
                dict(step_rule="polyak", optimizer="adam"), dict(trust_radius=0.0), dict(step_rule="newton")):
        with pytest.raises(ValueError):
            TailorConfig(**bad)


def _setup(B: int = 3):
    W, g_phi = _toy()
    return g_phi, W, torch.randn(B, D, dtype=torch.float64)


def test_nonfinite_result_of_the_last_step_falls_back():
    x0 = {"x": torch.ones(3, 2)}  # float32: lr * grad = 1e30 * 2e10 overflows to inf in the step itself
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = tailor(lambda a: 1e10 * a["x"].pow(2).sum(1), x0, TailorConfig(lr=1e30))
    assert not res.ok.any() and int(res.n_fallback) == 3
    torch.testing.assert_close(res.adapted["x"].detach(), x0["x"])


def test_first_order_without_grad_and_clear_error_under_inference_mode():
    g_phi, W, x0 = _setup(2)
    with torch.no_grad():
        res = tailor(_inner_loss(g_phi, W, x0), _identity(2), TailorConfig(lr=0.1, order="second"))
    assert all(not v.requires_grad for v in res.adapted.values())
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        tailor(_inner_loss(g_phi, W, x0), _identity(2), TailorConfig(lr=0.1))


def test_engine_imports_only_torch():
    import subprocess
    import sys

    code = ("import sys, noether_rl.tailoring, noether_rl.noether, noether_rl.models; "
            "bad = [m for m in ('gymnasium', 'pygame', 'stable_baselines3', 'noether_rl.cli', 'noether_rl.envs') "
            "if m in sys.modules]; assert not bad, bad; import os; assert 'SDL_VIDEODRIVER' not in os.environ")
    env = {k: v for k, v in __import__("os").environ.items() if k != "SDL_VIDEODRIVER"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_per_example_weights_made_under_no_grad_still_take_a_step():
    """A view of a parameter made under no_grad says requires_grad=True but has no graph: the engine must
    not give it a silent zero inner gradient (planners and evaluation tailor under no_grad)."""
    torch.manual_seed(0)
    m = nn.Linear(2, 2)
    x = torch.randn(3, 2)
    with torch.no_grad():
        p = per_example_params(m, 3)
        res = tailor(lambda a: call_per_example(m, a, x).pow(2).sum(1), p, TailorConfig(lr=0.1))
    assert (res.adapted["weight"] - p["weight"]).abs().max() > 1e-4
