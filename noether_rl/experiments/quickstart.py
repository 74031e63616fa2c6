"""The README's main job: record a small pendulum set, train SVG and a Noether Network, evaluate both.

Everything is small enough for 2 CPU cores in a few minutes (uses a GPU when present). Steps are
resumable: rerunning the same command skips what is already done (recording shards, finished
checkpoints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from noether_rl.eval import write_results
from noether_rl.experiments.evaluation import EvalConfig, evaluate
from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.recorders import RecordConfig, record
from noether_rl.training import DataConfig, TrainConfig, train
from noether_rl.training.loading import load_model
from noether_rl.utils.device import resolve_device


@dataclass(frozen=True)
class QuickstartConfig:
    out: str = "quickstart"
    episodes: int = 64  # train_episodes train, then val_episodes validation, the rest test
    train_episodes: int = 48
    val_episodes: int = 4
    policy: str = "mixed"  # varied actions and states (sine / random / noisy swing-up), so the model sees swings
    steps: int = 100
    stride: int = 4  # training window stride
    size: int = 32
    n_past: int = 4
    n_future: int = 12
    svg_epochs: int = 20
    noether_epochs: int = 3
    batch_size: int = 16
    width: int = 16
    g_dim: int = 64
    rnn_size: int = 128
    seed: int = 0
    device: str = "auto"
    progress: bool = True


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.out)
    walls: dict[str, float] = {}

    t = time.perf_counter()
    data_dir = out / "data"
    record(RecordConfig(env_id="noether_rl/PixelPendulum-v0", policy=cfg.policy, episodes=cfg.episodes, steps=cfg.steps,
                        size=cfg.size, seed=cfg.seed, out=data_dir, num_envs=2, preview=True, progress=cfg.progress))
    walls["record"] = time.perf_counter() - t

    data = DataConfig(root=str(data_dir), n_past=cfg.n_past, n_future=cfg.n_future, train_episodes=cfg.train_episodes,
                      val_episodes=cfg.val_episodes, stride=cfg.stride)
    model = SVGConfig(image_size=cfg.size, width=cfg.width, g_dim=cfg.g_dim, rnn_size=cfg.rnn_size, norm="layer")
    base = TrainConfig(out=str(out / "svg"), data=data, model=model, epochs=cfg.svg_epochs, batch_size=cfg.batch_size,
                       seed=cfg.seed, device=cfg.device, progress=cfg.progress)
    t = time.perf_counter()
    svg_ckpt = train(base)
    walls["train_svg"] = time.perf_counter() - t

    noether = NoetherConfig()  # the shipped default inner step (chosen on validation episodes)
    meta = replace(base, out=str(out / "noether"), noether=noether, init_from=str(svg_ckpt), train_predictor=False,
                   epochs=cfg.noether_epochs,
                   embedding=EmbeddingConfig(kind="conv", channels=3, image_size=cfg.size, emb_dim=64, width=8))
    t = time.perf_counter()
    noether_ckpt = train(meta)
    walls["meta_train_noether"] = time.perf_counter() - t

    t = time.perf_counter()
    device = resolve_device(cfg.device)
    ev = evaluate(
        EvalConfig(data=str(data_dir), out=str(out / "eval"), n_past=cfg.n_past, n_future=cfg.n_future,
                   train_episodes=cfg.train_episodes, val_episodes=cfg.val_episodes, split="test", stride=4,
                   max_windows=256, seed=cfg.seed, device=cfg.device, reference="Noether", progress=cfg.progress),
        models={"SVG": load_model(svg_ckpt, device), "Noether": load_model(noether_ckpt, device)},
    )
    walls["evaluate"] = time.perf_counter() - t
    walls["total"] = time.perf_counter() - t0
    report = {
        "config": cfg.__dict__,
        "device": str(device),
        "models": {name: {m: {"mean": v["mean"], "se": v["se"]} for m, v in s["metrics"].items()}
                   for name, s in ev["models"].items()},
        "eval_results": str(out / "eval" / "results.json"),
        "plots": ev["plots"],
        "video": ev["video"],
        "wall_time_s": walls,
    }
    write_results(out / "report.json", report)
    return report
