"""Image references and ``kustomize edit set image`` arguments, parsed and formatted.

``ImageRef.parse("127.0.0.1:5000/homelab/vote:3f1c@sha256:...")`` splits a reference into registry
domain, path, tag and digest per the distribution reference grammar, with errors that say which
part is wrong and what it allows. ``ImageSpec.parse("vote=registry/vote:v2")`` reads one argument of
``kustomize edit set image`` (v5), where ``*`` in a field means "keep the current value".
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from homelab_release.errors import ImageRefError

__all__ = [
    "KEEP",
    "NAME_MAX",
    "SPEC_FORMS",
    "ImageRef",
    "ImageSpec",
    "Keep",
    "check_digest",
    "check_name",
    "check_spec_name",
    "check_tag",
    "split_name",
    "split_reference",
]

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
        name, tag, digest = split_reference(text)
        domain, path = split_name(name)
        return cls(
            domain,
            path,
            None if tag is None else check_tag(tag),
            None if digest is None else check_digest(digest),
        )


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


def split_reference(text: str) -> tuple[str, str | None, str | None]:
    """Split ``text`` into (name, tag, digest) without checking the parts.

    The digest follows the first ``@``; the tag follows the first ``:`` after the first ``/``
    (as kustomize splits), so a registry ``host:port`` is never read as a tag. A ``:`` before
    the first ``/`` that is not followed by a port starts a tag too (``vote:v1/x`` has the tag
    ``v1/x``), so that the error names the tag rather than a strange registry.
    """
    rest, at, digest = text.partition("@")
    name, tag = _split_tag(rest)
    return name, tag, digest if at else None


def _split_tag(text: str) -> tuple[str, str | None]:
    first, slash, remainder = text.partition("/")
    if not slash:
        name, has_tag, tag = text.partition(":")
        return (name, tag) if has_tag else (text, None)
    colon = remainder.find(":")
    if colon >= 0:
        cut = len(first) + 1 + colon
        return text[:cut], text[cut + 1 :]
    port = first.rpartition(":")[2]
    if ":" in first and not (port.isdigit() or first.endswith("]")):
        cut = first.index(":")
        return text[:cut], text[cut + 1 :]
    return text, None


class Keep(enum.Enum):
    """The ``*`` of a ``kustomize edit set image`` field: keep the value the entry has."""

    KEEP = "*"

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep.KEEP
"""Marker for a spec field written as ``*``."""

SpecField = str | Keep | None
"""A spec field: a new value, :data:`KEEP`, or ``None`` (the entry will not have the field)."""

SPEC_FORMS = (
    "NAME=NEWNAME:TAG",
    "NAME=NEWNAME@DIGEST",
    "NAME=NEWNAME:TAG@DIGEST",
    "NAME=NEWNAME",
    "NAME:TAG",
    "NAME:TAG@DIGEST",
    "NAME@DIGEST",
)


@dataclass(frozen=True)
class ImageSpec:
    """One argument of ``kustomize edit set image``: what the entry for ``name`` becomes.

    A field that is ``None`` is absent from the resulting entry (kustomize replaces a matched
    entry as a whole); a field that is :data:`KEEP` keeps the entry's current value.
    """

    name: str
    new_name: SpecField = None
    new_tag: SpecField = None
    digest: SpecField = None

    def __str__(self) -> str:
        text = self.name if self.new_name is None else f"{self.name}={_show(self.new_name)}"
        if self.new_tag is not None:
            text += f":{_show(self.new_tag)}"
        if self.digest is not None:
            text += f"@{_show(self.digest)}"
        return text

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        """Parse one ``kustomize edit set image`` argument (any v5 form, ``*`` to keep)."""
        key, equals, value = text.partition("=")
        if not text or (equals and (not key or not value or "=" in value)):
            raise ImageRefError(_forms_message(text))
        name, tag, digest = split_reference(value if equals else text)
        if not equals:
            if tag is None and digest is None:
                raise ImageRefError(_forms_message(text))
            return cls.of(name, new_tag=tag, digest=digest)
        return cls.of(key, new_name=name, new_tag=tag, digest=digest)

    @classmethod
    def of(
        cls,
        name: str,
        *,
        new_name: SpecField = None,
        new_tag: SpecField = None,
        digest: SpecField = None,
    ) -> ImageSpec:
        """A checked spec from its fields; ``"*"`` or :data:`KEEP` keeps the current value."""
        if new_name is None and new_tag is None and digest is None:
            raise ImageRefError(
                f"image spec for {name!r} sets nothing: give a new name, a tag or a digest"
            )
        return cls(
            check_spec_name(name),
            _checked(new_name, check_name),
            _checked(new_tag, check_tag),
            _checked(digest, check_digest),
        )


def check_name(name: str) -> str:
    """Return ``name`` if it is a repository name without tag or digest, else raise."""
    if "@" in name or _split_tag(name)[1] is not None:
        raise ImageRefError(
            f"image name {name!r} has a tag or digest; give the repository alone (for example "
            f"{split_reference(name)[0]!r})"
        )
    split_name(name)
    return name


def check_spec_name(name: str) -> str:
    """Return ``name`` (the image name an entry matches) if valid; ``*`` is not allowed there."""
    if name == KEEP.value:
        raise ImageRefError("image name '*' is not allowed: '*' keeps a value, it names nothing")
    return check_name(name)


def _checked(value: SpecField, check: Callable[[str], str]) -> SpecField:
    if value is None or value is KEEP or value == KEEP.value:
        return None if value is None else KEEP
    return check(value)


def _show(value: str | Keep) -> str:
    return value.value if isinstance(value, Keep) else value


def _forms_message(text: str) -> str:
    forms = "\n".join(f"  {form}" for form in SPEC_FORMS)
    return (
        f"image spec {text!r} is not in any accepted form; use one of:\n{forms}\n"
        "(NEWNAME, TAG and DIGEST may each be '*' to keep the entry's current value)"
    )
