"""A small client of the Registry HTTP API v2: does an image exist, and which digest does a tag name?

>>> ref = ImageRef.parse("registry.example.com/homelab/vote:3f1c2ab")  # doctest: +SKIP
>>> manifest_digest(ref, CiContext.from_env().registry_credentials)  # doctest: +SKIP
'sha256:...'

Every request has a timeout; connection failures and HTTP 5xx are retried with a bounded backoff
(:func:`with_retries`). Basic auth and the Bearer token flow (``WWW-Authenticate: Bearer realm=...``)
are answered from :class:`RegistryCredentials`. Loopback registries (127.0.0.0/8, ``localhost``,
``::1``) and those named in ``insecure`` are spoken to over plain HTTP, every other one over HTTPS.
Errors are :class:`~homelab_release.errors.RegistryError` naming the registry and the fix; the
password never appears in a log line, a message or a repr. Credentials go only where they are
meant to: a redirect to another origin loses the ``Authorization`` header, and a token service on
plain HTTP (neither loopback nor listed as insecure) is refused rather than sent the password.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO, TypeVar

from homelab_release.errors import RegistryError
from homelab_release.images import ImageRef
from homelab_release.secrets import HiddenText, RegistryCredentials, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
RETRY_ATTEMPTS = 3
RETRY_BACKOFF = 0.5  # seconds before the 2nd attempt; doubles after each further failure

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class TransientError(Exception):
    """A failure worth retrying (connection refused/reset, timeout, HTTP 5xx)."""


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Message
    body: bytes


def manifest_digest(
    reference: ImageRef,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> str | None:
    """The digest (``sha256:...``) the registry serves for ``reference``, or None if it has none.

    ``reference`` names a tag (``latest`` when it has neither tag nor digest) or a digest. Raises
    :class:`RegistryError` when the registry is unreachable or refuses the credentials.
    """
    host = registry_host(reference)
    session = _Session(host, reference.path, credentials, timeout, insecure=tuple(insecure))
    try:
        return _lookup(session, reference, manifest_url(reference, insecure))
    except TransientError as err:
        raise RegistryError(
            f"registry {host} is unreachable ({err}); check that it runs and that the runner can "
            f"reach it (plain-HTTP registries other than loopback must be listed as insecure)"
        ) from None


def image_exists(
    reference: ImageRef,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> bool:
    """Whether the registry has a manifest for ``reference`` (a tag or a digest)."""
    return manifest_digest(reference, credentials, insecure=insecure, timeout=timeout) is not None


def _lookup(session: _Session, reference: ImageRef, url: str) -> str | None:
    response = with_retries(lambda: session.request("HEAD", url), what=f"HEAD {url}")
    if response.status == 404:
        return None
    _check_status(response, reference)
    digest = response.headers.get("Docker-Content-Digest")
    if digest:
        return str(digest)
    response = with_retries(lambda: session.request("GET", url), what=f"GET {url}")
    _check_status(response, reference)
    return "sha256:" + hashlib.sha256(response.body).hexdigest()


def registry_host(reference: ImageRef) -> str:
    """The registry ``host[:port]`` that serves ``reference`` (Docker Hub when it names none)."""
    return (
        DOCKER_HUB if reference.domain in ("", "docker.io", "index.docker.io") else reference.domain
    )


def manifest_url(reference: ImageRef, insecure: Iterable[str] = ()) -> str:
    """``<scheme>://<registry>/v2/<path>/manifests/<digest or tag>``."""
    host = registry_host(reference)
    path = reference.path
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    target = reference.digest or reference.tag or "latest"
    return f"{scheme(host, insecure)}://{host}/v2/{path}/manifests/{target}"


