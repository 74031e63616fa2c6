"""Video-folder datasets: mp4/webm/gif/... files or folders of frames, decoded once into uint8 clips.

A folder is scanned recursively: every video file (``VIDEO_SUFFIXES``) is one video, and every directory
that directly holds image files (``IMAGE_SUFFIXES``, in natural name order: ``2.png`` before ``10.png``) is
one video whose frame rate is ``VideoConfig.folder_fps``.

Each video is decoded once with imageio (ffmpeg for video files, Pillow for gifs and images) and reduced
while streaming: frames are picked to resample to ``fps``, centre-cropped, resized to ``size`` x ``size``
and kept as ``uint8 [T, size, size, 3]`` in memory (and, with ``cache_dir``, on disk), so later epochs,
splits and reruns never decode again. A video that cannot be read, has a frame rate below the target, or is
too short for one clip is skipped; all skipped videos are named, with a count, in ONE
:class:`VideoSkipWarning` and kept in :attr:`VideoSet.skipped` (and :meth:`VideoSet.summary`), never
dropped silently. No usable video at all is a :class:`~noether_rl.errors.UserError`.

Splits: the usable videos, sorted by their path relative to the root, are permuted with ``seed`` and cut
into train / val / test (``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction``), so
the split depends only on the set of usable videos and the seed. Clips of the ``train`` split are flipped
horizontally at random (p = 0.5, the whole clip; torch's global RNG unless a generator is given) when
``hflip``; val and test clips never.

:meth:`VideoSet.dataset` gives a split's clips with the window-dataset interface (``batch(idx)``,
``episode_of(idx)``, ``ds[k]``; see :class:`VideoClipDataset`): ``frames`` float32 ``[L, C, H, W]`` in
[0, 1], ``actions`` float32 zeros ``[L-1, 1]`` (videos have no actions), ``episode`` = video index into
:attr:`VideoSet.names` and ``start`` = first frame of the clip. :func:`export_recording` writes one clip
per video as a recording (train, val, test order), so the recording-based commands (``train``,
``meta-train``, ``evaluate``, ``analyze``) read any video folder unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".avi", ".mov", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1


class VideoSkipWarning(UserWarning):
    """Some videos of a folder were skipped (unreadable, too short, frame rate too low)."""


class VideoDecodeError(Exception):
    """A video could not be decoded (the message says why in one line)."""


@dataclass(frozen=True)
class VideoConfig:
    """How videos become clips.

    Args:
        size: output frame height = width in pixels.
        fps: target frame rate (frame ``k`` is the source frame nearest to time ``k / fps``, i.e. index
            ``round(k * source_fps / fps)``); ``None`` keeps every frame. A video whose source rate is below ``fps`` is skipped (no frames are invented).
        folder_fps: frame rate of folders of frames (they carry no timing); required when ``fps`` is set and
            the data has frame folders.
        crop: ``"square"`` = the largest centred square (full height for landscape video), ``"none"`` = no
            crop (the frame is squashed to a square), or an int side of a centred square crop.
        num_frames: clip length ``L`` (e.g. 2 conditioning + 20 predicted frames = 22).
        clip: ``"middle"`` = one clip from the middle of each video (start ``(T - L) // 2``), ``"start"`` =
            one clip from its first frame, ``"windows"`` = every clip at starts ``0, stride, 2 stride, ...``.
        stride: step between window starts for ``clip="windows"``.
        min_frames: also skip videos with fewer than this many frames after resampling (``L`` is always a
            minimum).
        hflip: randomly flip training clips horizontally (never val/test clips).
        test_fraction, val_fraction: fractions of the usable videos in the test and validation splits.
        seed: seed of the split permutation.
    """

    size: int = 64
    fps: float | None = None
    folder_fps: float | None = None
    crop: str | int = "square"
    num_frames: int = 22
    clip: Literal["middle", "start", "windows"] = "middle"
    stride: int = 1
    min_frames: int = 0
    hflip: bool = True
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise UserError(f"video size must be an integer >= 8 pixels, got {self.size!r}")
        for name in ("fps", "folder_fps"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise UserError(f"{name} must be a positive number or None, got {v!r}")
        if not (self.crop in ("square", "none") or (isinstance(self.crop, int) and self.crop >= 8)):
            raise UserError(f"crop must be 'square', 'none' or a side >= 8 pixels, got {self.crop!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise UserError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if self.clip not in ("middle", "start", "windows"):
            raise UserError(f"clip must be 'middle', 'start' or 'windows', got {self.clip!r}")
        if not isinstance(self.stride, int) or self.stride < 1:
            raise UserError(f"stride must be a positive integer, got {self.stride!r}")
        if not isinstance(self.min_frames, int) or self.min_frames < 0:
            raise UserError(f"min_frames must be a non-negative integer, got {self.min_frames!r}")
        fracs = (self.test_fraction, self.val_fraction)
        if any(not 0.0 <= f < 1.0 for f in fracs) or sum(fracs) >= 1.0:
            raise UserError(f"need 0 <= test_fraction, val_fraction and their sum < 1, got {fracs}")

    @property
    def required_frames(self) -> int:
        """Frames (after resampling) a video needs to be usable."""
        return max(self.num_frames, self.min_frames)

    def decode_key(self) -> dict[str, Any]:
        """The fields that change decoded pixels (the disk-cache key)."""
        return {"size": self.size, "fps": self.fps, "folder_fps": self.folder_fps, "crop": self.crop}


@dataclass(frozen=True)
class SkippedVideo:
    name: str
    reason: str


# ------------------------------------------------------------------------------------------ discovery
def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _frame_files(d: Path) -> list[Path]:
    files = [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def discover_videos(root: str | os.PathLike[str]) -> list[Path]:
    """Video files and frame folders under ``root`` (recursive), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"video folder {root} does not exist or is not a directory")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        names = [f for f in filenames if not f.startswith(".")]
        found += [here / f for f in names if Path(f).suffix.lower() in VIDEO_SUFFIXES]
        if here != root and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in names):
            found.append(here)
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


