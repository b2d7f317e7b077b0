"""Edit YAML text in place: splices of the original text at the positions of parsed nodes.

This module knows YAML text, not kustomize. :func:`compose` parses a text into nodes that carry
their line, column and index (ruamel.yaml's composer). :class:`TextEdit` collects splices of that
text (replace a value, drop or add a key of a mapping, drop or insert an item of a list) and
applies them with :meth:`TextEdit.result`; everything it does not splice stays byte for byte:
comments, blank lines, indentation, quoting, ``\\r\\n`` line ends, block and flow styles.

An edit that only replaces a one-line value by a one-line value keeps every line as it was;
every other edit sets :attr:`TextEdit.structural`, and the caller should parse the result again.
Values are written plain only when every YAML 1.1 and 1.2 reader reads them back as the same
string, else double-quoted (:func:`scalar`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from homelab_release.errors import OverlayError

__all__ = [
    "YAML11_WORDS",
    "Pairs",
    "TextEdit",
    "block_mapping_lines",
    "compose",
    "content_end",
    "flow_mapping",
    "is_flow",
    "is_null",
    "line_of",
    "plain_ok",
    "scalar",
]

Pairs = Mapping[str, tuple[ScalarNode, ScalarNode]]
"""A mapping's scalar keys, in file order, with their key and value nodes."""

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*")
#: The plain words a YAML 1.1 reader takes for a boolean or null (compared in lower case): a
#: string spelled so is quoted wherever YAML is written here.
YAML11_WORDS = frozenset(("y", "yes", "n", "no", "true", "false", "on", "off", "null"))


def compose(path: Path, text: str) -> Node | None:
    """The node tree of ``text`` (None when empty); invalid YAML is an :class:`OverlayError`."""
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


def line_of(node: Node) -> int:
    """The line (from 1) on which ``node`` starts."""
    return int(node.start_mark.line) + 1


def is_null(node: Node) -> bool:
    """Whether ``node`` is a plain null (empty, ``~``, ``null``)."""
    return (
        isinstance(node, ScalarNode)
        and node.style is None
        and node.value in ("", "~", "null", "Null", "NULL")
    )


def is_flow(node: Node) -> bool:
    """Whether ``node`` is a flow collection (``[...]`` or ``{...}``)."""
    return bool(getattr(node, "flow_style", False))


def content_end(node: Node) -> int:
    """The index just after the last character of ``node``'s own content."""
    if isinstance(node, ScalarNode) or is_flow(node) or not node.value:
        return int(node.end_mark.index)
    last = node.value[-1]
    return content_end(last[1] if isinstance(node, MappingNode) else last)


def plain_ok(value: str, flow: bool) -> bool:
    """Whether ``value`` written plain reads back as this string in YAML 1.1 and 1.2."""
    return bool(
        _PLAIN.fullmatch(value)
        and value.lower() not in YAML11_WORDS
        and not value.endswith(":")
        and not (flow and ":" in value)
    )


