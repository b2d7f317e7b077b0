"""The ``homelab-release`` command: argument parsing, logging set-up and the one error boundary.

Each subcommand lives in :mod:`homelab_release.commands` as a module with ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments and returning the
exit code. The global options (``-v``) are accepted before and after the subcommand.

Exit codes: what the subcommand returns (0 on success); 1 for a :class:`ReleaseError` (one
``homelab-release: error: ...`` message); 3 for anything unexpected (one line saying what happened
and where the traceback was written: ``$XDG_CACHE_HOME/homelab-release/homelab-release.log``,
default ``~/.cache/homelab-release/``); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from homelab_release.context import CiContext, read_environment
from homelab_release.errors import ReleaseError
from homelab_release.secrets import redact

__all__ = [
    "COMMANDS",
    "LOG_NAME",
    "build_parser",
    "guarded",
    "log_folder",
    "main",
    "setup_logging",
    "write_error_log",
]

log = logging.getLogger("homelab_release")

COMMANDS = (
    "changes",
    "set_image",
    "build",
    "build_develop",
    "fan_out",
    "build_service",
    "publish_develop",
    "promote",
    "release",
    "rollback",
    "history",
    "plan",
    "status",
    "demo",
)
LOG_NAME = "homelab-release.log"
EXIT_ERROR = 1
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered; each also takes the global options."""
    parser = argparse.ArgumentParser(
        prog="homelab-release",
        description="Build changed monorepo services and promote images through kustomize overlays.",
        epilog="Exit codes: 0 done, 1 an error homelab-release explains, 3 an unexpected error "
        f"(traceback in $XDG_CACHE_HOME/homelab-release/{LOG_NAME}, default ~/.cache), "
        "130 interrupted.",
    )
    add_global_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"homelab_release.commands.{name}").register(sub)
    for command in dict.fromkeys(sub.choices.values()):  # aliases share one parser
        # SUPPRESS: an option not repeated after the subcommand keeps the value given before it
        add_global_options(command, default=argparse.SUPPRESS)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """``-v/--verbose``, on the main parser and (after the subcommand) on every subcommand."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log debug details, and print the traceback of an unexpected error",
    )


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
    """Run the command line and return its exit code (see the module's docstring)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return guarded(args.func, args, verbose=args.verbose)


def guarded(
    func: Command,
    args: argparse.Namespace,
    *,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    """Call ``func(args)`` inside the error boundary; return its exit code or the error's.

    ``env`` (default: the process environment) gives the cache folder of the error log, the
    secrets to mask in it, and ``CI``/``GITLAB_CI``: in CI the traceback is printed as with
    ``verbose``, since the job's container and its cache folder are gone afterwards.
    """
    try:
        return func(args)
    except ReleaseError as err:
        _tell(f"homelab-release: error: {err.for_command_line()}", err)
        return EXIT_ERROR
    except KeyboardInterrupt as err:
        _tell("homelab-release: interrupted", err)
        return EXIT_INTERRUPTED
    except Exception as err:  # the boundary: every other error is a bug to report
        _unexpected(err, verbose=verbose, env=read_environment(env))
        return EXIT_UNEXPECTED


def _tell(line: str, err: BaseException) -> None:
    """Print ``line`` and then the notes added to ``err`` (for example what was cleaned up)."""
    for text in (line, *getattr(err, "__notes__", ())):
        print(text, file=sys.stderr, flush=True)


def _unexpected(err: Exception, *, verbose: bool, env: Mapping[str, str]) -> None:
    context = CiContext.from_env(env)
    secrets = context.secrets
    trace = redact("".join(traceback.format_exception(err)), secrets)
    what = redact(f"{type(err).__name__}: {err}", secrets).strip().splitlines()[0]
    try:
        where = f"the traceback is in {write_error_log(trace, env)}"
    except OSError as log_err:
        where, verbose = f"the traceback could not be written ({log_err}), so it is above", True
    if verbose or context.in_ci:
        print(trace, end="", file=sys.stderr, flush=True)
    _tell(f"homelab-release: unexpected error: {what} ({where}; please report it)", err)


def log_folder(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/homelab-release``, else ``~/.cache/homelab-release``."""
    env = read_environment(env)
    cache = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG spec: a relative path is invalid, ignore it  # noqa: PTH117
        cache = os.path.join(env.get("HOME") or Path.home(), ".cache")  # noqa: PTH118
    return Path(cache) / "homelab-release"


def write_error_log(trace: str, env: Mapping[str, str] | None = None) -> Path:
    """Write ``trace`` with the time, version and argv to :data:`LOG_NAME`; return its path.

    The folder is created 0700 and the file (replaced each time) is 0600: a traceback may show
    paths and values a user would not publish.
    """
    folder = log_folder(env)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOG_NAME
    header = (
        f"time: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        f"homelab-release {_version()}, Python {sys.version.split()[0]}\n"
        f"argv: {redact(' '.join(sys.argv))}\n\n"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an older run may have had another mode
    with open(descriptor, "w", encoding="utf-8") as file:  # noqa: PTH123 (an open descriptor)
        file.write(header + trace)
    return path


def _version() -> str:
    try:
        return metadata.version("homelab-release")
    except metadata.PackageNotFoundError:
        return "(not installed)"
