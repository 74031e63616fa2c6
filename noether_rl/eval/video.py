"""Side-by-side prediction videos (e.g. ground truth | SVG | Noether) and still frame grids.

A *column* is one model's frames: float ``[T, C, H, W]`` in ``[0, 1]`` (tensor or array, ``C`` in 1 or 3)
or ``uint8 [T, H, W, C]``. All columns must have the same ``T`` and ``H`` (widths may differ).
Frames are upscaled by nearest neighbour, separated by a small gap and topped by a label row
naming each column (rendered with matplotlib). Every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_output_path

__all__ = ["compose_side_by_side", "frames_grid_png", "save_gif", "side_by_side_video", "to_uint8_frames"]

Column = torch.Tensor | np.ndarray

_BACKGROUND = 255  # white gaps/header
_MACRO_BLOCK = 16


def to_uint8_frames(frames: Column) -> np.ndarray:
    """Convert one column to ``uint8 [T, H, W, 3]``.

    Accepts float ``[T, C, H, W]`` in ``[0, 1]`` (clipped) or ``uint8 [T, H, W, C]``; ``C`` is 1 or 3.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.dtype == torch.bfloat16:
            frames = frames.float()
        frames = frames.numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4:
        raise UserError(
            f"a video column must be [T, C, H, W] float or [T, H, W, C] uint8; got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        if arr.shape[-1] not in (1, 3):
            raise UserError(f"uint8 frames must be [T, H, W, C] with C in (1, 3); got shape {arr.shape}")
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.shape[1] not in (1, 3):
            raise UserError(f"float frames must be [T, C, H, W] with C in (1, 3); got shape {arr.shape}")
        out = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    else:
        raise UserError(f"unsupported frame dtype {arr.dtype}; use float in [0, 1] or uint8")
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out)


