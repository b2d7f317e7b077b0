"""The develop path: decide once what to build, build each service, publish them in one commit.

:func:`build_develop` runs the three steps in one process: :func:`plan_develop` (which services
changed, their images and entries; every problem that would stop a build is found here),
:func:`build_service` for each (build and push the commit tag), and :func:`publish_develop`
(write every successful build into the environment's overlay in one commit, never replacing an
image of a later commit). ``plan`` is a dry run of the same path.

The child-pipeline strategy (:mod:`homelab_release.fanout`) runs the same steps in separate jobs:
the parent plans, each build job builds one service of :func:`plan_services`, and the writer
job hands every job's :class:`ServiceBuild` (read back from its record, see
:mod:`homelab_release.buildrecords`) to :func:`publish_recorded` inside
:func:`~homelab_release.reports.recorded`, as :func:`build_develop` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from homelab_release import git
from homelab_release.build import CREATED_LABEL, BuildDurations, build_image, build_request
from homelab_release.changes import ChangeSet, detect_changes
from homelab_release.config import Environment, ReleaseConfig, Service, check_sources
from homelab_release.engines.base import Engine
from homelab_release.engines.choice import make_engine
from homelab_release.environments import follow_latest, write_entries
from homelab_release.errors import ConfigError, ReleaseError
from homelab_release.gitops import ManifestsRemote, Published, PublishedResult, checkout
from homelab_release.gitops import refresh as refresh_checkout
from homelab_release.images import ImageRef
from homelab_release.latest import LatestMove
from homelab_release.overlay import (
    ImageEntry,
    OverlayEdit,
    changed_entries,
    first_by_name,
    read_overlay_images,
)
from homelab_release.reports import RunRecord, RunReport, recorded
from homelab_release.workspace import Workspace

__all__ = [
    "DEFAULT_WORKERS",
    "BuildDevelopResult",
    "BuildTarget",
    "DevelopPlan",
    "Publication",
    "ServiceBuild",
    "build_develop",
    "build_service",
    "build_services",
    "develop_entries",
    "engine_choice",
    "plan_develop",
    "plan_services",
    "publish_develop",
    "publish_recorded",
    "require_overlay",
    "service_target",
]

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class BuildTarget:
    """One changed service to build: its sources, its image repository and its overlay entry."""

    service: str
    repository: str
    context: str  # relative to the monorepo's root
    dockerfile: str  # relative to the monorepo's root
    entry_name: str


@dataclass(frozen=True)
class DevelopPlan:
    """What a develop run builds, decided once: the change set, the image tag and the targets.

    ``changed_files`` counts the changed files when ``changes`` does not list them (a plan
    handed to a child pipeline carries the count, not the list); None when it does.
    """

    environment: str
    changes: ChangeSet
    tag: str
    targets: tuple[BuildTarget, ...] = ()
    changed_files: int | None = None

    @property
    def services(self) -> tuple[str, ...]:
        """The names of the services to build."""
        return tuple(target.service for target in self.targets)


@dataclass(frozen=True)
class ServiceBuild:
    """The outcome for one changed service."""

    service: str
    repository: str
    tag: str
    ok: bool
    digest: str = ""
    error: str = ""
    seconds: float = 0.0
    durations: BuildDurations | None = None

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` of a successful build, else ''."""
        return f"{self.repository}:{self.tag}@{self.digest}" if self.ok else ""


@dataclass(frozen=True)
class BuildDevelopResult(PublishedResult):
    """What ``build_develop`` did: the change set, each build, the overlay edit and the commit."""

    environment: str
    changes: ChangeSet
    tag: str
    builds: tuple[ServiceBuild, ...] = ()
    edit: OverlayEdit | None = None
    published: Published | None = None
    latest: tuple[LatestMove, ...] = ()
    reports: tuple[Path, ...] = field(default=())

    @property
    def failed(self) -> tuple[ServiceBuild, ...]:
        """The builds that failed."""
        return tuple(b for b in self.builds if not b.ok)


