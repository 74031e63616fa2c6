"""Analyses of a trained Noether Network (paper Figs. 5 and 6), for any predictor and any image g_phi.

Embedding (Fig. 5): g_phi's embeddings of held-out frames (pairs of consecutive frames when
``g.pairs``) -> PCA (:func:`embedding_pca`: variance explained per component) -> Grad-CAM maps
(:func:`grad_cam`) of the leading components at g_phi's last convolution, drawn as one image grid
(:func:`save_gradcam_grid`). A component's direction has an arbitrary sign (it is reported with its
largest-magnitude loading positive); Grad-CAM explains the magnitude of each frame's projection
``|(g(x) - mean) . v|``, so the maps do not depend on that sign (with the raw projection, the ReLU of
Grad-CAM blanks every map whose frames happen to project negatively).

Inner steps (Fig. 6): :func:`inner_step_curve` optimises the inner (Noether) loss of each example with
Adam for many steps through the one tailoring engine and records, at every step, the outer loss (MSE to
the true future) and the inner loss of the current prediction, without a second inner loop: the engine's
per-step loss function is where the prediction is made, so it is also where the outer loss is read.

:func:`analyze_embedding` and :func:`analyze_inner_steps` run them on a checkpoint and a recording's
held-out windows (the checkpoint's own split, refusing windows it trained on) and write their JSON, figure
and variance table into ``out``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_output_path, atomic_write_json


# ------------------------------------------------------------------------------------------------ PCA
@dataclass
class PCAResult:
    """mean [D]; components [D', D] (rows, by decreasing variance, sign-fixed); explained [D'] (variance
    explained ratio); embeddings [N, D] (the analysed rows)."""

    mean: Tensor
    components: Tensor
    explained: Tensor
    embeddings: Tensor

    def table(self, k: int | None = None) -> list[dict[str, float]]:
        """Per component: its share of variance and the cumulative share (first ``k``)."""
        ratio = self.explained.double().cpu().numpy()[:k]
        cum = np.cumsum(ratio)
        return [{"component": i + 1, "explained": float(r), "cumulative": float(c)}
                for i, (r, c) in enumerate(zip(ratio, cum))]


def embed_frames(g: nn.Module, frames: Tensor, batch_size: int = 256) -> Tensor:
    """frames [B, T, C, H, W] (float in [0, 1]) -> g_phi embeddings [B, T', D] (T' = T-1 for pairs), no grad."""
    pairs = bool(getattr(g, "pairs", False))
    if frames.dim() != 5 or (pairs and frames.shape[1] < 2):
        raise UserError(f"need frames [B, T, C, H, W] with T >= {2 if pairs else 1}, got {tuple(frames.shape)}")
    x = gphi_inputs(frames, pairs)  # [B, T', kC, H, W]
    B, T = x.shape[:2]
    flat = x.reshape(B * T, *x.shape[2:])
    with torch.no_grad():
        e = torch.cat([g(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)])
    return e.view(B, T, -1)


def gphi_inputs(frames: Tensor, pairs: bool) -> Tensor:
    """[B, T, C, H, W] -> g_phi's inputs [B, T', kC, H, W] (consecutive pairs concatenated on channels)."""
    return torch.cat([frames[:, :-1], frames[:, 1:]], 2) if pairs else frames


def embedding_pca(embeddings: Tensor) -> PCAResult:
    """PCA of embeddings [N, D] (N >= 2): components by decreasing variance; non-finite rows are an error."""
    e = embeddings.detach().double().reshape(-1, embeddings.shape[-1])
    if e.shape[0] < 2:
        raise UserError(f"PCA needs at least 2 embeddings, got {e.shape[0]}")
    if not torch.isfinite(e).all():
        raise UserError("g_phi produced non-finite embeddings; the checkpoint or the frames are broken")
    mean = e.mean(0)
    _, s, vh = torch.linalg.svd(e - mean, full_matrices=False)
    var = s.pow(2)
    total = var.sum()
    explained = var / total if total > 0 else torch.zeros_like(var)
    idx = vh.abs().argmax(1)
    signs = torch.sign(vh.gather(1, idx[:, None]))
    signs[signs == 0] = 1
    return PCAResult(mean=mean, components=vh * signs, explained=explained, embeddings=e)


# ------------------------------------------------------------------------------------------- Grad-CAM
def last_conv(g: nn.Module) -> nn.Module:
    """The last ``nn.Conv2d`` of g_phi (Grad-CAM's layer). Raises if g_phi has none (e.g. a state MLP)."""
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UserError("Grad-CAM needs an image g_phi with a convolution; this embedding has none")
    return convs[-1]


def grad_cam(g: nn.Module, inputs: Tensor, directions: Tensor, mean: Tensor, layer: nn.Module | None = None) -> Tensor:
    """Grad-CAM maps of the projection magnitudes ``|(g(x) - mean) . v|`` for each direction ``v``.

    inputs [N, kC, H, W]; directions [K, D]; mean [D] -> maps [K, N, H, W] in [0, 1] (each map divided by its
    maximum; an all-zero map stays zero). One forward pass; one backward pass per direction (K is small).
    """
    layer = last_conv(g) if layer is None else layer
    store: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        with torch.enable_grad():
            e = g(inputs.detach())  # [N, D]
            acts = store["a"]  # [N, ch, h, w]
            proj = (e - mean.to(e)) @ directions.to(e).T  # [N, K]
            proj = proj * torch.sign(proj.detach())  # |projection|: independent of the component's sign
            maps = []
            for k in range(directions.shape[0]):
                (grads,) = torch.autograd.grad(proj[:, k].sum(), acts, retain_graph=k < directions.shape[0] - 1)
                weights = grads.mean(dim=(2, 3), keepdim=True)  # [N, ch, 1, 1]
                maps.append(torch.relu((weights * acts).sum(1)).detach())  # [N, h, w]
    finally:
        handle.remove()
    cam = torch.stack(maps)  # [K, N, h, w]
    K, N, h, w = cam.shape
    cam = nn.functional.interpolate(cam.reshape(K * N, 1, h, w), size=inputs.shape[-2:], mode="bilinear",
                                    align_corners=False).reshape(K, N, *inputs.shape[-2:])
    peak = cam.flatten(2).amax(-1)[..., None, None]
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def save_gradcam_grid(path: str | Path, frames: Tensor, maps: Tensor, explained: Sequence[float],
                      row_labels: Sequence[str]) -> None:
    """One PNG: a row per (sequence, time step): the frame, then each component's map over it.

    frames [R, C, H, W] in [0, 1]; maps [K, R, H, W] in [0, 1]; explained: variance share of each component.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    K, R = maps.shape[:2]
    fig = Figure(figsize=(1.6 * (K + 1), 1.6 * R + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(R, K + 1, squeeze=False)
    imgs = frames.detach().float().cpu().permute(0, 2, 3, 1).clamp(0, 1).numpy()
    grey = imgs.mean(-1)
    m = maps.detach().float().cpu().numpy()
    for r in range(R):
        axes[r, 0].imshow(imgs[r] if imgs.shape[-1] == 3 else grey[r], cmap=None if imgs.shape[-1] == 3 else "gray")
        axes[r, 0].set_ylabel(row_labels[r], fontsize=7)
        for k in range(K):
            ax = axes[r, k + 1]
            ax.imshow(grey[r], cmap="gray", vmin=0, vmax=1)
            ax.imshow(m[k, r], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(f"PC{k + 1} ({100 * explained[k]:.1f}%)", fontsize=8)
        if r == 0:
            axes[r, 0].set_title("frame", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


# ---------------------------------------------------------------------------------------- inner steps
def _fork(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    g = torch.Generator(device=generator.device)
    g.set_state(generator.get_state())
    return g


@dataclass
class InnerStepCurve:
    """outer [K+1, B]: MSE of the prediction to the true future after k = 0..K inner steps; inner [K+1, B]:
    the inner (Noether) loss of that prediction; ok [B]: False where the engine fell back (non-finite)."""

    outer: Tensor
    inner: Tensor
    ok: Tensor


def inner_step_curve(net: Any, context: Tensor, actions: Tensor, target: Tensor, *, steps: int, lr: float,
                     generator: torch.Generator | None = None) -> InnerStepCurve:
    """Adam on each example's inner loss for ``steps`` steps (one :func:`tailor` call), reading the outer loss
    of the prediction at every step. ``net``: a NoetherNetwork (``predictor``, ``cfg.adapt``,
    ``inner_loss``). context [B, n_past, *obs]; actions [B, n_past+H-1, A]; target [B, H, *obs].
    The same noise samples are used for every prediction (stochastic predictors)."""
    from noether_rl.tailoring import TailorConfig, tailor

    if steps < 1 or not (math.isfinite(lr) and lr > 0):
        raise UserError(f"need steps >= 1 and a finite lr > 0, got {steps}, {lr}")
    horizon = target.shape[1]
    if generator is None and net.predictor.stochastic:
        generator = torch.Generator(device=context.device).manual_seed(0)
    outer: list[Tensor] = []

    def predict(adapt: dict[str, Tensor] | None) -> Tensor:
        return net.predictor.rollout(context, actions, horizon, adapt=adapt, generator=_fork(generator)).pred

    def mse(pred: Tensor) -> Tensor:
        return (pred.detach() - target).pow(2).flatten(1).mean(1)  # [B]

    def loss_fn(adapt: dict[str, Tensor]) -> Tensor:
        pred = predict(adapt)
        outer.append(mse(pred))
        return net.inner_loss(context, pred)

    B = context.shape[0]
    adapt0 = net.predictor.adaptables(B, horizon, kind=net.cfg.adapt, device=context.device, dtype=context.dtype)
    with torch.no_grad():  # evaluation: the engine runs first order and returns detached tensors
        res = tailor(loss_fn, adapt0, TailorConfig(steps=steps, lr=lr, optimizer="adam", order="first"))
        final = predict(res.adapted)
        outer.append(mse(final))
        last = net.inner_loss(context, final).detach()
    inner_all = torch.cat([res.inner_losses, last[None]])  # [K+1, B]
    return InnerStepCurve(outer=torch.stack(outer), inner=inner_all, ok=res.ok)


def save_inner_steps_plot(path: str | Path, steps: np.ndarray, diff: np.ndarray, diff_se: np.ndarray,
                          inner_mean: np.ndarray, label: str) -> None:
    """Change of the outer loss from 0 inner steps (paired mean ± se) and the inner loss, against Adam steps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.plot(steps, diff, color="C0")
    ax.fill_between(steps, diff - diff_se, diff + diff_se, color="C0", alpha=0.25)
    ax.set_xlabel("Adam inner steps")
    ax.set_ylabel("outer MSE - MSE at 0 steps (↓)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(steps, inner_mean, color="C3", alpha=0.8)
    ax2.set_ylabel("inner (Noether) loss", color="C3")
    ax.set_title(label, fontsize=9)
    fig.tight_layout()
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


# ------------------------------------------------------------------------------------------- runners
@dataclass(frozen=True)
class AnalyzeConfig:
    """checkpoint: a Noether Network checkpoint; data: the recording to take held-out windows from (its
    ``split`` of the checkpoint's own train/val/test episodes; windows it trained on are refused).
    embedding: components in the figure, sequences and time steps (pair indices) shown.
    inner steps: Adam steps, lr, number of windows."""

    checkpoint: str
    data: str
    out: str
    split: str = "test"
    stride: int = 10
    max_windows: int = 64
    seed: int = 0
    device: str = "auto"
    components: int = 6
    sequences: int = 2
    times: tuple[int, ...] = field(default=(0, 8, 16))
    steps: int = 500
    lr: float = 1e-3


def _load(cfg: AnalyzeConfig) -> tuple[Any, Any, Tensor, dict[str, Any]]:
    """(loaded model, windows, window indices, split provenance) of ``cfg``'s held-out windows."""
    from noether_rl.data import load_manifest
    from noether_rl.experiments.evaluation import (
        EvalConfig,
        check_unseen,
        eval_windows,
        resolve_split,
        training_split,
    )
    from noether_rl.noether import NoetherNetwork
    from noether_rl.training.loading import load_model
    from noether_rl.utils.device import resolve_device

    device = resolve_device(cfg.device)
    model = load_model(cfg.checkpoint, device=device)
    if not isinstance(model.module, NoetherNetwork):
        raise UserError(f"{cfg.checkpoint} is a {model.kind!r} model; the analyses need a Noether Network (g_phi)")
    n_past, n_future = int(model.config.data.n_past), int(model.config.data.n_future)
    ecfg = EvalConfig(data=cfg.data, split=cfg.split, n_past=n_past, n_future=n_future, stride=cfg.stride,
                      max_windows=cfg.max_windows, seed=cfg.seed)
    manifest = load_manifest(cfg.data)
    own = {"model": training_split(model.config)}
    split = resolve_split(ecfg, len(manifest["shards"]), own)
    episodes = getattr(split, cfg.split)
    check_unseen(ecfg, episodes, manifest, own)
    data, idx = eval_windows(cfg.data, episodes, n_past, n_future, cfg.stride, cfg.max_windows, cfg.seed, device)
    prov = {"checkpoint": cfg.checkpoint, "epoch": model.epoch, "data": cfg.data, "split": cfg.split,
            "episodes": episodes, "n_windows": int(idx.numel()), "n_past": n_past, "n_future": n_future}
    return model, data, idx, prov


def analyze_embedding(cfg: AnalyzeConfig) -> dict[str, Any]:
    """PCA of g_phi's embeddings of the held-out windows' frames + Grad-CAM grid; writes
    ``embedding_pca.json``, ``embedding_variance.csv`` and ``gradcam.png`` into ``cfg.out``."""
    model, data, idx, prov = _load(cfg)
    g = model.module.embedding
    frames, _ = data.batch(idx)  # [N, L, C, H, W]
    emb = embed_frames(g, frames)
    pca = embedding_pca(emb.reshape(-1, emb.shape[-1]))
    k = min(cfg.components, pca.components.shape[0])
    pairs = bool(getattr(g, "pairs", False))
    eps = data.episode_of(idx).tolist()
    first = [eps.index(e) for e in dict.fromkeys(eps)][: cfg.sequences]  # one window from each of the first episodes
    inputs = gphi_inputs(frames[first], pairs)  # [S, T', kC, H, W]
    times = [t for t in cfg.times if t < inputs.shape[1]]
    if not times:
        raise UserError(f"none of the time steps {list(cfg.times)} exists in windows of {inputs.shape[1]} g_phi inputs")
    sel = inputs[:, times].reshape(-1, *inputs.shape[2:])  # rows: sequence-major, then time
    maps = grad_cam(g, sel, pca.components[:k].float(), pca.mean.float())
    C = frames.shape[2]
    shown = sel[:, -C:]  # the later frame of each pair
    labels = [f"ep {eps[i]} t={t + (1 if pairs else 0)}" for i in first for t in times]
    out = Path(cfg.out)
    save_gradcam_grid(out / "gradcam.png", shown, maps, pca.explained[:k].tolist(), labels)
    table = pca.table()
    with atomic_output_path(out / "embedding_variance.csv") as tmp:
        tmp.write_text("component,explained,cumulative\n"
                       + "".join(f"{r['component']},{r['explained']:.6f},{r['cumulative']:.6f}\n" for r in table))
    result = {"analysis": "embedding", **prov, "config": asdict(cfg), "n_embeddings": int(pca.embeddings.shape[0]),
              "embedding_dim": int(pca.embeddings.shape[1]), "variance": table,
              "first_component": table[0]["explained"],
              "first_four": table[min(3, len(table) - 1)]["cumulative"],
              "gradcam": {"layer": type(last_conv(g)).__name__, "components": k, "rows": labels,
                          "explains": "|(g(x) - mean) . v| per frame (sign-free); components reported with "
                                      "their largest loading positive"}}
    atomic_write_json(out / "embedding_pca.json", result)
    return result


def analyze_inner_steps(cfg: AnalyzeConfig) -> dict[str, Any]:
    """Outer loss against Adam inner steps on the held-out windows; writes ``inner_steps.json`` and
    ``inner_steps.png`` into ``cfg.out``. The change from 0 steps is paired on the same windows; standard errors
    are episode-clustered (:func:`noether_rl.eval.stats.cluster_mean_se`)."""
    from noether_rl.eval.stats import cluster_mean_se

    model, data, idx, prov = _load(cfg)
    net = model.module
    frames, actions = data.batch(idx)
    n_past = prov["n_past"]
    gen = torch.Generator(device=frames.device).manual_seed(cfg.seed)
    curve = inner_step_curve(net, frames[:, :n_past], actions, frames[:, n_past:], steps=cfg.steps, lr=cfg.lr,
                             generator=gen)
    outer = curve.outer.double().cpu().T  # [B, K+1]
    inner = curve.inner.double().cpu().T
    episodes = data.episode_of(idx).cpu()
    level = cluster_mean_se(outer, episodes)
    change = cluster_mean_se(outer - outer[:, :1], episodes)
    inner_mean = inner.mean(0).numpy()
    mean, diff, diff_se = level.mean.numpy(), change.mean.numpy(), change.se.numpy()
    if not np.isfinite(mean).all():
        raise UserError("the outer loss went non-finite during the inner steps; lower --lr")
    steps = np.arange(len(mean))
    best = int(mean.argmin())
    label = (f"{Path(cfg.checkpoint).name}: Adam lr={cfg.lr:g}, {level.n_windows} {cfg.split} windows of "
             f"{level.n_episodes} episodes (± se over episodes)")
    out = Path(cfg.out)
    save_inner_steps_plot(out / "inner_steps.png", steps, diff, np.nan_to_num(diff_se), inner_mean, label)
    result = {"analysis": "inner_steps", **prov, "config": asdict(cfg), "n_episodes": level.n_episodes,
              "outer_mse_mean": mean.tolist(), "outer_mse_se": level.se.tolist(),
              "outer_change_mean": diff.tolist(), "outer_change_se": diff_se.tolist(),
              "inner_loss_mean": inner_mean.tolist(),
              "best_step": best, "outer_at_0": float(mean[0]), "outer_at_best": float(mean[best]),
              "outer_at_last": float(mean[-1]),
              "change_at_best": {"mean": float(diff[best]), "se": float(diff_se[best])},
              "change_at_last": {"mean": float(diff[-1]), "se": float(diff_se[-1])},
              "fallbacks": int((~curve.ok).sum()),
              "note": "se: episode-clustered; nan with fewer than 2 episodes. best_step is descriptive: choose an "
                      "inner-step count on the val split, never on test"}
    atomic_write_json(out / "inner_steps.json", result)
    return result
