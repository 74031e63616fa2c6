"""reproduce pendulum-control end to end at toy scale (plumbing only; the figures need the real scale)."""

from __future__ import annotations

import json

from noether_rl.experiments.pendulum_control import (
    PendulumControlConfig,
    _angle_summary,
    below_floor_warnings,
    run_pendulum_control,
)

TOY = {"width": 8, "g_dim": 8, "rnn_size": 16, "episodes": 6, "train_episodes": 3, "val_episodes": 1, "steps": 56,
       "n_future": 3, "stride": 8, "svg_epochs": 1, "noether_epochs": 1, "reward_epochs": 1, "eval_windows": 4,
       "fidelity_starts": (0,), "eval_episodes": 2, "eval_steps": 6, "horizon": 3, "population": 8, "iterations": 1,
       "replan_every": 1, "dream_steps": 16, "dream_envs": 2, "free_running_epochs": 1, "aggregate_rounds": 2,
       "aggregate_episodes": 1, "aggregate_epochs": 1, "aggregate_replan_every": 2, "planner": "icem"}


def test_pendulum_control_toy(tmp_path):
    cfg = PendulumControlConfig(out=str(tmp_path / "pc"), device="cpu", progress=False, overrides=TOY)
    res = run_pendulum_control(cfg)
    rows = res["returns"]
    assert set(rows) == {"random", "scripted swing-up", "MPC untailored", "MPC tailored", "PPO in the model"}
    assert all(r["n"] == 2 for r in rows.values())
    assert set(res["fidelity"]["tailored_minus_untailored"]) == {"h10", "h25", "h50"}
    assert "MPC tailored - MPC untailored" in res["paired"]
    # the world model's held-out angle error per step, next to the copy-last floor, is reported
    at = res["heldout"]["angle_error_deg_at_steps"]
    assert {"SVG", "SVG (free-running fine-tune)", "Noether", "copy last frame"} <= set(at) and at["copy last frame"]["step 1"] is not None
    assert sorted(res["warnings"]) == sorted(below_floor_warnings(_angle_summary(json.loads(
        (tmp_path / "pc" / "heldout" / "results.json").read_text()))))
    assert res["stage"] == "complete" and res["cpu_time_s"]["train_svg"] > 0
    assert res["cpu_time_s"]["train_svg_free_running"] > 0
    # data aggregation: one MPC episode per round joins the training episodes; g_phi starts from the last round
    assert [r["round"] for r in res["aggregate"]["rounds"]] == [0, 1] and "SVG (aggregated)" in at
    agg = tmp_path / "pc" / "aggregate"
    assert sorted(p.name for p in (agg / "mpc_data").glob("*.npz")) == ["episode_00000.npz", "episode_00001.npz"]
    assert json.loads((agg / "round1" / "data" / "manifest.json").read_text())["episodes"] == 6 + 2
    # the collecting MPC replans at its own interval, not the evaluation rows' (replan_every)
    assert json.loads((agg / "round0" / "collect.json").read_text())["config"]["replan_every"] == 2
    # ... and with its own optimiser (Scale.aggregate_planner: CEM, so earlier rounds stay valid), not the rows'
    assert json.loads((agg / "round0" / "collect.json").read_text())["config"]["planner"] == "cem"
    for row in ("mpc_untailored", "mpc_tailored"):
        assert json.loads((tmp_path / "pc" / row / "results.json").read_text())["config"]["planner"] == "icem"
    assert json.loads((tmp_path / "pc" / "results.json").read_text())["experiment"] == "pendulum-control"
    again = run_pendulum_control(cfg)  # rerun: everything cached, same figures
    assert again["returns"] == res["returns"]
    # a changed recipe (here the aggregation fine-tune) is refused up front with one line, before any stage
    # reruns (training runs resume by data and model, not epochs, so the stages would otherwise mix recipes)
    import pytest

    from noether_rl.errors import UserError

    def round1_predictor() -> str:
        return json.loads((agg / "round1" / "collect.json").read_text())["config"]["predictor_sha256"]

    before = round1_predictor()
    more = PendulumControlConfig(out=cfg.out, device="cpu", progress=False, overrides={**TOY, "aggregate_epochs": 2})
    with pytest.raises(UserError, match="another recipe.*aggregate_epochs 1 there vs 2 now"):
        run_pendulum_control(more)
    assert round1_predictor() == before


def test_cached_rows_are_not_reused_after_the_checkpoint_changes(tmp_path):
    from noether_rl.experiments.pendulum_control import _cached, _stamped

    ckpt, path = tmp_path / "last.pt", tmp_path / "row" / "results.json"
    ckpt.write_bytes(b"model 1")
    path.parent.mkdir()
    _stamped(path, {"config": {"a": 1}, "returns": [1.0]}, ckpt)
    assert _cached(path, {"a": 1}, ckpt)["returns"] == [1.0]
    assert _cached(path, {"a": 2}, ckpt) is None
    ckpt.write_bytes(b"model 2")  # retrained at the same path
    assert _cached(path, {"a": 1}, ckpt) is None


def test_a_directory_made_with_another_recipe_is_refused_before_any_work(tmp_path):
    import pytest

    from noether_rl.errors import UserError
    from noether_rl.experiments.pendulum_control import SCALES

    out = tmp_path / "pc"
    out.mkdir()
    old = {"config": {"scale_spec": {"free_running_epochs": SCALES["small-long"].free_running_epochs,
                                     "aggregate_rounds": 3, "size": 32}}}
    (out / "results.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="another recipe.*free_running_epochs 80 there vs 60 now"):
        run_pendulum_control(PendulumControlConfig(out=str(out), device="cpu", progress=False))
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # nothing recorded or trained
    # the same recipe (keys the old file lacks are ignored) passes the check
    from noether_rl.experiments.pendulum_control import _check_recipe

    _check_recipe(out, SCALES["small-long"])
    # fields only the evaluation MPC rows read (cached per PlanConfig) do not block a rerun: e.g. a default run
    # made while its rows used CEM reruns them with iCEM, the trained stages reused
    from dataclasses import asdict

    old = {"config": {"scale_spec": {**asdict(SCALES["small"]), "planner": "cem", "replan_every": 1}}}
    (out / "results.json").write_text(json.dumps(old))
    _check_recipe(out, SCALES["small"])
    old["config"]["scale_spec"]["aggregate_planner"] = "mppi"  # the collecting MPC's planner still does
    (out / "results.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="aggregate_planner mppi there vs cem now"):
        _check_recipe(out, SCALES["small"])


def test_below_floor_warnings_names_models_not_below_copy_last():
    angles = {"copy last frame": {"mean_per_step": [8.2, 40.4]}, "SVG": {"mean_per_step": [8.4, 46.4]},
              "Noether": {"mean_per_step": [1.8, 4.0]}, "tie": {"mean_per_step": [8.2, 1.0]},
              "missing": {"mean_per_step": None}}
    w = below_floor_warnings(angles)
    assert len(w) == 2 and w[0].startswith("SVG: step-1 test angle error 8.4") and w[1].startswith("tie:")
    assert below_floor_warnings({"SVG": {"mean_per_step": [9.0]}}) == []  # no floor measured: nothing to say
