"""State-space domain: data generators, trajectory format, real-pendulum loader, MLP/HNN predictors,
per-example weight tailoring, oracle loss, and a tiny end-to-end run of the experiment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from noether_rl.data.real_pendulum import load_real_pendulum, time_split, write_real_pendulum_format
from noether_rl.data.systems import GenerateConfig, generate, get_system, pendulum, spring
from noether_rl.data.trajectories import Trajectories, load_trajectories, save_trajectories
from noether_rl.errors import UserError
from noether_rl.models.statespace import (
    HNN,
    EnergyForm,
    FormulaEmbedding,
    MLPConfig,
    PredictorConfig,
    StateSpacePredictor,
    VectorFieldMLP,
    conservation_loss,
    integrate_step,
)
from noether_rl.noether.predictor import Predictor
from noether_rl.tailoring import TailorConfig, tailor

REAL_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_pend_h_1.txt"


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("system", [spring(), spring("paper"), spring(k=3.0, m=0.7), pendulum(),
                                    pendulum(m=1.3, l=0.4, g=9.81)])
def test_generators_conserve_H_on_clean_data(system):
    tr = generate(system, GenerateConfig(n_trajectories=3, seed=1))
    H = system.hamiltonian(tr.x_clean)  # [N, T]
    assert np.abs(H - H[:, :1]).max() <= 1e-8 * np.abs(H).max()
    # the noisy observations do not conserve it (the check can fail)
    Hn = system.hamiltonian(tr.x)
    assert np.abs(Hn - Hn[:, :1]).max() > 1e-3
    np.testing.assert_allclose(tr.dxdt, system.vector_field(tr.x_clean))
    assert tr.x.shape == (3, system.n_points, 2)


def test_generator_is_deterministic_and_follows_hnn_protocol():
    a = generate(get_system("pendulum"), GenerateConfig(n_trajectories=4, seed=3))
    b = generate(get_system("pendulum"), GenerateConfig(n_trajectories=4, seed=3))
    np.testing.assert_array_equal(a.x, b.x)
    r = np.linalg.norm(a.x_clean[:, 0], axis=1)
    assert a.x.shape == (4, 45, 2) and ((r >= 1.3) & (r <= 2.3)).all()
    np.testing.assert_allclose(a.t[0], np.linspace(0, 3, 45))
    # HNN's code: H = 3 (1 - cos q) + p^2
    x = np.array([0.7, -0.4])
    assert get_system("pendulum").hamiltonian(x) == pytest.approx(3 * (1 - np.cos(0.7)) + 0.16)
    assert get_system("spring").hamiltonian(x) == pytest.approx(0.49 + 0.16)
    assert spring("paper").hamiltonian(x) == pytest.approx(0.5 * (0.49 + 0.16))


def test_unknown_system_is_a_user_error():
    with pytest.raises(UserError):
        get_system("double-pendulum")
    with pytest.raises(UserError):
        spring("nonsense")


def test_npz_round_trip(tmp_path):
    tr = generate(get_system("spring"), GenerateConfig(n_trajectories=2, seed=0))
    save_trajectories(tmp_path / "d.npz", tr)
    back = load_trajectories(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.x, tr.x)
    np.testing.assert_array_equal(back.x_clean, tr.x_clean)
    np.testing.assert_array_equal(back.dxdt, tr.dxdt)
    np.testing.assert_array_equal(back.t, tr.t)
    assert back.names == ("q", "p") and back.units == "q=L, p=M*L/T" and back.system == "spring"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_npz_with_dt_and_without_optional_fields(tmp_path):
    np.savez(tmp_path / "u.npz", x=np.zeros((2, 5, 3)), dt=0.5)
    tr = load_trajectories(tmp_path / "u.npz")
    np.testing.assert_allclose(tr.t[1], [0, 0.5, 1.0, 1.5, 2.0])
    assert tr.names == ("x0", "x1", "x2") and tr.x_clean is None
    xs, ys = tr.targets()  # finite differences when no dxdt is stored
    assert xs.shape == (8, 3) and ys.shape == (8, 3)


@pytest.mark.parametrize("arrays, msg", [
    ({"x": np.zeros((5, 2)), "dt": 0.1}, "shape"),
    ({"x": np.zeros((2, 5, 2))}, "'t'"),
    ({"x": np.full((2, 5, 2), np.nan), "dt": 0.1}, "finite"),
    ({"x": np.zeros((2, 5, 2)), "t": np.zeros(4)}, "t must have shape"),
    ({"x": np.zeros((2, 5, 2)), "t": np.array([0, 1, 1, 2, 3.0])}, "increasing"),
    ({"x": np.zeros((2, 5, 2)), "dt": -1.0}, "dt"),
    ({"x": np.zeros((2, 5, 2)), "dt": 0.1, "x_clean": np.zeros((2, 4, 2))}, "x_clean"),
    ({"x": np.zeros((2, 5, 2)), "dt": 0.1, "dxdt": np.full((2, 5, 2), np.inf)}, "dxdt"),
    ({"x": np.zeros((2, 5, 2)), "dt": 0.1, "names": np.array(["q"])}, "names"),
])
def test_bad_npz_is_one_user_error(tmp_path, arrays, msg):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=msg) as e:
        load_trajectories(tmp_path / "bad.npz")
    assert "\n" not in str(e.value)


def test_object_arrays_are_refused_in_one_line_that_says_what_to_fix(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.zeros((2, 5, 2)), dt=0.1, names=np.array(["q", "p"], dtype=object))
    with pytest.raises(UserError, match=r"'names' holds Python objects .*dtype=str") as e:
        load_trajectories(tmp_path / "obj.npz")
    assert "allow_pickle" not in str(e.value) and "\n" not in str(e.value)


def test_not_an_npz_is_a_user_error(tmp_path):
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(UserError):
        load_trajectories(tmp_path / "junk.npz")
    with pytest.raises(UserError):
        load_trajectories(tmp_path / "missing.npz")


def _damped_pendulum_file(path: Path, n: int = 120, c: float = 2.4, b: float = 0.02) -> None:
    """A synthetic damped pendulum (dq/dt = v, dv/dt = -(c/2) sin q - b v) in the measurement format."""
    from scipy.integrate import solve_ivp

    t = 5.0 + np.arange(n) / 6.0
    t = np.delete(t, [30, 61])  # a couple of gaps, like the real file
    sol = solve_ivp(lambda _t, y: [y[1], -0.5 * c * np.sin(y[0]) - b * y[1]], (t[0], t[-1]), [1.2, 0.0],
                    t_eval=t, rtol=1e-10, atol=1e-12)
    write_real_pendulum_format(path, t, sol.y[0], sol.y[1])


def test_real_pendulum_loader_on_synthetic_file(tmp_path):
    from noether_rl.experiments.statespace import fit_energy_form

    f = tmp_path / "pend.txt"
    _damped_pendulum_file(f)
    tr = load_real_pendulum(f)
    assert tr.x.shape == (1, 118, 2) and tr.names == ("q", "p")
    assert tr.nominal_dt() == pytest.approx(1 / 6)
    train, test = time_split(tr)
    assert train.x.shape[1] == int(118 * 0.8) and train.x.shape[1] + test.x.shape[1] == 118
    xs, ys = train.targets()  # finite differences skip the gaps
    assert xs.shape[0] == train.x.shape[1] - 1 - 2
    # the energy form p^2 - c cos q: c recovered from the (damped) training points
    assert fit_energy_form(train) == pytest.approx(2.4, rel=0.05)


@pytest.mark.parametrize("content, msg", [
    ("", "empty"),
    ("%o v\n", "no data rows"),
    ("%o v\n0 5.0 1.0\n", "4 columns"),
    ("%o v\n0 5.0 1.0 abc\n", "not a number"),
    ("%o v\n0 5.0 1.0 nan\n0 5.2 1.0 0.1\n", "non-finite"),
    ("%o v\n0 5.0 1.0 0.0\n0 4.9 1.0 0.1\n", "strictly increasing"),
    ("%o v\n0.5 5.0 1.0 0.0\n0.5 5.2 1.0 0.1\n", "integers"),
])
def test_malformed_real_file_is_one_user_error(tmp_path, content, msg):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(UserError, match=msg) as e:
        load_real_pendulum(f)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not REAL_FILE.exists(), reason="../shared/data/real_pend_h_1.txt not available")
def test_real_file_loads():
    tr = load_real_pendulum(REAL_FILE)
    assert tr.x.shape == (1, 556, 2)
    train, test = time_split(tr)
    assert train.x.shape[1] == 444 and test.x.shape[1] == 112


# ----------------------------------------------------------------------------- models


def test_predictor_protocol_and_identity_adaptables():
    torch.manual_seed(0)
    p = StateSpacePredictor(VectorFieldMLP(MLPConfig(hidden=8)), PredictorConfig(dt=0.1, integrator="rk4"))
    assert isinstance(p, Predictor) and not p.stochastic
    ctx = torch.randn(3, 2, 2)
    acts = torch.zeros(3, 2 + 4 - 1, 0)
    r0 = p.rollout(ctx, acts, 4).pred
    assert r0.shape == (3, 4, 2)
    for kind in ("weights", "readout"):
        r1 = p.rollout(ctx, acts, 4, adapt=p.adaptables(3, 4, kind=kind)).pred
        torch.testing.assert_close(r1, r0)
    with pytest.raises(UserError):
        p.adaptables(3, 4, kind="lstm")


def test_hnn_conserves_its_own_energy():
    torch.manual_seed(0)
    h = HNN(MLPConfig(hidden=16)).double()
    x0 = torch.randn(4, 2, dtype=torch.float64)
    p = StateSpacePredictor(h, PredictorConfig(dt=0.01, integrator="rk4"))
    with torch.no_grad():
        traj = p.rollout(x0[:, None], x0.new_zeros(4, 200, 0), 200).pred
        E = h.energy(traj)
        E0 = h.energy(x0)
    drift = (E - E0[:, None]).abs().max()
    assert drift < 1e-7
    # a non-Hamiltonian field (the plain gradient instead of the symplectic one) does not conserve it
    with torch.no_grad():
        x = x0.clone()
        for _ in range(50):
            x = integrate_step(lambda z: torch.flip(h(z), [-1]) * torch.tensor([-1.0, 1.0], dtype=z.dtype), x,
                               0.01, "rk4")
    assert (h.energy(x) - E0).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["weights", "readout"])
def test_per_example_weight_tailoring_is_independent_of_the_batch(kind):
    torch.manual_seed(0)
    sysm = get_system("pendulum")
    p = StateSpacePredictor(VectorFieldMLP(MLPConfig(hidden=8)).double(), PredictorConfig(dt=0.1))
    g = FormulaEmbedding(sysm.hamiltonian)
    x = torch.randn(4, 2, dtype=torch.float64)
    cfg = TailorConfig(steps=1, lr=0.3, order="first")

    def run(xb: torch.Tensor) -> dict[str, torch.Tensor]:
        ad = p.adaptables(xb.shape[0], 1, kind=kind)

        def loss(a):
            nxt = p.rollout(xb[:, None], xb.new_zeros(xb.shape[0], 1, 0), 1, adapt=a).pred[:, 0]
            return conservation_loss(g, xb, nxt)

        return tailor(loss, ad, cfg).adapted

    together = run(x)
    for i in range(4):
        alone = run(x[i : i + 1])
        for k in together:
            torch.testing.assert_close(together[k][i], alone[k][0])
    # the examples really moved, and differently
    base = p.adaptables(4, 1, kind=kind)
    k = next(iter(together))
    assert (together[k] - base[k]).abs().amax() > 1e-6
    assert not torch.allclose(together[k][0] - base[k][0], together[k][1] - base[k][1])


def test_oracle_loss_is_zero_on_the_true_flow():
    for sysm in (get_system("spring"), get_system("pendulum")):
        tr = generate(sysm, GenerateConfig(n_trajectories=2, seed=0))
        g = FormulaEmbedding(sysm.hamiltonian)
        xc = torch.tensor(tr.x_clean)
        true_loss = conservation_loss(g, xc[:, :-1].reshape(-1, 2), xc[:, 1:].reshape(-1, 2))
        assert true_loss.max() < 1e-14
        xn = torch.tensor(tr.x)
        noisy_loss = conservation_loss(g, xn[:, :-1].reshape(-1, 2), xn[:, 1:].reshape(-1, 2))
        assert noisy_loss.mean() > 1e-4
    e = EnergyForm(2.0)
    x = torch.tensor([[0.3, 0.5]])
    assert float(e(x)) == pytest.approx(0.25 - 2.0 * np.cos(0.3))


# ----------------------------------------------------------------------------- experiment


def _tiny_cfg(out: Path, **kw):
    from noether_rl.experiments.statespace import StatespaceConfig

    base = dict(out=str(out), systems=("spring",), seeds=(0,), n_trajectories=6, train_trajectories=3,
                baseline_steps=20, meta_epochs=1, meta_batch=64, hidden=16, lr_exponents=(-1.0, 0.0),
                integrators=("euler",), progress=False, compare_step_rules_on="none", workers=1)
    base.update(kw)
    return StatespaceConfig(**base)


def test_tiny_experiment_runs_and_resumes(tmp_path):
    from noether_rl.experiments.statespace import format_summary, run_statespace

    res = run_statespace(_tiny_cfg(tmp_path / "o", step_rules=(("euler", "auto"),)))
    blk = res["systems"]["spring"]
    models = blk["results"]["euler"]["models"]
    assert {"MLP", "HNN", "Noether (law)", "Noether (learned g_phi)"} <= set(models)
    assert models["MLP"]["rmse"]["n"] == 3
    assert "Noether (law) - MLP" in blk["results"]["euler"]["paired_vs_mlp"]
    sel = blk["selection_per_seed"][0]["euler"]
    assert sel["Noether (law)"]["inner_lr"] in (0.1, 1.0)
    assert set(sel["law_sweep"]["train_rollout_rmse"]) == {"sgd", "normalized", "polyak"}
    assert (tmp_path / "o" / "spring_phase_euler.png").exists()
    assert "spring" in format_summary(res)
    mtime = (tmp_path / "o" / "spring" / "seed0" / "result.json").stat().st_mtime
    res2 = run_statespace(_tiny_cfg(tmp_path / "o", step_rules=(("euler", "auto"),)))  # resumes: nothing recomputed
    assert (tmp_path / "o" / "spring" / "seed0" / "result.json").stat().st_mtime == mtime
    assert json.dumps(res2["systems"]["spring"]["results"], sort_keys=True) == json.dumps(blk["results"], sort_keys=True)


def test_tiny_experiment_on_synthetic_real_file(tmp_path):
    from noether_rl.experiments.statespace import format_summary, run_statespace

    f = tmp_path / "pend.txt"
    _damped_pendulum_file(f, n=90)
    res = run_statespace(_tiny_cfg(tmp_path / "o", systems=("real",), data=str(f), learned_g=False, seeds=(0, 1),
                                   integrators=("rk4",), step_rules=(("rk4", "polyak"),), real_window=6,
                                   workers=2))  # the two seeds in two worker processes
    blk = res["systems"]["real"]
    assert "cos(q)" in blk["info"]["conservation_law"]
    assert blk["info"]["outer_loss"] == "next_state"  # forward-difference targets -> Alg. 1's next-state task loss
    acc = blk["acceptance"]["rk4"]
    assert acc["mlp_over_noether_mse"] == pytest.approx(acc["mlp_over_noether"] ** 2)
    whole = blk["results"]["rk4"]
    assert whole["models"]["MLP"]["rmse"]["n"] == 1  # one test segment shared by both seeds
    win = blk["results_test_windows"]["rk4"]
    n_win = blk["info"]["test_windows"]["n"]
    assert n_win == (90 - int(90 * 0.8)) // 6 and win["models"]["MLP"]["rmse"]["n"] == n_win
    assert {"MLP", "HNN", "Noether (law)", "MLP (more steps)"} <= set(win["models"])
    for key, ref in (("paired_vs_mlp", "MLP"), ("paired_vs_hnn", "HNN"), ("paired_vs_more_steps", "MLP (more steps)")):
        d = win[key][f"Noether (law) - {ref}"]
        assert d["n_units"] == n_win and d["se_pooled"] is not None
    assert "windows_noether_minus_HNN" in acc
    assert set(blk["cpu_seconds_per_stage_total"]) >= {"train_MLP", "select_rk4", "mlp_more_steps_rk4", "evaluate"}
    assert "test windows" in format_summary(res)


def test_next_state_outer_loss():
    """Euler: the next-state loss is the derivative loss; RK4: it is zero for a field whose RK4 step makes the
    data (the derivative loss is not: it asks for the secant field)."""
    from noether_rl.experiments.statespace import FieldObjective
    from noether_rl.models.statespace import integrate_step

    torch.manual_seed(0)
    f = VectorFieldMLP(MLPConfig(dim=2, hidden=8)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    y = torch.randn(5, 2, dtype=torch.float64)
    deriv = FieldObjective(f)((x, y)).loss
    assert torch.allclose(FieldObjective(f, next_state=(0.1, "euler"))((x, y)).loss, deriv, atol=1e-10)
    with torch.no_grad():
        y_rk4 = (integrate_step(f, x, 0.3, "rk4") - x) / 0.3  # forward differences of RK4 data
    with torch.no_grad():
        assert float(FieldObjective(f, next_state=(0.3, "rk4"))((x, y_rk4)).loss.max()) < 1e-20
        assert float(FieldObjective(f)((x, y_rk4)).loss.max()) > 1e-6


def test_aggregate_shared_units_average_over_seeds():
    from noether_rl.experiments.statespace import aggregate

    def seed(mlp, noe):
        z = [0.0] * len(mlp)
        return {"per_trajectory": {"euler": {
            "MLP": {"rmse": mlp, "energy_drift": z, "energy_error": z},
            "HNN": {"rmse": mlp, "energy_drift": z, "energy_error": z},
            "Noether (law)": {"rmse": noe, "energy_drift": z, "energy_error": z}}}}

    per_seed = [seed([1.0, 2.0, 3.0], [0.5, 1.0, 1.0]), seed([3.0, 2.0, 1.0], [0.5, 1.0, 2.0])]
    shared = aggregate(per_seed, ("euler",), shared_units=True)["euler"]
    pooled = aggregate(per_seed, ("euler",))["euler"]
    assert shared["models"]["MLP"]["rmse"]["n"] == 3 and pooled["models"]["MLP"]["rmse"]["n"] == 6
    d = shared["paired_vs_mlp"]["Noether (law) - MLP"]
    assert d["mean"] == pytest.approx(-1.0)  # units: (-1.5, -1, -0.5)
    assert d["se_pooled"] == pytest.approx(0.5 / np.sqrt(3))
    assert d["mse_ratio_of_means"] == pytest.approx(np.mean([0.25, 1, 2.25]) / np.mean([4, 4, 4]))
    assert shared["paired_vs_hnn"]["Noether (law) - HNN"]["mean"] == pytest.approx(-1.0)


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    from noether_rl.cli.main import main

    assert main(["reproduce", "statespace", "--system", "real", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("%o v\n0 1 2\n")
    assert main(["reproduce", "statespace", "--system", "real", "--data", str(bad), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "columns" in err
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "statespace", "--system", "moon", "--out", str(tmp_path / "o3")])
    assert e.value.code == 2
    assert not (tmp_path / "o2" / "results.json").exists()


def test_trajectories_reject_mismatched_fields():
    with pytest.raises(UserError):
        Trajectories(x=np.zeros((2, 5, 2)), t=np.zeros((2, 5)), names=("q", "p"))  # t not increasing


@pytest.mark.parametrize("rule", ["sgd", "polyak"])
def test_batched_lr_sweep_equals_one_lr_at_a_time(rule):
    """The lr sweep's batched rollout (K inner lrs stacked as examples) gives each lr the rollout it gets alone,
    a diverging lr included."""
    from noether_rl.experiments.statespace import _rollout_np, noether_step, rollout_metrics, sweep_lrs
    from noether_rl.noether import NoetherConfig, NoetherNetwork

    torch.manual_seed(0)
    traj = generate(pendulum(), GenerateConfig(n_trajectories=3, n_points=8, seed=1))
    field = VectorFieldMLP(MLPConfig(dim=2, hidden=8))
    pred = StateSpacePredictor(field, PredictorConfig(dt=traj.nominal_dt(), integrator="rk4"))
    net = NoetherNetwork(pred, FormulaEmbedding(pendulum().hamiltonian),
                         NoetherConfig(tailor=TailorConfig(steps=1, lr=1.0, step_rule=rule), adapt="readout")).eval()
    lrs = [1e-2, 1.0, 1e6]
    batched = sweep_lrs(net, traj, traj.nominal_dt(), lrs, pendulum().hamiltonian)
    for lr, b in zip(lrs, batched):
        p = _rollout_np(noether_step(net, lr), traj, traj.nominal_dt())
        alone = float(np.mean(rollout_metrics(p, traj.x_clean, pendulum().hamiltonian)["rmse"]))
        assert b == pytest.approx(alone, rel=1e-4) or (not np.isfinite(alone) and not np.isfinite(b))
    assert batched[0] != pytest.approx(batched[1], rel=1e-3)  # the lrs really differ per example