def build_develop(
    repo: Path | str = ".",
    *,
    environment: str = "develop",
    base: str | None = None,
    head: str = "HEAD",
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
    workers: int = DEFAULT_WORKERS,
    report_dir: Path | str | None = None,
    engine: Engine | str | None = None,
    cache_repo: str | None = None,
) -> BuildDevelopResult:
    """Build the changed services and write their images into ``environment``'s overlay.

    Images are built from the work tree, so ``head`` must be the checked-out commit and the
    changed services' folders must have no uncommitted changes (a :class:`ReleaseError` says so).
    Each built service's entry becomes ``repository:<tag>@<digest>``, where the tag is
    ``CI_COMMIT_SHA`` (else the head commit); an entry that already holds a later commit's image
    is kept. Failed builds are reported and leave their entries alone. The manifests branch and
    the overlay are checked before anything is built. ``build.env`` and ``release-report.json``
    go to ``report_dir`` (see :meth:`Workspace.report_folder`) on every exit, errors included.

    ``engine``: an engine, or ``docker``, ``buildah`` or ``auto``; None: ``[build] engine``, else
    ``HOMELAB_RELEASE_ENGINE``, else auto. ``cache_repo``: the repository buildah caches every
    layer in instead of ``[build] cache_repo`` (``""``: none).
    """
    ws = Workspace.open(repo, config, env).with_cache_repo(cache_repo)
    folder = ws.report_folder(report_dir)
    with recorded(folder, RunReport(environment), ws.context.secrets) as record:
        plan = plan_develop(ws, environment=environment, base=base, head=head)
        record.note(tag=plan.tag, changes=plan.changes, planned=plan.services)
        result = BuildDevelopResult(environment, plan.changes, plan.tag)
        if not plan.targets:
            log.info("no service changed: nothing to build")
        else:
            remote = ws.remote()
            ws.check_writer(environment)  # a bad signing key fails before anything is built
            with checkout(remote) as tree:
                require_overlay(tree, ws.config.environment(environment), remote)
                builds = build_services(ws, plan, workers=workers, engine=engine)
                result = publish_recorded(ws, plan, builds, record, tree=tree, remote=remote)
    return replace(result, reports=record.paths)


def publish_recorded(
    ws: Workspace,
    plan: DevelopPlan,
    builds: Sequence[ServiceBuild],
    record: RunRecord,
    *,
    tree: Path | None = None,
    remote: ManifestsRemote | None = None,
) -> BuildDevelopResult:
    """:func:`publish_develop`, noting the builds, the commit and ``latest`` in ``record``."""
    record.note(builds=tuple(builds))
    done = publish_develop(ws, plan, builds, tree=tree, remote=remote)
    commit = done.published.commit if done.published else None
    record.note(commit=commit, latest=done.latest)
    return BuildDevelopResult(
        plan.environment,
        plan.changes,
        plan.tag,
        tuple(builds),
        done.edit,
        done.published,
        done.latest,
    )


# -- deciding ----------------------------------------------------------------------------------


def plan_develop(
    ws: Workspace, *, environment: str = "develop", base: str | None = None, head: str = "HEAD"
) -> DevelopPlan:
    """The changed services and everything a build of each needs, checked now.

    The tag is ``CI_COMMIT_SHA``, else the head commit. Every service's context folder and
    Dockerfile must exist (checked when the configuration was loaded from this tree, else here).
    """
    ws.config.environment(environment)
    changes = detect_changes(
        ws.root, base=base, head=head, config=ws.config, pipeline=ws.context.pipeline
    )
    tag = ws.context.commit_sha or changes.head
    by_name = {service.name: service for service in ws.config.services}
    registry = ws.config.require_registry() if changes.services else ""
    targets = tuple(_target(ws, by_name[name], registry) for name in changes.services)
    return DevelopPlan(environment, changes, tag, targets)


def plan_services(
    ws: Workspace,
    services: Sequence[str],
    *,
    environment: str = "develop",
    tag: str | None = None,
    head: str = "HEAD",
    base: str | None = None,
    reason: str = "",
    changed_files: int | None = None,
) -> DevelopPlan:
    """A plan for the named services, decided elsewhere: no change detection.

    A child pipeline's jobs plan this way with what the parent planned (its ``base``, ``head``,
    ``reason`` and file count go to the reports). The tag is ``tag``, else ``CI_COMMIT_SHA``,
    else the head commit.
    """
    ws.config.environment(environment)
    head_sha = git.resolve(ws.root, head)
    if head_sha is None:
        raise ReleaseError(f"{head!r} is not a commit of {ws.root}; fetch it or pass another head")
    names = tuple(dict.fromkeys(services))
    targets = tuple(service_target(ws, name) for name in names)
    changes = ChangeSet(base, head_sha, (), names, reason or "services named by the caller")
    return DevelopPlan(
        environment,
        changes,
        tag or ws.context.commit_sha or head_sha,
        targets,
        changed_files,
    )


def service_target(ws: Workspace, name: str) -> BuildTarget:
    """What a build of the service called ``name`` needs (a :class:`ConfigError` names the
    known services when there is none)."""
    return _target(ws, ws.config.service(name), ws.config.require_registry())


def _target(ws: Workspace, service: Service, registry: str) -> BuildTarget:
    _require_sources(ws, service)
    return BuildTarget(
        service=service.name,
        repository=service.image_repository(registry),
        context=service.context,
        dockerfile=service.dockerfile,
        entry_name=service.overlay_name(registry),
    )


