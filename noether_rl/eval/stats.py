"""Statistics that respect dependence: episode-clustered means, standard errors and paired differences.

Windows cut from one episode overlap and share a trajectory, so they are not independent samples: the
independent unit is the *episode*. Every window-level metric here is kept together with the id of the
episode it came from, and uncertainties are computed over episodes.

Estimator (documented choice, used everywhere in this module):

- **mean**: the plain mean over windows (each window weighs the same, as in the usual per-window report);
- **standard error**: the cluster-robust (Liang-Zeger) standard error of that mean with episodes as clusters
  and the small-sample factor ``E / (E - 1)``::

      se^2 = E / (E - 1) * sum_e (sum_{i in e} (x_i - mean))^2 / N^2

  (``N`` windows, ``E`` episodes). When every episode contributes the same number of windows this is exactly
  the standard error of the ``E`` episode means, ``sd(episode means) / sqrt(E)``; with one window per episode
  it is the ordinary standard error. Many identical windows from one episode count as one observation.
  ``nan`` when fewer than two episodes contribute. :func:`episode_bootstrap_se` gives an episode-level
  bootstrap of the same mean as a cross-check.
- **paired difference** model - control: the same estimator applied to the per-window differences on the
  same windows (the correlation between models on a window cancels).
- **significant**: ``|mean difference| > 2 se`` (episode-level, step-averaged).

Metrics are ``[N, T]`` (window, prediction step); the headline number of a window is its average over steps.
Subsets (e.g. swinging vs upright windows) are boolean masks ``[N]``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open

__all__ = [
    "HIGHER_IS_BETTER",
    "WindowScores",
    "cluster_mean_se",
    "compare",
    "episode_bootstrap_se",
    "load_scores",
    "paired_difference",
    "pool_seeds",
    "save_scores",
    "summarize",
]

#: Metrics where larger is better; every other metric (mse, lpips, angle_error, ...) is lower-is-better.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"psnr", "ssim"})

#: The significance rule of :func:`paired_difference` / :func:`compare`.
SIGNIFICANCE_SE = 2.0


def _as_2d(values: Tensor) -> Tensor:
    v = values.detach().to("cpu", torch.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise UserError(f"window metrics must be [N] or [N, T], got shape {tuple(values.shape)}")
    return v


def _select(values: Tensor, episodes: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    v = _as_2d(values)
    ep = episodes.detach().to("cpu", torch.long).reshape(-1)
    if ep.numel() != v.shape[0]:
        raise UserError(f"{v.shape[0]} windows but {ep.numel()} episode ids")
    if mask is not None:
        m = mask.detach().to("cpu", torch.bool).reshape(-1)
        if m.numel() != v.shape[0]:
            raise UserError(f"{v.shape[0]} windows but a mask of {m.numel()}")
        v, ep = v[m], ep[m]
    return v, ep


@dataclass(frozen=True)
class ClusterStat:
    """mean / se: ``[T]`` float64 (per column of the input); n_windows, n_episodes: counts used."""

    mean: Tensor
    se: Tensor
    n_windows: int
    n_episodes: int


def cluster_mean_se(values: Tensor, episodes: Tensor, mask: Tensor | None = None) -> ClusterStat:
    """Window-weighted mean and episode-clustered standard error of each column of ``values``.

    Args:
        values: ``[N]`` or ``[N, T]`` per-window values.
        episodes: ``[N]`` integer episode id of each window.
        mask: optional ``[N]`` bool: only these windows.

    Returns:
        :class:`ClusterStat` with ``mean``/``se`` of shape ``[T]`` (``[1]`` for a 1-D input); ``nan`` where
        no window (mean) or fewer than two episodes (se) are selected. Non-finite values propagate.
    """
    v, ep = _select(values, episodes, mask)
    n, t = v.shape
    if n == 0:
        nan = torch.full((t,), math.nan, dtype=torch.float64)
        return ClusterStat(nan, nan.clone(), 0, 0)
    _, inv = torch.unique(ep, return_inverse=True)
    e = int(inv.max()) + 1
    mean = v.mean(0)
    sums = torch.zeros(e, t, dtype=torch.float64).index_add_(0, inv, v - mean)  # per-episode residual sums
    if e < 2:
        se = torch.full((t,), math.nan, dtype=torch.float64)
    else:
        se = (e / (e - 1) * sums.square().sum(0)).sqrt() / n
    return ClusterStat(mean, se, n, e)


def episode_bootstrap_se(values: Tensor, episodes: Tensor, mask: Tensor | None = None, *, n_boot: int = 2000,
                         seed: int = 0) -> Tensor:
    """Episode-level bootstrap standard error of the window-weighted mean: resample whole episodes with
    replacement (``n_boot`` times, seeded), recompute the mean. Returns ``[T]`` float64 (``nan`` if < 2 episodes)."""
    v, ep = _select(values, episodes, mask)
    n, t = v.shape
    if n == 0:
        return torch.full((t,), math.nan, dtype=torch.float64)
    _, inv = torch.unique(ep, return_inverse=True)
    e = int(inv.max()) + 1
    if e < 2:
        return torch.full((t,), math.nan, dtype=torch.float64)
    sums = torch.zeros(e, t, dtype=torch.float64).index_add_(0, inv, v)
    counts = torch.zeros(e, dtype=torch.float64).index_add_(0, inv, torch.ones(n, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    draw = torch.randint(e, (n_boot, e), generator=g)
    means = sums[draw].sum(1) / counts[draw].sum(1, keepdim=True)  # [n_boot, T]
    return means.std(0, unbiased=True)


def _block(values: Tensor, episodes: Tensor, mask: Tensor | None) -> dict[str, Any]:
    v, ep = _select(values, episodes, mask)
    per_step = cluster_mean_se(v, ep)
    avg = cluster_mean_se(v.mean(1), ep)
    return {
        "mean": float(avg.mean[0]),
        "se": float(avg.se[0]),
        "mean_per_step": per_step.mean.tolist(),
        "se_per_step": per_step.se.tolist(),
        "n_windows": per_step.n_windows,
        "n_episodes": per_step.n_episodes,
    }


def summarize(metrics: Mapping[str, Tensor], episodes: Tensor, mask: Tensor | None = None) -> dict[str, Any]:
    """``{metric: {"mean", "se", "mean_per_step", "se_per_step", "n_windows", "n_episodes"}}``.

    ``metrics``: name -> ``[N, T]``. ``mean``/``se`` are of each window's average over the ``T`` steps;
    ``*_per_step`` are per prediction step. Standard errors are episode-clustered (module docstring).
    """
    return {name: _block(v, episodes, mask) for name, v in metrics.items()}


def paired_difference(a: Tensor, b: Tensor, episodes: Tensor, mask: Tensor | None = None) -> dict[str, Any]:
    """Paired difference ``a - b`` on the same windows (``[N, T]`` each): a :func:`summarize` block plus
    ``z = mean / se`` and ``significant = |mean| > 2 se`` (step-averaged, episode-level se)."""
    if a.shape != b.shape:
        raise UserError(f"paired scores must be on the same windows: shapes {tuple(a.shape)} vs {tuple(b.shape)}")
    d = _as_2d(a) - _as_2d(b)
    block = _block(d, episodes, mask)
    mean, se = block["mean"], block["se"]
    z = mean / se if math.isfinite(se) and se > 0 else math.nan
    block["z"] = z
    block["significant"] = bool(math.isfinite(z) and abs(z) > SIGNIFICANCE_SE)
    return block


@dataclass
class WindowScores:
    """Per-window metrics of several models on the same windows, each window tagged with its episode.

    episode: ``[N]`` long, the window's episode id in the recording; start: ``[N]`` long, its first frame.
    metrics: model -> metric -> ``[N, T]`` float64 (CPU). masks: subset name -> ``[N]`` bool (``"all"`` is
    implied). All models share the windows, so any two can be compared pairwise.
    """

    episode: Tensor
    start: Tensor
    metrics: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)

    def mask(self, subset: str) -> Tensor | None:
        if subset == "all":
            return None
        if subset not in self.masks:
            raise UserError(f"unknown subset {subset!r}; have {['all', *self.masks]}")
        return self.masks[subset]

    @property
    def subsets(self) -> list[str]:
        return ["all", *[s for s in self.masks if s != "all"]]

    def summary(self, model: str, subset: str = "all") -> dict[str, Any]:
        """``{"n_windows", "n_episodes", "metrics": summarize(...)}`` for one model and subset."""
        if model not in self.metrics:
            raise UserError(f"unknown model {model!r}; have {sorted(self.metrics)}")
        m = self.mask(subset)
        blocks = summarize(self.metrics[model], self.episode, m)
        sel = self.episode if m is None else self.episode[m]
        return {"n_windows": int(sel.numel()), "n_episodes": int(torch.unique(sel).numel()), "metrics": blocks}

    def paired(self, model: str, control: str, subset: str = "all",
               metrics: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """metric -> :func:`paired_difference` of ``model - control`` (metrics both have)."""
        a, b = self.metrics[model], self.metrics[control]
        names = [k for k in (metrics if metrics is not None else a) if k in a and k in b]
        m = self.mask(subset)
        return {k: paired_difference(a[k], b[k], self.episode, m) for k in names}


def save_scores(path: str | os.PathLike[str], scores: WindowScores) -> Path:
    """Write ``scores`` atomically as a plain tensor file (``torch.load(..., weights_only=True)`` reads it), so
    runs evaluated in separate processes (e.g. one per seed) can be pooled later with :func:`load_scores`."""
    buf = io.BytesIO()
    torch.save({"format": "noether_rl.window_scores/1", "episode": scores.episode, "start": scores.start,
                "metrics": scores.metrics, "masks": scores.masks}, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getbuffer())
    return Path(path)


def load_scores(path: str | os.PathLike[str]) -> WindowScores:
    """Read a file written by :func:`save_scores`."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"window scores file not found: {path}") from None
    except Exception as e:  # noqa: BLE001  (a damaged user file)
        raise UserError(f"window scores file {path} is unreadable ({type(e).__name__}); re-run the evaluation") from None
    if not isinstance(d, dict) or d.get("format") != "noether_rl.window_scores/1":
        raise UserError(f"{path} is not a noether_rl window scores file")
    return WindowScores(d["episode"], d["start"], d["metrics"], d["masks"])


