"""The two release workflows that the Nox sessions and the CLI run.

``build_develop``: detect changed services -> build and push them concurrently -> write every
successful build into the develop overlay in one commit -> report. ``promote``: copy the source
environment's image entries into the target environment's overlay in one commit. ``plan`` shows
what both would do, with no side effects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from homelab_release import ci
from homelab_release.build import build_image
from homelab_release.changes import ChangeSet, detect_changes
from homelab_release.config import Environment, ReleaseConfig, Service, load_config
from homelab_release.context import CiContext
from homelab_release.errors import ConfigError, PromotionError, ReleaseError
from homelab_release.files import write_atomic
from homelab_release.git import git, is_ancestor, is_commit_sha, toplevel
from homelab_release.gitops import ManifestsRemote, Published, checkout, commit_message, publish
from homelab_release.overlay import (
    ImageEntry,
    OverlayEdit,
    apply_overlay_entries,
    read_overlay_images,
    set_overlay_image,
)
from homelab_release.promote import Promotion, promote_overlay
from homelab_release.secrets import RegistryCredentials

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
# The commit time, not the build time: a rebuild of the same commit from cache is the same image.
CREATED_LABEL = "org.opencontainers.image.created"


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

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` of a successful build, else ''."""
        return f"{self.repository}:{self.tag}@{self.digest}" if self.ok else ""


@dataclass(frozen=True)
class BuildDevelopResult:
    """What ``build_develop`` did: the change set, each build, the overlay edit and the commit."""

    environment: str
    changes: ChangeSet
    tag: str
    builds: tuple[ServiceBuild, ...] = ()
    edit: OverlayEdit | None = None
    published: Published | None = None
    reports: tuple[Path, ...] = field(default=())

    @property
    def failed(self) -> tuple[ServiceBuild, ...]:
        return tuple(b for b in self.builds if not b.ok)

    @property
    def commit(self) -> str | None:
        return self.published.commit if self.published else None


@dataclass(frozen=True)
class PromoteResult:
    """What ``promote`` did: the environments, the promotion and the commit."""

    source: str
    target: str
    promotion: Promotion
    published: Published | None = None

    @property
    def commit(self) -> str | None:
        return self.published.commit if self.published else None


@dataclass(frozen=True)
class Pipeline:
    """The monorepo, its configuration and the CI variables that one workflow run works with."""

    root: Path
    cfg: ReleaseConfig
    context: CiContext
    env: Mapping[str, str] | None = field(default=None, repr=False)  # holds secrets

    @classmethod
    def open(
        cls,
        repo: Path | str = ".",
        config: ReleaseConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """Find the monorepo's root, load its configuration (unless given) and read ``env``."""
        root = toplevel(repo)
        context = CiContext.from_env(env)
        return cls(root, config or load_config(root, context.variables), context, env)

    def detect(self, base: str | None, head: str) -> tuple[ChangeSet, str]:
        """The changed services and the image tag: ``CI_COMMIT_SHA``, else the head commit."""
        changes = detect_changes(self.root, base=base, head=head, config=self.cfg, env=self.env)
        log.info("changes: %s", changes.reason)
        return changes, self.context.commit_sha or changes.head

    def require_checked_out(self, changes: ChangeSet) -> None:
        """Builds use the work tree: it must be the head commit, without local changes."""
        checked_out = git(self.root, "rev-parse", "HEAD").strip()
        if checked_out != changes.head:
            raise ReleaseError(
                f"build_develop builds the checked-out tree, but {self.root} is at "
                f"{checked_out[:12]}, not head {changes.head[:12]}; check out {changes.head[:12]} "
                "first (git checkout), or leave head at HEAD"
            )
        contexts = sorted({self.cfg.service(name).context for name in changes.services})
        # Untracked files do not count: CI leaves caches and reports in the project folder.
        status = ("status", "--porcelain", "--untracked-files=no", "--", *contexts)
        dirty = git(self.root, *status).strip()
        if dirty:
            raise ReleaseError(
                f"uncommitted changes in {', '.join(contexts)} would be built into images tagged "
                f"{changes.head[:12]}:\n{dirty}\ncommit or stash them first"
            )

    def remote(self) -> ManifestsRemote:
        """The manifests repository: ``manifests.url``, else ``CI_REPOSITORY_URL``, else origin."""
        url = self.cfg.manifests_url or self.context.repository_url.secret or _origin_url(self.root)
        if not url:
            raise ConfigError(
                f"no manifests repository: set manifests.url in homelab-release.toml, or add an "
                f"'origin' remote to {self.root}"
            )
        branch = self.cfg.manifests_branch
        return ManifestsRemote.from_url(url, branch, self.context.git_credentials)


# -- build_develop ---------------------------------------------------------------------------


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
) -> BuildDevelopResult:
    """Build the changed services and write their images into ``environment``'s overlay.

    Images are built from the work tree, so ``head`` must be the checked-out commit and the
    changed services' folders must have no uncommitted changes (a :class:`ReleaseError` says so).
    Each built service's entry becomes ``repository:<tag>@<digest>``, where the tag is
    ``CI_COMMIT_SHA`` (else the head commit); an entry that already holds a later commit's image
    is kept. Failed builds are reported and leave their entries alone.
    """
    run = Pipeline.open(repo, config, env)
    target = run.cfg.environment(environment)
    changes, tag = run.detect(base, head)
    reports = Path(report_dir or run.context.project_dir or run.root)
    if not changes.services:
        log.info("no service changed: nothing to build")
        return _with_reports(BuildDevelopResult(environment, changes, tag), reports)
    run.require_checked_out(changes)
    created = git(run.root, "show", "-s", "--format=%cI", changes.head).strip()
    job = _Job(run, tag, run.context.registry_credentials, created)
    remote = run.remote()
    with checkout(remote) as tree:
        _require_overlay(tree, target, remote)
        builds = _build_all(job, changes.services, workers)
        entries = tuple(_entry(run.cfg, b) for b in builds if b.ok)
        edit, published = _write_entries(job, tree, remote, target, entries)
    result = BuildDevelopResult(environment, changes, tag, builds, edit, published)
    return _with_reports(result, reports)


