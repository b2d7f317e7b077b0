"""Write YAML from data, the same bytes for the same data.

Block style, keys in the mapping's order, every string double-quoted with JSON's escapes (which
YAML 1.1 and 1.2 readers read back alike), keys plain when no reader could take them for
something else. :mod:`homelab_release.childpipeline` writes the generated pipeline with it; this
module knows YAML, not GitLab. (:mod:`homelab_release.yamltext` edits existing YAML text.)
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from homelab_release.yamltext import YAML11_WORDS

__all__ = ["block", "key", "scalar"]

_PLAIN_KEY = re.compile(r"[A-Za-z_.][A-Za-z0-9_.-]*")
# What YAML 1.1 may not hold unescaped: C0/C1 controls except tab and newline (json escapes
# those), DEL, NEL, surrogates, the line and paragraph separators, the byte order mark, U+FFFE/F.
_NON_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def block(name: str, value: Any) -> list[str]:
    """The lines of ``name: value`` at the left margin: mappings (dicts), sequences (lists) of
    scalars or mappings, and scalars (strings, integers, booleans); a :class:`TypeError` for
    anything else, and for a non-empty sequence in a sequence."""
    out: list[str] = []
    _emit_value(out, f"{key(name)}:", value, 0)
    return out


@functools.lru_cache(maxsize=4096)
def key(name: str) -> str:
    """``name`` as a mapping key: plain when it is a word of letters, digits, ``_``, ``.`` and
    ``-`` that no YAML 1.1 reader takes for a boolean or null, else double-quoted."""
    if _PLAIN_KEY.fullmatch(name) and name.lower() not in YAML11_WORDS:
        return name
    return scalar(name)


@functools.lru_cache(maxsize=4096, typed=True)  # typed: True and 1 are not the same value
def scalar(value: object) -> str:
    """A string double-quoted (characters YAML 1.1 may not hold escaped as ``\\uXXXX``), an
    integer or a boolean as YAML writes it; a :class:`TypeError` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"cannot write {type(value).__name__} as a YAML scalar")
    quoted = json.dumps(value, ensure_ascii=False)
    if quoted.isascii() and "\x7f" not in quoted:
        return quoted
    return _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _emit_mapping(out: list[str], mapping: dict[str, Any], indent: int, first: str = "") -> None:
    """Append ``mapping``'s keys at ``indent``; ``first`` starts the first line instead of the
    indent (``"  - "`` for a mapping in a sequence)."""
    pad = " " * indent
    for name, value in mapping.items():
        _emit_value(out, f"{first or pad}{key(name)}:", value, indent)
        first = ""


def _emit_value(out: list[str], head: str, value: Any, indent: int) -> None:
    if isinstance(value, dict):
        if not value:
            out.append(f"{head} {{}}")
            return
        out.append(head)
        _emit_mapping(out, value, indent + 2)
    elif isinstance(value, list):
        if not value:
            out.append(f"{head} []")
            return
        out.append(head)
        _emit_sequence(out, value, indent + 2)
    else:
        out.append(f"{head} {scalar(value)}")


def _emit_sequence(out: list[str], items: list[Any], indent: int) -> None:
    dash = " " * indent + "- "
    for item in items:
        if isinstance(item, dict) and item:
            _emit_mapping(out, item, indent + 2, dash)
        elif isinstance(item, (dict, list)):
            if item:
                raise TypeError("a sequence in a sequence is not written")
            out.append(f"{dash}{{}}" if isinstance(item, dict) else f"{dash}[]")
        else:
            out.append(f"{dash}{scalar(item)}")
