"""Training: baseline + meta-training steps, meta-gradients, checkpoints, resume, DDP (gloo)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig
from noether_rl.training import (
    DataConfig,
    EpisodeWindows,
    Objective,
    TrainConfig,
    build_network,
    load_checkpoint,
    train,
)
from noether_rl.training.loading import load_model

TINY = SVGConfig(image_size=32, width=8, g_dim=16, rnn_size=16, rnn_layers=1, norm="layer")
EMB = EmbeddingConfig(image_size=32, emb_dim=8)
NOETHER = NoetherConfig(tailor=TailorConfig(lr=0.5, order="second"))


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), data=DataConfig(str(root), n_past=3, n_future=4, train_episodes=2, stride=4), model=TINY,
                epochs=1, batch_size=4, progress=False, tensorboard=False, device="cpu", embedding=EMB)
    base.update(kw)
    return TrainConfig(**base)


def _objective(cfg: TrainConfig) -> Objective:
    return Objective(build_network(cfg), cfg.data.n_past, cfg.data.n_future, cfg.beta)


def _batch(root: Path, n: int = 4, dtype=torch.float32):
    data = EpisodeWindows(str(root), 3, 4, [0, 1], stride=4)
    frames, actions = data.batch(torch.arange(n))
    return frames.to(dtype), actions.to(dtype)


def test_window_gather_matches_recording(tiny_recording):
    from noether_rl.data import open_episode

    data = EpisodeWindows(str(tiny_recording), 3, 4, [0, 1], stride=4)
    frames, actions = data.batch(torch.tensor([len(data) - 1]))
    ep, start = data.index[-1].tolist()
    raw = open_episode(tiny_recording, ep)
    torch.testing.assert_close(frames[0, 0].permute(1, 2, 0), torch.from_numpy(raw["frames"][start]).float() / 255)
    torch.testing.assert_close(actions[0], torch.from_numpy(raw["actions"][start : start + 6]))


def test_meta_gradient_reaches_g_phi_only(tiny_recording, tmp_path):
    torch.manual_seed(0)
    obj = _objective(_cfg(tiny_recording, tmp_path, noether=NOETHER, train_predictor=False))
    obj.svg.requires_grad_(False)
    obj.svg.eval()
    o = obj(_batch(tiny_recording))
    assert o.ok.all() and {"inner_before", "inner_after", "inner_improved", "inner_lr"} <= set(o.stats)
    o.loss.mean().backward()
    g = [p.grad for p in obj.net.embedding.parameters()]
    assert all(x is not None for x in g) and sum(x.abs().sum() for x in g) > 0
    assert all(p.grad is None for p in obj.svg.parameters())


@pytest.mark.parametrize("step_rule", ["normalized", "polyak", "sgd"])
def test_meta_gradient_matches_finite_differences_float64(tiny_recording, tmp_path, monkeypatch, step_rule):
    """Directional finite-difference check of the second-order meta-gradient on the real pipeline, for
    every inner step rule (the shipped default is ``NoetherConfig().tailor.step_rule``).

    ReLU/LeakyReLU/max-pool kinks make the meta-objective only piecewise smooth (its gradient jumps
    between pieces, which breaks finite differences), so this check swaps them for smooth stand-ins.
    """
    import torch.nn.functional as F

    silu, avg = F.silu, F.avg_pool2d
    monkeypatch.setattr(F, "leaky_relu", lambda x, negative_slope=0.01, inplace=False: silu(x))
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: silu(x))
    monkeypatch.setattr(F, "max_pool2d", lambda x, k, *a, **kw: avg(x, k))
    torch.manual_seed(0)
    tailor = dataclasses.replace(NoetherConfig().tailor, step_rule=step_rule, lr=0.5 if step_rule != "sgd" else 50.0)
    cfg = _cfg(tiny_recording, tmp_path, noether=NoetherConfig(tailor=tailor), train_predictor=False)
    obj = _objective(cfg).double()
    obj.svg.requires_grad_(False)
    obj.svg.eval()
    batch = _batch(tiny_recording, n=2, dtype=torch.float64)
    params = list(obj.net.embedding.parameters())
    loss = obj(batch).loss.sum()
    grads = torch.autograd.grad(loss, params)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
        up = obj(batch).loss.sum()
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
        down = obj(batch).loss.sum()
    numeric = (up - down) / (2 * eps)
    assert analytic.abs() > 1e-8
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-9)


def test_inner_step_lowers_noether_loss(tiny_recording):
    torch.manual_seed(0)
    from noether_rl.models import SVG, NoetherEmbedding
    from noether_rl.noether import NoetherNetwork

    cfg = dataclasses.replace(NOETHER, tailor=TailorConfig(lr=0.1, order="first", only_on_improvement=True))
    net = NoetherNetwork(SVG(TINY), NoetherEmbedding(EMB), cfg).eval()
    frames, actions = _batch(tiny_recording)
    with torch.no_grad():
        out = net.predict(frames[:, :3], actions, 4)
    assert out.result is not None and out.result.final_losses is not None
    assert (out.result.final_losses < out.result.inner_losses[0]).float().mean() >= 0.75
    assert not torch.equal(out.pred, out.initial)


def test_train_checkpoint_round_trip_and_resume(tiny_recording, tmp_path, monkeypatch):
    cfg = _cfg(tiny_recording, tmp_path / "svg")
    path = train(cfg)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and ckpt["finished"]
    m = load_model(path)
    assert m.kind == "svg" and m.config == cfg
    # resume with more epochs continues from epoch 1 (the csv log gets one more row), whatever the spelling
    monkeypatch.chdir(tmp_path)
    train(dataclasses.replace(cfg, epochs=2, out="svg/", data=dataclasses.replace(cfg.data, root=os.path.relpath(
        tiny_recording, tmp_path))))
    assert load_checkpoint(path)["epoch"] == 2
    assert len((tmp_path / "svg" / "metrics.csv").read_text().strip().splitlines()) == 3
    with pytest.raises(UserError, match="different configuration"):
        train(dataclasses.replace(cfg, lr=1.0, epochs=3))
    # meta-training from the SVG checkpoint
    meta = _cfg(tiny_recording, tmp_path / "noe", noether=NOETHER, init_from=str(path), train_predictor=False)
    mpath = train(meta)
    loaded = load_model(mpath)
    assert loaded.kind == "noether"
    svg_state = load_model(path).module.state_dict()
    for k, v in loaded.svg.state_dict().items():  # frozen predictor unchanged
        torch.testing.assert_close(v, svg_state[k])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil(), "config": {}}, f)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)
    torch.save({"model": _Evil(), "config": {}}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(UserError):
        load_checkpoint(path)


def test_an_epoch_sees_every_training_window_once(tiny_recording):
    """The DESIGN pitfall of the original Phys101 loader: index windows properly."""
    from torch.utils.data import DistributedSampler

    data = EpisodeWindows(str(tiny_recording), 3, 4, [0, 1], stride=1)
    assert len(data) == 2 * (17 - 7 + 1)
    seen = []
    for rank in range(2):  # two DDP ranks together cover the epoch
        s = DistributedSampler(range(len(data)), num_replicas=2, rank=rank, shuffle=True, seed=0)
        seen += list(s)
    assert sorted(set(seen)) == list(range(len(data)))
    starts = {tuple(x) for x in data.index.tolist()}
    assert len(starts) == len(data)


def test_free_running_objective_scores_the_rollout_and_trains(tiny_recording, tmp_path):
    cfg = _cfg(tiny_recording, tmp_path / "fr", objective="free_running")
    net = build_network(cfg)
    obj = Objective(net, 3, 4, cfg.beta, free_running=True)
    frames, actions = _batch(tiny_recording)
    loss = obj((frames, actions)).loss  # [B]: MSE of the 4-frame rollout from 3 context frames
    ref = (net.rollout(frames[:, :3], actions, 4).pred - frames[:, 3:]).pow(2).mean(dim=(2, 3, 4)).sum(1)
    torch.testing.assert_close(loss, ref)
    tf = Objective(net, 3, 4, cfg.beta)((frames, actions)).loss  # teacher forcing: all 6 next frames
    assert tf.shape == loss.shape and not torch.allclose(tf, loss)
    assert train(cfg).is_file()
    from noether_rl.training.trainer import run_identity

    # runs made before the field existed (teacher forcing) keep resuming; a free-running run is another run
    assert "objective" not in run_identity(_cfg(tiny_recording, tmp_path / "tf"))
    assert run_identity(cfg)["objective"] == "free_running"
    for bad in (dict(objective="rollout"), dict(objective="free_running", noether=NOETHER)):
        with pytest.raises(UserError, match="objective"):
            build_network(_cfg(tiny_recording, tmp_path / "bad", **bad))


def test_pyramid_loss_adds_pooled_frame_mse_terms(tiny_recording, tmp_path):
    from noether_rl.training.trainer import frame_loss, frame_mse, run_identity

    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 3, 8, 8, generator=g), torch.rand(2, 3, 3, 8, 8, generator=g)
    torch.testing.assert_close(frame_loss(pred, target), frame_mse(pred, target))
    # level 1 by hand: the mean of each 2x2 block
    p1 = pred.reshape(2, 3, 3, 4, 2, 4, 2).mean((4, 6))
    t1 = target.reshape(2, 3, 3, 4, 2, 4, 2).mean((4, 6))
    torch.testing.assert_close(frame_loss(pred, target, 1), frame_mse(pred, target) + frame_mse(p1, t1))
    # a one-pixel-wide bar shifted by 2 px: no overlap, so the plain MSE does not prefer a 1 px shift to a 2 px
    # one; the pooled terms do
    bar = torch.zeros(1, 1, 1, 8, 8)
    bar[..., 2] = 1.0
    one, two = bar.roll(1, -1), bar.roll(2, -1)
    assert frame_loss(one, bar) == frame_loss(two, bar)
    assert frame_loss(one, bar, 2) < frame_loss(two, bar, 2)
    cfg = _cfg(tiny_recording, tmp_path / "p", objective="free_running", pyramid_levels=2)
    obj = Objective(build_network(cfg), 3, 4, cfg.beta, free_running=True, pyramid_levels=2)
    frames, actions = _batch(tiny_recording)
    torch.manual_seed(0)
    loss = obj((frames, actions)).loss
    # TINY is deterministic (no latent sampling), so the rollout without a target is the objective's rollout
    ref = frame_loss(obj.net.rollout(frames[:, :3], actions, 4).pred, frames[:, 3:], 2)
    torch.testing.assert_close(loss, ref)
    assert "pyramid_levels" not in run_identity(_cfg(tiny_recording, tmp_path / "q"))  # old runs keep resuming
    assert run_identity(cfg)["pyramid_levels"] == 2
    with pytest.raises(UserError, match="pyramid_levels"):
        build_network(_cfg(tiny_recording, tmp_path / "bad", pyramid_levels=6))  # 32 is not divisible by 64