def _require_sources(ws: Workspace, service: Service) -> None:
    """The build context and Dockerfile must exist in this tree: checked by :func:`check_sources`
    unless loading the configuration from this tree did (a plan may hold hundreds of services)."""
    if not (ws.config.sources_checked and ws.config.root == ws.root):
        check_sources(ws.root, ws.config.where, service)


# -- building ----------------------------------------------------------------------------------


def build_services(
    ws: Workspace,
    plan: DevelopPlan,
    *,
    workers: int = DEFAULT_WORKERS,
    engine: Engine | str | None = None,
) -> tuple[ServiceBuild, ...]:
    """Build and push every target of ``plan``, ``workers`` at a time, from the work tree.

    The engine is chosen once for the run (see :func:`build_develop`); each build gets its own.
    """
    require_checked_out(ws, plan)
    chosen = engine_choice(ws, engine)
    created = git.commit_time(ws.root, plan.changes.head)
    count = max(1, min(workers, len(plan.targets)))
    with ThreadPoolExecutor(max_workers=count) as pool:
        return tuple(
            pool.map(
                lambda t: build_service(ws, plan, t, engine=chosen, created=created), plan.targets
            )
        )


def engine_choice(ws: Workspace, engine: Engine | str | None) -> Engine | str:
    """``engine`` itself, or the name of the engine it (or, when None, the configuration and
    ``HOMELAB_RELEASE_ENGINE``) names; ``auto`` is detected here, once."""
    if engine is not None and not isinstance(engine, str):
        return engine
    chosen = make_engine(engine, ws.context, config=ws.config.engine)
    chosen.close()
    return chosen.name


def require_checked_out(ws: Workspace, plan: DevelopPlan) -> None:
    """Builds use the work tree: it must be the head commit, without local changes."""
    checked_out = git.head_commit(ws.root)
    head = plan.changes.head
    if checked_out != head:
        raise ReleaseError(
            f"build_develop builds the checked-out tree, but {ws.root} is at "
            f"{checked_out[:12]}, not head {head[:12]}; check out {head[:12]} "
            "first (git checkout), or leave head at HEAD"
        )
    contexts = sorted({target.context for target in plan.targets})
    # Untracked files do not count: CI leaves caches and reports in the project folder.
    dirty = git.uncommitted(ws.root, contexts).strip()
    if dirty:
        raise ReleaseError(
            f"uncommitted changes in {', '.join(contexts)} would be built into images tagged "
            f"{head[:12]}:\n{dirty}\ncommit or stash them first"
        )


def build_service(
    ws: Workspace,
    plan: DevelopPlan,
    target: BuildTarget,
    *,
    engine: Engine | str | None = None,
    created: str = "",
) -> ServiceBuild:
    """Build one target and push its commit tag; a failure is returned, not raised.

    ``latest`` is not pushed here: it follows the overlay once the entries are published.
    ``created`` (the commit's time) makes a rebuild of the same commit the same image.
    ``engine`` is used as given (:func:`build_services` gives what :func:`engine_choice` chose
    once for all builds); None chooses as :func:`engine_choice` does.
    """
    started = time.monotonic()
    log.info("%s: building %s:%s", target.service, target.repository, plan.tag[:12])
    try:
        request = build_request(
            context=ws.root / target.context,
            dockerfile=ws.root / target.dockerfile,
            repository=target.repository,
            tags=[plan.tag],
            labels={CREATED_LABEL: created} if created else None,
            cache_repo=ws.config.cache_repo,
            insecure_registries=ws.config.insecure_registries,
        )
        built = build_image(
            request,
            engine=engine_choice(ws, None) if engine is None else engine,
            credentials=ws.context.registry_credentials,
            revision=plan.tag,
            source=ws.context.project_url or None,
            env=ws.env,
        )
    except ReleaseError as err:
        log.error("%s: build failed: %s", target.service, err)  # noqa: TRY400 (expected failure)
        return ServiceBuild(target.service, target.repository, plan.tag, ok=False, error=str(err))
    seconds = time.monotonic() - started
    log.info("%s: pushed %s@%s (%.1fs)", target.service, target.repository, built.digest, seconds)
    return ServiceBuild(
        target.service,
        target.repository,
        plan.tag,
        ok=True,
        digest=built.digest or "",
        seconds=seconds,
        durations=built.durations,
    )


# -- publishing --------------------------------------------------------------------------------


