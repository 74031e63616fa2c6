"""``noether-rl reproduce EXPERIMENT``: paper experiments with one command."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from noether_rl.cli import argtypes
from noether_rl.experiments.pendulum_video import SCALES, PendulumVideoConfig, run_pendulum_video

# what every experiment's --scale names mean (the scale tables themselves live next to each experiment)
SCALE_ROLES = {"small": "the CPU default", "small-long": "a longer CPU recipe", "paper": "the paper's size, for a GPU",
               "tiny": "a smoke test"}


def scale_help(scales: Mapping[str, Any], describe: Callable[[Any], str]) -> str:
    """--help text of a ``--scale`` option: one entry per scale, from the experiment's own scale table."""
    names = [n for n in SCALE_ROLES if n in scales] + [n for n in scales if n not in SCALE_ROLES]
    return "; ".join(f"{n} ({SCALE_ROLES.get(n, 'custom')}): {describe(scales[n])}" for n in names)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce a paper experiment")
    exp = p.add_subparsers(dest="experiment", required=True, parser_class=type(p))
    pv = exp.add_parser("pendulum-video", help="controlled pendulum video prediction (paper Fig. 3)")
    pv.add_argument("--out", required=True, help="output directory (results.json, plots, video); rerun to resume")
    pv.add_argument("--scale", choices=sorted(SCALES), default=PendulumVideoConfig.scale,
                    help=scale_help(SCALES, lambda s: f"{s.size}x{s.size} frames, SVG width {s.width}, LSTM "
                                                      f"{s.rnn_size}, g_phi width {s.emb_width}; {s.svg_epochs} SVG + "
                                                      f"{s.meta_epochs} meta epochs"))
    pv.add_argument("--seeds", type=argtypes.seed, nargs="+", default=list(PendulumVideoConfig.seeds),
                    help="training seeds")
    pv.add_argument("--data", metavar="DIR",
                    help="reuse this existing recording (another run's OUT/data, or `noether-rl record --policy "
                         "swingup` at the scale's frame size); without --data one is recorded under OUT/data")
    pv.add_argument("--device", type=argtypes.device, default=PendulumVideoConfig.device,
                    help="auto | cpu | cuda | cuda:N")
    pv.add_argument("--no-progress", action="store_true", help="no progress bars")
    pv.set_defaults(func=run)
    from noether_rl.experiments.statespace import StatespaceConfig

    ss = exp.add_parser("statespace", help="state-space spring / pendulum / real pendulum (paper Tables 1-2, Fig. 2)")
    ss.add_argument("--system", choices=["spring", "pendulum", "real", "all"], default="all",
                    help="all = spring, pendulum and, when --data is given, the real pendulum (without --data "
                         "'all' runs the two ideal systems and says so); real needs --data")
    ss.add_argument("--data", help="real-pendulum measurements (real_pend_h_1.txt format, read from this path, "
                                   "never copied); required for --system real, makes --system all include it")
    ss.add_argument("--seeds", type=argtypes.seed, nargs="+", default=list(StatespaceConfig.seeds),
                    help="seeds (weights; for the ideal systems also the data draw)")
    ss.add_argument("--out", required=True, help="output directory (results.json, plots); rerun to resume")
    ss.add_argument("--workers", type=argtypes.non_negative_int, default=StatespaceConfig.workers,
                    help="parallel (system, seed) runs, one thread each; 0 = auto (up to 2), 1 = no subprocesses")
    ss.add_argument("--no-progress", action="store_true", help="no progress bars")
    ss.set_defaults(func=run_statespace_cli)
    from noether_rl.cli.plan import add_pendulum_control_parser

    add_pendulum_control_parser(exp)
    from noether_rl.cli.ramp_video import add_ramp_video_parser

    add_ramp_video_parser(exp)


def run(args: argparse.Namespace) -> int:
    res = run_pendulum_video(PendulumVideoConfig(out=args.out, scale=args.scale, seeds=tuple(args.seeds), data=args.data,
                                                 device=args.device, progress=not args.no_progress))
    for name, a in res["models"].items():
        m = a["metrics"]
        angle = f"   angle {m['angle_error']['mean']:.1f}°" if "angle_error" in m else ""
        print(f"{name:30s} mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}   ssim {m['ssim']['mean']:.4f}{angle}")
    for r in res["verdict"]["rows"]:
        if r["subset"] == "all" and r["metric"] == "mse":
            print(f"Noether - {r['control']:30s} mse {r['diff']:+.6f} ± {r['se']:.6f}  {'better' if r['better'] else '-'}")
    t = res["verdict"]["target"]
    ratios = ", ".join(f"{c} {v['mse_ratio']:.3f}" for c, v in t["per_control"].items())
    print(f"acceptance target ({t['rule']}): {'met' if t['met'] else 'NOT met'}; MSE ratio vs {ratios}")
    print(f"results: {args.out}/results.json")
    return 0


def run_statespace_cli(args: argparse.Namespace) -> int:
    from noether_rl.experiments.statespace import StatespaceConfig, format_summary, run_statespace

    systems = ("spring", "pendulum", "real") if args.system == "all" else (args.system,)
    if args.system == "all" and not args.data:
        systems = ("spring", "pendulum")
        print("reproduce statespace: no --data given, skipping the real pendulum")
    res = run_statespace(StatespaceConfig(out=args.out, systems=systems, data=args.data, seeds=tuple(args.seeds),
                                          progress=not args.no_progress, workers=args.workers))
    print(format_summary(res))
    print(f"results: {args.out}/results.json")
    return 0