def pool_seeds(runs: Sequence[WindowScores]) -> WindowScores:
    """Pool runs with different seeds evaluated on the same windows: each window's metric is averaged over
    the seeds (models present in every run), so the episode-level se of the pooled scores includes the
    seeds' disagreement on each episode. Compare with the spread of per-seed means (:func:`compare`)."""
    if not runs:
        raise UserError("pool_seeds needs at least one run")
    first = runs[0]
    for r in runs[1:]:
        if not (torch.equal(r.episode, first.episode) and torch.equal(r.start, first.start)):
            raise UserError("pool_seeds: runs were evaluated on different windows")
    models = [m for m in first.metrics if all(m in r.metrics for r in runs)]
    pooled: dict[str, dict[str, Tensor]] = {}
    for model in models:
        names = [k for k in first.metrics[model] if all(k in r.metrics[model] for r in runs)]
        pooled[model] = {k: torch.stack([r.metrics[model][k] for r in runs]).mean(0) for k in names}
    return WindowScores(first.episode.clone(), first.start.clone(), pooled, dict(first.masks))


def compare(treatment: str, controls: Iterable[str], runs: Sequence[WindowScores] | WindowScores,
            metrics: Iterable[str] = ("mse", "ssim", "angle_error"), subsets: Iterable[str] | None = None,
            ) -> list[dict[str, Any]]:
    """The verdict rows: for each control, subset and metric, the paired difference treatment - control.

    ``runs``: one :class:`WindowScores` per seed (same windows). Each row holds the pooled difference
    (:func:`pool_seeds`) with its episode-level se, ``significant`` (|diff| > 2 se), ``better`` (the
    treatment is better by the metric's direction and significant), and ``per_seed`` differences with
    their own se. Rows whose metric is missing for either model are skipped.
    """
    runs = [runs] if isinstance(runs, WindowScores) else list(runs)
    pooled = pool_seeds(runs)
    subsets = list(subsets) if subsets is not None else pooled.subsets
    rows: list[dict[str, Any]] = []
    for control in controls:
        for subset in subsets:
            d = pooled.paired(treatment, control, subset, metrics)
            for metric, block in d.items():
                higher = metric in HIGHER_IS_BETTER
                per_seed = [r.paired(treatment, control, subset, [metric])[metric] for r in runs]
                improved = block["mean"] > 0 if higher else block["mean"] < 0
                rows.append({
                    "treatment": treatment, "control": control, "subset": subset, "metric": metric,
                    "higher_is_better": higher, "diff": block["mean"], "se": block["se"], "z": block["z"],
                    "significant": block["significant"], "better": bool(block["significant"] and improved),
                    "n_windows": block["n_windows"], "n_episodes": block["n_episodes"], "n_seeds": len(runs),
                    "diff_per_step": block["mean_per_step"], "se_per_step": block["se_per_step"],
                    "per_seed": [{"diff": p["mean"], "se": p["se"], "significant": p["significant"]} for p in per_seed],
                })
    return rows
