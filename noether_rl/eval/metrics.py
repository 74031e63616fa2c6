"""Per-step video-prediction metrics (MSE, PSNR, SSIM, optional LPIPS) and a batched accumulator.

All metrics are computed batched over the ``B * T`` frames of a prediction on the tensors' own device:
there is no Python loop over frames or examples and no host synchronisation until
:meth:`MetricAccumulator.summary`.

Conventions: ``pred`` and ``target`` are float ``[B, T, C, H, W]`` in ``[0, 1]`` (``pred`` is clamped);
every per-step metric has shape ``[B, T]`` (one value per example and prediction step).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from noether_rl.errors import UserError

__all__ = [
    "BASE_METRICS",
    "LPIPS_HELP",
    "MetricAccumulator",
    "lpips_available",
    "per_step_metrics",
]

log = logging.getLogger(__name__)

#: Metrics that are always computed, in this order. ``"lpips"`` is appended when requested and available.
BASE_METRICS: tuple[str, ...] = ("mse", "psnr", "ssim")

#: How to enable LPIPS (shown once when it is requested but cannot be loaded).
LPIPS_HELP = (
    "LPIPS is skipped: it needs torchvision and the pretrained AlexNet weights in the local torch hub "
    "cache (no downloads are attempted during evaluation). To enable it: `pip install torchvision` "
    "(or `pip install 'torchmetrics[image]'`), then fetch the weights once on a machine with network "
    "access, e.g. `python -c \"import torchvision; torchvision.models.alexnet(weights='DEFAULT')\"` "
    "(they are stored under $TORCH_HOME/hub/checkpoints)."
)

# Cached LPIPS state: None = not probed yet; otherwise (available, reason).
_LPIPS_PROBE: tuple[bool, str] | None = None
_LPIPS_NETS: dict[str, torch.nn.Module] = {}
_LPIPS_WARNED = False


def _alexnet_weights_cached() -> tuple[bool, str]:
    """Whether torchvision's pretrained AlexNet weights are already in the local hub cache."""
    try:
        import torchvision  # noqa: F401
        from torchvision.models import AlexNet_Weights
    except ImportError as e:  # torchvision missing or broken
        return False, f"torchvision is not importable ({e})"
    url = AlexNet_Weights.DEFAULT.url
    fname = os.path.basename(url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", fname)
    if not os.path.isfile(path):
        return False, f"pretrained AlexNet weights not found at {path}"
    return True, ""


def _build_lpips() -> torch.nn.Module:
    """Construct torchmetrics' LPIPS (AlexNet) with pretrained weights; raises if it cannot load them."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    metric.eval()
    return metric


def lpips_available() -> bool:
    """True if LPIPS (AlexNet) can be built with pretrained weights from local files only.

    Never downloads and never falls back to random weights. The result is cached per process.
    """
    global _LPIPS_PROBE
    if _LPIPS_PROBE is None:
        ok, reason = _alexnet_weights_cached()
        if ok:
            try:
                _LPIPS_NETS["cpu"] = _build_lpips()
            except (ImportError, OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
                ok, reason = False, f"could not load LPIPS weights ({type(e).__name__}: {e})"
        _LPIPS_PROBE = (ok, reason)
    return _LPIPS_PROBE[0]


def _warn_lpips_once() -> None:
    global _LPIPS_WARNED
    if not _LPIPS_WARNED:
        _LPIPS_WARNED = True
        reason = _LPIPS_PROBE[1] if _LPIPS_PROBE is not None else "unknown"
        warnings.warn(f"{LPIPS_HELP} Reason: {reason}.", UserWarning, stacklevel=4)


def _lpips_net(device: torch.device) -> torch.nn.Module:
    """The LPIPS metric module on ``device`` (built once per device; the probe built the CPU one)."""
    key = str(device)
    if key not in _LPIPS_NETS:
        _LPIPS_NETS[key] = _build_lpips().to(device)
    return _LPIPS_NETS[key]


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 5 or target.ndim != 5:
        raise UserError(
            f"metrics expect [B, T, C, H, W] tensors; got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    if pred.shape != target.shape:
        raise UserError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise UserError(f"metrics expect float tensors in [0, 1]; got {pred.dtype} and {target.dtype}")
    if pred.device != target.device:
        raise UserError(f"pred is on {pred.device} but target is on {target.device}")


def per_step_metrics(
    pred: Tensor,
    target: Tensor,
    *,
    lpips: bool = False,
    ssim_kernel_size: int = 11,
) -> dict[str, Tensor]:
    """Per-example, per-step image metrics, computed batched on the inputs' device.

    Args:
        pred: predicted frames, float ``[B, T, C, H, W]``; clamped to ``[0, 1]``.
        target: ground-truth frames, float ``[B, T, C, H, W]`` in ``[0, 1]``.
        lpips: also compute ``"lpips"`` (AlexNet) if :func:`lpips_available`; otherwise it is skipped
            with a one-time warning explaining how to enable it.
        ssim_kernel_size: Gaussian window of SSIM (odd); ``H`` and ``W`` must be at least this large.

    Returns:
        ``{"mse", "psnr", "ssim"[, "lpips"]}`` each a float32 tensor ``[B, T]`` on the inputs' device.
        MSE is the mean over ``C, H, W``; PSNR is ``10 log10(1 / MSE)`` (``inf`` for a perfect frame);
        SSIM uses ``data_range=1`` and is averaged over channels and pixels of each frame.
    """
    with torch.no_grad():
        return _per_step_metrics(pred, target, lpips=lpips, ssim_kernel_size=ssim_kernel_size)


def _per_step_metrics(
    pred: Tensor, target: Tensor, *, lpips: bool, ssim_kernel_size: int
) -> dict[str, Tensor]:
    _check_pair(pred, target)
    b, t, c, h, w = pred.shape
    if min(h, w) < ssim_kernel_size:
        raise UserError(
            f"SSIM with kernel size {ssim_kernel_size} needs frames of at least {ssim_kernel_size} px; "
            f"got {h}x{w}. Pass a smaller odd ssim_kernel_size."
        )
    p = pred.clamp(0.0, 1.0).reshape(b * t, c, h, w).float()
    y = target.reshape(b * t, c, h, w).float()

    out: dict[str, Tensor] = {}
    out["mse"] = (p - y).square().mean(dim=(1, 2, 3)).reshape(b, t)
    out["psnr"] = peak_signal_noise_ratio(p, y, data_range=1.0, reduction="none", dim=(1, 2, 3)).reshape(b, t)
    out["ssim"] = structural_similarity_index_measure(
        p, y, data_range=1.0, reduction="none", kernel_size=ssim_kernel_size
    ).reshape(b, t)
    if lpips:
        if lpips_available():
            net = _lpips_net(p.device)
            p3 = p.expand(-1, 3, -1, -1) if c == 1 else p
            y3 = y.expand(-1, 3, -1, -1) if c == 1 else y
            # Call the underlying network directly: per-image scores, no value checks (no host sync).
            scores = net.net(p3, y3, normalize=True)  # [B*T, 1, 1, 1]
            out["lpips"] = scores.reshape(b, t).float()
        else:
            _warn_lpips_once()
    return out


class MetricAccumulator:
    """Accumulates per-step metrics over batches, on the device, and summarises them with standard errors.

    For each metric it keeps, per prediction step ``t``: ``sum_b m[b, t]`` and ``sum_b m[b, t]^2``, plus
    the sum and sum of squares of each example's step-average ``mean_t m[b, t]``, and the example count.
    Sums are float64 (float32 on MPS). ``update`` never synchronises with the host; ``summary`` does.

    Args:
        lpips: request LPIPS (see :func:`per_step_metrics`).
        ssim_kernel_size: forwarded to :func:`per_step_metrics`.
    """

    def __init__(self, *, lpips: bool = False, ssim_kernel_size: int = 11) -> None:
        self.lpips = lpips
        self.ssim_kernel_size = ssim_kernel_size
        self.n = 0
        self.num_steps: int | None = None
        self._step_sum: dict[str, Tensor] = {}
        self._step_sq: dict[str, Tensor] = {}
        self._avg_sum: dict[str, Tensor] = {}
        self._avg_sq: dict[str, Tensor] = {}

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.__init__(lpips=self.lpips, ssim_kernel_size=self.ssim_kernel_size)  # type: ignore[misc]

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Add a batch. ``pred``/``target``: float ``[B, T, C, H, W]``; ``T`` must match earlier batches.

        Returns the batch's per-step metrics (``[B, T]`` each, on the device) for optional further use.
        """
        m = per_step_metrics(pred, target, lpips=self.lpips, ssim_kernel_size=self.ssim_kernel_size)
        self.add(m)
        return m

    @torch.no_grad()
    def add(self, metrics: dict[str, Tensor]) -> None:
        """Add precomputed per-step metrics, each ``[B, T]`` (e.g. from :func:`per_step_metrics`)."""
        if not metrics:
            return
        shapes = {tuple(v.shape) for v in metrics.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise UserError(f"all metrics must share one [B, T] shape; got {sorted(shapes)}")
        bsz, t = next(iter(shapes))
        if self.num_steps is None:
            self.num_steps = t
        elif t != self.num_steps:
            raise UserError(f"batch has {t} prediction steps but earlier batches had {self.num_steps}")
        if self._step_sum and set(metrics) != set(self._step_sum):
            raise UserError(f"metric names changed from {sorted(self._step_sum)} to {sorted(metrics)}")
        for name, v in metrics.items():
            dtype = torch.float32 if v.device.type == "mps" else torch.float64
            v = v.to(dtype)
            avg = v.mean(dim=1)  # [B] per-example step-average
            if name not in self._step_sum:
                self._step_sum[name] = torch.zeros(t, dtype=dtype, device=v.device)
                self._step_sq[name] = torch.zeros(t, dtype=dtype, device=v.device)
                self._avg_sum[name] = torch.zeros((), dtype=dtype, device=v.device)
                self._avg_sq[name] = torch.zeros((), dtype=dtype, device=v.device)
            self._step_sum[name] += v.sum(dim=0)
            self._step_sq[name] += v.square().sum(dim=0)
            self._avg_sum[name] += avg.sum()
            self._avg_sq[name] += avg.square().sum()
        self.n += bsz

    @staticmethod
    def _mean_se(s: Tensor, sq: Tensor, n: int) -> tuple[Tensor, Tensor]:
        mean = s / n
        if n < 2:
            return mean, torch.full_like(mean, math.nan)
        var = ((sq - n * mean.square()) / (n - 1)).clamp_min(0.0)  # unbiased sample variance
        return mean, (var / n).sqrt()

    def summary(self) -> dict[str, Any]:
        """Means and standard errors (one host sync).

        Returns::

            {"n_examples": N, "n_steps": T,
             "metrics": {name: {"mean_per_step": [T floats], "se_per_step": [T floats],
                                "mean": float, "se": float}}}

        ``se = std / sqrt(N)`` with the unbiased (``N - 1``) standard deviation across examples
        (``nan`` when ``N < 2``). ``mean``/``se`` are over the per-example averages across steps.
        PSNR of a perfect frame is ``inf``, which propagates into its sums.
        """
        out: dict[str, Any] = {"n_examples": self.n, "n_steps": self.num_steps or 0, "metrics": {}}
        if self.n == 0:
            return out
        for name in self._step_sum:
            m_step, se_step = self._mean_se(self._step_sum[name], self._step_sq[name], self.n)
            m_avg, se_avg = self._mean_se(self._avg_sum[name], self._avg_sq[name], self.n)
            packed = torch.cat([m_step, se_step, m_avg.reshape(1), se_avg.reshape(1)]).cpu().tolist()
            t = m_step.numel()
            out["metrics"][name] = {
                "mean_per_step": packed[:t],
                "se_per_step": packed[t : 2 * t],
                "mean": packed[2 * t],
                "se": packed[2 * t + 1],
            }
        return out
