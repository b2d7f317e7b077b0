"""What every build engine takes and gives: the checked build request and the engine interface.

An engine builds a :class:`BuildRequest` into a local image and pushes one tag of it; everything
else (checking arguments, confirming digests with the registry, moving ``latest``) happens once,
in :mod:`homelab_release.build`, for every engine alike. A new engine is one module with a class
that has the four methods of :class:`Engine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from homelab_release.images import ImageRef
from homelab_release.secrets import RegistryCredentials

__all__ = ["DEFAULT_TIMEOUT", "BuildRequest", "Engine", "LocalImage"]

DEFAULT_TIMEOUT = 600.0  # seconds one engine request (or one quiet build step) may take


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