# ------------------------------------------------------------------------------------------- decoding
def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _source(path: Path, cfg: VideoConfig) -> tuple[float | None, Iterator[np.ndarray]]:
    """(source fps or None if unknown, iterator over RGB-ish frames)."""
    import imageio.v3 as iio

    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise VideoDecodeError("folder holds no image frames")
        return cfg.folder_fps, (iio.imread(f) for f in files)
    if path.suffix.lower() == ".gif":
        meta = iio.immeta(path)
        duration = meta.get("duration")  # milliseconds per frame
        fps = 1000.0 / float(duration) if duration else None
        return fps, iio.imiter(path)
    meta = iio.immeta(path, plugin="FFMPEG")
    fps = meta.get("fps")
    return (float(fps) if fps else None), iio.imiter(path, plugin="FFMPEG")


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise VideoDecodeError(f"frame of shape {frame.shape} is not an image")
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    frame = frame[:, :, :3]
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        elif np.issubdtype(frame.dtype, np.floating):
            frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        else:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def crop_resize(frame: np.ndarray, crop: str | int, size: int) -> np.ndarray:
    """Centre crop (``"square"``, ``"none"`` or a side) then resize to ``size`` x ``size`` (antialiased)."""
    from PIL import Image

    frame = _to_rgb(frame)
    h, w = frame.shape[:2]
    if crop != "none":
        side = min(h, w) if crop == "square" else int(crop)
        if side > min(h, w):
            raise VideoDecodeError(f"crop {side} is larger than the {w}x{h} frame")
        top, left = (h - side) // 2, (w - side) // 2
        frame = frame[top : top + side, left : left + side]
    if frame.shape[:2] != (size, size):
        frame = np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
    return np.ascontiguousarray(frame)


