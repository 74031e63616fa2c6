"""``noether-rl evaluate``: per-step metrics of trained models on held-out windows."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes
from noether_rl.cli.common import add_data_args, positive_int
from noether_rl.errors import UserError
from noether_rl.experiments.evaluation import EvalConfig, evaluate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate checkpoints on held-out windows (results.json, plots, video)")
    add_data_args(p)
    p.add_argument("models", nargs="+", metavar="NAME=CHECKPOINT", help="e.g. svg=runs/svg/last.pt noether=runs/noether/last.pt")
    p.add_argument("--out", required=True)
    p.add_argument("--stride", type=positive_int, default=5, help="stride between held-out windows")
    p.add_argument("--max-windows", type=positive_int, default=512)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--inner-steps", type=argtypes.non_negative_int, help="override the Noether models' inner steps")
    p.add_argument("--inner-lr", type=argtypes.positive_float,
                   help="override the Noether models' inner learning rate")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs locally installed weights)")
    p.add_argument("--no-video", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpts = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"model {item!r} must be given as NAME=CHECKPOINT")
        if name in ckpts:
            raise UserError(f"model name {name!r} is given twice ({ckpts[name]} and {path}); give each model its own NAME")
        ckpts[name] = path
    cfg = EvalConfig(data=args.data, checkpoints=ckpts, out=args.out, n_past=args.n_past, n_future=args.n_future,
                     train_episodes=args.train_episodes, stride=args.stride, max_windows=args.max_windows,
                     batch_size=args.batch_size, seed=args.seed, device=args.device, video=not args.no_video,
                     lpips=args.lpips, inner_steps=args.inner_steps, inner_lr=args.inner_lr)
    res = evaluate(cfg)
    for name, s in res["models"].items():
        m = s["metrics"]
        print(f"{name}: mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}  ssim {m['ssim']['mean']:.4f}  psnr {m['psnr']['mean']:.2f}")
    print(f"results: {args.out}/results.json")
    return 0
