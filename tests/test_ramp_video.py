"""The ramp-video recipe: data preparation (Physics 101 layout / synthetic), config errors, and (slow) the whole
recipe at the tiny scale through the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from noether_rl.errors import UserError
from noether_rl.experiments import ramp_video as rv


def _fake_physics101(top: Path, n: int = 10) -> Path:
    ramp = top / "phys101" / "scenarios" / "ramp"
    rng = np.random.default_rng(0)
    for k in range(n):
        d = ramp / f"obj_{k:02d}" / "20_01" / "01"
        d.mkdir(parents=True)
        frames = rng.integers(0, 255, size=(46, 24, 40, 3), dtype=np.uint8)  # 23 frames at 15 fps
        imageio.mimwrite(d / "Kinect_RGB_1.mp4", list(frames), fps=30, codec="libx264", macro_block_size=1)
    (ramp / "broken" / "20_01" / "01").mkdir(parents=True)
    (ramp / "broken" / "20_01" / "01" / "Kinect_RGB_1.mp4").write_bytes(b"not a video")
    return top


def test_physics101_becomes_a_recording_with_the_paper_split(tmp_path: Path) -> None:
    from noether_rl.data import verify_recording

    top = _fake_physics101(tmp_path / "p101")
    cfg = rv.RampVideoConfig(out=str(tmp_path / "out"), data=str(top), scale="tiny", progress=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        root, train_eps, val_eps, source = rv._data(cfg, cfg.spec)
    assert sum("skipped 1 of 11" in str(w.message) for w in rec) == 1
    manifest = verify_recording(root)
    assert manifest["episodes"] == 10 and manifest["steps"] == rv.N_PAST + rv.N_FUTURE - 1 and manifest["size"] == 32
    assert (train_eps, val_eps) == (7, 1)  # 80 / 20 with a tenth of all carved out of the training share
    assert source["source"] == "physics101" and source["skipped"][0]["name"].startswith("broken/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unreadable video is tried (and reported) again
        assert rv._data(cfg, cfg.spec)[1:3] == (7, 1)  # a rerun reuses the export (and the decoded-video cache)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="exactly one"):
        rv.run_ramp_video(rv.RampVideoConfig(out=str(tmp_path), scale="tiny"))
    with pytest.raises(UserError, match="exactly one"):
        rv.run_ramp_video(rv.RampVideoConfig(out=str(tmp_path), data="x", synthetic=True, scale="tiny"))
    with pytest.raises(UserError, match="unknown scale"):
        _ = rv.RampVideoConfig(out=str(tmp_path), synthetic=True, scale="huge").spec
    with pytest.raises(UserError, match="unknown scale fields"):
        _ = rv.RampVideoConfig(out=str(tmp_path), synthetic=True, overrides={"depth": 3}).spec


@pytest.mark.slow
def test_synthetic_recipe_end_to_end_tiny(tmp_path: Path) -> None:
    from noether_rl.cli.main import main

    out = tmp_path / "rv"
    assert main(["reproduce", "ramp-video", "--synthetic", "--scale", "tiny", "--seeds", "0", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) >= {"SVG", "SVG (more steps)", "Noether", "Noether (untailored)"}
    rows = {(r["control"], r["metric"]) for r in res["verdict_rows"]}
    assert rows == {(c, m) for c in ("SVG", "SVG (more steps)") for m in ("mse", "ssim", "psnr")}
    assert all(r["n_episodes"] == rv.SCALES["tiny"].episodes - 16 for r in res["verdict_rows"])
    assert (out / "mse.png").is_file() and Path(res["video"]).is_file()
    assert (out / "analysis" / "gradcam.png").is_file() and 0 < res["embedding_analysis"]["first_four"] <= 1 + 1e-9
