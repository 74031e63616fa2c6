"""plan / dream-train CLIs end to end with tiny checkpoints trained here (SVG and Noether)."""

from __future__ import annotations

import json
import tempfile

import pytest

from noether_rl.cli.main import main

COMMON = ["--n-past", "3", "--n-future", "4", "--train-episodes", "2", "--device", "cpu"]
SMALL = ["--width", "8", "--g-dim", "8", "--rnn-size", "16", "--rnn-layers", "1", "--norm", "layer", "--batch-size",
         "4", "--stride", "4", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tiny_recording, tmp_path_factory):
    root = tmp_path_factory.mktemp("agents_cli")
    data = ["--data", str(tiny_recording)]
    assert main(["train", *data, *COMMON, *SMALL, "--out", str(root / "svg"), "--epochs", "1"]) == 0
    assert main(["meta-train", *data, *COMMON, *SMALL, "--out", str(root / "noe"), "--epochs", "1", "--init-from",
                 str(root / "svg" / "last.pt"), "--emb-dim", "8"]) == 0
    return root / "svg" / "last.pt", root / "noe" / "last.pt"


TINY_PLAN = ["--episodes", "2", "--max-steps", "4", "--horizon", "3", "--population", "8", "--iterations", "1",
             "--device", "cpu", "--reward-epochs", "1"]


@pytest.mark.parametrize("planner,model", [("cem", 1), ("mppi", 0), ("icem", 1)])
def test_plan_writes_results_and_video(checkpoints, tmp_path, capsys, planner, model):
    out = tmp_path / "plan"
    assert main(["plan", "--checkpoint", str(checkpoints[model]), "--planner", planner, "--out", str(out),
                 *TINY_PLAN]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["returns"]["n"] == 2 and res["returns"]["mean"] < 0 and res["control_rate_hz"] > 0
    assert res["world_model"]["can_tailor"] == bool(model)
    assert (out / "episode0.mp4").is_file() and (out / "reward.pt").is_file()
    assert "control rate" in capsys.readouterr().out
    # rerun reuses the fitted reward model; --no-tailor works on a Noether checkpoint
    assert main(["plan", "--checkpoint", str(checkpoints[model]), "--planner", planner, "--out", str(out),
                 "--no-tailor", "--no-video", *TINY_PLAN]) == 0
    assert json.loads((out / "results.json").read_text())["world_model"]["reward"]["reused"]


def test_wrong_checkpoint_kind_is_one_line_exit_2(checkpoints, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["plan", "--checkpoint", str(checkpoints[0]), "--out", str(out), *TINY_PLAN]) == 0
    capsys.readouterr()
    for bad in (out / "reward.pt", out / "results.json", tmp_path / "missing.pt"):
        assert main(["plan", "--checkpoint", str(bad), "--out", str(tmp_path / "q"), *TINY_PLAN]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("noether-rl plan: error:"), err
    # a wrong-size env for the checkpoint's frames
    assert main(["plan", "--checkpoint", str(checkpoints[0]), "--env", "Pendulum-v1", "--out", str(tmp_path / "r"),
                 *TINY_PLAN]) == 2
    assert "observations of shape" in capsys.readouterr().err
    assert main(["dream-train", "--checkpoint", str(out / "reward.pt"), "--out", str(tmp_path / "s"),
                 "--device", "cpu"]) == 2


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_dream_train_tiny_budget(checkpoints, tmp_path, algo, monkeypatch):
    out = tmp_path / "dream"
    tmp = tmp_path / "tmpdir"  # SB3's default logger would make an empty SB3-<date> folder here
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    args = ["dream-train", "--checkpoint", str(checkpoints[1]), "--algo", algo, "--steps", "32", "--n-envs", "2",
            "--max-episode-steps", "8", "--eval-episodes", "2", "--out", str(out), "--device", "cpu",
            "--reward", "pendulum-pixels"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["returns"]["n"] == 2 and (out / "agent.zip").is_file() and not res["reused_agent"]
    assert list(tmp.iterdir()) == []  # nothing written outside --out
    assert (out / "sb3" / "progress.csv").is_file() and res["sb3_log"] == str(out / "sb3" / "progress.csv")
    assert main(args) == 0  # rerun reuses the trained agent
    assert json.loads((out / "results.json").read_text())["reused_agent"]
    if algo == "ppo":  # a different budget (or world model) trains a new agent instead of reusing the old one
        assert main([*args[:6], "48", *args[7:]]) == 0
        assert not json.loads((out / "results.json").read_text())["reused_agent"]


def test_reward_flags_that_would_be_ignored_are_one_line_exit_2(checkpoints, tmp_path, capsys):
    saved = tmp_path / "p"
    assert main(["plan", "--checkpoint", str(checkpoints[0]), "--out", str(saved), *TINY_PLAN, "--no-video"]) == 0
    capsys.readouterr()
    model = ["--reward-model", str(saved / "reward.pt")]
    base = ["plan", "--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "q"), "--episodes", "1",
            "--max-steps", "2", "--horizon", "2", "--population", "4", "--iterations", "1", "--device", "cpu"]
    for extra, says in ((model + ["--reward-epochs", "3"], "--reward-epochs"),
                        (model + ["--reward-data", str(tmp_path)], "--reward-data"),
                        (["--reward", "pendulum-pixels", "--reward-epochs", "3"], "--reward learned"),
                        (["--reward", "pendulum-pixels", *model], "--reward-model")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "q").exists()
    assert main([*base, *model, "--no-video"]) == 0  # the saved model alone is fine
