"""``build_image``: build a service image on a Docker Engine, push every tag, confirm the digest.

The engine is driven through the docker SDK's low-level :class:`docker.APIClient` (the classic
builder; BuildKit-only Dockerfiles are rejected before anything is sent). The SDK's streams are
treated as untrusted: a build or push succeeds only when its stream carries no ``error`` record,
and the image counts as pushed only when the registry itself reports the same digest for every tag.

Order of work, so that nothing is half-done: check the arguments and the Dockerfile; reach the
engine; pull the cache image (``<repository>:latest`` by default; "not found" is fine); build;
tag; push the first (commit) tag and have the registry confirm its digest; only then push the
other tags, ``latest`` last, and check that the registry serves each at that same digest.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env

from homelab_release import git
from homelab_release.context import CiContext
from homelab_release.errors import BuildError, PushError, RegistryError, ReleaseError
from homelab_release.images import ImageRef, check_tag
from homelab_release.registry import (
    TransientError,
    manifest_digest,
    registry_host,
    with_retries,
)
from homelab_release.secrets import HiddenText, RegistryCredentials, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 600.0  # seconds one engine request may stay silent (a quiet RUN step included)
LOG_TAIL = 20
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
_BUILDKIT_RULES = (
    (re.compile(r"^#\s*syntax\s*=", re.IGNORECASE), "a '# syntax=' parser directive"),
    (
        re.compile(r"^RUN\s+(?:--\S+\s+)*--(?:mount|network|security)\b", re.IGNORECASE),
        "RUN --mount/--network/--security",
    ),
    (
        re.compile(
            r"^(?:COPY|ADD)\s+(?:--\S+\s+)*--(?:link|parents|exclude|checksum|keep-git-dir)\b",
            re.IGNORECASE,
        ),
        "COPY/ADD --link/--parents/--exclude/--checksum",
    ),
    (
        re.compile(r"^(?:RUN|COPY|ADD)\s.*<<-?[\"']?[A-Za-z_]", re.IGNORECASE),
        "a here-document (<<EOF)",
    ),
)


@dataclass(frozen=True)
class BuildDurations:
    """Seconds spent in each phase of :func:`build_image`.

    ``build`` includes tagging; ``push`` the pushes; ``verify`` the registry's digest checks
    (the commit tag's before ``latest`` is pushed, the others' after).
    """

    cache_pull: float = 0.0
    build: float = 0.0
    push: float = 0.0
    verify: float = 0.0

    @property
    def total(self) -> float:
        """The sum of the phases."""
        return self.cache_pull + self.build + self.push + self.verify


@dataclass(frozen=True)
class BuiltImage:
    """The result of :func:`build_image`.

    ``digest`` is the manifest digest the registry reports for every tag (None when not pushed);
    ``references`` are ``repository:tag@digest`` for each tag (``repository:tag`` when not pushed).
    """

    repository: str
    tags: tuple[str, ...]
    digest: str | None
    image_id: str
    references: tuple[str, ...]
    durations: BuildDurations
    cached_steps: int
    pushed: bool


@dataclass(frozen=True)
class _Plan:
    """Checked arguments: everything the engine will be asked to do."""

    context: Path
    dockerfile: Path
    repository: ImageRef
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    build_args: Mapping[str, str]
    target: str | None
    cache_from: tuple[ImageRef, ...]
    credentials: RegistryCredentials | None = field(repr=False)
    insecure: tuple[str, ...]

    @property
    def secrets(self) -> tuple[HiddenText, ...]:
        return (self.credentials.password,) if self.credentials else ()

    def auth_for(self, ref: ImageRef) -> dict[str, str] | None:
        """The SDK auth_config for ``ref``: our credentials only for the repository's registry."""
        same = registry_host(ref) == registry_host(self.repository)
        return self.credentials.docker_auth_config() if self.credentials and same else None


