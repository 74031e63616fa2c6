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
from noether_rl.training import DataConfig, TrainConfig


def positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


_D, _T, _M, _E, _N = DataConfig(), TrainConfig(out=""), SVGConfig(), EmbeddingConfig(), NoetherConfig()
_TC = _N.tailor  # the shipped inner-loop defaults


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="recording directory written by `noether-rl record`")
    p.add_argument("--n-past", type=positive_int, default=_D.n_past, help="context frames (paper: 4)")
    p.add_argument("--n-future", type=positive_int, default=_D.n_future, help="predicted frames (paper: 26)")
    p.add_argument("--train-episodes", type=positive_int, default=_D.train_episodes,
                   help="the first K episodes train (paper: 5)")
    p.add_argument("--val-episodes", type=argtypes.non_negative_int, default=_D.val_episodes,
                   help="the next K episodes are the validation split (selection, per-epoch validation); the rest test")
    p.add_argument("--device", type=argtypes.device, default=_T.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=argtypes.seed, default=_T.seed, help="seed of weights, data order and sampling")


def add_train_args(p: argparse.ArgumentParser, epochs: int) -> None:
    add_data_args(p)
    p.add_argument("--out", required=True, help="run directory (last.pt, metrics.csv, tb/); rerun to resume")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="passes over all training windows")
    p.add_argument("--batch-size", type=positive_int, default=_T.batch_size, help="global batch size")
    p.add_argument("--lr", type=argtypes.positive_float, default=_T.lr, help="predictor learning rate (Adam)")
    p.add_argument("--stride", type=positive_int, default=_D.stride, help="stride between training windows")
    p.add_argument("--val-windows", type=argtypes.non_negative_int, default=_T.val_windows,
                   help="validation windows scored after each epoch (needs --val-episodes; 0 = off)")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--no-resume", action="store_true",
                   help="start over, deleting the run in --out (by default a rerun resumes it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs (metrics.csv only)")
    # model
    p.add_argument("--encoder", choices=["dcgan", "vgg"], default=_M.encoder, help="SVG encoder/decoder family")
    p.add_argument("--width", type=positive_int, default=_M.width, help="base number of conv filters")
    p.add_argument("--g-dim", type=positive_int, default=_M.g_dim, help="frame code size")
    p.add_argument("--rnn-size", type=positive_int, default=_M.rnn_size, help="LSTM width")
    p.add_argument("--rnn-layers", type=positive_int, default=_M.rnn_layers, help="LSTM layers")
    p.add_argument("--norm", choices=["layer", "group", "batch", "none"], default=_M.norm,
                   help="normalisation (batch norm couples the examples of a batch)")
    p.add_argument("--stochastic", action="store_true", help="SVG-LP (learned prior/posterior)")
    p.add_argument("--skip-from", choices=["last", "svg"], default=_M.skip_from,
                   help="skip connections from the last context frame, or SVG's original n_past-2")


def add_noether_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init-from", help="checkpoint of a trained SVG to start from (paper: SVG trained 50 epochs); "
                   "the predictor's architecture comes from it")
    p.add_argument("--train-predictor", action="store_true", help="also update the predictor (paper pendulum: frozen)")
    p.add_argument("--emb-lr", type=argtypes.positive_float, default=_T.emb_lr, help="g_phi learning rate (Adam)")
    p.add_argument("--emb-dim", type=positive_int, default=_E.emb_dim, help="g_phi output size")
    p.add_argument("--inner-steps", type=positive_int, default=_TC.steps, help="inner (tailoring) steps K")
    p.add_argument("--inner-lr", type=argtypes.positive_float, default=_TC.lr,
                   help="inner lr (its meaning depends on --step-rule; the initial value with --learn-inner-lr)")
    p.add_argument("--step-rule", choices=["sgd", "normalized", "polyak"], default=_TC.step_rule,
                   help="inner SGD step (sgd optimizer only): plain lr*g (paper), normalised lr*g/|g|, or trust-region Polyak")
    p.add_argument("--learn-inner-lr", action="store_true", help="meta-learn the inner lr (Meta-SGD)")
    p.add_argument("--inner-optimizer", choices=["sgd", "adam"], default=_TC.optimizer, help="inner optimiser")
    p.add_argument("--order", choices=["first", "second"], default=_TC.order, help="meta-gradient order")
    p.add_argument("--adapt", choices=["hidden", "cell", "code", "hidden_per_step", "cell_per_step",
                                       "code_per_step", "cn"], default=_N.adapt,
                   help="what the inner step adapts: LSTM hidden/cell states, the decoder's input code, or CN")
    p.add_argument("--form", choices=["a", "b"], default=_N.form, help="Noether loss 2(a) or 2(b)")
    p.add_argument("--distance", choices=["mse", "cosine"], default=_N.distance, help="embedding distance")
    p.add_argument("--only-on-improvement", action="store_true",
                   help="keep an example's inner step only if its inner loss went down")


def data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(root=str(args.data), n_past=args.n_past, n_future=args.n_future,
                      train_episodes=args.train_episodes, val_episodes=args.val_episodes,
                      stride=getattr(args, "stride", _D.stride))


def run_options(args: argparse.Namespace) -> dict:
    """TrainConfig fields shared by train and meta-train."""
    return dict(out=args.out, data=data_config(args), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, device=args.device, amp=not args.no_amp, resume=not args.no_resume,
                progress=not args.no_progress, tensorboard=not args.no_tensorboard, val_windows=args.val_windows)


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
                     stochastic=args.stochastic, norm=args.norm, skip_from=args.skip_from)


_MODEL_FLAGS = ("encoder", "width", "g_dim", "rnn_size", "rnn_layers", "norm", "stochastic", "skip_from")


def check_model_flags(args: argparse.Namespace, model: SVGConfig, source: str) -> None:
    """Refuse model flags that were changed from their defaults and contradict ``model`` (from ``source``)."""
    for name in _MODEL_FLAGS:
        given, default, theirs = getattr(args, name), getattr(_M, name), getattr(model, name)
        if given != default and given != theirs:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {given} contradicts {source}, which has {name}={theirs}; drop {flag} "
                            "(the predictor's architecture comes from the checkpoint)")


def embedding_config(args: argparse.Namespace, image_size: int) -> EmbeddingConfig:
    return EmbeddingConfig(kind="conv", channels=3, image_size=image_size, emb_dim=args.emb_dim)


def noether_config(args: argparse.Namespace) -> NoetherConfig:
    sgd = args.inner_optimizer == "sgd"
    if not sgd and args.step_rule != _TC.step_rule:
        raise UserError(f"--step-rule {args.step_rule} applies to --inner-optimizer sgd only (Adam is scale-free)")
    try:
        tailor = TailorConfig(steps=args.inner_steps, lr=args.inner_lr, optimizer=args.inner_optimizer, order=args.order,
                              only_on_improvement=args.only_on_improvement, step_rule=args.step_rule if sgd else "sgd")
        return NoetherConfig(tailor=tailor, adapt=args.adapt, form=args.form, distance=args.distance,
                             learn_inner_lr=args.learn_inner_lr)
    except ValueError as e:
        raise UserError(str(e)) from None
