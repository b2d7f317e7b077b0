"""Reading Dockerfiles: instructions with continuations joined, and the features an engine needs.

Used before anything is sent to an engine, so that a Dockerfile the chosen engine cannot build is
refused up front with a message that names the feature and the engine that can build it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "BUILDKIT_FEATURES",
    "PLATFORM_ARGS",
    "append_to_stage",
    "base_images",
    "buildkit_features",
    "declare_global_args",
    "escape_token",
    "global_args_missing",
    "instructions",
    "label_instruction",
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
_DIRECTIVE = re.compile(r"^#\s*(?P<name>[A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?P<value>\S.*?)\s*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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


def escape_token(text: str) -> str:
    """The escape character of ``text`` (a Dockerfile): its ``# escape=`` parser directive, else
    a backslash. Directives count only before the first comment, blank line or instruction."""
    for line in text.splitlines():
        directive = _DIRECTIVE.match(line.strip())
        if directive is None:
            break
        if directive["name"].lower() == "escape":
            return directive["value"]
    return "\\"


def label_instruction(labels: Mapping[str, str]) -> str | None:
    """One ``LABEL 'key'='value' ...`` instruction that sets ``labels`` exactly as written.

    Single quotes keep everything literal (no ``$`` expansion, no escape character); a ``'``
    inside is written as ``"'"``. None when a label cannot be written on one line: no labels, an
    empty key, a key with ``=`` (the parser splits the pair there), a control character.

    >>> print(label_instruction({"revision": "abc", "note": "it's $HOME"}))
    LABEL 'revision'='abc' 'note'='it'"'"'s $HOME'
    """
    pairs = []
    for key, value in labels.items():
        if not key or "=" in key or _CONTROL.search(key + value):
            return None
        pairs.append(f"{_single_quoted(key)}={_single_quoted(value)}")
    return f"LABEL {' '.join(pairs)}" if pairs else None


def _single_quoted(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def append_to_stage(text: str, instruction: str, target: str | None = None) -> str | None:
    """``text`` (a Dockerfile) with ``instruction`` as the last instruction of the stage
    ``target`` names (as ``--target`` does: ``AS name``, else the stage's number), or of the last
    stage. None when there is no such stage, or the file ends inside an instruction (a last line
    that continues).

    Here-documents are not recognised (a ``FROM`` line inside one would count as a stage).
    """
    lines = text.split("\n")  # as the parser reads it (str.splitlines also splits at \f, \x1c ...)
    spans = _instruction_spans(lines, escape_token(text))
    if spans is None:
        return None
    stages = [i for i, (_, _, words) in enumerate(spans) if words[:1] == ["FROM"]]
    names = [_stage_name(spans[i][2], n) for n, i in enumerate(stages)]
    if not stages:
        return None
    if target is None:
        chosen = len(stages) - 1
    elif target in names:
        chosen = names.index(target)
    else:
        return None
    following = stages[chosen + 1] if chosen + 1 < len(stages) else len(spans)
    end = spans[following - 1][1]  # the last line of the stage's last instruction
    return "\n".join([*lines[: end + 1], instruction, *lines[end + 1 :]]) + (
        "" if end + 1 < len(lines) else "\n"
    )


def _instruction_spans(lines: list[str], escape: str) -> list[tuple[int, int, list[str]]] | None:
    """``(first line, last line, words)`` of each instruction (continuations joined, the keyword
    upper-cased); None when the last instruction never ends."""
    spans: list[tuple[int, int, list[str]]] = []
    start: int | None = None
    parts: list[str] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction: the parser drops these lines
        start = index if start is None else start
        continued = line.endswith(escape)
        parts.append(line.removesuffix(escape) if continued else line)
        if not continued:
            words = " ".join(parts).split()
            spans.append((start, index, [words[0].upper(), *words[1:]]))
            start, parts = None, []
    return None if start is not None else spans


def _stage_name(words: list[str], number: int) -> str:
    """The name ``--target`` knows a stage by: ``FROM image AS name``, else its number."""
    rest = [w for w in words[1:] if not w.startswith("--")]
    if len(rest) >= 3 and rest[1].lower() == "as":
        return rest[2]
    return str(number)
