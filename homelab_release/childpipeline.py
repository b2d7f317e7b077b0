"""The generated child pipeline of the child-pipeline strategy: frozen data and its YAML.

:func:`child_pipeline` turns a :class:`~homelab_release.develop.DevelopPlan` and the job
settings the parent's template job passes (:class:`JobSettings`) into a :class:`ChildPipeline`;
:func:`render` writes it as YAML (with :mod:`homelab_release.yamlwriter`), the same bytes for
the same input:

* pipeline ``variables:`` carry what the parent planned (:data:`PLAN_VARIABLES`: environment,
  tag, services, base, head, reason, file count), every ``$`` written ``$$`` so that GitLab
  never expands them;
* ``.homelab-release`` and ``.homelab-release-build`` are the hidden jobs the others extend
  (a child pipeline does not see the parent's): the same job set-up as the template's
  ``.homelab-release`` job (:data:`JOB_VARIABLES`, :data:`SETUP_SCRIPT`, :data:`CLEANUP_SCRIPT`)
  plus the build engine's settings;
* one ``build:<service>`` job per planned service (``nox -s build_service -- --service NAME``),
  uploading ``built/<service>.json`` ``when: always``;
* the writer ``publish_develop`` (``when: always``), after every build job: through ``needs``
  up to :data:`MAX_NEEDS` build jobs, by stage beyond (GitLab refuses more ``needs``);
* with nothing planned, the one job ``nothing_to_build`` (a pipeline needs a job).

The settings (image, homelab-release source, nox options, engine settings) are written as the
template's inputs gave them, so that a ``${CI_JOB_TOKEN}`` in ``source`` is expanded in the child's
jobs as it was in the parent's; :func:`render` refuses any text holding a known secret's value.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homelab_release.develop import DevelopPlan
from homelab_release.errors import FanOutError
from homelab_release.secrets import HiddenText
from homelab_release.yamlwriter import block, key, scalar

__all__ = [
    "BUILD_STAGE",
    "BUILD_TEMPLATE",
    "BUILT_FOLDER",
    "CLEANUP_SCRIPT",
    "JOB_TEMPLATE",
    "JOB_VARIABLES",
    "MAX_JOB_NAME",
    "MAX_NEEDS",
    "NOTHING_JOB",
    "PLAN_VARIABLES",
    "PUBLISH_STAGE",
    "SETUP_SCRIPT",
    "WRITER",
    "ChildJob",
    "ChildPipeline",
    "JobSettings",
    "build_job_name",
    "child_pipeline",
    "record_name",
    "render",
]

BUILD_STAGE = "build"
PUBLISH_STAGE = "publish"
WRITER = "publish_develop"
NOTHING_JOB = "nothing_to_build"
JOB_TEMPLATE = ".homelab-release"
BUILD_TEMPLATE = ".homelab-release-build"
BUILT_FOLDER = "built"
#: GitLab refuses a job that ``needs`` more jobs than this (GitLab.com's limit, the default of
#: self-managed instances): beyond it the writer waits for the build stage instead.
MAX_NEEDS = 50
#: GitLab's limit on the length of a job name.
MAX_JOB_NAME = 255

#: The names of the pipeline variables that carry the parent's plan to the child's jobs.
PLAN_VARIABLES = {
    "environment": "HOMELAB_RELEASE_ENVIRONMENT",
    "tag": "HOMELAB_RELEASE_TAG",
    "services": "HOMELAB_RELEASE_SERVICES",
    "base": "HOMELAB_RELEASE_BASE",
    "head": "HOMELAB_RELEASE_HEAD",
    "reason": "HOMELAB_RELEASE_CHANGES",
    "files": "HOMELAB_RELEASE_CHANGED_FILES",
}

# The job set-up of the template's hidden job .homelab-release (.gitlab/homelab-release.yml),
# which a child pipeline cannot see; tests/test_gitlab_templates.py checks the two are the same.
#: ``variables:`` of every job besides the homelab-release source and ref.
JOB_VARIABLES = (
    ("HOMELAB_RELEASE_HOME", "/tmp/homelab-release-$CI_JOB_ID"),  # noqa: S108 (the template's)
    ("PIP_CACHE_DIR", "$CI_PROJECT_DIR/.cache/pip"),
)
#: ``before_script:``: fetch homelab-release at the ref, install nox when the image lacks it.
SETUP_SCRIPT = (
    'rm -rf "$HOMELAB_RELEASE_HOME" && git init --quiet "$HOMELAB_RELEASE_HOME"',
    'git -C "$HOMELAB_RELEASE_HOME" fetch --quiet --depth 1 "$HOMELAB_RELEASE_SOURCE" '
    '"$HOMELAB_RELEASE_REF"',
    'git -C "$HOMELAB_RELEASE_HOME" -c advice.detachedHead=false checkout --quiet FETCH_HEAD',
    'command -v nox >/dev/null || python3 -m pip install --quiet "nox>=2024.4.15"',
)
#: ``after_script:``.
CLEANUP_SCRIPT = ('rm -rf "$HOMELAB_RELEASE_HOME"',)
_CACHE = {"key": "homelab-release-pip", "paths": [".cache/pip"]}
_NOX = 'nox --noxfile "$HOMELAB_RELEASE_HOME/noxfile.py"'
_REPO = '--repo "$CI_PROJECT_DIR"'

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JobSettings:
    """How the child pipeline's jobs run: what the parent's template job passes to fan-out.

    ``image``, ``source``, ``ref`` and ``nox_args`` are those of the template's jobs;
    ``runner_tags`` the ``tags:`` of every child job (a child does not inherit ``default:``).
    The build jobs also get ``build_image`` (default ``image``), ``build_services`` (GitLab
    ``services:`` entries), ``build_variables``, ``build_setup`` (``before_script`` lines run
    before the set-up, e.g. installing tools) and ``build_args`` (options of build-service);
    the writer gets ``publish_args`` and ``resource_group``. ``write`` is the template's
    ``HOMELAB_RELEASE_WRITE`` (push or merge-request mode), which every child job gets too;
    :func:`~homelab_release.fanout.generate` fills it in from the environment it reads.
    """

    image: str
    source: str
    ref: str = "main"
    nox_args: str = ""
    runner_tags: tuple[str, ...] = ()
    build_image: str = ""
    build_services: tuple[str | Mapping[str, Any], ...] = ()
    build_variables: tuple[tuple[str, str], ...] = ()
    build_setup: tuple[str, ...] = ()
    build_args: str = ""
    publish_args: str = ""
    resource_group: str = ""
    write: str = ""

    def __post_init__(self) -> None:
        for name in ("image", "source", "ref"):
            if not getattr(self, name).strip():
                raise FanOutError(f"job settings: {name} is empty; pass --{name} (the template "
                                  f"passes its {name} input)")  # fmt: skip
        for name, _ in self.build_variables:
            if not _VARIABLE_NAME.fullmatch(name):
                raise FanOutError(f"job settings: {name!r} is not a CI/CD variable name")
        for tag in self.runner_tags:
            if not isinstance(tag, str) or not tag:
                raise FanOutError(f"job settings: runner tag {tag!r} is not a non-empty string")
        for service in self.build_services:
            named = isinstance(service, Mapping) and isinstance(service.get("name"), str)
            if not (isinstance(service, str) or named):
                raise FanOutError(
                    f"job settings: build service {service!r} is neither an image name nor a "
                    "mapping with a name"
                )


@dataclass(frozen=True)
class ChildJob:
    """One job of the child pipeline (hidden when its name starts with a dot): its keywords and
    their values, in the order they are written."""

    name: str
    keys: tuple[tuple[str, Any], ...]

    @property
    def data(self) -> dict[str, Any]:
        """The job's keywords as a mapping."""
        return dict(self.keys)


