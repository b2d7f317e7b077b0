"""A small client of the Registry HTTP API v2: digests, manifests, retags by digest, image labels.

>>> ref = ImageRef.parse("registry.example.com/homelab/vote:3f1c2ab")  # doctest: +SKIP
>>> manifest_digest(ref, CiContext.from_env().registry_credentials)  # doctest: +SKIP
'sha256:...'
>>> retag(ref, "1.4.0", credentials)  # doctest: +SKIP
'sha256:...'
>>> image_labels(ref.with_tag("latest"), credentials)["org.opencontainers.image.revision"]  # doctest: +SKIP
'3f1c2ab...'

Nothing is pulled or rebuilt: :func:`retag` reads a manifest (:func:`get_manifest`), puts the same
bytes under another tag of the same repository (:func:`put_manifest`) and checks with a ``HEAD``
that the registry serves the new tag at the same digest. Cross-repository copies (blob mounts) are
out of scope: a manifest can only be put into the repository that holds its blobs. Absence is
an answer, not an error: :func:`manifest_digest`, :func:`get_manifest` and :func:`image_labels`
return None when the registry has no such manifest. The labels of a manifest list / OCI index are
those of its ``linux/amd64`` entry (or the ``platform`` asked for), else of its first image.

Every request has a timeout; connection failures and HTTP 5xx are retried with a bounded backoff
(:func:`with_retries`). Basic auth and the Bearer token flow (``WWW-Authenticate: Bearer realm=...``)
are answered from :class:`RegistryCredentials`; a token for pushing is asked for
``repository:<path>:pull,push`` (:func:`token_scopes`). Loopback registries (127.0.0.0/8,
``localhost``, ``::1``) and those named in ``insecure`` are spoken to over plain HTTP, every other
one over HTTPS. Everything the registry serves by digest is checked against that digest. Errors are
:class:`~homelab_release.errors.RegistryError` naming the registry and the fix; the password never
appears in a log line, a message or a repr. Credentials go only where they are meant to: a redirect
to another origin loses the ``Authorization`` header, and a token service on plain HTTP (neither
loopback nor listed as insecure) is refused rather than sent the password.
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any, TypeVar

from homelab_release.errors import RegistryError
from homelab_release.images import ImageRef, check_tag
from homelab_release.secrets import HiddenText, RegistryCredentials, redact

__all__ = [
    "DEFAULT_PLATFORM",
    "DEFAULT_TIMEOUT",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "RETRY_ATTEMPTS",
    "RETRY_BACKOFF",
    "Manifest",
    "TransientError",
    "api_path",
    "blob_url",
    "config_labels",
    "digest_matches",
    "get_manifest",
    "image_exists",
    "image_labels",
    "in_clear",
    "is_loopback",
    "manifest_digest",
    "manifest_url",
    "parse_challenge",
    "platform_entry",
    "put_manifest",
    "registry_host",
    "retag",
    "scheme",
    "token_scopes",
    "with_retries",
]

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
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
DEFAULT_PLATFORM = "linux/amd64"
DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")
_PULL = ("pull",)
_PUSH = ("pull", "push")
#: Registries (``host[:port]``) that answered a request with a Basic challenge: later sessions
#: with credentials send them with their first request instead of being refused once more.
_BASIC_HOSTS: set[str] = set()


class TransientError(Exception):
    """A failure worth retrying (connection refused/reset, timeout, HTTP 5xx)."""


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry serves it: its bytes, their media type and digest.

    ``digest`` is computed (``sha256:`` of ``content``), never taken on trust; put the manifest
    elsewhere with :func:`put_manifest` and it keeps that digest.
    """

    media_type: str
    content: bytes = field(repr=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", "sha256:" + hashlib.sha256(self.content).hexdigest())

    @property
    def is_index(self) -> bool:
        """Whether this is a manifest list / OCI index (it names one manifest per platform)."""
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Message
    body: bytes


# -- public calls -------------------------------------------------------------------------------


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
    session = _Session.of(reference, credentials, insecure, timeout)
    with _reachable(session.host):
        return _lookup(session, reference)


def image_exists(
    reference: ImageRef,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> bool:
    """Whether the registry has a manifest for ``reference`` (a tag or a digest)."""
    return manifest_digest(reference, credentials, insecure=insecure, timeout=timeout) is not None


def get_manifest(
    reference: ImageRef,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> Manifest | None:
    """The manifest the registry serves for ``reference`` (tag or digest), or None if it has none.

    Absence is an answer, as for :func:`manifest_digest`; everything else that goes wrong is a
    :class:`RegistryError`: unreachable, refused credentials, a media type other than
    :data:`MANIFEST_TYPES`, or content whose digest differs from ``Docker-Content-Digest`` or from
    the digest ``reference`` names.
    """
    session = _Session.of(reference, credentials, insecure, timeout)
    with _reachable(session.host):
        return _fetch_manifest(session, reference)


def put_manifest(
    repository_ref: ImageRef,
    tag: str,
    manifest: Manifest,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Put ``manifest`` (its exact bytes and media type) under ``tag`` in ``repository_ref``'s
    repository (its own tag and digest are ignored); return the digest the registry reports.

    The blobs the manifest names must already be in that repository. Raises
    :class:`RegistryError` when the credentials may not push there, when the registry refuses the
    manifest, or when it reports another digest than ``manifest.digest``.
    """
    target = _tagged(repository_ref, tag)
    session = _Session.of(target, credentials, insecure, timeout, actions=_PUSH)
    with _reachable(session.host):
        return _put(session, target, manifest)


def retag(
    reference: ImageRef,
    new_tag: str,
    credentials: RegistryCredentials | None = None,
    *,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Give the image ``reference`` names (by its digest when it names one, else by its tag) the
    tag ``new_tag`` in the same repository, without pulling it; return its digest.

    Reads the manifest, puts the same bytes under ``new_tag``, then confirms with a ``HEAD`` that
    the registry serves ``new_tag`` at that digest. Raises :class:`RegistryError` when the image
    is absent, the credentials may not push, or the registry serves ``new_tag`` at another digest
    afterwards (someone moved it at the same moment). Another repository is out of scope.
    """
    target = _tagged(reference, new_tag)
    session = _Session.of(reference, credentials, insecure, timeout, actions=_PUSH)
    with _reachable(session.host):
        manifest = _fetch_manifest(session, reference)
        if manifest is None:
            raise RegistryError(
                f"registry {session.host} has no image {reference}; push it first, or check the "
                "tag or digest"
            )
        digest = _put(session, target, manifest)
        served = _lookup(session, target)
    if served != manifest.digest:
        now = f"at {served}" if served else "no longer"
        raise RegistryError(
            f"registry {session.host} serves {target} {now} right after it was put at "
            f"{manifest.digest}: another job moved the tag at the same moment; run the release "
            "again"
        )
    log.info("tagged %s as %s (%s)", reference, target, digest)
    return digest


def image_labels(
    reference: ImageRef,
    credentials: RegistryCredentials | None = None,
    *,
    platform: str = DEFAULT_PLATFORM,
    insecure: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> Mapping[str, str] | None:
    """The labels (``config.Labels``) of the image ``reference`` names, or None if it is absent.

    Reads the manifest, then its config blob (checked against the digest the manifest names). For
    a manifest list / OCI index the labels are those of the entry for ``platform``
    (``os/architecture[/variant]``), else of the first entry that names a platform other than
    ``unknown`` (attestations), as :func:`platform_entry` chooses. An image without labels gives
    an empty mapping.
    """
    session = _Session.of(reference, credentials, insecure, timeout)
    with _reachable(session.host):
        manifest = _fetch_manifest(session, reference)
        if manifest is None:
            return None
        if manifest.is_index:
            manifest = _platform_manifest(session, reference, manifest, platform)
        config = _config_descriptor(session.host, reference, manifest)
        blob = _fetch_blob(session, reference, config)
    return config_labels(blob, f"the config {config} of {reference} on registry {session.host}")


# -- pure helpers -------------------------------------------------------------------------------


def registry_host(reference: ImageRef) -> str:
    """The registry ``host[:port]`` that serves ``reference`` (Docker Hub when it names none)."""
    return (
        DOCKER_HUB if reference.domain in ("", "docker.io", "index.docker.io") else reference.domain
    )


def api_path(reference: ImageRef) -> str:
    """The repository path in API URLs and token scopes (Docker Hub's ``library/`` added)."""
    if registry_host(reference) == DOCKER_HUB and "/" not in reference.path:
        return f"library/{reference.path}"
    return reference.path


def manifest_url(reference: ImageRef, insecure: Iterable[str] = ()) -> str:
    """``<scheme>://<registry>/v2/<path>/manifests/<digest or tag>``."""
    target = reference.digest or reference.tag or "latest"
    return f"{_base_url(reference, insecure)}/manifests/{target}"


def blob_url(reference: ImageRef, digest: str, insecure: Iterable[str] = ()) -> str:
    """``<scheme>://<registry>/v2/<path>/blobs/<digest>``."""
    return f"{_base_url(reference, insecure)}/blobs/{digest}"


def _base_url(reference: ImageRef, insecure: Iterable[str]) -> str:
    host = registry_host(reference)
    return f"{scheme(host, insecure)}://{host}/v2/{api_path(reference)}"


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


def token_scopes(named: str | None, path: str, actions: Sequence[str] = _PULL) -> list[str]:
    """The scopes to ask a token service for: those the challenge names (space-separated), with
    this repository's widened to ``actions``; this repository's alone when the challenge names none.

    >>> token_scopes("repository:g/vote:pull", "g/vote", ("pull", "push"))
    ['repository:g/vote:pull,push']
    >>> token_scopes(None, "g/vote")
    ['repository:g/vote:pull']
    """
    own = f"repository:{path}:"
    scopes: list[str] = []
    for scope in (named or "").split():
        if scope.startswith(own):
            merged = dict.fromkeys([*scope[len(own) :].split(","), *actions])
            scopes.append(own + ",".join(merged))
        else:
            scopes.append(scope)
    if not any(scope.startswith(own) for scope in scopes):
        scopes.append(own + ",".join(actions))
    return list(dict.fromkeys(scopes))


def digest_matches(content: bytes, digest: str) -> bool:
    """Whether ``digest`` (``sha256:``, ``sha384:`` or ``sha512:`` + hex) is that of ``content``.

    >>> digest_matches(b"", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    True
    """
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha384", "sha512"):
        return False
    return hashlib.new(algorithm, content).hexdigest() == expected.lower()


def platform_entry(index: Mapping[str, Any], platform: str = DEFAULT_PLATFORM) -> str | None:
    """The digest of the entry of a manifest list / OCI index for ``platform``
    (``os/architecture[/variant]``), else of the first entry whose platform is not ``unknown``
    (buildx lists attestations so), else None.

    >>> platform_entry({"manifests": [{"digest": "sha256:a", "platform": {"os": "linux",
    ...     "architecture": "arm64"}}, {"digest": "sha256:b", "platform": {"os": "linux",
    ...     "architecture": "amd64"}}]})
    'sha256:b'
    """
    wanted = platform.split("/")
    entries = [
        entry
        for entry in index.get("manifests") or []
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    ]
    for entry in entries:
        if _platform_of(entry)[: len(wanted)] == wanted:
            return str(entry["digest"])
    for entry in entries:
        if "unknown" not in _platform_of(entry)[:2]:
            return str(entry["digest"])
    return None


def _platform_of(entry: Mapping[str, Any]) -> list[str]:
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        return []
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return [str(part) for part in parts if part]


def config_labels(blob: bytes, what: str = "the image config") -> dict[str, str]:
    """``config.Labels`` of an OCI / Docker image config (``{}`` when it has none).

    >>> config_labels(b'{"config": {"Labels": {"a": "1"}}}')
    {'a': '1'}
    """
    config = _json_object(blob, what).get("config") or {}
    labels = config.get("Labels") if isinstance(config, dict) else None
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise RegistryError(f"{what} has config.Labels that are not a mapping of strings")
    return dict(labels)


def _json_object(content: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object; the image may be damaged: push it again")
    return document


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


# -- the steps, on one session ------------------------------------------------------------------


@contextmanager
def _reachable(host: str) -> Iterator[None]:
    """Turn a :class:`TransientError` that outlived its retries into a :class:`RegistryError`."""
    try:
        yield
    except TransientError as err:
        raise RegistryError(
            f"registry {host} is unreachable ({err}); check that it runs and that the runner can "
            f"reach it (plain-HTTP registries other than loopback must be listed as insecure)"
        ) from None


def _tagged(reference: ImageRef, tag: str) -> ImageRef:
    """``reference``'s repository with ``tag`` (checked) and no digest."""
    return ImageRef(reference.domain, reference.path, check_tag(tag))


def _lookup(session: _Session, reference: ImageRef) -> str | None:
    url = manifest_url(reference, session.insecure)
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


def _fetch_manifest(session: _Session, reference: ImageRef) -> Manifest | None:
    url = manifest_url(reference, session.insecure)
    response = with_retries(lambda: session.request("GET", url), what=f"GET {url}")
    if response.status == 404:
        return None
    _check_status(response, reference)
    manifest = Manifest(_media_type(session.host, reference, response), response.body)
    for claimed in (response.headers.get("Docker-Content-Digest"), reference.digest):
        if claimed and not digest_matches(manifest.content, claimed):
            raise RegistryError(
                f"registry {session.host} served a manifest for {reference} whose digest is "
                f"{manifest.digest}, not {claimed}; something between here and the registry "
                "altered it (a proxy or cache?): reach the registry directly"
            )
    return manifest


def _media_type(host: str, reference: ImageRef, response: _Response) -> str:
    """The manifest's media type: ``Content-Type``, else (when generic) the document's own."""
    declared = str(response.headers.get("Content-Type", "")).split(";")[0].strip().lower()
    if declared in _GENERIC_TYPES:
        what = f"the manifest of {reference} on registry {host}"
        declared = str(_json_object(response.body, what).get("mediaType", declared))
    if declared not in MANIFEST_TYPES:
        raise RegistryError(
            f"registry {host} serves {reference} as {declared or 'an untyped document'}, not one "
            f"of {', '.join(MANIFEST_TYPES)}; push the image again with a current Docker Engine "
            "or buildah"
        )
    return declared


def _put(session: _Session, target: ImageRef, manifest: Manifest) -> str:
    url = manifest_url(target, session.insecure)
    response = with_retries(
        lambda: session.request(
            "PUT", url, body=manifest.content, content_type=manifest.media_type
        ),
        what=f"PUT {url}",
    )
    if response.status in (401, 403):
        raise RegistryError(_may_not_push(session, target, response))
    if response.status not in (200, 201, 202):
        raise RegistryError(_refused(session.host, target, manifest, response))
    reported = str(response.headers.get("Docker-Content-Digest") or manifest.digest)
    if not digest_matches(manifest.content, reported):
        raise RegistryError(
            f"registry {session.host} stored {target} as {reported}, not as the manifest's "
            f"{manifest.digest}: it rewrote the manifest; use a registry that stores manifests "
            "as sent"
        )
    return reported


def _may_not_push(session: _Session, target: ImageRef, response: _Response) -> str:
    answer = f"HTTP {response.status}{_codes(response)}"
    if session.credentials is None:
        return (
            f"registry {session.host} refused a push to {target.repository} without credentials "
            f"({answer}); set CI_REGISTRY_USER / CI_REGISTRY_PASSWORD (or pass credentials) to a "
            "user or token that may push there"
        )
    return (
        f"registry {session.host} refused to let user {session.credentials.username!r} push to "
        f"{target.repository} ({answer}): the credentials may not push there (wrong, or "
        "read-only like a pull-only token); use a user or token with write access to the "
        "repository (check CI_REGISTRY_USER / CI_REGISTRY_PASSWORD, or the credentials passed in)"
    )


def _refused(host: str, target: ImageRef, manifest: Manifest, response: _Response) -> str:
    message = (
        f"registry {host} refused the manifest {manifest.digest} as {target} "
        f"(HTTP {response.status}{_codes(response)})"
    )
    if "BLOB_UNKNOWN" in _codes(response):
        return message + (
            f"; a manifest can only be tagged in the repository that holds its blobs: retag "
            f"within {target.repository} (copying between repositories is not supported)"
        )
    return message + (
        f"; check that the manifest was read from {target.repository} of this registry and that "
        "the user may push there"
    )


def _codes(response: _Response) -> str:
    """``: CODE message detail; ...`` from a registry's JSON error body, else ''.

    A ``detail`` that is not a string (distribution lists the access it wanted) is left out.
    """
    try:
        errors = json.loads(response.body).get("errors") or []
        parts = [
            " ".join(
                e[key] for key in ("code", "message", "detail") if isinstance(e.get(key), str)
            ).strip()
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError, TypeError):
        return ""
    text = "; ".join(part for part in parts if part)
    return f": {redact(text)[:300]}" if text else ""


def _platform_manifest(
    session: _Session, reference: ImageRef, index: Manifest, platform: str
) -> Manifest:
    what = f"the manifest list {reference} on registry {session.host}"
    digest = platform_entry(_json_object(index.content, what), platform)
    if digest is None:
        raise RegistryError(f"{what} names no image; push the image again")
    manifest = _fetch_manifest(session, reference.with_digest(digest))
    if manifest is None or manifest.is_index:
        state = "is missing" if manifest is None else "is itself a list (not supported)"
        raise RegistryError(f"{what}: its entry {digest} {state}; push the image again")
    return manifest


def _config_descriptor(host: str, reference: ImageRef, manifest: Manifest) -> str:
    what = f"the manifest {manifest.digest} of {reference} on registry {host}"
    config = _json_object(manifest.content, what).get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha"):
        raise RegistryError(f"{what} names no config blob; push the image again")
    return digest


def _fetch_blob(session: _Session, reference: ImageRef, digest: str) -> bytes:
    url = blob_url(reference, digest, session.insecure)
    response = with_retries(lambda: session.request("GET", url), what=f"GET {url}")
    if response.status == 404:
        raise RegistryError(
            f"registry {session.host} lacks the blob {digest} of {reference}; the image is "
            "incomplete: push it again"
        )
    _check_status(response, reference)
    if not digest_matches(response.body, digest):
        raise RegistryError(
            f"registry {session.host} served the blob {digest} of {reference} with other "
            "content; something between here and the registry altered it: reach it directly"
        )
    return response.body


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
            f"{redact(response.body[:200].decode(errors='replace'))}"
        )


# -- transport ----------------------------------------------------------------------------------


class _Session:
    """Requests to one repository of one registry, answering Basic and Bearer challenges.

    A registry that asked for Basic authentication once gets the credentials with the first
    request of every later session (a retag is then three requests, not four).

    ``actions`` are what a Bearer token is asked for on this repository (``pull``, or
    ``pull, push`` for a session that puts manifests).
    """

    def __init__(
        self,
        host: str,
        path: str,
        credentials: RegistryCredentials | None,
        timeout: float,
        *,
        insecure: tuple[str, ...] = (),
        actions: tuple[str, ...] = _PULL,
    ) -> None:
        self.host = host
        self.path = path
        self.credentials = credentials
        self.timeout = timeout
        self.insecure = insecure
        self.actions = actions
        self._authorization: HiddenText | None = None
        self._challenged = False
        if credentials is not None and host in _BASIC_HOSTS:
            self._authorization = HiddenText(credentials.basic_header())

    @classmethod
    def of(
        cls,
        reference: ImageRef,
        credentials: RegistryCredentials | None,
        insecure: Iterable[str],
        timeout: float,
        *,
        actions: tuple[str, ...] = _PULL,
    ) -> _Session:
        """A session for ``reference``'s repository."""
        return cls(
            registry_host(reference),
            api_path(reference),
            credentials,
            timeout,
            insecure=tuple(insecure),
            actions=actions,
        )

    def request(
        self, method: str, url: str, *, body: bytes | None = None, content_type: str | None = None
    ) -> _Response:
        """Send ``method url``; on the session's first 401 answer the challenge and send it again
        (credentials sent up front and refused are sent again only if the challenge asks for
        them)."""
        response = self._send(method, url, body=body, content_type=content_type)
        if response.status != 401 or self._challenged:
            return response
        self._challenged = True
        self._authorization = self._answer(response.headers.get("WWW-Authenticate", ""))
        if self._authorization is None:
            return response
        return self._send(method, url, body=body, content_type=content_type)

    def _send(
        self,
        method: str,
        url: str,
        authorization: HiddenText | None = None,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> _Response:
        headers = {"Accept": ", ".join(MANIFEST_TYPES), "User-Agent": "homelab-release"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        auth = authorization or self._authorization
        if auth is not None:
            headers["Authorization"] = auth.secret
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
        return _http(request, self.timeout)

    def _answer(self, challenge: str) -> HiddenText | None:
        kind, params = parse_challenge(challenge)
        if kind == "basic":
            _BASIC_HOSTS.add(self.host)
            return HiddenText(self.credentials.basic_header()) if self.credentials else None
        _BASIC_HOSTS.discard(self.host)
        if kind == "bearer" and "realm" in params:
            return HiddenText("Bearer " + self._token(params))
        raise RegistryError(
            f"registry {self.host} asks for an unsupported authentication {kind!r}; "
            "use a registry with Basic or Bearer token authentication"
        )

    def _token(self, params: Mapping[str, str]) -> str:
        realm = params["realm"]
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(
                f"registry {self.host} names a token service that is not an http(s) URL"
            )
        query = [("service", params.get("service", ""))] + [
            ("scope", scope) for scope in token_scopes(params.get("scope"), self.path, self.actions)
        ]
        url = realm + "?" + urllib.parse.urlencode([(k, v) for k, v in query if v])
        basic = HiddenText(self.credentials.basic_header()) if self.credentials else None
        if basic is not None and in_clear(realm, self.insecure):
            raise RegistryError(
                f"registry {self.host} asks for a token from {realm}, a plain-HTTP "
                "address that is not loopback: the credentials would cross the network "
                "unencrypted, so they are not sent; serve the token service over https (or, on a "
                f"trusted network, list {_netloc(realm)} in [registry] insecure)"
            )
        response = with_retries(
            lambda: self._send("GET", url, basic), what=f"token request to {realm}"
        )
        if response.status != 200:
            raise RegistryError(
                f"token service {realm} of registry {self.host} refused the "
                f"credentials (HTTP {response.status}); check CI_REGISTRY_USER / "
                "CI_REGISTRY_PASSWORD"
            )
        return _token_from(response, realm)


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
