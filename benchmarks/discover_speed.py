"""Per-stage times of `noether-rl discover` (issue 12 target: --system pendulum <= 10 min on 2 CPU cores).

    OMP_NUM_THREADS=2 python benchmarks/discover_speed.py [--system pendulum|spring] [--seeds 0 1 2]
    python benchmarks/discover_speed.py --system real --data PATH/real_pend_h_1.txt
    python benchmarks/discover_speed.py --trajectories FILE.npz [--out DIR]
    python benchmarks/discover_speed.py --system pendulum --constants m=1,l=0.8,g=9.8 [--units "q=1, p=1"]

Runs the pipeline as the CLI does (HNN-protocol data, seed 0; the real pendulum with HNN's 80 % time
split) and prints, per stage (enumerate, filter, pretrain, screen, meta_tailor, evaluate), the CPU time
of this process (``time.process_time``, all its threads: the figure to quote on a loaded machine) and
the wall time, then the counts, the winner and the screen's top formulas. Nothing is written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from noether_rl.symbolic.pipeline import DiscoverConfig, discover
from noether_rl.symbolic.units import parse_units


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiscoverConfig(seeds=tuple(args.seeds), progress=False, filter_data=args.filter_data,
                         select_whole=not args.select_windows, select_rule=args.select_rule)
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
    t0, c0 = time.perf_counter(), time.process_time()
    units = parse_units(args.units or traj.units)
    train, test = replace(train, names=tuple(units)), replace(test, names=tuple(units))
    rep = discover(train, test, units, cfg, reference=reference)
    total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
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
