"""Atomic file writes: write to a temp file in the same directory, fsync, then ``os.replace``.

Files get the mode a plain ``open`` would give them (``0o666`` minus the umask), not ``mkstemp``'s 0600,
so shared recordings and checkpoints stay readable to the group/others the umask allows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process umask (read from ``/proc`` where possible; ``os.umask`` has no getter)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: set and restore (not thread-safe, brief)
    os.umask(mask)
    return mask


def missing_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing: list[Path] = []
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove the directories ``dirs`` (deepest first, as :func:`missing_dirs` lists them) and any empty
    directories below them, as far as they are empty; files are never touched."""
    for d in dirs:
        if not d.is_dir() or d.is_symlink():
            break
        for sub, _, _ in os.walk(d, topdown=False):  # children before parents
            with contextlib.suppress(OSError):
                os.rmdir(sub)
        if d.exists():
            break


def _make_dir(parent: Path) -> list[Path]:
    """``mkdir -p parent``; returns the directories it created (deepest first)."""
    created = missing_dirs(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return created


def _mkstemp(path: Path, suffix: str) -> tuple[int, str]:
    """A temp file beside ``path`` with the mode ``open(path, "w")`` would create."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` atomically.

    On an exception (or a kill) the target is untouched and the temp file is removed (or left as
    ``.<name>.*.tmp``, which readers ignore).
    """
    path = Path(path)
    created = _make_dir(path.parent)
    try:
        fd, tmp = _mkstemp(path, ".tmp")
    except BaseException:
        remove_empty_dirs(created)
        raise
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        remove_empty_dirs(created)
        raise


@contextlib.contextmanager
def atomic_output_path(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``out`` with the same suffix; on clean exit it replaces ``out``.

    For writers that need a file name (matplotlib, ffmpeg) rather than a file object.
    """
    out = Path(out)
    created = _make_dir(out.parent)
    try:
        fd, tmp = _mkstemp(out, f".tmp{out.suffix}")
    except BaseException:
        remove_empty_dirs(created)
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        remove_empty_dirs(created)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json_or_none(path: str | os.PathLike[str]) -> Any:
    """The JSON value in ``path``, or None when it is missing or unreadable (a cache miss, not an error)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
