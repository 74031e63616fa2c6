"""The evaluation runner: splits from the checkpoints, refusal of training episodes, copy-last floor, pendulum
angle scores and subsets, tailoring statistics, provenance and a strictly valid results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from noether_rl.data import load_manifest
from noether_rl.errors import UserError
from noether_rl.eval import per_step_metrics
from noether_rl.experiments.evaluation import (
    COPY_LAST,
    UPRIGHT_RAD,
    EvalConfig,
    eval_windows,
    evaluate,
    score_predictors,
)
from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig, TailorResult
from noether_rl.training import DataConfig, TrainConfig, build_network, save_checkpoint

N_PAST, N_FUTURE = 3, 4


def _checkpoint(path: Path, root: Path, train: int, val: int = 0, noether: bool = False) -> str:
    """An untrained tiny model saved as a checkpoint whose config says it trained on ``train`` episodes."""
    torch.manual_seed(0)
    cfg = TrainConfig(out=str(path.parent), data=DataConfig(root=str(root), n_past=N_PAST, n_future=N_FUTURE,
                                                             train_episodes=train, val_episodes=val),
                      model=SVGConfig(image_size=32, width=8, g_dim=8, rnn_size=16, rnn_layers=1),
                      embedding=EmbeddingConfig(image_size=32, emb_dim=8),
                      noether=NoetherConfig(tailor=TailorConfig(steps=1, lr=0.5, step_rule="normalized"))
                      if noether else None)
    module = build_network(cfg)
    save_checkpoint(path, {"kind": "noether" if noether else "svg", "config": cfg.to_dict(),
                           "model": module.state_dict(), "epoch": 1})
    return str(path)


def _cfg(root: Path, out: Path, ckpts: dict[str, str], **kw) -> EvalConfig:
    return EvalConfig(data=str(root), checkpoints=ckpts, out=str(out), n_past=N_PAST, n_future=N_FUTURE, stride=2,
                      max_windows=64, batch_size=8, device="cpu", video=False, **kw)


def test_evaluate_refuses_episodes_the_model_saw(tiny_recording: Path, tmp_path: Path) -> None:
    svg = _checkpoint(tmp_path / "svg.pt", tiny_recording, train=2, val=1)
    with pytest.raises(UserError, match=r"'svg' trained on episodes 1 of the test split") as e:
        evaluate(_cfg(tiny_recording, tmp_path / "e1", {"svg": svg}, train_episodes=1, val_episodes=0))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"'svg' validated on episodes 2 of the test split"):
        evaluate(_cfg(tiny_recording, tmp_path / "e2", {"svg": svg}, train_episodes=2, val_episodes=0))
    with pytest.raises(UserError, match="trained on episodes 1 of the val split"):
        evaluate(_cfg(tiny_recording, tmp_path / "e3", {"svg": svg}, split="val", train_episodes=1, val_episodes=2))
    assert not (tmp_path / "e1").exists()  # refused before writing anything
    # a copy of the recording elsewhere is recognised by content (shard hashes), not by path
    with pytest.raises(UserError, match="trained on episodes"):
        copy = tmp_path / "copy"
        copy.mkdir()
        for f in tiny_recording.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        evaluate(_cfg(copy, tmp_path / "e4", {"svg": svg}, train_episodes=1, val_episodes=0))


def test_evaluate_scores_unseen_split_with_provenance(tiny_recording: Path, tmp_path: Path) -> None:
    svg = _checkpoint(tmp_path / "svg.pt", tiny_recording, train=2)  # no val episodes: counts as 0
    noe = _checkpoint(tmp_path / "noe.pt", tiny_recording, train=2, val=1, noether=True)
    out = tmp_path / "ev"
    res = evaluate(_cfg(tiny_recording, out, {"svg": svg, "noether": noe}, split="val", reference="noether"))
    # the split comes from the checkpoints: train 2 (both), val 1 (the largest)
    assert res["split"]["name"] == "val" and res["split"]["episodes"] == [2]
    assert res["split"]["source"] == "checkpoints"
    assert set(res["models"]) == {"svg", "noether", COPY_LAST}
    m = res["models"]["noether"]
    assert {"mse", "psnr", "ssim", "angle_error", "rod_missing"} <= set(m["metrics"])
    assert len(m["metrics"]["angle_error"]["mean_per_step"]) == N_FUTURE
    assert set(m["subsets"]) == {"all", "swinging", "upright"}
    assert res["windows"]["subsets"]["swinging"] + res["windows"]["subsets"]["upright"] == res["n_windows"]
    assert m["tailoring"]["windows"] == res["n_windows"] and m["tailoring"]["fallbacks"] == 0
    assert "inner_loss_before" in m["tailoring"] and "inner_loss_after" in m["tailoring"]
    prov = res["checkpoints"]["noether"]
    assert len(prov["sha256"]) == 64 and prov["training_split"]["val_episodes"] == 1
    assert prov["inner"]["effective_lr"] == pytest.approx(0.5) and prov["inner"]["step_rule"] == "normalized"
    assert res["checkpoints"]["svg"]["training_split"]["val_episodes"] == 0
    assert {r["control"] for r in res["verdict"]} == {"svg", COPY_LAST}
    assert set(res["paired"]["noether"]["svg"]["all"]) >= {"mse", "ssim", "angle_error"}

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    on_disk = json.loads((out / "results.json").read_text(), parse_constant=refuse)
    # one scored episode: every standard error is undefined -> null, with the reason recorded
    assert on_disk["models"]["svg"]["metrics"]["mse"]["se"] is None
    assert "models.svg.metrics.mse.se" in on_disk["non_finite"]
    assert (out / "mse.png").is_file() and (out / "angle_error.png").is_file()
    # test split: episode 3 only
    res = evaluate(_cfg(tiny_recording, tmp_path / "ev_test", {"svg": svg, "noether": noe}))
    assert res["split"]["episodes"] == [3]


def test_score_predictors_floor_subsets_and_tailoring(tiny_recording: Path) -> None:
    episodes = [0, 1, 2, 3]
    data, idx = eval_windows(str(tiny_recording), episodes, N_PAST, N_FUTURE, 2, 100, 0, torch.device("cpu"))
    calls = []

    class Out(SimpleNamespace):
        pass

    def tailored(frames: torch.Tensor, actions: torch.Tensor) -> Out:
        b = frames.shape[0]
        calls.append(b)
        ok = torch.ones(b, dtype=torch.bool)
        ok[0] = False  # one fallback per batch
        res = TailorResult(adapted={}, inner_losses=torch.full((1, b), 2.0), final_losses=torch.full((b,), 1.0), ok=ok)
        return Out(pred=frames[:, N_PAST:], initial=frames[:, N_PAST:] * 0.5, result=res, inner_lr=0.3,
                   step_rule="normalized lr=0.3 x1")

    s = score_predictors({"oracle": tailored}, data, idx, N_PAST, batch_size=5, progress=False, untailored=True)
    sc = s.scores
    assert set(sc.metrics) == {"oracle", "oracle (untailored)", COPY_LAST}
    n = len(idx)
    assert sc.episode.tolist() == data.episode_of(idx).tolist() and sc.metrics["oracle"]["mse"].shape == (n, N_FUTURE)
    assert (sc.metrics["oracle"]["mse"] == 0).all()
    # the oracle's angle error is the decoder's own error on ground-truth frames: small
    assert sc.metrics["oracle"]["angle_error"].max() < 3.0
    assert s.angle_decoder["max_deg"] == pytest.approx(sc.metrics["oracle"]["angle_error"].max().item(), abs=1e-4)
    # floor: the last context frame repeated
    frames, _ = data.batch(idx)
    last = frames[:, N_PAST - 1 : N_PAST].expand(-1, N_FUTURE, -1, -1, -1)
    ref = per_step_metrics(last, frames[:, N_PAST:])["mse"].double()
    torch.testing.assert_close(sc.metrics[COPY_LAST]["mse"], ref)
    # upright: |theta| < 0.3 at every frame of the window, from the recorded states
    theta = data.states(idx)[..., 0]
    torch.testing.assert_close(sc.masks["upright"], (theta.abs() < UPRIGHT_RAD).all(1))
    torch.testing.assert_close(sc.masks["swinging"], ~sc.masks["upright"])
    t = s.tailoring["oracle"]
    assert t["windows"] == n and t["fallbacks"] == len(calls) and t["inner_lr"] == 0.3
    assert t["inner_loss_before"] == 2.0 and t["inner_loss_after"] == 1.0 and t["improved_fraction"] == 1.0
    assert math.isclose(t["fallback_fraction"], len(calls) / n)
    assert load_manifest(tiny_recording)["env_id"] == "noether_rl/PixelPendulum-v0"


def test_cli_evaluate_refuses_in_one_line(tiny_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from noether_rl.cli.main import main

    svg = _checkpoint(tmp_path / "svg.pt", tiny_recording, train=2)
    common = ["evaluate", "--data", str(tiny_recording), "--n-past", str(N_PAST), "--n-future", str(N_FUTURE),
              "--device", "cpu", "--no-video", "--stride", "4", "--out"]
    assert main([*common, str(tmp_path / "a"), "--train-episodes", "1", f"svg={svg}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on episodes 1 of the test split" in err[0]
    assert main([*common, str(tmp_path / "b"), "--split", "val", f"svg={svg}"]) == 2  # no val episodes
    assert "no val episodes" in capsys.readouterr().err
    assert main([*common, str(tmp_path / "c"), "--split", "val", "--val-episodes", "1", f"svg={svg}"]) == 0
    out = capsys.readouterr().out
    assert "svg: mse" in out and "copy last frame: mse" in out and "val split" in out
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["split"]["episodes"] == [2] and (tmp_path / "c" / "window_scores.pt").is_file()
