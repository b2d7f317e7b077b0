"""Keeping tokens and passwords out of logs, exception messages, reprs and files.

:class:`HiddenText` wraps a secret so that ``str``/``repr`` show ``****``; :func:`redact_url`
removes credentials from a URL; :func:`redact` scrubs known secrets and URL credentials from any
text. :class:`RegistryCredentials` and :class:`GitCredentials` are the two kinds of credentials the
tool carries, always with the secret half hidden.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MASK",
    "GitCredentials",
    "HiddenText",
    "RegistryCredentials",
    "redact",
    "redact_url",
]

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


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry user and password; ``repr``/``str`` never show the password."""

    username: str
    password: HiddenText

    def docker_auth_config(self) -> dict[str, str]:
        """The ``auth_config`` mapping the docker SDK sends to the engine (holds the password)."""
        return {"username": self.username, "password": self.password.secret}

    def basic_token(self) -> str:
        """``base64(user:password)``, as Basic auth and auth files hold it (never log it)."""
        raw = f"{self.username}:{self.password.secret}".encode()
        return base64.b64encode(raw).decode("ascii")

    def basic_header(self) -> str:
        """An ``Authorization: Basic`` value (holds the password: never log it)."""
        return "Basic " + self.basic_token()


@dataclass(frozen=True)
class GitCredentials:
    """A user name and a token for HTTPS pushes (GitLab: ``oauth2`` + a project access token)."""

    username: str
    password: HiddenText
