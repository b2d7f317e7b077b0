"""Keeping tokens and passwords out of logs, exception messages, reprs and files.

:class:`HiddenText` wraps a secret so that ``str``/``repr`` show ``****``; :func:`redact_url`
removes credentials from a URL; :func:`redact` scrubs known secrets and URL credentials from any text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


@dataclass(frozen=True)
class HiddenText:
    """A secret string whose ``str`` and ``repr`` never show it; ``.secret`` gives the value."""

    secret: str = field(repr=False)

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"HiddenText({MASK!r})"

    def __bool__(self) -> bool:
        return bool(self.secret)


def redact_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` replaced by ``****@``.

    >>> redact_url("https://oauth2:glpat-abc@gitlab.example.com/g/p.git")
    'https://****@gitlab.example.com/g/p.git'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def redact(text: str, secrets: Iterable[str | HiddenText] = ()) -> str:
    """Remove URL credentials and every given secret (3+ characters) from ``text``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    for item in secrets:
        value = item.secret if isinstance(item, HiddenText) else item
        if len(value) >= 3:
            text = text.replace(value, MASK)
    return text
