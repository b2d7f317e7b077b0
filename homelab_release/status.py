"""Which image each environment runs: a table of environments x services, and drift between them.

:func:`environment_status` reads every environment's overlay from the manifests branch and, for each
service, the tag, digest and monorepo commit of its image; an environment whose images differ from
those of the environment it promotes from lists the services it is behind by.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_release import git
from homelab_release.config import Environment, ReleaseConfig
from homelab_release.errors import OverlayError
from homelab_release.gitops import checkout
from homelab_release.overlay import ImageEntry, first_by_name, read_overlay_images
from homelab_release.versions import current_version
from homelab_release.workspace import Workspace

__all__ = [
    "EnvironmentStatus",
    "ServiceImage",
    "Status",
    "age",
    "environment_status",
    "same_image",
    "status_data",
]


@dataclass(frozen=True)
class ServiceImage:
    """What one environment runs for one service (``entry`` None when its overlay has none)."""

    service: str
    entry: ImageEntry | None
    commit: str | None
    commit_time: int | None


@dataclass(frozen=True)
class EnvironmentStatus:
    """One environment: its images and the services in which it differs from its source."""

    name: str
    promote_from: str | None
    images: tuple[ServiceImage, ...]
    behind: tuple[str, ...]
    problem: str = ""
    version: str | None = None  # the highest release version its images carry, if any


@dataclass(frozen=True)
class Status:
    """Every environment of the chain, in configuration order."""

    environments: tuple[EnvironmentStatus, ...]
    now: float


def environment_status(
    repo: Path | str = ".",
    *,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> Status:
    """Read every environment's overlay from the manifests branch (a temporary shallow checkout)."""
    ws = Workspace.open(repo, config, env)
    cfg = ws.config
    if any(service.kustomize_name is None for service in cfg.services):
        cfg.require_registry()  # the entries are named after the image repositories
    with checkout(ws.remote()) as tree:
        raw = {e.name: _read(tree, e) for e in cfg.environments}
    times = git.commit_times(
        ws.root, [e.new_tag or "" for entries, _ in raw.values() for e in entries]
    )
    images = {name: _images(cfg, entries, times) for name, (entries, _) in raw.items()}
    statuses = tuple(
        EnvironmentStatus(
            e.name,
            e.promote_from,
            images[e.name],
            _behind(images[e.name], images.get(e.promote_from or "")),
            raw[e.name][1],
            _version(images[e.name]),
        )
        for e in cfg.environments
    )
    return Status(statuses, time.time())


def _read(tree: Path, environment: Environment) -> tuple[tuple[ImageEntry, ...], str]:
    try:
        return read_overlay_images(tree / environment.overlay), ""
    except OverlayError as err:
        return (), str(err)


def _images(
    cfg: ReleaseConfig, entries: tuple[ImageEntry, ...], times: Mapping[str, int]
) -> tuple[ServiceImage, ...]:
    by_name = first_by_name(entries)  # the first of duplicates wins, as in kustomize
    out = []
    for service in cfg.services:
        entry = by_name.get(service.overlay_name(cfg.registry))
        commit = (
            entry.new_tag if entry and entry.new_tag and git.is_commit_sha(entry.new_tag) else None
        )
        out.append(ServiceImage(service.name, entry, commit, times.get(commit or "")))
    return tuple(out)


def _version(images: tuple[ServiceImage, ...]) -> str | None:
    found = current_version(image.entry.new_tag for image in images if image.entry)
    return str(found) if found else None


def same_image(one: ImageEntry | None, two: ImageEntry | None) -> bool:
    """Whether two entries name the same image: the same repository and digest when both have a
    digest (a release's ``1.4.0`` and stage's commit tag are one image), else equal entries."""
    if one is None or two is None:
        return one is two
    if one.digest and two.digest:
        return (one.new_name or one.name, one.digest) == (two.new_name or two.name, two.digest)
    return one == two


def _behind(
    mine: tuple[ServiceImage, ...], source: tuple[ServiceImage, ...] | None
) -> tuple[str, ...]:
    if source is None:
        return ()
    theirs = {image.service: image.entry for image in source}
    return tuple(
        image.service
        for image in mine
        if theirs.get(image.service) is not None
        and not same_image(theirs[image.service], image.entry)
    )


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: an age for people."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def status_data(status: Status) -> dict[str, object]:
    """The status as plain data for ``--json``."""
    return {
        "environments": [
            {
                "name": e.name,
                "promote_from": e.promote_from,
                "version": e.version,
                "behind": list(e.behind),
                "problem": e.problem,
                "services": {
                    i.service: {
                        "reference": i.entry.reference if i.entry else None,
                        "tag": i.entry.new_tag if i.entry else None,
                        "digest": i.entry.digest if i.entry else None,
                        "commit": i.commit,
                        "commit_time": i.commit_time,
                    }
                    for i in e.images
                },
            }
            for e in status.environments
        ]
    }
