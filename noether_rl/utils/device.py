"""Device selection and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from noether_rl.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (and so seed_everything) takes 0 .. 2**32 - 1


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> cuda if available else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``
    otherwise.

    Raises :class:`UserError` for a device string PyTorch does not know, a device type other than these,
    or an accelerator this machine does not have (e.g. ``cuda`` on a CPU-only machine).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {str(device)!r} asked for, but PyTorch sees no CUDA GPU here; "
                            "use --device cpu (or auto)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UserError(f"device {str(device)!r} asked for, but this machine has {n} CUDA GPU(s) "
                            f"(cuda:0 .. cuda:{n - 1})")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"device {str(device)!r} asked for, but MPS is not available here; use --device cpu")
        return dev
    raise UserError(f"device type {dev.type!r} is not supported; use auto, cpu, cuda or cuda:N")


def check_seed(seed: int) -> int:
    """``seed`` if it is an integer in 0 .. 2**32 - 1, else :class:`UserError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    return int(seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
