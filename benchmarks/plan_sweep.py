"""Planner settings for a trained world model, chosen on SELECTION seeds, then reported once on evaluation seeds.

The demo's planner settings (CEM 64 x 15 x 3, replan every 3) were fixed for the CPU budget, and with the true
dynamics they swing the pendulum up (``benchmarks/mpc_oracle.py``). With an imperfect model, replanning more
often (less open-loop drift), more candidates or a longer horizon may matter. This script runs ``noether-rl
plan``'s recipe (:func:`noether_rl.agents.runs.run_plan`, untailored) for a grid of settings on the selection
seeds (default 100..109: neither the evaluation seeds 0..9 nor the aggregation's collection seeds), picks by a
rule fixed in advance — the best mean selection return; among settings within one paired s.e. of it, the
cheapest (population x horizon x iterations / replan_every: the formula ignores iCEM's shrinking population;
ties go to the setting first in grid order, planners in ``--planners`` order first) — and runs the choice once on the evaluation seeds,
untailored and tailored (paired). One JSON with every row.

    python benchmarks/plan_sweep.py --checkpoint DIR/noether/last.pt --reward-model DIR/reward.pt --out S.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from noether_rl.agents.runs import PlanConfig, RewardSpec, load_world_model, mean_se, run_plan
from noether_rl.utils.device import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reward-model", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--select-seed", type=int, default=100)
    p.add_argument("--select-episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--populations", type=int, nargs="+", default=[64, 256])
    p.add_argument("--horizons", type=int, nargs="+", default=[15, 30])
    p.add_argument("--replans", type=int, nargs="+", default=[1, 3])
    p.add_argument("--planners", nargs="+", default=["cem"], choices=["cem", "icem", "mppi"])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--deadline-s", type=float, default=1e9, help="no new selection row after this many seconds")
    args = p.parse_args()
    t0 = time.time()
    device = resolve_device(args.device)
    reward = RewardSpec(kind="learned", path=args.reward_model)
    wm, info = load_world_model(args.checkpoint, reward, device, args.out.parent)
    base = PlanConfig(checkpoint=args.checkpoint, out=str(args.out.parent / "plan_sweep_rows"), tailor=False,
                      episodes=args.select_episodes, seed=args.select_seed, iterations=args.iterations,
                      max_steps=args.max_steps, reward=reward, video=False, device=args.device, progress=False)
    res: dict = {"checkpoint": args.checkpoint, "device": str(device), "rule": "best mean selection return; among "
                 "settings within one paired s.e. of it the cheapest (population x horizon x iterations / "
                 "replan_every), ties to the first in grid order (--planners order first)", "selection": {}, "evaluation": {}}
    rows: dict[str, list[float]] = {}
    cost: dict[str, float] = {}
    for planner, pop, hor, rep in itertools.product(args.planners, args.populations, args.horizons, args.replans):
        if rep > hor:
            continue
        name = f"pop{pop}_h{hor}_replan{rep}" if args.planners == ["cem"] else f"{planner}_pop{pop}_h{hor}_replan{rep}"
        if time.time() - t0 > args.deadline_s:
            res["selection"][name] = "skipped (deadline)"
            continue
        cfg = replace(base, planner=planner, population=pop, horizon=hor, replan_every=rep)
        r = run_plan(cfg, wm, info)
        rows[name] = r["returns"]["values"]
        cost[name] = pop * hor * args.iterations / rep
        res["selection"][name] = {"returns": r["returns"], "control_rate_hz": r["control_rate_hz"],
                                  "wall_time_s": r["wall_time_s"], "config": {"planner": planner, "population": pop,
                                                                              "horizon": hor, "replan_every": rep}}
        print(f"{name:24s} {r['returns']['mean']:8.1f} ± {r['returns']['se']:5.1f}", flush=True)
        args.out.write_text(json.dumps(res, indent=1))
    best = max(rows, key=lambda k: np.mean(rows[k]))
    close = [k for k in rows if k == best or np.mean(rows[best]) - np.mean(rows[k])
             <= mean_se(np.asarray(rows[best]) - np.asarray(rows[k]))["se"]]
    chosen = min(close, key=lambda k: cost[k])
    res |= {"best": best, "within_one_se": close, "chosen": chosen}
    c = res["selection"][chosen]["config"]
    evals: dict[str, list[float]] = {}
    for tailor in (False, True):
        cfg = replace(base, tailor=tailor, episodes=args.eval_episodes, seed=args.eval_seed, **c)
        r = run_plan(cfg, wm, info)
        evals["tailored" if tailor else "untailored"] = r["returns"]["values"]
        res["evaluation"]["tailored" if tailor else "untailored"] = {"returns": r["returns"], "config": asdict(cfg),
                                                                     "control_rate_hz": r["control_rate_hz"]}
        print(f"eval {chosen} tailor={tailor}: {r['returns']['mean']:.1f} ± {r['returns']['se']:.1f}", flush=True)
        args.out.write_text(json.dumps(res, indent=1))
    res["evaluation"]["tailored - untailored"] = mean_se(np.asarray(evals["tailored"]) - np.asarray(evals["untailored"]))
    res["wall_s"] = time.time() - t0
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
