"""The Docker Engine, driven through the docker SDK's low-level :class:`docker.APIClient`.

The SDK can only drive the engine's classic builder: Dockerfiles that need BuildKit are refused
before anything is sent (:func:`~homelab_release.dockerfile.buildkit_features`). Its streams are
treated as untrusted: a pull, build or push succeeds only when its stream carries no ``error``
record. Before the build, the cache images (``<repository>:latest`` unless the request names
others) are pulled, so that an empty docker-in-docker engine reuses the registry's layers; a cache
image that is missing or cannot be pulled never fails the build.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env

from homelab_release.dockerfile import buildkit_features
from homelab_release.engines.base import (
    DEFAULT_TIMEOUT,
    BuildLog,
    BuildRequest,
    LocalImage,
    credential_secrets,
    step_count,
)
from homelab_release.errors import BuildError, PushError
from homelab_release.images import ImageRef
from homelab_release.registry import TransientError, registry_host, with_retries
from homelab_release.secrets import RegistryCredentials, redact

__all__ = ["DEFAULT_HOST", "ENGINE_HINT", "DockerBuilder", "docker_host"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HOST = "unix:///var/run/docker.sock"
ENGINE_HINT = (
    "start dockerd, or set DOCKER_HOST to a reachable engine (in GitLab CI: a docker:dind "
    "service with DOCKER_HOST=tcp://docker:2375, or the runner's socket unix:///var/run/docker.sock)"
)
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|i/o timeout|handshake timeout|unexpected EOF"
    r"|\b50[0234]\b|service unavailable|bad gateway|gateway timeout|too many requests",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"not found|manifest unknown|name unknown|does not exist", re.IGNORECASE)
_REFUSED = re.compile(r"unauthorized|authentication required|denied|forbidden", re.IGNORECASE)
_PROGRESS = re.compile(r"^Step \d+/\d+ : ")
_CACHE_HIT = re.compile(r"^\s*---> Using cache$")


def docker_host(settings: Mapping[str, str]) -> str:
    """``DOCKER_HOST`` from ``settings``, else the default socket."""
    return settings.get("DOCKER_HOST") or DEFAULT_HOST


class DockerBuilder:
    """The Docker Engine as a build engine (see :class:`~homelab_release.engines.base.Engine`)."""

    name = "docker"

    def __init__(
        self,
        client: docker.APIClient | docker.DockerClient | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Use ``client``, or connect on first use to the engine ``settings`` name
        (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``; default the local socket)."""
        self._api = client.api if isinstance(client, docker.DockerClient) else client
        self._settings = dict(settings or {})
        self._timeout = timeout
        self._owned = False

    @property
    def api(self) -> docker.APIClient:
        """The SDK's low-level client, connected (and checked) on first use."""
        if self._api is None:
            self._api = _connect(self._settings, self._timeout)
            self._owned = True
        return self._api

    def answers(self) -> bool:
        """Whether the engine answers a ping (for choosing an engine; never raises)."""
        try:
            self.api.ping()
        except (BuildError, docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        return True

    def unsupported(self, dockerfile: str) -> tuple[str, ...]:
        return buildkit_features(dockerfile)

    def remedy(self) -> str:
        return (
            "they need BuildKit, which the docker SDK cannot drive: build it with the buildah "
            'engine (--engine buildah, [build] engine = "buildah" or '
            "HOMELAB_RELEASE_ENGINE=buildah), or rewrite it for the classic builder"
        )

    def build(self, request: BuildRequest, credentials: RegistryCredentials | None) -> LocalImage:
        started = time.monotonic()
        cache = self._pull_cache(request, credentials)
        pulled = time.monotonic()
        image_id, cached = self._run_build(request, cache, credentials)
        for tag in request.tags:
            self._tag(request, image_id, tag)
        seconds = {"cache_pull": pulled - started, "build": time.monotonic() - pulled}
        return LocalImage(image_id, cached, seconds)

    def push(
        self,
        request: BuildRequest,
        image: LocalImage,
        tag: str,
        credentials: RegistryCredentials | None,
    ) -> str | None:
        name = f"{request.repository}:{tag}"
        log.info("pushing %s", name)
        auth = _auth_for(request.repository, request, credentials)

        def push() -> str | None:
            digest = None
            records = _read_all(
                self.api.push(
                    str(request.repository), tag=tag, stream=True, decode=True, auth_config=auth
                )
            )
            for record in records:
                aux = record.get("aux")
                if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
                    digest = str(aux["Digest"])
            return digest

        try:
            digest = _engine_call(f"pushing {name}", request, credentials, push)
        except _NotFoundError as err:
            hint = _hint(str(err), request, credentials)
            raise PushError(f"pushing {name} failed: {err}{hint}") from None
        log.info("pushed %s%s", name, f"@{digest}" if digest else "")
        return digest

    def close(self) -> None:
        if self._owned and self._api is not None:
            self._api.close()
            self._api = None

    # -- steps -------------------------------------------------------------------------------

    def _pull_cache(
        self, request: BuildRequest, credentials: RegistryCredentials | None
    ) -> tuple[str, ...]:
        """Pull each cache image; those now in the engine. Missing or failing ones are skipped."""
        refs = request.cache_from
        if refs is None:
            refs = (request.reference("latest"),)
        pulled = []
        for ref in refs:
            auth = _auth_for(ref, request, credentials)
            call = lambda ref=ref, auth=auth: _drain(  # noqa: E731
                self.api.pull(str(ref), stream=True, decode=True, auth_config=auth)
            )
            try:
                _engine_call(f"pulling cache image {ref}", request, credentials, call)
            except _NotFoundError:
                log.info("no cache image %s yet: building without it", ref)
                continue
            except PushError as err:
                log.warning("building without cache image %s: %s", ref, err)
                continue
            pulled.append(str(ref))
        return tuple(pulled)

    def _run_build(
        self,
        request: BuildRequest,
        cache: tuple[str, ...],
        credentials: RegistryCredentials | None,
    ) -> tuple[str, int]:
        """Build; the image ID and how many steps came from cache. Streams the log at DEBUG."""
        log.info("building %s from %s", request.repository, request.context)
        secrets = credential_secrets(credentials)
        lines = BuildLog(
            secrets,
            request.repository.path.rsplit("/", 1)[-1],
            logger=log,
            progress=_PROGRESS,  # "Step 2/5 : RUN ...": the lines people follow
            cache_hit=_CACHE_HIT,
        )
        image_id = None
        try:
            for record in self.api.build(
                path=str(request.context),
                dockerfile=str(request.dockerfile),
                buildargs=dict(request.build_args),
                labels=dict(request.labels),
                target=request.target,
                cache_from=list(cache) or None,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            ):
                image_id = _build_record(record, lines) or image_id
        except (
            _InBandError,
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        ) as err:
            raise BuildError(
                f"building {request.repository} from {request.context} failed: "
                f"{redact(_explain(err), secrets)}{lines.tail()}"
            ) from None
        if image_id is None:
            raise BuildError(
                f"building {request.repository} ended without an image ID{lines.tail()}"
            )
        log.info("built %s (%s from cache)", image_id[:19], step_count(lines.cached))
        return image_id, lines.cached

    def _tag(self, request: BuildRequest, image_id: str, tag: str) -> None:
        name = f"{request.repository}:{tag}"
        try:
            ok = self.api.tag(image_id, str(request.repository), tag, force=True)
        except docker.errors.DockerException as err:
            raise BuildError(f"tagging {image_id} as {name} failed: {err}") from None
        if not ok:
            raise BuildError(f"the engine refused to tag {image_id} as {name}")


def _auth_for(
    ref: ImageRef, request: BuildRequest, credentials: RegistryCredentials | None
) -> dict[str, str] | None:
    """The SDK auth_config for ``ref``: our credentials only for the repository's registry."""
    same = registry_host(ref) == registry_host(request.repository)
    return credentials.docker_auth_config() if credentials and same else None


# -- reaching the engine ---------------------------------------------------------------------


def _connect(settings: Mapping[str, str], timeout: float) -> docker.APIClient:
    """A client of the engine ``settings`` name; :class:`BuildError` saying how to reach one."""
    host = settings.get("DOCKER_HOST", "")
    where = f"DOCKER_HOST={host}" if host else f"{DEFAULT_HOST} (the default: DOCKER_HOST is unset)"
    _check_unix_socket(host or DEFAULT_HOST, where)
    options = kwargs_from_env(environment=dict(settings))
    return _answers(
        lambda: docker.APIClient(version="auto", timeout=int(timeout), **options), where
    )


def _answers(call: Callable[[], T], where: str) -> T:
    try:
        return call()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        raise BuildError(
            f"cannot reach the Docker Engine at {where} ({err}); {ENGINE_HINT}"
        ) from None


def _check_unix_socket(host: str, where: str) -> None:
    """Connect to a ``unix://`` engine socket first: the SDK leaks its socket when that fails."""
    if not host.startswith(("unix://", "http+unix://")):
        return
    path = host.split("://", 1)[1]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(10)
            probe.connect(path)
    except OSError as err:
        raise BuildError(
            f"cannot reach the Docker Engine at {where} ({err}); {ENGINE_HINT}"
        ) from None


# -- streams -----------------------------------------------------------------------------------


class _NotFoundError(Exception):
    """The engine (or registry) says the image does not exist."""


class _InBandError(Exception):
    """An ``error`` record inside an HTTP 200 stream."""


def _drain(records: Iterator[dict[str, Any]]) -> None:
    _read_all(records)


def _read_all(records: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every record of a stream, read to its end (which frees the connection); the first
    in-band error is raised only then."""
    every = list(records)
    for record in every:
        _raise_in_band(record)
    return every


def _raise_in_band(record: Mapping[str, Any]) -> None:
    if "error" in record or "errorDetail" in record:
        detail = record.get("errorDetail")
        message = str(record.get("error") or (detail or {}).get("message") or record)
        raise _InBandError(message)


def _engine_call(
    what: str,
    request: BuildRequest,
    credentials: RegistryCredentials | None,
    call: Callable[[], T],
) -> T:
    """Run ``call`` with retries on transient failures; failures become :class:`PushError`."""

    def attempt() -> T:
        try:
            return call()
        except (
            _InBandError,
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        ) as err:
            message = redact(_explain(err), credential_secrets(credentials))
            if isinstance(err, docker.errors.NotFound) or _NOT_FOUND.search(message):
                raise _NotFoundError(message) from None
            if _TRANSIENT.search(message) or isinstance(err, requests.exceptions.ConnectionError):
                raise TransientError(message) from None
            hint = _hint(message, request, credentials)
            raise PushError(f"{what} failed: {message}{hint}") from None

    try:
        return with_retries(attempt, what=what)
    except TransientError as err:
        raise PushError(
            f"{what} failed: {err}; registry {registry_host(request.repository)} is unreachable "
            "or failing: check that it runs and that the engine can reach it"
        ) from None


def _explain(err: BaseException) -> str:
    if isinstance(err, docker.errors.APIError) and err.explanation:
        return str(err.explanation)
    return str(err)


def _hint(message: str, request: BuildRequest, credentials: RegistryCredentials | None) -> str:
    if not _REFUSED.search(message):
        return ""
    user = f"user {credentials.username!r}" if credentials else "no credentials"
    return (
        f" (registry {registry_host(request.repository)} refused {user}); set CI_REGISTRY_USER / "
        "CI_REGISTRY_PASSWORD or pass credentials= with a user that may push there"
    )


def _build_record(record: Mapping[str, Any], lines: BuildLog) -> str | None:
    if isinstance(record.get("stream"), str):
        lines.feed(record["stream"])
    _raise_in_band(record)
    aux = record.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
        return str(aux["ID"])
    return None