def build_image(
    *,
    context: Path | str,
    repository: str,
    tags: Sequence[str],
    dockerfile: Path | str | None = None,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    target: str | None = None,
    cache_from: Sequence[str] | None = None,
    push: bool = True,
    client: docker.APIClient | docker.DockerClient | None = None,
    credentials: RegistryCredentials | None = None,
    revision: str | None = None,
    source: str | None = None,
    insecure_registries: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build ``context`` into ``repository`` with every tag in ``tags``; push and confirm them.

    - ``dockerfile``: absolute, or relative to ``context`` (default ``Dockerfile``).
    - ``cache_from``: images to pull and use as layer cache; default ``[repository:latest]``;
      ``[]`` pulls nothing. A cache image that does not exist yet is skipped.
    - ``credentials``: default from :class:`~homelab_release.context.CiContext` (``CI_REGISTRY_USER`` /
      ``CI_REGISTRY_PASSWORD``); used for the repository's registry only.
    - ``revision`` / ``source``: the ``org.opencontainers.image.revision`` / ``.source`` labels;
      default ``CI_COMMIT_SHA`` (else the context's git HEAD) and ``CI_PROJECT_URL``.
    - ``client``: an SDK client; default one from ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY``...).
    - ``timeout``: seconds any one engine request may stay silent.
    - ``env``: where every variable above is read (``DOCKER_HOST`` and friends, ``CI_REGISTRY_*``,
      ``CI_COMMIT_SHA``, ``CI_PROJECT_URL``); default the process environment.

    Raises :class:`BuildError` (bad context, BuildKit-only Dockerfile, engine unreachable, failed
    step), :class:`PushError` (push or digest check failed), :class:`ImageRefError` (bad name).
    """
    root = Path(context)
    repo = _repository(repository)
    ctx = CiContext.from_env(env)
    plan = _Plan(
        tags=push_order(tags),
        dockerfile=_dockerfile(root, dockerfile),
        context=root.resolve(),
        repository=repo,
        labels=_labels(root, labels or {}, revision, source, ctx),
        build_args=dict(build_args or {}),
        target=target,
        cache_from=_cache_refs(repo, cache_from),
        credentials=credentials if credentials is not None else ctx.registry_credentials,
        insecure=tuple(insecure_registries),
    )
    api, owned = _engine(client, timeout, ctx.docker)
    try:
        return _build_and_push(api, plan, push=push)
    finally:
        if owned:
            api.close()


def _build_and_push(api: docker.APIClient, plan: _Plan, *, push: bool) -> BuiltImage:
    watch = _Stopwatch()
    with watch.phase("cache_pull"):
        cache = _pull_cache(api, plan, strict=push)
    with watch.phase("build"):
        image_id, cached = _run_build(api, plan, cache)
        for tag in plan.tags:
            _tag(api, plan, image_id, tag)
    digest = _publish(api, plan, watch) if push else None
    durations = BuildDurations(**watch.seconds)
    references = tuple(
        f"{plan.repository}:{tag}" + (f"@{digest}" if digest else "") for tag in plan.tags
    )
    log.info("%s: %s", plan.repository, ", ".join(references))
    return BuiltImage(
        repository=str(plan.repository),
        tags=plan.tags,
        digest=digest,
        image_id=image_id,
        references=references,
        durations=durations,
        cached_steps=cached,
        pushed=push,
    )


# -- checks before the engine is contacted -----------------------------------------------------


def _cache_refs(repository: ImageRef, cache_from: Sequence[str] | None) -> tuple[ImageRef, ...]:
    """The cache images to pull: ``cache_from`` as given, by default ``<repository>:latest``."""
    refs = [f"{repository}:latest"] if cache_from is None else cache_from
    return tuple(ImageRef.parse(ref) for ref in refs)


def _repository(repository: str) -> ImageRef:
    ref = ImageRef.parse(repository)
    if ref.tag is not None or ref.digest is not None:
        raise BuildError(
            f"repository {repository!r} must be a name without tag or digest "
            f"(for example {ref.repository!r}); pass the tags in tags=[...]"
        )
    return ref


def push_order(tags: Sequence[str] | str) -> tuple[str, ...]:
    """Checked, de-duplicated tags in push order: as given, but ``latest`` last.

    >>> push_order(["latest", "3f1c2ab"])
    ('3f1c2ab', 'latest')
    """
    if isinstance(tags, str):
        tags = [tags]
    unique = tuple(dict.fromkeys(check_tag(tag) for tag in tags))
    if not unique:
        raise BuildError("no tags given: pass at least one, for example the commit SHA")
    return tuple(t for t in unique if t != "latest") + tuple(t for t in unique if t == "latest")


def _dockerfile(context: Path, dockerfile: Path | str | None) -> Path:
    if not context.is_dir():
        raise BuildError(
            f"build context {context} is not a folder; pass the service's folder "
            "(services.NAME.context in homelab-release.toml)"
        )
    path = context / (dockerfile or "Dockerfile")
    if not path.is_file():
        raise BuildError(
            f"Dockerfile {path} does not exist; add it or pass dockerfile= "
            "(services.NAME.dockerfile in homelab-release.toml)"
        )
    check_buildkit(path)
    return path.resolve()


def check_buildkit(dockerfile: Path) -> None:
    """Raise :class:`BuildError` if ``dockerfile`` uses features only BuildKit understands."""
    found = buildkit_features(dockerfile.read_text(encoding="utf-8", errors="replace"))
    if found:
        raise BuildError(
            f"{dockerfile} needs BuildKit ({'; '.join(found)}), which the Docker Engine API "
            "used by homelab-release does not run; rewrite it for the classic builder"
        )


def buildkit_features(text: str) -> tuple[str, ...]:
    """The BuildKit-only features ``text`` (a Dockerfile) uses, described for a message."""
    found: list[str] = []
    for line in _instructions(text):
        for pattern, feature in _BUILDKIT_RULES:
            if pattern.search(line) and feature not in found:
                found.append(feature)
    return tuple(found)


def _instructions(text: str) -> Iterator[str]:
    """Dockerfile lines with continuations joined; comments kept only before the first instruction."""
    pending = ""
    started = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and (started or pending):
            continue
        if not started and line.startswith("#"):
            yield line
            continue
        started = started or bool(line)
        pending += line.removesuffix("\\").strip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


def _labels(
    context: Path,
    labels: Mapping[str, str],
    revision: str | None,
    source: str | None,
    ctx: CiContext,
) -> dict[str, str]:
    """The OCI labels (revision and source default to the context's), then ``labels``."""
    oci = {"org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    revision = revision or ctx.commit_sha or _git_head(context)
    source = source or ctx.project_url
    if revision:
        oci["org.opencontainers.image.revision"] = revision
    if source:
        oci["org.opencontainers.image.source"] = redact(source)
    return {**oci, **labels}


def _git_head(context: Path) -> str | None:
    if not context.is_dir():
        return None
    try:
        return git.resolve(context, "HEAD")
    except ReleaseError:
        return None


# -- the engine --------------------------------------------------------------------------------


def _engine(
    client: docker.APIClient | docker.DockerClient | None,
    timeout: float,
    env: Mapping[str, str],
) -> tuple[docker.APIClient, bool]:
    """The low-level client to use and whether we created it (and so must close it)."""
    if isinstance(client, docker.DockerClient):
        client = client.api
    if client is not None:
        _answers(client.ping, str(client.base_url))
        return client, False
    host = env.get("DOCKER_HOST", "")
    where = f"DOCKER_HOST={host}" if host else f"{DEFAULT_HOST} (the default: DOCKER_HOST is unset)"
    _check_unix_socket(host or DEFAULT_HOST, where)
    settings = kwargs_from_env(environment=env)
    return _answers(
        lambda: docker.APIClient(version="auto", timeout=int(timeout), **settings), where
    ), True


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


def _pull_cache(api: docker.APIClient, plan: _Plan, *, strict: bool) -> tuple[str, ...]:
    """Pull each cache image; return those now in the engine. "Not found" is skipped."""
    pulled = []
    for ref in plan.cache_from:
        try:
            _pull_one(api, plan, ref)
        except _NotFoundError:
            log.info("no cache image %s yet: building without it", ref)
            continue
        except PushError as err:
            if strict:
                raise
            log.warning("building without cache image %s: %s", ref, err)
            continue
        pulled.append(str(ref))
    return tuple(pulled)


def _pull_one(api: docker.APIClient, plan: _Plan, ref: ImageRef) -> None:
    auth = plan.auth_for(ref)
    _engine_call(
        f"pulling cache image {ref}",
        plan,
        lambda: _drain(api.pull(str(ref), stream=True, decode=True, auth_config=auth)),
    )


class _NotFoundError(Exception):
    """The engine (or registry) says the image does not exist."""


def _drain(records: Iterator[dict[str, Any]]) -> None:
    for record in records:
        _raise_in_band(record)


def _raise_in_band(record: Mapping[str, Any]) -> None:
    if "error" in record or "errorDetail" in record:
        detail = record.get("errorDetail")
        message = str(record.get("error") or (detail or {}).get("message") or record)
        raise _InBandError(message)


class _InBandError(Exception):
    """An ``error`` record inside an HTTP 200 stream."""


def _engine_call(what: str, plan: _Plan, call: Callable[[], T]) -> T:
    """Run ``call`` with retries on transient failures; failures become :class:`PushError`."""

    def attempt() -> T:
        try:
            return call()
        except (
            _InBandError,
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        ) as err:
            message = redact(_explain(err), plan.secrets)
            if isinstance(err, docker.errors.NotFound) or _NOT_FOUND.search(message):
                raise _NotFoundError(message) from None
            if _TRANSIENT.search(message) or isinstance(err, requests.exceptions.ConnectionError):
                raise TransientError(message) from None
            raise PushError(f"{what} failed: {message}{_hint(message, plan)}") from None

    try:
        return with_retries(attempt, what=what)
    except TransientError as err:
        raise PushError(
            f"{what} failed: {err}; registry {registry_host(plan.repository)} is unreachable or "
            "failing: check that it runs and that the engine can reach it"
        ) from None


def _explain(err: BaseException) -> str:
    if isinstance(err, docker.errors.APIError) and err.explanation:
        return str(err.explanation)
    return str(err)


def _hint(message: str, plan: _Plan) -> str:
    if re.search(r"unauthorized|authentication required|denied|forbidden", message, re.IGNORECASE):
        user = f"user {plan.credentials.username!r}" if plan.credentials else "no credentials"
        return (
            f" (registry {registry_host(plan.repository)} refused {user}); set CI_REGISTRY_USER / "
            "CI_REGISTRY_PASSWORD or pass credentials= with a user that may push there"
        )
    return ""


def _run_build(api: docker.APIClient, plan: _Plan, cache: tuple[str, ...]) -> tuple[str, int]:
    """Build; return the image ID and how many steps came from cache. Streams the log at DEBUG."""
    log.info("building %s from %s", plan.repository, plan.context)
    lines = _BuildLog(plan.secrets, plan.repository.path.rsplit("/", 1)[-1])
    image_id = None
    try:
        for record in api.build(
            path=str(plan.context),
            dockerfile=str(plan.dockerfile),
            buildargs=dict(plan.build_args),
            labels=dict(plan.labels),
            target=plan.target,
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
            f"building {plan.repository} from {plan.context} failed: "
            f"{redact(_explain(err), plan.secrets)}{lines.tail()}"
        ) from None
    if image_id is None:
        raise BuildError(f"building {plan.repository} ended without an image ID{lines.tail()}")
    log.info("built %s (%d steps from cache)", image_id[:19], lines.cached)
    return image_id, lines.cached


def _build_record(record: Mapping[str, Any], lines: _BuildLog) -> str | None:
    if isinstance(record.get("stream"), str):
        lines.feed(record["stream"])
    _raise_in_band(record)
    aux = record.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
        return str(aux["ID"])
    return None


class _BuildLog:
    """Splits the build stream into lines, logs them, keeps the last ones, counts cache hits."""

    def __init__(self, secrets: Sequence[HiddenText], label: str = "build") -> None:
        self._secrets = secrets
        self._label = label
        self._partial = ""
        self._tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.cached = 0

    def feed(self, text: str) -> None:
        *complete, self._partial = (self._partial + text).split("\n")
        for raw in complete:
            line = redact(raw.rstrip(), self._secrets)
            if not line:
                continue
            # "Step 2/5 : RUN ..." lines are the progress people follow; the rest is detail.
            level = logging.INFO if line.startswith("Step ") else logging.DEBUG
            log.log(level, "%s: %s", self._label, line)
            self._tail.append(line)
            self.cached += line.strip() == "---> Using cache"

    def tail(self) -> str:
        if self._partial.strip():
            self.feed("\n")
        if not self._tail:
            return ""
        return "\n  last lines of the build log:\n    " + "\n    ".join(self._tail)


def _tag(api: docker.APIClient, plan: _Plan, image_id: str, tag: str) -> None:
    try:
        ok = api.tag(image_id, str(plan.repository), tag, force=True)
    except docker.errors.DockerException as err:
        raise BuildError(f"tagging {image_id} as {plan.repository}:{tag} failed: {err}") from None
    if not ok:
        raise BuildError(f"the engine refused to tag {image_id} as {plan.repository}:{tag}")


def _push_tag(api: docker.APIClient, plan: _Plan, tag: str) -> str | None:
    """Push one tag; return the digest the engine reports (its ``aux`` record), if any."""
    name = f"{plan.repository}:{tag}"
    log.info("pushing %s", name)
    auth = plan.auth_for(plan.repository)

    def push() -> str | None:
        digest = None
        for record in api.push(
            str(plan.repository), tag=tag, stream=True, decode=True, auth_config=auth
        ):
            _raise_in_band(record)
            aux = record.get("aux")
            if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
                digest = str(aux["Digest"])
        return digest

    try:
        digest = _engine_call(f"pushing {name}", plan, push)
    except _NotFoundError as err:
        raise PushError(f"pushing {name} failed: {err}{_hint(str(err), plan)}") from None
    log.info("pushed %s%s", name, f"@{digest}" if digest else "")
    return digest


def _publish(api: docker.APIClient, plan: _Plan, watch: _Stopwatch) -> str:
    """Push the first tag and confirm it with the registry; only then push the others.

    ``latest`` is always last (:func:`push_order`), so it moves only once the registry, not just
    the push stream, serves the commit tag. Every tag is then asked for exactly once.
    """
    first, *rest = plan.tags
    with watch.phase("push"):
        engine_digest = _push_tag(api, plan, first)
    with watch.phase("verify"):
        digest = _confirm(plan, first, engine_digest)
    with watch.phase("push"):
        pushed = {tag: _push_tag(api, plan, tag) for tag in rest}
    with watch.phase("verify"):
        for tag in rest:
            _confirm(plan, tag, pushed[tag], expected=digest)
    return digest


def _confirm(plan: _Plan, tag: str, pushed: str | None, expected: str | None = None) -> str:
    """The digest the registry serves for ``tag``; it must agree with the push and ``expected``."""
    name = f"{plan.repository}:{tag}"
    try:
        found = manifest_digest(
            plan.repository.with_tag(tag), plan.credentials, insecure=plan.insecure
        )
    except RegistryError as err:
        raise PushError(f"pushed {name} but cannot confirm it: {err}") from None
    if found is None:
        raise PushError(f"pushed {name} but the registry does not serve it")
    if pushed is not None and pushed != found:
        raise PushError(f"the engine pushed {name} as {pushed} but the registry serves {found}")
    if expected is not None and found != expected:
        raise PushError(
            f"the registry serves {name} at {found} but {plan.repository}:{plan.tags[0]} at "
            f"{expected}: did another job push {name} at the same time?"
        )
    log.debug("registry confirms %s@%s", name, found)
    return found


class _Stopwatch:
    """Seconds spent in each phase of a build (a phase may be entered more than once)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - start