def decode_video(path: str | os.PathLike[str], cfg: VideoConfig) -> np.ndarray:
    """Decode, resample, crop and resize one video (file or frame folder): ``uint8 [T, size, size, 3]``.

    Raises :class:`VideoDecodeError` (one line) if it cannot be read or its frame rate is unusable.
    """
    path = Path(path)
    try:
        src_fps, frames = _source(path, cfg)
        if cfg.fps is not None:
            if src_fps is None:
                what = "folder_fps is not set" if path.is_dir() else "its frame rate is unknown"
                raise VideoDecodeError(f"cannot resample to {cfg.fps:g} fps: {what}")
            if src_fps < cfg.fps * (1 - 1e-3):
                raise VideoDecodeError(f"source {src_fps:g} fps is below the target {cfg.fps:g} fps")
            ratio = max(src_fps / cfg.fps, 1.0)  # >= 1: the picked indices strictly increase
        else:
            ratio = 1.0
        out: list[np.ndarray] = []
        for i, frame in enumerate(frames):
            if i == math.floor(len(out) * ratio + 0.5):  # the source frame nearest to each target time
                out.append(crop_resize(frame, cfg.crop, cfg.size))
    except VideoDecodeError:
        raise
    except Exception as e:  # imageio/ffmpeg/Pillow raise many types for broken files
        raise VideoDecodeError(_first_line(e)) from None
    if not out:
        raise VideoDecodeError("no frames decoded")
    return np.stack(out)


