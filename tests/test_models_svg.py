"""Tests for the action-conditioned SVG predictor (noether_rl.models.svg). Tiny sizes, CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.models import SVG, SVGConfig
from noether_rl.models.svg import _lstm_cell_modulated_c
from noether_rl.noether import Prediction, Predictor

A = 2


def _cfg(**kw) -> SVGConfig:
    base = dict(image_size=32, encoder="dcgan", width=8, g_dim=16, rnn_size=32, rnn_layers=2, action_dim=A,
                z_dim=4, norm="layer")
    base.update(kw)
    return SVGConfig(**base)


def _model(seed: int = 0, **kw) -> SVG:
    torch.manual_seed(seed)
    return SVG(_cfg(**kw))


def _data(cfg: SVGConfig, B: int = 2, T: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, T, cfg.channels, cfg.image_size, cfg.image_size, generator=g)
    a = torch.randn(B, T - 1, cfg.action_dim, generator=g)
    return x, a




def _roll(m: SVG, x, a, P: int, F: int, **kw) -> torch.Tensor:
    return m.rollout(x[:, :P], a, F, **kw).pred


def test_svg_is_a_predictor():
    assert isinstance(_model(), Predictor)


@pytest.mark.parametrize("encoder,size", [("dcgan", 32), ("dcgan", 64), ("vgg", 64)])
@pytest.mark.parametrize("stochastic", [False, True])
def test_rollout_shapes(encoder, size, stochastic):
    m = _model(encoder=encoder, image_size=size, stochastic=stochastic, norm="batch",
               width=4 if encoder == "vgg" else 8)
    x, a = _data(m.cfg, B=2, T=5)
    r = m.rollout(x[:, :2], a, 3)
    tf = m.teacher_forced(x, a, 2)
    assert isinstance(r, Prediction) and r.pred.shape == (2, 3, 3, size, size)
    assert tf.pred.shape == (2, 4, 3, size, size)
    for p in (r, tf):
        assert ((p.pred >= 0) & (p.pred <= 1)).all()
        if stochastic:
            assert p.kl.shape == (2,) and (p.kl >= 0).all()
        else:
            assert p.kl is None
    assert m.rollout(x[:, :1], a, 4).pred.shape == (2, 4, 3, size, size)


@pytest.mark.parametrize("encoder,size", [("dcgan", 64), ("vgg", 64)])
def test_split_decoder_matches_concat_decoder(encoder, size):
    m = _model(encoder=encoder, image_size=size, width=4).eval()
    x, _ = _data(m.cfg, B=3, T=1)
    adapt = m.adaptables(3, 1, kind="cn")
    for v in adapt.values():
        v.add_(0.1 * torch.randn_like(v))
    h, skips = m.encoder(x[:, 0], adapt)
    ref = m.decoder(h, skips, adapt)
    outs = m.decoder.skip_parts([s[:, None] for s in skips])
    torch.testing.assert_close(m.decoder.forward_split(h, outs, adapt), ref, atol=1e-5, rtol=1e-5)


def test_actions_condition_predictions():
    m = _model().eval()
    x, a = _data(m.cfg)
    r1 = _roll(m, x, a, 2, 4)
    r2 = _roll(m, x, a + 1.0, 2, 4)
    assert (r1 - r2).abs().max() > 1e-4
    # action a_{t-1} only affects frames >= t: changing the last action leaves earlier frames unchanged
    a3 = a.clone()
    a3[:, -1] += 1.0
    r3 = _roll(m, x, a3, 2, 4)
    torch.testing.assert_close(r3[:, :-1], r1[:, :-1])
    assert (r3[:, -1] - r1[:, -1]).abs().max() > 1e-5


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_teacher_forcing_matches_free_running_on_ground_truth_steps(norm):
    m = _model(norm=norm).eval()
    x, a = _data(m.cfg)
    free = _roll(m, x, a, 3, 3)
    tf = m.teacher_forced(x, a, 3).pred  # predictions of frames 1..5
    torch.testing.assert_close(free[:, 0], tf[:, 2], atol=1e-5, rtol=1e-5)  # input is GT in both
    if norm == "layer":  # (an untrained eval-mode batch-norm net is nearly input-independent)
        assert (free[:, -1] - tf[:, -1]).abs().max() > 1e-6
    # teacher forcing == free running when the model's previous prediction IS the ground truth
    x2 = torch.cat([x[:, :3], free], 1)
    torch.testing.assert_close(m.teacher_forced(x2, a, 3).pred[:, 2:], free, atol=1e-5, rtol=1e-4)


KINDS = ["hidden", "cell", "code", "hidden_per_step", "code_per_step", "cn"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stochastic", [False, True])
def test_identity_adaptables_equal_no_adapt(kind, stochastic):
    m = _model(stochastic=stochastic).eval()
    x, a = _data(m.cfg)
    ad = m.adaptables(2, 3, kind=kind)
    if kind != "cn":
        tail = (m.cfg.g_dim,) if kind.startswith("code") else (2, 32)
        scale = ad[kind.removesuffix("_per_step") + "_scale"]
        assert scale.shape == ((2, 3, *tail) if kind.endswith("_per_step") else (2, *tail))
    else:
        assert len(ad) == 2 * len(m.cn_channels) and ad["cn_gamma_0"].shape == (2, 8, 1, 1)
    r0 = _roll(m, x, a, 2, 3, generator=torch.Generator().manual_seed(0))
    r1 = _roll(m, x, a, 2, 3, adapt=ad, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(r1, r0, atol=1e-6, rtol=1e-5)
    with pytest.raises(UserError):
        m.adaptables(2, 3, kind="lstm")


@pytest.mark.parametrize("kind", KINDS)
def test_per_example_independence(kind):
    """With layer norm (train mode) example 1's output ignores example 0's adaptables and frames."""
    m = _model().train()
    x, a = _data(m.cfg, B=3)
    ad = m.adaptables(3, 3, kind=kind)
    r0 = _roll(m, x, a, 2, 3, adapt=ad)
    ad2 = {k: v.clone() for k, v in ad.items()}
    for v in ad2.values():
        v[0] += 0.3
    x2, a2 = x.clone(), a.clone()
    x2[0] = 1 - x2[0]
    a2[0] += 2
    r1 = _roll(m, x2, a2, 2, 3, adapt=ad2)
    torch.testing.assert_close(r1[1:], r0[1:])
    assert (r1[0] - r0[0]).abs().max() > 1e-4


def test_batch_norm_in_train_mode_couples_examples():
    """Documented caveat: BatchNorm2d in train mode shares statistics across the batch."""
    m = _model(norm="batch").train()
    x, a = _data(m.cfg, B=3)
    r0 = _roll(m, x, a, 2, 3)
    x2 = x.clone()
    x2[0] = 1 - x2[0]
    r1 = _roll(m, x2, a, 2, 3)
    assert (r1[1] - r0[1]).abs().max() > 1e-6
    m.eval()  # eval mode uses running statistics: independent again
    torch.testing.assert_close(_roll(m, x2, a, 2, 3)[1:], _roll(m, x, a, 2, 3)[1:])


def test_skip_from_last_vs_svg():
    m_last = _model(skip_from="last").eval()
    m_svg = SVG(dataclasses.replace(m_last.cfg, skip_from="svg")).eval()
    m_svg.load_state_dict(m_last.state_dict())
    assert m_last.skip_index(3) == 2 and m_svg.skip_index(3) == 1 and m_svg.skip_index(1) == 0
    x, a = _data(m_last.cfg)
    assert (_roll(m_last, x, a, 3, 3) - _roll(m_svg, x, a, 3, 3)).abs().max() > 1e-5
    # teacher forcing: a context prediction's skip comes from frame t-1 in both (never its own target)
    torch.testing.assert_close(m_last.teacher_forced(x, a, 3).pred[:, :2], m_svg.teacher_forced(x, a, 3).pred[:, :2])


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_adaptables(kind):
    m = _model()
    x, a = _data(m.cfg)
    ad = {k: v.requires_grad_() for k, v in m.adaptables(2, 3, kind=kind).items()}
    _roll(m, x, a, 2, 3, adapt=ad).pow(2).sum().backward()
    for k, v in ad.items():
        assert v.grad is not None and v.grad.abs().sum() > 0 and torch.isfinite(v.grad).all(), k


def test_stochastic_generator_and_modes():
    m = _model(stochastic=True).eval()
    x, a = _data(m.cfg)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    r1 = m.rollout(x[:, :2], a, 4, generator=g(0))
    torch.testing.assert_close(m.rollout(x[:, :2], a, 4, generator=g(0)).pred, r1.pred)
    assert (m.rollout(x[:, :2], a, 4, generator=g(1)).pred - r1.pred).abs().max() > 1e-6
    assert r1.kl.shape == (2,)  # KL over the context steps (posterior used there)
    # eval mode: the target is never used (prior sampling)
    torch.testing.assert_close(m.rollout(x[:, :2], a, 4, generator=g(0), target=x[:, 2:]).pred, r1.pred)
    m.train()  # training mode with a target: posterior everywhere (SVG-LP training), larger KL sum
    r = m.rollout(x[:, :2], a, 4, generator=g(0), target=x[:, 2:])
    assert (r.kl > r1.kl).all()


def test_modulated_cell_matches_lstm_cell_at_identity():
    cell = torch.nn.LSTMCell(5, 7)
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    h_ref, c_ref = cell(x, (h, c))
    h1, c1 = _lstm_cell_modulated_c(cell, x, h, c, torch.ones(7), torch.zeros(7))
    torch.testing.assert_close(h1, h_ref)
    torch.testing.assert_close(c1, c_ref)


def test_init_state_and_validation():
    m = _model()
    st = m.init_state(4, torch.device("cpu"), torch.float32)
    assert len(st) == 2 and st[0][0].shape == (4, 32) and st[1][1].shape == (4, 32)
    with pytest.raises(UserError):
        SVGConfig(encoder="dcgan", image_size=128)
    with pytest.raises(UserError):
        SVGConfig(encoder="vgg", image_size=32)
    with pytest.raises(UserError):
        SVGConfig(norm="instance")
    x, a = _data(m.cfg)
    with pytest.raises(UserError):
        m.rollout(x[:, :2], a[:, :2], 3)  # too few actions
    with pytest.raises(UserError):
        m.teacher_forced(x, a, 6)  # no frame to predict after the context
    assert SVGConfig().norm == "layer"  # per-example by default


def test_channels_last_model_matches():
    """channels_last (faster convs on CPU) gives the same rollout."""
    m = _model(encoder="dcgan", image_size=64).eval()
    x, a = _data(m.cfg)
    ref = _roll(m, x, a, 2, 3)
    m = m.to(memory_format=torch.channels_last)
    B, T, C, H, W = x.shape
    xc = x.reshape(B * T, C, H, W).contiguous(memory_format=torch.channels_last).view(B, T, C, H, W)
    torch.testing.assert_close(_roll(m, xc, a, 2, 3), ref, atol=1e-5, rtol=1e-5)


def test_chunked_encode_decode_matches_single_call(monkeypatch):
    m = _model(stochastic=True).train()  # layer norm: chunking is exact in train mode too
    x, a = _data(m.cfg, B=3)
    ad = m.adaptables(3, 3, kind="cn")
    for v in ad.values():
        v.add_(0.1 * torch.randn_like(v))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    def run():
        torch.manual_seed(0)  # teacher_forced samples z from the global RNG
        return m.rollout(x[:, :3], a, 3, adapt=ad, generator=g(), target=x[:, 3:]), m.teacher_forced(x, a, 3)

    r0, t0 = run()
    monkeypatch.setattr(SVG, "_chunk_examples", lambda self, device, rows: 2)
    r1, t1 = run()
    torch.testing.assert_close(r1.pred, r0.pred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1.kl, r0.kl, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t1.pred, t0.pred, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stochastic", [False, True])
def test_warm_start_shared_between_rollouts_equals_full_rollouts(stochastic):
    m = _model(stochastic=stochastic).eval()
    x, a = _data(m.cfg)
    ad = m.adaptables(2, 3, kind="hidden")
    ad["hidden_shift"] += 0.2
    g0 = torch.Generator().manual_seed(3)
    warm = m.warm_start(x[:, :3], a, 3, kind="hidden", generator=g0)
    for adapt in (None, ad):
        g1 = torch.Generator().manual_seed(3)
        full = m.rollout(x[:, :3], a, 3, adapt=adapt, generator=g1)
        gw = torch.Generator()
        gw.set_state(g0.get_state())
        shared = m.rollout(x[:, :3], a, 3, adapt=adapt, generator=gw, warm=warm)
        torch.testing.assert_close(shared.pred, full.pred)
    assert m.warm_start(x[:, :3], a, 3, kind="cn") is None