def scheme(host: str, insecure: Iterable[str] = ()) -> str:
    """``http`` for loopback hosts and those listed in ``insecure``, else ``https``."""
    return "http" if is_loopback(host) or host in set(insecure) else "https"


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` is localhost, 127.0.0.0/8 or ::1."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``WWW-Authenticate`` into its scheme (lowercase) and parameters.

    >>> parse_challenge('Bearer realm="https://a/token",service="reg",scope="repository:x:pull"')
    ('bearer', {'realm': 'https://a/token', 'service': 'reg', 'scope': 'repository:x:pull'})
    """
    kind, _, rest = header.strip().partition(" ")
    return kind.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = RETRY_ATTEMPTS,
    backoff: float = RETRY_BACKOFF,
) -> T:
    """Run ``call``; retry on :class:`TransientError` up to ``attempts`` times, doubling ``backoff``.

    The last :class:`TransientError` is re-raised when every attempt failed.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except TransientError as err:
            if attempt == attempts:
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.info(
                "%s failed (%s); retrying in %.1fs (%d/%d)", what, err, delay, attempt, attempts
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _check_status(response: _Response, reference: ImageRef) -> None:
    host = registry_host(reference)
    if response.status in (401, 403):
        raise RegistryError(
            f"registry {host} refused access to {reference.repository} (HTTP {response.status}); "
            "check CI_REGISTRY_USER / CI_REGISTRY_PASSWORD (or the credentials passed in) and "
            "that the user may read this repository"
        )
    if response.status != 200:
        raise RegistryError(
            f"registry {host} answered HTTP {response.status} for {reference}: "
            f"{response.body[:200].decode(errors='replace')}"
        )


class _Session:
    """Requests to one repository of one registry, answering Basic and Bearer challenges."""

    def __init__(
        self,
        host: str,
        path: str,
        credentials: RegistryCredentials | None,
        timeout: float,
        *,
        insecure: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.path = path
        self.credentials = credentials
        self.timeout = timeout
        self.insecure = insecure
        self._authorization: HiddenText | None = None

    def request(self, method: str, url: str) -> _Response:
        """Send ``method url``; on a 401 answer the challenge once and send it again."""
        response = self._send(method, url)
        if response.status != 401 or self._authorization is not None:
            return response
        self._authorization = self._answer(response.headers.get("WWW-Authenticate", ""))
        if self._authorization is None:
            return response
        return self._send(method, url)

    def _send(self, method: str, url: str, authorization: HiddenText | None = None) -> _Response:
        headers = {"Accept": ", ".join(MANIFEST_TYPES), "User-Agent": "homelab-release"}
        auth = authorization or self._authorization
        if auth is not None:
            headers["Authorization"] = auth.secret
        request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        return _http(request, self.timeout)

    def _answer(self, challenge: str) -> HiddenText | None:
        kind, params = parse_challenge(challenge)
        if kind == "basic":
            return HiddenText(self.credentials.basic_header()) if self.credentials else None
        if kind == "bearer" and "realm" in params:
            return HiddenText("Bearer " + self._token(params))
        raise RegistryError(
            f"registry {self.host} asks for an unsupported authentication {kind!r}; "
            "use a registry with Basic or Bearer token authentication"
        )

    def _token(self, params: Mapping[str, str]) -> str:
        if not params["realm"].startswith(("https://", "http://")):
            raise RegistryError(
                f"registry {self.host} names a token service that is not an http(s) URL"
            )
        query = {"service": params.get("service", ""), "scope": f"repository:{self.path}:pull"}
        query["scope"] = params.get("scope", query["scope"])
        url = params["realm"] + "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        basic = HiddenText(self.credentials.basic_header()) if self.credentials else None
        if basic is not None and in_clear(params["realm"], self.insecure):
            raise RegistryError(
                f"registry {self.host} asks for a token from {params['realm']}, a plain-HTTP "
                "address that is not loopback: the credentials would cross the network "
                "unencrypted, so they are not sent; serve the token service over https (or, on a "
                f"trusted network, list {_netloc(params['realm'])} in [registry] insecure)"
            )
        response = with_retries(
            lambda: self._send("GET", url, basic), what=f"token request to {params['realm']}"
        )
        if response.status != 200:
            raise RegistryError(
                f"token service {params['realm']} of registry {self.host} refused the "
                f"credentials (HTTP {response.status}); check CI_REGISTRY_USER / "
                "CI_REGISTRY_PASSWORD"
            )
        return _token_from(response, params["realm"])


def _token_from(response: _Response, realm: str) -> str:
    try:
        data = json.loads(response.body)
        token = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token service {realm} answered without a token")
    return token


def in_clear(url: str, insecure: Iterable[str] = ()) -> bool:
    """Whether ``url`` is plain HTTP to a host that is neither loopback nor listed in ``insecure``.

    >>> in_clear("http://gitlab.lan/jwt/auth"), in_clear("http://127.0.0.1:5000/token")
    (True, False)
    """
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and scheme(parts.netloc, insecure) == "https"


def _netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _KeepCredentialsHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, dropping ``Authorization`` when one leads to another origin.

    urllib copies every header onto the redirected request: a registry that sends clients on to
    storage (or a hostile one) would otherwise receive our credentials for another host.
    """

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
            log.debug("redirect to %s: credentials dropped", redact(new.full_url))
        return new


_OPENER = urllib.request.build_opener(_KeepCredentialsHome)


def _http(request: urllib.request.Request, timeout: float) -> _Response:
    """Send one request; 5xx and connection failures become :class:`TransientError`."""
    where = redact(request.full_url)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            response = _Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as err:
        with err:
            response = _Response(err.code, err.headers, err.read())
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TransientError(f"{request.get_method()} {where}: {reason}") from None
    log.debug("%s %s -> HTTP %d", request.get_method(), where, response.status)
    if response.status >= 500:
        raise TransientError(f"{request.get_method()} {where}: HTTP {response.status}")
    return response
