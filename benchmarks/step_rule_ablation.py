"""Inner step-rule ablation on VALIDATION episodes (chooses ``NoetherConfig().tailor``'s default).

    python benchmarks/step_rule_ablation.py QUICKSTART_DIR [--epochs 3] [--out DIR]

Reuses a finished ``noether-rl quickstart`` (its recording and trained SVG). For each step rule -- the
paper's plain SGD with a meta-learned lr, the normalised step, the trust-region Polyak step -- meta-trains
g_phi with the same budget from the same SVG, then scores every variant, the SVG and the copy-last floor on
windows of the validation episodes (never the test episodes the quickstart reports), with paired
episode-level differences against the SVG. Writes ``step_rules.json`` and prints a table.
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
from noether_rl.experiments.evaluation import eval_windows, make_predict, score_predictors
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig
from noether_rl.training import config_from_dict, load_checkpoint, train
from noether_rl.training.loading import load_model

RULES = {
    "sgd_learned_lr": NoetherConfig(tailor=TailorConfig(lr=1e-2, step_rule="sgd"), learn_inner_lr=True),
    "normalized_lr1": NoetherConfig(tailor=TailorConfig(lr=1.0, step_rule="normalized")),
    "normalized_lr0.25": NoetherConfig(tailor=TailorConfig(lr=0.25, step_rule="normalized")),
    "polyak_lr1": NoetherConfig(tailor=TailorConfig(lr=1.0, step_rule="polyak", trust_radius=1.0)),
    "polyak_lr0.25": NoetherConfig(tailor=TailorConfig(lr=0.25, step_rule="polyak", trust_radius=1.0)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("quickstart")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    qs = Path(args.quickstart)
    out = Path(args.out or qs / "step_rules")
    meta = config_from_dict(load_checkpoint(qs / "noether" / "last.pt")["config"])
    d = meta.data
    split = episode_split(len(load_manifest(d.root)["shards"]), d.train_episodes, d.val_episodes)
    win, idx = eval_windows(d.root, split.val, d.n_past, d.n_future, 4, 256, seed=0, device=torch.device("cpu"))
    preds = {"SVG": make_predict(load_model(qs / "svg" / "last.pt"), d.n_past, d.n_future)}
    walls = {}
    for name, n in RULES.items():
        c = dataclasses.replace(meta, out=str(out / name), noether=n, epochs=args.epochs, progress=False)
        t = time.perf_counter()
        preds[name] = make_predict(load_model(train(c)), d.n_past, d.n_future)
        walls[name] = time.perf_counter() - t
    scored = score_predictors(preds, win, idx, d.n_past, 32, progress=False)
    rows = compare("SVG", [k for k in preds if k != "SVG"], scored.scores, metrics=("mse", "angle_error"),
                   subsets=["all"])
    res = {"split": "val", "episodes": split.val, "n_windows": len(idx), "epochs": args.epochs, "meta_train_s": walls,
           "models": {m: scored.scores.summary(m)["metrics"] for m in scored.scores.metrics},
           "svg_minus_variant": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_rules.json").write_text(json.dumps(res, indent=1, default=float))
    for m, s in res["models"].items():
        a = s.get("angle_error", {})
        print(f"{m:22s} val mse {s['mse']['mean']:.6f} ± {s['mse']['se']:.6f}   angle {a.get('mean', float('nan')):.2f}°")
    for r in rows:  # rows are SVG - variant: positive = the variant is better for mse/angle
        print(f"SVG - {r['control']:20s} {r['metric']:11s} {r['diff']:+.6f} ± {r['se']:.6f}")


if __name__ == "__main__":
    main()