@dataclass(frozen=True)
class _Job:
    """What every step of one build_develop run shares."""

    run: Pipeline
    tag: str
    credentials: RegistryCredentials | None
    created: str


def _build_all(job: _Job, names: Sequence[str], workers: int) -> tuple[ServiceBuild, ...]:
    registry = job.run.cfg.require_registry()
    services = [job.run.cfg.service(name) for name in names]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(services)))) as pool:
        return tuple(pool.map(lambda service: _build_one(job, service, registry), services))


def _build_one(job: _Job, service: Service, registry: str) -> ServiceBuild:
    repository = service.image_repository(registry)
    started = time.monotonic()
    log.info("%s: building %s:%s", service.name, repository, job.tag[:12])
    try:
        built = build_image(
            context=job.run.root / service.context,
            dockerfile=job.run.root / service.dockerfile,
            repository=repository,
            tags=(job.tag, "latest"),
            credentials=job.credentials,
            revision=job.tag,
            source=job.run.context.project_url or None,
            insecure_registries=job.run.cfg.insecure_registries,
            labels={CREATED_LABEL: job.created},
            env=job.run.env,
        )
    except ReleaseError as err:
        log.error("%s: build failed: %s", service.name, err)  # noqa: TRY400 (expected failure)
        return ServiceBuild(service.name, repository, job.tag, ok=False, error=str(err))
    seconds = time.monotonic() - started
    log.info("%s: pushed %s@%s (%.1fs)", service.name, repository, built.digest, seconds)
    return ServiceBuild(
        service.name, repository, job.tag, ok=True, digest=built.digest or "", seconds=seconds
    )


def _entry(cfg: ReleaseConfig, build: ServiceBuild) -> ImageEntry:
    name = cfg.service(build.service).overlay_name(cfg.registry)
    return ImageEntry(name=name, new_name=build.repository, new_tag=build.tag, digest=build.digest)


def _write_entries(
    job: _Job,
    tree: Path,
    remote: ManifestsRemote,
    target: Environment,
    entries: Sequence[ImageEntry],
) -> tuple[OverlayEdit | None, Published | None]:
    if not entries:
        log.warning("no build succeeded: the %s overlay is left as it is", target.name)
        return None, None

    def apply(checkout_root: Path) -> OverlayEdit:
        overlay = checkout_root / target.overlay
        current = _first_by_name(read_overlay_images(overlay))
        fresh = [e for e in entries if not _superseded(job.run.root, e, current.get(e.name))]
        return apply_overlay_entries(overlay, fresh)

    def message(edit: OverlayEdit) -> str:
        written = _changed_entries(edit)
        names = ", ".join(sorted(_services_of(job.run.cfg, written)))
        body = "\n".join(f"{e.name}: {e.reference}" for e in written)
        trailers = {"Source-Commit": job.tag, "Pipeline": job.run.context.pipeline_url}
        return commit_message(f"{target.name}: update {names}", body, trailers)

    return publish(tree, remote, apply, message, author=job.run.cfg.author)


