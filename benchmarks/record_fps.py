"""Recorder throughput and swing-up success rate.

    python benchmarks/record_fps.py [--episodes 200] [--steps 200] [--size 64] [--num-envs 2] [--compare]

Records ``episodes`` x ``steps`` swing-up episodes to a temp dir and prints JSON with frames/s (frames
written = episodes * (steps + 1), wall time of ``record`` including process start-up, compression,
hashing and the manifest) and the swing-up success rate (|theta| < 0.3 over the last 50 steps).
``--compare`` also times num_envs=1 on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from noether_rl.data import load_manifest, open_episode
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.recorders import RecordConfig, record, swingup_success


def run(episodes: int, steps: int, size: int, num_envs: int, policy: str = "swingup") -> dict[str, float]:
    """Record into a temp dir; return frames/s, seconds and (for swingup) the success rate."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rec"
        cfg = RecordConfig(
            PIXEL_PENDULUM_ID, policy, episodes, steps, size, 0, str(out), num_envs, False, False
        )
        t0 = time.perf_counter()
        record(cfg)
        seconds = time.perf_counter() - t0
        manifest = load_manifest(out)
        wins = [swingup_success(open_episode(out, i, manifest=manifest)["states"]) for i in range(episodes)]
        mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    return {
        "num_envs": num_envs,
        "seconds": round(seconds, 3),
        "frames_per_s": round(episodes * (steps + 1) / seconds, 1),
        "success_rate": float(np.mean(wins)),
        "recording_MiB": round(mb, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--compare", action="store_true", help="also time num_envs=1")
    args = p.parse_args()
    runs = [run(args.episodes, args.steps, args.size, args.num_envs)]
    if args.compare and args.num_envs != 1:
        runs.append(run(args.episodes, args.steps, args.size, 1))
    result = {
        "episodes": args.episodes,
        "steps": args.steps,
        "size": args.size,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
