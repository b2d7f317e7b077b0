"""The child-pipeline strategy: the develop path's three steps, each in its own job.

* :func:`fan_out` (the parent pipeline's ``fan_out`` job): plan the develop run once
  (:func:`~homelab_release.develop.plan_develop`), check the overlay, and write the child pipeline
  (:mod:`homelab_release.childpipeline`) with the plan in its variables (:class:`PlannedRun`);
* :func:`build_planned_service` (each ``build:<service>`` job): build and push one named service
  of that plan, no change detection, and write ``built/<service>.json`` on every exit;
* :func:`publish_planned` (the writer ``publish_develop``): read every ``built/*.json`` and
  publish exactly as ``build_develop`` does (one commit, the same entries rule, trailers,
  ``build.env`` and ``release-report.json``); a planned service without a usable record failed.

``build_develop`` runs the same steps of :mod:`homelab_release.develop` in one process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from homelab_release.buildrecords import read_build_records, write_build_record
from homelab_release.childpipeline import (
    BUILT_FOLDER,
    MAX_NEEDS,
    PLAN_VARIABLES,
    ChildPipeline,
    JobSettings,
    child_pipeline,
    render,
)
from homelab_release.config import ReleaseConfig
from homelab_release.develop import (
    BuildDevelopResult,
    DevelopPlan,
    ServiceBuild,
    build_services,
    plan_develop,
    plan_services,
    publish_recorded,
    require_overlay,
)
from homelab_release.engines.base import Engine
from homelab_release.errors import ConfigError
from homelab_release.files import write_atomic
from homelab_release.gitops import checkout
from homelab_release.reports import RunReport, error_text, recorded
from homelab_release.secrets import redact
from homelab_release.workspace import Workspace

__all__ = [
    "CHANGES_NAME",
    "OUTPUT_NAME",
    "BuiltRecord",
    "FanOut",
    "PlannedRun",
    "build_planned_service",
    "fan_out",
    "generate",
    "publish_planned",
]

log = logging.getLogger(__name__)

OUTPUT_NAME = "child-pipeline.yml"
CHANGES_NAME = "changes.json"


@dataclass(frozen=True)
class PlannedRun:
    """What the parent pipeline planned, as the child pipeline's variables carry it."""

    environment: str
    tag: str
    services: tuple[str, ...]
    head: str
    base: str | None = None
    reason: str = ""
    changed_files: int | None = None

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> PlannedRun | None:
        """The plan in ``variables`` (a job's environment); None outside a child pipeline
        (``HOMELAB_RELEASE_SERVICES`` unset). A :class:`ConfigError` names a bad value."""
        names = PLAN_VARIABLES
        if names["services"] not in variables:
            return None
        services = _services(variables[names["services"]], names["services"])
        missing = [
            names[key] for key in ("environment", "tag", "head") if not variables.get(names[key])
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set beside {names['services']}: the child pipeline "
                "fan-out writes sets them all; regenerate it, or unset them all outside one"
            )
        files = variables.get(names["files"], "")
        return cls(
            environment=variables[names["environment"]],
            tag=variables[names["tag"]],
            services=services,
            head=variables[names["head"]],
            base=variables.get(names["base"]) or None,
            reason=variables.get(names["reason"], ""),
            changed_files=int(files) if files.isascii() and files.isdigit() else None,
        )


def _services(text: str, name: str) -> tuple[str, ...]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{name} must be a JSON array of service names, not {text!r}")
    return tuple(value)


# -- the parent: fan_out -------------------------------------------------------------------------


@dataclass(frozen=True)
class FanOut:
    """What :func:`fan_out` planned and generated; ``output`` is where the YAML was written."""

    plan: DevelopPlan
    pipeline: ChildPipeline
    text: str
    output: Path | None = None
    changes_report: Path | None = None


def generate(
    ws: Workspace,
    settings: JobSettings,
    *,
    environment: str = "develop",
    base: str | None = None,
    head: str = "HEAD",
    max_needs: int = MAX_NEEDS,
) -> FanOut:
    """Plan the develop run and generate its child pipeline, writing nothing.

    Settings without a write mode get ``HOMELAB_RELEASE_WRITE`` of ``ws``'s context (the
    environment the workflow reads), so that every child job writes as the parent would.
    """
    if not settings.write:
        settings = replace(settings, write=ws.context.write_mode)
    plan = plan_develop(ws, environment=environment, base=base, head=head)
    pipeline = child_pipeline(plan, settings, max_needs=max_needs)
    return FanOut(plan, pipeline, render(pipeline, ws.context.secrets))


