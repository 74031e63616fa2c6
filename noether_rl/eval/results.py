"""Evaluation results as strictly valid JSON files (atomic writes, with software versions and a timestamp).

JSON has no NaN or Infinity: :func:`write_results` writes every non-finite number as ``null`` and records
where and why under ``"non_finite"`` (``{"models.SVG.metrics.psnr.se": "nan: ..."}``), so nothing is silent
and any JSON parser reads the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noether_rl._version import __version__ as _noether_version
from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open

__all__ = ["load_results", "software_versions", "write_results"]


def software_versions() -> dict[str, str]:
    """Versions of python, torch, numpy and noether_rl."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "noether_rl": _noether_version,
    }


_NONFINITE_REASON = {
    "nan": "nan: undefined (e.g. a mean over an empty subset, a standard error from fewer than two episodes, "
           "or a non-finite prediction)",
    "inf": "inf: infinite (e.g. PSNR of an exactly predicted frame, or a diverged value)",
    "-inf": "-inf: negative infinity (a diverged value)",
}


def _jsonable(obj: Any, path: str = "", nulls: dict[str, str] | None = None) -> Any:
    """Convert tensors, numpy values, paths and tuples into JSON primitives (recursively).

    Non-finite floats become ``None``; when ``nulls`` is given, ``nulls[path]`` says what they were.
    """
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{path}.{k}" if path else str(k), nulls) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]", nulls) for i, v in enumerate(obj)]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist(), path, nulls)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), path, nulls)
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), path, nulls)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        if nulls is not None:
            nulls[path] = _NONFINITE_REASON[str(obj)]
        return None
    return obj


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    """Write ``results`` atomically as strict JSON, adding ``"versions"``, a UTC ISO ``"timestamp"`` and
    ``"non_finite"`` (dotted path -> reason for every non-finite number written as ``null``).

    ``results`` is not modified. Tensors/arrays become (nested) lists. Returns the path written.
    """
    if not isinstance(results, dict):
        raise UserError(f"results must be a dict, got {type(results).__name__}")
    nulls: dict[str, str] = {}
    payload = _jsonable(results, "", nulls)
    payload["non_finite"] = dict(sorted(nulls.items()))
    payload["versions"] = software_versions()
    payload["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    path = Path(path)
    with atomic_open(path, "w") as f:
        f.write(text)
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
