"""The Registry API v2 client against the real htpasswd registry, plus its pure helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import docker
import pytest

from homelab_release.build import build_image
from homelab_release.context import CiContext
from homelab_release.demo.sandbox import LocalRegistry, busybox_context
from homelab_release.engines.docker import DockerBuilder
from homelab_release.errors import ImageRefError, RegistryError
from homelab_release.images import ImageRef
from homelab_release.registry import (
    Manifest,
    TransientError,
    blob_url,
    config_labels,
    digest_matches,
    get_manifest,
    image_exists,
    image_labels,
    in_clear,
    is_loopback,
    manifest_digest,
    manifest_url,
    parse_challenge,
    platform_entry,
    put_manifest,
    retag,
    token_scopes,
    with_retries,
)
from homelab_release.secrets import HiddenText, RegistryCredentials

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REVISION = "org.opencontainers.image.revision"

# -- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.9.8.7", True),
        ("localhost:5000", True),
        ("localhost", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("registry.gitlab.com", False),
        ("10.0.0.1:5000", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("reference", "insecure", "url"),
    [
        (
            "127.0.0.1:5000/homelab/vote:abc",
            (),
            "http://127.0.0.1:5000/v2/homelab/vote/manifests/abc",
        ),
        (
            "registry.example.com/g/p/vote",
            (),
            "https://registry.example.com/v2/g/p/vote/manifests/latest",
        ),
        ("reg.lan:5000/vote:1", ("reg.lan:5000",), "http://reg.lan:5000/v2/vote/manifests/1"),
        ("busybox:1.36", (), "https://registry-1.docker.io/v2/library/busybox/manifests/1.36"),
        (
            "docker.io/bitnami/redis",
            (),
            "https://registry-1.docker.io/v2/bitnami/redis/manifests/latest",
        ),
        (
            "r.example.com/v:1@sha256:" + "a" * 64,
            (),
            "https://r.example.com/v2/v/manifests/sha256:" + "a" * 64,
        ),
    ],
)
def test_manifest_url(reference: str, insecure: tuple[str, ...], url: str) -> None:
    assert manifest_url(ImageRef.parse(reference), insecure) == url


@pytest.mark.parametrize(
    ("header", "kind", "params"),
    [
        ('Basic realm="homelab"', "basic", {"realm": "homelab"}),
        (
            'Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",'
            'scope="repository:g/p:pull"',
            "bearer",
            {
                "realm": "https://gitlab.example.com/jwt/auth",
                "service": "container_registry",
                "scope": "repository:g/p:pull",
            },
        ),
        ("", "", {}),
    ],
)
def test_parse_challenge(header: str, kind: str, params: dict[str, str]) -> None:
    assert parse_challenge(header) == (kind, params)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"CI_REGISTRY_USER": "u", "CI_REGISTRY_PASSWORD": "p"},
            RegistryCredentials("u", HiddenText("p")),
        ),
        ({"CI_REGISTRY_USER": "u"}, None),
        ({"CI_REGISTRY_PASSWORD": "p"}, None),
        ({}, None),
    ],
)
def test_credentials_from_env(env: dict[str, str], expected: RegistryCredentials | None) -> None:
    assert CiContext.from_env(env).registry_credentials == expected


def test_credentials_never_show_the_password() -> None:
    credentials = RegistryCredentials("gitlab-ci-token", HiddenText("glcbt-very-secret"))
    assert "very-secret" not in repr(credentials)
    assert "very-secret" not in str(credentials)
    assert credentials.docker_auth_config()["password"] == "glcbt-very-secret"


def test_with_retries_retries_transient_failures_then_gives_up() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("connection reset")
        return "ok"

    assert with_retries(flaky, what="flaky", attempts=3, backoff=0) == "ok"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(TransientError):
        with_retries(flaky, what="flaky", attempts=2, backoff=0)
    assert len(calls) == 2


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RegistryError("refused")

    with pytest.raises(RegistryError):
        with_retries(broken, what="broken", attempts=3, backoff=0)
    assert calls == [1]


@pytest.mark.parametrize(
    ("named", "actions", "scopes"),
    [
        (None, ("pull",), ["repository:g/vote:pull"]),
        (None, ("pull", "push"), ["repository:g/vote:pull,push"]),
        ("repository:g/vote:pull", ("pull",), ["repository:g/vote:pull"]),
        ("repository:g/vote:pull", ("pull", "push"), ["repository:g/vote:pull,push"]),
        ("repository:g/vote:push,pull", ("pull", "push"), ["repository:g/vote:push,pull"]),
        (
            "repository:g/vote:pull registry:catalog:*",
            ("pull", "push"),
            ["repository:g/vote:pull,push", "registry:catalog:*"],
        ),
        # another repository (a prefix of ours, or with ours as prefix) is answered as named
        (
            "repository:g/vote/cache:pull",
            ("pull", "push"),
            ["repository:g/vote/cache:pull", "repository:g/vote:pull,push"],
        ),
        ("repository:g/vo:pull", ("pull",), ["repository:g/vo:pull", "repository:g/vote:pull"]),
    ],
)
def test_token_scopes(named: str | None, actions: tuple[str, ...], scopes: list[str]) -> None:
    assert token_scopes(named, "g/vote", actions) == scopes


EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("content", "digest", "matches"),
    [
        (b"", EMPTY_SHA256, True),
        (b"", EMPTY_SHA256.upper().replace("SHA256", "sha256"), True),
        (b"x", EMPTY_SHA256, False),
        (b"", "sha512:" + hashlib.sha512(b"").hexdigest(), True),
        (b"", "md5:d41d8cd98f00b204e9800998ecf8427e", False),  # not an algorithm a registry uses
        (b"", "sha256", False),
    ],
)
def test_digest_matches(content: bytes, digest: str, matches: bool) -> None:
    assert digest_matches(content, digest) is matches


def test_manifest_digest_is_computed_from_the_bytes() -> None:
    manifest = Manifest(OCI_MANIFEST, b'{"schemaVersion": 2}')
    assert manifest.digest == "sha256:" + hashlib.sha256(b'{"schemaVersion": 2}').hexdigest()
    assert not manifest.is_index
    assert Manifest(OCI_INDEX, b"{}").is_index
    assert "schemaVersion" not in repr(manifest)
    with pytest.raises(TypeError):
        Manifest(OCI_MANIFEST, b"{}", "sha256:" + "0" * 64)  # type: ignore[call-arg]


def _entry(digest: str, platform: str | None) -> dict[str, object]:
    entry: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}
    if platform is not None:
        os_, arch, *variant = platform.split("/")
        entry["platform"] = {"os": os_, "architecture": arch} | (
            {"variant": variant[0]} if variant else {}
        )
    return entry


@pytest.mark.parametrize(
    ("entries", "platform", "chosen"),
    [
        ([("a", "linux/arm64"), ("b", "linux/amd64")], "linux/amd64", "b"),
        ([("a", "linux/arm64"), ("b", "linux/amd64")], "linux/arm64", "a"),
        ([("a", "linux/arm/v6"), ("b", "linux/arm/v7")], "linux/arm/v7", "b"),
        ([("a", "linux/amd64/v3")], "linux/amd64", "a"),  # a variant the caller did not ask about
        ([("a", "unknown/unknown"), ("b", "linux/arm64")], "linux/amd64", "b"),  # attestation
        ([("a", "unknown/unknown"), ("b", None)], "linux/amd64", "b"),
        ([("a", "unknown/unknown")], "linux/amd64", None),
        ([], "linux/amd64", None),
    ],
)
def test_platform_entry(
    entries: list[tuple[str, str | None]], platform: str, chosen: str | None
) -> None:
    index = {"manifests": [_entry(digest, where) for digest, where in entries]}
    assert platform_entry(index, platform) == chosen


def test_platform_entry_skips_malformed_entries() -> None:
    index = {"manifests": ["junk", {"platform": {"os": "linux"}}, _entry("c", "linux/s390x")]}
    assert platform_entry(index) == "c"
    assert platform_entry({"manifests": None}) is None


@pytest.mark.parametrize(
    ("blob", "labels"),
    [
        (b'{"config": {"Labels": {"a": "1", "b": ""}}}', {"a": "1", "b": ""}),
        (b'{"config": {"Labels": null}}', {}),
        (b'{"config": {}}', {}),
        (b'{"architecture": "amd64"}', {}),
    ],
)
def test_config_labels(blob: bytes, labels: dict[str, str]) -> None:
    assert config_labels(blob) == labels


@pytest.mark.parametrize(
    ("blob", "error"),
    [
        (b"not json", "is not a JSON object"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"config": {"Labels": ["a"]}}', "not a mapping of strings"),
        (b'{"config": {"Labels": {"a": 1}}}', "not a mapping of strings"),
    ],
)
def test_config_labels_rejects(blob: bytes, error: str) -> None:
    with pytest.raises(RegistryError, match=rf"^the config of x .*{error}"):
        config_labels(blob, "the config of x")


def test_blob_url() -> None:
    digest = "sha256:" + "c" * 64
    assert blob_url(ImageRef.parse("127.0.0.1:5000/g/vote:v1"), digest) == (
        f"http://127.0.0.1:5000/v2/g/vote/blobs/{digest}"
    )
    assert blob_url(ImageRef.parse("busybox"), digest) == (
        f"https://registry-1.docker.io/v2/library/busybox/blobs/{digest}"
    )


def test_retag_checks_the_new_tag_before_asking_anything() -> None:
    reference = ImageRef.parse("127.0.0.1:9/homelab/vote:v1")  # port 9: nothing listens
    with pytest.raises(ImageRefError, match=re.escape("tag '-1.4' starts with '-'")):
        retag(reference, "-1.4")
    with pytest.raises(ImageRefError, match="has a '/'"):
        put_manifest(reference, "a/b", Manifest(OCI_MANIFEST, b"{}"))


# -- against the real registry ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
) -> tuple[ImageRef, str]:
    """An image pushed with the docker SDK; its reference (tag v1) and the pushed digest."""
    context = busybox_context(tmp_path_factory.mktemp("ctx"))
    repository = f"{registry.address}/homelab/registry-test"
    for _ in docker_client.build(path=str(context), tag=f"{repository}:v1", rm=True, decode=True):
        pass
    auth = registry.credentials.docker_auth_config()
    records = list(
        docker_client.push(repository, tag="v1", stream=True, decode=True, auth_config=auth)
    )
    digests = [r["aux"]["Digest"] for r in records if "Digest" in r.get("aux", {})]
    assert len(digests) == 1, records
    return ImageRef.parse(f"{repository}:v1"), digests[0]


def test_manifest_digest_matches_the_push(
    pushed: tuple[ImageRef, str], registry: LocalRegistry
) -> None:
    reference, digest = pushed
    assert manifest_digest(reference, registry.credentials) == digest
    assert manifest_digest(reference.with_digest(digest), registry.credentials) == digest
    assert image_exists(reference, registry.credentials)


def test_unknown_tag_and_repository(pushed: tuple[ImageRef, str], registry: LocalRegistry) -> None:
    reference, _ = pushed
    assert manifest_digest(reference.with_tag("nope"), registry.credentials) is None
    assert not image_exists(ImageRef.parse(f"{registry.address}/no/such:v1"), registry.credentials)


@pytest.mark.parametrize("password", [None, "wrong-" + secrets.token_hex(6)])
def test_refused_credentials(
    pushed: tuple[ImageRef, str],
    registry: LocalRegistry,
    password: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    reference, _ = pushed
    credentials = RegistryCredentials("homelab", HiddenText(password)) if password else None
    with pytest.raises(RegistryError, match=f"registry {registry.address} refused") as caught:
        manifest_digest(reference, credentials)
    assert "CI_REGISTRY_PASSWORD" in str(caught.value)
    if password:
        texts = [r.getMessage() for r in caplog.records] + [str(caught.value), repr(caught.value)]
        assert not any(password in text for text in texts)


def test_unreachable_registry(stopped_registry: LocalRegistry) -> None:
    reference = ImageRef.parse(f"{stopped_registry.address}/homelab/vote:v1")
    with pytest.raises(RegistryError, match=f"registry {stopped_registry.address} is unreachable"):
        manifest_digest(reference, stopped_registry.credentials)


# -- manifests, retags and labels against the real registry ------------------------------------


@dataclass(frozen=True)
class Images:
    """Two images pushed by ``build_image``: ``c1`` and ``c2``, each with its own labels."""

    repository: ImageRef
    digests: dict[str, str]

    def ref(self, tag: str) -> ImageRef:
        """``repository:tag``."""
        return self.repository.with_tag(tag)


@pytest.fixture(scope="module")
def images(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
) -> Images:
    repository = f"{registry.address}/homelab/release-test"
    digests = {}
    for name in ("c1", "c2"):
        context = busybox_context(tmp_path_factory.mktemp(name), f"echo {name} > /which")
        built = build_image(
            context=context,
            repository=repository,
            tags=[name],
            labels={"test.image": name},
            revision=name[1] * 40,
            cache_from=[],
            engine=DockerBuilder(docker_client),
            credentials=registry.credentials,
            env={},
        )
        assert built.digest is not None
        digests[name] = built.digest
    assert digests["c1"] != digests["c2"]
    return Images(ImageRef.parse(repository), digests)


def _fetched(reference: ImageRef, registry: LocalRegistry) -> Manifest:
    manifest = get_manifest(reference, registry.credentials)
    assert manifest is not None, reference
    return manifest


def test_get_manifest_by_tag_and_by_digest(images: Images, registry: LocalRegistry) -> None:
    by_tag = _fetched(images.ref("c1"), registry)
    assert by_tag.media_type == DOCKER_MANIFEST
    assert by_tag.digest == images.digests["c1"]
    assert json.loads(by_tag.content)["config"]["digest"].startswith("sha256:")
    assert _fetched(images.repository.with_digest(by_tag.digest), registry) == by_tag


def test_get_manifest_of_what_is_absent_is_none(images: Images, registry: LocalRegistry) -> None:
    credentials = registry.credentials
    assert get_manifest(images.ref("nope"), credentials) is None
    assert get_manifest(images.repository.with_digest("sha256:" + "0" * 64), credentials) is None
    assert get_manifest(ImageRef.parse(f"{registry.address}/no/such:v1"), credentials) is None


def _registry_log(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """(method, manifest reference, status) of each manifest request, in order."""
    found = [
        re.search(r"^(\w+) \S+/manifests/(\S+) -> HTTP (\d+)$", r.getMessage())
        for r in caplog.records
    ]
    return [(m[1], m[2], m[3]) for m in found if m]


def _leaks(secret: str, caplog: pytest.LogCaptureFixture, *texts: object) -> list[str]:
    """Every log line or text that shows ``secret`` or a Basic header made from it."""
    basic = base64.b64encode(f"homelab:{secret}".encode()).decode()
    lines = [r.getMessage() for r in caplog.records] + [str(t) for t in texts]
    lines += [repr(t) for t in texts]
    return [line for line in lines if secret in line or basic in line]


def test_retag_by_digest_puts_the_same_manifest_under_the_version(
    images: Images, registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    digest = images.digests["c1"]
    assert retag(images.repository.with_digest(digest), "1.4.0", registry.credentials) == digest
    # read by digest, put, then confirmed by a HEAD of the new tag
    assert [step for step in _registry_log(caplog) if step[2] != "401"] == [
        ("GET", digest, "200"),
        ("PUT", "1.4.0", "201"),
        ("HEAD", "1.4.0", "200"),
    ]
    assert manifest_digest(images.ref("1.4.0"), registry.credentials) == digest
    assert _fetched(images.ref("1.4.0"), registry).content == (
        _fetched(images.ref("c1"), registry).content
    )
    assert not _leaks(registry.credentials.password.secret, caplog)


def test_a_registry_that_asked_for_basic_once_gets_the_credentials_up_front(
    images: Images, registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    assert manifest_digest(images.ref("c1"), registry.credentials) == images.digests["c1"]
    caplog.set_level(logging.DEBUG)
    digest = images.digests["c2"]
    assert retag(images.repository.with_digest(digest), "basic-known", registry.credentials)
    # no request is refused first: the session sent the credentials with the GET
    assert [step[2] for step in _registry_log(caplog)] == ["200", "201", "200"]
    assert not _leaks(registry.credentials.password.secret, caplog)


def test_retag_moves_an_existing_tag(images: Images, registry: LocalRegistry) -> None:
    credentials = registry.credentials
    assert retag(images.ref("c1"), "moving", credentials) == images.digests["c1"]
    labels = image_labels(images.ref("moving"), credentials)
    assert labels is not None
    assert labels[REVISION] == "1" * 40
    assert retag(images.ref("c2"), "moving", credentials) == images.digests["c2"]
    assert manifest_digest(images.ref("moving"), credentials) == images.digests["c2"]
    labels = image_labels(images.ref("moving"), credentials)
    assert labels is not None
    assert labels[REVISION] == "2" * 40


def test_retag_of_an_absent_image_creates_nothing(images: Images, registry: LocalRegistry) -> None:
    with pytest.raises(
        RegistryError,
        match=rf"^registry {registry.address} has no image {images.ref('nope')}; push it first",
    ):
        retag(images.ref("nope"), "1.5.0", registry.credentials)
    assert manifest_digest(images.ref("1.5.0"), registry.credentials) is None


def test_put_manifest_into_another_repository_is_refused(
    images: Images, registry: LocalRegistry
) -> None:
    manifest = _fetched(images.ref("c1"), registry)
    other = ImageRef.parse(f"{registry.address}/homelab/elsewhere")
    with pytest.raises(RegistryError) as caught:
        put_manifest(other, "v1", manifest, registry.credentials)
    message = str(caught.value)
    assert f"registry {registry.address} refused the manifest {manifest.digest}" in message
    assert "BLOB_UNKNOWN" in message
    assert f"retag within {other.repository} (copying between repositories is not" in message
    assert manifest_digest(other.with_tag("v1"), registry.credentials) is None


def test_put_manifest_that_the_registry_finds_invalid(
    images: Images, registry: LocalRegistry
) -> None:
    broken = Manifest(DOCKER_MANIFEST, b'{"schemaVersion": 2, "config": ')
    with pytest.raises(RegistryError) as caught:
        put_manifest(images.repository, "broken", broken, registry.credentials)
    message = str(caught.value)
    assert f"registry {registry.address} refused the manifest {broken.digest}" in message
    assert "(HTTP 400: MANIFEST_INVALID" in message
    assert f"read from {images.repository} of this registry" in message
    assert manifest_digest(images.ref("broken"), registry.credentials) is None


def test_image_labels(images: Images, registry: LocalRegistry) -> None:
    credentials = registry.credentials
    labels = image_labels(images.ref("c2"), credentials)
    assert labels is not None
    assert labels["test.image"] == "c2"
    assert labels[REVISION] == "2" * 40
    by_digest = images.repository.with_digest(images.digests["c1"])
    other = image_labels(by_digest, credentials)
    assert other is not None
    assert (other["test.image"], other[REVISION]) == ("c1", "1" * 40)
    assert set(other) == set(labels)  # build_image's own labels too (created, ...)
    assert image_labels(images.ref("nope"), credentials) is None


def test_oci_image_manifest(images: Images, registry: LocalRegistry) -> None:
    """The same blobs described by an OCI image manifest (as buildah pushes by default)."""
    document = json.loads(_fetched(images.ref("c1"), registry).content)
    document["mediaType"] = OCI_MANIFEST
    document["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    for layer in document["layers"]:
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    oci = Manifest(OCI_MANIFEST, json.dumps(document, indent=3).encode())
    credentials = registry.credentials

    assert put_manifest(images.repository, "oci", oci, credentials) == oci.digest
    assert _fetched(images.ref("oci"), registry) == oci
    labels = image_labels(images.ref("oci"), credentials)
    assert labels is not None
    assert labels["test.image"] == "c1"
    assert retag(images.ref("oci"), "oci-1.4.0", credentials) == oci.digest
    assert _fetched(images.ref("oci-1.4.0"), registry) == oci


@pytest.mark.parametrize("media_type", [DOCKER_LIST, OCI_INDEX])
def test_manifest_list(images: Images, registry: LocalRegistry, media_type: str) -> None:
    """A list naming c1 as linux/arm64 (first) and c2 as linux/amd64, put and read for real."""
    credentials = registry.credentials
    entries = []
    for name, arch in (("c1", "arm64"), ("c2", "amd64")):
        child = _fetched(images.ref(name), registry)
        entries.append(
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(child.content),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    index = Manifest(media_type, json.dumps(document).encode())
    tag = "list-" + media_type.split(".")[-2]

    assert put_manifest(images.repository, tag, index, credentials) == index.digest
    served = _fetched(images.ref(tag), registry)
    assert served == index
    assert served.is_index

    def label(platform: str) -> str:
        labels = image_labels(images.ref(tag), credentials, platform=platform)
        assert labels is not None
        return labels["test.image"]

    assert label("linux/amd64") == "c2"  # the default platform, listed second
    assert label("linux/arm64") == "c1"
    assert label("linux/riscv64") == "c1"  # none for it: the first entry
    assert retag(images.ref(tag), f"{tag}-1.4.0", credentials) == index.digest


@pytest.mark.parametrize("call", ["get_manifest", "put_manifest", "retag", "image_labels"])
def test_wrong_password_is_refused_and_never_shown(
    images: Images,
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
    call: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    manifest = _fetched(images.ref("c1"), registry)
    password = "wrong-" + secrets.token_hex(8)
    credentials = RegistryCredentials("homelab", HiddenText(password))
    calls: dict[str, Callable[[], object]] = {
        "get_manifest": lambda: get_manifest(images.ref("c1"), credentials),
        "put_manifest": lambda: put_manifest(images.repository, "x", manifest, credentials),
        "retag": lambda: retag(images.ref("c1"), "x", credentials),
        "image_labels": lambda: image_labels(images.ref("c1"), credentials),
    }
    with pytest.raises(RegistryError) as caught:
        calls[call]()
    message = str(caught.value)
    if call == "put_manifest":
        assert (
            f"registry {registry.address} refused to let user 'homelab' push to "
            f"{images.repository} (HTTP 401: UNAUTHORIZED" in message
        )
        assert "the credentials may not push there" in message
    else:
        assert f"registry {registry.address} refused access to {images.repository}" in message
    assert not _leaks(password, caplog, caught.value)
    assert manifest_digest(images.ref("x"), registry.credentials) is None


def test_push_without_credentials(images: Images, registry: LocalRegistry) -> None:
    manifest = _fetched(images.ref("c1"), registry)
    with pytest.raises(RegistryError, match=r"refused a push to .* without credentials") as caught:
        put_manifest(images.repository, "x", manifest)
    assert "CI_REGISTRY_USER" in str(caught.value)
    # the registry's error code and message, not the access list it sends as detail
    assert "(HTTP 401: UNAUTHORIZED authentication required);" in str(caught.value)


@pytest.mark.parametrize("call", ["get_manifest", "put_manifest", "retag", "image_labels"])
def test_unreachable_registry_for_every_call(stopped_registry: LocalRegistry, call: str) -> None:
    reference = ImageRef.parse(f"{stopped_registry.address}/homelab/vote:v1")
    credentials = stopped_registry.credentials
    manifest = Manifest(DOCKER_MANIFEST, b"{}")
    calls: dict[str, Callable[[], object]] = {
        "get_manifest": lambda: get_manifest(reference, credentials),
        "put_manifest": lambda: put_manifest(reference, "x", manifest, credentials),
        "retag": lambda: retag(reference, "x", credentials),
        "image_labels": lambda: image_labels(reference, credentials),
    }
    with pytest.raises(RegistryError, match=f"registry {stopped_registry.address} is unreachable"):
        calls[call]()


# -- the Bearer token flow ----------------------------------------------------------------------
# The Debian registry speaks htpasswd (Basic) only; a token server needs signed JWTs and
# certificates. This small local server answers like GitLab's registry + /jwt/auth do.

DIGEST = "sha256:" + "b" * 64


class _Handler(BaseHTTPRequestHandler):
    """What the small local servers below share: an answer with a body, and no request log."""

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default request log on stderr."""