@dataclass(frozen=True, slots=True)
class BuildJob:
    """One ``build:<service>`` job: it extends :data:`BUILD_TEMPLATE`, runs ``script`` (which
    builds ``service``) and uploads ``built/<record>.json`` ``when: always``."""

    name: str
    service: str
    record: str
    script: str

    @property
    def artifact(self) -> str:
        """The path of the build record the job uploads."""
        return f"{BUILT_FOLDER}/{self.record}.json"

    @property
    def data(self) -> dict[str, Any]:
        """The job's keywords as a mapping."""
        return {
            "extends": BUILD_TEMPLATE,
            "script": [self.script],
            "artifacts": {"when": "always", "paths": [self.artifact]},
        }


@dataclass(frozen=True)
class ChildPipeline:
    """The child pipeline: stages, pipeline variables (plain, unescaped) and jobs in order."""

    head: str
    stages: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]
    jobs: tuple[ChildJob | BuildJob, ...]

    @property
    def builds(self) -> tuple[BuildJob, ...]:
        """The build jobs, one per planned service, in the plan's order."""
        return tuple(job for job in self.jobs if isinstance(job, BuildJob))

    @property
    def services(self) -> tuple[str, ...]:
        """The planned services."""
        return tuple(job.service for job in self.builds)

    @property
    def build_jobs(self) -> tuple[str, ...]:
        """The names of the build jobs."""
        return tuple(job.name for job in self.builds)

    @property
    def writer_needs(self) -> bool:
        """Whether the writer waits through ``needs`` (else by stage)."""
        return any(job.name == WRITER and "needs" in job.data for job in self.jobs)

    def job(self, name: str) -> ChildJob | BuildJob:
        """The job called ``name`` (KeyError when there is none)."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @property
    def escaped_variables(self) -> dict[str, str]:
        """The pipeline variables as GitLab must read them to leave them as they are."""
        return {name: _escape(value) for name, value in self.variables}

    def data(self) -> dict[str, Any]:
        """The pipeline as the mapping GitLab reads (variables escaped: ``$`` as ``$$``)."""
        out: dict[str, Any] = {"stages": list(self.stages)}
        out["variables"] = self.escaped_variables
        for job in self.jobs:
            out[job.name] = job.data
        return out


def build_job_name(service: str) -> str:
    """``build:<service>``: valid and unique for any service name.

    A name of letters, digits, ``.``, ``_`` and ``-`` is kept as it is; any other name, and one
    too long for GitLab, is cleaned and gets a hash of the real name, so two names never meet.
    """
    return f"build:{record_name(service)}"


def record_name(service: str) -> str:
    """The service's name in job names and file names: ``built/<record_name>.json``."""
    limit = MAX_JOB_NAME - len("build:")
    if _SAFE_NAME.fullmatch(service) and len(service) <= limit:
        return service
    digest = hashlib.sha256(service.encode("utf-8")).hexdigest()[:10]
    cleaned = _UNSAFE_CHARS.sub("-", service).strip("-._") or "service"
    return f"{cleaned[: limit - len(digest) - 1]}-{digest}"


