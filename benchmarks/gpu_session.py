"""One prepared GPU session: the figures that need a lent accelerator, in one call.

    python benchmarks/gpu_session.py --out OUT                      # on the GPU machine (device cuda)
    python benchmarks/gpu_session.py --out /tmp/x --dry-run         # here: tiny sizes on CPU, checks the plumbing

1. MPC control rate of the 64 x 64 world model (issue 10, section 6): ``benchmarks/mpc_speed.py --scale paper
   --population 256 --horizon 15 --iterations 3``, untailored vs tailored once per planning step, float32 and
   bfloat16 -> ``OUT/mpc_gpu_float32.json``, ``OUT/mpc_gpu_bfloat16.json``.
2. The synthetic-ramp comparison at the small scale (issue 13): the recording once, then the three seeds as three
   processes sharing the GPU, then one pooling run that resumes every finished model -> ``OUT/ramp.tar.gz``
   (results, per-seed evaluations and window scores, training metrics; not the checkpoints, ~15 MB each). Each
   stage stops at ``--deadline-s`` (wall) so the files come back.

3. ``--only mpc-graph`` (issue 10, section 6, CUDA graphs): ONE process of ``benchmarks/mpc_speed.py
   --compare-graph`` at the paper scale (256 x 15 x 3): untailored and tailored (shared), eager vs
   ``WorldModel(cuda_graph=True)``, float32 then bfloat16 (arms past the process's deadline are skipped; each
   arm catches its own exception), the eager ``prepare`` alone, and graph-vs-eager agreement (max abs
   differences of scores, rewards, frames, planned actions) -> ``OUT/mpc_graph.json``; no arm starts after
   150 s, the process is stopped at 200 s wall.
   Not part of the default session.

The GPU image has no ffmpeg: without ``imageio_ffmpeg`` the side-by-side videos are written as GIFs instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gif_instead_of_mp4() -> None:
    """Route the evaluation's mp4 writer to the GIF writer when ffmpeg is missing (GPU image)."""
    try:
        import imageio_ffmpeg  # noqa: F401

        return
    except ImportError:
        pass
    from noether_rl.eval import save_gif
    from noether_rl.experiments import evaluation

    def gif(columns, out, **kw):  # type: ignore[no-untyped-def]
        return save_gif(columns, Path(out).with_suffix(".gif"), **kw)

    evaluation.side_by_side_video = gif  # type: ignore[assignment]
    from noether_rl.recorders import recorder

    recorder.write_preview = lambda path, frames, *a, **k: None  # type: ignore[assignment]  # no preview mp4


def _ramp_cfg(args: argparse.Namespace, seeds: tuple[int, ...]):  # type: ignore[no-untyped-def]
    from noether_rl.experiments.ramp_video import RampVideoConfig

    return RampVideoConfig(out=str(args.ramp_dir), synthetic=True, scale=args.scale, seeds=seeds, device=args.device,
                           progress=False)


def ramp_seed(args: argparse.Namespace) -> None:
    from noether_rl.experiments.ramp_video import run_ramp_video

    _gif_instead_of_mp4()
    run_ramp_video(_ramp_cfg(args, tuple(args.seeds)))


