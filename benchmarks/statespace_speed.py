"""Per-stage wall time of the state-space reproduction (``noether-rl reproduce statespace``).

    python benchmarks/statespace_speed.py --data ../shared/data/real_pend_h_1.txt            # all, 3 seeds
    python benchmarks/statespace_speed.py --system pendulum --seeds 0 --out /tmp/ss_bench

Runs (or resumes: an existing ``--out`` is reused, so pass a fresh directory to time from scratch) the
experiment with its default settings and prints the seconds each stage took, summed over seeds, per
system, plus the total. The issue's target: ``--system all`` with 3 seeds in <= 10 min on 2 CPU cores.
The inner step is vmapped over examples; these times include the per-query tailored rollouts.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from noether_rl.experiments.statespace import StatespaceConfig, run_statespace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=["spring", "pendulum", "real", "all"], default="all")
    p.add_argument("--data", help="real-pendulum file (needed for real/all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="output directory (default: a fresh temporary one)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    systems = ("spring", "pendulum", "real") if a.system == "all" else (a.system,)
    if a.system == "all" and not a.data:
        systems = ("spring", "pendulum")
    out = a.out or tempfile.mkdtemp(prefix="statespace_bench_")
    t0 = time.perf_counter()
    res = run_statespace(StatespaceConfig(out=out, systems=systems, data=a.data, seeds=tuple(a.seeds),
                                          progress=False))
    total = time.perf_counter() - t0
    for name, blk in res["systems"].items():
        print(f"== {name} ({len(a.seeds)} seeds)")
        for stage, sec in blk["seconds_per_stage_total"].items():
            print(f"  {stage:48s} {sec:8.1f} s")
        print(f"  {'sum':48s} {sum(blk['seconds_per_stage_total'].values()):8.1f} s")
    print(f"total wall time of this run: {total:.1f} s (output: {out})")


if __name__ == "__main__":
    main()