def child_pipeline(
    plan: DevelopPlan, settings: JobSettings, *, max_needs: int = MAX_NEEDS
) -> ChildPipeline:
    """The child pipeline that builds ``plan``'s services, one job each, and publishes them."""
    variables = _plan_variables(plan)
    if not plan.targets:
        return ChildPipeline(plan.changes.head, (BUILD_STAGE,), variables, (_nothing(settings),))
    builds = _build_jobs(plan.services, settings)
    names = tuple(job.name for job in builds)
    if len(set(names)) != len(names):  # a cleaned name met another (needs a hash collision)
        raise FanOutError(f"two services get the same job name: {', '.join(sorted(names))}")
    jobs: tuple[ChildJob | BuildJob, ...] = (
        _job_template(settings),
        _build_template(settings),
        *builds,
        _writer(names, settings, max_needs),
    )
    return ChildPipeline(plan.changes.head, (BUILD_STAGE, PUBLISH_STAGE), variables, jobs)


def _build_jobs(services: Sequence[str], settings: JobSettings) -> tuple[BuildJob, ...]:
    command = _command("build_service", settings.nox_args, "--service", "")
    extra = f" {settings.build_args.strip()}" if settings.build_args.strip() else ""
    jobs = []
    for service in services:
        script = f"{command} {shlex.quote(service)}{extra}"
        jobs.append(BuildJob(build_job_name(service), service, record_name(service), script))
    return tuple(jobs)


def _plan_variables(plan: DevelopPlan) -> tuple[tuple[str, str], ...]:
    count = len(plan.changes.files) if plan.changed_files is None else plan.changed_files
    values = {
        "environment": plan.environment,
        "tag": plan.tag,
        "services": json.dumps(list(plan.services), separators=(",", ":")),
        "base": plan.changes.base or "",
        "head": plan.changes.head,
        "reason": plan.changes.reason,
        "files": str(count),
    }
    return tuple((PLAN_VARIABLES[key], value) for key, value in values.items())


def _job_template(settings: JobSettings) -> ChildJob:
    keys: list[tuple[str, Any]] = [("image", settings.image)]
    keys += _tags(settings)
    source = (("HOMELAB_RELEASE_SOURCE", settings.source), ("HOMELAB_RELEASE_REF", settings.ref))
    write = (("HOMELAB_RELEASE_WRITE", settings.write),)
    keys += [
        ("variables", dict(source + JOB_VARIABLES + write)),
        ("cache", _CACHE),
        ("before_script", list(SETUP_SCRIPT)),
        ("after_script", list(CLEANUP_SCRIPT)),
    ]
    return ChildJob(JOB_TEMPLATE, tuple(keys))


