"""Tests for the Noether embedding g_phi and noether_loss (noether_rl.models.noether)."""

from __future__ import annotations

import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.models import EmbeddingConfig, NoetherEmbedding, noether_loss


def _conv(size: int = 16, dtype=torch.float32, **kw) -> NoetherEmbedding:
    torch.manual_seed(0)
    return NoetherEmbedding(EmbeddingConfig(kind="conv", channels=3, image_size=size, emb_dim=8, **kw)).to(dtype)


def _mlp(**kw) -> NoetherEmbedding:
    torch.manual_seed(0)
    return NoetherEmbedding(EmbeddingConfig(kind="mlp", in_dim=2, hidden=16, emb_dim=4, **kw))


def test_forward_and_embed_sequence_shapes():
    g = _conv()
    assert g(torch.rand(5, 6, 16, 16)).shape == (5, 8)
    assert g.embed_sequence(torch.rand(2, 4, 3, 16, 16)).shape == (2, 3, 8)
    g1 = _conv(pairs=False)
    assert g1.embed_sequence(torch.rand(2, 4, 3, 16, 16)).shape == (2, 4, 8)
    gm = _mlp()
    assert gm(torch.randn(5, 4)).shape == (5, 4)
    assert gm.embed_sequence(torch.randn(2, 5, 2)).shape == (2, 4, 4)
    assert _mlp(pairs=False).embed_sequence(torch.randn(2, 5, 2)).shape == (2, 5, 4)


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_embed_sequence_matches_loop(kind):
    g = _conv() if kind == "conv" else _mlp()
    seq = torch.rand(3, 5, 3, 16, 16) if kind == "conv" else torch.randn(3, 5, 2)
    ref = torch.stack([g(torch.cat([seq[:, t - 1], seq[:, t]], 1)) for t in range(1, 5)], 1)
    torch.testing.assert_close(g.embed_sequence(seq), ref, atol=1e-5, rtol=1e-5)


def test_loss_forms_match_definitions():
    g = _mlp()
    x0, preds = torch.randn(3, 2, 2), torch.randn(3, 4, 2)
    e = g.embed_sequence(torch.cat([x0, preds], 1))  # [3, 5, 4]
    ref_a = sum((e[:, 0] - e[:, t]).pow(2).sum(-1) for t in range(1, 5))
    ref_b = sum((e[:, t - 1] - e[:, t]).pow(2).sum(-1) for t in range(1, 5))
    la, lb = noether_loss(g, x0, preds, form="a"), noether_loss(g, x0, preds, form="b")
    assert la.shape == lb.shape == (3,)
    torch.testing.assert_close(la, ref_a)
    torch.testing.assert_close(lb, ref_b)
    assert (la - lb).abs().max() > 1e-4
    ref_cos = sum(1 - torch.cosine_similarity(e[:, 0], e[:, t], dim=-1) for t in range(1, 5))
    torch.testing.assert_close(noether_loss(g, x0, preds, distance="cosine"), ref_cos)
    with pytest.raises(UserError):
        noether_loss(g, x0, preds, form="c")


@pytest.mark.parametrize("form", ["a", "b"])
@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_zero_for_constant_sequence(form, distance):
    g = _conv()
    frame = torch.rand(2, 1, 3, 16, 16)
    x0, preds = frame.expand(2, 2, 3, 16, 16), frame.expand(2, 5, 3, 16, 16)
    loss = noether_loss(g, x0, preds, form=form, distance=distance)
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("form", ["a", "b"])
def test_per_example_independence(form):
    g = _conv()
    x0, preds = torch.rand(3, 2, 3, 16, 16), torch.rand(3, 4, 3, 16, 16)
    l0 = noether_loss(g, x0, preds, form=form)
    x0b, predsb = x0.clone(), preds.clone()
    x0b[0], predsb[0] = 1 - x0b[0], 1 - predsb[0]
    l1 = noether_loss(g, x0b, predsb, form=form)
    torch.testing.assert_close(l1[1:], l0[1:])
    assert (l1[0] - l0[0]).abs() > 1e-6
    # gradient of the summed loss w.r.t. example i equals the gradient of loss[i] alone
    p = preds.clone().requires_grad_()
    (gs,) = torch.autograd.grad(noether_loss(g, x0, p, form=form).sum(), p)
    (g1,) = torch.autograd.grad(noether_loss(g, x0, p, form=form)[1], p)
    torch.testing.assert_close(gs[1], g1[1])
    assert g1[0].abs().max() == 0 and g1[2].abs().max() == 0


@pytest.mark.parametrize("form", ["a", "b"])
def test_gradcheck_float64(form):
    g = _conv(size=8, dtype=torch.float64)
    x0 = torch.rand(2, 2, 3, 8, 8, dtype=torch.float64)
    preds = torch.rand(2, 3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: noether_loss(g, x0, p, form=form), (preds,), eps=1e-6, atol=1e-5)
