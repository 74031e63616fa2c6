"""Per-stage times of `noether-rl discover` (issue 12 target: --system pendulum <= 10 min on 2 CPU cores).

    OMP_NUM_THREADS=2 python benchmarks/discover_speed.py [--system pendulum|spring] [--seeds 0 1 2]
    python benchmarks/discover_speed.py --system real --data PATH/real_pend_h_1.txt
    python benchmarks/discover_speed.py --trajectories FILE.npz [--out DIR]
    python benchmarks/discover_speed.py --system pendulum --constants m=1,l=0.8,g=9.8 [--units "q=1, p=1"]
    python benchmarks/discover_speed.py --system spring --constants k=4,m=1 --units "q=1, p=1" \
        --reuse-filter RUN/formulas.json --step-rule polyak --eval-extra-seed 1 --eval-above-range

Runs the pipeline as the CLI does (HNN-protocol data, seed 0; the real pendulum with HNN's 80 % time
split) and prints, per stage (enumerate, filter, pretrain, screen, meta_tailor, evaluate), the CPU time
of this process (``time.process_time``, all its threads: the figure to quote on a loaded machine) and
the wall time, then the counts, the winner and the screen's top formulas. Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from noether_rl.symbolic.pipeline import DiscoverConfig, discover
from noether_rl.symbolic.units import parse_units


def reuse_filter(path: str, units: dict) -> None:
    """Make ``discover`` start from the survivors of an earlier run's formulas.json (see --reuse-filter):
    the enumeration, filter and deduplication functions the pipeline calls are replaced (this process only)
    by ones that return those survivors, matched to the enumerated formulas by their sympy template."""
    from noether_rl.symbolic import pipeline
    from noether_rl.symbolic.dsl import to_sympy
    from noether_rl.symbolic.enumerate import Candidate, drop_parameter_redundant, enumerate_formulas
    from noether_rl.symbolic.fit import FitResult

    surv = json.load(open(path))["survivors"]
    names, dims = list(units), list(units.values())
    cands = drop_parameter_redundant(enumerate_formulas(dims, pipeline.DiscoverConfig().enumeration))
    exprs = []
    for s in surv:
        tpl, n_p = s["template"], len(s["params"])
        match = [c.expr for c in cands if c.expr.n_params == n_p
                 and c.expr.key.count("sin(") == tpl.count("sin(") and c.expr.key.count("cos(") == tpl.count("cos(")
                 and str(to_sympy(c.expr, names)) == tpl]
        if not match:
            raise SystemExit(f"--reuse-filter: no enumerated formula has the template {tpl!r}")
        exprs.append(match[0])
    P = max(1, max(e.n_params for e in exprs))
    params = np.zeros((len(exprs), P))
    for i, s in enumerate(surv):
        params[i, : len(s["params"])] = s["params"]

    def col(k: str) -> np.ndarray:
        return np.array([np.nan if s[k] is None else s[k] for s in surv], dtype=np.float64)

    fit = FitResult(params=params, r_true=col("r_true"), r_random=col("r_random"), noise_frac=col("noise_fraction"),
                    r_signal=col("r_signal"))
    pipeline.enumerate_formulas = lambda *a, **k: [Candidate(e, None) for e in exprs]  # type: ignore[assignment]
    pipeline.drop_parameter_redundant = lambda c: c  # type: ignore[assignment]
    pipeline.fit_candidates = lambda *a, **k: fit  # type: ignore[assignment]
    pipeline.survivors = lambda *a, **k: np.arange(len(exprs))  # type: ignore[assignment]

    def dedup(exprs_, params_, seg, idx, cfg, r=None, groups=None, n_exact=None):  # noqa: ANN001, ANN202
        if n_exact is not None:
            n_exact.append(len(idx))
        return idx

    pipeline.deduplicate = dedup  # type: ignore[assignment]
    print(f"reusing the {len(exprs)} survivors of {path} (enumeration and filter skipped)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["pendulum", "spring", "real"], default="pendulum")
    ap.add_argument("--data", help="real-pendulum measurement file (--system real)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--filter-data", choices=["auto", "observed"], default="auto")
    ap.add_argument("--trajectories", help="a trajectory .npz instead of --system (as `discover --trajectories`)")
    ap.add_argument("--constants", help='other constants for --system pendulum|spring, e.g. "m=1,l=0.8,g=9.8"')
    ap.add_argument("--units", help='override the inputs\' units, e.g. "q=1, p=1" (declared dimensionless)')
    ap.add_argument("--select-windows", action="store_true",
                    help="select on 10-step validation windows even with >= 4 validation trajectories")
    ap.add_argument("--select-rule", choices=["one_se", "lowest"], default="one_se")
    ap.add_argument("--out", help="also write formulas.json, winner.png, summary.txt here (as `discover`)")
    ap.add_argument("--step-rule", choices=["sgd", "normalized", "polyak"], default=None,
                    help="SearchConfig.step_rule (default: the pipeline's)")
    ap.add_argument("--inner-lrs", type=float, nargs="+", default=None,
                    help="the inner-lr grid (SearchConfig.lr_exponents = log10 of these; default: the pipeline's)")
    ap.add_argument("--stability-scale", type=float, default=None,
                    help="SearchConfig.stability_scale (default: the pipeline's)")
    ap.add_argument("--reuse-filter", metavar="FORMULAS_JSON",
                    help="skip enumeration and the conservation filter: take the survivors (formulas, fitted "
                         "parameters, conservation measures) from a formulas.json of an earlier run on the SAME "
                         "data and filter settings (the filter does not depend on the search settings); saves "
                         "its CPU time when only the search settings change. Counts then start at the survivors")
    ap.add_argument("--eval-extra-seed", type=int, default=None,
                    help="generated systems: evaluate on NEW trajectories of the same system from this generator "
                         "seed instead of the test split (a diagnosis on extra data; never seed 0)")
    ap.add_argument("--eval-extra-n", type=int, default=25, help="trajectories generated with --eval-extra-seed")
    ap.add_argument("--eval-above-range", action="store_true",
                    help="with --eval-extra-seed: only the extra trajectories whose generator energy exceeds "
                         "every training trajectory's (the benchmark knows the generator; the pipeline does not)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiscoverConfig(seeds=tuple(args.seeds), progress=False, filter_data=args.filter_data,
                         select_whole=not args.select_windows, select_rule=args.select_rule)
    if args.step_rule is not None:
        cfg = replace(cfg, search=replace(cfg.search, step_rule=args.step_rule))
    if args.inner_lrs is not None:
        cfg = replace(cfg, search=replace(cfg.search, lr_exponents=tuple(float(np.log10(v)) for v in args.inner_lrs)))
    if args.stability_scale is not None:
        cfg = replace(cfg, search=replace(cfg.search, stability_scale=args.stability_scale))
    if args.eval_extra_seed is not None and (args.trajectories or args.system == "real"):
        ap.error("--eval-extra-seed is for --system pendulum|spring (generated data)")
    if args.trajectories:
        from noether_rl.data.trajectories import load_trajectories

        traj = load_trajectories(args.trajectories)
        half = traj.n // 2
        train, test = traj.subset(slice(0, half)), traj.subset(slice(half, traj.n))
        reference = None
    elif args.system == "real":
        from noether_rl.data.real_pendulum import load_real_pendulum, time_split

        if not args.data:
            ap.error("--system real needs --data PATH")
        traj = load_real_pendulum(args.data)
        train, test = time_split(traj, 0.8)
        reference = None
        cfg = replace(cfg, search=replace(cfg.search, weight_decay=1e-5))  # as the CLI does for real data
    else:
        from noether_rl.data import systems
        from noether_rl.data.systems import GenerateConfig, generate, get_system

        if args.constants:
            kw = {k.strip(): float(v) for k, v in (kv.split("=") for kv in args.constants.split(","))}
            sysm = getattr(systems, args.system)(**kw)
        else:
            sysm = get_system(args.system)
        traj = generate(sysm, GenerateConfig(seed=0))
        half = traj.n // 2
        train, test = traj.subset(slice(0, half)), traj.subset(slice(half, traj.n))
        reference = sysm.hamiltonian
        if args.eval_extra_seed is not None:
            if args.eval_extra_seed == 0:
                ap.error("--eval-extra-seed must differ from the data seed 0 (that would be the test split)")
            extra = generate(sysm, GenerateConfig(seed=args.eval_extra_seed, n_trajectories=args.eval_extra_n))
            if args.eval_above_range:
                e_train = sysm.hamiltonian(train.x_clean[:, 0])
                keep = np.flatnonzero(sysm.hamiltonian(extra.x_clean[:, 0]) > e_train.max())
                if len(keep) == 0:
                    ap.error("no extra trajectory above the training energy range; try another seed")
                extra = extra.subset(keep)
            test = extra
            print(f"evaluating on {test.n} NEW trajectories (generator seed {args.eval_extra_seed}"
                  f"{', above the training energy range' if args.eval_above_range else ''}), not the test split")
    t0, c0 = time.perf_counter(), time.process_time()
    units = parse_units(args.units or traj.units)
    train, test = replace(train, names=tuple(units)), replace(test, names=tuple(units))
    if args.reuse_filter:
        reuse_filter(args.reuse_filter, units)
    rep = discover(train, test, units, cfg, reference=reference)
    total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    if args.eval_extra_seed is not None:  # per trajectory (first seed) by generator energy: inside / above range
        e_train = sysm.hamiltonian(train.x_clean[:, 0])
        e = sysm.hamiltonian(test.x_clean[:, 0])
        above = e > e_train.max()
        for k, ro in rep["_rollouts"].items():
            with np.errstate(all="ignore"):
                r = np.sqrt(((ro - test.x_clean) ** 2).mean(axis=(1, 2)))
            r = np.where(np.isfinite(r), r, np.inf)
            print(f"extra data, {k:9s} (seed {args.seeds[0]}): inside the training energy range median "
                  f"{np.median(r[~above]) if (~above).any() else float('nan'):.4g} max "
                  f"{r[~above].max() if (~above).any() else float('nan'):.4g}; above: "
                  + " ".join(f"{e[i]:.3f}:{r[i]:.4g}" for i in np.flatnonzero(above)))
    print(f"{args.trajectories or args.system}: {rep['counts']}")
    print(f"estimated noise std: {rep['estimated_noise_std']}; validation: {rep['validation_data']}")
    w = rep["winner"]
    print(f"winner: {w['formula']} ({w['variant']}, inner lr {w['inner_lr']:g}, validation rollout RMSE "
          f"{w['screen_val_rollout_rmse'] if w['variant'] == 'pretrained' else w['meta_val_rollout_rmse']:.5f}; "
          f"MLP {rep['mlp_val_rollout_rmse']:.5f})")
    print("top formulas (screen validation RMSE / after meta-tailoring; meta train loss first -> last):")
    top = sorted((s for s in rep["survivors"] if s["screen_val_rollout_rmse"] is not None),
                 key=lambda s: s["screen_val_rollout_rmse"])[:20]
    for s in top:
        meta = s["meta_val_rollout_rmse"]
        first, last = s["meta_first_train_loss"], s["meta_final_train_loss"]
        print(f"  {s['formula']:40s} r_signal {s['r_signal']:.2e} lr {s['inner_lr']:<7g} screen "
              f"{s['screen_val_rollout_rmse']:.5f} meta {meta if meta is None else round(meta, 5)} "
              f"train {first if first is None else round(first, 6)} -> {last if last is None else round(last, 6)}"
              f"{' DIVERGED' if s['diverged'] else ''}")
    sel = rep["selection_rule"]
    print(f"selection ({sel['split']}; units: {sel['units']}): rule {sel['rule']}, chosen by {sel['chosen_by']}")
    for k in ("winner_one_se", "winner_lowest"):
        o = sel[k]
        print(f"  {k}: {o['formula']} ({o['variant']}) val RMSE {o['val_rollout_rmse']:.5f}, minus best "
              f"{o['minus_best']:+.5f} +- {o['minus_best_se']:.5f}")
    print(f"  winner - MLP on validation: {sel['winner_minus_mlp_val']['mean']:+.5f} +- "
          f"{sel['winner_minus_mlp_val']['se']:.5f} (over {sel['winner_minus_mlp_val']['n']} units)")
    r, pr, ps = rep["rmse"], rep["paired"], rep["paired_over_seeds"]
    line = f"test RMSE: MLP {r['mlp']['per_trajectory']['mean']:.5f}, Noether {r['noether']['per_trajectory']['mean']:.5f}"
    if "reference" in r:
        line += f", reference {r['reference']['per_trajectory']['mean']:.5f}"
    if "noether_other_rule" in r:
        line += f", other rule's pick {r['noether_other_rule']['per_trajectory']['mean']:.5f}"
    print(line)
    for k in pr:
        print(f"  {k}: {pr[k]['mean']:+.5f} +- {pr[k]['se']:.5f} (over {pr[k]['n']} test trajectories), "
              f"{ps[k]['mean']:+.5f} +- {ps[k]['se']:.5f} (over {ps[k]['n']} seeds)")
    print(f"  {'stage':12s} {'CPU s':>8s} {'wall s':>8s}")
    for k, v in rep["cpu_s"].items():
        print(f"  {k:12s} {v:8.1f} {rep['times_s'][k]:8.1f}")
    print(f"  {'total':12s} {cpu_total:8.1f} {total:8.1f}  ({args.threads} threads, {len(args.seeds)} evaluation seeds)")
    if args.out:
        from noether_rl.symbolic.pipeline import write_outputs

        rep["source"] = {"system": None if args.trajectories else args.system, "trajectories": args.trajectories,
                         "data": args.data, "constants": args.constants, "units": args.units,
                         "benchmark": "benchmarks/discover_speed.py"}
        write_outputs(args.out, rep)
        print(f"wrote {args.out}/formulas.json")


if __name__ == "__main__":
    main()
