"""Tests for the action-conditioned SVG predictor (noether_rl.models.svg). Tiny sizes, CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.models import SVG, Rollout, SVGConfig
from noether_rl.models.svg import _lstm_cell_modulated_c

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


@pytest.mark.parametrize("encoder,size", [("dcgan", 32), ("dcgan", 64), ("vgg", 64)])
@pytest.mark.parametrize("stochastic", [False, True])
def test_rollout_shapes(encoder, size, stochastic):
    m = _model(encoder=encoder, image_size=size, stochastic=stochastic, norm="batch",
               width=4 if encoder == "vgg" else 8)
    x, a = _data(m.cfg, B=2, T=5)
    for tf in (False, True):
        r = m.rollout(x, a, 2, 3, teacher_forcing=tf)
        assert isinstance(r, Rollout)
        assert r.frames.shape == (2, 3, 3, size, size)
        assert r.context_frames.shape == (2, 1, 3, size, size)
        assert ((r.frames >= 0) & (r.frames <= 1)).all()
        if stochastic:
            assert r.kl.shape == (2,) and (r.kl >= 0).all()
        else:
            assert r.kl is None
    r = m.rollout(x, a, 1, 4, decode_context=True)
    assert r.context_frames is None and r.frames.shape == (2, 4, 3, size, size)
    assert m.rollout(x, a, 3, 2, decode_context=False).context_frames is None


@pytest.mark.parametrize("encoder,size", [("dcgan", 64), ("vgg", 64)])
def test_split_decoder_matches_concat_decoder(encoder, size):
    m = _model(encoder=encoder, image_size=size, width=4, cn=True).eval()
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
    r1 = m.rollout(x, a, 2, 4).frames
    r2 = m.rollout(x, a + 1.0, 2, 4).frames
    assert (r1 - r2).abs().max() > 1e-4
    # action a_{t-1} only affects frames >= t: changing the last action leaves earlier frames unchanged
    a3 = a.clone()
    a3[:, -1] += 1.0
    r3 = m.rollout(x, a3, 2, 4).frames
    torch.testing.assert_close(r3[:, :-1], r1[:, :-1])
    assert (r3[:, -1] - r1[:, -1]).abs().max() > 1e-5


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_teacher_forcing_matches_free_running_on_ground_truth_steps(norm):
    m = _model(norm=norm).eval()
    x, a = _data(m.cfg)
    free = m.rollout(x, a, 3, 3)
    tf = m.rollout(x, a, 3, 3, teacher_forcing=True)
    torch.testing.assert_close(free.context_frames, tf.context_frames)
    torch.testing.assert_close(free.frames[:, 0], tf.frames[:, 0], atol=1e-5, rtol=1e-5)  # input is GT in both
    if norm == "layer":  # (an untrained eval-mode batch-norm net is nearly input-independent)
        assert (free.frames[:, -1] - tf.frames[:, -1]).abs().max() > 1e-6
    # teacher forcing == free running when the model's previous prediction IS the ground truth:
    # feed the free-running predictions as "ground truth" frames
    x2 = torch.cat([x[:, :3], free.frames], 1)
    tf2 = m.rollout(x2, a, 3, 3, teacher_forcing=True)
    torch.testing.assert_close(tf2.frames, free.frames, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(adapt_target="cell"), dict(adapt_target="output"), dict(adapt_per_step=True),
     dict(adapt_target="output", adapt_per_step=True), dict(stochastic=True)],
)
def test_identity_adaptables_equal_no_adapt(kw):
    m = _model(**kw).eval()
    x, a = _data(m.cfg)
    ad = m.adaptables(2, 3)
    tail = (m.cfg.g_dim,) if m.cfg.adapt_target == "output" else (2, 32)
    assert ad["lstm_scale"].shape == ((2, 3, *tail) if m.cfg.adapt_per_step else (2, *tail))
    for tf in (False, True):
        r0 = m.rollout(x, a, 2, 3, teacher_forcing=tf, generator=torch.Generator().manual_seed(0))
        r1 = m.rollout(x, a, 2, 3, teacher_forcing=tf, adapt=ad, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(r1.frames, r0.frames, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r1.context_frames, r0.context_frames)


def test_identity_cn_adaptables_equal_no_adapt():
    m = _model(cn=True).eval()
    x, a = _data(m.cfg)
    ad = m.adaptables(2, 3, kind="cn")
    assert len(ad) == 2 * len(m.cn_channels) and ad["cn_gamma_0"].shape == (2, 8, 1, 1)
    for tf in (False, True):
        torch.testing.assert_close(m.rollout(x, a, 2, 3, teacher_forcing=tf, adapt=ad).frames,
                                   m.rollout(x, a, 2, 3, teacher_forcing=tf).frames)
    with pytest.raises(UserError):
        _model().adaptables(2, 3, kind="cn")


def test_lstm_adaptation_only_touches_predicted_steps():
    m = _model().eval()
    x, a = _data(m.cfg)
    ad = m.adaptables(2, 3)
    ad["lstm_shift"] += 0.5
    r0, r1 = m.rollout(x, a, 3, 3), m.rollout(x, a, 3, 3, adapt=ad)
    torch.testing.assert_close(r1.context_frames, r0.context_frames)
    assert (r1.frames - r0.frames).abs().max() > 1e-4


@pytest.mark.parametrize("kind,kw", [("lstm", dict()), ("lstm", dict(adapt_target="cell")), ("cn", dict(cn=True))])
@pytest.mark.parametrize("tf", [False, True])
def test_per_example_independence(kind, kw, tf):
    """With layer norm (train mode) example 1's output ignores example 0's adaptables and frames."""
    m = _model(**kw).train()
    x, a = _data(m.cfg, B=3)
    ad = m.adaptables(3, 3, kind=kind)
    r0 = m.rollout(x, a, 2, 3, adapt=ad, teacher_forcing=tf).frames
    ad2 = {k: v.clone() for k, v in ad.items()}
    for v in ad2.values():
        v[0] += 0.3
    x2, a2 = x.clone(), a.clone()
    x2[0] = 1 - x2[0]
    a2[0] += 2
    r1 = m.rollout(x2, a2, 2, 3, adapt=ad2, teacher_forcing=tf).frames
    torch.testing.assert_close(r1[1:], r0[1:])
    assert (r1[0] - r0[0]).abs().max() > 1e-4


def test_batch_norm_in_train_mode_couples_examples():
    """Documented caveat: BatchNorm2d in train mode shares statistics across the batch."""
    m = _model(norm="batch").train()
    x, a = _data(m.cfg, B=3)
    r0 = m.rollout(x, a, 2, 3).frames
    x2 = x.clone()
    x2[0] = 1 - x2[0]
    r1 = m.rollout(x2, a, 2, 3).frames
    assert (r1[1] - r0[1]).abs().max() > 1e-6
    m.eval()  # eval mode uses running statistics: independent again
    torch.testing.assert_close(m.rollout(x2, a, 2, 3).frames[1:], m.rollout(x, a, 2, 3).frames[1:])


def test_skip_from_last_vs_svg():
    m_last = _model(skip_from="last").eval()
    m_svg = SVG(dataclasses.replace(m_last.cfg, skip_from="svg")).eval()
    m_svg.load_state_dict(m_last.state_dict())
    assert m_last.skip_index(3) == 2 and m_svg.skip_index(3) == 1 and m_svg.skip_index(1) == 0
    x, a = _data(m_last.cfg)
    r_last, r_svg = m_last.rollout(x, a, 3, 3), m_svg.rollout(x, a, 3, 3)
    torch.testing.assert_close(r_last.context_frames, r_svg.context_frames)  # context: skip from frame t-1
    assert (r_last.frames - r_svg.frames).abs().max() > 1e-5


@pytest.mark.parametrize("kw", [dict(), dict(adapt_target="cell"), dict(adapt_target="output", adapt_per_step=True)])
def test_gradients_reach_lstm_adaptables(kw):
    m = _model(**kw)
    x, a = _data(m.cfg)
    ad = {k: v.requires_grad_() for k, v in m.adaptables(2, 3).items()}
    m.rollout(x, a, 2, 3, adapt=ad).frames.pow(2).sum().backward()
    for v in ad.values():
        assert v.grad is not None and v.grad.abs().sum() > 0 and torch.isfinite(v.grad).all()


def test_gradients_reach_cn_adaptables():
    m = _model(cn=True)
    x, a = _data(m.cfg)
    ad = {k: v.requires_grad_() for k, v in m.adaptables(2, 3, kind="cn").items()}
    m.rollout(x, a, 2, 3, adapt=ad).frames.pow(2).sum().backward()
    for k, v in ad.items():
        assert v.grad is not None and v.grad.abs().sum() > 0, k


def test_stochastic_generator_and_modes():
    m = _model(stochastic=True).eval()
    x, a = _data(m.cfg)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    r1 = m.rollout(x, a, 2, 4, generator=g(0))
    torch.testing.assert_close(m.rollout(x, a, 2, 4, generator=g(0)).frames, r1.frames)
    assert (m.rollout(x, a, 2, 4, generator=g(1)).frames - r1.frames).abs().max() > 1e-6
    assert r1.kl.shape == (2,)  # KL over the context steps (posterior used there)
    x_short = x[:, :2]
    assert m.rollout(x_short, a, 2, 4).frames.shape[1] == 4  # prior sampling needs only the context
    m.train()
    r = m.rollout(x, a, 2, 4, generator=g(0))  # posterior everywhere
    assert (r.kl > 0).all()
    with pytest.raises(UserError):
        m.rollout(x_short, a, 2, 4)


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
        m.rollout(x, a[:, :2], 2, 3)  # too few actions
    with pytest.raises(UserError):
        m.rollout(x[:, :4], a, 2, 3, teacher_forcing=True)  # too few frames


def test_channels_last_model_matches():
    """channels_last (faster convs on CPU) gives the same rollout."""
    m = _model(encoder="dcgan", image_size=64).eval()
    x, a = _data(m.cfg)
    ref = m.rollout(x, a, 2, 3)
    m = m.to(memory_format=torch.channels_last)
    B, T, C, H, W = x.shape
    xc = x.reshape(B * T, C, H, W).contiguous(memory_format=torch.channels_last).view(B, T, C, H, W)
    torch.testing.assert_close(m.rollout(xc, a, 2, 3).frames, ref.frames, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tf", [False, True])
def test_chunked_encode_decode_matches_single_call(tf):
    m = _model(cn=True, stochastic=True).train()  # layer norm: chunking is exact in train mode too
    x, a = _data(m.cfg, B=3)
    ad = m.adaptables(3, 3, kind="cn")
    for v in ad.values():
        v.add_(0.1 * torch.randn_like(v))
    kw = dict(adapt=ad, teacher_forcing=tf)
    r0 = m.rollout(x, a, 3, 3, chunk_examples=0, generator=torch.Generator().manual_seed(0), **kw)
    r1 = m.rollout(x, a, 3, 3, chunk_examples=2, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(r1.frames, r0.frames, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1.context_frames, r0.context_frames, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1.kl, r0.kl, atol=1e-5, rtol=1e-5)
