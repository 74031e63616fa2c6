"""Argument groups shared by the training/evaluation subcommands, and their translation to configs."""

from __future__ import annotations

import argparse
from pathlib import Path

from noether_rl.cli import argtypes
from noether_rl.data import load_manifest
from noether_rl.errors import UserError
from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig
from noether_rl.training import DataConfig


def positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="recording directory written by `noether-rl record`")
    p.add_argument("--n-past", type=positive_int, default=4, help="context frames (paper: 4)")
    p.add_argument("--n-future", type=positive_int, default=26, help="predicted frames (paper: 26)")
    p.add_argument("--train-episodes", type=positive_int, default=5, help="first K episodes train (paper: 5)")
    p.add_argument("--device", type=argtypes.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=argtypes.seed, default=0)


def add_train_args(p: argparse.ArgumentParser, epochs: int) -> None:
    add_data_args(p)
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.csv, tb/)")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="passes over all training windows")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=argtypes.positive_float, default=2e-3, help="predictor learning rate (Adam)")
    p.add_argument("--stride", type=positive_int, default=1, help="stride between training windows")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--resume", action="store_true", default=True,
                   help="continue the run in --out from its last checkpoint (the default; rerun after a kill)")
    p.add_argument("--no-resume", action="store_true", help="start over, overwriting the run in --out")
    # model
    p.add_argument("--encoder", choices=["dcgan", "vgg"], default="dcgan")
    p.add_argument("--width", type=positive_int, default=64, help="base conv filters")
    p.add_argument("--g-dim", type=positive_int, default=128)
    p.add_argument("--rnn-size", type=positive_int, default=256)
    p.add_argument("--rnn-layers", type=positive_int, default=2)
    p.add_argument("--norm", choices=["batch", "group", "layer", "none"], default="batch")
    p.add_argument("--stochastic", action="store_true", help="SVG-LP (learned prior/posterior)")
    p.add_argument("--skip-from", choices=["last", "svg"], default="last",
                   help="skip connections from the last context frame, or SVG's original n_past-2")


def add_noether_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init-from", help="checkpoint of a trained SVG to start from (paper: SVG trained 50 epochs)")
    p.add_argument("--train-predictor", action="store_true", help="also update the predictor (paper pendulum: frozen)")
    p.add_argument("--emb-lr", type=argtypes.positive_float, default=1e-3, help="g_phi learning rate (Adam)")
    p.add_argument("--emb-dim", type=positive_int, default=64)
    p.add_argument("--inner-steps", type=positive_int, default=1)
    p.add_argument("--inner-lr", type=argtypes.positive_float, default=1.0,
                   help="inner step size (with normalisation: length of the step in activation space)")
    p.add_argument("--no-normalize", action="store_true",
                   help="plain SGD inner step lr*grad instead of the per-example normalised gradient")
    p.add_argument("--learn-inner-lr", action="store_true", help="meta-learn the inner lr (Meta-SGD)")
    p.add_argument("--inner-optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--order", choices=["first", "second"], default="second")
    p.add_argument("--adapt", choices=["lstm", "cn"], default="lstm", help="what the inner step adapts")
    p.add_argument("--adapt-target", choices=["hidden", "cell", "output"], default="hidden",
                   help="which LSTM activations are modulated (--adapt lstm)")
    p.add_argument("--form", choices=["a", "b"], default="a", help="Noether loss 2(a) or 2(b)")
    p.add_argument("--distance", choices=["mse", "cosine"], default="mse")
    p.add_argument("--only-on-improvement", action="store_true")


def data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(root=str(args.data), n_past=args.n_past, n_future=args.n_future,
                      train_episodes=args.train_episodes, stride=getattr(args, "stride", 1))


def recording_shape(root: str | Path) -> tuple[int, int]:
    """-> (image size, action dim) of a recording."""
    if not Path(root, "manifest.json").is_file():
        raise UserError(f"{root} is not a recording (no manifest.json); run `noether-rl record` first")
    m = load_manifest(root)
    return int(m["size"]), int(m.get("action_dim", 1))


def model_config(args: argparse.Namespace) -> SVGConfig:
    size, action_dim = recording_shape(args.data)
    return SVGConfig(image_size=size, channels=3, encoder=args.encoder, width=args.width, g_dim=args.g_dim,
                     rnn_size=args.rnn_size, rnn_layers=args.rnn_layers, action_dim=action_dim,
                     stochastic=args.stochastic, norm=args.norm, cn=getattr(args, "adapt", "lstm") == "cn",
                     skip_from=args.skip_from, adapt_target=getattr(args, "adapt_target", "hidden"))


def noether_config(args: argparse.Namespace, image_size: int) -> NoetherConfig:
    return NoetherConfig(
        embedding=EmbeddingConfig(kind="conv", channels=3, image_size=image_size, emb_dim=args.emb_dim),
        tailor=TailorConfig(steps=args.inner_steps, lr=args.inner_lr, optimizer=args.inner_optimizer,
                            order=args.order, only_on_improvement=args.only_on_improvement,
                            normalize=args.inner_optimizer == "sgd" and not args.no_normalize),
        adapt=args.adapt, form=args.form, distance=args.distance, learn_inner_lr=args.learn_inner_lr,
    )
