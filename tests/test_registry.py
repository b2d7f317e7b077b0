"""The Registry API v2 client against the real htpasswd registry, plus its pure helpers."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import docker
import pytest

from homelab_release.context import CiContext
from homelab_release.demo.sandbox import LocalRegistry, busybox_context
from homelab_release.errors import RegistryError
from homelab_release.images import ImageRef
from homelab_release.registry import (
    TransientError,
    image_exists,
    in_clear,
    is_loopback,
    manifest_digest,
    manifest_url,
    parse_challenge,
    with_retries,
)
from homelab_release.secrets import HiddenText, RegistryCredentials

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


# -- the Bearer token flow ----------------------------------------------------------------------
# The Debian registry speaks htpasswd (Basic) only; a token server needs signed JWTs and
# certificates. This small local server answers like GitLab's registry + /jwt/auth do.

DIGEST = "sha256:" + "b" * 64


class _TokenRegistry(BaseHTTPRequestHandler):
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


class _Storage(BaseHTTPRequestHandler):
    """Where a registry sends clients on: serves the manifest, records what it was sent."""

    authorizations: ClassVar[list[str | None]] = []

    def do_HEAD(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """urllib (3.11) follows a redirected HEAD with a GET."""
        self.do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default request log on stderr."""


class _RedirectingRegistry(BaseHTTPRequestHandler):
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

    def _answer(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """urllib (3.11) follows a redirected HEAD with a GET."""
        self.do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default request log on stderr."""


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
