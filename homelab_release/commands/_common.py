"""Helpers shared by the subcommands: the ``--repo`` option and plain-text tables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """``--repo PATH``: the monorepo checkout (default ``$CI_PROJECT_DIR``, else the current folder)."""
    parser.add_argument(
        "--repo",
        default=os.environ.get("CI_PROJECT_DIR") or ".",
        help="the monorepo checkout (default: $CI_PROJECT_DIR, else the current folder)",
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
