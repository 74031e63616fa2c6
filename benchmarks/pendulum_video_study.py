"""Selection study for the Fig. 3 Noether configuration, scored on VALIDATION windows only.

    python benchmarks/pendulum_video_study.py RUN_DIR VARIANT [--out DIR] [--epochs N]

RUN_DIR is the --out of `noether-rl reproduce pendulum-video` (its data/ and seed0/svg are reused). Each
variant meta-trains one Noether Network from the seed-0 SVG and scores it, the SVG and the copy-last floor on
windows of the validation episodes (never the test episodes that `reproduce` reports), with paired
episode-level differences against the SVG. VARIANT is one of the names in ``variants()`` (the inner step rule
ablation: sgd / normalized / polyak; what is adapted; loss form; inner lr) or "eval_lr" (an evaluation-time
inner-lr sweep with RUN_DIR's trained g_phi, plus a random g_phi).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from noether_rl.data import episode_split, load_manifest
from noether_rl.eval.stats import compare
from noether_rl.experiments.evaluation import COPY_LAST, eval_windows, make_predict, score_predictors
from noether_rl.experiments.pendulum_video import PendulumVideoConfig, _configs
from noether_rl.models import NoetherEmbedding
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig
from noether_rl.training import train
from noether_rl.training.loading import load_model


def variants(base: NoetherConfig) -> dict[str, NoetherConfig]:
    r = dataclasses.replace
    return {
        "default": base,
        "sgd_learned_lr": r(base, tailor=r(base.tailor, step_rule="sgd", lr=1e-2), learn_inner_lr=True),
        "normalized_fixed_lr": r(base, tailor=r(base.tailor, step_rule="normalized", lr=1.0), learn_inner_lr=False),
        "polyak": r(base, tailor=TailorConfig(steps=1, lr=1.0, step_rule="polyak", trust_radius=1.0)),
        "polyak_learned_lr": r(base, tailor=TailorConfig(steps=1, lr=1.0, step_rule="polyak"), learn_inner_lr=True),
        "hidden": r(base, adapt="hidden"),
        "cell": r(base, adapt="cell"),
        "form_b": r(base, form="b"),
        "steps2": r(base, tailor=r(base.tailor, steps=2, lr=base.tailor.lr / 2)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("variant")
    ap.add_argument("--out", default="study")
    ap.add_argument("--epochs", type=int, default=None, help="meta epochs (default: the scale's)")
    ap.add_argument("--scale", default="small")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = PendulumVideoConfig(out=str(run), scale=args.scale, progress=False)
    spec, data = cfg.spec, run / "data"
    meta = _configs(cfg, spec, data, 0)["noether"]
    split = episode_split(len(load_manifest(data)["shards"]), cfg.train_episodes, cfg.val_episodes)
    win, idx = eval_windows(str(data), split.val, cfg.n_past, cfg.n_future, spec.eval_stride, spec.eval_windows,
                            seed=0, device=torch.device("cpu"))
    svg = load_model(run / "seed0" / "svg" / "last.pt")
    out: dict[str, object] = {"variant": args.variant, "split": "val", "episodes": split.val}
    if args.variant == "eval_lr":
        m = load_model(run / "seed0" / "noether" / "last.pt")
        preds = {f"lr{lr}": make_predict(m, cfg.n_past, cfg.n_future, inner_lr=lr) for lr in (0.25, 0.5, 1.0, 2.0)}
        m_rand = load_model(run / "seed0" / "noether" / "last.pt")
        m_rand.module.embedding = NoetherEmbedding(m_rand.module.embedding.cfg)
        preds["random_g"] = make_predict(m_rand, cfg.n_past, cfg.n_future)
        preds["SVG"] = make_predict(svg, cfg.n_past, cfg.n_future)
        scored = score_predictors(preds, win, idx, cfg.n_past, 32, progress=False)
        out["rows"] = compare("SVG", [k for k in preds if k != "SVG"] + [COPY_LAST], scored.scores, metrics=("mse",),
                              subsets=["all"])
    else:
        n = variants(meta.noether)[args.variant]
        c = dataclasses.replace(meta, out=str(Path(args.out) / args.variant), noether=n, val_windows=0,
                                epochs=args.epochs or meta.epochs)
        t = time.perf_counter()
        m = load_model(train(c))
        preds = {"variant": make_predict(m, cfg.n_past, cfg.n_future), "SVG": make_predict(svg, cfg.n_past, cfg.n_future)}
        scored = score_predictors(preds, win, idx, cfg.n_past, 32, progress=False)
        rows = compare("variant", ["SVG", COPY_LAST], scored.scores, metrics=("mse", "ssim", "angle_error"),
                       subsets=["all"])
        out.update({"meta_train_s": time.perf_counter() - t, "step_rule": n.tailor.label,
                    "inner_lr": float(m.module.inner_lr()),
                    "paired_vs_svg": {r["metric"]: {"diff": r["diff"], "se": r["se"]} for r in rows
                                      if r["control"] == "SVG"}})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.variant}.json").write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out, default=float)[:2000])


if __name__ == "__main__":
    main()
