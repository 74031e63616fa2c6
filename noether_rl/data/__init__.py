"""Recordings on disk (manifest, shards, verification) and window datasets.

``recording`` needs numpy only; the torch-based ``EpisodeWindows`` / ``split_episodes`` are imported
lazily so that recorder worker processes do not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noether_rl.data.recording import (
    FORMAT_VERSION,
    MANIFEST,
    load_manifest,
    open_episode,
    read_shard,
    shard_name,
    verify_recording,
    write_npz,
)

if TYPE_CHECKING:
    from noether_rl.data.windows import EpisodeSplit, EpisodeWindows, episode_split, split_episodes

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "EpisodeSplit",
    "EpisodeWindows",
    "episode_split",
    "load_manifest",
    "open_episode",
    "read_shard",
    "shard_name",
    "split_episodes",
    "verify_recording",
    "write_npz",
]


def __getattr__(name: str) -> Any:
    if name in ("EpisodeSplit", "EpisodeWindows", "episode_split", "split_episodes"):
        from noether_rl.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
