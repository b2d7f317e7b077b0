"""Edit the ``images:`` of a kustomization the way ``kustomize edit set image`` does, in place.

:func:`set_overlay_image` gives the ``images:`` entries that ``kustomize edit set image`` (v5)
gives, but it changes only the text of the entries that change: comments, blank lines, key order,
quoting, indentation, a leading ``---`` and flow-style lists elsewhere stay byte for byte.

How, in three parts: the file is parsed once to check it and find the ``images:`` entries
(:mod:`homelab_release.kustomization`); :func:`homelab_release.entries.plan_entries` decides,
without YAML, which entries are kept, rewritten, dropped or added; :mod:`homelab_release.yamltext`
turns that plan into splices of the original text (replace a value, drop a line, insert a line).
Before writing, the new text is parsed again and must hold exactly the planned entries, except
when the only splices replace a one-line value by a one-line value (the common case, kept cheap):
a scalar that the new scalar replaces token for token, which tests/test_overlay.py's hypothesis
test checks over many shapes. A block scalar (``|``, ``>``) or a value over several lines is
replaced as a whole by one line. Tags and digests are written plain only when every YAML 1.1 and
1.2 reader reads them as strings, else double-quoted (``"1.10"``, ``"012"``, ``"on"``).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.nodes import SequenceNode

from homelab_release.entries import (
    Action,
    EntryPlan,
    ImageEntry,
    changed_entries,
    check_entry,
    first_by_name,
    plan_entries,
)
from homelab_release.errors import ImageRefError, OverlayError
from homelab_release.files import write_atomic
from homelab_release.images import SPEC_FORMS, ImageSpec, Keep, SpecField
from homelab_release.kustomization import ImagesDocument, find_kustomization, read_text
from homelab_release.yamltext import TextEdit, is_null

__all__ = [
    "ImageEntry",
    "OverlayEdit",
    "apply_overlay_entries",
    "changed_entries",
    "find_kustomization",
    "first_by_name",
    "read_overlay_images",
    "set_overlay_image",
]

log = logging.getLogger(__name__)

_QUOTE_IF_NEEDED = frozenset(("newTag", "digest", "tagSuffix"))  # YAML 1.1 may misread these


@dataclass(frozen=True)
class OverlayEdit:
    """The result of an overlay edit: the file, whether it changed, its entries and the diff.

    ``edited`` names the entries whose lines the edit changed, added or removed: those whose
    value changed, and also those only re-quoted or whose duplicates were removed.
    """

    path: Path
    changed: bool
    before: tuple[ImageEntry, ...]
    after: tuple[ImageEntry, ...]
    diff: str
    edited: tuple[str, ...] = ()


def read_overlay_images(overlay: Path | str) -> tuple[ImageEntry, ...]:
    """The ``images:`` entries of ``overlay``'s kustomization, in file order."""
    path = find_kustomization(overlay)
    return ImagesDocument.load(path, read_text(path)).entries


def set_overlay_image(
    overlay: Path | str,
    *specs: str | ImageSpec,
    new_name: SpecField = None,
    new_tag: SpecField = None,
    digest: SpecField = None,
    dry_run: bool = False,
) -> OverlayEdit:
    """Set images in ``overlay`` as ``kustomize edit set image SPEC...`` (v5) does.

    Each spec is one kustomize argument (``vote=registry/vote:v2``, ``vote:v2``, ``vote@sha256:…``,
    ``*`` in a field keeps its current value); or give one bare image name and the keyword
    arguments. A matched entry is replaced as a whole except ``*`` fields, a later spec for the
    same name wins, duplicate entries collapse into the first, a new name is added in name order.
    Only the lines of entries that change are touched. ``dry_run`` writes nothing.
    """
    parsed = _specs(specs, new_name, new_tag, digest)
    path = find_kustomization(overlay)
    doc = ImagesDocument.load(path, read_text(path))
    current = first_by_name(doc.entries)
    targets = {name: _resolve(spec, current.get(name)) for name, spec in parsed.items()}
    return _finish(doc, targets, collapse_all=True, dry_run=dry_run)


def apply_overlay_entries(
    overlay: Path | str, entries: Sequence[ImageEntry], *, dry_run: bool = False
) -> OverlayEdit:
    """Make each named entry of ``overlay`` exactly equal to the given :class:`ImageEntry`.

    An entry that exists is replaced as a whole (later duplicates of it are removed); an absent
    one is added in name order; entries not named stay untouched. Formatting is kept as in
    :func:`set_overlay_image`. ``dry_run`` writes nothing.
    """
    path = find_kustomization(overlay)
    targets: dict[str, ImageEntry] = {}
    for entry in entries:
        if entry.name in targets:
            raise OverlayError(
                f"image entry {entry.name!r} is given twice for {path}; give each name once"
            )
        targets[entry.name] = check_entry(entry)
    doc = ImagesDocument.load(path, read_text(path))
    return _finish(doc, targets, collapse_all=False, dry_run=dry_run)


# --- specs ------------------------------------------------------------------------------------


