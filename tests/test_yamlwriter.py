"""yamlwriter: YAML written from data reads back as the same data, in YAML 1.1 and 1.2."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from homelab_release.yamlwriter import block, key, scalar


def read(lines: list[str], version: str) -> Any:
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 1) if version == "1.1" else (1, 2)
    return yaml.load("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("stages", "stages"),
        (".homelab-release", ".homelab-release"),
        ("build:vote", '"build:vote"'),
        ("yes", '"yes"'),
        ("Off", '"Off"'),
        ("null", '"null"'),
        ("api-v2", "api-v2"),
        ("-dash", '"-dash"'),
    ],
)
def test_keys_are_plain_only_when_no_reader_takes_them_for_something_else(
    name: str, written: str
) -> None:
    assert key(name) == written


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (True, "true"),
        (1, "1"),
        ("1", '"1"'),
        ("a\u2028b", '"a\\u2028b"'),
        ("\x85", '"\\u0085"'),
        ("é", '"é"'),
    ],
)
def test_scalars(value: object, written: str) -> None:
    assert scalar(value) == written


def test_what_it_cannot_write_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot write float as a YAML scalar"):
        block("k", 1.5)
    with pytest.raises(TypeError, match="a sequence in a sequence"):
        block("k", [["a"]])


DATA = {
    "stages": ["build", "publish"],
    "job": {"script": ["echo $$X"], "services": [{"name": "d", "alias": "docker"}, "plain"]},
    "empty": {"list": [], "map": {}},
    "yes": "on",
}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_document_reads_back_as_written(version: str) -> None:
    lines = [line for name, value in DATA.items() for line in block(name, value)]
    assert read(lines, version) == DATA


@given(st.text(), st.text())
def test_any_string_key_and_value_read_back(name: str, value: str) -> None:
    for version in ("1.1", "1.2"):
        assert read(block(name, value), version) == {name: value}
