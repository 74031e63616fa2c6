"""One more data-aggregation round with and without exploration noise on the collecting MPC's actions.

Arm ``--sigma 0`` is a plain round as ``reproduce pendulum-control`` runs it (untailored MPC executes its plan);
arm ``--sigma S`` executes the MPC's action + N(0, S) noise, clipped to the action bounds
(``noether_rl.agents.aggregation.with_action_noise``). Each arm: 10 episodes on the same COLLECTION seeds
(default 1400-1409, never evaluation or selection seeds), spliced onto the run's last aggregation recording,
``aggregate_epochs`` free-running epochs from the run's last aggregated predictor (scale small-long's settings,
the collecting MPC replanning every 3 steps). Then evaluate each arm's predictor on SELECTION seeds:

    python benchmarks/aggregation_noise.py --run RUN --arm plain --sigma 0 --out ARMS
    python benchmarks/aggregation_noise.py --run RUN --arm noisy --sigma 1.0 --out ARMS
    noether-rl plan --checkpoint ARMS/noisy/svg/last.pt --planner cem --no-tailor --episodes 10 --seed 100 \\
        --population 64 --horizon 15 --iterations 3 --replan-every 3 --max-steps 200 --reward-model RUN/reward.pt \\
        --no-video --out ARMS/noisy/plan_sel            (and the same for plain; paired by seed)

Measured (RUN = the small-long run behind the README's figures, from its round-2 predictor; 2 cores): collection
returns plain -826 +- 33, noisy -804 +- 44; selection seeds 100-109: plain -901 +- 26, noisy -766 +- 20, paired
noisy - plain +135 +- 25 (round 2's predictor: -921 +- 34). Reported once on the evaluation seeds 0-9 (the same
command with --seed 0; nothing chosen there): plain -810 +- 38, noisy -753 +- 34, paired +58 +- 46 (n.s.). One
round, one training seed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from noether_rl.agents.aggregation import spliced_recording
from noether_rl.agents.runs import RewardSpec, mean_se
from noether_rl.data import load_manifest
from noether_rl.experiments.pendulum_control import (
    SCALES,
    PendulumControlConfig,
    _train_configs,
    collect_mpc_episodes,
)
from noether_rl.training import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished `reproduce pendulum-control --scale small-long` dir")
    p.add_argument("--arm", required=True, help="arm name (a subdirectory of --out)")
    p.add_argument("--sigma", type=float, required=True, help="std of the action noise (0: a plain round)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--first-seed", type=int, default=1400, help="first collection seed")
    p.add_argument("--noise-seed", type=int, default=7, help="seed of the noise generator (7: the measured run)")
    args = p.parse_args()
    s = replace(SCALES["small-long"], replan_every=3)
    rounds = sorted((args.run / "aggregate").glob("round*/svg/last.pt"))
    if not rounds:
        raise SystemExit(f"{args.run}/aggregate has no finished round")
    start, base = rounds[-1], rounds[-1].parent.parent / "data"
    root = args.out / args.arm
    seeds = [args.first_seed + i for i in range(s.aggregate_episodes)]
    dev = torch.device("cpu")
    if not (root / "mpc_data" / f"episode_{len(seeds) - 1:05d}.npz").exists():
        rets, _ = collect_mpc_episodes(start, RewardSpec(path=str(args.run / "reward.pt")),
                                       replace(s, aggregate_action_noise=args.sigma), seeds, root / "mpc_data", 0,
                                       dev, root, noise_seed=args.noise_seed)
        r = mean_se(rets)
        print(f"collection returns {r['mean']:.1f} ± {r['se']:.1f}", flush=True)
    cfg = PendulumControlConfig(out=str(args.run), scale="small-long", progress=False)
    _, free, _ = _train_configs(cfg, s, args.run / "data")
    train_eps = load_manifest(base)["episodes"] - s.val_episodes - (s.episodes - s.train_episodes - s.val_episodes)
    data = spliced_recording(base, root / "mpc_data", len(seeds), train_eps, root / "data", tag="mpc")
    train(replace(free, out=str(root / "svg"), init_from=str(start), epochs=s.aggregate_epochs,
                  data=replace(free.data, root=str(data), train_episodes=train_eps + len(seeds))))


if __name__ == "__main__":
    main()
