"""``latest``: a convenience tag that never fails a build and never moves backwards.

The commit tag is the release; ``latest`` only says "the newest image". It is moved through the
registry API, by digest (no pull, no push of layers), after the commit tag is confirmed, and
only forward, by the same "a later commit wins" rule the overlays follow:

* :func:`advance_latest` (a lone :func:`~homelab_release.build.build_image`): reads the revision
  label of what ``latest`` serves now and moves it only when that is not a later commit.
* :func:`follow_overlay` (the develop workflows): makes ``latest`` serve what the develop overlay
  names at the tip of the manifests branch, and checks the tip again afterwards. The manifests
  branch only moves by fast-forward pushes and its entries only move forward, so when pipelines
  race, the last one to move ``latest`` sees the final tip and ``latest`` ends at its entry.

A failure to move ``latest`` is one warning line and a :class:`LatestMove` that says why; it never
fails a build.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_release import git
from homelab_release.entries import ImageEntry
from homelab_release.errors import ReleaseError
from homelab_release.images import ImageRef
from homelab_release.registry import image_labels, manifest_digest, retag
from homelab_release.secrets import RegistryCredentials

__all__ = ["LATEST", "REVISION_LABEL", "LatestMove", "advance_latest", "follow_overlay"]

log = logging.getLogger(__name__)

LATEST = "latest"
REVISION_LABEL = "org.opencontainers.image.revision"
#: How many times :func:`follow_overlay` re-reads the tip when other pipelines keep moving it.
ROUNDS = 5


@dataclass(frozen=True)
class LatestMove:
    """What became of ``repository:latest``: ``moved`` to ``digest``, or why not (``note``)."""

    repository: str
    digest: str | None
    moved: bool
    note: str = ""

    def __str__(self) -> str:
        return f"{self.repository}:latest " + (
            f"-> {self.digest}" if self.moved else f"left alone: {self.note}"
        )


@dataclass(frozen=True)
class _Registry:
    credentials: RegistryCredentials | None
    insecure: tuple[str, ...]


def advance_latest(
    repository: ImageRef,
    digest: str,
    revision: str | None,
    *,
    root: Path | None = None,
    credentials: RegistryCredentials | None = None,
    insecure: Iterable[str] = (),
) -> LatestMove:
    """Point ``repository:latest`` at ``digest`` unless it serves an image of a later commit.

    ``revision`` is the commit the image was built from; what ``latest`` serves now is a later
    commit when its ``org.opencontainers.image.revision`` label names a descendant of
    ``revision`` in the git repository at ``root``. Never raises for registry or git trouble.
    """
    registry = _Registry(credentials, tuple(insecure))
    try:
        newer = _later_revision(repository, revision, root, registry)
        if newer:
            note = f"it serves {newer[:12]}, a later commit"
            log.info("%s:latest %s; keeping it", repository, note)
            return LatestMove(str(repository), None, moved=False, note=note)
        return _move(repository, digest, registry)
    except ReleaseError as err:
        return _failed(repository, err)


def follow_overlay(
    targets: Mapping[str, ImageRef],
    read_tip: Callable[[], Mapping[str, ImageEntry]],
    *,
    credentials: RegistryCredentials | None = None,
    insecure: Iterable[str] = (),
    rounds: int = ROUNDS,
) -> tuple[LatestMove, ...]:
    """Make each ``repository:latest`` serve the digest its overlay entry names at the tip.

    ``targets`` maps overlay entry names to the repositories whose ``latest`` follows them (only
    entries that name that repository and a digest count); ``read_tip`` reads the entries at the
    manifests branch's current tip (first entry per name). The tip is read again after moving; if
    another pipeline moved an entry meanwhile, the round repeats (at most ``rounds`` times).
    """
    registry = _Registry(credentials, tuple(insecure))
    moves: dict[str, LatestMove] = {}
    try:
        wanted = _wanted(targets, read_tip())
        for _ in range(rounds):
            for name, digest in wanted.items():
                moves[name] = _move(targets[name], digest, registry)
            again = _wanted(targets, read_tip())
            if again == wanted:
                break
            log.info("latest: the overlay moved on meanwhile; following it")
            wanted = again
    except ReleaseError as err:
        log.warning("latest: cannot read the manifests branch to follow it: %s", err)
    return tuple(moves[name] for name in sorted(moves))


def _wanted(targets: Mapping[str, ImageRef], tip: Mapping[str, ImageEntry]) -> dict[str, str]:
    """Entry name -> the digest ``latest`` should serve, for the targets the tip names."""
    wanted = {}
    for name, repository in targets.items():
        entry = tip.get(name)
        if entry is not None and entry.digest and entry.new_name == repository.repository:
            wanted[name] = entry.digest
    return wanted


def _move(repository: ImageRef, digest: str, registry: _Registry) -> LatestMove:
    """Retag ``repository@digest`` as ``latest`` (nothing to do when it is already there)."""
    target = repository.with_tag(LATEST)
    try:
        current = manifest_digest(target, registry.credentials, insecure=registry.insecure)
        if current != digest:
            source = repository.with_digest(digest)
            retag(source, LATEST, registry.credentials, insecure=registry.insecure)
            log.info("%s:latest -> %s", repository, digest)
    except ReleaseError as err:
        return _failed(repository, err)
    return LatestMove(str(repository), digest, moved=True)


def _later_revision(
    repository: ImageRef, revision: str | None, root: Path | None, registry: _Registry
) -> str | None:
    """The revision ``latest`` serves now, when it is a later commit than ``revision``."""
    labels = image_labels(
        repository.with_tag(LATEST), registry.credentials, insecure=registry.insecure
    )
    theirs = (labels or {}).get(REVISION_LABEL, "")
    if not (revision and root and git.is_commit_sha(theirs)) or theirs == revision:
        return None
    return theirs if git.is_ancestor(root, revision, theirs) else None


def _failed(repository: ImageRef, err: ReleaseError) -> LatestMove:
    note = str(err).splitlines()[0]
    log.warning("%s:latest was not moved (the build stands): %s", repository, note)
    return LatestMove(str(repository), None, moved=False, note=note)