def _first_by_name(entries: Sequence[ImageEntry]) -> dict[str, ImageEntry]:
    """Entries by name; the first of duplicates wins, as in kustomize."""
    return {entry.name: entry for entry in reversed(entries)}


def _changed_entries(edit: OverlayEdit) -> list[ImageEntry]:
    before = _first_by_name(edit.before)
    return [e for e in _first_by_name(edit.after).values() if before.get(e.name) != e]


def _superseded(root: Path, ours: ImageEntry, current: ImageEntry | None) -> bool:
    """Whether the overlay already holds an image of a later commit than ours.

    Pipelines can finish out of order; the image of a descendant commit is never replaced by
    its ancestor's. A commit this clone cannot find is fetched; if it still cannot be compared,
    ours is written (the pipeline that finished last wins, as before).
    """
    theirs = current.new_tag if current else None
    if not theirs or not ours.new_tag or theirs == ours.new_tag or not is_commit_sha(theirs):
        return False
    newer = is_ancestor(root, ours.new_tag, theirs)
    if newer:
        log.warning(
            "%s: the overlay already has %s, built from a later commit; keeping it",
            ours.name,
            theirs[:12],
        )
    return newer


def _services_of(cfg: ReleaseConfig, entries: Sequence[ImageEntry]) -> list[str]:
    by_name = {s.overlay_name(cfg.registry): s.name for s in cfg.services}
    return [by_name.get(e.name, e.name) for e in entries]


# -- promote ---------------------------------------------------------------------------------


