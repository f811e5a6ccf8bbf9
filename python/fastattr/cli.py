"""The `fastattr` command: a thin dispatcher; each stage registers its own subcommands."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Sequence

from ._quiet import quiet_third_party
from .errors import FastattrError

# Subcommand group -> module with `register(subparsers)`. Each module imports its heavy
# dependencies (torch, onnx) inside the handlers, so `fastattr --help` stays fast.
_COMMAND_MODULES = (
    "fastattr.world.cli",
    "fastattr.t2i.cli",
    "fastattr.teacher.cli",
    "fastattr.student.cli",
    "fastattr.export.cli",
    "fastattr.bundle_build",
    "fastattr.query_cli",
    "fastattr.build_cli",
    "fastattr.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every stage's subcommands that is installed."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="fastattr", description="Fast data attribution for text-to-image models."
    )
    parser.add_argument("--version", action="version", version=f"fastattr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show third-party libraries' log messages, warnings and progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A stage that is not part of this installation simply adds no commands.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        with contextlib.nullcontext() if getattr(args, "verbose", False) else quiet_third_party():
            return int(handler(args) or 0)
    except FastattrError as exc:
        print(f"fastattr: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A path the user gave that cannot be read or written (a folder where a file goes, no
        # permission, a full disk): the system's own words and the path, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"fastattr: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastattr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
