"""Metric-vs-prediction-step curves (one line per model, shaded ±1 standard error), saved as PNG.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global backend state).
Files are written atomically: saved to a temp file beside the target, then ``os.replace``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_output_path

__all__ = ["METRIC_LABELS", "atomic_output_path", "plot_all", "plot_metric_curves"]

#: Axis labels; the arrow says which direction is better.
METRIC_LABELS: dict[str, str] = {
    "mse": "MSE (↓)",
    "psnr": "PSNR [dB] (↑)",
    "ssim": "SSIM (↑)",
    "lpips": "LPIPS (↓)",
    "angle_error": "pendulum angle error [deg] (↓)",
}




def _metric_block(summary: Mapping[str, Any], metric: str, model: str) -> dict[str, Any]:
    """The ``{"mean_per_step", "se_per_step", ...}`` entry of one model's summary."""
    metrics = summary.get("metrics", summary)
    if metric not in metrics:
        raise UserError(f"model {model!r} has no {metric!r} results (has {sorted(metrics)})")
    return metrics[metric]


def plot_metric_curves(
    curves: Mapping[str, Mapping[str, Any]],
    metric: str,
    out: str | os.PathLike[str],
    title: str | None = None,
    *,
    first_step: int = 1,
) -> Path:
    """Plot ``metric`` against prediction step for several models and save a PNG.

    Args:
        curves: model name -> :meth:`MetricAccumulator.summary` dict (or its ``"metrics"`` entry).
            Each model's ``mean_per_step``/``se_per_step`` have length ``T`` (lengths may differ).
        metric: e.g. ``"mse"``, ``"ssim"``, ``"psnr"``, ``"lpips"``.
        out: PNG path (parents are created; written atomically).
        title: figure title; defaults to the metric name.
        first_step: x value of the first prediction step.

    Returns:
        ``Path(out)``.
    """
    if not curves:
        raise UserError("plot_metric_curves needs at least one model")
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for model, summary in curves.items():
        block = _metric_block(summary, metric, model)
        mean = np.asarray(block["mean_per_step"], dtype=np.float64)
        se = np.nan_to_num(np.asarray(block["se_per_step"], dtype=np.float64), nan=0.0, posinf=0.0)
        x = np.arange(first_step, first_step + mean.size)
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=model)
        ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel("prediction step")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title if title is not None else metric.upper())
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", frameon=False)
    fig.tight_layout()
    with atomic_output_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return Path(out)


def plot_all(
    curves: Mapping[str, Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    metrics: Iterable[str] = ("mse", "ssim", "psnr"),
    *,
    suffix: str = "",
    title_suffix: str = "",
) -> list[Path]:
    """One PNG per metric (``<out_dir>/<metric><suffix>.png``); metrics missing from every model are skipped.

    Returns the written paths, in ``metrics`` order.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    for metric in metrics:
        present = {m: s for m, s in curves.items() if metric in s.get("metrics", s)}
        if not present:
            continue
        written.append(plot_metric_curves(present, metric, out_dir / f"{metric}{suffix}.png",
                                          title=f"{metric.upper()}{title_suffix}"))
    return written
