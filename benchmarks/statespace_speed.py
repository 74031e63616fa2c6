"""Per-stage CPU and wall time of the state-space reproduction (``noether-rl reproduce statespace``).

    python benchmarks/statespace_speed.py --data ../shared/data/real_pend_h_1.txt            # all, 3 seeds
    python benchmarks/statespace_speed.py --system pendulum --seeds 0 --out /tmp/ss_bench

Runs (or resumes: an existing ``--out`` is reused, so pass a fresh directory to time from scratch) the
experiment with its default settings and prints, per system and stage summed over seeds, the CPU seconds
(``time.process_time`` of the process: the figure to read on a loaded machine) and the wall seconds, plus
the totals. The issue's target: ``--system all`` with 3 seeds in <= 10 min on 2 CPU cores. The inner step
is vmapped over examples; these times include the tailored rollouts (one inner step per integration step).
Stages loaded from an earlier run show the times recorded when they ran.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from noether_rl.experiments.statespace import StatespaceConfig, run_statespace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=["spring", "pendulum", "real", "all"], default="all")
    p.add_argument("--data", help="real-pendulum file (needed for real/all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="output directory (default: a fresh temporary one)")
    p.add_argument("--workers", type=int, default=0, help="parallel (system, seed) runs (0 = auto, up to 2)")
    a = p.parse_args()
    systems = ("spring", "pendulum", "real") if a.system == "all" else (a.system,)
    if a.system == "all" and not a.data:
        systems = ("spring", "pendulum")
    out = a.out or tempfile.mkdtemp(prefix="statespace_bench_")
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_statespace(StatespaceConfig(out=out, systems=systems, data=a.data, seeds=tuple(a.seeds),
                                          progress=False, workers=a.workers))
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    for name, blk in res["systems"].items():
        print(f"== {name} ({len(a.seeds)} seeds)        {'CPU s':>8s} {'wall s':>8s}")
        cpu = blk.get("cpu_seconds_per_stage_total", {})
        for stage, sec in blk["seconds_per_stage_total"].items():
            print(f"  {stage:32s} {cpu.get(stage, float('nan')):8.1f} {sec:8.1f}")
        print(f"  {'sum':32s} {sum(cpu.values()):8.1f} {sum(blk['seconds_per_stage_total'].values()):8.1f}")
    print(f"this run: wall {total:.1f} s; CPU of this process {total_cpu:.1f} s (worker processes' CPU is in the "
          f"stage sums above) (output: {out})")


if __name__ == "__main__":
    main()
