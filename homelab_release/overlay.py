"""Edit the ``images:`` of a kustomization the way ``kustomize edit set image`` does, in place.

:func:`set_overlay_image` gives the ``images:`` entries that ``kustomize edit set image`` (v5)
gives, but it changes only the text of the entries that change: comments, blank lines, key order,
quoting, indentation, a leading ``---`` and flow-style lists elsewhere stay byte for byte.

How: the file is parsed once (ruamel.yaml's composer, which records the line and column of every
node) to check it and to find the ``images:`` entries; the edit is a list of splices of the
original text (replace a value, drop a line, insert a line). Before writing, the new text is
parsed again and must hold exactly the intended entries, except when the only splices replace a
one-line value by a one-line value (the common case, kept cheap): a scalar that the new scalar
replaces token for token, which tests/test_overlay.py's hypothesis test checks over many shapes.
A block scalar (``|``, ``>``) or a value over several lines is replaced as a whole by one line.
Tags and digests are written plain only when every YAML 1.1 and 1.2 reader reads them as strings,
else double-quoted (``"1.10"``, ``"012"``, ``"on"``).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from homelab_release.errors import ImageRefError, OverlayError
from homelab_release.files import write_atomic
from homelab_release.images import (
    SPEC_FORMS,
    ImageSpec,
    Keep,
    SpecField,
    check_digest,
    check_name,
    check_tag,
    split_reference,
)

log = logging.getLogger(__name__)

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ENTRY_KEYS = ("name", "newName", "newTag", "digest", "tagSuffix")
_QUOTE_IF_NEEDED = frozenset(("newTag", "digest", "tagSuffix"))
_TAG_SUFFIX = re.compile(r"[A-Za-z0-9_.-]{1,127}")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*")
_YAML11_WORDS = frozenset(("y", "yes", "n", "no", "true", "false", "on", "off", "null"))


@dataclass(frozen=True)
class ImageEntry:
    """One ``images:`` entry of a kustomization (fields absent from the entry are ``None``).

    ``tag_suffix`` is kustomize v5's ``tagSuffix``: appended to the image's own tag when the entry
    sets neither ``newTag`` nor ``digest``.
    """

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None
    tag_suffix: str | None = None

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

    def fields(self) -> dict[str, str]:
        """The entry as its YAML keys and values, in ``ENTRY_KEYS`` order, absent ones left out."""
        values = (self.name, self.new_name, self.new_tag, self.digest, self.tag_suffix)
        return {key: value for key, value in zip(ENTRY_KEYS, values, strict=True) if value}


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


def find_kustomization(overlay: Path | str) -> Path:
    """The kustomization file of ``overlay`` (a folder, or the file itself)."""
    folder = Path(overlay)
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise OverlayError(f"overlay {folder} does not exist; create it or fix the overlay path")
    found = [folder / name for name in KUSTOMIZATION_NAMES if (folder / name).is_file()]
    if not found:
        raise OverlayError(
            f"overlay {folder} has no kustomization.yaml (nor kustomization.yml, Kustomization); "
            "create it or fix the overlay path"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise OverlayError(f"overlay {folder} has several kustomization files ({names}); keep one")
    return found[0]


def read_overlay_images(overlay: Path | str) -> tuple[ImageEntry, ...]:
    """The ``images:`` entries of ``overlay``'s kustomization, in file order."""
    path = find_kustomization(overlay)
    return tuple(item.entry for item in _Document.load(path, _read_text(path)).items)


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
    text = _read_text(path)
    doc = _Document.load(path, text)
    current = doc.first_entries()
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
        targets[entry.name] = _checked_entry(entry)
    doc = _Document.load(path, _read_text(path))
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


def _checked_entry(entry: ImageEntry) -> ImageEntry:
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


# --- reading ----------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise OverlayError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise OverlayError(f"cannot read {path}: {err.strerror}") from err


