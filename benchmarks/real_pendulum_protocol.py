"""Why the real-pendulum gap: targeted measurements on the models of a finished reproduction.

    noether-rl reproduce statespace --system real --data ../shared/data/real_pend_h_1.txt --out OUT
    python benchmarks/real_pendulum_protocol.py OUT --data ../shared/data/real_pend_h_1.txt [--seeds 0 1 2]

For each seed it loads OUT/real/seedS's trained MLP (forward-difference dx/dt targets, HNN's loss), HNN,
"Noether (law)" and "MLP (more steps)" (RK4 rows) and measures on the TEST segment (the selection in the
reproduction used training data only; nothing here selects anything):

1. integrator: RK4 at the data's dt vs RK4 with 4 sub-steps (is RK4 at dt = 1/6 s the continuous-time
   protocol of HNN's solve_ivp analysis?) and Euler;
2. horizon and metric: RMSE and MSE on the whole segment and on non-overlapping windows of 28 and 14 points;
3. training loss: an MLP trained from scratch with the RK4 next-state loss (HNN's ``--use_rk4`` option;
   2000 full-batch Adam steps like the baseline) and the same law's tailoring, zero-shot, on top of it.

Prints one table (RMSE mean over units and seeds; MSE ratio MLP / model on the whole segment) and writes
OUT/real_protocol.json. CPU seconds per seed are printed (``time.process_time``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from noether_rl.experiments import statespace as ss
from noether_rl.models.statespace import HNN, MLPConfig, PredictorConfig, StateSpacePredictor, VectorFieldMLP
from noether_rl.noether import NoetherConfig, NoetherNetwork
from noether_rl.tailoring import TailorConfig
from noether_rl.utils.io import atomic_write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="output directory of `reproduce statespace --system real`")
    p.add_argument("--data", required=True, help="the real-pendulum file the reproduction used")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = ss.StatespaceConfig(out=a.out, systems=("real",), data=a.data)
    rows: dict[str, dict[str, list[np.ndarray]]] = {}
    for seed in a.seeds:
        c0 = time.process_time()
        root = Path(a.out) / "real" / f"seed{seed}"
        sd = ss.load_system(cfg, "real", seed, root)
        res = json.loads((root / "result.json").read_text())
        rk = res["selection"]["rk4"]
        mc = MLPConfig(dim=2, hidden=cfg.hidden)

        def load(module: torch.nn.Module, name: str, root: Path = root) -> torch.nn.Module:
            if ss._load_model(root / name, module) is None:
                raise SystemExit(f"{root / name} is missing: run the reproduction first")
            return module.eval()

        def noether(field: torch.nn.Module, rule: str, lr: float, sd: ss.SystemData = sd) -> NoetherNetwork:
            pred = StateSpacePredictor(field, PredictorConfig(dt=sd.dt, integrator="rk4"))
            tc = TailorConfig(steps=1, lr=lr, step_rule=rule, order="second")
            return NoetherNetwork(pred, sd.law, NoetherConfig(tailor=tc, adapt=cfg.adapt, form="a"))

        law = rk["Noether (law)"]
        sfx = f"_{res['info']['outer_loss']}_sel{cfg.select_points}"
        mlp = load(VectorFieldMLP(mc), "mlp.pt")
        steps = {"MLP": ("rk4", mlp), "HNN": ("rk4", load(HNN(mc), "hnn.pt"))}
        net = noether(VectorFieldMLP(mc), law["step_rule"], law["inner_lr"])
        load(net, f"noether_law_rk4_{law['step_rule']}{sfx}.pt")
        steps["Noether (law)"] = ("step", ss.noether_step(net))
        more = noether(VectorFieldMLP(mc), "sgd", 0.0)
        if ss._load_model(root / f"mlp_more_rk4{sfx}.pt", more) is not None:
            steps["MLP (more steps)"] = ("rk4", more.predictor.field.eval())
        # an MLP trained from scratch with the RK4 next-state loss (HNN's --use_rk4), and the law on top of it
        xtr, ytr = sd.train.targets()
        torch.manual_seed(seed)
        m_rk4 = VectorFieldMLP(mc)
        ss.train_baseline(m_rk4, torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.float32),
                          cfg.baseline_steps, cfg.baseline_lr, cfg.weight_decay_real, next_state=(sd.dt, "rk4"))
        steps["MLP trained on RK4 next states"] = ("rk4", m_rk4.eval())
        steps["  + law zero-shot"] = ("step", ss.noether_step(noether(m_rk4, law["step_rule"], law["inner_lr"]).eval()))
        for name, (kind, f) in steps.items():
            for integ, sub in (("rk4", 1), ("rk4 x4 sub-steps", 4), ("euler", 1)):
                if kind == "step" and integ != "rk4":
                    continue  # a tailored step is one RK4 step of the data's dt
                step = f if kind == "step" else ss.field_step(f, sd.dt / sub, integ.split()[0])
                for L in (int(sd.test.x.shape[1]), 28, 14):
                    tr = sd.test if L == sd.test.x.shape[1] else ss.train_rollout_windows(sd.test, L)
                    pred = ss._rollout_np(step, tr, sd.dt / sub)
                    key = f"{integ} | {'whole segment' if tr is sd.test else f'{tr.n} windows of {L}'}"
                    rows.setdefault(name, {}).setdefault(key, []).append(((pred - tr.x) ** 2).mean(axis=(1, 2)))
        print(f"seed {seed}: {time.process_time() - c0:.1f} CPU s", flush=True)
    table: dict[str, dict[str, dict[str, float]]] = {}
    base = {k: np.mean(np.stack(v)) for k, v in rows["MLP"].items()}
    for name, per in rows.items():
        table[name] = {}
        for key, v in per.items():
            mse = np.stack(v)  # [seeds, units]
            table[name][key] = {"rmse": float(np.sqrt(mse).mean()), "mse": float(mse.mean()),
                                "mse_ratio_mlp_over_model": float(base[key] / mse.mean()) if key in base else None}
    keys = sorted({k for per in table.values() for k in per})
    for key in keys:
        print(f"== {key}")
        for name, per in table.items():
            if key in per:
                r = per[key]
                print(f"  {name:34s} RMSE {r['rmse']:.4f}  MSE {r['mse']:.5f}  MLP/model MSE "
                      f"x{r['mse_ratio_mlp_over_model'] or float('nan'):.2f}")
    atomic_write_json(Path(a.out) / "real_protocol.json", {"seeds": a.seeds, "table": table})


if __name__ == "__main__":
    main()
