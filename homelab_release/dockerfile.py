"""Reading Dockerfiles: instructions with continuations joined, and the features an engine needs.

Used before anything is sent to an engine, so that a Dockerfile the chosen engine cannot build is
refused up front with a message that names the feature and the engine that can build it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "BUILDKIT_FEATURES",
    "PLATFORM_ARGS",
    "base_images",
    "buildkit_features",
    "declare_global_args",
    "global_args_missing",
    "instructions",
    "platform_args_used",
    "read_dockerfile",
    "stage_args",
]

#: BuildKit's automatic platform arguments (the ``*VARIANT`` ones are empty on amd64 and arm64).
PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
)
_ARG_USE = re.compile(r"\$\{?(?P<name>[A-Z][A-Z0-9_]*)")
_ARG = re.compile(r"^ARG\s+(?P<names>.+)$", re.IGNORECASE)
_FROM = re.compile(
    r"^FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?\s*$", re.IGNORECASE
)
_COPY_FROM = re.compile(r"^(?:COPY|ADD)\s+(?:--\S+\s+)*?--from=(?P<source>\S+)", re.IGNORECASE)

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


def platform_args_used(text: str) -> tuple[str, ...]:
    """The automatic platform arguments ``text`` (a Dockerfile) declares or refers to, in
    :data:`PLATFORM_ARGS` order."""
    used: set[str] = set()
    for line in instructions(text):
        used.update(match["name"] for match in _ARG_USE.finditer(line))
        declared = _ARG.match(line)
        if declared:
            used.update(part.split("=", 1)[0] for part in declared["names"].split())
    return tuple(name for name in PLATFORM_ARGS if name in used)


def global_args_missing(text: str, names: tuple[str, ...] = PLATFORM_ARGS) -> tuple[str, ...]:
    """The ``names`` that ``FROM`` lines of ``text`` (a Dockerfile) use without an ``ARG`` before
    the first ``FROM`` declaring them (BuildKit predefines its platform arguments there)."""
    declared: set[str] = set()
    used: set[str] = set()
    started = False
    for line in instructions(text):
        if _FROM.match(line):
            started = True
            used.update(match["name"] for match in _ARG_USE.finditer(line))
            continue
        declared_here = _ARG.match(line)
        if declared_here and not started:
            declared.update(part.split("=", 1)[0] for part in declared_here["names"].split())
    return tuple(name for name in names if name in used - declared)


def declare_global_args(text: str, names: tuple[str, ...]) -> str:
    """``text`` (a Dockerfile) with ``ARG NAME`` lines just before its first ``FROM``."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if re.match(r"^\s*FROM\s", line, re.IGNORECASE):
            declared = "".join(f"ARG {name}\n" for name in names)
            return "".join([*lines[:index], declared, *lines[index:]])
    return text


def stage_args(text: str) -> tuple[tuple[str, str], ...]:
    """``(stage, argument)`` for each ``ARG`` inside a build stage (after its ``FROM``); a stage
    without ``AS name`` is called by its number (``0``, ``1``...)."""
    found: list[tuple[str, str]] = []
    stage: str | None = None
    count = 0
    for line in instructions(text):
        start = _FROM.match(line)
        if start:
            stage = start["stage"] or str(count)
            count += 1
            continue
        declared = _ARG.match(line)
        if declared and stage is not None:
            found += [(stage, part.split("=", 1)[0]) for part in declared["names"].split()]
    return tuple(found)


def base_images(text: str) -> tuple[str, ...]:
    """The images ``text`` (a Dockerfile) builds on or copies from, as written: ``FROM`` and
    ``COPY --from`` sources that are neither an earlier stage, a stage number nor ``scratch``."""
    stages: set[str] = set()
    images: list[str] = []
    for line in instructions(text):
        start = _FROM.match(line)
        source = start["image"] if start else None
        copied = _COPY_FROM.match(line)
        if copied:
            source = copied["source"]
        if source and source.lower() not in stages | {"scratch"} and not source.isdigit():
            images.append(source)
        if start and start["stage"]:
            stages.add(start["stage"].lower())
    return tuple(dict.fromkeys(images))


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
