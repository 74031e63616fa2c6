"""``noether-rl meta-train``: learn g_phi with Alg. 1 (tailoring inside the training step)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from noether_rl.cli.common import add_noether_args, add_train_args, data_config, model_config, noether_config
from noether_rl.training import TrainConfig, train
from noether_rl.training.loading import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("meta-train", help="meta-train a Noether Network (paper Alg. 1)")
    add_train_args(p, epochs=20)
    add_noether_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = model_config(args)
    if args.init_from:  # the predictor's architecture comes from the checkpoint; how it is tailored from the flags
        model = replace(load_model(args.init_from).config.model, cn=args.adapt == "cn", adapt_target=args.adapt_target)
    cfg = TrainConfig(out=args.out, data=data_config(args), model=model,
                      noether=noether_config(args, model.image_size), init_from=args.init_from,
                      train_predictor=args.train_predictor or not args.init_from, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, emb_lr=args.emb_lr, seed=args.seed,
                      device=args.device, amp=not args.no_amp, resume=not args.no_resume)
    path = train(cfg)
    print(f"checkpoint: {path}")
    return 0
