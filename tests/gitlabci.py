"""Run real ``gitlab-ci-local`` pipelines on a monorepo work clone (tests and the benchmark).

What gitlab-ci-local 4.60 derives, and how these helpers feed it (read from its source):

* ``CI_COMMIT_SHA`` / ``CI_COMMIT_BRANCH`` come from ``git rev-parse [--abbrev-ref] HEAD`` in the
  project folder, ``CI_PIPELINE_SOURCE`` is always ``push``; ``CI_COMMIT_BEFORE_SHA`` and
  ``CI_REPOSITORY_URL`` are not set at all (pass them with ``--variable``).
* ``CI_PROJECT_PATH``/``CI_PROJECT_URL``/``CI_SERVER_HOST`` are parsed from the ``gcl-origin``
  remote if there is one, else ``origin``; a local path does not parse, so :func:`add_gitlab_origin`
  gives the clone a GitLab-like ``gcl-origin`` and leaves ``origin`` (what homelab-release pushes
  to) pointing at the real bare remote.
* ``CI_PROJECT_DIR`` is ``/builds/<group>/<project>`` for any job with ``image:`` even under
  ``--force-shell-executor``, whose script runs in the project folder itself (or in
  ``.gitlab-ci-local/builds/<job>`` with ``--shell-isolation``): :func:`run_pipeline` callers pass
  the real folder with ``--variable CI_PROJECT_DIR=...``.
* A trigger job runs a child pipeline from a parent job's artifact (``trigger: include:
  artifact:``) in the same state folder, its jobs' names shown as ``[trigger] -> job``; the
  child's jobs get the trigger job's and the global variables and ``.gitlab-ci-local-variables.yml``
  (:func:`write_local_variables`), but not the ``--variable`` values. ``strategy: depend`` is not
  honoured: the trigger job passes and the exit code is 0 whatever the child's jobs did, so tests
  read the child's job results from the output (:func:`job_results`).
* With ``--shell-isolation`` each job runs in its own copy of the project
  (``.gitlab-ci-local/builds/<job>``) and gets artifacts only through ``needs``/stages, but a job
  with ``image:`` gets ``CI_PROJECT_DIR=/builds/...`` and no variable can name its own folder
  (and the schema refuses an empty ``image``): the template tests run the jobs in the project
  folder. Either way each job's ``artifacts: paths:`` are copied to
  ``.gitlab-ci-local/artifacts/<safe job name>/`` (:func:`artifacts_folder`).
* ``rules: changes:`` compare the work tree with ``origin/<default branch>``; ``--variable`` wins
  over job variables; ``services:`` are started with the container engine even under
  ``--force-shell-executor`` (so the templates take ``services`` as an input); ``resource_group``
  is accepted and ignored; ``include: project:`` files are read from
  ``.gitlab-ci-local/includes/<host>/<project>/<ref>/<file>`` when present (no network needed).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_release.git import git

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / ".gitlab"
VERSION = "4.60.0"
GITLAB_HOST = "gitlab.example.com"
GITLAB_URL = f"https://{GITLAB_HOST}/homelab/homelab-go.git"
STAGES = ("build", "test", "deploy")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Snapshot",
    "GIT_AUTHOR_EMAIL": "snapshot@example.com",
    "GIT_COMMITTER_NAME": "Snapshot",
    "GIT_COMMITTER_EMAIL": "snapshot@example.com",
}


def find_gitlab_ci_local() -> str | None:
    """The path of gitlab-ci-local when it is installed at :data:`VERSION`, else None."""
    path = shutil.which("gitlab-ci-local")
    if path is None:
        return None
    found = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    return path if found.stdout.strip() == VERSION else None


@dataclass(frozen=True)
class PipelineRun:
    """One gitlab-ci-local invocation: its exit code, its output and its wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        """Everything it printed (the job logs are on stdout)."""
        return self.stdout + self.stderr


