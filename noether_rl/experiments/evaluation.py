"""Evaluate trained models on held-out windows: per-step MSE/PSNR/SSIM, plots, a side-by-side video.

Held-out windows: windows of n_past + n_future frames (stride ``stride``) from the episodes after
the first ``train_episodes``; if there are more than ``max_windows``, a seeded random subset
(``seed``) of that size, the same for every model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from noether_rl.data import load_manifest, split_episodes
from noether_rl.errors import UserError
from noether_rl.eval import MetricAccumulator, plot_all, side_by_side_video, write_results
from noether_rl.noether import NoetherNetwork
from noether_rl.training import DataConfig, EpisodeWindows
from noether_rl.training.loading import LoadedModel, load_model
from noether_rl.utils.device import resolve_device

Predict = Callable[[Tensor, Tensor], Tensor]  # (frames [B, L, C, H, W], actions [B, L-1, A]) -> [B, n_future, C, H, W]


@dataclass(frozen=True)
class EvalConfig:
    data: str
    checkpoints: Mapping[str, str] = field(default_factory=dict)  # model name -> checkpoint path
    out: str = "eval"
    n_past: int = 4
    n_future: int = 26
    train_episodes: int = 5
    stride: int = 5
    max_windows: int = 512
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    video: bool = True
    lpips: bool = False
    inner_steps: int | None = None  # override the Noether models' inner steps (None: as trained)
    inner_lr: float | None = None


def make_predict(model: LoadedModel, n_past: int, n_future: int, inner_steps: int | None = None,
                 inner_lr: float | None = None) -> Predict:
    """A prediction function for a loaded model; Noether models tailor (first order: no meta-gradient)."""
    module = model.module
    if isinstance(module, NoetherNetwork):
        changes: dict[str, Any] = {"order": "first"}
        if inner_steps is not None:
            changes["steps"] = inner_steps
        if inner_lr is not None:
            changes["lr"] = inner_lr
        tcfg = replace(module.cfg.tailor, **changes)

        def predict(frames: Tensor, actions: Tensor) -> Tensor:
            return module.predict(frames, actions, n_past, n_future, tailor_cfg=tcfg).frames

        return predict

    def predict_svg(frames: Tensor, actions: Tensor) -> Tensor:
        return module.rollout(frames[:, :n_past], actions, n_past, n_future, decode_context=False).frames  # type: ignore[operator]

    return predict_svg


def heldout_windows(cfg: EvalConfig, device: torch.device) -> tuple[EpisodeWindows, Tensor]:
    manifest = load_manifest(cfg.data)
    _, test_ids = split_episodes(len(manifest["shards"]), cfg.train_episodes)
    if not test_ids:
        raise UserError(f"{cfg.data} has no held-out episodes beyond the first {cfg.train_episodes}")
    data = EpisodeWindows(DataConfig(cfg.data, cfg.n_past, cfg.n_future, cfg.train_episodes, cfg.stride), test_ids, device)
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(data), generator=g)[: cfg.max_windows].sort().values.to(device)
    return data, idx


@torch.no_grad()
def evaluate_predictors(predictors: Mapping[str, Predict], data: EpisodeWindows, idx: Tensor, n_past: int,
                        batch_size: int, lpips: bool = False, progress: bool = True) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """-> (model name -> MetricAccumulator summary, first-window predictions per model for videos)."""
    accs = {name: MetricAccumulator(lpips=lpips) for name in predictors}
    first: dict[str, Tensor] = {}
    for i in tqdm(range(0, len(idx), batch_size), desc="evaluate", disable=not progress, unit="batch"):
        frames, actions = data.batch(idx[i : i + batch_size])
        target = frames[:, n_past:]
        if not first:
            first["ground truth"] = target[0].cpu()
        for name, predict in predictors.items():
            pred = predict(frames, actions)
            accs[name].update(pred, target)
            if name not in first:
                first[name] = pred[0].cpu()
    return {name: acc.summary() for name, acc in accs.items()}, first


def evaluate(cfg: EvalConfig, models: Mapping[str, LoadedModel] | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoints`` (or already loaded ``models``); writes results.json, plots, video."""
    if not cfg.checkpoints and not models:
        raise UserError("nothing to evaluate: give at least one NAME=CHECKPOINT")
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    models = dict(models or {name: load_model(path, device) for name, path in cfg.checkpoints.items()})
    predictors = {name: make_predict(m, cfg.n_past, cfg.n_future, cfg.inner_steps, cfg.inner_lr) for name, m in models.items()}
    data, idx = heldout_windows(cfg, device)
    summaries, first = evaluate_predictors(predictors, data, idx, cfg.n_past, cfg.batch_size, cfg.lpips)
    plots = plot_all(summaries, out)
    video = side_by_side_video(first, out / "side_by_side.mp4") if cfg.video else None
    results = {
        "config": dataclasses.asdict(cfg) | {"checkpoints": dict(cfg.checkpoints)},
        "device": str(device),
        "n_windows": int(len(idx)),
        "models": summaries,
        "plots": [str(p) for p in plots],
        "video": str(video) if video else None,
        "wall_time_s": time.perf_counter() - t0,
    }
    write_results(out / "results.json", results)
    return results
