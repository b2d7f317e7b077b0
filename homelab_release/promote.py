"""Promotion: copy the tested image entries of one overlay into the next, without rebuilding.

:func:`promote_overlay` reads the ``images:`` entries of the source overlay, checks (with
``verify``) that every reference it would promote exists in the registry, and then writes them into
the target overlay with :func:`~homelab_release.overlay.apply_overlay_entries`, which keeps the
target file's comments and layout. Target entries that the source does not name stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.errors import OverlayError, PromotionError, RegistryError
from homelab_release.images import ImageRef
from homelab_release.overlay import ImageEntry, apply_overlay_entries, read_overlay_images
from homelab_release.registry import RegistryCredentials, image_exists

log = logging.getLogger(__name__)

ExistsCheck = Callable[[str], bool]


@dataclass(frozen=True)
class PromotedImage:
    """One entry whose value changes in the target overlay (``before`` is None when it is new)."""

    name: str
    before: ImageEntry | None
    after: ImageEntry


@dataclass(frozen=True)
class Promotion:
    """The result of :func:`promote_overlay`: what changed and the unified diff of the file."""

    source: Path
    target: Path
    changes: tuple[PromotedImage, ...]
    diff: str
    written: bool

    @property
    def changed(self) -> bool:
        """Whether the target overlay differs (or would differ, in a dry run) after promotion."""
        return bool(self.changes)


def promote_overlay(
    source: Path | str,
    target: Path | str,
    *,
    images: Collection[str] | None = None,
    dry_run: bool = False,
    verify: bool = True,
    credentials: RegistryCredentials | None = None,
    insecure_registries: Sequence[str] = (),
    exists: ExistsCheck | None = None,
) -> Promotion:
    """Copy the ``images:`` entries of overlay ``source`` into overlay ``target``.

    ``images`` limits the promotion to those entry names. With ``verify``, every promoted reference
    must exist in its registry, else :class:`PromotionError` lists all that are missing and nothing
    is written. ``dry_run`` computes the result and the diff and writes nothing. ``exists`` replaces
    the registry check (a callable taking an image reference).
    """
    entries = _select(Path(source), images)
    if verify:
        check = exists or _registry_check(credentials, insecure_registries)
        _verify(entries, check)
    edit = apply_overlay_entries(target, entries, dry_run=dry_run)
    before = {entry.name: entry for entry in edit.before}
    changes = tuple(
        PromotedImage(entry.name, before.get(entry.name), entry)
        for entry in entries
        if before.get(entry.name) != entry
    )
    log.info("promotion %s -> %s: %d image(s) change", source, target, len(changes))
    return Promotion(Path(source), edit.path, changes, edit.diff, edit.changed and not dry_run)


def _select(source: Path, names: Collection[str] | None) -> tuple[ImageEntry, ...]:
    try:
        entries = read_overlay_images(source)
    except OverlayError as err:
        raise PromotionError(f"cannot promote from {source}: {err}") from err
    if not entries:
        raise PromotionError(
            f"source overlay {source} has no images: entries, so there is nothing to promote; "
            "run build_develop first or pick another source environment"
        )
    if names is None:
        return entries
    known = {entry.name for entry in entries}
    unknown = sorted(set(names) - known)
    if unknown:
        raise PromotionError(
            f"source overlay {source} has no entry named {', '.join(unknown)} "
            f"(it has: {', '.join(sorted(known))})"
        )
    return tuple(entry for entry in entries if entry.name in names)


def _verify(entries: Sequence[ImageEntry], exists: ExistsCheck) -> None:
    missing = [entry.reference for entry in entries if not exists(entry.reference)]
    if missing:
        raise PromotionError(
            "not promoting: these images are not in the registry: "
            + ", ".join(missing)
            + "; rebuild them (build_develop) or promote only the others with --image"
        )


def _registry_check(
    credentials: RegistryCredentials | None, insecure: Sequence[str]
) -> ExistsCheck:
    creds = credentials if credentials is not None else RegistryCredentials.from_env()

    def check(reference: str) -> bool:
        try:
            return image_exists(ImageRef.parse(reference), creds, insecure=insecure)
        except RegistryError as err:
            raise PromotionError(f"cannot verify {reference} before promoting: {err}") from err

    return check
