"""Release versions and the policies that accept them, read by ``packaging`` (pure).

A release tag of the monorepo (``v1.4.0``) names a version (``1.4.0``), read by
:class:`packaging.version.Version`: versions follow PEP 440 as ``packaging`` reads them, so
``1.4.0rc1`` is a pre-release, SemVer's ``1.4.0-rc.1`` normalises to it, and ``1.4.0-alpha.beta``
is not a version. An environment's :class:`VersionPolicy` (``versions`` = a specifier set such as
``">=1.0,<2"``, and whether pre-releases are allowed) decides which versions it takes;
:func:`check_release` applies it, and refuses a downgrade below what the environment runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from homelab_release.errors import ConfigError, ReleaseError

__all__ = [
    "PEP440_NOTE",
    "ReleaseVersion",
    "VersionError",
    "VersionPolicy",
    "check_release",
    "current_version",
    "parse_policy",
    "parse_release_tag",
    "version_of_tag",
]

PEP440_NOTE = (
    "versions follow PEP 440 as Python's packaging reads them, e.g. 1.4.0 or 1.4.0rc1 "
    "(SemVer's 1.4.0-rc.1 normalises to 1.4.0rc1; 1.4.0-alpha.beta is not a version)"
)
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class VersionError(ReleaseError):
    """A release tag names no version, or the target's policy refuses it; nothing was written."""


@dataclass(frozen=True)
class ReleaseVersion:
    """A release tag and the version it names: ``v1.4.0`` -> ``1.4.0`` (:attr:`tag`)."""

    source: str  # the monorepo's tag as given, e.g. v1.4.0
    version: Version

    @property
    def tag(self) -> str:
        """The image tag and overlay ``newTag``: the normalised version (``1.4.0rc1``)."""
        return str(self.version)


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions an environment takes: a ``packaging`` specifier set and pre-releases."""

    specifier: SpecifierSet
    prereleases: bool = False

    def __str__(self) -> str:
        return str(self.specifier) or "any version"


def parse_release_tag(tag: str) -> ReleaseVersion:
    """``v1.4.0`` (or ``1.4.0``) -> its version; :class:`VersionError` when it names none."""
    text = tag.strip()
    if not text:
        raise VersionError(
            "no release tag: run on a tag pipeline (CI_COMMIT_TAG) or pass --tag v1.4.0"
        )
    try:
        version = Version(text)
    except InvalidVersion:
        raise VersionError(
            f"tag {tag!r} names no version: {PEP440_NOTE}; tag the release like v1.4.0"
        ) from None
    if version.local is not None:
        raise VersionError(
            f"tag {tag!r} has a local version label (+{version.local}), which is not a release; "
            "tag the release like v1.4.0"
        )
    return ReleaseVersion(tag, version)


def parse_policy(text: str, *, prereleases: bool, where: str) -> VersionPolicy:
    """Read a ``versions`` specifier set; :class:`ConfigError` naming ``where`` when invalid."""
    try:
        specifier = SpecifierSet(text)
    except InvalidSpecifier:
        raise ConfigError(
            f"{where} = {text!r} is not a version specifier set; write one like "
            f'">=1.0,<2" (comma-separated clauses such as >=, <, ==, ~=, !=)'
        ) from None
    return VersionPolicy(specifier, prereleases)


def version_of_tag(tag: str | None) -> Version | None:
    """The version an image tag names, None for a commit SHA, ``latest`` and the like."""
    if not tag or _COMMIT_SHA.fullmatch(tag):
        return None
    try:
        return Version(tag)
    except InvalidVersion:
        return None


def current_version(tags: Iterable[str | None]) -> Version | None:
    """The highest version among image tags (what an environment runs), None when none is one."""
    versions = [v for v in map(version_of_tag, tags) if v is not None]
    return max(versions, default=None)


def check_release(
    release: ReleaseVersion,
    policy: VersionPolicy,
    *,
    environment: str,
    current: Version | None = None,
    allow_downgrade: bool = False,
    allow_prerelease: bool = False,
) -> None:
    """Refuse ``release`` for ``environment`` with one :class:`VersionError` saying why.

    A pre-release needs ``prereleases = true`` or ``allow_prerelease``; the version must be in
    the policy's specifier set; it must not be lower than ``current`` (what the environment runs)
    unless ``allow_downgrade``.
    """
    version = release.version
    key = f"environments.{environment}"
    if version.is_prerelease and not (policy.prereleases or allow_prerelease):
        raise VersionError(
            f"{release.source} is a pre-release ({version}) and {environment} takes none; set "
            f"{key}.prereleases = true or pass --allow-prerelease"
        )
    if not policy.specifier.contains(version, prereleases=True):
        raise VersionError(
            f"version {version} (tag {release.source}) is outside {environment}'s policy "
            f"{key}.versions = {str(policy.specifier)!r}; tag a version it allows or change the "
            "policy"
        )
    if current is not None and version < current and not allow_downgrade:
        raise VersionError(
            f"version {version} is lower than {current}, which {environment} runs now; release "
            f"a higher version, or pass --allow-downgrade to go back on purpose (or use "
            "homelab-release rollback)"
        )
