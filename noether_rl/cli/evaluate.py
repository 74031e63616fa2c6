"""``noether-rl evaluate``: per-step metrics of trained models on validation or test windows."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes
from noether_rl.cli.common import add_data_args, positive_int
from noether_rl.errors import UserError
from noether_rl.experiments.evaluation import EvalConfig, evaluate
from noether_rl.training.checkpoint import load_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate checkpoints on held-out windows (results.json, plots, video)")
    add_data_args(p)
    p.add_argument("models", nargs="+", metavar="NAME=CHECKPOINT", help="e.g. svg=runs/svg/last.pt noether=runs/noether/last.pt")
    p.add_argument("--out", required=True, help="output directory (results.json, plots, video)")
    p.add_argument("--stride", type=positive_int, default=5, help="stride between held-out windows")
    p.add_argument("--max-windows", type=positive_int, default=512, help="at most this many windows (seeded subset)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="windows per batch")
    p.add_argument("--inner-steps", type=argtypes.non_negative_int, help="override the Noether models' inner steps")
    p.add_argument("--inner-lr", type=argtypes.positive_float,
                   help="override the Noether models' inner learning rate")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs locally installed weights)")
    p.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="episodes scored: val (for every selection) or test (final reports only)")
    if "--val-episodes" not in p._option_string_actions:
        p.add_argument("--val-episodes", type=argtypes.non_negative_int,
                       help="episodes after the training ones that form the validation split")
    p.add_argument("--reference", metavar="NAME",
                   help="paired differences NAME - every other model (and the copy-last floor), and a verdict")
    p.add_argument("--no-floor", action="store_true", help="do not score the copy-last-frame floor")
    p.add_argument("--untailored", action="store_true",
                   help="also score each Noether model's prediction before its inner step")
    # the split defaults to the checkpoints' own (largest) train/val episodes, not to a fixed number
    # the split, n_past and n_future default to the checkpoints' own, not to fixed numbers
    p.set_defaults(func=run, train_episodes=None, val_episodes=None, n_past=None, n_future=None)
    for flag in ("--n-past", "--n-future", "--train-episodes", "--val-episodes"):
        action = p._option_string_actions[flag]
        action.help = f"{action.help} (default: the checkpoints' own)"


def run(args: argparse.Namespace) -> int:
    ckpts = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"model {item!r} must be given as NAME=CHECKPOINT")
        if name in ckpts:
            raise UserError(f"model name {name!r} is given twice ({ckpts[name]} and {path}); give each model its own NAME")
        ckpts[name] = path
    if args.reference is not None and args.reference not in ckpts:
        raise UserError(f"--reference {args.reference!r} is not one of the models {sorted(ckpts)}")
    n_past, n_future = _window(args, ckpts)
    cfg = EvalConfig(data=args.data, checkpoints=ckpts, out=args.out, n_past=n_past, n_future=n_future,
                     train_episodes=args.train_episodes, stride=args.stride, max_windows=args.max_windows,
                     batch_size=args.batch_size, seed=args.seed, device=args.device, video=not args.no_video,
                     lpips=args.lpips, inner_steps=args.inner_steps, inner_lr=args.inner_lr, split=args.split,
                     val_episodes=args.val_episodes, reference=args.reference, floor=not args.no_floor,
                     untailored=args.untailored)
    res = evaluate(cfg)
    for name, s in res["models"].items():
        m = s["metrics"]
        angle = f"  angle {m['angle_error']['mean']:.1f}° ± {m['angle_error']['se']:.1f}" if "angle_error" in m else ""
        print(f"{name}: mse {m['mse']['mean']:.5f} ± {m['mse']['se']:.5f}  ssim {m['ssim']['mean']:.4f}  "
              f"psnr {m['psnr']['mean']:.2f}{angle}")
    print(f"{res['split']['name']} split: {res['n_windows']} windows of {res['windows']['n_episodes']} episodes; "
          f"± = standard error over episodes; results: {args.out}/results.json")
    return 0


def _window(args: argparse.Namespace, ckpts: dict[str, str]) -> tuple[int, int]:
    """(n_past, n_future): the checkpoints' own unless given; a model is never scored with another context length
    than it was trained with (a longer horizon than trained is allowed with --n-future)."""
    trained = {}
    for name, path in ckpts.items():
        d = load_checkpoint(path)["config"].get("data", {})
        trained[name] = (int(d.get("n_past", 4)), int(d.get("n_future", 26)))
    pasts, futures = {t[0] for t in trained.values()}, {t[1] for t in trained.values()}
    n_past = args.n_past if args.n_past is not None else min(pasts)
    bad = [f"{n} (n_past={t[0]})" for n, t in trained.items() if t[0] != n_past]
    if bad:
        raise UserError(f"--n-past {n_past} differs from the context the models were trained with: {', '.join(bad)}; "
                        "evaluate models with the n_past they were trained with")
    if args.n_future is None and len(futures) > 1:
        raise UserError(f"the models were trained with different n_future {sorted(futures)}; pass --n-future")
    return n_past, args.n_future if args.n_future is not None else futures.pop()
