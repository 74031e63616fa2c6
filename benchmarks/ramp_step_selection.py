"""Choose the ramp recipe's inner step on VALIDATION sequences, then report the chosen one on test (issue 13).

    python benchmarks/ramp_step_selection.py --out DIR --device cuda            # small scale, 3 seeds, GPU
    python benchmarks/ramp_step_selection.py --out DIR --scale tiny --device cpu --variants normalized:1.0

Per seed: SVG-LP and its compute-matched continuation ("SVG (more steps)") are trained once, as in
``reproduce ramp-video``; then one Noether Network per inner-step variant (``rule:lr``, e.g. ``normalized:0.3``,
``sgd:1e-4``) is meta-trained from that SVG. Every variant is scored on the validation sequences (never test);
the variant with the lowest seed-pooled validation MSE is chosen; only then are SVG, SVG (more steps) and the
chosen Noether Network scored on the test sequences, with paired differences (episode-clustered s.e., seeds
pooled per sequence). Variants and seeds train as parallel processes (``--parallel``), which is what makes a
GPU worth it for these small models. Writes ``DIR/selection.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def _cfg(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from noether_rl.experiments.ramp_video import RampVideoConfig

    return RampVideoConfig(out=str(args.out), synthetic=True, scale=args.scale, seeds=tuple(args.seeds),
                           device=args.device, progress=False)


def _trainers(args: argparse.Namespace, seed: int, record: bool = False):  # type: ignore[no-untyped-def]
    """The seed's three TrainConfigs and the recording root (recorded only by the parent: workers share it)."""
    from noether_rl.experiments.ramp_video import _configs, _data

    cfg = _cfg(args)
    if record:
        root, tr, va, _ = _data(cfg, cfg.spec)
    else:
        root, tr, va = Path(cfg.out) / "data", cfg.spec.train_episodes, cfg.spec.val_episodes
    return _configs(cfg, cfg.spec, root, tr, va, seed), root


def _variant_cfg(meta, variant: str):  # type: ignore[no-untyped-def]
    rule, lr = variant.split(":")
    tailor = replace(meta.noether.tailor, step_rule=rule, lr=float(lr))
    return replace(meta, out=str(Path(meta.out).parent / f"noether_{rule}_{lr}"),
                   noether=replace(meta.noether, tailor=tailor))


def _worker(args: argparse.Namespace) -> None:
    from noether_rl.training import train

    (svg, more, meta), _ = _trainers(args, args.seeds[0])
    if args.stage == "svg":
        train(svg)
        train(more)
    else:
        train(_variant_cfg(meta, args.stage))


def _parallel(args: argparse.Namespace, jobs: list[tuple[int, str]], deadline: float) -> None:
    base = [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out), "--scale", args.scale,
            "--device", args.device]
    pending, running = list(jobs), []
    log = open(args.out / "workers.log", "a")
    while pending or running:
        while pending and len(running) < args.parallel:
            seed, stage = pending.pop(0)
            running.append(subprocess.Popen(base + ["--seeds", str(seed), "--stage", stage], stdout=log,
                                            stderr=subprocess.STDOUT))
        time.sleep(1.0)
        if time.time() > deadline:
            for p in running:
                p.kill()
            raise SystemExit("deadline reached before training finished")
        failed = [p for p in running if p.poll() not in (None, 0)]
        if failed:
            raise SystemExit(f"a worker failed: {failed[0].args}; see {args.out / 'workers.log'}")
        running = [p for p in running if p.poll() is None]