class _TokenRegistry(_Handler):
    """``/token`` checks Basic credentials and issues a token; ``/v2/`` manifests demand it."""

    user = "gitlab-ci-token"
    password = "job-" + secrets.token_hex(6)
    token = "tok-" + secrets.token_hex(6)
    scopes: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            self.do_HEAD()
            return
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {})
            return
        self.scopes.extend(parse_qs(url.query).get("scope", []))
        self._answer(200, {}, json.dumps({"token": self.token}).encode())

    def do_HEAD(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            challenge = f'Bearer realm="{self.realm()}",service="registry"'
            self._answer(401, {"WWW-Authenticate": challenge})
        elif self.path.endswith("/manifests/v1"):
            self._answer(200, {"Docker-Content-Digest": DIGEST})
        else:
            self._answer(404, {})

    def realm(self) -> str:
        """The token service named in the challenge: this server's ``/token``."""
        return f"http://127.0.0.1:{self.server.server_port}/token"  # type: ignore[attr-defined]


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (a free port) in a thread; yield ``127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def token_registry() -> Iterator[str]:
    with _serve(_TokenRegistry) as address:
        yield address


def test_bearer_token_flow(token_registry: str) -> None:
    credentials = RegistryCredentials(_TokenRegistry.user, HiddenText(_TokenRegistry.password))
    reference = ImageRef.parse(f"{token_registry}/group/project/vote:v1")
    assert manifest_digest(reference, credentials) == DIGEST
    assert _TokenRegistry.scopes[-1] == "repository:group/project/vote:pull"
    assert manifest_digest(reference.with_tag("v2"), credentials) is None


def test_bearer_token_refused(token_registry: str) -> None:
    credentials = RegistryCredentials(
        _TokenRegistry.user, HiddenText("wrong-" + secrets.token_hex(4))
    )
    reference = ImageRef.parse(f"{token_registry}/group/project/vote:v1")
    with pytest.raises(RegistryError, match=r"token service .* refused the credentials") as caught:
        manifest_digest(reference, credentials)
    assert credentials.password.secret not in str(caught.value)


class _ClearTextRealm(_TokenRegistry):
    """Names a token service on plain HTTP at a host that is not loopback."""

    def realm(self) -> str:
        return "http://token.invalid/jwt/auth"


def test_token_service_on_plain_http_gets_no_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = _TokenRegistry.password
    credentials = RegistryCredentials(_TokenRegistry.user, HiddenText(password))
    with _serve(_ClearTextRealm) as address:
        reference = ImageRef.parse(f"{address}/group/project/vote:v1")
        with pytest.raises(RegistryError) as caught:
            manifest_digest(reference, credentials)
    message = str(caught.value)
    assert "http://token.invalid/jwt/auth" in message
    assert "over https" in message
    assert "token.invalid in [registry] insecure" in message
    assert not any("token.invalid" in r.getMessage() for r in caplog.records)  # never contacted
    assert password not in message


@pytest.mark.parametrize(
    ("url", "insecure", "clear"),
    [
        ("http://gitlab.lan/jwt/auth", (), True),
        ("http://gitlab.lan:8080/jwt/auth", ("gitlab.lan",), True),
        ("http://gitlab.lan:8080/jwt/auth", ("gitlab.lan:8080",), False),
        ("https://gitlab.lan/jwt/auth", (), False),
        ("http://127.0.0.1:5000/token", (), False),
        ("http://localhost/token", (), False),
        ("http://[::1]:5000/token", (), False),
    ],
)
def test_in_clear(url: str, insecure: tuple[str, ...], clear: bool) -> None:
    assert in_clear(url, insecure) is clear


# -- redirects ----------------------------------------------------------------------------------


class _Storage(_Handler):
    """Where a registry sends clients on: serves the manifest, records what it was sent."""

    authorizations: ClassVar[list[str | None]] = []

    def do_HEAD(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        self._answer(200, {"Docker-Content-Digest": DIGEST})

    def do_GET(self) -> None:
        """urllib (3.11) follows a redirected HEAD with a GET."""
        self.do_HEAD()


class _RedirectingRegistry(_Handler):
    """Basic auth like the real registry; ``/manifests/moved`` redirects to ``location``."""

    user = "homelab"
    password = "pw-" + secrets.token_hex(6)
    location: ClassVar[str] = ""

    def do_HEAD(self) -> None:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {"WWW-Authenticate": 'Basic realm="registry"'})
        elif self.path.endswith("/manifests/moved"):
            self._answer(307, {"Location": self.location})
        else:
            self._answer(200, {"Docker-Content-Digest": DIGEST})

    def do_GET(self) -> None:
        """urllib (3.11) follows a redirected HEAD with a GET."""
        self.do_HEAD()


def test_redirect_to_another_host_drops_the_credentials() -> None:
    credentials = RegistryCredentials(
        _RedirectingRegistry.user, HiddenText(_RedirectingRegistry.password)
    )
    _Storage.authorizations.clear()
    with _serve(_Storage) as storage, _serve(_RedirectingRegistry) as address:
        _RedirectingRegistry.location = f"http://{storage}/blobs/manifest?signed=1"
        assert manifest_digest(ImageRef.parse(f"{address}/vote:moved"), credentials) == DIGEST
    assert _Storage.authorizations == [None]


def test_redirect_on_the_same_registry_keeps_the_credentials() -> None:
    credentials = RegistryCredentials(
        _RedirectingRegistry.user, HiddenText(_RedirectingRegistry.password)
    )
    with _serve(_RedirectingRegistry) as address:
        _RedirectingRegistry.location = f"http://{address}/v2/vote/manifests/v1"
        # The target demands the credentials again: only a request that kept them gets the digest.
        assert manifest_digest(ImageRef.parse(f"{address}/vote:moved"), credentials) == DIGEST


# -- the Bearer token flow for pushes, and faults the real registry does not make --------------
# GitLab's registry + /jwt/auth in small: a token carries only the actions its user may have
# (a read-only user asking for push gets pull), and the registry's challenge names the scope a
# request needs (pull for reads, pull,push for a PUT), as distribution's token auth does.

_API = re.compile(r"^/v2/(?P<path>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


class _BearerRegistry(_Handler):
    """Manifests and blobs in memory behind Bearer tokens; ``tamper`` serves altered content."""

    users: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "writer": ("w-" + secrets.token_hex(6), ("pull", "push")),
        "reader": ("r-" + secrets.token_hex(6), ("pull",)),
    }
    name_scope: ClassVar[bool] = True
    tamper: ClassVar[str] = ""  # "manifest", "manifest-no-header", "blob" or "race"
    blob_location: ClassVar[str] = ""  # send blob reads there (another origin: storage)
    scopes: ClassVar[list[list[str]]] = []  # the scopes of each token request
    grants: ClassVar[dict[str, set[str]]] = {}  # token -> {"path:action", ...}
    store: ClassVar[dict[str, tuple[str, bytes]]] = {}  # "path/kind/ref" -> (media type, bytes)

    @classmethod
    def reset(cls) -> None:
        """Forget everything a previous test left."""
        cls.name_scope, cls.tamper, cls.blob_location = True, "", ""
        cls.scopes.clear()
        cls.grants.clear()
        cls.store.clear()

    @classmethod
    def seed(cls, path: str, tag: str, labels: dict[str, str], media_type: str) -> str:
        """Store an image (config blob + manifest) under ``tag``; return the manifest digest."""
        config = json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()
        config_digest = _sha256(config)
        cls.store[f"{path}/blobs/{config_digest}"] = ("application/octet-stream", config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {"mediaType": "x", "digest": config_digest, "size": len(config)},
                "layers": [],
            }
        ).encode()
        digest = _sha256(manifest)
        for ref in (tag, digest):
            cls.store[f"{path}/manifests/{ref}"] = (media_type, manifest)
        return digest

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/token":
            self._issue(parse_qs(url.query).get("scope", []))
        else:
            self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        found = _API.match(self.path)
        if found is None or not self._allowed(found["path"], "push"):
            return
        digest = _sha256(body)
        for ref in (found["ref"], digest):
            self.store[f"{found['path']}/manifests/{ref}"] = (self.headers["Content-Type"], body)
        if self.tamper == "race":  # another pipeline puts its image under the tag right after
            # (stored before the answer, so the client's next request cannot come first)
            self.seed(found["path"], found["ref"], {REVISION: "other"}, DOCKER_MANIFEST)
        self._answer(201, {"Docker-Content-Digest": digest})

    def _serve(self) -> None:
        found = _API.match(urlsplit(self.path).path)
        if found is None or not self._allowed(found["path"], "pull"):
            return
        if found["kind"] == "blobs" and self.blob_location:
            self._answer(307, {"Location": self.blob_location})
            return
        stored = self.store.get(f"{found['path']}/{found['kind']}/{found['ref']}")
        if stored is None:
            self._answer(404, {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
            return
        media_type, body = stored
        headers = {"Content-Type": media_type, "Docker-Content-Digest": _sha256(body)}
        if self.tamper.startswith(found["kind"].rstrip("s")):
            body += b"\n"  # served altered, announced as the original
            if self.tamper.endswith("no-header"):
                del headers["Docker-Content-Digest"]
        self._answer(200, headers, body)

    def _allowed(self, path: str, action: str) -> bool:
        authorization = self.headers.get("Authorization", "")
        if f"{path}:{action}" in self.grants.get(authorization.removeprefix("Bearer "), set()):
            return True
        challenge = f'Bearer realm="{self.realm()}",service="registry"'
        if self.name_scope:
            challenge += f',scope="repository:{path}:{"pull,push" if action == "push" else "pull"}"'
        if authorization:
            challenge += ',error="insufficient_scope"'
        body = b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}'
        self._answer(401, {"WWW-Authenticate": challenge}, body)
        return False

    def _issue(self, scopes: list[str]) -> None:
        may = self._user_may()
        if may is None:
            self._answer(401, {})
            return
        self.scopes.append(scopes)
        token = "tok-" + secrets.token_hex(8)
        self.grants[token] = set()
        for scope in scopes:
            _, path, actions = scope.split(":")
            self.grants[token] |= {f"{path}:{a}" for a in actions.split(",") if a in may}
        self._answer(200, {}, json.dumps({"token": token}).encode())

    def _user_may(self) -> tuple[str, ...] | None:
        """The actions the user whose Basic credentials came may have; None for a stranger."""
        for user, (password, may) in self.users.items():
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") == f"Basic {basic}":
                return may
        return None

    def realm(self) -> str:
        """This server's ``/token``."""
        return f"http://127.0.0.1:{self.server.server_port}/token"  # type: ignore[attr-defined]


def _sha256(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


VOTE = "group/project/vote"


def _user(name: str) -> RegistryCredentials:
    return RegistryCredentials(name, HiddenText(_BearerRegistry.users[name][0]))


@pytest.fixture
def bearer_registry() -> Iterator[str]:
    """The address of a fresh :class:`_BearerRegistry` holding ``group/project/vote:v1``."""
    _BearerRegistry.reset()
    _BearerRegistry.seed(VOTE, "v1", {REVISION: "abc"}, DOCKER_MANIFEST)
    with _serve(_BearerRegistry) as address:
        yield address


@pytest.mark.parametrize("name_scope", [True, False])
def test_bearer_retag_asks_one_token_for_pull_and_push(
    bearer_registry: str, name_scope: bool
) -> None:
    _BearerRegistry.name_scope = name_scope
    reference = ImageRef.parse(f"{bearer_registry}/{VOTE}:v1")
    digest = retag(reference, "1.4.0", _user("writer"))
    assert (
        _BearerRegistry.store[f"{VOTE}/manifests/1.4.0"]
        == (_BearerRegistry.store[f"{VOTE}/manifests/v1"])
    )
    assert digest == _sha256(_BearerRegistry.store[f"{VOTE}/manifests/v1"][1])
    assert _BearerRegistry.scopes == [[f"repository:{VOTE}:pull,push"]]


def test_credentials_sent_up_front_and_refused_still_answer_a_bearer_challenge(
    bearer_registry: str,
) -> None:
    # as when the address of a Basic registry is later served by one with token auth
    from homelab_release import registry as module

    module._BASIC_HOSTS.add(bearer_registry)
    reference = ImageRef.parse(f"{bearer_registry}/{VOTE}:v1")
    assert retag(reference, "1.4.0", _user("writer")) == _sha256(
        _BearerRegistry.store[f"{VOTE}/manifests/v1"][1]
    )
    assert _BearerRegistry.scopes == [[f"repository:{VOTE}:pull,push"]]
    assert bearer_registry not in module._BASIC_HOSTS


@pytest.mark.parametrize("name_scope", [True, False])
def test_bearer_reads_ask_for_pull_only(bearer_registry: str, name_scope: bool) -> None:
    _BearerRegistry.name_scope = name_scope
    reference = ImageRef.parse(f"{bearer_registry}/{VOTE}:v1")
    manifest = get_manifest(reference, _user("reader"))
    assert manifest is not None
    assert manifest.media_type == DOCKER_MANIFEST
    assert image_labels(reference, _user("reader")) == {REVISION: "abc"}
    assert _BearerRegistry.scopes == [[f"repository:{VOTE}:pull"]] * 2


def test_bearer_read_only_token_may_not_push(
    bearer_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader = _user("reader")
    with pytest.raises(RegistryError) as caught:
        retag(ImageRef.parse(f"{bearer_registry}/{VOTE}:v1"), "1.4.0", reader)
    message = str(caught.value)
    assert (
        f"registry {bearer_registry} refused to let user 'reader' push to "
        f"{bearer_registry}/{VOTE} (HTTP 401: UNAUTHORIZED authentication required)" in message
    )
    assert "the credentials may not push there" in message
    assert f"{VOTE}/manifests/1.4.0" not in _BearerRegistry.store
    assert _BearerRegistry.scopes == [[f"repository:{VOTE}:pull,push"]]  # asked, not granted
    secret = reader.password.secret
    texts = [r.getMessage() for r in caplog.records] + [message, repr(caught.value)]
    assert not [text for text in texts if secret in text]


@pytest.mark.parametrize(
    ("tamper", "by_digest", "call"),
    [
        ("manifest", False, get_manifest),
        ("manifest", False, image_labels),
        ("manifest-no-header", True, get_manifest),  # the digest asked for is the check
        ("blob", False, image_labels),
    ],
)
def test_altered_content_is_refused(
    bearer_registry: str,
    tamper: str,
    by_digest: bool,
    call: Callable[[ImageRef, RegistryCredentials], object],
) -> None:
    reference = ImageRef.parse(f"{bearer_registry}/{VOTE}:v1")
    if by_digest:
        reference = reference.with_digest(_sha256(_BearerRegistry.store[f"{VOTE}/manifests/v1"][1]))
    _BearerRegistry.tamper = tamper
    with pytest.raises(RegistryError, match=f"registry {bearer_registry} served .* altered"):
        call(reference, _user("reader"))


def test_retag_of_altered_content_puts_nothing(bearer_registry: str) -> None:
    _BearerRegistry.tamper = "manifest"
    with pytest.raises(RegistryError, match="altered"):
        retag(ImageRef.parse(f"{bearer_registry}/{VOTE}:v1"), "1.4.0", _user("writer"))
    assert f"{VOTE}/manifests/1.4.0" not in _BearerRegistry.store


def test_retag_notices_a_tag_moved_at_the_same_moment(bearer_registry: str) -> None:
    _BearerRegistry.tamper = "race"
    with pytest.raises(
        RegistryError,
        match=rf"serves {bearer_registry}/{VOTE}:1.4.0 at sha256:\w+ right after it was put at "
        r"sha256:\w+: another job moved the tag at the same moment; run the release again",
    ):
        retag(ImageRef.parse(f"{bearer_registry}/{VOTE}:v1"), "1.4.0", _user("writer"))


def test_manifest_types(bearer_registry: str) -> None:
    schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    _BearerRegistry.seed(VOTE, "old", {}, schema1)
    with pytest.raises(RegistryError, match=f"serves .*:old as {re.escape(schema1)}, not one of"):
        get_manifest(ImageRef.parse(f"{bearer_registry}/{VOTE}:old"), _user("reader"))
    # a generic Content-Type: the document's own mediaType decides
    _BearerRegistry.seed(VOTE, "generic", {}, OCI_MANIFEST)
    media_type, body = _BearerRegistry.store[f"{VOTE}/manifests/generic"]
    _BearerRegistry.store[f"{VOTE}/manifests/generic"] = ("application/json", body)
    manifest = get_manifest(ImageRef.parse(f"{bearer_registry}/{VOTE}:generic"), _user("reader"))
    assert manifest == Manifest(media_type, body)


class _BlobStorage(_Handler):
    """Where a registry sends blob reads (object storage): serves ``blob``, records headers."""

    blob: ClassVar[bytes] = b""
    authorizations: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        self._answer(200, {}, self.blob)


def test_config_blob_from_storage_elsewhere_gets_no_credentials(bearer_registry: str) -> None:
    manifest = _BearerRegistry.store[f"{VOTE}/manifests/v1"][1]
    config = json.loads(manifest)["config"]["digest"]
    _BlobStorage.blob = _BearerRegistry.store[f"{VOTE}/blobs/{config}"][1]
    _BlobStorage.authorizations.clear()
    with _serve(_BlobStorage) as storage:
        _BearerRegistry.blob_location = f"http://{storage}/bucket/{config}?signature=x"
        labels = image_labels(ImageRef.parse(f"{bearer_registry}/{VOTE}:v1"), _user("reader"))
    assert labels == {REVISION: "abc"}
    assert _BlobStorage.authorizations == [None]
