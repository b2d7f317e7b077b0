"""Array inputs as GitLab writes them into text: what the template hands fan-out.

The template passes ``$[[ inputs.services ]]`` and ``$[[ inputs.runner_tags ]]`` inside an option
(``'--build-services=$[[ inputs.services ]]'``): an array input used inside a string. gitlab-ci-local
and GitLab's text interpolation write it as JSON; GitLab's node interpolation writes Ruby's
``inspect`` of it (``[{:name=>"docker:27-dind", :alias=>"docker"}]``, ``{name: "..."}`` since
Ruby 3.4). :func:`parse_gitlab_array` reads both.
"""

from __future__ import annotations

import json
import re
from typing import Any

from homelab_release.errors import ConfigError

__all__ = ["parse_gitlab_array"]


def parse_gitlab_array(text: str, option: str) -> list[Any]:
    """An array input that GitLab wrote into a string: JSON (gitlab-ci-local; GitLab's text
    interpolation), or Ruby's ``inspect`` (GitLab's node interpolation), whose hashes have
    symbol keys: ``[{:name=>"docker:27-dind", :alias=>"docker"}]`` (``{name: "..."}`` since
    Ruby 3.4). ``""`` is an empty array. A :class:`ConfigError` names ``option`` otherwise."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = _from_ruby(text, option)
    if not isinstance(value, list):
        raise ConfigError(f'{option}: expected an array such as [] or ["a"], got {text!r}')
    return value


_RUBY_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<symbol_key>:?[A-Za-z_][A-Za-z0-9_]*(?::(?!:)|\s*=>))'
    r"|(?P<symbol>:[A-Za-z_][A-Za-z0-9_]*)|(?P<arrow>=>)|(?P<punct>[\[\]{},])"
    r"|(?P<word>true|false|nil|-?\d+(?:\.\d+)?))"
)


def _from_ruby(text: str, option: str) -> Any:
    """Rewrite Ruby's ``inspect`` of arrays, hashes, strings and symbols as JSON and read it."""
    out: list[str] = []
    position = 0
    while position < len(text.rstrip()):
        match = _RUBY_TOKEN.match(text, position)
        if match is None:
            raise ConfigError(
                f"{option}: {text!r} is neither JSON nor Ruby's way of writing an array "
                f"(at character {position + 1}); pass a JSON array"
            )
        position = match.end()
        kind = match.lastgroup
        token = match.group(kind or "")
        if kind == "symbol_key":
            name = token.lstrip(":").rstrip(":= >").strip()
            out.append(json.dumps(name) + ":")
        elif kind == "symbol":
            out.append(json.dumps(token[1:]))
        elif kind == "arrow":
            out.append(":")
        elif kind == "word":
            out.append("null" if token == "nil" else token)  # noqa: S105 (not a password)
        else:
            out.append(token)
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{option}: cannot read {text!r} as an array ({err.msg})") from None
