"""Image references, parsed and formatted per the distribution reference grammar.

``ImageRef.parse("127.0.0.1:5000/homelab/vote:3f1c@sha256:...")`` splits a reference into registry
domain, path, tag and digest, with errors that say which part is wrong and what it allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homelab_release.errors import ImageRefError

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
NAME_MAX = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: ``[domain/]path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The name without tag or digest, as written (``domain/path`` or ``path``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str | None) -> ImageRef:
        """A copy with ``tag`` (validated) and the digest kept."""
        if tag is not None:
            check_tag(tag)
        return ImageRef(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str | None) -> ImageRef:
        """A copy with ``digest`` (validated) and the tag kept."""
        if digest is not None:
            check_digest(digest)
        return ImageRef(self.domain, self.path, self.tag, digest)

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``text``; :class:`ImageRefError` says which part breaks the grammar."""
        if not text:
            raise ImageRefError("image reference is empty")
        rest, digest = _split_digest(text)
        name, tag = _split_tag(rest)
        domain, path = split_name(name)
        return cls(domain, path, tag, digest)


def split_name(name: str) -> tuple[str, str]:
    """Split and check a repository name into (domain, path); domain is '' when absent."""
    if not name:
        raise ImageRefError("image name is empty")
    if len(name) > NAME_MAX:
        raise ImageRefError(f"image name {name[:40]!r}... is longer than {NAME_MAX} characters")
    first, sep, remainder = name.partition("/")
    is_domain = sep and (
        "." in first or ":" in first or first == "localhost" or first != first.lower()
    )
    domain, path = (first, remainder) if is_domain else ("", name)
    if domain and not _DOMAIN.match(domain):
        raise ImageRefError(
            f"registry {domain!r} in {name!r} is not a host name with an optional :port"
        )
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise ImageRefError(
                f"image name {name!r}: component {component!r} is not valid (path components "
                "use lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    return domain, path


def check_tag(tag: str) -> str:
    """Return ``tag`` if valid, else raise an :class:`ImageRefError` naming the bad character."""
    if _TAG.match(tag):
        return tag
    if not tag:
        raise ImageRefError("tag is empty (tags allow letters, digits, '_', '.', '-')")
    if len(tag) > 128:
        raise ImageRefError(f"tag {tag[:20]!r}... is longer than 128 characters")
    if tag[0] in ".-":
        raise ImageRefError(
            f"tag {tag!r} starts with {tag[0]!r} (tags start with a letter, digit or '_')"
        )
    bad = next(c for c in tag if not (c.isascii() and (c.isalnum() or c in "_.-")))
    raise ImageRefError(f"tag {tag!r} has a {bad!r} (tags allow letters, digits, '_', '.', '-')")


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``algorithm:hex`` (32+ hex digits), else raise."""
    if _DIGEST.match(digest):
        return digest
    raise ImageRefError(
        f"digest {digest!r} is not of the form algorithm:hex (for example sha256:<64 hex digits>)"
    )


def _split_digest(text: str) -> tuple[str, str | None]:
    rest, sep, digest = text.partition("@")
    if not sep:
        return text, None
    return rest, check_digest(digest)


def _split_tag(text: str) -> tuple[str, str | None]:
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon <= slash:  # no colon, or only a registry port before the first '/'
        return text, None
    return text[:colon], check_tag(text[colon + 1 :])
