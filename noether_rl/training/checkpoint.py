"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded with ``weights_only=True``.

A checkpoint holds ``{"kind", "version", "config", "epoch", "step", "model", "embedding"?,
"optimizer", "rng", "finished"}``. Loading never unpickles arbitrary objects: a file carrying a
malicious pickle is refused with a :class:`~noether_rl.errors.UserError`, and so is an empty, truncated
or corrupt file, or one whose ``config`` does not describe a run (each as one short line).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noether_rl._version import __version__
from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open


def _short(e: BaseException, limit: int = 120) -> str:
    """First sentence of an exception's first line (PyTorch's explanations do not fit on one line)."""
    text = str(e).strip()
    if isinstance(e, KeyError) and e.args:
        text = f"missing {e.args[0]!r}"
    line = text.splitlines()[0] if text else ""
    line = line.split(". ")[0].rstrip(".")
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def save_checkpoint(path: str | os.PathLike[str], ckpt: dict[str, Any]) -> Path:
    """Atomically write ``ckpt`` (adds the package version).

    The checkpoint is serialised in memory first, so a full disk surfaces as an ``OSError`` from the
    write (and the target is untouched) rather than as an error inside PyTorch's zip writer.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save({**ckpt, "version": __version__}, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises :class:`UserError` (one line naming the file) if it is missing, empty, truncated, corrupt, not a
    plain noether-rl checkpoint, or carries a config that does not parse into a
    :class:`~noether_rl.training.config.TrainConfig`.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; give the path of a checkpoint file (e.g. last.pt)")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train one first or fix the path")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes); delete it and retrain")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip format, or the legacy pickle one
        raise UserError(f"{path} is not a PyTorch checkpoint file; give the path of a checkpoint (e.g. last.pt)")
    try:
        with warnings.catch_warnings():  # a refused file is reported in one line below, not with warnings
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"refusing to load {path}: it is not a plain noether-rl checkpoint ({_short(e)})"
        ) from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EIO):
            raise  # the file system, not the file (the CLI reports it as one line)
        raise UserError(f"checkpoint {path} is truncated or corrupt ({_short(e)}); delete it and retrain") from None
    except Exception as e:  # noqa: BLE001  (any failure to parse the user's file means it is damaged)
        raise UserError(f"checkpoint {path} is truncated or corrupt ({_short(e)}); delete it and retrain") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path} is not a noether-rl checkpoint (missing 'model'/'config' entries)")
    check_config(ckpt, path)
    return ckpt


def check_config(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`UserError` unless ``ckpt`` has a config that parses, weights and an epoch."""
    from noether_rl.training.config import config_from_dict

    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("model"), dict):
        raise UserError(f"checkpoint {path} carries no valid config/model; it was not written by noether-rl")
    try:
        if ckpt.get("kind", "svg") in ("svg", "noether", "svg_adapted"):  # the pixel-video recipe's TrainConfig; other domains
            config_from_dict(ckpt["config"])  # (state-space, agents, ...) validate their own configs
    except (TypeError, KeyError, ValueError, AttributeError, UserError) as e:
        raise UserError(f"checkpoint {path} carries an invalid config ({_short(e)})") from None
    if not isinstance(ckpt.get("epoch", 0), int):
        raise UserError(f"checkpoint {path} carries an invalid epoch {ckpt.get('epoch')!r}")


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """``module.load_state_dict(state)``, or a one-line :class:`UserError` when the checkpoint's weights
    do not fit the model its config describes (names the first missing, unexpected or mis-shaped tensor)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        if shapes:
            k = shapes[0]
            what = f"{k} has shape {tuple(state[k].shape)}, the config needs {tuple(own[k].shape)}"
        elif missing:
            what = f"{len(missing)} tensors missing (first {missing[0]})"
        else:
            what = f"{len(unexpected)} unexpected tensors (first {unexpected[0]})"
        raise UserError(f"checkpoint {path}: its weights do not match its config ({what})")
    module.load_state_dict(state)
