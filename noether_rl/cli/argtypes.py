"""``type=`` validators for argparse: a bad value is one line, exit code 2, before anything is written."""

from __future__ import annotations

import argparse
import math

from noether_rl.errors import UserError
from noether_rl.utils.device import SEED_MAX, resolve_device


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {s!r}") from None


def positive_int(s: str) -> int:
    v = _int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def non_negative_int(s: str) -> int:
    v = _int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s}")
    return v


def seed(s: str) -> int:
    v = _int(s)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {s}")
    return v


def positive_float(s: str) -> float:
    """A finite number > 0 (learning rates, step sizes): rejects nan, inf, 0 and negatives."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {s}")
    return v


def device(s: str) -> str:
    """auto | cpu | cuda | cuda:N | mps, and present on this machine."""
    try:
        resolve_device(s)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return s
