"""Embedding PCA, Grad-CAM and the inner-step curve on tiny modules the tests build themselves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from noether_rl.errors import UserError
from noether_rl.eval import analysis as an
from noether_rl.noether.predictor import Prediction


def test_pca_recovers_known_variance_shares() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    z = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0)
    e = 3.0 * z[:, :1] * q[:, 0] + 1.0 * z[:, 1:] * q[:, 1] + 7.0  # variances 9 : 1 around a mean of 7
    pca = an.embedding_pca(e)
    np.testing.assert_allclose(pca.explained[:2].numpy(), [0.9, 0.1], atol=0.01)
    assert pca.explained[2:].sum() < 1e-12
    for k in range(2):  # components are the true directions, sign fixed: largest loading positive
        assert abs(float(pca.components[k] @ q[:, k])) == pytest.approx(1.0, abs=1e-3)
        assert pca.components[k][pca.components[k].abs().argmax()] > 0
    table = pca.table(3)
    assert [r["component"] for r in table] == [1, 2, 3] and table[1]["cumulative"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(UserError, match="non-finite"):
        an.embedding_pca(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))


class TinyG(nn.Module):
    """A conv g_phi on pairs of 1-channel frames -> 3-d embedding."""

    pairs = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_embed_frames_pairs_and_gradcam_matches_definition() -> None:
    torch.manual_seed(0)
    g = TinyG().double()
    frames = torch.rand(2, 5, 1, 8, 8, dtype=torch.float64)
    emb = an.embed_frames(g, frames)
    assert emb.shape == (2, 4, 3)
    x = an.gphi_inputs(frames, True)
    assert x.shape == (2, 4, 2, 8, 8) and torch.equal(x[0, 1, 1], frames[0, 2, 0])
    pca = an.embedding_pca(emb.reshape(-1, 3))
    inputs = x.reshape(-1, 2, 8, 8)
    maps = an.grad_cam(g, inputs, pca.components[:2], pca.mean)
    assert maps.shape == (2, 8, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    assert not g.conv._forward_hooks  # the hook is removed
    # by hand for component 0: weights = spatial mean of d proj / d activations
    a = g.conv(inputs)
    acts = a.detach().requires_grad_(True)
    proj = (g.head(torch.relu(acts).flatten(1)) - pca.mean) @ pca.components[0]
    (grads,) = torch.autograd.grad((proj * proj.detach().sign()).sum(), acts)  # of |projection|
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * acts.detach()).sum(1))
    cam = cam / cam.flatten(1).amax(1)[:, None, None]
    np.testing.assert_allclose(maps[0].numpy(), torch.nan_to_num(cam).numpy(), atol=1e-10)
    flipped = an.grad_cam(g, inputs, -pca.components[:2], pca.mean)  # independent of the component's sign
    np.testing.assert_allclose(flipped.numpy(), maps.numpy(), atol=1e-12)
    with pytest.raises(UserError, match="convolution"):
        an.grad_cam(nn.Linear(4, 3), torch.rand(2, 4), pca.components[:1], torch.zeros(3))


class DriftPredictor:
    """Continues the last context state with a per-example drift; the adaptable ``d`` adds to it."""

    stochastic = False

    def __init__(self, drift: torch.Tensor) -> None:
        self.drift = drift  # [B, D]

    def adaptables(self, batch_size, horizon, *, kind, device, dtype):
        return {"d": torch.zeros(batch_size, self.drift.shape[1], device=device, dtype=dtype)}

    def rollout(self, context, actions, horizon, *, adapt=None, generator=None, target=None):
        d = self.drift + (adapt["d"] if adapt is not None else 0)
        t = torch.arange(1, horizon + 1, dtype=context.dtype)[None, :, None]
        return Prediction(pred=context[:, -1:] + d[:, None] * t, kl=None)


def test_inner_step_curve_reads_outer_loss_every_step() -> None:
    B, D, H = 3, 2, 4
    drift = torch.tensor([[0.5, -0.2], [0.1, 0.1], [-0.3, 0.4]])
    context = torch.randn(B, 2, D, generator=torch.Generator().manual_seed(1))
    truth = context[:, -1:].expand(B, H, D)  # a conserved state: the truth stays put

    def inner_loss(ctx, pred):  # conservation of the identity "embedding" w.r.t. the last observed state
        return (pred - ctx[:, -1:]).pow(2).flatten(1).mean(1)

    net = SimpleNamespace(predictor=DriftPredictor(drift), cfg=SimpleNamespace(adapt="d"), inner_loss=inner_loss)
    curve = an.inner_step_curve(net, context, torch.zeros(B, 2 + H - 1, 1), truth, steps=200, lr=0.02)
    assert curve.outer.shape == (201, B) and curve.inner.shape == (201, B) and bool(curve.ok.all())
    t = torch.arange(1, H + 1.0)
    np.testing.assert_allclose(curve.outer[0].numpy(), (drift.pow(2).mean(1) * t.pow(2).mean()).numpy(), rtol=1e-5)
    assert (curve.outer[-1] < 0.05 * curve.outer[0]).all()  # Adam on the inner loss removes the drift
    np.testing.assert_allclose(curve.outer.numpy(), curve.inner.numpy(), rtol=1e-5)  # here inner == outer
    with pytest.raises(UserError):
        an.inner_step_curve(net, context, torch.zeros(B, 5, 1), truth, steps=0, lr=0.1)


def test_figures_are_written(tmp_path: Path) -> None:
    an.save_gradcam_grid(tmp_path / "g.png", torch.rand(2, 3, 8, 8), torch.rand(2, 2, 8, 8), [0.8, 0.15],
                         ["a", "b"])
    steps = np.arange(5)
    an.save_inner_steps_plot(tmp_path / "i.png", steps, -steps / 10.0, 0.1 * np.ones(5), np.ones(5), "x")
    for name in ("g.png", "i.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------- CLI, end to end
def _noether_checkpoint(path: Path, root: Path, train: int) -> str:
    """An untrained tiny Noether Network saved as a checkpoint that says it trained on ``train`` episodes."""
    from noether_rl.models import EmbeddingConfig, SVGConfig
    from noether_rl.noether import NoetherConfig
    from noether_rl.tailoring import TailorConfig
    from noether_rl.training import DataConfig, TrainConfig, build_network, save_checkpoint

    torch.manual_seed(0)
    cfg = TrainConfig(out=str(path.parent), data=DataConfig(root=str(root), n_past=2, n_future=4,
                                                             train_episodes=train, val_episodes=0),
                      model=SVGConfig(image_size=32, width=8, g_dim=8, rnn_size=16, rnn_layers=1),
                      embedding=EmbeddingConfig(image_size=32, emb_dim=8),
                      noether=NoetherConfig(tailor=TailorConfig(steps=1, lr=0.5, step_rule="normalized")))
    save_checkpoint(path, {"kind": "noether", "config": cfg.to_dict(), "model": build_network(cfg).state_dict(),
                           "epoch": 1})
    return str(path)


def test_cli_analyze_embedding_and_inner_steps(tiny_recording: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from noether_rl.cli.main import main

    ckpt = _noether_checkpoint(tmp_path / "ck.pt", tiny_recording, train=2)
    out = tmp_path / "emb"
    rc = main(["analyze", "embedding", "--checkpoint", ckpt, "--data", str(tiny_recording), "--out", str(out),
               "--device", "cpu", "--components", "3", "--times", "0", "3", "--stride", "4"])
    assert rc == 0
    res = json.loads((out / "embedding_pca.json").read_text())
    assert res["split"] == "test" and res["episodes"] == [2, 3] and res["embedding_dim"] == 8
    shares = [r["explained"] for r in res["variance"]]
    assert abs(sum(shares) - 1) < 1e-9 and shares == sorted(shares, reverse=True)
    assert (out / "gradcam.png").read_bytes()[:4] == b"\x89PNG" and (out / "embedding_variance.csv").is_file()
    assert "first four" in capsys.readouterr().out
    out2 = tmp_path / "inner"
    rc = main(["analyze", "inner-steps", "--checkpoint", ckpt, "--data", str(tiny_recording), "--out", str(out2),
               "--device", "cpu", "--steps", "5", "--lr", "0.01", "--max-windows", "4"])
    assert rc == 0
    res = json.loads((out2 / "inner_steps.json").read_text())
    assert len(res["outer_mse_mean"]) == 6 and res["n_windows"] == 4 and res["fallbacks"] == 0
    assert res["outer_change_mean"][0] == 0.0 and len(res["outer_change_se"]) == 6
    assert (out2 / "inner_steps.png").is_file()
    # a checkpoint that trained on the test episodes is refused in one line (exit 2)
    bad = _noether_checkpoint(tmp_path / "bad.pt", tiny_recording, train=4)
    assert main(["analyze", "embedding", "--checkpoint", bad, "--data", str(tiny_recording), "--out",
                 str(tmp_path / "x"), "--device", "cpu"]) == 2
