"""A kustomization file and its ``images:`` list, read with the position of every node.

:func:`find_kustomization` finds the file of an overlay; :meth:`ImagesDocument.load` parses it
once (:func:`homelab_release.yamltext.compose`), checks that ``images:`` is a list of entries
with kustomize's keys, and keeps each entry's nodes next to its :class:`ImageEntry` so that an
edit can splice the text where the entry is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from homelab_release.entries import ENTRY_KEYS, ImageEntry
from homelab_release.errors import OverlayError
from homelab_release.yamltext import Pairs, compose, is_null, line_of

__all__ = ["KUSTOMIZATION_NAMES", "ImageItem", "ImagesDocument", "find_kustomization", "read_text"]

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
"""The file names kustomize looks for in an overlay folder, in its order."""


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


def read_text(path: Path) -> str:
    """The text of ``path``, which must be UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise OverlayError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise OverlayError(f"cannot read {path}: {err.strerror}") from err


@dataclass(frozen=True)
class ImageItem:
    """One entry of the ``images:`` list: its node, its key/value nodes and its values."""

    node: MappingNode
    pairs: Pairs
    entry: ImageEntry


@dataclass
class ImagesDocument:
    """A parsed kustomization: its text, root mapping, the ``images:`` nodes and items."""

    path: Path
    text: str
    root: MappingNode | None
    images_key: ScalarNode | None = None
    images: Node | None = None
    items: list[ImageItem] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, text: str) -> ImagesDocument:
        """Parse ``text`` (the content of ``path``) and check its ``images:``."""
        root = compose(path, text)
        if root is not None and is_null(root):
            root = None  # an empty document ('---' alone)
        if root is not None and not isinstance(root, MappingNode):
            raise OverlayError(f"{path} is not a kustomization: its top level is not a mapping")
        doc = cls(path, text, root)
        if root is not None:
            doc._find_images(root)
        return doc

    @property
    def entries(self) -> tuple[ImageEntry, ...]:
        """The ``images:`` entries, in file order."""
        return tuple(item.entry for item in self.items)

    def _find_images(self, root: MappingNode) -> None:
        found = [(key, value) for key, value in root.value if key.value == "images"]
        if len(found) > 1:
            lines = ", ".join(str(line_of(key)) for key, _ in found)
            raise OverlayError(f"{self.path} has several images: keys (lines {lines}); keep one")
        if not found:
            return
        self.images_key, self.images = found[0]
        if isinstance(self.images, SequenceNode):
            self.items = [self._item(node) for node in self.images.value]
            self._check_order()
        elif not is_null(self.images):
            raise OverlayError(
                f"images: in {self.path} (line {line_of(self.images)}) is not a list; "
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

    def _item(self, node: Node) -> ImageItem:
        where = f"images entry at line {line_of(node)} of {self.path}"
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
        return ImageItem(node, pairs, entry)
