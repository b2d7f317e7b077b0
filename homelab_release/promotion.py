"""Promotion: copy the tested image entries of one overlay into the next, without rebuilding.

:func:`promote_overlay` reads the ``images:`` entries of the source overlay, checks (with
``verify``) that every reference it would promote exists in the registry, and then writes them into
the target overlay with :func:`~homelab_release.overlay.apply_overlay_entries`, which keeps the
target file's comments and layout. Target entries that the source does not name stay as they are.
When the source has several entries for a name, the first one is promoted (kustomize renders the
first). ``Promotion.changed`` says whether the target file changes, for whatever reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.context import CiContext
from homelab_release.errors import OverlayError, PromotionError, RegistryError
from homelab_release.images import ImageRef
from homelab_release.overlay import (
    ImageEntry,
    OverlayEdit,
    apply_overlay_entries,
    first_by_name,
    read_overlay_images,
)
from homelab_release.registry import image_exists
from homelab_release.secrets import RegistryCredentials

__all__ = ["PromotedImage", "Promotion", "promote_overlay"]

log = logging.getLogger(__name__)

ExistsCheck = Callable[[str], bool]


@dataclass(frozen=True)
class PromotedImage:
    """One entry whose lines change in the target overlay (``before`` is None when it is new).

    ``reason`` is ``added``, ``changed`` (its value), ``duplicates removed`` (later entries with
    the name go), ``changed, duplicates removed``, or ``rewritten`` (the same value written anew:
    re-quoted so that YAML 1.1 reads a string, or an empty field dropped).
    """

    name: str
    before: ImageEntry | None
    after: ImageEntry
    reason: str = "changed"


@dataclass(frozen=True)
class Promotion:
    """The result of :func:`promote_overlay`: what changed and the unified diff of the file."""

    source: Path
    target: Path
    changes: tuple[PromotedImage, ...]
    diff: str
    changed: bool  # the target file differs (or would, in a dry run) after promotion
    written: bool


def promote_overlay(
    source: Path | str,
    target: Path | str,
    *,
    images: Collection[str] | None = None,
    dry_run: bool = False,
    verify: bool | None = None,
    credentials: RegistryCredentials | None = None,
    insecure_registries: Sequence[str] = (),
    exists: ExistsCheck | None = None,
) -> Promotion:
    """Copy the ``images:`` entries of overlay ``source`` into overlay ``target``.

    ``images`` limits the promotion to those entry names. With ``verify``, every promoted reference
    must exist in its registry, else :class:`PromotionError` lists all that are missing and nothing
    is written. ``dry_run`` computes the result and the diff and writes nothing; it asks nothing of
    the registry unless ``verify=True`` is given (``verify`` defaults to ``not dry_run``).
    ``exists`` replaces the registry check (a callable taking an image reference).
    """
    entries = _select(Path(source), images)
    if not dry_run if verify is None else verify:
        check = exists or _registry_check(credentials, insecure_registries)
        _verify(entries, check)
    edit = apply_overlay_entries(target, entries, dry_run=dry_run)
    changes = _changes(edit, entries)
    log.info("promotion %s -> %s: %d image(s) change", source, target, len(changes))
    written = edit.changed and not dry_run
    return Promotion(Path(source), edit.path, changes, edit.diff, edit.changed, written)


def _changes(edit: OverlayEdit, entries: Sequence[ImageEntry]) -> tuple[PromotedImage, ...]:
    """The promoted entries whose lines the edit touched, each with the reason."""
    changes = []
    for entry in entries:
        if entry.name in edit.edited:
            before = [old for old in edit.before if old.name == entry.name]
            first = before[0] if before else None
            changes.append(PromotedImage(entry.name, first, entry, _reason(first, entry, before)))
    return tuple(changes)


def _reason(first: ImageEntry | None, entry: ImageEntry, before: list[ImageEntry]) -> str:
    if first is None:
        return "added"
    reasons = ["changed"] if first != entry else []
    reasons += ["duplicates removed"] if len(before) > 1 else []
    return ", ".join(reasons) or "rewritten"


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
    entries = _first_per_name(source, entries)
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


def _first_per_name(source: Path, entries: tuple[ImageEntry, ...]) -> tuple[ImageEntry, ...]:
    """Each name's first entry: kustomize renders the source overlay with the first one."""
    first = first_by_name(entries)
    for entry in entries:
        if entry is not first[entry.name]:
            what = (source, entry.name, first[entry.name].reference)
            log.warning("%s: several entries named %s; promoting the first, %s", *what)
    return tuple(first.values())


def _verify(entries: Sequence[ImageEntry], exists: ExistsCheck) -> None:
    """Every promoted reference must be in its registry (all missing ones are listed)."""
    for entry in entries:
        _check_verifiable(entry)
    missing = [entry.reference for entry in entries if not exists(entry.reference)]
    if missing:
        raise PromotionError(
            "not promoting: these images are not in the registry: "
            + ", ".join(missing)
            + "; rebuild them (build_develop) or promote only the others with --image"
        )


def _check_verifiable(entry: ImageEntry) -> None:
    """An entry without newTag or digest names no tag (the base's tag applies): nothing to look up."""
    if entry.new_tag or entry.digest:
        return
    what = f"its tagSuffix {entry.tag_suffix!r} extends" if entry.tag_suffix else "it keeps"
    raise PromotionError(
        f"cannot check image entry {entry.name!r} in the registry: {what} the tag of the base's "
        "image, which the overlay does not name; set newTag or digest in the entry, promote the "
        "others with --image, or promote with --no-verify"
    )


def _registry_check(
    credentials: RegistryCredentials | None, insecure: Sequence[str]
) -> ExistsCheck:
    creds = credentials if credentials is not None else CiContext.from_env().registry_credentials

    def check(reference: str) -> bool:
        try:
            return image_exists(ImageRef.parse(reference), creds, insecure=insecure)
        except RegistryError as err:
            raise PromotionError(f"cannot verify {reference} before promoting: {err}") from err

    return check
