"""Recordings on disk: one compressed ``.npz`` shard per episode plus ``manifest.json``.

Layout of a recording directory::

    manifest.json          format_version, env_id, env_kwargs, policy, seed, episodes, steps, size,
                           episode_seeds, package_version, complete, action_dim,
                           shards: [{name, sha256, length, bytes}]
    episode_00000.npz      frames uint8 [T+1, H, W, 3], actions float32 [T, A], rewards float32 [T],
                           states float32 [T+1, 2], terminated bool [T], truncated bool [T]
    preview_00000.mp4      optional previews

Shards are written deterministically (fixed zip timestamps, fixed member order), so the same recording
configuration always produces the same bytes. Reading checks every shard's dtypes and shapes, that its
actions, rewards and states are finite, and that its action size matches the manifest's ``action_dim``;
a bad shard is a :class:`DataError` (one line naming the file). This module needs numpy only.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from noether_rl.errors import DataError
from noether_rl.utils.io import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_KEYS = ("frames", "actions", "rewards", "states", "terminated", "truncated")
SHARD_DTYPES = {
    "frames": np.uint8,
    "actions": np.float32,
    "rewards": np.float32,
    "states": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
}
# keys of the manifest that define the recording (a resume must match them exactly)
CONFIG_KEYS = ("format_version", "env_id", "env_kwargs", "policy", "seed", "episodes", "steps", "size")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def shard_name(i: int) -> str:
    return f"episode_{i:05d}.npz"


def preview_name(i: int) -> str:
    return f"preview_{i:05d}.mp4"


# ------------------------------------------------------------------------------------------- writing
def write_npz(f: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` into the open binary file ``f``, byte-deterministically.

    Unlike ``np.savez_compressed`` (which stamps the current time into every zip member), members get a
    fixed 1980-01-01 timestamp, so equal arrays give equal bytes (zlib default level). Readable with
    ``np.load``.
    """
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(val), allow_pickle=False)


# ------------------------------------------------------------------------------------------- reading
def read_shard(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load one shard and check its keys, dtypes and mutually consistent shapes.

    Returns a dict of arrays (see module docstring). Raises :class:`DataError` naming the file when it is
    missing, truncated, corrupt (bad zip / CRC), or has wrong keys, dtypes or shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing shard {path}; rerun `noether-rl record` with the same arguments to resume")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in SHARD_KEYS if k not in z.files]
            if missing:
                raise DataError(f"corrupt shard {path}: missing arrays {missing}")
            arrays = {k: z[k] for k in SHARD_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"corrupt or truncated shard {path}: {type(e).__name__}: {e}") from None
    _check_shapes(path, arrays)
    _check_finite(path, arrays)
    return arrays


def _check_finite(path: Path, a: Mapping[str, np.ndarray]) -> None:
    for k in ("actions", "rewards", "states"):
        finite = np.isfinite(a[k])
        if not finite.all():
            t = int(np.argwhere(~finite)[0][0])
            raise DataError(f"bad shard {path}: {k} hold non-finite values (first at step {t}); delete it and "
                            "rerun the record command that made this recording")


def _check_shapes(path: Path, a: Mapping[str, np.ndarray]) -> None:
    for k, dt in SHARD_DTYPES.items():
        if a[k].dtype != dt:
            raise DataError(f"bad shard {path}: {k} has dtype {a[k].dtype}, expected {np.dtype(dt)}")
    f = a["frames"]
    if f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] < 1:
        raise DataError(f"bad shard {path}: frames shape {f.shape}, expected [T+1, H, W, 3]")
    t = f.shape[0] - 1
    a_shape = a["actions"].shape
    if len(a_shape) != 2 or a_shape[0] != t:
        raise DataError(f"bad shard {path}: actions shape {a_shape}, expected [{t}, A]")
    expected = {"rewards": (t,), "states": (t + 1, 2), "terminated": (t,), "truncated": (t,)}
    for k, shape in expected.items():
        if a[k].shape != shape:
            raise DataError(f"bad shard {path}: {k} shape {a[k].shape}, expected {shape}")


