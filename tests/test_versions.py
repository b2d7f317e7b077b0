"""Release tags, version policies and the release check (pure, read by packaging)."""

from __future__ import annotations

import pytest
from packaging.version import Version

from homelab_release.errors import ConfigError
from homelab_release.versions import (
    VersionError,
    check_release,
    current_version,
    parse_policy,
    parse_release_tag,
    version_of_tag,
)


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("v1.4.0", "1.4.0"),
        ("1.4.0", "1.4.0"),
        ("V2.0", "2.0"),
        ("v1.4.0rc1", "1.4.0rc1"),
        ("v1.4.0-rc.1", "1.4.0rc1"),  # SemVer's pre-release normalises
        ("v1.4.0-alpha", "1.4.0a0"),
        ("v1.4.0.post2", "1.4.0.post2"),
        ("v2024.11.3", "2024.11.3"),
    ],
)
def test_release_tags_name_pep440_versions(tag: str, version: str) -> None:
    release = parse_release_tag(tag)
    assert release.tag == version
    assert release.source == tag


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("", "no release tag"),
        ("release-1", "names no version"),
        ("v1.4.0-alpha.beta", "1.4.0-alpha.beta is not a version"),
        ("latest", "PEP 440"),
        ("v1.4.0+build.5", "local version label"),
    ],
)
def test_tags_that_name_no_release_are_refused(tag: str, message: str) -> None:
    with pytest.raises(VersionError, match=message):
        parse_release_tag(tag)


def policy(text: str, prereleases: bool = False):  # type: ignore[no-untyped-def]
    return parse_policy(text, prereleases=prereleases, where="environments.prod.versions")


@pytest.mark.parametrize(
    ("spec", "tag", "current", "options", "error"),
    [
        (">=1.0,<2", "v1.4.0", None, {}, None),
        (">=1.0,<2", "v1.4.0", "1.3.9", {}, None),
        (">=1.0,<2", "v1.4.0", "1.4.0", {}, None),  # the same version again: a re-run
        (">=1.0,<2", "v2.0.0", None, {}, "outside prod's policy"),
        (">=1.0,<2", "v0.9", None, {}, "outside prod's policy"),
        (">=1.0,<2", "v1.3.0", "1.4.0", {}, "lower than 1.4.0"),
        (">=1.0,<2", "v1.3.0", "1.4.0", {"allow_downgrade": True}, None),
        (">=1.0,<2", "v1.5.0rc1", None, {}, "pre-release"),
        (">=1.0,<2", "v1.5.0rc1", None, {"allow_prerelease": True}, None),
        ("", "v7.0", None, {}, None),  # an empty set takes every version
        ("~=1.4", "v1.9.2", None, {}, None),
        ("~=1.4", "v2.0", None, {}, "outside"),
        ("!=1.4.1", "v1.4.1", None, {}, "outside"),
    ],
)
def test_check_release(
    spec: str, tag: str, current: str | None, options: dict[str, bool], error: str | None
) -> None:
    def check() -> None:
        check_release(
            parse_release_tag(tag),
            policy(spec),
            environment="prod",
            current=Version(current) if current else None,
            **options,
        )

    if error is None:
        check()
    else:
        with pytest.raises(VersionError, match=error):
            check()


def test_a_policy_with_prereleases_takes_them() -> None:
    check_release(parse_release_tag("v1.5.0rc1"), policy(">=1.0", True), environment="prod")


def test_refusals_say_how_to_fix() -> None:
    with pytest.raises(VersionError) as refused:
        check_release(parse_release_tag("v3.0"), policy(">=1.0,<2"), environment="prod")
    assert "environments.prod.versions = '<2,>=1.0'" in str(refused.value)
    with pytest.raises(VersionError, match="--allow-downgrade"):
        check_release(
            parse_release_tag("v1.0"), policy(""), environment="prod", current=Version("1.1")
        )


@pytest.mark.parametrize("text", [">=1.0,<<2", "1.0", ">=1.0;<2", "latest"])
def test_bad_policies_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"environments\.prod\.versions = .* is not a version"):
        policy(text)


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.4.0", "1.4.0"),
        ("1.4.0rc1", "1.4.0rc1"),
        ("0123456789abcdef0123456789abcdef01234567", None),  # a commit SHA
        ("1234567890123456789012345678901234567890", None),  # an all-digit SHA too
        ("latest", None),
        (None, None),
        ("", None),
    ],
)
def test_version_of_tag(tag: str | None, version: str | None) -> None:
    found = version_of_tag(tag)
    assert (str(found) if found else None) == version


def test_current_version_is_the_highest() -> None:
    assert current_version(["1.2.0", "1.10.0", None, "latest", "1.9"]) == Version("1.10.0")
    assert current_version(["abc", None]) is None