def _cache_path(cache_dir: Path, path: Path, cfg: VideoConfig) -> Path:
    st = path.stat()
    mtimes = [st.st_mtime_ns] + ([f.stat().st_mtime_ns for f in _frame_files(path)] if path.is_dir() else [])
    mtime = max(mtimes)
    key = {"v": _CACHE_VERSION, "path": str(path.resolve()), "size": st.st_size, "mtime_ns": mtime,
           **cfg.decode_key()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir / f"{digest}.npy"


def _decode_cached(path: Path, cfg: VideoConfig, cache_dir: Path | None) -> np.ndarray:
    if cache_dir is None:
        return decode_video(path, cfg)
    cached = _cache_path(cache_dir, path, cfg)
    if cached.is_file():
        try:
            arr = np.load(cached, allow_pickle=False)
            if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[1:] == (cfg.size, cfg.size, 3):
                return arr
        except (OSError, ValueError):
            pass  # a corrupt cache entry is rebuilt
    arr = decode_video(path, cfg)
    with atomic_open(cached, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    return arr


# ------------------------------------------------------------------------------------------- the set
@dataclass(frozen=True)
class VideoSet:
    """Decoded usable videos, their split, and what was skipped.

    ``names[i]`` (path relative to ``root``) and ``videos[i]`` (``uint8 [T_i, S, S, 3]``) for every usable
    video; ``splits[s]`` the sorted indices of split ``s``; ``skipped`` every video left out, with why.
    """

    root: str
    cfg: VideoConfig
    names: list[str]
    videos: list[np.ndarray]
    splits: dict[str, list[int]]
    skipped: list[SkippedVideo]

    def dataset(self, split: str, *, train: bool | None = None,
                device: torch.device | str = "cpu") -> VideoClipDataset:
        """The clips of ``split`` on ``device``; ``train`` (default: ``split == "train"``) enables the
        random horizontal flip when ``cfg.hflip``."""
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        flip = self.cfg.hflip and (split == "train" if train is None else train)
        return VideoClipDataset(self, self.splits[split], flip=flip, device=device)

    def summary(self) -> dict[str, Any]:
        """Provenance for results files: config, split names, counts, skipped videos with reasons."""
        return {
            "root": self.root,
            "config": asdict(self.cfg),
            "usable": len(self.names),
            "splits": {s: [self.names[i] for i in idx] for s, idx in self.splits.items()},
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
        }


def _split(n: int, cfg: VideoConfig) -> dict[str, list[int]]:
    n_test = round(n * cfg.test_fraction)
    n_val = round(n * cfg.val_fraction)
    n_train = n - n_test - n_val
    if n_train < 1:
        raise UserError(
            f"only {n} usable videos: too few for a training split with test_fraction={cfg.test_fraction} "
            f"and val_fraction={cfg.val_fraction}"
        )
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return {
        "train": sorted(int(i) for i in perm[:n_train]),
        "val": sorted(int(i) for i in perm[n_train : n_train + n_val]),
        "test": sorted(int(i) for i in perm[n_train + n_val :]),
    }


def _warn_skipped(skipped: Sequence[SkippedVideo], total: int, root: str, shown: int = 20) -> None:
    if not skipped:
        return
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s.reason.split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    listed = "; ".join(f"{s.name} ({s.reason})" for s in skipped[:shown])
    more = f"; ... and {len(skipped) - shown} more (VideoSet.skipped lists all)" if len(skipped) > shown else ""
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    warnings.warn(
        f"skipped {len(skipped)} of {total} videos under {root} ({kinds}): {listed}{more}",
        VideoSkipWarning,
        stacklevel=3,
    )


def load_videos(
    paths: Iterable[str | os.PathLike[str]],
    cfg: VideoConfig,
    *,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> VideoSet:
    """Decode ``paths`` (video files or frame folders) once each and split them (see module docstring).

    ``root`` only shortens the names (paths relative to it). Raises :class:`UserError` if none is usable.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    paths = [Path(p) for p in paths]
    base = Path(root) if root is not None else None
    cache = Path(cache_dir) if cache_dir is not None else None

    def name_of(p: Path) -> str:
        if base is not None:
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    if cfg.fps is not None and cfg.folder_fps is None and (dirs := [p for p in paths if p.is_dir()]):
        raise UserError(
            f"{len(dirs)} folder(s) of frames (e.g. {dirs[0]}) carry no frame rate: set folder_fps to "
            f"resample them to {cfg.fps:g} fps"
        )
    need = cfg.required_frames
    kept: list[tuple[str, np.ndarray]] = []
    skipped: list[SkippedVideo] = []
    for p in tqdm(paths, desc="decode", unit="video", disable=not progress):
        try:
            arr = _decode_cached(p, cfg, cache)
        except (VideoDecodeError, OSError) as e:
            reason = str(e) if isinstance(e, VideoDecodeError) else _first_line(e)
            skipped.append(SkippedVideo(name_of(p), f"unreadable: {reason}"))
            continue
        if len(arr) < need:
            at = f" at {cfg.fps:g} fps" if cfg.fps is not None else ""
            skipped.append(SkippedVideo(name_of(p), f"too short: {len(arr)} < {need} frames{at}"))
            continue
        kept.append((name_of(p), arr))
    where = str(root) if root is not None else "the given paths"
    _warn_skipped(skipped, len(paths), where)
    if not kept:
        raise UserError(f"no usable video among {len(paths)} under {where}; each needs >= {need} readable frames")
    kept.sort(key=lambda kv: _natural_key(kv[0]))
    return VideoSet(
        root=where,
        cfg=cfg,
        names=[k for k, _ in kept],
        videos=[v for _, v in kept],
        splits=_split(len(kept), cfg),
        skipped=skipped,
    )


def load_video_folder(
    root: str | os.PathLike[str],
    cfg: VideoConfig = VideoConfig(),
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> VideoSet:
    """Every video file and frame folder under ``root`` (see :func:`discover_videos`), decoded and split."""
    paths = discover_videos(root)
    if not paths:
        raise UserError(
            f"no videos under {root}: expected {'/'.join(VIDEO_SUFFIXES)} files or folders of image frames"
        )
    return load_videos(paths, cfg, root=root, cache_dir=cache_dir, progress=progress)


# --------------------------------------------------------------------------------------- the dataset
class VideoClipDataset(Dataset):
    """Clips of ``L = num_frames`` frames from a :class:`VideoSet` split, with the window-dataset interface
    of :mod:`noether_rl.data.windows`: the split's videos are held on ``device`` as one uint8 tensor and
    gathered by index, so a batch costs no Python loop per example.

    - ``batch(idx [B], generator=None)`` -> frames float ``[B, L, C, H, W]`` in [0, 1] (each clip flipped
      horizontally with p = 0.5 when ``flip``), actions float32 zeros ``[B, L-1, 1]``;
    - ``episode_of(idx)`` -> video index (into :attr:`VideoSet.names`) of each clip ``[B]``, the
      independent unit for statistics;
    - ``ds[k]`` -> one clip as a dict (``frames``, ``actions``, ``episode``, ``start``), for a DataLoader;
    - ``clip(k)`` / ``tensors()`` -> unflipped uint8 clips.
    """

    def __init__(self, videos: VideoSet, indices: Sequence[int], *, flip: bool = False,
                 device: torch.device | str = "cpu") -> None:
        cfg = videos.cfg
        self.set = videos
        self.flip = bool(flip)
        self.L = self.length = cfg.num_frames
        self.videos = [int(i) for i in indices]
        index: list[tuple[int, int, int]] = []  # (video, start within the video, start in the flat tensor)
        offset = 0
        for i in self.videos:
            t = len(videos.videos[i])
            if cfg.clip == "middle":
                starts = [(t - self.L) // 2]
            elif cfg.clip == "start":
                starts = [0]
            else:
                starts = list(range(0, t - self.L + 1, cfg.stride))
            index += [(i, s, offset + s) for s in starts]
            offset += t
        size = cfg.size
        flat = (np.concatenate([videos.videos[i] for i in self.videos]) if self.videos
                else np.zeros((0, size, size, 3), np.uint8))
        self.frames = torch.from_numpy(flat).to(device)  # [sum T, H, W, C] uint8
        self.index = torch.as_tensor(np.asarray(index, dtype=np.int64).reshape(-1, 3), device=self.frames.device)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        t = self.index[idx, 2][:, None] + torch.arange(self.L, device=self.frames.device)  # [B, L]
        return self.frames[t]  # [B, L, H, W, C] uint8

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """idx [B] -> frames float [B, L, C, H, W] in [0, 1], actions zeros [B, L-1, 1]."""
        idx = torch.as_tensor(idx, device=self.frames.device)
        x = self._gather(idx).permute(0, 1, 4, 2, 3).float().div_(255.0)
        if self.flip:
            u = torch.rand(x.shape[0], generator=generator, device=None if generator is not None else x.device)
            x = torch.where((u.to(x.device) < 0.5)[:, None, None, None, None], x.flip(-1), x)
        return x, torch.zeros(x.shape[0], self.L - 1, 1, device=x.device)

    def episode_of(self, idx: torch.Tensor) -> torch.Tensor:
        """idx [B] -> video index of each clip [B]."""
        return self.index[torch.as_tensor(idx, device=self.frames.device), 0]

    def clip(self, k: int) -> np.ndarray:
        """Clip ``k`` unflipped: ``uint8 [L, H, W, 3]``."""
        return self._gather(torch.tensor([k], device=self.frames.device))[0].cpu().numpy()

    def __getitem__(self, k: int) -> dict[str, torch.Tensor | int]:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        idx = torch.tensor([k % len(self)], device=self.frames.device)
        frames, actions = self.batch(idx)
        return {"frames": frames[0], "actions": actions[0], "episode": int(self.index[idx[0], 0]),
                "start": int(self.index[idx[0], 1])}

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips unflipped: frames uint8 ``[N, L, H, W, 3]``, actions float32 zeros ``[N, L-1, 1]``."""
        if len(self) == 0:
            raise UserError("no clips in this split")
        frames = self._gather(torch.arange(len(self), device=self.frames.device))
        return frames, torch.zeros(len(self), self.L - 1, 1, device=frames.device)


# ---------------------------------------------------------------------------------- as a recording
def export_recording(videos: VideoSet, out: str | os.PathLike[str], *, flip_train: bool | None = None,
                     seed: int = 0) -> dict[str, int]:
    """Write one clip per video as a recording in the package's format, so that ``train``, ``meta-train``,
    ``evaluate`` and ``analyze`` read it unchanged (``--n-past 2 --n-future 20`` for 22-frame clips).

    Episodes are written in the order train, val, test, so ``train_episodes`` / ``val_episodes`` (returned)
    reproduce :attr:`VideoSet.splits` exactly. Each shard holds frames ``uint8 [L, S, S, 3]``, actions
    float32 zeros ``[L-1, 1]`` (videos have no actions), zero rewards, zero ``states [L, 2]`` (no true state;
    the manifest says so) and ``truncated`` at the last step. A recording cannot augment per epoch, so with
    ``flip_train`` (default ``cfg.hflip``) a seeded random half of the training clips is stored flipped
    horizontally (the paper: half of the training sequences are flipped); val and test clips never are.
    Writes are atomic; rerunning on a finished identical export returns at once; anything else in ``out``
    is refused.

    Returns ``{"episodes", "train_episodes", "val_episodes", "test_episodes"}``.
    """
    from noether_rl.data.recording import FORMAT_VERSION, MANIFEST, shard_name, write_npz
    from noether_rl.utils.io import atomic_write_json, sha256_file

    cfg = videos.cfg
    if cfg.clip == "windows":
        raise UserError("export_recording writes one clip per video: use clip='middle' or 'start'")
    flip = cfg.hflip if flip_train is None else bool(flip_train)
    order = [("train", i) for i in videos.splits["train"]] + [("val", i) for i in videos.splits["val"]] \
        + [("test", i) for i in videos.splits["test"]]
    L = cfg.num_frames
    source = {"root": videos.root, "config": asdict(cfg), "flip_train": flip, "seed": int(seed),
              "names": [videos.names[i] for _, i in order], "skipped": len(videos.skipped)}
    out = Path(out)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("video_source") == source and old.get("complete"):
            return dict(old["video_split"])
        raise UserError(f"{out} already holds a different recording or export; use an empty directory")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; export into an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    flips = np.random.default_rng(seed).random(len(order)) < 0.5
    shards = []
    for e, (split, i) in enumerate(order):
        s = (len(videos.videos[i]) - L) // 2 if cfg.clip == "middle" else 0
        frames = videos.videos[i][s : s + L]
        if flip and split == "train" and flips[e]:
            frames = frames[:, :, ::-1]
        truncated = np.zeros(L - 1, dtype=bool)
        truncated[-1] = True
        arrays = {"frames": np.ascontiguousarray(frames), "actions": np.zeros((L - 1, 1), np.float32),
                  "rewards": np.zeros(L - 1, np.float32), "states": np.zeros((L, 2), np.float32),
                  "terminated": np.zeros(L - 1, dtype=bool), "truncated": truncated}
        with atomic_open(out / shard_name(e), "wb") as f:
            write_npz(f, arrays)
        shards.append({"name": shard_name(e), "sha256": sha256_file(out / shard_name(e)), "length": L - 1})
    counts = {"episodes": len(order), "train_episodes": len(videos.splits["train"]),
              "val_episodes": len(videos.splits["val"]), "test_episodes": len(videos.splits["test"])}
    atomic_write_json(manifest_path, {
        "format_version": FORMAT_VERSION, "env_id": f"video:{videos.root}", "env_kwargs": {}, "policy": "none",
        "seed": int(seed), "episodes": len(order), "steps": L - 1, "size": cfg.size, "action_dim": 1,
        "episode_seeds": [0] * len(order), "complete": True, "shards": shards,
        "states": "none: video clips carry no true state (zeros)", "video_source": source, "video_split": counts,
    })
    return counts
