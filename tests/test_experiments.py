"""End-to-end recipes at toy scale: quickstart and reproduce pendulum-video, plus CLI errors."""

from __future__ import annotations

import json

import torch

from noether_rl.cli.main import main
from noether_rl.experiments.pendulum_video import PendulumVideoConfig, run_pendulum_video
from noether_rl.experiments.quickstart import QuickstartConfig, run_quickstart


def test_quickstart_toy_writes_report_with_both_models(tmp_path):
    cfg = QuickstartConfig(out=str(tmp_path / "qs"), episodes=5, train_episodes=2, val_episodes=1, steps=12, n_future=4,
                           svg_epochs=1, stride=1,
                           noether_epochs=1, width=8, g_dim=8, rnn_size=16, progress=False, device="cpu")
    report = run_quickstart(cfg)
    assert set(report["models"]) == {"SVG", "Noether", "copy last frame"}  # the floor is a row of every report
    on_disk = json.loads((tmp_path / "qs" / "report.json").read_text())
    assert on_disk["models"]["Noether"]["mse"]["mean"] > 0
    assert (tmp_path / "qs" / "eval" / "mse.png").is_file()
    assert (tmp_path / "qs" / "eval" / "side_by_side.mp4").is_file()
    # rerun resumes: nothing is retrained (checkpoints finished), same report numbers
    again = run_quickstart(cfg)
    assert again["models"] == report["models"]


def test_reproduce_pendulum_video_toy(tmp_path):
    cfg = PendulumVideoConfig(out=str(tmp_path / "fig3"), scale="small", seeds=(0, 1), episodes=6, steps=12,
                              train_episodes=2, val_episodes=1, n_future=4, device="cpu", progress=False,
                              overrides={"svg_epochs": 1, "meta_epochs": 1, "width": 8, "g_dim": 8, "rnn_size": 16,
                                         "emb_width": 4, "eval_windows": 4, "eval_stride": 2})
    res = run_pendulum_video(cfg)
    five = {"SVG", "SVG (more steps)", "SVG (free-running fine-tune)", "Noether (random g_phi)", "Noether"}
    assert set(res["models"]) == five | {"copy last frame"}
    assert len(res["models"]["Noether"]["metrics"]["mse"]["mean_per_step"]) == 4
    assert res["split"]["scored"] == "test" and res["split"]["test"] == [3, 4, 5]
    controls = {r["control"] for r in res["verdict"]["rows"]}
    assert controls == (five - {"Noether"}) | {"copy last frame"}
    assert all(len(r["per_seed"]) == 2 for r in res["verdict"]["rows"])
    assert set(res["verdict"]["target"]["per_control"]) == five - {"Noether"}
    assert (tmp_path / "fig3" / "angle_error.png").is_file()
    assert res["per_seed"]["0"]["train_seconds"]["noether"] > 0
    assert (tmp_path / "fig3" / "results.json").is_file()
    # the random-g_phi control kept g_phi at its initialisation; Noether changed it
    from noether_rl.training import load_checkpoint

    def emb(run: str) -> dict:
        m = load_checkpoint(tmp_path / "fig3" / "seed0" / run / "last.pt")["model"]
        return {k: v for k, v in m.items() if "embedding" in k}

    rnd, noe = emb("noether_random"), emb("noether")
    torch.manual_seed(0)
    assert any(not torch.equal(rnd[k], noe[k]) for k in rnd)


def test_acceptance_needs_ratio_ssim_and_significance():
    from noether_rl.experiments.pendulum_video import MODELS, acceptance

    def block(mse: float, ssim: float) -> dict:
        return {"metrics": {"mse": {"mean": mse}, "ssim": {"mean": ssim}}}

    pooled = {n: block(1.0, 0.80) for n in MODELS.values()}
    pooled["Noether"] = block(0.94, 0.81)
    rows = [{"control": c, "metric": m, "better": True} for c in MODELS.values() if c != "Noether" for m in ("mse", "ssim")]
    assert acceptance(pooled, rows)["met"]
    pooled["SVG"] = block(0.97, 0.80)  # ratio 0.969 > 0.95: significant but too small a gain
    out = acceptance(pooled, rows)
    assert not out["met"] and not out["per_control"]["SVG"]["met"] and out["per_control"]["SVG (more steps)"]["met"]
    pooled["SVG"] = block(1.0, 0.80)
    rows[0]["better"] = False  # not significant
    assert not acceptance(pooled, rows)["met"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a recording" in err[0]
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "e"), "badmodel"]) == 2
    assert "NAME=CHECKPOINT" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "e"), f"m={tmp_path}/none.pt"]) == 2


def test_cli_train_meta_train_evaluate_chain(tiny_recording, tmp_path, capsys):
    data = str(tiny_recording)
    common = ["--data", data, "--n-past", "3", "--n-future", "4", "--train-episodes", "2", "--device", "cpu"]
    small = ["--width", "8", "--g-dim", "8", "--rnn-size", "16", "--rnn-layers", "1", "--norm", "layer", "--batch-size", "4",
             "--stride", "4"]
    svg = tmp_path / "svg"
    assert main(["train", *common, *small, "--out", str(svg), "--epochs", "1"]) == 0
    noe = tmp_path / "noe"
    assert main(["meta-train", *common, *small, "--out", str(noe), "--epochs", "1", "--init-from", str(svg / "last.pt"),
                 "--emb-dim", "8", "--learn-inner-lr"]) == 0
    ev = tmp_path / "ev"
    assert main(["evaluate", *common, "--out", str(ev), "--max-windows", "4", "--no-video",
                 f"svg={svg}/last.pt", f"noether={noe}/last.pt"]) == 0
    res = json.loads((ev / "results.json").read_text())
    assert set(res["models"]) == {"svg", "noether", "copy last frame"}
    assert "noether: mse" in capsys.readouterr().out
