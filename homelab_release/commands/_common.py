"""Helpers shared by the subcommands: the ``--repo`` and engine options, plain-text tables."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from homelab_release.context import CiContext

__all__ = ["add_engine_options", "add_repo_option", "section", "short", "table"]


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """``--repo PATH``: the monorepo checkout (default ``$CI_PROJECT_DIR``, else the current folder)."""
    parser.add_argument(
        "--repo",
        default=CiContext.from_env().project_dir or ".",
        help="the monorepo checkout (default: $CI_PROJECT_DIR, else the current folder)",
    )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--cache-repo``: which engine builds, and buildah's cache repository."""
    parser.add_argument(
        "--engine",
        choices=("docker", "buildah", "auto"),
        help="build engine (default: [build] engine in homelab-release.toml, else "
        "$HOMELAB_RELEASE_ENGINE, else auto: docker when an engine answers, else buildah)",
    )
    parser.add_argument(
        "--cache-repo",
        metavar="REPOSITORY",
        help="repository buildah reads and writes every layer of every stage to (default: "
        '[build] cache_repo, else <registry.repository>/cache; "" for none)',
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def short(sha: str | None, length: int = 12) -> str:
    """A commit SHA shortened for people ('-' when absent)."""
    return sha[:length] if sha else "-"


def short_digest(digest: str | None, length: int = 12) -> str:
    """The hex digits of ``sha256:...`` shortened for people ('-' when absent)."""
    return short(digest.split(":")[-1] if digest else None, length)


@contextmanager
def section(
    name: str,
    *,
    out: TextIO | None = None,
    in_ci: bool | None = None,
    collapsed: bool = False,
) -> Iterator[None]:
    """A collapsible section ``homelab-release: NAME`` in GitLab's job log (``in_ci``, default
    read from the context); a plain ``== title`` heading elsewhere. ``out``: default stdout."""
    out = out or sys.stdout
    title = f"homelab-release: {name}"
    if not (CiContext.from_env().in_ci if in_ci is None else in_ci):
        print(f"== {title}", file=out, flush=True)
        yield
        return
    flag = "[collapsed=true]" if collapsed else ""
    print(
        f"\x1b[0Ksection_start:{int(time.time())}:{name}{flag}\r\x1b[0K{title}",
        file=out,
        flush=True,
    )
    try:
        yield
    finally:
        print(f"\x1b[0Ksection_end:{int(time.time())}:{name}\r\x1b[0K", file=out, flush=True)
