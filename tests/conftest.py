"""Shared fixtures: tiny recordings the tests make themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny ops: OpenMP threads only add overhead (and spin badly on a shared 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes x 16 steps of the swing-up policy at 32x32 (2 train, 2 held out)."""
    from noether_rl.recorders import RecordConfig, record

    out = tmp_path_factory.mktemp("rec") / "data"
    record(RecordConfig(env_id="noether_rl/PixelPendulum-v0", policy="swingup", episodes=4, steps=16, size=32,
                        seed=0, out=out, num_envs=1, preview=False, progress=False))
    return out
