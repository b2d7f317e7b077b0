"""Image references and ``kustomize edit set image`` arguments: tables and round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homelab_release.errors import ImageRefError
from homelab_release.images import KEEP, ImageRef, ImageSpec, split_reference

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("vote", "", "vote", None, None),
        ("vote:v1", "", "vote", "v1", None),
        ("homelab/vote:3f1c2ab", "", "homelab/vote", "3f1c2ab", None),
        ("localhost:5000/vote", "localhost:5000", "vote", None, None),
        ("localhost:5000/vote:v1", "localhost:5000", "vote", "v1", None),
        ("127.0.0.1:5000/homelab/vote:v1", "127.0.0.1:5000", "homelab/vote", "v1", None),
        (f"registry.example.com/vote@{SHA_A}", "registry.example.com", "vote", None, SHA_A),
        (f"localhost/vote:v1@{SHA_A}", "localhost", "vote", "v1", SHA_A),
        ("[::1]:5000/vote:v_1.2-3", "[::1]:5000", "vote", "v_1.2-3", None),
        ("Registry/vote", "Registry", "vote", None, None),
    ],
)
def test_parse_reference(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageRef.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "image reference is empty"),
        ("vote:v1/x", "tag 'v1/x' has a '/' (tags allow letters, digits, '_', '.', '-')"),
        ("homelab/vote:v1/x", "tag 'v1/x' has a '/'"),
        ("vote:-v1", "tag '-v1' starts with '-'"),
        ("vote:" + "x" * 129, "longer than 128 characters"),
        ("vote:", "tag is empty"),
        ("vote@sha256:abc", "digest 'sha256:abc' is not of the form algorithm:hex"),
        ("Vote", "component 'Vote' is not valid"),
        ("homelab//vote", "component '' is not valid"),
        ("bad_host:1/vote", "registry 'bad_host:1' in 'bad_host:1/vote' is not a host name"),
    ],
)
def test_reference_errors(text: str, message: str) -> None:
    with pytest.raises(ImageRefError, match=re.escape(message)):
        ImageRef.parse(text)


def test_with_tag_and_digest_check_their_values() -> None:
    ref = ImageRef.parse("localhost:5000/vote:v1")
    assert str(ref.with_tag("v2").with_digest(SHA_A)) == f"localhost:5000/vote:v2@{SHA_A}"
    assert ref.repository == "localhost:5000/vote"
    with pytest.raises(ImageRefError, match="has a '/'"):
        ref.with_tag("a/b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vote=registry/vote:v2", ImageSpec("vote", "registry/vote", "v2")),
        (f"vote=registry/vote@{SHA_A}", ImageSpec("vote", "registry/vote", None, SHA_A)),
        (f"vote=registry/vote:v2@{SHA_A}", ImageSpec("vote", "registry/vote", "v2", SHA_A)),
        ("vote=registry/vote", ImageSpec("vote", "registry/vote")),
        ("vote:v2", ImageSpec("vote", None, "v2")),
        (f"vote:v2@{SHA_A}", ImageSpec("vote", None, "v2", SHA_A)),
        (f"vote@{SHA_A}", ImageSpec("vote", None, None, SHA_A)),
        ("vote=*:v2", ImageSpec("vote", KEEP, "v2")),
        ("vote=new:*", ImageSpec("vote", "new", KEEP)),
        (f"vote=*@{SHA_A}", ImageSpec("vote", KEEP, None, SHA_A)),
        ("vote=*", ImageSpec("vote", KEEP)),
        ("vote:*@*", ImageSpec("vote", None, KEEP, KEEP)),
        ("vote=localhost:5000/homelab/vote", ImageSpec("vote", "localhost:5000/homelab/vote")),
        ("vote=localhost:5000/vote:5000", ImageSpec("vote", "localhost:5000/vote", "5000")),
        ("localhost:5000/vote:v1", ImageSpec("localhost:5000/vote", None, "v1")),
        ("localhost:5000", ImageSpec("localhost", None, "5000")),  # no '/': as kustomize reads it
    ],
)
def test_parse_spec(text: str, expected: ImageSpec) -> None:
    assert ImageSpec.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vote", "is not in any accepted form"),
        ("", "is not in any accepted form"),
        ("=vote:v1", "is not in any accepted form"),
        ("vote=", "is not in any accepted form"),
        ("a=b=c", "is not in any accepted form"),
        ("vote:v1/x", "tag 'v1/x' has a '/'"),
        ("vote=new:v1/x", "tag 'v1/x' has a '/'"),
        ("vote:v1=new:v2", "image name 'vote:v1' has a tag or digest"),
        ("*:v1", "image name '\\*' is not allowed"),
        ("vote@sha256:1", "digest 'sha256:1' is not of the form"),
        ("vote=Registry/Vote:v1", "component 'Vote' is not valid"),
        ("vote=new:", "tag is empty"),
    ],
)
def test_spec_errors(text: str, message: str) -> None:
    with pytest.raises(ImageRefError, match=message):
        ImageSpec.parse(text)


def test_spec_error_lists_the_accepted_forms() -> None:
    with pytest.raises(ImageRefError) as caught:
        ImageSpec.parse("vote")
    for form in ("NAME=NEWNAME:TAG", "NAME=NEWNAME@DIGEST", "NAME:TAG@DIGEST", "NAME@DIGEST"):
        assert form in str(caught.value)
    assert "'*'" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"new_tag": "v2"}, ImageSpec("vote", None, "v2")),
        ({"new_name": "*", "digest": SHA_B}, ImageSpec("vote", KEEP, None, SHA_B)),
        ({"new_name": "r/vote", "new_tag": KEEP}, ImageSpec("vote", "r/vote", KEEP)),
    ],
)
def test_spec_of_keywords(kwargs: dict[str, str], expected: ImageSpec) -> None:
    assert ImageSpec.of("vote", **kwargs) == expected


def test_spec_of_nothing_is_an_error() -> None:
    with pytest.raises(ImageRefError, match="sets nothing"):
        ImageSpec.of("vote")


def test_split_reference_never_reads_a_port_as_a_tag() -> None:
    assert split_reference("localhost:5000/a/b") == ("localhost:5000/a/b", None, None)
    assert split_reference(f"h:1/a:t@{SHA_A}") == ("h:1/a", "t", SHA_A)


# --- round trips ------------------------------------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=2),
)
_host = st.one_of(st.just("localhost"), st.lists(_alnum, min_size=2, max_size=3).map(".".join))
_port = st.integers(1, 65535).map(lambda port: f":{port}")
_domain = st.one_of(st.just(""), _host, st.tuples(_host, _port).map("".join))
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
# without a registry, a first component holding a '.' would be read as a host
_name = _path.filter(lambda path: "." not in path.split("/")[0] or "/" not in path)
_tag = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("AZaz09_"),
    st.text("ABCxyz0189_.-", max_size=20),
)
_digest = st.binary(min_size=32, max_size=32).map(lambda raw: "sha256:" + raw.hex())


@st.composite
def _references(draw: st.DrawFn) -> str:
    domain = draw(_domain)
    path = draw(_path if domain else _name)
    text = f"{domain}/{path}" if domain else path
    if tag := draw(st.none() | _tag):
        text += f":{tag}"
    if digest := draw(st.none() | _digest):
        text += f"@{digest}"
    return text


@given(_references())
def test_format_of_parse_is_identity(text: str) -> None:
    assert str(ImageRef.parse(text)) == text


@st.composite
def _specs(draw: st.DrawFn) -> str:
    name = draw(_name)
    keep = st.just("*")
    new_name = draw(st.none() | keep | _name)
    tag = draw(st.none() | keep | _tag)
    digest = draw(st.none() | keep | _digest)
    if new_name is None and tag is None and digest is None:
        tag = "v1"
    text = name if new_name is None else f"{name}={new_name}"
    text += f":{tag}" if tag is not None else ""
    return text + (f"@{digest}" if digest is not None else "")


@given(_specs())
def test_spec_format_of_parse_is_identity(text: str) -> None:
    assert str(ImageSpec.parse(text)) == text
