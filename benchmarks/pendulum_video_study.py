"""Issue-4 study: vary one thing of the Noether Network on top of a finished pendulum-video run's seed-0 SVG.

    python benchmarks/pendulum_video_study.py RUN_DIR VARIANT [--out DIR] [--data RECORDING]

RUN_DIR is the --out of `noether-rl reproduce pendulum-video --scale small` (its data/ and seed0/svg are
reused). VARIANT is one of the meta-training variants below (prints and writes JSON with held-out MSE /
SSIM / PSNR), or "eval_lr" (inner-lr sweep at evaluation time with RUN_DIR's trained g_phi, plus a random
g_phi) or "collapse" (embedding spread within vs across sequences, trained vs random g_phi).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from noether_rl.experiments.evaluation import EvalConfig, evaluate_predictors, heldout_windows, make_predict
from noether_rl.experiments.pendulum_video import PendulumVideoConfig, _configs
from noether_rl.models import NoetherEmbedding
from noether_rl.training import train
from noether_rl.training.loading import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("variant")
    ap.add_argument("--out", default="study")
    ap.add_argument("--data", help="the recording (default: RUN/data)")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = PendulumVideoConfig(out=str(run), scale="small", progress=False)
    spec = cfg.spec
    data = Path(args.data) if args.data else run / "data"
    _, _, meta = _configs(cfg, spec, data, 0)
    ev = EvalConfig(data=str(data), n_past=4, n_future=26, stride=spec.eval_stride, max_windows=spec.eval_windows)
    win, idx = heldout_windows(ev, torch.device("cpu"))
    nc = meta.noether
    assert nc is not None
    variants = {
        "hidden_fixed_lr": (dataclasses.replace(nc, learn_inner_lr=False), {"adapt_target": "hidden"}),
        "hidden_learn_lr": (dataclasses.replace(nc, learn_inner_lr=True), {"adapt_target": "hidden"}),
        "form_b": (dataclasses.replace(nc, form="b"), {}),
        "output": (nc, {"adapt_target": "output"}),
        "cell": (nc, {"adapt_target": "cell"}),
        "per_step": (nc, {"adapt_target": "hidden", "adapt_per_step": True}),
        "steps2": (dataclasses.replace(nc, tailor=dataclasses.replace(nc.tailor, steps=2, lr=nc.tailor.lr / 2)), {}),
        "no_feedback_grad": (dataclasses.replace(nc, feedback_grad=False), {}),
    }
    out: dict[str, object] = {"variant": args.variant}
    if args.variant == "eval_lr":
        m = load_model(run / "seed0" / "noether" / "last.pt")
        preds = {f"lr{lr}": make_predict(m, 4, 26, inner_lr=lr) for lr in (0.0, 0.5, 1.0, 2.0, 4.0)}
        m_rand = load_model(run / "seed0" / "noether" / "last.pt")
        m_rand.module.embedding = NoetherEmbedding(m_rand.module.cfg.embedding)
        preds["random_g_lr1"] = make_predict(m_rand, 4, 26, inner_lr=1.0)
        s, _ = evaluate_predictors(preds, win, idx, 4, 32, progress=False)
        out.update({k: v["metrics"]["mse"]["mean"] for k, v in s.items()})
    elif args.variant == "collapse":
        frames, _ = win.batch(idx[:64])
        m = load_model(run / "seed0" / "noether" / "last.pt")
        for name, g in (("trained", m.module.embedding), ("random", NoetherEmbedding(m.module.cfg.embedding))):
            with torch.no_grad():
                e = g.embed_sequence(frames)  # [B, T-1, D]
            within, across = e.std(dim=1).mean().item(), e[:, 0].std(dim=0).mean().item()
            out[name] = {"norm": e.norm(dim=-1).mean().item(), "within": within, "across": across, "ratio": within / across}
    else:
        n, model_changes = variants[args.variant]
        c = dataclasses.replace(meta, out=str(Path(args.out) / args.variant), noether=n,
                                model=dataclasses.replace(meta.model, **model_changes))
        t = time.perf_counter()
        ck = train(c)
        m = load_model(ck)
        s, _ = evaluate_predictors({"v": make_predict(m, 4, 26)}, win, idx, 4, 32, progress=False)
        out.update({"meta_train_s": time.perf_counter() - t, "inner_lr": float(m.module.log_inner_lr.exp()),
                    **{k: s["v"]["metrics"][k]["mean"] for k in ("mse", "ssim", "psnr")}})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.variant}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