def _run(cmd: list[str], deadline: float, log: Path) -> int:
    left = max(1.0, deadline - time.time())
    with open(log, "a") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=left).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[gpu_session] stopped at the deadline: {cmd}\n")
            return 124


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", default="small")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--deadline-s", type=float, default=480.0, help="wall seconds for the whole session")
    p.add_argument("--ramp-dir", type=Path, default=Path("/tmp/ramp_gpu"))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU")
    p.add_argument("--only", choices=["mpc", "ramp", "mpc-graph"], default=None)
    p.add_argument("--ramp-seed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dry_run:
        args.device, args.scale = "cpu", "tiny"
    if args.ramp_seed:
        ramp_seed(args)
        return
    t0 = time.time()
    deadline = t0 + args.deadline_s
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    py = sys.executable
    env_info = {"python": sys.version}
    try:
        import torch

        env_info |= {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    except ImportError:
        pass
    stages: dict[str, float] = {}
    if args.only in (None, "mpc"):
        t = time.time()
        for prec in ("float32", "bfloat16"):
            cmd = [py, str(ROOT / "benchmarks" / "mpc_speed.py"), "--device", args.device, "--repeats", "5",
                   "--modes", "untailored", "shared", "--precision", prec, "--out", str(args.out / f"mpc_gpu_{prec}.json")]
            cmd += (["--scale", "small", "--population", "16", "--horizon", "4", "--iterations", "1", "--repeats", "1"]
                    if args.dry_run else ["--scale", "paper", "--population", "256", "--horizon", "15",
                                          "--iterations", "3"])
            _run(cmd, min(deadline, time.time() + 150), log)
        stages["mpc"] = time.time() - t
    if args.only == "mpc-graph":
        t = time.time()
        cmd = [py, str(ROOT / "benchmarks" / "mpc_speed.py"), "--device", args.device, "--compare-graph",
               "--out", str(args.out / "mpc_graph.json")]
        cmd += (["--scale", "small", "--population", "16", "--horizon", "4", "--iterations", "1", "--repeats", "2",
                 "--deadline-s", "100"] if args.dry_run else
                ["--scale", "paper", "--population", "256", "--horizon", "15", "--iterations", "3", "--repeats", "7",
                 "--precisions", "float32", "bfloat16", "--deadline-s", "150"])
        rc = _run(cmd, min(deadline, time.time() + 200), log)
        stages["mpc_graph"] = time.time() - t
        stages["mpc_graph_rc"] = rc
    if args.only in (None, "ramp"):
        t = time.time()
        sys.path.insert(0, str(ROOT))
        from noether_rl.experiments.ramp_video import _data

        _gif_instead_of_mp4()
        cfg = _ramp_cfg(args, tuple(args.seeds))
        _data(cfg, cfg.spec)  # record once, before the seed processes share it
        stages["ramp_record"] = time.time() - t
        t = time.time()
        base = [py, str(Path(__file__).resolve()), "--ramp-seed", "--out", str(args.out), "--device", args.device,
                "--scale", args.scale, "--ramp-dir", str(args.ramp_dir)]
        procs = [subprocess.Popen(base + ["--seeds", str(s)], stdout=open(args.out / f"seed{s}.log", "w"),
                                  stderr=subprocess.STDOUT) for s in args.seeds]
        for pr in procs:
            try:
                pr.wait(timeout=max(1.0, deadline - 45 - time.time()))
            except subprocess.TimeoutExpired:
                pr.kill()
        stages["ramp_seeds"] = time.time() - t
        t = time.time()
        if all(pr.returncode == 0 for pr in procs):
            _run(base + ["--seeds", *map(str, args.seeds)], deadline - 20, log)
        stages["ramp_pool"] = time.time() - t
        with tarfile.open(args.out / "ramp.tar.gz", "w:gz") as tar:
            for f in sorted(args.ramp_dir.rglob("*")):
                rel = f.relative_to(args.ramp_dir)
                if f.is_file() and rel.parts[0] != "data" and f.name != "last.pt" and f.stat().st_size < 8e6:
                    tar.add(f, arcname=str(rel))
        for s in args.seeds:  # the logs go into one file (at most 8 files come back)
            lf = args.out / f"seed{s}.log"
            if lf.exists():
                with open(log, "a") as f:
                    f.write(f"\n==== seed {s} ====\n" + lf.read_text()[-6000:])
                lf.unlink()
    (args.out / "session.json").write_text(json.dumps({"env": env_info, "stage_wall_s": stages,
                                                       "total_wall_s": time.time() - t0}, indent=1))
    print(json.dumps(stages), flush=True)
    print(open(log).read()[-4000:] if log.exists() else "", flush=True)
    os.sync()


if __name__ == "__main__":
    main()