def fan_out(
    repo: Path | str = ".",
    *,
    settings: JobSettings,
    environment: str = "develop",
    base: str | None = None,
    head: str = "HEAD",
    output: Path | str | None = None,
    max_needs: int = MAX_NEEDS,
    check_overlay: bool = True,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> FanOut:
    """Plan the develop run once and write its child pipeline to ``output``.

    ``output`` defaults to :data:`OUTPUT_NAME` in the report folder (see
    :meth:`Workspace.report_folder`), where :data:`CHANGES_NAME` (the change set, as
    ``homelab-release changes --json`` prints it) goes too. With services to build and
    ``check_overlay``, the environment's overlay must exist on the manifests branch first, so that
    no build runs for a writer that cannot write.
    """
    ws = Workspace.open(repo, config, env)
    done = generate(
        ws, settings, environment=environment, base=base, head=head, max_needs=max_needs
    )
    if done.plan.targets:
        ws.check_writer(environment)  # a bad signing key fails here, before any build job
    if done.plan.targets and check_overlay:
        remote = ws.remote()
        with checkout(remote) as tree:
            require_overlay(tree, ws.config.environment(environment), remote)
    folder = ws.report_folder()
    target = Path(output) if output else folder / OUTPUT_NAME
    write_atomic(target, done.text)
    changes = folder / CHANGES_NAME
    write_atomic(changes, done.plan.changes.to_json())
    log.info(
        "fan-out: %d build job(s) in %s: %s",
        len(done.pipeline.build_jobs),
        target,
        ", ".join(done.pipeline.build_jobs) or "none (nothing changed)",
    )
    return replace(done, output=target, changes_report=changes)


# -- the child: build one service ----------------------------------------------------------------


@dataclass(frozen=True)
class BuiltRecord:
    """A build job's outcome and the record it wrote."""

    build: ServiceBuild
    path: Path


def build_planned_service(
    repo: Path | str = ".",
    *,
    service: str,
    output: Path | str | None = None,
    tag: str | None = None,
    engine: Engine | str | None = None,
    cache_repo: str | None = None,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> BuiltRecord:
    """Build and push ``service``'s commit tag; write its record on every exit.

    In a child pipeline the tag, head and environment are the parent's plan (a service the
    parent did not plan is an error); elsewhere the tag is ``tag``, else ``CI_COMMIT_SHA``, else
    ``HEAD``. The record goes to ``output`` (default ``built/`` in the report folder) as
    ``<service>.json`` (:func:`~homelab_release.buildrecords.write_build_record`). A failed build is
    returned, not raised; any other error (an interrupt included) is recorded, then raised. ``engine`` and
    ``cache_repo`` are those of :func:`~homelab_release.develop.build_develop`.
    """
    ws = Workspace.open(repo, config, env).with_cache_repo(cache_repo)
    folder = Path(output) if output else ws.report_folder() / BUILT_FOLDER
    planned = PlannedRun.from_variables(ws.context.variables)
    plan: DevelopPlan | None = None
    try:
        plan = _service_plan(ws, service, planned, tag)
        (build,) = build_services(ws, plan, workers=1, engine=engine)
    except BaseException as err:
        known = plan.tag if plan else tag or (planned.tag if planned else "")
        repository = plan.targets[0].repository if plan else ""
        error = redact(error_text(err), ws.context.secrets)
        _write_failed_record(
            folder, ServiceBuild(service, repository, known, ok=False, error=error)
        )
        raise
    return BuiltRecord(build, write_build_record(folder, build))


def _write_failed_record(folder: Path, failed: ServiceBuild) -> None:
    """Write the record of a build job that an error ended; a record that cannot be written is
    logged, so that the error that ended the job is the one raised (the writer then finds no
    record and counts the service as failed)."""
    try:
        write_build_record(folder, failed)
    except Exception:
        log.exception("%s: the build record could not be written into %s", failed.service, folder)


def _service_plan(
    ws: Workspace, service: str, planned: PlannedRun | None, tag: str | None
) -> DevelopPlan:
    if not service:
        raise ConfigError("name the service to build (build-service --service NAME)")
    if planned is None:
        return plan_services(ws, [service], tag=tag)
    if service not in planned.services:
        raise ConfigError(
            f"service {service!r} is not in the parent pipeline's plan "
            f"({', '.join(planned.services) or 'nothing'}); the child pipeline builds only those"
        )
    return plan_services(
        ws, [service], environment=planned.environment, tag=tag or planned.tag, head=planned.head
    )


# -- the child: the writer -------------------------------------------------------------------------


def publish_planned(
    repo: Path | str = ".",
    *,
    built: Path | str | None = None,
    planned: PlannedRun | None = None,
    report_dir: Path | str | None = None,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildDevelopResult:
    """Publish the build records in ``built`` (default ``built/`` in the report folder) as
    ``build_develop`` publishes its builds: one commit, the reports on every exit.

    ``planned`` defaults to the plan in the child pipeline's variables. A planned service whose
    record is missing, unreadable or for another tag or repository counts as failed.
    """
    ws = Workspace.open(repo, config, env)
    planned = planned or PlannedRun.from_variables(ws.context.variables)
    if planned is None:
        raise ConfigError(
            f"publish-develop publishes what fan-out planned, but {PLAN_VARIABLES['services']} "
            "is not set: run it in the child pipeline fan-out writes"
        )
    folder = Path(built) if built else ws.report_folder() / BUILT_FOLDER
    report = RunReport(planned.environment, planned.tag, planned=planned.services)
    with recorded(ws.report_folder(report_dir), report, ws.context.secrets) as record:
        plan = plan_services(
            ws,
            planned.services,
            environment=planned.environment,
            tag=planned.tag,
            head=planned.head,
            base=planned.base,
            reason=planned.reason,
            changed_files=planned.changed_files,
        )
        record.note(changes=plan.changes, changed_files=plan.changed_files)
        builds = read_build_records(folder, plan)
        result = publish_recorded(ws, plan, builds, record)
    return replace(result, reports=record.paths)
