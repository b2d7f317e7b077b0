"""``build_image``: build a service image on an engine, push its tags, confirm the digest.

The work is the same for every engine (:mod:`homelab_release.engines`), so that nothing is
half-done: check the arguments and the Dockerfile (a file the engine cannot build is refused
before anything runs); build; push the first (commit) tag and have the registry confirm its
digest; only then push the other tags, ``latest`` last, and check that the registry serves each at
that same digest. The digest always comes from the registry, never from local storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, Unpack

from homelab_release import git
from homelab_release.config import CONFIG_NAME, load_config
from homelab_release.context import CiContext
from homelab_release.dockerfile import read_dockerfile
from homelab_release.engines.base import DEFAULT_TIMEOUT, BuildRequest, Engine, LocalImage
from homelab_release.engines.choice import make_engine
from homelab_release.errors import BuildError, PushError, RegistryError, ReleaseError
from homelab_release.images import ImageRef, check_tag
from homelab_release.latest import LATEST, REVISION_LABEL, LatestMove, advance_latest
from homelab_release.registry import manifest_digest
from homelab_release.secrets import RegistryCredentials, redact

__all__ = [
    "BuildArguments",
    "BuildDurations",
    "BuildRequest",
    "BuiltImage",
    "build_image",
    "build_request",
    "push_order",
    "refusal",
]

log = logging.getLogger(__name__)

SOURCE_LABEL = "org.opencontainers.image.source"
CREATED_LABEL = "org.opencontainers.image.created"


class BuildArguments(TypedDict, total=False):
    """The keyword form of a :class:`BuildRequest`: the arguments of :func:`build_request`."""

    context: Path | str
    repository: str
    tags: Sequence[str] | str
    dockerfile: Path | str | None
    build_args: Mapping[str, str] | None
    labels: Mapping[str, str] | None
    target: str | None
    cache_from: Sequence[str] | None
    cache_repo: str | None
    insecure_registries: Iterable[str]
    timeout: float


@dataclass(frozen=True)
class BuildDurations:
    """Seconds spent in each phase of :func:`build_image`.

    ``cache_pull`` is the Docker Engine's pull of its cache images (0 on other engines);
    ``build`` includes tagging; ``push`` the pushes; ``verify`` the registry's digest checks.
    """

    cache_pull: float = 0.0
    build: float = 0.0
    push: float = 0.0
    verify: float = 0.0

    @property
    def total(self) -> float:
        """The sum of the phases."""
        return self.cache_pull + self.build + self.push + self.verify

    def as_dict(self, ndigits: int) -> dict[str, float]:
        """Each phase's seconds by name, in field order, rounded to ``ndigits`` decimals."""
        return {phase.name: round(getattr(self, phase.name), ndigits) for phase in fields(self)}


@dataclass(frozen=True)
class BuiltImage:
    """The result of :func:`build_image`.

    ``digest`` is the manifest digest the registry reports for every tag (None when not pushed);
    ``references`` are ``repository:tag@digest`` for each tag the registry serves at that digest
    (``repository:tag`` when not pushed); ``latest`` is left out of them when it was not moved.
    """

    repository: str
    tags: tuple[str, ...]
    digest: str | None
    image_id: str
    references: tuple[str, ...]
    durations: BuildDurations
    cached_steps: int
    pushed: bool
    engine: str = "docker"
    latest: LatestMove | None = None  # when ``latest`` was asked for: moved, or why not


