"""GPU control-rate probe (issue 10 §6): where does a 256 x 15 x 3 plan of the 64x64 model spend its time?

CUDA graphs alone moved untailored MPC only from 9.6 to 10.0 Hz (``gpu_session.py --only mpc-graph``) and the
CPU time per step equals the wall time — but a synchronising CUDA call spins the CPU, so that does not prove a
launch-bound loop. This probe (one process, ``--deadline-s`` wall) times the modes ``untailored`` / ``shared``
(tailored once per step) for variants of the convolution setup:

- ``base``: as the package runs it on CUDA (contiguous, cudnn.benchmark off);
- ``bench``: ``torch.backends.cudnn.benchmark = True`` (autotuned conv algorithms; set process-wide here);
- ``bench+cl``: plus channels-last conv weights (``WorldModel(channels_last=True)``);
- each float32 and bfloat16, with and without CUDA graphs;

and writes a torch.profiler table (top CUDA kernels) of one untailored plan of the ``base`` float32 arm, so
the next lever is chosen from where the GPU time goes.

    python benchmarks/gpu_mpc_probe.py --out probe.json --profile profile.txt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mpc_speed import random_world_model, time_mode  # noqa: E402

from noether_rl.agents.world_model import WorldModel  # noqa: E402


def _variant(base: WorldModel, channels_last: bool, precision: str, graph: bool) -> WorldModel:
    base.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if isinstance(base.reward, torch.nn.Module):
        base.reward.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return WorldModel(base.model, base.reward, n_past=base.n_past, action_dim=base.action_dim,
                      frame_shape=base.frame_shape, tailor_cfg=base.tailor_cfg, inner_lr=base.inner_lr,
                      precision=precision, channels_last=channels_last, cuda_graph=graph)  # type: ignore[arg-type]


def profile_plan(wm: WorldModel, args: argparse.Namespace, path: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    from noether_rl.agents.mpc import MPCAgent, MPCConfig
    from noether_rl.agents.planners import make_planner

    planner = make_planner("cem", args.horizon, [-2.0], [2.0], population=args.population,
                           iterations=args.iterations, seed=0, device=wm.device)
    agent = MPCAgent(wm, planner, MPCConfig(tailor=False))
    obs = np.random.default_rng(0).integers(0, 256, size=wm.obs_shape, dtype=np.uint8)
    agent.predict(obs)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        agent.predict(obs, episode_start=np.array([False]))
        torch.cuda.synchronize()
    path.write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--profile", type=Path)
    p.add_argument("--population", type=int, default=256)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--deadline-s", type=float, default=150.0)
    args = p.parse_args()
    t0 = time.time()
    dev = torch.device("cuda")
    res: dict = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "population": args.population,
                 "horizon": args.horizon, "iterations": args.iterations, "arms": {}}
    base = random_world_model("paper", dev, 4)
    if args.profile:
        try:
            profile_plan(_variant(base, False, "float32", False), args, args.profile)
        except Exception as e:  # noqa: BLE001 - a probe: report and go on
            res["profile_error"] = repr(e)
    for variant, bench, cl in (("base", False, False), ("bench", True, False), ("bench+cl", True, True)):
        torch.backends.cudnn.benchmark = bench
        for precision in ("float32", "bfloat16"):
            for graph in (False, True):
                for mode in ("untailored", "shared"):
                    name = f"{variant}/{precision}/{'graph' if graph else 'eager'}/{mode}"
                    if time.time() - t0 > args.deadline_s:
                        res["arms"][name] = "skipped (deadline)"
                        continue
                    try:
                        wm = _variant(base, cl, precision, graph)
                        r = time_mode(wm, mode, args.population, args.horizon, args.iterations, args.repeats, dev)
                        res["arms"][name] = r
                        print(f"{name:40s} {r['control_rate_hz']:6.2f} Hz", flush=True)
                    except Exception as e:  # noqa: BLE001
                        res["arms"][name] = repr(e)
                        print(f"{name:40s} failed: {e!r}", flush=True)
                    args.out.write_text(json.dumps(res, indent=1))
    res["wall_s"] = time.time() - t0
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
