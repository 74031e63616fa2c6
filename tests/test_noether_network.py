"""NoetherNetwork over the Predictor protocol: batch-size invariance, the inner-lr rule, stochastic
predictors in training mode, and CLI defaults that cannot drift from the dataclasses."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork
from noether_rl.tailoring import TailorConfig

CFG = SVGConfig(image_size=32, width=8, g_dim=16, rnn_size=16, rnn_layers=1)


def _net(noether: NoetherConfig = NoetherConfig(), **svg) -> NoetherNetwork:
    torch.manual_seed(0)
    return NoetherNetwork(SVG(dataclasses.replace(CFG, **svg)), NoetherEmbedding(EmbeddingConfig(image_size=32, emb_dim=8)),
                          noether)


def _data(B: int = 5, T: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, T, 3, 32, 32, generator=g), torch.randn(B, T - 1, 1, generator=g)


@pytest.mark.parametrize("step_rule", ["normalized", "polyak", "sgd"])
def test_predictions_do_not_depend_on_the_batch(step_rule):
    net = _net(NoetherConfig(tailor=TailorConfig(lr=0.5, step_rule=step_rule))).eval()
    x, a = _data()
    with torch.no_grad():
        full = net.predict(x[:, :2], a, 4).pred
        parts = torch.cat([net.predict(x[i : i + 2, :2], a[i : i + 2], 4).pred for i in range(0, 5, 2)])
    torch.testing.assert_close(parts, full, atol=1e-5, rtol=1e-4)
    assert (full - net.predict(x[:, :2], a, 4, tailor_cfg=TailorConfig(steps=0)).pred).abs().max() > 1e-6


def test_an_explicit_inner_lr_always_wins_over_the_learned_one():
    net = _net(NoetherConfig(tailor=TailorConfig(lr=1.0, step_rule="normalized"), learn_inner_lr=True))
    with torch.no_grad():
        net.log_inner_lr.fill_(torch.tensor(0.3).log())
    x, a = _data(2)
    with torch.no_grad():
        learned = net.predict(x[:, :2], a, 3)
        explicit_initial = net.predict(x[:, :2], a, 3, inner_lr=1.0)  # equal to the configured (initial) lr
        explicit_learned = net.predict(x[:, :2], a, 3, inner_lr=0.3)
    assert learned.inner_lr == pytest.approx(0.3) and explicit_initial.inner_lr == 1.0
    assert "learned" in learned.step_rule and "learned" not in explicit_initial.step_rule
    assert (learned.pred - explicit_initial.pred).abs().max() > 1e-6
    torch.testing.assert_close(learned.pred, explicit_learned.pred, atol=1e-6, rtol=1e-5)
    # training: the learned lr receives a meta-gradient
    out = net.predict(x[:, :2], a, 3)
    out.pred.pow(2).sum().backward()
    assert net.log_inner_lr.grad is not None and net.log_inner_lr.grad != 0


def test_stochastic_predictor_meta_trains_in_train_mode():
    net = _net(stochastic=True).train()
    x, a = _data(2)
    out = net.predict(x[:, :2], a, 4, target=x[:, 2:])
    assert out.kl is not None and out.result is not None and out.result.ok.all()
    (out.pred.pow(2).mean() + out.kl.mean()).backward()
    assert any(p.grad is not None for p in net.embedding.parameters())


def _defaults(parser: argparse.ArgumentParser) -> dict:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {a.dest: a.default for a in p._actions} for name, p in sub.choices.items()}


def test_cli_defaults_agree_with_the_dataclasses():
    from noether_rl.cli.main import build_parser
    from noether_rl.training import DataConfig, TrainConfig

    d = _defaults(build_parser())
    data, train, model, noether = DataConfig(), TrainConfig(out=""), SVGConfig(), NoetherConfig()
    for cmd in ("train", "meta-train"):
        for dest, want in [("n_past", data.n_past), ("n_future", data.n_future), ("train_episodes", data.train_episodes),
                           ("val_episodes", data.val_episodes), ("stride", data.stride), ("batch_size", train.batch_size),
                           ("lr", train.lr), ("seed", train.seed), ("width", model.width), ("g_dim", model.g_dim),
                           ("rnn_size", model.rnn_size), ("norm", model.norm), ("val_windows", train.val_windows)]:
            assert d[cmd][dest] == want, (cmd, dest)
    m = d["meta-train"]
    assert (m["inner_steps"], m["inner_lr"], m["step_rule"], m["adapt"], m["form"], m["emb_lr"]) == (
        noether.tailor.steps, noether.tailor.lr, noether.tailor.step_rule, noether.adapt, noether.form, train.emb_lr)


def test_every_flag_has_help():
    from noether_rl.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings}" for name, p in sub.choices.items() for a in p._actions
               if a.option_strings and a.help in (None, "") and a.dest != "help"]
    assert not missing, missing
