"""``noether-rl meta-train``: learn g_phi with Alg. 1 (tailoring inside the training step)."""

from __future__ import annotations

import argparse

from noether_rl.cli.common import (
    add_noether_args,
    add_train_args,
    check_model_flags,
    embedding_config,
    model_config,
    noether_config,
    run_options,
)
from noether_rl.training import TrainConfig, train
from noether_rl.training.loading import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("meta-train", help="meta-train a Noether Network (paper Alg. 1)")
    add_train_args(p, epochs=20)
    add_noether_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the predictor's architecture comes from --init-from when given (a conflicting model flag is refused)
    model = load_model(args.init_from).config.model if args.init_from else model_config(args)
    if args.init_from:
        check_model_flags(args, model, args.init_from)
    cfg = TrainConfig(model=model, noether=noether_config(args), embedding=embedding_config(args, model.image_size),
                      init_from=args.init_from, train_predictor=args.train_predictor or not args.init_from,
                      emb_lr=args.emb_lr, **run_options(args))
    path = train(cfg)
    print(f"checkpoint: {path}")
    return 0