def _compose(path: Path, text: str) -> Node | None:
    try:
        node: Node | None = YAML(typ="base", pure=True).compose(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OverlayError(
            f"{path} is not valid YAML{where}: {err.problem or err.context}; fix the file first"
        ) from err
    except YAMLError as err:
        raise OverlayError(f"{path} is not valid YAML: {err}; fix the file first") from err
    return node


@dataclass(frozen=True)
class _Item:
    """One entry of the ``images:`` list: its node, its key/value nodes and its values."""

    node: MappingNode
    pairs: dict[str, tuple[ScalarNode, ScalarNode]]
    entry: ImageEntry


@dataclass
class _Document:
    """A parsed kustomization: its text, root mapping, the ``images:`` nodes and entries."""

    path: Path
    text: str
    root: MappingNode | None
    images_key: ScalarNode | None = None
    images: Node | None = None
    items: list[_Item] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, text: str) -> _Document:
        root = _compose(path, text)
        if root is not None and _is_null(root):
            root = None  # an empty document ('---' alone)
        if root is not None and not isinstance(root, MappingNode):
            raise OverlayError(f"{path} is not a kustomization: its top level is not a mapping")
        doc = cls(path, text, root)
        if root is not None:
            doc._find_images(root)
        return doc

    def first_entries(self) -> dict[str, ImageEntry]:
        """Each name's first entry (kustomize collapses duplicates into the first)."""
        first: dict[str, ImageEntry] = {}
        for item in self.items:
            first.setdefault(item.entry.name, item.entry)
        return first

    def line(self, node: Node) -> int:
        return int(node.start_mark.line) + 1

    def _find_images(self, root: MappingNode) -> None:
        found = [(key, value) for key, value in root.value if key.value == "images"]
        if len(found) > 1:
            lines = ", ".join(str(self.line(key)) for key, _ in found)
            raise OverlayError(f"{self.path} has several images: keys (lines {lines}); keep one")
        if not found:
            return
        self.images_key, self.images = found[0]
        if isinstance(self.images, SequenceNode):
            self.items = [self._item(node) for node in self.images.value]
            self._check_order()
        elif not _is_null(self.images):
            raise OverlayError(
                f"images: in {self.path} (line {self.line(self.images)}) is not a list; "
                "write it as a list of entries with name, newName, newTag, digest"
            )

    def _check_order(self) -> None:
        """Aliases point at nodes written elsewhere: such entries cannot be edited in place."""
        position = self.images.start_mark.index if self.images is not None else 0
        for item in self.items:
            starts = [item.node.start_mark.index]
            for key, value in item.pairs.values():
                starts += [key.start_mark.index, value.start_mark.index]
            if starts != sorted(starts) or starts[0] < position:
                raise OverlayError(
                    f"images entry {item.entry.name!r} in {self.path} uses a YAML alias; "
                    "write the entry out in full"
                )
            position = starts[-1]

    def _item(self, node: Node) -> _Item:
        where = f"images entry at line {self.line(node)} of {self.path}"
        if not isinstance(node, MappingNode):
            raise OverlayError(f"{where} is not a mapping; write it as 'name: IMAGE' plus fields")
        pairs: dict[str, tuple[ScalarNode, ScalarNode]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name not in ENTRY_KEYS or name in pairs:
                what = "repeats" if name in pairs else "has an unknown key"
                keys = ", ".join(ENTRY_KEYS)
                raise OverlayError(f"{where} {what} {name!r} (entries take {keys})")
            if not isinstance(value, ScalarNode):
                raise OverlayError(f"{where}: {name} is not a single value")
            pairs[name] = (key, value)
        if "name" not in pairs or not pairs["name"][1].value:
            raise OverlayError(f"{where} has no name; add 'name: IMAGE'")
        values = {key: pairs[key][1].value if key in pairs else "" for key in ENTRY_KEYS}
        entry = ImageEntry(values["name"], *(values[key] or None for key in ENTRY_KEYS[1:]))
        return _Item(node, pairs, entry)


def _is_null(node: Node) -> bool:
    return (
        isinstance(node, ScalarNode)
        and node.style is None
        and node.value in ("", "~", "null", "Null", "NULL")
    )


# --- editing ----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Splice:
    """Replace ``text[start:end]`` with ``new``; ``seq`` orders insertions at one position."""

    start: int
    end: int
    seq: int
    new: str = field(compare=False)


class _Editor:
    """Collects the splices that turn a document's ``images:`` into the target entries."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.text = doc.text
        self.nl = "\r\n" if "\r\n" in doc.text else "\n"
        self.splices: list[_Splice] = []
        self.structural = False  # True once an edit adds, removes or joins lines
        self.edited: dict[str, None] = {}  # names of the entries whose text changes, in order

    def plan(self, targets: Mapping[str, ImageEntry], collapse_all: bool) -> tuple[ImageEntry, ...]:
        """Record the splices; return the entries the new text holds, in file order."""
        kept: list[_Item] = []
        for item in self.doc.items:
            name = item.entry.name
            if any(other.entry.name == name for other in kept):
                if name in targets or collapse_all:
                    self._drop_item(item)
                    self.edited[name] = None
                    continue
            elif name in targets:
                count = len(self.splices)
                self._rewrite(item, targets[name])
                if len(self.splices) > count:
                    self.edited[name] = None
            kept.append(item)
        present = {item.entry.name for item in kept}
        new = [targets[name] for name in sorted(targets) if name not in present]
        self.edited.update(dict.fromkeys(entry.name for entry in new))
        after = [targets.get(item.entry.name, item.entry) for item in kept]
        return tuple(self._add(new, kept, after))

    def result(self) -> str:
        """The text with every splice applied."""
        parts: list[str] = []
        position = 0
        for splice in sorted(self.splices):
            if splice.start < position:
                raise OverlayError(f"internal error: overlapping edits of {self.doc.path}")
            parts += [self.text[position : splice.start], splice.new]
            position = splice.end
        parts.append(self.text[position:])
        return "".join(parts)

    # entries that exist

    def _rewrite(self, item: _Item, target: ImageEntry) -> None:
        wanted = target.fields()
        flow = bool(item.node.flow_style)
        for key, (_, value) in item.pairs.items():
            if key not in wanted:
                self._drop_pair(item, key)
            elif _needs_write(key, value, wanted[key], flow):
                self._replace(value, _scalar(wanted[key], value.style, flow))
        kept = [key for key in item.pairs if key in wanted]
        for key in ENTRY_KEYS:
            if key in wanted and key not in item.pairs:
                self._add_pair(item, _predecessor(kept, key), key, wanted[key])

    def _replace(self, node: ScalarNode, new: str) -> None:
        """Replace a value as a whole; a block or multi-line one becomes one line.

        A block scalar (``|``, ``>``) spans its header line and its content lines, and ruamel's
        end mark lies after the last line break and any blank lines: those line breaks and a
        comment on the header line are kept, only the header and content are replaced. Any edit
        that is not a one-line value replaced by a one-line value is verified by re-parsing.
        """
        start, end = node.start_mark.index, node.end_mark.index
        if self.text[start] in "&!*":
            raise OverlayError(
                f"{self.doc.path} line {self.doc.line(node)}: a value with a YAML anchor or tag "
                "cannot be edited; write the value out"
            )
        block = node.style in ("|", ">")
        if block:
            new += _header_comment(self.text[start : self._line_end(start)])
            end = self._line_end(start + len(self.text[start:end].rstrip()) - 1)
        self._splice(start, end, new, structural=block or "\n" in self.text[start:end])

    def _drop_pair(self, item: _Item, key: str) -> None:
        names = list(item.pairs)
        index = names.index(key)
        key_node, value = item.pairs[key]
        start, end = key_node.start_mark.index, value.end_mark.index
        following = item.pairs[names[index + 1]][0] if index + 1 < len(names) else None
        if item.node.flow_style and index > 0:
            start = item.pairs[names[index - 1]][1].end_mark.index
        elif item.node.flow_style or self.text[self._line_start(start) : start].strip():
            if following is None:
                raise OverlayError(f"internal error: cannot drop {key} in {self.doc.path}")
            end = following.start_mark.index  # first on its line: the next key moves up
        else:
            start, end = self._line_start(start), self._after_line(end)
        self._splice(start, end, "", structural=True)

    def _add_pair(self, item: _Item, after: str, key: str, value: str) -> None:
        key_node, value_node = item.pairs[after]
        if item.node.flow_style:
            new = f", {key}: {_scalar(value, None, flow=True)}"
            self._splice(value_node.end_mark.index, value_node.end_mark.index, new, True)
            return
        line = f"{' ' * key_node.start_mark.column}{key}: {_scalar(value, None, flow=False)}"
        self._insert_lines(self._after_line(value_node.end_mark.index), [line])

    def _drop_item(self, item: _Item) -> None:
        images = self.doc.images
        if not isinstance(images, SequenceNode):  # pragma: no cover - items imply a list
            raise OverlayError(f"internal error: {self.doc.path} has no images list")
        nodes = images.value
        index = nodes.index(item.node)
        start, end = item.node.start_mark.index, _content_end(item.node)
        if not images.flow_style:
            start, end = self._line_start(self._dash(item.node)), self._after_line(end)
        elif index > 0:
            start = _content_end(nodes[index - 1])
        elif len(nodes) > 1:
            end = nodes[1].start_mark.index
        self._splice(start, end, "", structural=True)

    # entries that are new

    def _add(
        self, new: list[ImageEntry], kept: list[_Item], after: list[ImageEntry]
    ) -> list[ImageEntry]:
        """Insert each new entry before the first kept entry with a greater name (else last)."""
        groups: dict[int, list[ImageEntry]] = {}
        for entry in new:
            index = next((i for i, it in enumerate(kept) if it.entry.name > entry.name), len(kept))
            groups.setdefault(index, []).append(entry)
        for index in sorted(groups, reverse=True):
            after[index:index] = groups[index]
        if groups:
            self._insert_entries(groups, kept)
        return after

    def _insert_entries(self, groups: dict[int, list[ImageEntry]], kept: list[_Item]) -> None:
        images = self.doc.images
        if images is None or _is_null(images):
            self._new_list(groups[0])
        elif _is_flow(images):
            for index, entries in groups.items():
                self._insert_flow(images, kept, index, entries)
        else:
            for index, entries in groups.items():
                self._insert_block(kept, index, entries)

    def _insert_block(self, kept: list[_Item], index: int, entries: list[ImageEntry]) -> None:
        model = kept[0].node
        dash = self._dash(model)
        dash_col = dash - self._line_start(dash)
        same_line = self.text.find("\n", dash, model.start_mark.index) < 0
        key_col = model.start_mark.column if same_line else dash_col + 2
        lines = [
            line
            for entry in entries
            for line in _entry_lines(entry, dash_col, key_col, bool(model.flow_style))
        ]
        if index < len(kept):
            position = self._above_comments(self._line_start(self._dash(kept[index].node)))
        else:
            position = self._after_line(_content_end(kept[-1].node))
        self._insert_lines(position, lines)

    def _insert_flow(
        self, images: Node, kept: list[_Item], index: int, entries: list[ImageEntry]
    ) -> None:
        text = ", ".join(_flow_entry(entry) for entry in entries)
        if not kept:
            position = images.start_mark.index + 1
        elif index < len(kept):
            position, text = kept[index].node.start_mark.index, text + ", "
        else:
            position, text = _content_end(kept[-1].node), ", " + text
        self._splice(position, position, text, structural=True)

    def _new_list(self, entries: list[ImageEntry]) -> None:
        """Fill an empty ``images:``, or add the key after the last top-level value."""
        root, key, value = self.doc.root, self.doc.images_key, self.doc.images
        if root is not None and root.flow_style:
            raise OverlayError(
                f"{self.doc.path} is written as a flow mapping ({{...}}); write images: yourself"
            )
        column = key.start_mark.column if key is not None else _root_column(root)
        dash_col = column + _sequence_offset(root)
        lines = [ln for e in entries for ln in _entry_lines(e, dash_col, dash_col + 2, False)]
        if key is not None and value is not None:
            start = value.start_mark.index
            while start > 0 and self.text[start - 1] in " \t":
                start -= 1
            self._splice(start, value.end_mark.index, "", structural=True)
            self._insert_lines(self._after_line(key.end_mark.index), lines)
            return
        position = self._after_line(_content_end(root)) if root is not None else len(self.text)
        self._insert_lines(position, [" " * column + "images:", *lines])

    # text positions

    def _insert_lines(self, position: int, lines: Sequence[str]) -> None:
        new = "".join(line + self.nl for line in lines)
        if position == len(self.text) and self.text and not self.text.endswith("\n"):
            new = self.nl + new.removesuffix(self.nl)
        self._splice(position, position, new, structural=True)

    def _splice(self, start: int, end: int, new: str, structural: bool = False) -> None:
        self.splices.append(_Splice(start, end, len(self.splices), new))
        self.structural = self.structural or structural

    def _line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def _line_end(self, index: int) -> int:
        """The end of the line ``index`` is on, before its line break (``\\n`` or ``\\r\\n``)."""
        newline = self.text.find("\n", index)
        end = len(self.text) if newline < 0 else newline
        return end - 1 if end > index and self.text[end - 1] == "\r" else end

    def _after_line(self, index: int) -> int:
        """The start of the line after the one ``index`` is on (``index`` if it starts a line)."""
        if index > 0 and self.text[index - 1] == "\n":
            return index
        newline = self.text.find("\n", index)
        return len(self.text) if newline < 0 else newline + 1

    def _dash(self, node: Node) -> int:
        """The index of the ``-`` that starts the block sequence item ``node``."""
        index = int(node.start_mark.index) - 1
        while index >= 0 and self.text[index] in " \t\r\n":
            index -= 1
        if index < 0 or self.text[index] != "-":
            raise OverlayError(
                f"{self.doc.path} line {self.doc.line(node)}: cannot find the '-' of this "
                "images entry; write it as '- name: IMAGE'"
            )
        return index

    def _above_comments(self, line_start: int) -> int:
        """Move up over the comment lines right above a line (they belong to it)."""
        while line_start > 0:
            previous = self._line_start(line_start - 1)
            if not self.text[previous:line_start].lstrip().startswith("#"):
                break
            line_start = previous
        return line_start


def _predecessor(kept: list[str], key: str) -> str:
    """The kept key after which ``key`` goes: the last one that comes before it in ENTRY_KEYS."""
    order = ENTRY_KEYS.index(key)
    before = [name for name in kept if name in ENTRY_KEYS and ENTRY_KEYS.index(name) < order]
    return before[-1] if before else kept[-1]


def _header_comment(header: str) -> str:
    """The comment on a block scalar's header line (``|-  # note``), with its leading blanks."""
    found = re.search(r"[ \t]+#.*", header)
    return found.group() if found else ""


def _needs_write(key: str, node: ScalarNode, value: str, flow: bool) -> bool:
    if node.value != value:
        return True
    return key in _QUOTE_IF_NEEDED and node.style is None and not _plain_ok(value, flow)


def _plain_ok(value: str, flow: bool) -> bool:
    """Whether ``value`` written plain reads back as this string in YAML 1.1 and 1.2."""
    return bool(
        _PLAIN.fullmatch(value)
        and value.lower() not in _YAML11_WORDS
        and not value.endswith(":")
        and not (flow and ":" in value)
    )


def _scalar(value: str, style: str | None, flow: bool) -> str:
    """``value`` as a YAML scalar: in the old quoting style if it had one, plain when safe."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _plain_ok(value, flow):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _entry_lines(entry: ImageEntry, dash_col: int, key_col: int, flow: bool) -> list[str]:
    dash = " " * dash_col + "-" + " " * max(key_col - dash_col - 1, 1)
    if flow:
        return [dash + _flow_entry(entry)]
    pairs = [f"{key}: {_scalar(value, None, False)}" for key, value in entry.fields().items()]
    return [dash + pairs[0], *(" " * key_col + pair for pair in pairs[1:])]


def _flow_entry(entry: ImageEntry) -> str:
    pairs = (f"{key}: {_scalar(value, None, True)}" for key, value in entry.fields().items())
    return "{" + ", ".join(pairs) + "}"


def _content_end(node: Node) -> int:
    """The index just after the last character of ``node``'s own content."""
    if isinstance(node, ScalarNode) or _is_flow(node) or not node.value:
        return int(node.end_mark.index)
    last = node.value[-1]
    return _content_end(last[1] if isinstance(node, MappingNode) else last)


def _is_flow(node: Node) -> bool:
    return bool(getattr(node, "flow_style", False))


def _root_column(root: MappingNode | None) -> int:
    return int(root.value[0][0].start_mark.column) if root is not None and root.value else 0


def _sequence_offset(root: MappingNode | None) -> int:
    """How far the file indents block sequences under their key (0 as kustomize writes)."""
    for key, value in root.value if root is not None else ():
        if isinstance(value, SequenceNode) and not value.flow_style:
            return int(value.start_mark.column - key.start_mark.column)
    return 0


# --- finishing ----------------------------------------------------------------------------------


def _finish(
    doc: _Document, targets: Mapping[str, ImageEntry], *, collapse_all: bool, dry_run: bool
) -> OverlayEdit:
    editor = _Editor(doc)
    after = editor.plan(targets, collapse_all)
    text = editor.result()
    before = tuple(item.entry for item in doc.items)
    changed = text != doc.text
    if changed and editor.structural:
        _verify(doc.path, text, after)
    if changed and not dry_run:
        write_atomic(doc.path, text)
    _log_changes(doc.path, before, after, changed, dry_run)
    diff = _diff(doc.path, doc.text, text)
    return OverlayEdit(doc.path, changed, before, after, diff, tuple(editor.edited))


def _verify(path: Path, text: str, expected: tuple[ImageEntry, ...]) -> None:
    """Parse the new text again: it must hold exactly the intended entries."""
    try:
        got = tuple(item.entry for item in _Document.load(path, text).items)
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
    before: Iterable[ImageEntry],
    after: Iterable[ImageEntry],
    changed: bool,
    dry_run: bool,
) -> None:
    if not changed:
        log.debug("%s: images unchanged", path)
        return
    old = {entry.name: entry for entry in before}
    changes = [entry for entry in after if old.get(entry.name) != entry]
    for entry in changes:
        log.debug("%s: image %s -> %s", path, entry.name, entry.reference)
    verb = "would change" if dry_run else "changed"
    log.info(
        "%s: %s %d image entr%s", path, verb, len(changes), "y" if len(changes) == 1 else "ies"
    )