def _score(args: argparse.Namespace, root: Path, checkpoints: dict[int, dict[str, str]], split: str,
           reference: str) -> list[Any]:
    from noether_rl.eval.stats import load_scores
    from noether_rl.experiments.evaluation import EvalConfig, evaluate
    from noether_rl.experiments.ramp_video import N_FUTURE, N_PAST

    runs = []
    for seed, ckpts in checkpoints.items():
        ev = EvalConfig(data=str(root), checkpoints=ckpts, out=str(args.out / f"seed{seed}" / f"eval_{split}"),
                        split=split, n_past=N_PAST, n_future=N_FUTURE, stride=1,
                        max_windows=_cfg(args).spec.eval_windows, seed=0, device=args.device, video=False,
                        reference=reference, progress=False)
        runs.append(load_scores(evaluate(ev)["window_scores"]))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", default="small")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", nargs="+", default=["normalized:0.1", "normalized:0.3", "normalized:1.0", "sgd:1e-4"])
    p.add_argument("--parallel", type=int, default=12, help="training processes at once")
    p.add_argument("--deadline-s", type=float, default=1e9)
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage is not None:
        _worker(args)
        return
    from noether_rl.eval.stats import compare, pool_seeds

    t0 = time.time()
    deadline = t0 + args.deadline_s
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    # benchmarks/: no preview mp4 where ffmpeg is missing (the GPU image)
    from gpu_session import _gif_instead_of_mp4

    _gif_instead_of_mp4()
    (_, _, meta0), root = _trainers(args, args.seeds[0], record=True)  # records the data once
    walls["data"] = time.time() - t0
    t = time.time()
    _parallel(args, [(s, "svg") for s in args.seeds], deadline)
    walls["svg_and_more"] = time.time() - t
    t = time.time()
    _parallel(args, [(s, v) for v in args.variants for s in args.seeds], deadline)
    walls["noether_variants"] = time.time() - t
    t = time.time()
    cks: dict[int, dict[str, str]] = {}
    for s in args.seeds:
        (svg, more, meta), _ = _trainers(args, s)
        cks[s] = {"SVG": str(Path(svg.out) / "last.pt")}
        cks[s] |= {v: str(Path(_variant_cfg(meta, v).out) / "last.pt") for v in args.variants}
    val_runs = _score(args, root, cks, "val", "SVG")
    pooled = pool_seeds(val_runs)
    val = {}
    for name in ["SVG", *args.variants]:
        val[name] = {metric: float(pooled.metrics[name][metric].mean()) for metric in ("mse", "ssim")}
    chosen = min(args.variants, key=lambda v: val[v]["mse"])
    val_rows = compare(chosen, ["SVG"], val_runs, metrics=("mse", "ssim"), subsets=["all"])
    walls["val_eval"] = time.time() - t
    t = time.time()
    test_cks = {s: {"SVG": c["SVG"], "SVG (more steps)": str(Path(_trainers(args, s)[0][1].out) / "last.pt"),
                    "Noether": c[chosen]} for s, c in cks.items()}
    test_runs = _score(args, root, test_cks, "test", "Noether")
    test_rows = compare("Noether", ["SVG", "SVG (more steps)"], test_runs, metrics=("mse", "ssim"), subsets=["all"])
    tp = pool_seeds(test_runs)
    test = {name: {metric: float(tp.metrics[name][metric].mean()) for metric in ("mse", "ssim")}
            for name in tp.metrics}
    walls["test_eval"] = time.time() - t
    keep = ("control", "metric", "diff", "se", "significant", "better", "per_seed", "n_episodes", "n_seeds")
    out = {
        "selection": {"split": "val", "criterion": "lowest seed-pooled validation MSE", "variants": val,
                      "chosen": chosen, "chosen_vs_SVG_on_val": [{k: r[k] for k in keep if k in r} for r in val_rows]},
        "test": {"models": test, "verdict_rows": [{k: r[k] for k in keep if k in r} for r in test_rows]},
        "config": {"scale": args.scale, "seeds": args.seeds, "device": args.device, "variants": args.variants,
                   "base_meta": meta0.out},
        "wall_time_s": walls,
    }
    (args.out / "selection.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({"selection": out["selection"]["variants"], "chosen": chosen, "test": test,
                      "test_rows": out["test"]["verdict_rows"], "walls": walls}, indent=1, default=str))


if __name__ == "__main__":
    main()
