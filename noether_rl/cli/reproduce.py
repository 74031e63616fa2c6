"""``noether-rl reproduce EXPERIMENT``: paper experiments with one command."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes
from noether_rl.experiments.pendulum_video import SCALES, PendulumVideoConfig, run_pendulum_video


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce a paper experiment")
    exp = p.add_subparsers(dest="experiment", required=True, parser_class=type(p))
    pv = exp.add_parser("pendulum-video", help="controlled pendulum video prediction (paper Fig. 3)")
    pv.add_argument("--out", required=True)
    pv.add_argument("--scale", choices=sorted(SCALES), default="small",
                    help="paper: 64x64, full SVG, 50+20 epochs (GPU); small: 32x32, narrower, fewer epochs (CPU)")
    pv.add_argument("--seeds", type=argtypes.seed, nargs="+", default=[0, 1, 2])
    pv.add_argument("--data", help="reuse this recording (recorded there if missing)")
    pv.add_argument("--device", type=argtypes.device, default="auto")
    pv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = run_pendulum_video(PendulumVideoConfig(out=args.out, scale=args.scale, seeds=tuple(args.seeds), data=args.data,
                                                 device=args.device))
    for name, a in res["aggregate"].items():
        m = a["metrics"]
        print(f"{name:18s} mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}   ssim {m['ssim']['mean']:.4f} ± {m['ssim']['se']:.4f}")
    v = res["verdict"]
    print(f"Noether/SVG mse {v['noether_mse_over_svg']:.3f}, Noether/SVG(more) mse {v['noether_mse_over_svg_more']:.3f}; "
          f"accepted: {v['accepted']}")
    print(f"results: {args.out}/results.json")
    return 0
