"""Evaluation results as JSON files (atomic writes, with software versions and a timestamp)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noether_rl._version import __version__ as _noether_version
from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_write_json

__all__ = ["load_results", "software_versions", "write_results"]


def software_versions() -> dict[str, str]:
    """Versions of python, torch, numpy and noether_rl."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "noether_rl": _noether_version,
    }


def _jsonable(obj: Any) -> Any:
    """Convert tensors, numpy values, paths and tuples into JSON primitives (recursively).

    Non-finite floats are kept (Python's json writes/reads them as ``NaN``/``Infinity``).
    """
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    """Write ``results`` atomically as JSON, adding ``"versions"`` and a UTC ISO ``"timestamp"``.

    ``results`` is not modified. Tensors/arrays become (nested) lists. Returns the path written.
    """
    if not isinstance(results, dict):
        raise UserError(f"results must be a dict, got {type(results).__name__}")
    payload = _jsonable(results)
    payload["versions"] = software_versions()
    payload["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    path = Path(path)
    atomic_write_json(path, payload)
    return path


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results file written by :func:`write_results`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"results file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"results file {path} is not valid JSON ({e}); re-run the evaluation") from None
    if not isinstance(data, dict):
        raise UserError(f"results file {path} does not contain a JSON object")
    return data
