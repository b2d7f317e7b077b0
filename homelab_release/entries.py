"""Kustomize ``images:`` entries as values, and the plan of an edit to a list of them (pure).

:class:`ImageEntry` is one entry; :func:`first_by_name` and :func:`changed_entries` state the two
rules every reader of an overlay needs (kustomize renders the *first* of duplicate names; an entry
changed when that first one differs). :func:`plan_entries` decides, without any YAML, what an edit
does to each entry of a list: keep it, rewrite it, or drop it as a duplicate, and where new
entries go. ``homelab_release.overlay`` turns such a plan into text.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from homelab_release.errors import ImageRefError, OverlayError
from homelab_release.images import (
    ImageRef,
    check_digest,
    check_name,
    check_tag,
    split_reference,
)

__all__ = [
    "ENTRY_KEYS",
    "Action",
    "EntryPlan",
    "ImageEntry",
    "Insertion",
    "Step",
    "changed_entries",
    "check_entry",
    "first_by_name",
    "first_entries",
    "plan_entries",
]

ENTRY_KEYS = ("name", "newName", "newTag", "digest", "tagSuffix")
"""The keys of an ``images:`` entry, in the order kustomize writes them."""

log = logging.getLogger(__name__)

_TAG_SUFFIX = re.compile(r"[A-Za-z0-9_.-]{1,127}")


@dataclass(frozen=True)
class ImageEntry:
    """One ``images:`` entry of a kustomization (fields absent from the entry are ``None``).

    ``tag_suffix`` is kustomize v5's ``tagSuffix``: appended to the image's own tag when the entry
    sets neither ``newTag`` nor ``digest``. ``str(entry)`` is :attr:`reference`.
    """

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None
    tag_suffix: str | None = None

    def __str__(self) -> str:
        return self.reference

    @property
    def reference(self) -> str:
        """The image kustomize renders for a container whose image is ``name`` (no tag)."""
        return self.rendered(self.name)

    def rendered(self, image: str) -> str:
        """The image kustomize v5 renders for a container ``image`` that this entry matches.

        ``newName`` replaces the name; ``newTag`` and ``digest`` together give ``name:tag@digest``;
        ``newTag`` alone drops the image's digest and ``digest`` alone drops its tag; with neither,
        ``tagSuffix`` is appended to the image's tag (an empty one too) and drops its digest;
        with none of them, the image keeps its own tag and digest.

        kustomize (v4.5.5 to at least v5.5, kubernetes-sigs/kustomize#4814) updates each
        container image twice, and an image that still has the entry's name after the first
        update gets the suffix again: ``vote:v1`` with ``tagSuffix: -x`` renders ``vote:v1-x-x``
        unless ``newName`` renames it. This returns what kustomize really renders.
        """
        name, tag, digest = split_reference(image)
        if self.new_tag or self.digest:
            tag, digest = self.new_tag, self.digest
        elif self.tag_suffix:
            times = 1 if self.new_name and self.new_name != self.name else 2
            tag, digest = (tag or "") + self.tag_suffix * times, None
        text = self.new_name or name
        text += f":{tag}" if tag else ""
        return text + (f"@{digest}" if digest else "")

    @property
    def image(self) -> ImageRef | None:
        """The image the registry serves for this entry: ``newName`` (else ``name``) with its
        ``newTag`` and ``digest``, or None when it names neither (it keeps the tag of the base's
        image, which the overlay does not say, so there is nothing to look up)."""
        if not (self.new_tag or self.digest):
            return None
        return self.repository.with_tag(self.new_tag).with_digest(self.digest)

    @property
    def repository(self) -> ImageRef:
        """The repository kustomize renders for this entry: ``newName``, else ``name``."""
        return ImageRef.parse(self.new_name or self.name)

    def fields(self) -> dict[str, str]:
        """The entry as its YAML keys and values, in ``ENTRY_KEYS`` order, absent ones left out."""
        values = (self.name, self.new_name, self.new_tag, self.digest, self.tag_suffix)
        return {key: value for key, value in zip(ENTRY_KEYS, values, strict=True) if value}


def first_by_name(entries: Iterable[ImageEntry]) -> dict[str, ImageEntry]:
    """Each name's first entry, in the order the names first appear.

    kustomize applies the first entry of a name and ignores later duplicates, so this is what an
    overlay renders: ``first_by_name(read_overlay_images(overlay))[name]``.
    """
    first: dict[str, ImageEntry] = {}
    for entry in entries:
        first.setdefault(entry.name, entry)
    return first


def first_entries(entries: Iterable[ImageEntry], where: object) -> tuple[ImageEntry, ...]:
    """Each name's first entry (what kustomize renders), in the order the names first appear;
    a later duplicate is ignored with a warning naming ``where`` (the overlay)."""
    listed = tuple(entries)
    first = first_by_name(listed)
    for entry in listed:
        if entry is not first[entry.name]:
            kept = first[entry.name].reference
            log.warning(
                "%s: several entries named %s; using the first, %s", where, entry.name, kept
            )
    return tuple(first.values())


def changed_entries(
    before: Iterable[ImageEntry], after: Iterable[ImageEntry]
) -> tuple[ImageEntry, ...]:
    """The entries of ``after`` that render differently from ``before``, in ``after``'s order.

    Both lists are read as kustomize reads them (:func:`first_by_name`): an entry counts when its
    name is new or its first entry differs; a removed duplicate or a name gone from ``after``
    does not count.
    """
    old = first_by_name(before)
    return tuple(entry for entry in first_by_name(after).values() if old.get(entry.name) != entry)


def check_entry(entry: ImageEntry) -> ImageEntry:
    """Return ``entry`` if each of its fields is valid, else raise an :class:`OverlayError`."""
    try:
        check_name(entry.name)
        for value, check in ((entry.new_name, check_name), (entry.new_tag, check_tag)):
            if value is not None:
                check(value)
        if entry.digest is not None:
            check_digest(entry.digest)
        if entry.tag_suffix is not None:
            _check_tag_suffix(entry.tag_suffix)
    except ImageRefError as err:
        raise OverlayError(f"image entry {entry.name!r} is not valid: {err}") from err
    return entry


def _check_tag_suffix(suffix: str) -> None:
    if not _TAG_SUFFIX.fullmatch(suffix):
        bad = next((c for c in suffix if not (c.isascii() and (c.isalnum() or c in "_.-"))), "")
        what = f"has a {bad!r}" if bad else "is empty or too long"
        raise ImageRefError(
            f"tagSuffix {suffix!r} {what} (a tag suffix is 1-127 letters, digits, '_', '.', '-')"
        )


# --- planning an edit -------------------------------------------------------------------------


class Action(enum.Enum):
    """What an edit does to one existing entry."""

    KEEP = "keep"  # not targeted: left as it is
    REWRITE = "rewrite"  # the first entry of a targeted name: becomes the target
    DROP = "drop"  # a later duplicate of a name that collapses: removed


@dataclass(frozen=True)
class Step:
    """The fate of one existing entry: ``entry`` is the target for REWRITE, else the entry."""

    action: Action
    entry: ImageEntry


@dataclass(frozen=True)
class Insertion:
    """New entries that go right before existing entry number ``before`` (None: after the last)."""

    before: int | None
    entries: tuple[ImageEntry, ...]


@dataclass(frozen=True)
class EntryPlan:
    """An edit of an entry list: one step per existing entry, the insertions, the result."""

    steps: tuple[Step, ...]
    insertions: tuple[Insertion, ...]
    after: tuple[ImageEntry, ...]

    @property
    def added(self) -> tuple[ImageEntry, ...]:
        """The inserted entries, in name order."""
        new = (entry for insertion in self.insertions for entry in insertion.entries)
        return tuple(sorted(new, key=lambda entry: entry.name))


def plan_entries(
    current: Sequence[ImageEntry], targets: Mapping[str, ImageEntry], *, collapse_all: bool
) -> EntryPlan:
    """Plan making ``current`` (an ``images:`` list in file order) hold ``targets`` (by name).

    The first entry of a targeted name is rewritten to its target and later ones are dropped;
    with ``collapse_all`` (as ``kustomize edit set image`` does) the duplicates of every name
    are dropped, otherwise those of untargeted names stay. Targeted names not in ``current``
    are inserted in name order, each before the first kept entry with a greater name, else
    after the last one. ``after`` is the resulting list in file order.
    """
    seen: set[str] = set()
    steps: list[Step] = []
    for entry in current:
        steps.append(_step(entry, entry.name in seen, targets, collapse_all))
        seen.add(entry.name)
    kept = [index for index, step in enumerate(steps) if step.action is not Action.DROP]
    present = {current[index].name for index in kept}
    groups: dict[int | None, list[ImageEntry]] = {}
    for name in sorted(targets):
        if name not in present:
            at = next((i for i in kept if current[i].name > name), None)
            groups.setdefault(at, []).append(targets[name])
    insertions = tuple(Insertion(at, tuple(entries)) for at, entries in groups.items())
    return EntryPlan(tuple(steps), insertions, _after(steps, groups))


def _step(
    entry: ImageEntry, duplicate: bool, targets: Mapping[str, ImageEntry], collapse_all: bool
) -> Step:
    if duplicate and (entry.name in targets or collapse_all):
        return Step(Action.DROP, entry)
    if not duplicate and entry.name in targets:
        return Step(Action.REWRITE, targets[entry.name])
    return Step(Action.KEEP, entry)


def _after(
    steps: Sequence[Step], groups: Mapping[int | None, list[ImageEntry]]
) -> tuple[ImageEntry, ...]:
    after: list[ImageEntry] = []
    for index, step in enumerate(steps):
        if step.action is not Action.DROP:
            after += groups.get(index, [])
            after.append(step.entry)
    return (*after, *groups.get(None, []))
