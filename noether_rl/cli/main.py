"""``noether-rl`` console script. The only place that parses arguments.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``; the parser it adds sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
A :class:`noether_rl.errors.UserError` becomes one line on stderr and exit code 2 (no traceback), and so
does an ``OSError`` the user or the machine causes (full disk, no permission, read-only file system, a
file where a directory should be); any other exception is a bug and keeps its traceback. An ``--out``
that is a file or not writable is refused before the command starts, and a failed command removes the
output directories it created while they are still empty.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from noether_rl._version import __version__
from noether_rl.errors import UserError
from noether_rl.utils.io import missing_dirs, remove_empty_dirs

# module names under noether_rl.cli, in help order
SUBCOMMANDS = ("record", "train", "meta_train", "evaluate", "quickstart", "reproduce", "plan", "dream_train",
               "analyze", "discover")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, except where the help already says its default
    ("(default ..." written by hand), the option is required or an on/off flag, or it has no default (None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (re.search(r"\(default\b", text) or action.required or action.default is None
                or (action.nargs == 0 and isinstance(action.default, bool))):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:  # every --help shows the defaults
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too; keep it short)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="noether-rl", description="Noether Networks for model-based RL.")
    parser.add_argument("--version", action="version", version=f"noether-rl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"noether_rl.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"noether_rl.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


# OSErrors caused by the machine or the user's paths, not by a bug: reported as one line, exit code 2
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EIO}


def _os_error_line(e: OSError) -> str | None:
    where = f" ({e.filename})" if e.filename else ""
    reason = e.strerror or str(e)
    if e.errno in _SPACE_ERRNOS:
        return f"{reason}{where}; free some space and rerun the same command to resume"
    if e.errno in _ACCESS_ERRNOS:
        return f"{reason}{where}; choose a path you can write to (or fix its permissions)"
    if e.errno in _PATH_ERRNOS:
        return f"{reason}{where}"
    return None


def _output_dirs(args: argparse.Namespace) -> list[str]:
    """The directories a command writes into: ``--out`` (a ``--data`` is always an existing input)."""
    out = getattr(args, "out", None)
    return [str(out)] if out else []


def _check_output_dir(out: str) -> None:
    """Refuse an output directory that is a file or cannot be created or written, before writing."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"output {out} exists and is not a directory; give a directory path")
    existing = Path(os.path.abspath(path))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output {out} is not writable: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output {out} is not writable (no write permission in {existing})")


def _close_progress_bars() -> None:
    """Finish any progress bar a failing command left open, so that its error starts on a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _error(command: str, message: str) -> None:
    _close_progress_bars()
    print(f"noether-rl {command}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    created: list[list[Path]] = []
    ok = False
    try:
        outs = _output_dirs(args)
        for out in outs:
            _check_output_dir(out)
        created = [missing_dirs(out) for out in outs]
        rc = int(args.func(args) or 0)
        ok = rc == 0
        return rc
    except UserError as e:
        _error(args.command, str(e))
        return 2
    except OSError as e:
        line = _os_error_line(e)
        if line is None:
            raise  # not a user-fixable condition: keep the traceback
        _error(args.command, line)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"noether-rl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if not ok:  # leave no empty output directories behind a failed run
            for dirs in created:
                remove_empty_dirs(dirs)


if __name__ == "__main__":
    sys.exit(main())
