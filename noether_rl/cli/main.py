"""``noether-rl`` console script. The only place that parses arguments.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``; the parser it adds sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
A :class:`noether_rl.errors.UserError` becomes one line on stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from noether_rl._version import __version__
from noether_rl.errors import UserError

# module names under noether_rl.cli, in help order
SUBCOMMANDS = ("record", "train", "meta_train", "evaluate", "quickstart", "reproduce")


class _Parser(argparse.ArgumentParser):
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"noether-rl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"noether-rl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