def check_shard_matches(path: Path, arrays: Mapping[str, np.ndarray], steps: int, size: int) -> None:
    """Raise :class:`DataError` unless the shard has ``steps`` steps of ``size`` x ``size`` frames."""
    shape = arrays["frames"].shape
    if shape[:3] != (steps + 1, size, size):
        raise DataError(f"bad shard {path}: frames shape {shape}, manifest says {(steps + 1, size, size, 3)}")


def load_manifest(root: str | os.PathLike[str], require_complete: bool = True) -> dict[str, Any]:
    """Read ``root/manifest.json``. Raises :class:`DataError` if missing or unreadable, or (when
    ``require_complete``) if the recording was interrupted before it finished."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"no recording at {root}: {path} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"corrupt manifest {path}: {e}") from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in (*CONFIG_KEYS, "shards")):
        raise DataError(f"corrupt manifest {path}: not a noether-rl recording manifest")
    shards = manifest["shards"]
    bad_shards = not isinstance(shards, list) or any(
        not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("sha256"), str)
        for e in shards
    )
    bad_ints = any(not isinstance(manifest[k], int) or manifest[k] < 1 for k in ("episodes", "steps", "size"))
    if bad_shards or bad_ints:
        raise DataError(f"corrupt manifest {path}: bad shard list or episodes/steps/size")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version {manifest['format_version']} unsupported (need {FORMAT_VERSION})"
        )
    if require_complete:
        _require_complete(Path(root), manifest)
    return manifest


def _require_complete(root: Path, manifest: Mapping[str, Any]) -> None:
    shards, episodes = manifest["shards"], manifest["episodes"]
    if not manifest.get("complete") or not isinstance(shards, list) or len(shards) != episodes:
        raise DataError(
            f"{root}: this recording is incomplete: rerun the same record command to finish it"
        )


def open_episode(
    root: str | os.PathLike[str], i: int, check_hash: bool = True, manifest: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Load episode ``i`` of the recording at ``root`` as a dict of arrays (see module docstring).

    Raises :class:`DataError` naming the file if it is missing, truncated, corrupt, fails its sha256
    (when ``check_hash``) or its shapes do not match the manifest.
    """
    root = Path(root)
    manifest = load_manifest(root) if manifest is None else manifest
    _require_complete(root, manifest)
    if not 0 <= i < manifest["episodes"]:
        raise DataError(f"episode {i} out of range: {root} holds {manifest['episodes']} episodes")
    entry = manifest["shards"][i]
    path = root / entry["name"]
    if not path.is_file():
        raise DataError(f"missing shard {path}")
    if check_hash and sha256_file(path) != entry["sha256"]:
        raise DataError(f"shard {path} fails its sha256 check (file changed or corrupt)")
    arrays = read_shard(path)
    check_shard_matches(path, arrays, manifest["steps"], manifest["size"])
    a_dim = manifest.get("action_dim")
    if a_dim is not None and arrays["actions"].shape[1] != a_dim:
        raise DataError(f"bad shard {path}: actions of size {arrays['actions'].shape[1]}, but the recording's "
                        f"other episodes have size {a_dim}")
    return arrays


def verify_recording(root: str | os.PathLike[str], check_hashes: bool = True) -> dict[str, Any]:
    """Check a recording is complete and every shard is readable and matches the manifest.

    Returns the manifest. Raises :class:`DataError` naming the first bad file.
    """
    root = Path(root)
    manifest = load_manifest(root)
    for i in range(manifest["episodes"]):
        if manifest["shards"][i]["name"] != shard_name(i):
            raise DataError(
                f"corrupt manifest {root / MANIFEST}: shard {i} named {manifest['shards'][i]['name']}"
            )
        arrays = open_episode(root, i, check_hash=check_hashes, manifest=manifest)
        if "action_dim" not in manifest:  # older manifests: the first shard sets the action size
            manifest = {**manifest, "action_dim": int(arrays["actions"].shape[1])}
    return manifest