def run_pipeline(
    project: Path,
    *args: str,
    variables: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> PipelineRun:
    """Run ``gitlab-ci-local --force-shell-executor ARGS`` in ``project`` with ``variables``."""
    argv = ["gitlab-ci-local", "--force-shell-executor", *args]
    for name, value in (variables or {}).items():
        argv += ["--variable", f"{name}={value}"]
    started = time.monotonic()
    done = subprocess.run(
        argv,
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=_environment(),
    )
    return PipelineRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _environment() -> dict[str, str]:
    """The process environment without GitLab's variables of an enclosing CI job."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_", "DOCKER_"))}


def write_local_variables(project: Path, variables: Mapping[str, str]) -> None:
    """Write ``.gitlab-ci-local-variables.yml``: project variables, which reach child pipelines.

    Each is written ``{type: variable, values: {"*": VALUE}}`` (a plain value starting with
    ``/`` would be read as a file to load).
    """
    lines = [
        f'{json.dumps(name)}: {{type: variable, values: {{"*": {json.dumps(value)}}}}}'
        for name, value in variables.items()
    ]
    (project / ".gitlab-ci-local-variables.yml").write_text("\n".join(lines) + "\n")


_JOB_LINE = re.compile(  # not gitlab-ci-local's own "pipeline finished in" line
    r"^(?!pipeline finished)\s*(?:\[[^\]]+\] -> )?(?P<job>\S+)\s+(?P<what>starting|finished in)\b(?P<rest>.*)$"
)


def started_jobs(run: PipelineRun) -> list[str]:
    """The jobs that started, child pipelines' included, in the order they started."""
    return [
        m["job"]
        for m in map(_JOB_LINE.match, run.stdout.splitlines())
        if m and m["what"] == "starting"
    ]


def job_results(run: PipelineRun) -> dict[str, int]:
    """Each finished job's exit code (0 when it passed), child pipelines' jobs included (a
    failed job's line is on stderr)."""
    results = {}
    for match in map(_JOB_LINE.match, run.output.splitlines()):
        if match and match["what"] == "finished in":
            failed = re.search(r"FAIL (\d+)", match["rest"])
            results[match["job"]] = int(failed.group(1)) if failed else 0
    return results


def artifacts_folder(project: Path, job: str) -> Path:
    """Where gitlab-ci-local keeps ``job``'s artifacts: its name with every run of characters
    other than letters, digits, ``_`` and ``-`` written in unpadded base64url."""

    def encode(match: re.Match[str]) -> str:
        return base64.urlsafe_b64encode(match.group().encode()).decode().rstrip("=")

    return project / ".gitlab-ci-local" / "artifacts" / re.sub(r"[^\w-]+", encode, job)


def list_jobs(project: Path, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """``gitlab-ci-local --list-json``: each job's name and ``when`` under ``variables``."""
    run = run_pipeline(project, "--list-json", variables=variables, timeout=120)
    if not run.ok:
        raise AssertionError(f"gitlab-ci-local --list-json failed:\n{run.output}")
    start = re.search(r"^\[", run.stdout, re.MULTILINE)  # after any WARN lines
    if start is None:
        raise AssertionError(f"no job list in the output of gitlab-ci-local:\n{run.output}")
    return {job["name"]: job["when"] for job in json.loads(run.stdout[start.start() :])}


def preview(project: Path, variables: Mapping[str, str] | None = None) -> str:
    """``gitlab-ci-local --preview``: the configuration after includes, inputs and extends."""
    run = run_pipeline(project, "--preview", variables=variables, timeout=120)
    if not run.ok:
        raise AssertionError(f"gitlab-ci-local --preview failed:\n{run.output}")
    return _document(run)


def preview_file(project: Path, file: str) -> str:
    """``gitlab-ci-local --preview --file FILE``: another pipeline file, e.g. a child pipeline."""
    run = run_pipeline(project, "--preview", "--file", file, timeout=120)
    if not run.ok:
        raise AssertionError(f"gitlab-ci-local --preview --file {file} failed:\n{run.output}")
    return _document(run)


def _document(run: PipelineRun) -> str:
    """The YAML document of ``--preview``, without the WARN lines printed before it."""
    start = re.search(r"^---$", run.stdout, re.MULTILINE)
    return run.stdout[start.start() :] if start else run.stdout


def snapshot_source(checkout: Path, dest: Path) -> str:
    """Commit the tracked files of ``checkout``, as they are on disk, into a new repo at ``dest``.

    The templates fetch homelab-release with git, which sees only commits; the snapshot lets the
    tests run the noxfile of the work tree under test. Returns the ``file://`` URL (ref ``main``).
    """
    listed = git(checkout, "ls-files", "-z", "--cached").split("\0")
    for name in filter(None, listed):
        source = checkout / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(dest, "init", "--quiet", "--initial-branch", "main")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "--no-verify", "-m", "snapshot", env=_IDENTITY)
    return dest.as_uri()


def add_gitlab_origin(work: Path, url: str = GITLAB_URL) -> None:
    """Give gitlab-ci-local a GitLab-like remote to parse, keeping ``origin`` as it is."""
    git(work, "remote", "add", "gcl-origin", url)


def install_templates(
    work: Path, inputs: Mapping[str, object], *, jobs: str = "", stages: Iterable[str] = STAGES
) -> None:
    """Copy ``.gitlab/`` into ``work`` and write a ``.gitlab-ci.yml`` that includes it locally.

    ``inputs`` go to ``include: inputs:``; ``jobs`` (YAML text) is appended after the include.
    """
    shutil.copytree(TEMPLATES, work / ".gitlab", dirs_exist_ok=True)
    include = {"local": ".gitlab/homelab-release.yml", "inputs": dict(inputs)}
    write_ci_config(work, include, jobs=jobs, stages=stages)


def write_ci_config(
    work: Path, include: Mapping[str, object], *, jobs: str = "", stages: Iterable[str] = STAGES
) -> None:
    """Write ``work/.gitlab-ci.yml``: ``stages``, the one ``include`` entry, then ``jobs``."""
    text = f"stages: {json.dumps(list(stages))}\ninclude:\n  - {json.dumps(dict(include))}\n"
    (work / ".gitlab-ci.yml").write_text(text + jobs, encoding="utf-8")


def cache_project_include(work: Path, project: str, ref: str, host: str = GITLAB_HOST) -> None:
    """Put ``.gitlab/`` where gitlab-ci-local looks for ``include: project:`` files before fetching."""
    shutil.copytree(
        TEMPLATES, work / ".gitlab-ci-local" / "includes" / host / project / ref / ".gitlab"
    )
