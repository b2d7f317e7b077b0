"""Reading Dockerfiles: instructions with continuations joined, and the features an engine needs.

Used before anything is sent to an engine, so that a Dockerfile the chosen engine cannot build is
refused up front with a message that names the feature and the engine that can build it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BUILDKIT_FEATURES", "buildkit_features", "instructions", "read_dockerfile"]

#: Features only BuildKit-style builders run (buildah does; the Docker Engine's classic builder,
#: the one the docker SDK drives, does not), each with a description for messages.
BUILDKIT_FEATURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^#\s*syntax\s*=", re.IGNORECASE), "a '# syntax=' parser directive"),
    (
        re.compile(r"^RUN\s+(?:--\S+\s+)*--(?:mount|network|security)\b", re.IGNORECASE),
        "RUN --mount/--network/--security",
    ),
    (
        re.compile(
            r"^(?:COPY|ADD)\s+(?:--\S+\s+)*--(?:link|parents|exclude|checksum|keep-git-dir)\b",
            re.IGNORECASE,
        ),
        "COPY/ADD --link/--parents/--exclude/--checksum",
    ),
    (
        re.compile(r"^(?:RUN|COPY|ADD)\s.*<<-?[\"']?[A-Za-z_]", re.IGNORECASE),
        "a here-document (<<EOF)",
    ),
    (
        re.compile(r"^FROM\s+(?:--\S+\s+)*--platform=\S*\$", re.IGNORECASE),
        "FROM --platform with a build argument such as $BUILDPLATFORM",
    ),
)


def read_dockerfile(path: Path) -> str:
    """The text of a Dockerfile (undecodable bytes replaced: only instructions are looked at)."""
    return path.read_text(encoding="utf-8", errors="replace")


def buildkit_features(text: str) -> tuple[str, ...]:
    """The BuildKit-only features ``text`` (a Dockerfile) uses, described for a message."""
    found: list[str] = []
    for line in instructions(text):
        for pattern, feature in BUILDKIT_FEATURES:
            if pattern.search(line) and feature not in found:
                found.append(feature)
    return tuple(found)


def instructions(text: str) -> Iterator[str]:
    """Dockerfile lines with continuations joined; comments kept only before the first instruction
    (where ``# syntax=`` and ``# escape=`` parser directives live)."""
    pending = ""
    started = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and (started or pending):
            continue
        if not started and line.startswith("#"):
            yield line
            continue
        started = started or bool(line)
        pending += line.removesuffix("\\").strip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()
