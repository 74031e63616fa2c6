"""CPU time of one MPC planning step per variant, the variants alternated in ONE process so that a loaded
machine slows them all alike (``benchmarks/mpc_speed.py`` times one variant after another).

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/mpc_speed_ab.py --threads 1 --rounds 3 --out ab.json

Variants: float32 / float32 + channels-last / bfloat16 + channels-last candidate rollouts, each untailored
and tailored (shared: one tailoring call per planning step). Tailored CEM, 128 candidates x horizon 15 x 3
iterations, replan every step, the default small model with random weights (speed does not depend on
them). Reported: median CPU seconds (``time.process_time``) and wall seconds per planning step, and CPU
time relative to float32 untailored.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from mpc_speed import random_world_model  # noqa: E402

from noether_rl.agents.mpc import MPCAgent, MPCConfig  # noqa: E402
from noether_rl.agents.planners import make_planner  # noqa: E402
from noether_rl.agents.world_model import WorldModel  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--population", type=int, default=128)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = random_world_model("small", torch.device("cpu"), 4)
    # a CPU WorldModel stores its weights channels-last by default: undo it, each arm chooses its own format
    base.model.to(memory_format=torch.contiguous_format)
    if isinstance(base.reward, torch.nn.Module):
        base.reward.to(memory_format=torch.contiguous_format)
    agents: dict[str, MPCAgent] = {}
    for prec, cl in (("float32", False), ("float32", True), ("bfloat16", True)):
        for tailor in (False, True):
            wm = WorldModel(copy.deepcopy(base.model), copy.deepcopy(base.reward), n_past=4, action_dim=1,
                            frame_shape=base.frame_shape, tailor_cfg=base.tailor_cfg, inner_lr=base.inner_lr,
                            precision=prec, channels_last=cl)  # type: ignore[arg-type]
            planner = make_planner("cem", args.horizon, [-2.0], [2.0], population=args.population,
                                   iterations=args.iterations, seed=0)
            name = f"{prec}{'+channels_last' if cl else ''} {'tailored' if tailor else 'untailored'}"
            agents[name] = MPCAgent(wm, planner, MPCConfig(tailor=tailor))
    obs = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    for a in agents.values():
        a.predict(obs)  # warm-up
    cpu: dict[str, list[float]] = {k: [] for k in agents}
    wall: dict[str, list[float]] = {k: [] for k in agents}
    for _ in range(args.rounds):
        for k, a in agents.items():
            t0, c0 = time.perf_counter(), time.process_time()
            a.predict(obs, episode_start=np.array([False]))
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    res = {k: {"median_cpu_s": statistics.median(cpu[k]), "median_wall_s": statistics.median(wall[k]), "cpu_s": cpu[k]}
           for k in agents}
    ref = res["float32 untailored"]["median_cpu_s"]
    for k, v in res.items():
        v["cpu_relative_to_float32_untailored"] = v["median_cpu_s"] / ref
        print(f"{k:36s} CPU {v['median_cpu_s'] * 1e3:6.0f} ms/step ({v['cpu_relative_to_float32_untailored']:.2f}x)"
              f"  wall {v['median_wall_s'] * 1e3:6.0f} ms/step", flush=True)
    if args.out:
        from noether_rl.utils.io import atomic_write_json

        atomic_write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "population": args.population,
                                     "horizon": args.horizon, "iterations": args.iterations, "variants": res})


if __name__ == "__main__":
    main()