def scalar(value: str, style: str | None, flow: bool) -> str:
    """``value`` as a YAML scalar: in the old quoting style if it had one, plain when safe."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not plain_ok(value, flow):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def block_mapping_lines(
    pairs: Mapping[str, str], dash_col: int, key_col: int, flow: bool
) -> list[str]:
    """A list item holding ``pairs``: ``- key: value`` lines, or one ``- {...}`` if ``flow``."""
    dash = " " * dash_col + "-" + " " * max(key_col - dash_col - 1, 1)
    if flow:
        return [dash + flow_mapping(pairs)]
    lines = [f"{key}: {scalar(value, None, False)}" for key, value in pairs.items()]
    return [dash + lines[0], *(" " * key_col + line for line in lines[1:])]


def flow_mapping(pairs: Mapping[str, str]) -> str:
    """``pairs`` as a flow mapping: ``{key: value, ...}``."""
    return "{" + ", ".join(f"{k}: {scalar(v, None, True)}" for k, v in pairs.items()) + "}"


@dataclass(frozen=True, order=True)
class _Splice:
    """Replace ``text[start:end]`` with ``new``; ``seq`` orders insertions at one position."""

    start: int
    end: int
    seq: int
    new: str = field(compare=False)


class TextEdit:
    """The splices that turn ``text`` (the text the nodes were composed from) into a new text.

    Splices are applied in position order, and in the order they were made at one position.
    ``path`` only names the file in error messages.
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.structural = False  # True once an edit adds, removes or joins lines
        self._splices: list[_Splice] = []

    def result(self) -> str:
        """The text with every splice applied."""
        parts: list[str] = []
        position = 0
        for splice in sorted(self._splices):
            if splice.start < position:
                raise OverlayError(f"internal error: overlapping edits of {self.path}")
            parts += [self.text[position : splice.start], splice.new]
            position = splice.end
        parts.append(self.text[position:])
        return "".join(parts)

    # mappings

    def update_mapping(
        self, node: MappingNode, pairs: Pairs, wanted: Mapping[str, str], quote: Collection[str]
    ) -> bool:
        """Make the mapping ``node`` hold exactly ``wanted``; return whether its text changes.

        Keys not wanted are dropped, values that differ are replaced in their quoting style, and
        a plain value of a key in ``quote`` that a YAML 1.1 reader would not read as that string
        is quoted. A new key goes after the last kept key that comes before it in ``wanted``'s
        order. At least one key must stay.
        """
        count = len(self._splices)
        flow = bool(node.flow_style)
        for key, (_, value) in pairs.items():
            if key not in wanted:
                self._drop_pair(node, pairs, key)
            elif _needs_write(value, wanted[key], flow, key in quote):
                self.replace_scalar(value, scalar(wanted[key], value.style, flow))
        order = list(wanted)
        kept = [key for key in pairs if key in wanted]
        for key in order:
            if key not in pairs:
                before = [k for k in kept if order.index(k) < order.index(key)]
                self._add_pair(node, pairs[before[-1] if before else kept[-1]], key, wanted[key])
        return len(self._splices) > count

    def replace_scalar(self, node: ScalarNode, new: str) -> None:
        """Replace a value as a whole by the scalar text ``new``; a block or multi-line one
        becomes one line.

        A block scalar (``|``, ``>``) spans its header line and its content lines, and ruamel's
        end mark lies after the last line break and any blank lines: those line breaks and a
        comment on the header line are kept, only the header and content are replaced. Any edit
        that is not a one-line value replaced by a one-line value is structural.
        """
        start, end = node.start_mark.index, node.end_mark.index
        if self.text[start] in "&!*":
            raise OverlayError(
                f"{self.path} line {line_of(node)}: a value with a YAML anchor or tag "
                "cannot be edited; write the value out"
            )
        block = node.style in ("|", ">")
        if block:
            new += _header_comment(self.text[start : self._line_end(start)])
            end = self._line_end(start + len(self.text[start:end].rstrip()) - 1)
        self._splice(start, end, new, structural=block or "\n" in self.text[start:end])

    def _drop_pair(self, node: MappingNode, pairs: Pairs, key: str) -> None:
        names = list(pairs)
        index = names.index(key)
        key_node, value = pairs[key]
        start, end = key_node.start_mark.index, value.end_mark.index
        following = pairs[names[index + 1]][0] if index + 1 < len(names) else None
        if node.flow_style and index > 0:
            start = pairs[names[index - 1]][1].end_mark.index
        elif node.flow_style or self.text[self._line_start(start) : start].strip():
            if following is None:
                raise OverlayError(f"internal error: cannot drop {key} in {self.path}")
            end = following.start_mark.index  # first on its line: the next key moves up
        else:
            start, end = self._line_start(start), self._after_line(end)
        self._splice(start, end, "", structural=True)

    def _add_pair(
        self, node: MappingNode, after: tuple[ScalarNode, ScalarNode], key: str, value: str
    ) -> None:
        key_node, value_node = after
        if node.flow_style:
            new = f", {key}: {scalar(value, None, flow=True)}"
            self._splice(value_node.end_mark.index, value_node.end_mark.index, new, True)
            return
        line = f"{' ' * key_node.start_mark.column}{key}: {scalar(value, None, flow=False)}"
        self._insert_lines(self._after_line(value_node.end_mark.index), [line])

    # lists

    def drop_item(self, sequence: SequenceNode, index: int) -> None:
        """Remove item ``index`` of ``sequence``, with its line(s) in a block list."""
        nodes = sequence.value
        item = nodes[index]
        start, end = item.start_mark.index, content_end(item)
        if not sequence.flow_style:
            start, end = self._line_start(self._dash(item)), self._after_line(end)
        elif index > 0:
            start = content_end(nodes[index - 1])
        elif len(nodes) > 1:
            end = nodes[1].start_mark.index
        self._splice(start, end, "", structural=True)

    def insert_mappings(
        self,
        sequence: Node,
        kept: Sequence[Node],
        before: Node | None,
        mappings: Sequence[Mapping[str, str]],
    ) -> None:
        """Insert ``mappings`` as items of ``sequence`` right before ``before``, else last.

        ``kept`` are the items that stay (in order; ``before`` is one of them). In a block list
        the new items copy the first kept item's indentation and style and go above the comment
        lines right over ``before``; in a flow list they are written as flow mappings.
        """
        if is_flow(sequence):
            text = ", ".join(flow_mapping(mapping) for mapping in mappings)
            self._insert_flow(sequence.start_mark.index + 1, kept, before, text)
        else:
            self._insert_block(kept, before, mappings)

    def _insert_block(
        self, kept: Sequence[Node], before: Node | None, mappings: Sequence[Mapping[str, str]]
    ) -> None:
        model = kept[0]
        dash = self._dash(model)
        dash_col = dash - self._line_start(dash)
        same_line = self.text.find("\n", dash, model.start_mark.index) < 0
        key_col = model.start_mark.column if same_line else dash_col + 2
        flow = is_flow(model)
        lines = [ln for m in mappings for ln in block_mapping_lines(m, dash_col, key_col, flow)]
        if before is not None:
            position = self._above_comments(self._line_start(self._dash(before)))
        else:
            position = self._after_line(content_end(kept[-1]))
        self._insert_lines(position, lines)

    def _insert_flow(
        self, start: int, kept: Sequence[Node], before: Node | None, text: str
    ) -> None:
        """Insert ``text`` into a flow list whose content begins at ``start``."""
        if not kept:
            position = start
        elif before is not None:
            position, text = before.start_mark.index, text + ", "
        else:
            position, text = content_end(kept[-1]), ", " + text
        self._splice(position, position, text, structural=True)

    def new_list(
        self,
        root: MappingNode | None,
        key_name: str,
        pair: tuple[Node, Node] | None,
        mappings: Sequence[Mapping[str, str]],
    ) -> None:
        """A block list of ``mappings`` as the value of the top-level key ``key_name``.

        ``pair`` is that key's node and its empty (null) value, which the list replaces; without
        it, ``key_name:`` and the list are added after the last top-level value of ``root``.
        """
        if root is not None and root.flow_style:
            raise OverlayError(
                f"{self.path} is written as a flow mapping ({{...}}); write {key_name}: yourself"
            )
        column = pair[0].start_mark.column if pair is not None else _root_column(root)
        dash_col = column + _sequence_offset(root)
        lines = [
            line for m in mappings for line in block_mapping_lines(m, dash_col, dash_col + 2, False)
        ]
        if pair is not None:
            key, value = pair
            start = value.start_mark.index
            while start > 0 and self.text[start - 1] in " \t":
                start -= 1
            self._splice(start, value.end_mark.index, "", structural=True)
            self._insert_lines(self._after_line(key.end_mark.index), lines)
            return
        position = self._after_line(content_end(root)) if root is not None else len(self.text)
        self._insert_lines(position, [" " * column + f"{key_name}:", *lines])

    # text positions

    def _insert_lines(self, position: int, lines: Sequence[str]) -> None:
        new = "".join(line + self.nl for line in lines)
        if position == len(self.text) and self.text and not self.text.endswith("\n"):
            new = self.nl + new.removesuffix(self.nl)
        self._splice(position, position, new, structural=True)

    def _splice(self, start: int, end: int, new: str, structural: bool = False) -> None:
        self._splices.append(_Splice(start, end, len(self._splices), new))
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
                f"{self.path} line {line_of(node)}: cannot find the '-' of this list item; "
                "write it as '- key: value', with no comment between the '-' and the item"
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


def _needs_write(node: ScalarNode, value: str, flow: bool, quote: bool) -> bool:
    if node.value != value:
        return True
    return quote and node.style is None and not plain_ok(value, flow)


def _header_comment(header: str) -> str:
    """The comment on a block scalar's header line (``|-  # note``), with its leading blanks."""
    found = re.search(r"[ \t]+#.*", header)
    return found.group() if found else ""


def _root_column(root: MappingNode | None) -> int:
    return int(root.value[0][0].start_mark.column) if root is not None and root.value else 0


def _sequence_offset(root: MappingNode | None) -> int:
    """How far the file indents block sequences under their key (0 as kustomize writes)."""
    for key, value in root.value if root is not None else ():
        if isinstance(value, SequenceNode) and not value.flow_style:
            return int(value.start_mark.column - key.start_mark.column)
    return 0