def develop_entries(
    ws: Workspace,
    plan: DevelopPlan,
    builds: Sequence[ServiceBuild],
    current: Sequence[ImageEntry],
) -> tuple[ImageEntry, ...]:
    """The overlay entries a develop run writes: each successful build's ``repository:tag@digest``,
    except where ``current`` (the overlay now) already holds an image of a later commit.

    ``plan`` runs this with planned builds (no digest yet: the current one is kept in the dry run).
    """
    names = {target.service: target.entry_name for target in plan.targets}
    now = first_by_name(current)
    entries = []
    for build in builds:
        if not build.ok:
            continue
        name = names[build.service]
        digest = build.digest or (now[name].digest if name in now else None)
        entry = ImageEntry(name, new_name=build.repository, new_tag=build.tag, digest=digest)
        if not _superseded(ws.root, entry, now.get(name)):
            entries.append(entry)
    return tuple(entries)


@dataclass(frozen=True)
class Publication:
    """What :func:`publish_develop` did: the overlay edit, the commit and where ``latest`` went."""

    edit: OverlayEdit | None = None
    published: Published | None = None
    latest: tuple[LatestMove, ...] = ()


def publish_develop(
    ws: Workspace,
    plan: DevelopPlan,
    builds: Sequence[ServiceBuild],
    *,
    tree: Path | None = None,
    remote: ManifestsRemote | None = None,
) -> Publication:
    """Write every successful build into the environment's overlay in one commit and push it;
    then move each built service's ``latest`` to what the overlay names at the branch's tip.

    ``tree`` is a checkout of the manifests branch (brought to the branch's tip first); without
    one, a fresh checkout is made. A push that another pipeline beat is re-applied on the new tip.
    """
    if not any(build.ok for build in builds):
        log.warning("no build succeeded: the %s overlay is left as it is", plan.environment)
        return Publication()
    remote = remote or ws.remote()
    if tree is None:
        with checkout(remote) as fresh:
            return _publish(ws, plan, builds, fresh, remote)
    refresh_checkout(tree, remote)
    return _publish(ws, plan, builds, tree, remote)


def _publish(
    ws: Workspace,
    plan: DevelopPlan,
    builds: Sequence[ServiceBuild],
    tree: Path,
    remote: ManifestsRemote,
) -> Publication:
    target = ws.config.environment(plan.environment)
    require_overlay(tree, target, remote)

    def entries(checkout_root: Path) -> tuple[ImageEntry, ...]:
        current = read_overlay_images(checkout_root / target.overlay)
        return develop_entries(ws, plan, builds, current)

    def subject(edit: OverlayEdit) -> str:
        by_entry = {t.entry_name: t.service for t in plan.targets}
        written = changed_entries(edit.before, edit.after)
        return "update " + ", ".join(sorted(by_entry.get(e.name, e.name) for e in written))

    trailers = {"Source-Commit": plan.tag}
    written = write_entries(ws, target, tree, remote, entries, subject=subject, trailers=trailers)
    return Publication(
        written.edit, written.published, _follow_overlay(ws, plan, builds, tree, remote)
    )


def _follow_overlay(
    ws: Workspace,
    plan: DevelopPlan,
    builds: Sequence[ServiceBuild],
    tree: Path,
    remote: ManifestsRemote,
) -> tuple[LatestMove, ...]:
    """Each built service's ``latest`` serves what the overlay names at the branch's tip."""
    built = {build.service for build in builds if build.ok}
    targets = {
        t.entry_name: ImageRef.parse(t.repository) for t in plan.targets if t.service in built
    }
    return follow_latest(ws, ws.config.environment(plan.environment), targets, tree, remote)


def require_overlay(tree: Path, environment: Environment, remote: ManifestsRemote) -> None:
    """The environment's overlay folder must exist on the manifests branch."""
    folder = tree / environment.overlay
    if not folder.is_dir():
        raise ConfigError(
            f"overlay {environment.overlay} of environment {environment.name} does not exist on "
            f"branch {remote.branch} of {remote.shown}; create it or set "
            f"environments.{environment.name}.overlay"
        )


def _superseded(root: Path, ours: ImageEntry, current: ImageEntry | None) -> bool:
    """Whether the overlay already holds an image of a later commit than ours.

    Pipelines can finish out of order; the image of a descendant commit is never replaced by
    its ancestor's. A commit this clone cannot find is fetched; if it still cannot be compared,
    ours is written (the pipeline that finished last wins).
    """
    theirs = current.new_tag if current else None
    if not theirs or not ours.new_tag or theirs == ours.new_tag or not git.is_commit_sha(theirs):
        return False
    newer = git.is_ancestor(root, ours.new_tag, theirs)
    if newer:
        log.warning(
            "%s: the overlay already has %s, built from a later commit; keeping it",
            ours.name,
            theirs[:12],
        )
    return newer