def _build_template(settings: JobSettings) -> ChildJob:
    keys: list[tuple[str, Any]] = [("extends", JOB_TEMPLATE), ("stage", BUILD_STAGE)]
    if settings.build_image:
        keys.append(("image", settings.build_image))
    keys.append(("services", [_service(s) for s in settings.build_services]))
    if settings.build_variables:
        keys.append(("variables", dict(settings.build_variables)))
    if settings.build_setup:
        keys.append(("before_script", [*settings.build_setup, *SETUP_SCRIPT]))
    return ChildJob(BUILD_TEMPLATE, tuple(keys))


def _service(entry: str | Mapping[str, Any]) -> str | dict[str, Any]:
    return entry if isinstance(entry, str) else dict(entry)


def _writer(builds: Sequence[str], settings: JobSettings, max_needs: int) -> ChildJob:
    keys: list[tuple[str, Any]] = [
        ("extends", JOB_TEMPLATE),
        ("stage", PUBLISH_STAGE),
        ("when", "always"),
    ]
    if settings.resource_group:
        keys.append(("resource_group", settings.resource_group))
    if len(builds) <= max_needs:
        keys.append(("needs", [{"job": name, "artifacts": True} for name in builds]))
    options = f'--from "$CI_PROJECT_DIR/{BUILT_FOLDER}"'
    script = _command(WRITER, settings.nox_args, options, settings.publish_args)
    artifacts = {
        "when": "always",
        "reports": {"dotenv": "build.env"},
        "paths": ["build.env", "release-report.json"],
    }
    keys += [("script", [script]), ("artifacts", artifacts)]
    return ChildJob(WRITER, tuple(keys))


def _nothing(settings: JobSettings) -> ChildJob:
    keys: list[tuple[str, Any]] = [("stage", BUILD_STAGE), ("image", settings.image)]
    keys += _tags(settings)
    script = [
        'echo "homelab-release: no service changed: nothing to build, nothing to commit"',
        f'echo "changes: ${PLAN_VARIABLES["reason"]}"',
    ]
    keys.append(("script", script))
    return ChildJob(NOTHING_JOB, tuple(keys))


def _tags(settings: JobSettings) -> list[tuple[str, Any]]:
    return [("tags", list(settings.runner_tags))] if settings.runner_tags else []


def _command(session: str, nox_args: str, options: str, extra: str) -> str:
    parts = (_NOX, f"-s {session}", nox_args.strip(), "--", _REPO, options, extra.strip())
    return " ".join(part for part in parts if part)


# -- rendering ---------------------------------------------------------------------------------


def render(pipeline: ChildPipeline, secrets: Iterable[HiddenText] = ()) -> str:
    """The pipeline as YAML text: block style, every string double-quoted, keys in order.

    A :class:`FanOutError` names the line when the text would hold the value of one of
    ``secrets`` (a token passed as a setting instead of a ``${VARIABLE}`` reference).
    """
    lines = [
        "# Generated by homelab-release fan-out: the develop builds of "
        f"{pipeline.head[:12]} ({len(pipeline.services)} service(s)).",
        "# Do not edit: the parent pipeline's fan_out job writes it for each push.",
    ]
    lines += block("stages", list(pipeline.stages))
    lines += block("variables", pipeline.escaped_variables)
    for job in pipeline.jobs:
        if isinstance(job, BuildJob):  # the bulk of a large pipeline: written directly
            lines.append(
                f"{key(job.name)}:\n  extends: {_BUILD_EXTENDS}\n  script:\n"
                f'    - {scalar(job.script)}\n  artifacts:\n    when: "always"\n'
                f"    paths:\n      - {scalar(job.artifact)}"
            )
        else:
            lines += block(job.name, job.data)
    text = "\n".join(lines) + "\n"
    _refuse_secrets(text, secrets)
    return text


_BUILD_EXTENDS = scalar(BUILD_TEMPLATE)


def _escape(value: str) -> str:
    """A pipeline variable's value as GitLab must read it to leave it as it is."""
    return value.replace("$", "$$")


def _refuse_secrets(text: str, secrets: Iterable[HiddenText]) -> None:
    for secret in secrets:
        value = secret.secret
        if len(value) >= 4 and value in text:
            line = next(n for n, line in enumerate(text.splitlines(), 1) if value in line)
            raise FanOutError(
                f"the child pipeline would hold a secret (on line {line}: a token or password "
                "of this job); pass a reference to the variable instead, e.g. "
                "source: https://gitlab-ci-token:${CI_JOB_TOKEN}@host/group/homelab-release.git"
            )
