"""Evaluation: per-step metrics (MSE/PSNR/SSIM, optional LPIPS), the pendulum angle decoder, episode-level
statistics, result files, plots and videos.

Per-step metrics have shape ``[B, T]`` (example, prediction step); see :mod:`noether_rl.eval.metrics`.
Statistics over windows cluster by episode; see :mod:`noether_rl.eval.stats`.
"""

from noether_rl.eval.metrics import MetricAccumulator, lpips_available, per_step_metrics
from noether_rl.eval.pendulum_angle import angle_error_deg, decode_angle
from noether_rl.eval.plots import plot_all, plot_metric_curves
from noether_rl.eval.results import load_results, write_results
from noether_rl.eval.stats import (
    WindowScores,
    cluster_mean_se,
    compare,
    episode_bootstrap_se,
    load_scores,
    paired_difference,
    pool_seeds,
    save_scores,
    summarize,
)
from noether_rl.eval.video import frames_grid_png, save_gif, side_by_side_video

__all__ = [
    "MetricAccumulator",
    "WindowScores",
    "angle_error_deg",
    "cluster_mean_se",
    "compare",
    "decode_angle",
    "episode_bootstrap_se",
    "frames_grid_png",
    "load_results",
    "load_scores",
    "lpips_available",
    "paired_difference",
    "per_step_metrics",
    "plot_all",
    "plot_metric_curves",
    "pool_seeds",
    "save_gif",
    "save_scores",
    "side_by_side_video",
    "summarize",
    "write_results",
]
