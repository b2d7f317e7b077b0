"""The ``homelab-release`` command: argument parsing, logging set-up and the one error boundary.

Each subcommand lives in :mod:`homelab_release.commands` as a module with ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments and returning the
exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module

from homelab_release.errors import ReleaseError

log = logging.getLogger("homelab_release")

COMMANDS = ("changes", "set_image", "build", "build_develop", "promote", "plan", "status", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="homelab-release",
        description="Build changed monorepo services and promote images through kustomize overlays.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"homelab_release.commands.{name}").register(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    """Plain lines on stderr with the seconds since start: INFO by default, DEBUG with ``-v``.

    Plain lines read the same in a terminal and in a CI job log, where nothing redraws.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Elapsed("[%(elapsed)6.1fs] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


class _Elapsed(logging.Formatter):
    """Prefixes each line with the seconds since the command started."""

    def format(self, record: logging.LogRecord) -> str:
        record.elapsed = record.relativeCreated / 1000
        return super().format(record)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; expected errors become one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        code: int = args.func(args)
    except ReleaseError as err:
        print(f"homelab-release: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("homelab-release: interrupted", file=sys.stderr)
        return 130
    return code
