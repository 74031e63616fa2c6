"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded with ``weights_only=True``.

A checkpoint holds ``{"kind", "version", "config", "epoch", "step", "model", "embedding"?,
"optimizer", "rng", "finished"}``. Loading never unpickles arbitrary objects: a file carrying a
malicious pickle is refused with a :class:`~noether_rl.errors.UserError`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from noether_rl._version import __version__
from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open


def save_checkpoint(path: str | os.PathLike[str], ckpt: dict[str, Any]) -> Path:
    """Atomically write ``ckpt`` (adds the package version)."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save({**ckpt, "version": __version__}, f)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train one first or fix the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"refusing to load {path}: it is not a plain noether-rl checkpoint (weights_only load failed: "
            f"{str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({str(e).splitlines()[0]}); delete it and retrain") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path} is not a noether-rl checkpoint (missing 'model'/'config' entries)")
    return ckpt
