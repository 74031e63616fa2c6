"""``noether-rl analyze``: the paper's embedding (Fig. 5) and inner-step (Fig. 6) analyses of a checkpoint."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes

_HELP = {
    "embedding": "PCA of g_phi's embeddings of held-out frames (variance table) and Grad-CAM maps of the leading "
                 "components (gradcam.png)",
    "inner-steps": "optimise the inner loss with Adam for many steps and plot the outer loss against the steps",
}


def _common(p: argparse.ArgumentParser, max_windows: int) -> None:
    from noether_rl.eval.analysis import AnalyzeConfig

    d = AnalyzeConfig(checkpoint="", data="", out="")
    p.add_argument("--checkpoint", required=True, help="a Noether Network checkpoint (meta-train output)")
    p.add_argument("--data", required=True, help="recording to take held-out windows from (`noether-rl record`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for the JSON and figures")
    p.add_argument("--split", choices=["val", "test"], default=d.split,
                   help="the checkpoint's own val or test episodes (windows it trained on are refused)")
    p.add_argument("--stride", type=argtypes.positive_int, default=d.stride, help="stride between windows")
    p.add_argument("--max-windows", type=argtypes.positive_int, default=max_windows,
                   help="seeded subset of at most this many windows")
    p.add_argument("--seed", type=argtypes.seed, default=d.seed, help="seed of the window subset and the noise")
    p.add_argument("--device", type=argtypes.device, default=d.device, help="auto | cpu | cuda | cuda:N")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noether_rl.eval.analysis import AnalyzeConfig

    d = AnalyzeConfig(checkpoint="", data="", out="")
    p = sub.add_parser("analyze", help="embedding PCA + Grad-CAM, or outer loss vs inner steps, of a checkpoint",
                       description="Analyses of a trained Noether Network (paper Figs. 5 and 6).")
    kinds = p.add_subparsers(dest="analysis", required=True, metavar="{embedding,inner-steps}")
    e = kinds.add_parser("embedding", help=_HELP["embedding"], description=_HELP["embedding"])
    _common(e, d.max_windows)
    e.add_argument("--components", type=argtypes.positive_int, default=d.components,
                   help="leading PCA components shown as Grad-CAM maps")
    e.add_argument("--sequences", type=argtypes.positive_int, default=d.sequences, help="windows shown in the grid")
    e.add_argument("--times", type=argtypes.non_negative_int, nargs="+", default=list(d.times),
                   help="time steps (g_phi input indices) shown per window")
    e.set_defaults(func=run)
    i = kinds.add_parser("inner-steps", help=_HELP["inner-steps"], description=_HELP["inner-steps"])
    _common(i, 16)
    i.add_argument("--steps", type=argtypes.positive_int, default=d.steps, help="Adam inner steps (paper: 500)")
    i.add_argument("--lr", type=argtypes.positive_float, default=d.lr, help="Adam inner learning rate")
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noether_rl.eval.analysis import AnalyzeConfig, analyze_embedding, analyze_inner_steps

    common = dict(checkpoint=args.checkpoint, data=args.data, out=args.out, split=args.split, stride=args.stride,
                  max_windows=args.max_windows, seed=args.seed, device=args.device)
    if args.analysis == "embedding":
        cfg = AnalyzeConfig(**common, components=args.components, sequences=args.sequences, times=tuple(args.times))
        res = analyze_embedding(cfg)
        shares = ", ".join(f"{100 * r['explained']:.1f}%" for r in res["variance"][:4])
        print(f"PCA of {res['n_embeddings']} embeddings ({res['embedding_dim']}-d, {res['split']} split): "
              f"first components explain {shares}; first four {100 * res['first_four']:.1f}%")
        print(f"written: {args.out}/embedding_pca.json, embedding_variance.csv, gradcam.png")
        return 0
    cfg = AnalyzeConfig(**common, steps=args.steps, lr=args.lr)
    res = analyze_inner_steps(cfg)
    b, last = res["change_at_best"], res["change_at_last"]
    print(f"outer MSE {res['outer_at_0']:.4g} at 0 steps; change {b['mean']:+.3g} ± {b['se']:.2g} at step "
          f"{res['best_step']}, {last['mean']:+.3g} ± {last['se']:.2g} at step {args.steps} (paired, ± se over "
          f"{res['n_episodes']} episodes of {res['n_windows']} {res['split']} windows)")
    print(f"written: {args.out}/inner_steps.json, inner_steps.png")
    return 0