def build_request(
    *,
    context: Path | str,
    repository: str,
    tags: Sequence[str] | str,
    dockerfile: Path | str | None = None,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    target: str | None = None,
    cache_from: Sequence[str] | None = None,
    cache_repo: str | None = None,
    insecure_registries: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> BuildRequest:
    """Check the arguments of a build and return them as a :class:`BuildRequest`.

    - ``dockerfile``: absolute, or relative to ``context`` (default ``Dockerfile``).
    - ``tags``: pushed in the order given, ``latest`` last (:func:`push_order`).
    - ``cache_from``: images the Docker Engine pulls as layer cache; default
      ``[repository:latest]``; ``[]`` pulls nothing.
    - ``cache_repo``: a repository (no tag) buildah reads and writes every layer of every stage
      to; None or ``""``: none.
    - ``labels``: added after the OCI labels :func:`build_image` sets.
    - ``timeout``: seconds any one engine request (or quiet build step) may take.

    Raises :class:`BuildError` (no context folder or Dockerfile, no tags, a repository with a
    tag) and :class:`~homelab_release.errors.ImageRefError` (a name that is not valid).
    """
    root = Path(context)
    repo = _repository(repository)
    return BuildRequest(
        context=root.resolve(),
        dockerfile=_dockerfile(root, dockerfile),
        repository=repo,
        tags=push_order(tags),
        labels=dict(labels or {}),
        build_args=dict(build_args or {}),
        target=target,
        cache_from=None if cache_from is None else tuple(ImageRef.parse(r) for r in cache_from),
        cache_repo=_repository(cache_repo, "cache_repo") if cache_repo else None,
        insecure_registries=tuple(insecure_registries),
        timeout=timeout,
    )


def build_image(
    request: BuildRequest | None = None,
    *,
    engine: Engine | str | None = None,
    credentials: RegistryCredentials | None = None,
    push: bool = True,
    revision: str | None = None,
    source: str | None = None,
    env: Mapping[str, str] | None = None,
    **arguments: Unpack[BuildArguments],
) -> BuiltImage:
    """Build ``request`` on ``engine``, push every tag and confirm them with the registry.

    Give a :class:`BuildRequest` from :func:`build_request`, or its keyword arguments directly
    (``build_image(context="vote", repository="registry/homelab/vote", tags=[sha, "latest"])``).

    - ``engine``: an :class:`~homelab_release.engines.base.Engine`, or ``"docker"``,
      ``"buildah"`` or ``"auto"``; None: ``[build] engine`` of the ``homelab-release.toml`` at the
      context's git top level, else ``HOMELAB_RELEASE_ENGINE``, else ``auto`` (the Docker Engine
      when one answers on ``DOCKER_HOST`` or the default socket, else buildah when installed).
    - ``cache_repo`` (keyword form): None takes ``[build] cache_repo`` of that file, else
      ``${CI_REGISTRY_IMAGE}/cache``; ``""`` builds without one. A :class:`BuildRequest` is
      used as it is.
    - ``credentials``: default ``CI_REGISTRY_USER`` / ``CI_REGISTRY_PASSWORD`` (from ``env``);
      given to the engine for the repository's registry only.
    - ``revision`` / ``source``: the ``org.opencontainers.image.revision`` / ``.source`` labels;
      default ``CI_COMMIT_SHA`` (else the context's git HEAD) and ``CI_PROJECT_URL``.
    - ``env``: the mapping every default above is read from; default the process environment.

    Raises :class:`BuildError` (bad arguments, a Dockerfile the engine cannot build, no engine,
    failed step), :class:`PushError` (push or digest check failed) and
    :class:`~homelab_release.errors.ImageRefError` (bad name).
    """
    ctx = CiContext.from_env(env)
    project = _project_settings(request, arguments, ctx, engine)
    request = _request(request, arguments, project.cache_repo)
    request = _with_oci_labels(request, revision, source, ctx)
    owned = engine is None or isinstance(engine, str)
    builder = (
        make_engine(engine, ctx, config=project.engine, timeout=request.timeout)
        if engine is None or isinstance(engine, str)
        else engine
    )
    try:
        _refuse_unsupported(builder, request)
        auth = credentials if credentials is not None else ctx.registry_credentials
        return _build_and_push(builder, request, auth, push=push)
    finally:
        if owned:
            builder.close()


def _build_and_push(
    engine: Engine, request: BuildRequest, credentials: RegistryCredentials | None, *, push: bool
) -> BuiltImage:
    watch = _Stopwatch()
    local = engine.build(request, credentials)
    digest = _push_tags(engine, request, local, credentials, watch) if push else None
    latest = None
    if digest and LATEST in request.tags:
        with watch.phase("push"):
            latest = advance_latest(
                request.repository,
                digest,
                request.labels.get(REVISION_LABEL),
                root=request.context,
                credentials=credentials,
                insecure=request.insecure_registries,
            )
    shown = [t for t in request.tags if t != LATEST or latest is None or latest.moved]
    references = tuple(
        f"{request.repository}:{tag}" + (f"@{digest}" if digest else "") for tag in shown
    )
    log.info("%s: %s", request.repository, ", ".join(references))
    return BuiltImage(
        repository=str(request.repository),
        tags=request.tags,
        digest=digest,
        image_id=local.image_id,
        references=references,
        durations=_durations(local, watch),
        cached_steps=local.cached_steps,
        pushed=push,
        engine=engine.name,
        latest=latest,
    )


def _durations(local: LocalImage, watch: _Stopwatch) -> BuildDurations:
    return BuildDurations(
        cache_pull=local.seconds.get("cache_pull", 0.0),
        build=local.seconds.get("build", 0.0),
        push=watch.seconds.get("push", 0.0),
        verify=watch.seconds.get("verify", 0.0),
    )


# -- checks before the engine is contacted -----------------------------------------------------


def _request(
    request: BuildRequest | None, arguments: BuildArguments, cache_repo: str
) -> BuildRequest:
    if request is not None and arguments:
        raise BuildError(f"give a BuildRequest or its arguments, not both ({', '.join(arguments)})")
    if request is not None:
        return request
    missing = [key for key in ("context", "repository", "tags") if key not in arguments]
    if missing:
        raise BuildError(f"build_image needs a BuildRequest or {', '.join(missing)}=")
    if arguments.get("cache_repo") is None:
        arguments = {**arguments, "cache_repo": cache_repo}
    return build_request(**arguments)


@dataclass(frozen=True)
class _ProjectSettings:
    """``[build]`` of the monorepo a build's context is in ('' where it says nothing)."""

    engine: str = ""
    cache_repo: str = ""


def _project_settings(
    request: BuildRequest | None,
    arguments: BuildArguments,
    ctx: CiContext,
    engine: Engine | str | None,
) -> _ProjectSettings:
    """The engine and default cache repository of the ``homelab-release.toml`` at the git top
    level of the build's context (read only when needed), else ``${CI_REGISTRY_IMAGE}/cache``."""
    fallback = f"{ctx.registry_image.rstrip('/')}/cache" if ctx.registry_image else ""
    wants_cache = request is None and arguments.get("cache_repo") is None
    wants_engine = engine is None
    context = request.context if request else arguments.get("context")
    if not (wants_cache or wants_engine) or context is None or not Path(context).is_dir():
        return _ProjectSettings(cache_repo=fallback)
    try:
        root = git.toplevel(Path(context))
    except ReleaseError:
        return _ProjectSettings(cache_repo=fallback)
    if not (root / CONFIG_NAME).is_file():
        return _ProjectSettings(cache_repo=fallback)
    config = load_config(root, ctx.variables)
    return _ProjectSettings(config.engine, config.cache_repo)


def _repository(repository: str, what: str = "repository") -> ImageRef:
    ref = ImageRef.parse(repository)
    if ref.tag is not None or ref.digest is not None:
        raise BuildError(
            f"{what} {repository!r} must be a name without tag or digest "
            f"(for example {ref.repository!r})"
            + ("; pass the tags in tags=[...]" if what == "repository" else "")
        )
    return ref


def push_order(tags: Sequence[str] | str) -> tuple[str, ...]:
    """Checked, de-duplicated tags in push order: as given, but ``latest`` last.

    ``latest`` alone is refused: it is moved by digest after another tag (the commit's) is
    confirmed, never pushed on its own.

    >>> push_order(["latest", "3f1c2ab"])
    ('3f1c2ab', 'latest')
    """
    if isinstance(tags, str):
        tags = [tags]
    unique = tuple(dict.fromkeys(check_tag(tag) for tag in tags))
    if not unique:
        raise BuildError("no tags given: pass at least one, for example the commit SHA")
    if unique == (LATEST,):
        raise BuildError(
            "latest is the only tag given: pass the commit SHA too (latest then follows it)"
        )
    return tuple(t for t in unique if t != LATEST) + tuple(t for t in unique if t == LATEST)


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
    return path.resolve()


def _refuse_unsupported(engine: Engine, request: BuildRequest) -> None:
    """A Dockerfile the engine cannot build fails here, before anything runs."""
    message = refusal(engine, request.dockerfile)
    if message:
        raise BuildError(message)


def refusal(engine: Engine, dockerfile: Path) -> str:
    """Why ``engine`` cannot build ``dockerfile`` and how to build it; '' when it can."""
    found = engine.unsupported(read_dockerfile(dockerfile))
    if not found:
        return ""
    return (
        f"{dockerfile} uses {'; '.join(found)}, which the {engine.name} engine cannot build; "
        f"{engine.remedy()}"
    )


def _with_oci_labels(
    request: BuildRequest, revision: str | None, source: str | None, ctx: CiContext
) -> BuildRequest:
    """The OCI labels (revision and source default to the context's) under the request's own."""
    oci = {CREATED_LABEL: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    revision = revision or ctx.commit_sha or _git_head(request.context)
    source = source or ctx.project_url
    if revision:
        oci[REVISION_LABEL] = revision
    if source:
        oci[SOURCE_LABEL] = redact(source)
    return replace(request, labels={**oci, **request.labels})


def _git_head(context: Path) -> str | None:
    if not context.is_dir():
        return None
    try:
        return git.resolve(context, "HEAD")
    except ReleaseError:
        return None


# -- pushing and confirming --------------------------------------------------------------------


def _push_tags(
    engine: Engine,
    request: BuildRequest,
    image: LocalImage,
    credentials: RegistryCredentials | None,
    watch: _Stopwatch,
) -> str:
    """Push the first tag and confirm it with the registry; only then push the others.

    Every tag but ``latest`` is pushed by the engine and asked of the registry once; ``latest``
    is moved afterwards, by digest and only forward (:func:`advance_latest`).
    """
    first, *rest = [tag for tag in request.tags if tag != LATEST]
    with watch.phase("push"):
        engine_digest = engine.push(request, image, first, credentials)
    with watch.phase("verify"):
        digest = _confirm(request, credentials, first, engine_digest)
    with watch.phase("push"):
        pushed = {tag: engine.push(request, image, tag, credentials) for tag in rest}
    with watch.phase("verify"):
        for tag in rest:
            _confirm(request, credentials, tag, pushed[tag], expected=digest)
    return digest


def _confirm(
    request: BuildRequest,
    credentials: RegistryCredentials | None,
    tag: str,
    pushed: str | None,
    expected: str | None = None,
) -> str:
    """The digest the registry serves for ``tag``; it must agree with the push and ``expected``."""
    name = f"{request.repository}:{tag}"
    try:
        found = manifest_digest(
            request.reference(tag), credentials, insecure=request.insecure_registries
        )
    except RegistryError as err:
        raise PushError(f"pushed {name} but cannot confirm it: {err}") from None
    if found is None:
        raise PushError(f"pushed {name} but the registry does not serve it")
    if pushed is not None and pushed != found:
        raise PushError(f"the engine pushed {name} as {pushed} but the registry serves {found}")
    if expected is not None and found != expected:
        raise PushError(
            f"the registry serves {name} at {found} but {request.repository}:{request.tags[0]} "
            f"at {expected}: did another job push {name} at the same time?"
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