def promote(
    repo: Path | str = ".",
    *,
    to: str | None = None,
    images: Collection[str] | None = None,
    dry_run: bool = False,
    verify: bool = True,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> PromoteResult:
    """Copy the image entries of the target's ``promote_from`` overlay into the target overlay."""
    run = Pipeline.open(repo, config, env)
    cfg = run.cfg
    target = _target_environment(cfg, to, run.context)
    if target.promote_from is None:
        raise PromotionError(
            f"environment {target.name!r} has no promote_from; set "
            f"environments.{target.name}.promote_from in homelab-release.toml"
        )
    source = cfg.environment(target.promote_from)
    remote = run.remote()
    credentials = run.context.registry_credentials

    def apply(tree: Path) -> Promotion:
        return promote_overlay(
            tree / source.overlay,
            tree / target.overlay,
            images=images,
            dry_run=dry_run,
            verify=verify,
            credentials=credentials,
            insecure_registries=cfg.insecure_registries,
        )

    def message(promotion: Promotion) -> str:
        names = ", ".join(change.name.rsplit("/", 1)[-1] for change in promotion.changes)
        body = "\n".join(f"{c.name}: {c.after.reference}" for c in promotion.changes)
        trailers = {
            "Promoted-From": source.name,
            "Source-Commit": run.context.commit_sha or git(run.root, "rev-parse", "HEAD").strip(),
            "Pipeline": run.context.pipeline_url,
        }
        return commit_message(f"{target.name}: promote {names} from {source.name}", body, trailers)

    with checkout(remote) as tree:
        if dry_run:
            return PromoteResult(source.name, target.name, apply(tree))
        promotion, published = publish(tree, remote, apply, message, author=cfg.author)
    return PromoteResult(source.name, target.name, promotion, published)


def _target_environment(cfg: ReleaseConfig, name: str | None, context: CiContext) -> Environment:
    if name:
        return cfg.environment(name)
    if context.commit_branch:
        try:
            return cfg.environment(context.commit_branch)
        except ConfigError as err:
            raise ConfigError(f"{err}; or pass --to ENV") from None
    raise ConfigError(
        "no target environment: pass --to ENV, or run on a branch named like an environment "
        f"({', '.join(e.name for e in cfg.environments if e.promote_from)})"
    )


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPromotion:
    """A promotion ``plan`` computed, or why it could not (``problem``)."""

    source: str
    target: str
    promotion: Promotion | None = None
    problem: str = ""


@dataclass(frozen=True)
class Plan:
    """What ``build_develop`` and ``promote`` would do now."""

    changes: ChangeSet
    tag: str
    environment: str
    references: tuple[str, ...]
    edit: OverlayEdit | None
    promotions: tuple[PlannedPromotion, ...]


def plan(
    repo: Path | str = ".",
    *,
    environment: str = "develop",
    base: str | None = None,
    head: str = "HEAD",
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> Plan:
    """Compute, without building, writing or pushing anything, what the workflows would change.

    Digests are only known after a build, so the planned develop entries carry the tag alone.
    """
    run = Pipeline.open(repo, config, env)
    cfg = run.cfg
    target = cfg.environment(environment)
    changes, tag = run.detect(base, head)
    registry = cfg.require_registry() if changes.services else cfg.registry
    services = [cfg.service(name) for name in changes.services]
    references = tuple(f"{s.image_repository(registry)}:{tag}" for s in services)
    # The digest is known only after the build: the planned edit keeps the current one (@*).
    specs = [
        f"{s.overlay_name(registry)}={ref}@*" for s, ref in zip(services, references, strict=True)
    ]
    with checkout(run.remote()) as tree:
        edit = set_overlay_image(tree / target.overlay, *specs, dry_run=True) if specs else None
        promotions = tuple(
            _plan_promotion(tree, cfg, e) for e in cfg.environments if e.promote_from
        )
    return Plan(changes, tag, environment, references, edit, promotions)


def _plan_promotion(tree: Path, cfg: ReleaseConfig, target: Environment) -> PlannedPromotion:
    source = cfg.environment(target.promote_from or "")
    try:
        promotion = promote_overlay(
            tree / source.overlay, tree / target.overlay, dry_run=True, verify=False
        )
    except ReleaseError as err:
        return PlannedPromotion(source.name, target.name, problem=str(err))
    return PlannedPromotion(source.name, target.name, promotion)


# -- shared ----------------------------------------------------------------------------------


def _origin_url(root: Path) -> str:
    remotes = git(root, "remote").split()
    return git(root, "remote", "get-url", "origin").strip() if "origin" in remotes else ""


def _require_overlay(tree: Path, environment: Environment, remote: ManifestsRemote) -> None:
    folder = tree / environment.overlay
    if not folder.is_dir():
        raise ConfigError(
            f"overlay {environment.overlay} of environment {environment.name} does not exist on "
            f"branch {remote.branch} of {remote.shown}; create it or set "
            f"environments.{environment.name}.overlay"
        )


def _with_reports(result: BuildDevelopResult, folder: Path) -> BuildDevelopResult:
    """Write ``build.env`` and ``release-report.json`` into ``folder``."""
    dotenv = folder / "build.env"
    report = folder / "release-report.json"
    write_atomic(dotenv, ci.format_dotenv(dotenv_values(result)))
    write_atomic(report, json.dumps(report_data(result), indent=2) + "\n")
    return replace(result, reports=(dotenv, report))


def dotenv_values(result: BuildDevelopResult) -> dict[str, str]:
    """The dotenv report: ``SERVICES``, ``IMAGE_TAG``, ``<SERVICE>_IMAGE`` and the commit."""
    built = [b for b in result.builds if b.ok]
    values = {
        "SERVICES": ",".join(b.service for b in built),
        "FAILED_SERVICES": ",".join(b.service for b in result.failed),
        "IMAGE_TAG": result.tag,
        "MANIFESTS_COMMIT": result.commit or "",
    }
    values |= {ci.dotenv_key(b.service): b.reference for b in built}
    return values


def report_data(result: BuildDevelopResult) -> dict[str, object]:
    """The JSON report: the change set, each build and the manifests commit."""
    changes = result.changes
    return {
        "environment": result.environment,
        "tag": result.tag,
        "changes": {
            "base": changes.base,
            "head": changes.head,
            "reason": changes.reason,
            "services": list(changes.services),
            "files": len(changes.files),
        },
        "builds": [
            {
                "service": b.service,
                "ok": b.ok,
                "reference": b.reference,
                "digest": b.digest,
                "error": b.error,
                "seconds": round(b.seconds, 2),
            }
            for b in result.builds
        ],
        "manifests_commit": result.commit,
    }
