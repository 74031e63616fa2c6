"""Evaluation: per-step metrics (MSE/PSNR/SSIM, optional LPIPS), result files, plots and videos.

Per-step metrics have shape ``[B, T]`` (example, prediction step); see :mod:`noether_rl.eval.metrics`.
"""

from noether_rl.eval.metrics import MetricAccumulator, lpips_available, per_step_metrics
from noether_rl.eval.plots import plot_all, plot_metric_curves
from noether_rl.eval.results import load_results, write_results
from noether_rl.eval.video import frames_grid_png, save_gif, side_by_side_video

__all__ = [
    "MetricAccumulator",
    "frames_grid_png",
    "load_results",
    "lpips_available",
    "per_step_metrics",
    "plot_all",
    "plot_metric_curves",
    "save_gif",
    "side_by_side_video",
    "write_results",
]
