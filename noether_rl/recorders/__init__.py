"""Scripted policies and the episode recorder (``record(RecordConfig(...)) -> Path``)."""

from __future__ import annotations

from noether_rl.recorders.policies import POLICIES, Policy, PolicyFactory, swingup_success, swingup_torque
from noether_rl.recorders.recorder import RecordConfig, episode_seeds, record, run_episode

__all__ = [
    "POLICIES",
    "Policy",
    "PolicyFactory",
    "RecordConfig",
    "episode_seeds",
    "record",
    "run_episode",
    "swingup_success",
    "swingup_torque",
]
