"""Why does a discover pick blow up on states beyond the training range? (issue 12, dimensionless spring)

    python benchmarks/discover_blowup.py --system spring --constants k=4,m=1 --units "q=1, p=1" \
        --formulas RUN/formulas.json [--extra-seed 1]

A diagnosis, not part of the pipeline: it knows the generator (its energy sorts trajectories). It rebuilds
what ``discover`` trained on the seed-0 data (the same fit/validation split of the first 25 trajectories,
the seed-0 MLP, the winner of ``--formulas`` meta-tailored at its inner lr, and the generator's energy as
the oracle formula, at the run's reference lr), then uses NEW data only -- trajectories of the same system
from ``--extra-seed`` (never the seed-0 test split) -- to separate the suspects:

- rollout RMSE of every variant (MLP; pre-trained MLP + tailoring; meta-tailored MLP with and without the
  tailoring step; the oracle likewise) on the extra trajectories whose energy exceeds every training
  trajectory's, and on those inside the training range;
- the tailoring step's gain along the exact extra trajectories: rho = dg_tailored / dg_untailored, where
  dg = g(x + f dt) - g(x) is the one-step change of the (standardised) formula; one SGD inner step on the
  readout multiplies dg by about (1 - kappa) with kappa proportional to lr |grad g|^2 |features|^2, which
  grows with the state: |rho| > 1 means the step overshoots and amplifies the violation it corrects.

Prints a table per variant; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from noether_rl.data import systems
from noether_rl.data.systems import GenerateConfig, generate
from noether_rl.symbolic.dsl import to_sympy
from noether_rl.symbolic.enumerate import EnumerationConfig, drop_parameter_redundant, enumerate_formulas
from noether_rl.symbolic.pipeline import DiscoverConfig, validation_split
from noether_rl.symbolic.search import (
    CallableFormula,
    FittedFormula,
    meta_tailor,
    noether_net,
    pretrain_mlp,
    rollout_rmse,
    tailored_field,
)
from noether_rl.symbolic.units import parse_units


def parse_constants(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    return {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}


def gain(pred, g, lr, x: torch.Tensor, dt: float, sc) -> np.ndarray:  # noqa: ANN001
    """rho [N] = (g(x + f_tailored dt) - g(x)) / (g(x + f dt) - g(x)) at states x [N, D]."""
    with torch.no_grad():
        f0 = pred.vector_field(x)
        f1 = tailored_field(noether_net(pred, g, lr, sc), x)
        g0 = g(x)[:, 0]
        d0 = g(x + f0 * dt)[:, 0] - g0
        d1 = g(x + f1 * dt)[:, 0] - g0
    return (d1 / d0).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["pendulum", "spring"], required=True)
    ap.add_argument("--constants")
    ap.add_argument("--units")
    ap.add_argument("--formulas", required=True, help="formulas.json of a discover run on the seed-0 data")
    ap.add_argument("--extra-seed", type=int, default=1)
    ap.add_argument("--extra-n", type=int, default=100)
    ap.add_argument("--lrs", type=float, nargs="*", default=[], help="also try these inner lrs (diagnosis only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    c0 = time.process_time()
    rep = json.load(open(args.formulas))
    sysm = getattr(systems, args.system)(**parse_constants(args.constants))
    traj = generate(sysm, GenerateConfig(seed=0))
    units = parse_units(args.units or traj.units)
    names = list(units)
    train = traj.subset(slice(0, traj.n // 2))
    cfg = DiscoverConfig()
    sc = cfg.search
    fit_traj, _, _ = validation_split(train, cfg.val_frac)
    xs, ys = fit_traj.targets()
    x = torch.as_tensor(xs, dtype=torch.float32)
    y = torch.as_tensor(ys, dtype=torch.float32)
    dt = train.nominal_dt()
    pred0 = pretrain_mlp(x, y, dt, sc, cfg.seeds[0])

    w = rep["winner"]
    cands = drop_parameter_redundant(enumerate_formulas(list(units.values()), EnumerationConfig(max_size=7)))
    by_template = {str(to_sympy(c.expr, names)): c.expr for c in cands}
    g_win = FittedFormula(by_template[w["template"]], w["params"] or [0.0], x)
    g_ref = CallableFormula(lambda z: sysm.hamiltonian(z), x)
    lr_w, lr_r = float(w["inner_lr"]), float(rep["reference_inner_lr"])
    variants: dict[str, tuple] = {"MLP": (pred0, None, 0.0)}
    for name, g, lr in ((f"winner {w['formula']}", g_win, lr_w), ("oracle H", g_ref, lr_r)):
        m = meta_tailor(pred0, g, lr, x, y, sc, cfg.seeds[0])
        variants[f"{name}: pretrained+tailor lr {lr:.3g}"] = (pred0, g, lr)
        variants[f"{name}: meta, no tailoring step"] = (m.predictor, None, 0.0)
        variants[f"{name}: meta+tailor lr {lr:.3g}"] = (m.predictor, g, lr)
        for lr2 in args.lrs:
            variants[f"{name}: meta+tailor lr {lr2:.3g} (not its lr)"] = (m.predictor, g, lr2)

    E_train = sysm.hamiltonian(train.x_clean[:, 0])
    extra = generate(sysm, GenerateConfig(seed=args.extra_seed, n_trajectories=args.extra_n))
    E = sysm.hamiltonian(extra.x_clean[:, 0])
    above = np.flatnonzero(E > E_train.max())
    inside = np.flatnonzero(E <= E_train.max())
    print(f"training energies {E_train.min():.3f} .. {E_train.max():.3f}; extra seed {args.extra_seed}: "
          f"{len(above)} of {extra.n} above (energies {np.round(np.sort(E[above]), 3).tolist()})")
    ref = extra.x_clean
    for name, (p, g, lr) in variants.items():
        r, ro = rollout_rmse(p, g, lr, ref, extra.t, dt, sc)
        line = (f"{name:62s} RMSE inside range median {np.median(r[inside]):.3g} max {r[inside].max():.3g}; "
                f"above range: " + " ".join(f"{E[i]:.2f}:{r[i]:.3g}" for i in above[np.argsort(E[above])]))
        if g is not None:
            # the step's gain along the exact trajectories, by energy band
            rho = gain(p, g, lr, torch.as_tensor(ref.reshape(-1, ref.shape[2]), dtype=torch.float32), dt, sc)
            rho = rho.reshape(ref.shape[:2])
            amp = np.abs(rho) > 1
            line += (f"\n{'':62s} |rho|>1 at {amp[inside].mean():.1%} of states inside, {amp[above].mean():.1%} "
                     f"above; median rho inside {np.median(rho[inside]):.3g}, above {np.median(rho[above]):.3g}")
        print(line)
    print(f"CPU {time.process_time() - c0:.1f} s")


if __name__ == "__main__":
    main()
