"""Tests for noether_rl.eval: metrics, accumulator, results files, plots and videos (fast, CPU)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.eval import (
    MetricAccumulator,
    frames_grid_png,
    load_results,
    lpips_available,
    per_step_metrics,
    plot_all,
    plot_metric_curves,
    save_gif,
    side_by_side_video,
    write_results,
)
from noether_rl.eval import metrics as metrics_mod
from noether_rl.eval.video import compose_side_by_side

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pair(b: int = 3, t: int = 4, c: int = 3, hw: int = 32, noise: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, t, c, hw, hw, generator=g)
    pred = (target + noise * torch.randn(b, t, c, hw, hw, generator=g)).clamp(0, 1)
    return pred, target


def test_shapes_are_per_example_per_step() -> None:
    pred, target = _pair(b=3, t=4)
    m = per_step_metrics(pred, target)
    assert set(m) == {"mse", "psnr", "ssim"}
    for v in m.values():
        assert v.shape == (3, 4)
        assert v.device == pred.device


def test_mse_and_psnr_match_hand_computation() -> None:
    target = torch.full((2, 3, 1, 16, 16), 0.5)
    offsets = torch.tensor([[0.1, 0.2, 0.3], [0.05, 0.0, 0.25]])
    pred = target + offsets[:, :, None, None, None]
    m = per_step_metrics(pred, target)
    expected_mse = offsets.square()
    torch.testing.assert_close(m["mse"], expected_mse)
    finite = expected_mse > 0
    torch.testing.assert_close(m["psnr"][finite], 10 * torch.log10(1.0 / expected_mse[finite]))
    assert math.isinf(m["psnr"][1, 1].item())  # perfect frame


def test_psnr_is_per_image_not_over_batch() -> None:
    pred, target = _pair(b=2, t=2)
    pred[0, 0] = target[0, 0] + 0.01  # one much better frame
    m = per_step_metrics(pred, target)
    ref = 10 * torch.log10(1.0 / (pred.clamp(0, 1) - target).square().mean(dim=(2, 3, 4)))
    torch.testing.assert_close(m["psnr"], ref)


def test_pred_is_clamped() -> None:
    target = torch.zeros(1, 1, 1, 16, 16)
    pred = torch.full_like(target, 2.0)
    m = per_step_metrics(pred, target)
    assert m["mse"].item() == pytest.approx(1.0)


def test_ssim_identical_is_one_and_noisy_is_less() -> None:
    _, target = _pair()
    same = per_step_metrics(target.clone(), target)["ssim"]
    torch.testing.assert_close(same, torch.ones_like(same))
    noisy, _ = _pair(noise=0.2)
    ssim = per_step_metrics(noisy, target)["ssim"]
    assert (ssim < 0.99).all()
    # more noise -> lower SSIM
    noisier, _ = _pair(noise=0.4)
    assert (per_step_metrics(noisier, target)["ssim"] < ssim).all()


def test_bad_inputs_raise_user_error() -> None:
    with pytest.raises(UserError):
        per_step_metrics(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    with pytest.raises(UserError):
        per_step_metrics(torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 3, 32, 32))
    with pytest.raises(UserError, match="kernel"):
        per_step_metrics(torch.rand(1, 1, 1, 8, 8), torch.rand(1, 1, 1, 8, 8))
    m = per_step_metrics(torch.rand(1, 1, 1, 8, 8), torch.rand(1, 1, 1, 8, 8), ssim_kernel_size=7)
    assert m["ssim"].shape == (1, 1)


def test_accumulator_matches_single_pass_and_standard_error() -> None:
    pred, target = _pair(b=7, t=5, noise=0.15, seed=1)
    acc = MetricAccumulator()
    for sl in (slice(0, 3), slice(3, 4), slice(4, 7)):
        acc.update(pred[sl], target[sl])
    s = acc.summary()
    assert s["n_examples"] == 7 and s["n_steps"] == 5
    full = per_step_metrics(pred, target)
    for name, v in full.items():
        v = v.double()
        block = s["metrics"][name]
        n = v.shape[0]
        np.testing.assert_allclose(block["mean_per_step"], v.mean(0).numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            block["se_per_step"], (v.std(0, unbiased=True) / math.sqrt(n)).numpy(), rtol=1e-4
        )
        avg = v.mean(1)
        assert block["mean"] == pytest.approx(avg.mean().item(), rel=1e-6)
        assert block["se"] == pytest.approx((avg.std(unbiased=True) / math.sqrt(n)).item(), rel=1e-4)


def test_accumulator_edge_cases() -> None:
    acc = MetricAccumulator()
    assert acc.summary()["metrics"] == {}
    pred, target = _pair(b=1, t=3)
    acc.update(pred, target)
    s = acc.summary()
    assert all(math.isnan(x) for x in s["metrics"]["mse"]["se_per_step"])  # undefined for n = 1
    with pytest.raises(UserError, match="steps"):
        acc.update(*_pair(b=1, t=2))


def test_results_round_trip(tmp_path: Path) -> None:
    acc = MetricAccumulator()
    acc.update(*_pair())
    results = {
        "summary": {"svg": acc.summary()},
        "tensor": torch.arange(3),
        "arr": np.ones(2),
        "x": np.float32(1.5),
    }
    path = write_results(tmp_path / "sub" / "results.json", results)
    loaded = load_results(path)
    assert loaded["summary"]["svg"] == acc.summary()
    assert loaded["tensor"] == [0, 1, 2] and loaded["arr"] == [1.0, 1.0] and loaded["x"] == 1.5
    assert set(loaded["versions"]) == {"python", "torch", "numpy", "noether_rl"}
    assert "timestamp" in loaded
    assert "versions" not in results  # input not mutated
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp files left
    with pytest.raises(UserError):
        load_results(tmp_path / "missing.json")


def _two_model_curves() -> dict[str, dict]:
    curves = {}
    for name, noise in (("SVG", 0.2), ("Noether", 0.1)):
        acc = MetricAccumulator()
        acc.update(*_pair(b=4, t=6, noise=noise))
        curves[name] = acc.summary()
    return curves


def test_plots_are_valid_pngs(tmp_path: Path) -> None:
    curves = _two_model_curves()
    one = plot_metric_curves(curves, "mse", tmp_path / "mse_curve.png", title="MSE")
    paths = plot_all(curves, tmp_path / "plots", metrics=("mse", "ssim", "psnr", "lpips"))
    assert [p.name for p in paths] == ["mse.png", "ssim.png", "psnr.png"]  # lpips absent -> skipped
    for p in [one, *paths]:
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = imageio.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    with pytest.raises(UserError):
        plot_metric_curves(curves, "nope", tmp_path / "x.png")


def test_side_by_side_video(tmp_path: Path) -> None:
    t, scale = 6, 4
    gt = torch.rand(t, 3, 32, 32)
    svg = torch.rand(t, 1, 32, 32)  # grayscale column is fine
    noether = (gt.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)  # [T, H, W, C] uint8
    cols = {"ground truth": gt, "SVG": svg, "Noether": noether}
    composed = compose_side_by_side(cols, scale=scale)
    gap = max(2, scale)
    assert composed.shape[0] == t and composed.shape[2] == 3 * 32 * scale + 2 * gap
    out = side_by_side_video(cols, tmp_path / "vid" / "cmp.mp4", fps=8, scale=scale)
    assert out.exists() and out.stat().st_size > 0
    frames = imageio.mimread(out, format="FFMPEG")
    assert len(frames) == t
    expected_w = -(-composed.shape[2] // 16) * 16
    expected_h = -(-composed.shape[1] // 16) * 16
    assert frames[0].shape == (expected_h, expected_w, 3)
    # the ground-truth column (below the label row) is reproduced up to codec error
    label_h = composed.shape[1] - 32 * scale
    region = frames[0][label_h : label_h + 32 * scale, : 32 * scale].astype(float)
    assert np.abs(region - composed[0, label_h:, : 32 * scale]).mean() < 40
    assert sorted(p.name for p in out.parent.iterdir()) == ["cmp.mp4"]  # atomic: no temp left


def test_video_without_labels_gif_and_grid(tmp_path: Path) -> None:
    cols = {"gt": torch.rand(5, 3, 16, 16), "pred": torch.rand(5, 3, 16, 16)}
    composed = compose_side_by_side(cols, scale=2, labels=False)
    assert composed.shape == (5, 32, 2 * 32 + 2, 3)
    gif = save_gif(cols, tmp_path / "cmp.gif", scale=2)
    assert len(imageio.mimread(gif)) == 5
    grid = frames_grid_png(cols, tmp_path / "grid.png", max_steps=3)
    assert grid.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(UserError):
        compose_side_by_side({"a": torch.rand(5, 3, 16, 16), "b": torch.rand(4, 3, 16, 16)})


def test_lpips_skipped_gracefully_when_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_mod, "_LPIPS_PROBE", (False, "forced off in test"))
    monkeypatch.setattr(metrics_mod, "_LPIPS_WARNED", False)
    assert lpips_available() is False
    pred, target = _pair(b=1, t=2)
    with pytest.warns(UserWarning, match="LPIPS is skipped"):
        m = per_step_metrics(pred, target, lpips=True)
    assert "lpips" not in m and set(m) == {"mse", "psnr", "ssim"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned only once
        per_step_metrics(pred, target, lpips=True)
    acc = MetricAccumulator(lpips=True)
    acc.update(pred, target)
    assert "lpips" not in acc.summary()["metrics"]


@pytest.mark.skipif(not lpips_available(), reason="LPIPS weights not available locally")
def test_lpips_when_available() -> None:
    pred, target = _pair(b=2, t=2)
    m = per_step_metrics(pred, target, lpips=True)
    assert m["lpips"].shape == (2, 2)
    same = per_step_metrics(target, target, lpips=True)["lpips"]
    assert (same.abs() < 1e-5).all() and (m["lpips"] > same).all()


# ---------------------------------------------------------------------------------------- strict JSON
def test_results_json_is_strict_with_non_finite_values(tmp_path: Path) -> None:
    import json

    results = {"a": float("nan"), "b": [1.0, float("inf")], "t": torch.tensor([0.5, float("-inf")]),
               "n": {"se": np.float64("nan")}}
    path = write_results(tmp_path / "r.json", results)

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    loaded = json.loads(path.read_text(), parse_constant=refuse)  # strictly valid JSON
    assert loaded["a"] is None and loaded["b"] == [1.0, None] and loaded["t"] == [0.5, None]
    assert loaded["n"]["se"] is None
    assert set(loaded["non_finite"]) == {"a", "b[1]", "t[1]", "n.se"}
    assert loaded["non_finite"]["b[1]"].startswith("inf") and loaded["non_finite"]["a"].startswith("nan")
    assert math.isnan(results["a"])  # input untouched


# ---------------------------------------------------------------------------------------- pendulum angle
@pytest.mark.parametrize("size", [32, 64])
def test_angle_decoder_on_rendered_frames(size: int) -> None:
    from noether_rl.envs.pixel_pendulum import PixelPendulumEnv, draw_pendulum
    from noether_rl.eval.pendulum_angle import angle_error_deg, decode_angle

    rng = np.random.default_rng(size)
    env = PixelPendulumEnv(size=size)
    theta = rng.uniform(-math.pi, math.pi, 200)
    torque = rng.uniform(-2.0, 2.0, 200)  # the drawn torque arrow must not disturb the decoder
    torque[:50] = np.nan
    frames = np.stack([draw_pendulum(env, t, None if np.isnan(u) else u) for t, u in zip(theta, torque)])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0).reshape(20, 10, 3, size, size)
    decoded = decode_angle(x)
    assert decoded.shape == (20, 10)
    err = angle_error_deg(decoded, torch.from_numpy(theta).float().reshape(20, 10))
    assert err.max().item() < 2.0 and err.mean().item() < 1.0
    # a frame with no rod has no angle, and scores as the worst error
    blank = decode_angle(torch.ones(2, 3, size, size))
    assert torch.isnan(blank).all()
    assert angle_error_deg(blank, torch.zeros(2)).tolist() == [180.0, 180.0]
    # wrap-around: 179 deg vs -179 deg is 2 deg apart
    assert angle_error_deg(torch.tensor([math.radians(179)]), torch.tensor([math.radians(-179)])).item() == \
        pytest.approx(2.0, abs=1e-4)
