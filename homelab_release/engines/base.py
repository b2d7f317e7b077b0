"""What every build engine takes and gives: the checked build request and the engine interface.

An engine builds a :class:`BuildRequest` into a local image and pushes one tag of it; everything
else (checking arguments, confirming digests with the registry, moving ``latest``) happens once,
in :mod:`homelab_release.build`, for every engine alike. A new engine is one module with a class
that has the methods of :class:`Engine`; :class:`BuildLog` is the log handling they share,
:func:`credential_secrets` and :func:`step_count` small helpers.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from homelab_release.images import ImageRef
from homelab_release.secrets import HiddenText, RegistryCredentials, redact

__all__ = [
    "DEFAULT_TIMEOUT",
    "LOG_TAIL",
    "BuildLog",
    "BuildRequest",
    "Engine",
    "LocalImage",
    "credential_secrets",
    "step_count",
]

DEFAULT_TIMEOUT = 600.0  # seconds one engine request (or one quiet build step) may take
LOG_TAIL = 20  # lines of the build log a BuildError ends with


@dataclass(frozen=True)
class BuildRequest:
    """A build, checked: what to build, how to name it and what to cache it with.

    Make one with :func:`homelab_release.build.build_request`, which checks every argument.
    ``cache_from`` (the Docker Engine pulls these as layer cache; None: ``<repository>:latest``)
    and ``cache_repo`` (buildah reads and writes every layer there) are engine specific.
    """

    context: Path
    dockerfile: Path
    repository: ImageRef
    tags: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    cache_from: tuple[ImageRef, ...] | None = None
    cache_repo: ImageRef | None = None
    insecure_registries: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    def reference(self, tag: str) -> ImageRef:
        """``repository:tag``."""
        return self.repository.with_tag(tag)


@dataclass(frozen=True)
class LocalImage:
    """An image an engine built: its ID, the steps taken from cache and the seconds per phase."""

    image_id: str
    cached_steps: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """A builder behind :func:`homelab_release.build.build_image`."""

    name: str

    def unsupported(self, dockerfile: str) -> tuple[str, ...]:
        """The features of the Dockerfile text this engine cannot build (empty when none)."""
        ...

    def remedy(self) -> str:
        """How to build a Dockerfile that :meth:`unsupported` refused (for the message)."""
        ...

    def build(self, request: BuildRequest, credentials: RegistryCredentials | None) -> LocalImage:
        """Build the request into a local image (using the engine's cache); raise BuildError."""
        ...

    def push(
        self,
        request: BuildRequest,
        image: LocalImage,
        tag: str,
        credentials: RegistryCredentials | None,
    ) -> str | None:
        """Push ``image`` as ``repository:tag``; the digest the engine reports, if any.

        Raises PushError; the registry, not this answer, confirms the digest afterwards.
        """
        ...

    def close(self) -> None:
        """Release what the engine holds (connections, temporary files)."""
        ...


class BuildLog:
    """A build's output: split into lines, logged, the last :data:`LOG_TAIL` kept, cache hits counted.

    Lines matching ``progress`` (the step lines people follow) are logged at INFO on ``logger``,
    those matching ``warning`` at WARNING, the rest at DEBUG; lines matching ``cache_hit`` count
    as steps taken from cache. ``secrets`` are masked in every line before it is logged or kept.
    """

    def __init__(
        self,
        secrets: Sequence[HiddenText],
        label: str,
        *,
        logger: logging.Logger,
        progress: re.Pattern[str],
        cache_hit: re.Pattern[str],
        warning: re.Pattern[str] | None = None,
    ) -> None:
        self._secrets = secrets
        self._label = label
        self._logger = logger
        self._progress = progress
        self._cache_hit = cache_hit
        self._warning = warning
        self._partial = ""
        self._tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.cached = 0

    def feed(self, text: str) -> None:
        """Take a piece of the output (lines may be split across pieces)."""
        *complete, self._partial = (self._partial + text).split("\n")
        for raw in complete:
            self.line(raw)

    def line(self, raw: str) -> str:
        """Take one whole line; the line as logged (secrets masked), '' for a blank one."""
        line = redact(raw.rstrip(), self._secrets)
        if not line.strip():
            return ""
        level = logging.INFO if self._progress.search(line) else logging.DEBUG
        if self._warning is not None and self._warning.search(line):
            level = logging.WARNING
        self._logger.log(level, "%s: %s", self._label, line)
        self._tail.append(line)
        self.cached += bool(self._cache_hit.search(line))
        return line

    def tail(self) -> str:
        """The last lines, indented under a heading, for the end of an error message."""
        if self._partial.strip():
            self.feed("\n")
        if not self._tail:
            return ""
        return "\n  last lines of the build log:\n    " + "\n    ".join(self._tail)


def credential_secrets(credentials: RegistryCredentials | None) -> tuple[HiddenText, ...]:
    """What an engine masks in its output and errors: the registry password, if any."""
    return (credentials.password,) if credentials else ()


def step_count(count: int) -> str:
    """``1 step``, ``3 steps``: how many build steps came from cache, for the log."""
    return f"{count} step" + ("" if count == 1 else "s")