def _specs(
    specs: Sequence[str | ImageSpec], new_name: SpecField, new_tag: SpecField, digest: SpecField
) -> dict[str, ImageSpec]:
    if not specs:
        forms = ", ".join(SPEC_FORMS)
        raise ImageRefError(f"no image spec given; give at least one of the forms {forms}")
    if new_name is None and new_tag is None and digest is None:
        parsed = [spec if isinstance(spec, ImageSpec) else ImageSpec.parse(spec) for spec in specs]
    else:
        parsed = [_keyword_spec(specs, new_name, new_tag, digest)]
    return {spec.name: spec for spec in parsed}  # a later spec for the same name wins


def _keyword_spec(
    specs: Sequence[str | ImageSpec], new_name: SpecField, new_tag: SpecField, digest: SpecField
) -> ImageSpec:
    if len(specs) != 1 or not isinstance(specs[0], str):
        raise ImageRefError(
            "with new_name, new_tag or digest, give exactly one bare image name as the spec"
        )
    return ImageSpec.of(specs[0], new_name=new_name, new_tag=new_tag, digest=digest)


def _resolve(spec: ImageSpec, current: ImageEntry | None) -> ImageEntry:
    """The entry ``spec`` makes of ``current`` (None when the name is new): ``*`` keeps a field."""

    def pick(value: SpecField, kept: str | None) -> str | None:
        return kept if isinstance(value, Keep) else value

    now = current or ImageEntry(spec.name)
    return ImageEntry(  # no tagSuffix: kustomize replaces the entry, which drops it
        spec.name,
        pick(spec.new_name, now.new_name),
        pick(spec.new_tag, now.new_tag),
        pick(spec.digest, now.digest),
    )


# --- applying the plan to the text ---------------------------------------------------------------


def _finish(
    doc: ImagesDocument, targets: Mapping[str, ImageEntry], *, collapse_all: bool, dry_run: bool
) -> OverlayEdit:
    plan = plan_entries(doc.entries, targets, collapse_all=collapse_all)
    edit, edited = _splice(doc, plan)
    text = edit.result()
    changed = text != doc.text
    if changed and edit.structural:
        _verify(doc.path, text, plan.after)
    if changed and not dry_run:
        write_atomic(doc.path, text)
    _log_changes(doc.path, doc.entries, plan.after, changed, dry_run)
    diff = _diff(doc.path, doc.text, text)
    return OverlayEdit(doc.path, changed, doc.entries, plan.after, diff, edited)


def _splice(doc: ImagesDocument, plan: EntryPlan) -> tuple[TextEdit, tuple[str, ...]]:
    """The splices that carry out ``plan`` on ``doc``, and the names of the entries they touch."""
    edit = TextEdit(doc.path, doc.text)
    edited: dict[str, None] = {}  # an ordered set
    for index, (item, step) in enumerate(zip(doc.items, plan.steps, strict=True)):
        if step.action is Action.DROP:
            edit.drop_item(_sequence(doc), index)
            edited[item.entry.name] = None
        elif step.action is Action.REWRITE:
            wanted = step.entry.fields()
            if edit.update_mapping(item.node, item.pairs, wanted, _QUOTE_IF_NEEDED):
                edited[item.entry.name] = None
    edited.update(dict.fromkeys(entry.name for entry in plan.added))
    if plan.insertions:
        _insert(edit, doc, plan)
    return edit, tuple(edited)


def _insert(edit: TextEdit, doc: ImagesDocument, plan: EntryPlan) -> None:
    images = doc.images
    if images is None or is_null(images):
        pair = None if doc.images_key is None or images is None else (doc.images_key, images)
        edit.new_list(doc.root, "images", pair, [entry.fields() for entry in plan.added])
        return
    kept = [
        item.node
        for item, s in zip(doc.items, plan.steps, strict=True)
        if s.action is not Action.DROP
    ]
    for insertion in plan.insertions:
        before = None if insertion.before is None else doc.items[insertion.before].node
        edit.insert_mappings(images, kept, before, [e.fields() for e in insertion.entries])


def _sequence(doc: ImagesDocument) -> SequenceNode:
    if not isinstance(doc.images, SequenceNode):  # pragma: no cover - items imply a list
        raise OverlayError(f"internal error: {doc.path} has no images list")
    return doc.images


def _verify(path: Path, text: str, expected: tuple[ImageEntry, ...]) -> None:
    """Parse the new text again: it must hold exactly the intended entries."""
    try:
        got = ImagesDocument.load(path, text).entries
    except OverlayError as err:
        got_error: str | None = str(err)
    else:
        got_error = None if got == expected else f"it would hold {got}"
    if got_error:
        raise OverlayError(
            f"internal error: the edit of {path} came out wrong ({got_error}; expected {expected}); "
            "nothing was written. Please report this together with the file."
        )


def _diff(path: Path, before: str, after: str) -> str:
    if before == after:
        return ""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"{path}", f"{path}"
    )
    return "".join(_diff_line(line) for line in lines)


def _diff_line(line: str) -> str:
    return line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"


def _log_changes(
    path: Path,
    before: Sequence[ImageEntry],
    after: Sequence[ImageEntry],
    changed: bool,
    dry_run: bool,
) -> None:
    if not changed:
        log.debug("%s: images unchanged", path)
        return
    changes = changed_entries(before, after)
    for entry in changes:
        log.debug("%s: image %s -> %s", path, entry.name, entry)
    verb = "would change" if dry_run else "changed"
    log.info(
        "%s: %s %d image entr%s", path, verb, len(changes), "y" if len(changes) == 1 else "ies"
    )
