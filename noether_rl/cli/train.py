"""``noether-rl train``: train the (action-conditioned) SVG baseline on a recording."""

from __future__ import annotations

import argparse

from noether_rl.cli.common import add_train_args, model_config, run_options
from noether_rl.training import TrainConfig, train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the SVG baseline (teacher forcing)")
    add_train_args(p, epochs=50)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(model=model_config(args), **run_options(args))
    path = train(cfg)
    print(f"checkpoint: {path}")
    return 0