def _render_labels(labels: list[str], widths: list[int], gap: int, height: int) -> np.ndarray:
    """A white ``uint8 [height, sum(widths) + gaps, 3]`` strip with each label centred over its column."""
    total_w = sum(widths) + gap * (len(widths) - 1)
    dpi = 100
    fig = Figure(figsize=(total_w / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    fontsize_pt = max(5.0, 0.6 * height * 72.0 / dpi)
    x0 = 0
    for label, w in zip(labels, widths):
        fig.text(
            (x0 + w / 2) / total_w, 0.5, label, ha="center", va="center", fontsize=fontsize_pt, color="black"
        )
        x0 += w + gap
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    strip = np.full((height, total_w, 3), _BACKGROUND, dtype=np.uint8)
    h, w = min(height, rgba.shape[0]), min(total_w, rgba.shape[1])
    strip[:h, :w] = rgba[:h, :w, :3]
    return strip


def compose_side_by_side(
    columns: Mapping[str, Column],
    scale: int = 4,
    gap: int | None = None,
    labels: bool = True,
) -> np.ndarray:
    """Compose the columns into one ``uint8 [T, H', W', 3]`` frame sequence.

    ``W' = sum(W_i) * scale + gap * (n - 1)``; ``H' = H * scale`` plus a label row if ``labels``.
    ``gap`` defaults to ``max(2, scale)`` pixels.
    """
    if not columns:
        raise UserError("side-by-side video needs at least one column")
    if scale < 1:
        raise UserError(f"scale must be >= 1, got {scale}")
    gap = max(2, scale) if gap is None else gap
    names = list(columns)
    frames = [to_uint8_frames(columns[n]) for n in names]
    ts = {f.shape[0] for f in frames}
    hs = {f.shape[1] for f in frames}
    if len(ts) != 1:
        raise UserError(
            f"all columns need the same number of frames; got {dict(zip(names, [f.shape[0] for f in frames]))}"
        )
    if len(hs) != 1:
        raise UserError(
            f"all columns need the same frame height; got {dict(zip(names, [f.shape[1] for f in frames]))}"
        )
    up = [f.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else f for f in frames]
    t, h = up[0].shape[0], up[0].shape[1]
    widths = [f.shape[2] for f in up]
    total_w = sum(widths) + gap * (len(up) - 1)
    body = np.full((t, h, total_w, 3), _BACKGROUND, dtype=np.uint8)
    x0 = 0
    for f, w in zip(up, widths):
        body[:, :, x0 : x0 + w] = f
        x0 += w + gap
    if not labels:
        return body
    label_h = max(12, min(24, h // 6))
    strip = _render_labels(names, widths, gap, label_h)
    return np.concatenate([np.broadcast_to(strip, (t, *strip.shape)), body], axis=1)


def _pad_to_macro_block(frames: np.ndarray, block: int = _MACRO_BLOCK) -> np.ndarray:
    """Pad ``[T, H, W, 3]`` on the bottom/right with background so H and W are multiples of ``block``."""
    _, h, w, _ = frames.shape
    ph, pw = (-h) % block, (-w) % block
    if ph == 0 and pw == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=_BACKGROUND)


def side_by_side_video(
    columns: Mapping[str, Column],
    out: str | os.PathLike[str],
    fps: int = 8,
    scale: int = 4,
    *,
    labels: bool = True,
    gap: int | None = None,
) -> Path:
    """Write an H.264 mp4 with the columns side by side, in the mapping's order, left to right.

    Args:
        columns: column name -> frames (see module docstring), e.g. ``{"ground truth": x, "SVG": a,
            "Noether": b}``; the names label the columns and are stored in the mp4's comment metadata.
        out: ``.mp4`` path (parents created; written atomically).
        fps: frames per second.
        scale: nearest-neighbour upscaling factor.
        labels: draw a label row above the frames.
        gap: pixels between columns (default ``max(2, scale)``).

    The frame is padded (white, bottom/right) to multiples of 16 for the codec, so its size is
    ``compose_side_by_side(...)`` rounded up to 16. Returns ``Path(out)``.
    """
    frames = _pad_to_macro_block(compose_side_by_side(columns, scale=scale, gap=gap, labels=labels))
    order = " | ".join(columns)
    with atomic_output_path(out) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            macro_block_size=_MACRO_BLOCK,
            ffmpeg_log_level="error",
            output_params=["-metadata", f"comment=columns: {order}"],
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    return Path(out)


def save_gif(
    columns: Mapping[str, Column],
    out: str | os.PathLike[str],
    fps: int = 8,
    scale: int = 4,
    *,
    labels: bool = True,
    gap: int | None = None,
) -> Path:
    """Same layout as :func:`side_by_side_video`, as a looping GIF (no ffmpeg needed)."""
    frames = compose_side_by_side(columns, scale=scale, gap=gap, labels=labels)
    with atomic_output_path(out) as tmp:
        imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return Path(out)


def frames_grid_png(
    columns: Mapping[str, Column],
    out: str | os.PathLike[str],
    max_steps: int = 10,
    *,
    first_step: int = 0,
) -> Path:
    """Save a still PNG grid: one row per model, one column per (evenly subsampled) time step.

    Args:
        columns: model name -> frames (see module docstring); same ``T`` and ``H`` for all.
        out: PNG path (written atomically).
        max_steps: at most this many time steps are shown (first and last always included).
        first_step: time index printed for frame 0.
    """
    if not columns:
        raise UserError("frames_grid_png needs at least one model")
    names = list(columns)
    frames = [to_uint8_frames(columns[n]) for n in names]
    if len({f.shape[:3] for f in frames}) != 1:
        raise UserError(f"all models need the same [T, H, W]; got {[f.shape[:3] for f in frames]}")
    t, h, w, _ = frames[0].shape
    idx = np.unique(np.linspace(0, t - 1, num=min(max(1, max_steps), t)).round().astype(int))
    gap = 2
    grid_h = len(frames) * h + gap * (len(frames) - 1)
    grid_w = len(idx) * w + gap * (len(idx) - 1)
    grid = np.full((grid_h, grid_w, 3), _BACKGROUND, dtype=np.uint8)
    for r, f in enumerate(frames):
        for c, i in enumerate(idx):
            y0, x0 = r * (h + gap), c * (w + gap)
            grid[y0 : y0 + h, x0 : x0 + w] = f[i]

    cell_in = 0.6
    fig = Figure(figsize=(1.5 + cell_in * len(idx), 0.4 + cell_in * len(frames)), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 - 0.5 for r in range(len(frames))], labels=names)
    ax.set_xticks(
        [c * (w + gap) + w / 2 - 0.5 for c in range(len(idx))], labels=[str(first_step + i) for i in idx]
    )
    ax.set_xlabel("time step")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    with atomic_output_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.05)
    return Path(out)
