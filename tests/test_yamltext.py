"""yamltext: splices of YAML text at node positions, with no kustomize in sight."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from homelab_release.errors import OverlayError
from homelab_release.yamltext import (
    TextEdit,
    block_mapping_lines,
    compose,
    content_end,
    flow_mapping,
    plain_ok,
    scalar,
)

PATH = Path("file.yaml")


def value(text: str, *keys: str | int) -> Node:
    """The node at ``keys`` (mapping keys and list indexes) in ``text``."""
    node = compose(PATH, text)
    for key in keys:
        if isinstance(key, int):
            assert isinstance(node, SequenceNode)
            node = node.value[key]
        else:
            assert isinstance(node, MappingNode)
            node = next(v for k, v in node.value if k.value == key)
    assert node is not None
    return node


def pairs(node: Node) -> dict[str, tuple[ScalarNode, ScalarNode]]:
    assert isinstance(node, MappingNode)
    return {key.value: (key, value) for key, value in node.value}


def load(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


# --- scalars ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "flow", "ok"),
    [
        ("v1", False, True),
        ("reg.io/x/y", False, True),
        ("localhost:5000/vote", False, True),
        ("localhost:5000/vote", True, False),  # ':' in a flow collection
        ("1.10", False, False),  # a float
        ("012", False, False),  # an octal in YAML 1.1
        ("1e3", False, False),
        ("on", False, False),  # a boolean in YAML 1.1
        ("Yes", False, False),
        ("null", False, False),
        ("x:", False, False),
        ("-d", False, False),
        ("", False, False),
        ("_s", False, True),
    ],
)
def test_plain_ok_only_when_every_reader_reads_the_string(text: str, flow: bool, ok: bool) -> None:
    assert plain_ok(text, flow) == ok


@pytest.mark.parametrize(
    ("text", "style", "written"),
    [
        ("v2", None, "v2"),
        ("1.10", None, '"1.10"'),
        ("v2", "'", "'v2'"),
        ("it's", "'", "'it''s'"),
        ("v2", '"', '"v2"'),
        ('a"b\\c', None, '"a\\"b\\\\c"'),
        ("v2", "|", "v2"),  # a block scalar becomes a plain one-line value
    ],
)
def test_scalar_keeps_the_quoting_style_and_reads_back(
    text: str, style: str | None, written: str
) -> None:
    assert scalar(text, style, flow=False) == written
    assert load(f"k: {written}") == {"k": text}


def test_mapping_lines_and_flow_mapping() -> None:
    fields = {"a": "1", "b": "x"}
    assert block_mapping_lines(fields, 2, 4, flow=False) == ['  - a: "1"', "    b: x"]
    assert block_mapping_lines(fields, 0, 4, flow=True) == ['-   {a: "1", b: x}']
    assert flow_mapping({"u": "h:1"}) == '{u: "h:1"}'


def test_content_end_is_before_trailing_comments_and_blank_lines() -> None:
    text = "l:\n- a: 1   # one\n\n# after\nk: 2\n"
    assert text[: content_end(value(text, "l"))] == "l:\n- a: 1"


# --- TextEdit -----------------------------------------------------------------------------------


def test_one_line_value_swap_is_not_structural() -> None:
    text = "a:  'v1'   # kept\nb: 2\n"
    edit = TextEdit(PATH, text)
    node = value(text, "a")
    assert isinstance(node, ScalarNode)
    edit.replace_scalar(node, scalar("v2", node.style, flow=False))
    assert edit.result() == "a:  'v2'   # kept\nb: 2\n"
    assert not edit.structural


def test_block_scalar_becomes_one_line_and_is_structural() -> None:
    text = "a: |-  # note\n  v1\n  more\n\nb: 2\n"
    edit = TextEdit(PATH, text)
    node = value(text, "a")
    assert isinstance(node, ScalarNode)
    edit.replace_scalar(node, "v2")
    assert edit.result() == "a: v2  # note\n\nb: 2\n"
    assert edit.structural


def test_anchored_value_is_refused() -> None:
    text = "a: &x v1\nb: *x\n"
    node = value(text, "a")
    assert isinstance(node, ScalarNode)
    with pytest.raises(OverlayError, match=r"file.yaml line 1: a value with a YAML anchor"):
        TextEdit(PATH, text).replace_scalar(node, "v2")


@pytest.mark.parametrize(
    ("text", "expected", "data"),
    [
        (
            "- x: 1\n  y: '2'   # why\n  z: 3\n",
            "- x: 1\n  y: '9'   # why\n  w: \"0\"\n",
            {"x": 1, "y": "9", "w": "0"},
        ),
        ("- {x: 1, y: '2', z: 3}\n", "- {x: 1, y: '9', w: \"0\"}\n", {"x": 1, "y": "9", "w": "0"}),
        ("- {z: 3, x: 1}\n", '- {x: 1, y: "9", w: "0"}\n', {"x": 1, "y": "9", "w": "0"}),
    ],
)
def test_update_mapping_drops_replaces_and_adds_in_key_order(
    text: str, expected: str, data: dict[str, object]
) -> None:
    node = value(text, 0)
    assert isinstance(node, MappingNode)
    edit = TextEdit(PATH, text)
    assert edit.update_mapping(node, pairs(node), {"x": "1", "y": "9", "w": "0"}, quote=())
    assert edit.result() == expected
    assert load(edit.result()) == [data]
    assert edit.structural


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        ("l:\n# one\n- a: 1\n  b: 2   # b\n- a: 3\nk: 4\n", 0, "l:\n# one\n- a: 3\nk: 4\n"),
        ("l:\r\n  - a: 1\r\n  - a: 3\r\n", 1, "l:\r\n  - a: 1\r\n"),
        ("l: [{a: 1}, {a: 2}, {a: 3}]\n", 1, "l: [{a: 1}, {a: 3}]\n"),
        ("l: [{a: 1}, {a: 2}]\n", 0, "l: [{a: 2}]\n"),
    ],
)
def test_drop_item(text: str, index: int, expected: str) -> None:
    sequence = value(text, "l")
    assert isinstance(sequence, SequenceNode)
    edit = TextEdit(PATH, text)
    edit.drop_item(sequence, index)
    assert edit.result() == expected
    assert edit.structural


@pytest.mark.parametrize(
    ("text", "before", "expected"),
    [
        (
            "l:\n  -   a: x\n  # about y\n  -   a: y\n",
            1,
            'l:\n  -   a: x\n  -   a: v\n      b: "1"\n  # about y\n  -   a: y\n',
        ),
        ("l:\n- a: x\n- a: y", None, 'l:\n- a: x\n- a: y\n- a: v\n  b: "1"'),
        ("l:\r\n- {a: x}\r\n", None, 'l:\r\n- {a: x}\r\n- {a: v, b: "1"}\r\n'),
        ("l: [{a: x}]  # c\n", 0, 'l: [{a: v, b: "1"}, {a: x}]  # c\n'),
        ("l: [{a: x}]\n", None, 'l: [{a: x}, {a: v, b: "1"}]\n'),
        ("l: []\n", None, 'l: [{a: v, b: "1"}, {a: v, b: "1"}]\n'),
    ],
)
def test_insert_mappings_copies_the_style_of_the_list(
    text: str, before: int | None, expected: str
) -> None:
    sequence = value(text, "l")
    assert isinstance(sequence, SequenceNode)
    kept = list(sequence.value)
    edit = TextEdit(PATH, text)
    count = 2 if not kept else 1
    anchor = None if before is None else kept[before]
    edit.insert_mappings(sequence, kept, anchor, [{"a": "v", "b": "1"}] * count)
    assert edit.result() == expected
    assert edit.structural


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k: 1\nl:\nm: 2\n", "k: 1\nl:\n- a: v\nm: 2\n"),
        ("k: 1\nl: ~   # none yet\nm: 2\n", "k: 1\nl:   # none yet\n- a: v\nm: 2\n"),
        ("k:\n  - x\n", "k:\n  - x\nl:\n  - a: v\n"),  # the file's list indentation
        ("# only a comment", "# only a comment\nl:\n- a: v"),  # no line end added at the end
        ("k: 1", "k: 1\nl:\n- a: v"),
    ],
)
def test_new_list_fills_an_empty_key_or_adds_one(text: str, expected: str) -> None:
    root = compose(PATH, text)
    assert root is None or isinstance(root, MappingNode)
    found = [(k, v) for k, v in root.value if k.value == "l"] if root is not None else []
    edit = TextEdit(PATH, text)
    edit.new_list(root, "l", found[0] if found else None, [{"a": "v"}])
    assert edit.result() == expected


def test_new_list_refuses_a_flow_root() -> None:
    root = compose(PATH, "{k: 1}\n")
    assert isinstance(root, MappingNode)
    with pytest.raises(OverlayError, match=r"file.yaml is written as a flow mapping .* write l:"):
        TextEdit(PATH, "{k: 1}\n").new_list(root, "l", None, [{"a": "v"}])


def test_a_comment_between_dash_and_item_is_refused_by_name() -> None:
    text = "l:\n-   # hm\n  a: x\n"
    sequence = value(text, "l")
    assert isinstance(sequence, SequenceNode)
    with pytest.raises(OverlayError, match=r"file.yaml line 3: cannot find the '-' of this list"):
        TextEdit(PATH, text).drop_item(sequence, 0)


def test_overlapping_splices_are_an_internal_error() -> None:
    text = "l: [{a: 1}, {a: 2}]\n"
    sequence = value(text, "l")
    assert isinstance(sequence, SequenceNode)
    edit = TextEdit(PATH, text)
    edit.drop_item(sequence, 1)
    edit.drop_item(sequence, 1)
    with pytest.raises(OverlayError, match=r"internal error: overlapping edits of file.yaml"):
        edit.result()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1\n", r"file.yaml is not valid YAML at line 2, column 1: .*; fix the file first"),
        ("a: 1\n---\nb: 2\n", "file.yaml is not valid YAML"),
    ],
)
def test_compose_names_the_place_of_bad_yaml(text: str, message: str) -> None:
    with pytest.raises(OverlayError, match=message):
        compose(PATH, text)
