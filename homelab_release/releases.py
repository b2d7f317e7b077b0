"""Versioned releases: the images an environment runs get a version tag, and the next one names them.

``release`` (the ``nox -s release`` session of a tag pipeline): the tag ``v1.4.0`` names version
``1.4.0`` (:mod:`homelab_release.versions`); the target environment (``--to``, else the one with a
``versions`` policy) must accept it. Every image its ``promote_from`` environment runs gets the tag
``1.4.0`` in the registry, by digest, without pulling or rebuilding (:func:`registry.retag`); then
the target's overlay gets ``newTag: "1.4.0"`` with that digest, in one commit.

Everything is checked before anything is written: the policy, a downgrade below what the target
runs, pre-releases, that every source image is in the registry, and that no image already has the
version tag at another digest (a release tag never moves). When a retag fails midway (a read-only
token), nothing is committed and the error names the tags already created: a registry tag cannot
be taken back without deleting it, which this tool never does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.config import Environment, ReleaseConfig
from homelab_release.entries import ImageEntry, first_entries
from homelab_release.environments import source_of, write_entries
from homelab_release.errors import ConfigError, OverlayError, PromotionError, ReleaseError
from homelab_release.gitops import Published, PublishedResult, checkout
from homelab_release.overlay import OverlayEdit, apply_overlay_entries, read_overlay_images
from homelab_release.registry import manifest_digest, retag
from homelab_release.registrycheck import check_entries, registry_lookup
from homelab_release.versions import (
    ReleaseVersion,
    VersionPolicy,
    check_release,
    current_version,
    parse_release_tag,
)
from homelab_release.workspace import Workspace

__all__ = [
    "ReleaseResult",
    "ReleasedImage",
    "release",
    "release_target",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReleasedImage:
    """One entry of the release: what the source runs, what the target gets, and whether this
    run created the version tag (False: the registry had it at that digest already)."""

    name: str
    source: ImageEntry
    entry: ImageEntry
    tagged: bool = False


@dataclass(frozen=True)
class ReleaseResult(PublishedResult):
    """What ``release`` did (or, with ``dry_run``, would do)."""

    source: str
    target: str
    version: ReleaseVersion
    previous: str | None  # the highest version the target ran before, if any
    images: tuple[ReleasedImage, ...]
    edit: OverlayEdit | None = None
    published: Published | None = None
    dry_run: bool = False


def release(
    repo: Path | str = ".",
    *,
    to: str | None = None,
    tag: str | None = None,
    allow_downgrade: bool = False,
    allow_prerelease: bool = False,
    dry_run: bool = False,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> ReleaseResult:
    """Release version ``tag`` (default ``CI_COMMIT_TAG``) to environment ``to``.

    See the module's docstring. ``dry_run`` checks everything (the registry included) and shows
    the overlay diff, but tags and writes nothing.
    """
    ws = Workspace.open(repo, config, env)
    target, policy = release_target(ws.config, to)
    source = source_of(ws.config, target)
    version = parse_release_tag(tag if tag is not None else ws.context.commit_tag)
    if not dry_run:
        ws.check_writer(target.name)
    remote = ws.remote()
    with checkout(remote) as tree:
        sources = _source_entries(tree, source)
        current = current_version(e.new_tag for e in _entries(tree, target))
        check_release(
            version, policy, environment=target.name, current=current,
            allow_downgrade=allow_downgrade, allow_prerelease=allow_prerelease,
        )  # fmt: skip
        planned = _plan(ws, sources, version)
        previous = str(current) if current else None
        entries = tuple(image.entry for image in planned)
        if dry_run:
            edit = apply_overlay_entries(tree / target.overlay, entries, dry_run=True)
            return ReleaseResult(
                source.name, target.name, version, previous, planned, edit, None, True
            )
        released = _tag_all(ws, planned, version)
        trailers = {
            "Release": version.tag,
            "Release-Tag": version.source,
            "Promoted-From": source.name,
            "Source-Commit": ws.source_commit,
        }
        written = write_entries(
            ws, target, tree, remote, entries,
            subject=f"release {version.tag}", trailers=trailers,
        )  # fmt: skip
    return ReleaseResult(
        source.name, target.name, version, previous, released, written.edit, written.published
    )


def release_target(cfg: ReleaseConfig, name: str | None) -> tuple[Environment, VersionPolicy]:
    """The environment a release goes to (``name``, else the only one with a ``versions``
    policy) and its policy; :class:`ConfigError` naming the candidates otherwise."""
    versioned = [e for e in cfg.environments if e.versions is not None]
    if name:
        target = cfg.environment(name)
        if target.versions is None:
            raise ConfigError(
                f"environment {name!r} has no versions policy, so it takes no releases; set "
                f'environments.{name}.versions (e.g. ">=1.0,<2") in homelab-release.toml'
                + (f" or release to {', '.join(e.name for e in versioned)}" if versioned else "")
            )
        return target, target.versions
    if len(versioned) == 1 and versioned[0].versions is not None:
        return versioned[0], versioned[0].versions
    if not versioned:
        raise ConfigError(
            "no environment takes releases: set environments.<name>.versions (e.g. "
            '">=1.0,<2") for the one that does, e.g. [environments.prod]'
        )
    raise ConfigError(
        "several environments take releases ("
        + ", ".join(e.name for e in versioned)
        + "): pass to=ENV",
        parameter="to",
    )


def _entries(tree: Path, environment: Environment) -> tuple[ImageEntry, ...]:
    try:
        return read_overlay_images(tree / environment.overlay)
    except OverlayError as err:
        raise PromotionError(f"cannot release: environment {environment.name}: {err}") from err


def _source_entries(tree: Path, source: Environment) -> tuple[ImageEntry, ...]:
    entries = first_entries(_entries(tree, source), source.overlay)
    if not entries:
        raise PromotionError(
            f"the {source.name} overlay ({source.overlay}) names no images, so there is nothing "
            f"to release; promote to {source.name} first"
        )
    return entries


def _plan(
    ws: Workspace, sources: Sequence[ImageEntry], version: ReleaseVersion
) -> tuple[ReleasedImage, ...]:
    """Ask the registry about every source image and its version tag; one error lists all
    the images that are missing and all whose version tag names another image."""
    credentials, insecure = ws.context.registry_credentials, ws.config.insecure_registries
    doing = f"releasing {version.tag}"
    check = check_entries(
        sources, registry_lookup(credentials, insecure), doing=doing, error=PromotionError
    )
    if check.problem:
        raise PromotionError(
            f"not releasing {version.tag}: {check.problem}; rebuild and promote them first"
        )
    planned, taken = [], []
    for entry in sources:
        digest = check.digests[entry.name]
        versioned = entry.repository.with_tag(version.tag)
        existing = manifest_digest(versioned, credentials, insecure=insecure)
        if existing is not None and existing != digest:
            taken.append(f"{versioned} is {existing}, not {digest}")
        target = ImageEntry(entry.name, entry.new_name, version.tag, digest)
        planned.append(ReleasedImage(entry.name, entry, target, tagged=existing is None))
    if taken:
        raise PromotionError(
            f"not releasing {version.tag}: the version tag already names other images ("
            + "; ".join(taken)
            + "): a release tag never moves; tag a new version"
        )
    return tuple(planned)


def _tag_all(
    ws: Workspace, planned: Sequence[ReleasedImage], version: ReleaseVersion
) -> tuple[ReleasedImage, ...]:
    """Give every planned image the version tag (those that lack it); a failure stops the
    release before the commit and names the tags already created."""
    credentials, insecure = ws.context.registry_credentials, ws.config.insecure_registries
    created: list[str] = []
    for image in planned:
        if not image.tagged:
            continue
        reference = image.entry.repository.with_digest(image.entry.digest)
        try:
            retag(reference, version.tag, credentials, insecure=insecure)
        except ReleaseError as err:
            done = (
                f"tags created before the failure (a registry tag cannot be taken back without "
                f"deleting it; a release run again reuses them): {', '.join(created)}"
                if created
                else "no tag was created"
            )
            raise PromotionError(
                f"release {version.tag} stopped, nothing was committed: {err}\n{done}"
            ) from err
        created.append(f"{reference.repository}:{version.tag}")
    return tuple(planned)
