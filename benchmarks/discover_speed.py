"""Per-stage wall time of `noether-rl discover` (issue 12 target: --system pendulum <= 10 min on 2 CPU cores).

    OMP_NUM_THREADS=2 python benchmarks/discover_speed.py [--system pendulum|spring] [--seeds 0 1 2]

Runs the pipeline exactly as the CLI does (HNN-protocol data, seed 0) and prints the time of every
stage (enumerate, filter, pretrain, screen, meta_tailor, evaluate) and the total; nothing is written.
"""

from __future__ import annotations

import argparse
import time

import torch

from noether_rl.data.systems import GenerateConfig, generate, get_system
from noether_rl.symbolic.pipeline import DiscoverConfig, discover
from noether_rl.symbolic.units import parse_units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["pendulum", "spring"], default="pendulum")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sysm = get_system(args.system)
    traj = generate(sysm, GenerateConfig(seed=0))
    half = traj.n // 2
    t0 = time.perf_counter()
    rep = discover(traj.subset(slice(0, half)), traj.subset(slice(half, traj.n)), parse_units(sysm.units),
                   DiscoverConfig(seeds=tuple(args.seeds), progress=False), reference=sysm.hamiltonian)
    total = time.perf_counter() - t0
    print(f"{args.system}: {rep['counts']}")
    print(f"winner: {rep['winner']['formula']}")
    for k, v in rep["times_s"].items():
        print(f"  {k:12s} {v:8.1f} s")
    print(f"  {'total':12s} {total:8.1f} s  ({args.threads} threads, {len(args.seeds)} evaluation seeds)")


if __name__ == "__main__":
    main()
