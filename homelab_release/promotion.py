"""Promotion: copy the tested image entries of one overlay into the next, without rebuilding.

:func:`promote_overlay` reads the ``images:`` entries of the source overlay, checks (with
``verify``) that every reference it would promote exists in the registry, and then writes them into
the target overlay with :func:`~homelab_release.overlay.apply_overlay_entries`, which keeps the
target file's comments and layout. Target entries that the source does not name stay as they are.
When the source has several entries for a name, the first one is promoted (kustomize renders the
first). ``Promotion.changed`` says whether the target file changes, for whatever reason.

The ``promote`` workflow composes the same steps: :func:`promoted_entries`,
:func:`verify_promoted` and :func:`promotion_of`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.context import CiContext
from homelab_release.entries import ImageEntry, first_entries
from homelab_release.errors import OverlayError, PromotionError
from homelab_release.overlay import OverlayEdit, apply_overlay_entries, read_overlay_images
from homelab_release.registrycheck import DigestLookup, check_entries, registry_lookup
from homelab_release.secrets import RegistryCredentials

__all__ = [
    "PromotedImage",
    "Promotion",
    "promote_overlay",
    "promoted_entries",
    "promotion_of",
    "verify_promoted",
]

log = logging.getLogger(__name__)


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
    lookup: DigestLookup | None = None,
    env: Mapping[str, str] | None = None,
) -> Promotion:
    """Copy the ``images:`` entries of overlay ``source`` into overlay ``target``.

    ``images`` limits the promotion to those entry names. With ``verify``, every promoted reference
    must exist in its registry, else :class:`PromotionError` lists all that are missing and nothing
    is written. ``dry_run`` computes the result and the diff and writes nothing; it asks nothing of
    the registry unless ``verify=True`` is given (``verify`` defaults to ``not dry_run``).
    The registry is asked with ``credentials``, else those of the CI context read from ``env``
    (None: the process environment); ``lookup`` replaces the registry (an image reference -> the
    digest it serves, None when it has none).
    """
    entries = promoted_entries(source, images)
    if not dry_run if verify is None else verify:
        if lookup is None:
            found = credentials or CiContext.from_env(env).registry_credentials
            lookup = registry_lookup(found, insecure_registries)
        verify_promoted(entries, lookup)
    edit = apply_overlay_entries(target, entries, dry_run=dry_run)
    return promotion_of(source, edit, entries, dry_run=dry_run)


def promoted_entries(
    source: Path | str, names: Collection[str] | None = None
) -> tuple[ImageEntry, ...]:
    """The entries a promotion from overlay ``source`` copies: each name's first entry
    (kustomize renders the first), only those of ``names`` when given."""
    try:
        entries = read_overlay_images(source)
    except OverlayError as err:
        raise PromotionError(f"cannot promote from {source}: {err}") from err
    if not entries:
        raise PromotionError(
            f"source overlay {source} has no images: entries, so there is nothing to promote; "
            "run build_develop first or pick another source environment"
        )
    entries = first_entries(entries, source)
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


def verify_promoted(entries: Sequence[ImageEntry], lookup: DigestLookup) -> None:
    """Every promoted image must be in its registry; one :class:`PromotionError` says all that
    is wrong (missing images, entries that name no tag or digest to look up)."""
    check = check_entries(entries, lookup, doing="promoting", error=PromotionError)
    if check.problem:
        remedy = "rebuild the missing ones (build_develop), or promote only the others: images=NAME"
        if check.unverifiable:
            remedy += ", or promote without the check: verify=False"
        raise PromotionError(
            f"not promoting: {check.problem}; {remedy}", parameter=("images", "verify")
        )


def promotion_of(
    source: Path | str, edit: OverlayEdit, entries: Sequence[ImageEntry], *, dry_run: bool = False
) -> Promotion:
    """The :class:`Promotion` an overlay ``edit`` that wrote ``entries`` makes."""
    changes = _changes(edit, entries)
    log.info("promotion %s -> %s: %d image(s) change", source, edit.path, len(changes))
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
