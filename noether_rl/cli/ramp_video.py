"""``noether-rl reproduce ramp-video``: the paper's real-video experiment (Fig. 4); its parser, added by
``cli/reproduce.py``."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes


def add_ramp_video_parser(exp: argparse._SubParsersAction) -> None:
    from noether_rl.cli.reproduce import scale_help
    from noether_rl.experiments.ramp_video import SCALES, RampVideoConfig

    p = exp.add_parser("ramp-video", help="SVG-LP vs Noether (CN tailoring) on Physics 101 ramp videos or the "
                                          "synthetic ramp (paper Fig. 4)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", help="a Physics 101 copy (phys101/scenarios/ramp/...); see "
                                                   "noether_rl.data.physics101 for where to get it")
    src.add_argument("--synthetic", action="store_true", help="record the synthetic ramp (SyntheticRamp-v0) instead")
    p.add_argument("--scale", choices=sorted(SCALES), default=RampVideoConfig.scale,
                   help=scale_help(SCALES, lambda s: f"{s.size}x{s.size} frames, {s.encoder.upper()} width {s.width}, "
                                                     f"{s.svg_epochs} SVG + {s.extra_epochs} extra epochs"))
    p.add_argument("--seeds", type=argtypes.seed, nargs="+", default=list(RampVideoConfig.seeds),
                   help="training seeds")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (rerun to resume)")
    p.add_argument("--device", type=argtypes.device, default=RampVideoConfig.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs locally installed weights)")
    p.add_argument("--cache-dir", help="decoded-video cache for Physics 101 (default OUT/video_cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noether_rl.experiments.ramp_video import RampVideoConfig, run_ramp_video

    res = run_ramp_video(RampVideoConfig(out=args.out, data=args.data, synthetic=args.synthetic, scale=args.scale,
                                         seeds=tuple(args.seeds), device=args.device, lpips=args.lpips,
                                         cache_dir=args.cache_dir, progress=not args.no_progress))
    for name, s in res["models"].items():
        m = s["metrics"]
        print(f"{name:22s} mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}   ssim {m['ssim']['mean']:.4f} ± "
              f"{m['ssim']['se']:.4f}")
    for r in res["verdict_rows"]:
        print(f"Noether - {r['control']}: {r['metric']} {r['diff']:+.5f} ± {r['se']:.5f} "
              f"({r['n_episodes']} sequences, {r['n_seeds']} seeds){' significant' if r['significant'] else ''}")
    print(f"results: {args.out}/results.json")
    return 0
