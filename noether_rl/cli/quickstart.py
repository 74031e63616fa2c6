"""``noether-rl quickstart``: the end-to-end main job on a small embedded default."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes
from noether_rl.experiments.quickstart import QuickstartConfig, run_quickstart


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="record a small pendulum set, train SVG + Noether, evaluate both")
    p.add_argument("--out", default="quickstart", help="output directory (rerun to resume)")
    p.add_argument("--device", type=argtypes.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the recording, weights and data order")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = run_quickstart(QuickstartConfig(out=args.out, device=args.device, seed=args.seed, progress=not args.no_progress))
    for name, m in report["models"].items():
        print(f"{name:8s} mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}   ssim {m['ssim']['mean']:.4f}   psnr {m['psnr']['mean']:.2f}")
    print(f"report: {args.out}/report.json  ({report['wall_time_s']['total']:.0f} s on {report['device']})")
    return 0
