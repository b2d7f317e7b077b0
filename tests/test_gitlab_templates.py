"""The ``.gitlab/`` templates in real gitlab-ci-local 4.60: which jobs run where, and the whole flow.

Two pipelines run for real, a push to develop and then a push to stage, against the session's Docker
Engine and registry, with the manifests served over HTTP behind a token the way GitLab serves them.
The other tests only parse the templates (``--list-json``, ``--preview``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from homelab_release.childpipeline import BUILT_FOLDER, NOTHING_JOB, WRITER
from homelab_release.demo.example import ExampleRepos, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry
from homelab_release.git import git
from homelab_release.images import ImageRef
from homelab_release.registry import image_exists, manifest_digest
from tests.githttp import git_http_server
from tests.gitlabci import (
    VERSION,
    PipelineRun,
    add_gitlab_origin,
    artifacts_folder,
    cache_project_include,
    find_gitlab_ci_local,
    install_templates,
    job_results,
    list_jobs,
    preview,
    preview_file,
    run_pipeline,
    snapshot_source,
    started_jobs,
    write_ci_config,
    write_local_variables,
)
from tests.gitrepo import GitRepo
from tests.infra import in_ci
from tests.oracles import render
from tests.servicesrepo import OVERLAY, break_service, change_services, create_services_repos

pytestmark = pytest.mark.gitlab

TOKEN = "glpat-TemplateTest-Tok3n"
JOB_TOKEN = "jobtok-TemplateTest-J0b"
BRANCH = "k8s-manifests"
WRITERS = ("build_develop", "promote", "release", "rollback")
# A job of the including pipeline that reads build_develop's dotenv report.
SHOW_IMAGES = """
show_images:
  stage: test
  needs: [build_develop]
  rules:
    - if: $CI_COMMIT_BRANCH == "develop"
  script:
    - echo "vote image=[$VOTE_IMAGE] result image=[$RESULT_IMAGE]"
"""


@pytest.fixture(scope="session")
def gitlab_ci_local() -> str:
    """gitlab-ci-local at the version the templates are tested with (scripts/setup.sh installs it)."""
    path = find_gitlab_ci_local()
    if path is None:
        message = f"gitlab-ci-local {VERSION} not found: run scripts/setup.sh"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A git URL of this work tree, for the templates' ``source`` input."""
    return snapshot_source(Path(__file__).resolve().parent.parent, tmp_path_factory.mktemp("src"))


@pytest.fixture
def project(tmp_path: Path, gitlab_ci_local: str) -> Path:
    """A one-commit monorepo on develop with a GitLab-like remote for gitlab-ci-local to parse."""
    repo = GitRepo.init(tmp_path / "monorepo", branch="develop")
    repo.commit("initial", "vote/Dockerfile")
    add_gitlab_origin(repo.path)
    return repo.path


# -- parsing: which job runs in which pipeline ---------------------------------------------------

SOURCE = {"source": "https://gitlab.example.com/homelab/homelab-release.git"}
RENAMED = SOURCE | {"develop_branch": "main", "promote_branches": "/^(stage|prod)$/"}
CHILD = {"strategy": "child-pipeline"}
JOBS = {"build_develop", "fan_out", "build_develop_child", "promote", "plan", "release", "rollback"}


@pytest.mark.parametrize(
    ("inputs", "pipeline", "runs"),
    [
        pytest.param({}, {"CI_COMMIT_BRANCH": "develop"}, {"build_develop"}, id="push-develop"),
        pytest.param({}, {"CI_COMMIT_BRANCH": "stage"}, {"promote"}, id="push-stage"),
        pytest.param({}, {"CI_COMMIT_BRANCH": "stage-2"}, set(), id="push-stage-2"),
        pytest.param({}, {"CI_COMMIT_BRANCH": "feature/x"}, set(), id="push-feature"),
        pytest.param(
            {},
            {"CI_COMMIT_BRANCH": "develop", "CI_PIPELINE_SOURCE": "merge_request_event"},
            {"plan"},
            id="merge-request",
        ),
        pytest.param(
            {},
            {"CI_COMMIT_BRANCH": "develop", "CI_PIPELINE_SOURCE": "schedule"},
            set(),
            id="schedule",
        ),
        pytest.param(
            {},
            {"CI_COMMIT_BRANCH": "stage", "CI_PIPELINE_SOURCE": "web"},
            {"promote", "rollback"},  # rollback: manual, in "Run pipeline" pipelines
            id="web-stage",
        ),
        pytest.param(
            {}, {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.4.0"}, {"release"}, id="tag"
        ),
        pytest.param({}, {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.4"}, set(), id="tag-short"),
        pytest.param(
            SOURCE | {"release_tags": "/^release-/"},
            {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "release-7"},
            {"release"},
            id="inputs-tags",
        ),
        pytest.param(
            RENAMED, {"CI_COMMIT_BRANCH": "main"}, {"build_develop", "rollback"}, id="inputs-main"
        ),
        pytest.param(RENAMED, {"CI_COMMIT_BRANCH": "prod"}, {"promote"}, id="inputs-prod"),
        pytest.param(RENAMED, {"CI_COMMIT_BRANCH": "develop"}, set(), id="inputs-develop"),
        pytest.param(
            CHILD,
            {"CI_COMMIT_BRANCH": "develop"},
            {"fan_out", "build_develop_child"},
            id="child-pipeline-develop",
        ),
        pytest.param(CHILD, {"CI_COMMIT_BRANCH": "stage"}, {"promote"}, id="child-pipeline-stage"),
        pytest.param(
            RENAMED | CHILD,
            {"CI_COMMIT_BRANCH": "main"},
            {"fan_out", "build_develop_child", "rollback"},  # rollback: manual, default branch
            id="child-pipeline-main",
        ),
        pytest.param(
            CHILD,
            {"CI_COMMIT_BRANCH": "develop", "CI_PIPELINE_SOURCE": "merge_request_event"},
            {"plan"},
            id="child-pipeline-merge-request",
        ),
    ],
)
def test_jobs_run_on_their_branches(
    project: Path, inputs: dict[str, str], pipeline: dict[str, str], runs: set[str]
) -> None:
    install_templates(project, SOURCE | inputs)
    jobs = list_jobs(project, pipeline)
    assert set(jobs) == JOBS
    assert {name for name, when in jobs.items() if when != "never"} == runs
    assert jobs["rollback"] in ("manual", "never"), "a rollback never runs by itself"


def test_defaults_target_gitlab_with_docker_in_docker(project: Path) -> None:
    install_templates(project, SOURCE)
    config = YAML(typ="safe").load(preview(project))
    build = config["build_develop"]
    assert build["services"] == [{"name": "docker:27-dind", "alias": "docker"}]
    assert (
        build["variables"].items()
        >= {
            "DOCKER_HOST": "tcp://docker:2376",
            "DOCKER_TLS_CERTDIR": "/certs",
            "DOCKER_CERT_PATH": "/certs/client",
            "DOCKER_TLS_VERIFY": "1",
            "HOMELAB_RELEASE_SOURCE": SOURCE["source"],
            "HOMELAB_RELEASE_REF": "main",
        }.items()
    )
    assert build["artifacts"]["reports"] == {"dotenv": "build.env"}
    assert set(build["artifacts"]["paths"]) == {"build.env", "release-report.json"}
    assert {config[job]["resource_group"] for job in WRITERS} == {"manifests"}
    assert "resource_group" not in config["plan"], "plan writes nothing: it need not wait"
    for job in ("build_develop", "promote", "plan", "release", "rollback"):
        (command,) = config[job]["script"]
        assert f"-s {job} " in command
        assert '-- --repo "$CI_PROJECT_DIR"' in command
    assert config["rollback"]["rules"][0]["when"] == "manual"
    rollback = config["rollback"]["variables"]
    assert {key: rollback[key] for key in ("ROLLBACK_ENV", "ROLLBACK_TO", "ROLLBACK_STEPS")} == {
        "ROLLBACK_ENV": "",
        "ROLLBACK_TO": "",
        "ROLLBACK_STEPS": "",
    }
    assert rollback["HOMELAB_RELEASE_WRITE"] == "", "each environment's write setting decides"
    assert '-- --repo "$CI_PROJECT_DIR" --engine docker' in build["script"][0]


def test_engine_buildah_needs_no_service_and_no_docker_engine(project: Path) -> None:
    install_templates(project, SOURCE | {"engine": "buildah"})
    config = YAML(typ="safe").load(preview(project))
    build = config["build_develop"]
    assert build["services"] == []
    assert build["image"] == {"name": "quay.io/buildah/stable"}
    assert (
        build["variables"].items()
        >= {"BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}.items()
    )
    assert not any(name.startswith("DOCKER_") for name in build["variables"])
    assert '-- --repo "$CI_PROJECT_DIR" --engine buildah' in build["script"][0]
    install, *common = build["before_script"]
    assert install.endswith("|| dnf install -y --quiet python3 python3-pip git-core")
    assert common == config["promote"]["before_script"], "the usual set-up follows"
    assert config["promote"]["image"] == {"name": "python:3.12"}, "only build_develop changes"


def test_project_include_reads_like_the_local_one(project: Path) -> None:
    inputs = SOURCE | {"ref": "v1.2.0", "nox_args": "--no-venv", "promote_args": "--image vote"}
    install_templates(project, inputs)
    local = preview(project)
    file = ".gitlab/homelab-release.yml"
    write_ci_config(
        project,
        {"project": "homelab/homelab-release", "ref": "v1.2.0", "file": file, "inputs": inputs},
    )
    cache_project_include(project, "homelab/homelab-release", "v1.2.0")
    assert preview(project) == local
    assert "-s promote --no-venv -- --repo" in local
    assert "--image vote" in local


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({}, "`source` input: required value has not been provided"),
        (
            SOURCE | {"services": "docker:27-dind"},
            "`services` input: provided value is not a array",
        ),
        (
            SOURCE | {"engine": "kaniko"},
            "`engine` input: `kaniko` cannot be used because it is not in the list of allowed "
            "options",
        ),
    ],
)
def test_bad_inputs_are_refused_by_name(project: Path, inputs: dict[str, str], error: str) -> None:
    install_templates(project, inputs)
    run = run_pipeline(project, "--list")
    assert not run.ok
    assert error in run.output


# -- the whole flow: push to develop, then to stage --------------------------------------------


@dataclass(frozen=True)
class Flow:
    """The example after a develop pipeline and a stage pipeline ran on it."""

    repos: ExampleRepos
    change: str
    manifests: tuple[str, str, str]  # k8s-manifests before, after develop, after stage
    develop: PipelineRun
    stage: PipelineRun
    release: PipelineRun  # a tag pipeline: v1.0.0
    released: str  # k8s-manifests after the release
    registry: LocalRegistry
    manifests_url: str  # served over HTTP, Basic auth oauth2:TOKEN

    def overlay(self, commit: str, environment: str) -> dict[str, Any]:
        text = git(
            self.repos.remote, "show", f"{commit}:k8s/overlays/{environment}/kustomization.yaml"
        )
        data: dict[str, Any] = YAML(typ="safe").load(text)
        return data

    def commits(self, old: str, new: str) -> list[str]:
        return git(self.repos.remote, "rev-list", f"{old}..{new}").split()


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory,
    gitlab_ci_local: str,
    source: str,
    docker_engine: DockerEngine,
    registry: LocalRegistry,
) -> Flow:
    """Lay out the example, change vote, run the develop pipeline, then the stage pipeline."""
    tmp = tmp_path_factory.mktemp("flow")
    repos = create_example_repos(tmp)
    add_gitlab_origin(repos.work)
    inputs = {
        "source": source,
        "nox_args": "--no-venv",  # homelab-release is installed where the tests run
        "services": [],  # no docker:dind: the session's engine instead
        "docker_host": docker_engine.host,
        "docker_cert_path": "",
        "docker_tls_verify": "",
    }
    install_templates(repos.work, inputs, jobs=SHOW_IMAGES)
    base = repos.commit("CI: include homelab-release", ".gitlab-ci.yml", ".gitlab")
    app = repos.work / "vote" / "app.sh"
    app.write_text(app.read_text() + "echo vote v2\n")
    change = repos.commit("vote: v2", "vote")
    tip = _tip(repos)
    with git_http_server(tmp, "oauth2", TOKEN) as url:
        variables = project_variables(repos.work, url, registry)
        develop = run_pipeline(repos.work, variables=variables | {"CI_COMMIT_BEFORE_SHA": base})
        after_develop = _tip(repos)
        git(repos.work, "checkout", "--quiet", "-b", "stage")
        stage = run_pipeline(repos.work, variables=variables)
        after_stage = _tip(repos)
        git(repos.work, "tag", "v1.0.0")
        git(repos.work, "checkout", "--quiet", "--detach", "v1.0.0")  # as a tag pipeline has it
        release = run_pipeline(repos.work, variables=variables | {"CI_COMMIT_TAG": "v1.0.0"})
    manifests = (tip, after_develop, after_stage)
    return Flow(
        repos,
        change,
        manifests,
        develop,
        stage,
        release,
        _tip(repos),
        registry,
        f"{url}/remote.git",
    )


def _tip(repos: ExampleRepos) -> str:
    return git(repos.remote, "rev-parse", BRANCH).strip()


def _started(run: PipelineRun) -> set[str]:
    return set(re.findall(r"^(\w+)\s+starting ", run.stdout, re.MULTILINE))


def _dotenv(path: Path) -> Mapping[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_develop_pipeline_builds_the_changed_service_and_commits_once(flow: Flow) -> None:
    assert flow.develop.ok, flow.develop.output
    assert _started(flow.develop) == {"build_develop", "show_images"}
    before, after, _ = flow.manifests
    (commit,) = flow.commits(before, after)
    message = git(flow.repos.remote, "log", "-1", "--format=%B", commit)
    assert "[skip ci]" in message, "a manifests commit must not start another pipeline"
    assert f"Source-Commit: {flow.change}" in message
    repository = f"{flow.registry.address}/homelab/vote"
    (entry,) = flow.overlay(after, "develop")["images"]
    assert entry["name"] == "vote"
    assert (entry["newName"], entry["newTag"]) == (repository, flow.change)
    credentials = flow.registry.credentials
    assert image_exists(ImageRef.parse(f"{repository}:{flow.change}"), credentials)
    result = ImageRef.parse(f"{flow.registry.address}/homelab/result:{flow.change}")
    assert not image_exists(result, credentials), "result did not change: no build"


def test_develop_pipeline_hands_its_dotenv_report_to_later_jobs(flow: Flow) -> None:
    report = _dotenv(flow.repos.work / "build.env")
    assert report["SERVICES"] == "vote"
    assert report["IMAGE_TAG"] == flow.change
    (entry,) = flow.overlay(flow.manifests[1], "develop")["images"]
    expected = f"{entry['newName']}:{entry['newTag']}@{entry['digest']}"
    assert report["VOTE_IMAGE"] == expected
    assert f"vote image=[{expected}] result image=[]" in flow.develop.stdout


@pytest.mark.kustomize
def test_develop_overlay_renders_the_built_image(flow: Flow, tmp_path: Path) -> None:
    tree = tmp_path / "manifests"
    git(flow.repos.remote, "worktree", "add", "--quiet", "--detach", str(tree), flow.manifests[1])
    try:
        rendered = render(tree / "k8s/overlays/develop")
    finally:
        git(flow.repos.remote, "worktree", "remove", "--force", str(tree))
    images = set(re.findall(r"^\s*- image: (\S+)$", rendered, re.MULTILINE))
    built = _dotenv(flow.repos.work / "build.env")["VOTE_IMAGE"]
    assert images == {built, "result", "worker", "tally"}


def test_stage_pipeline_promotes_the_develop_images(flow: Flow) -> None:
    assert flow.stage.ok, flow.stage.output
    assert _started(flow.stage) == {"promote"}
    _, after_develop, after_stage = flow.manifests
    (commit,) = flow.commits(after_develop, after_stage)
    develop = flow.overlay(after_stage, "develop")["images"]
    assert flow.overlay(after_stage, "stage")["images"] == develop
    assert develop == flow.overlay(after_develop, "develop")["images"], "develop left alone"
    assert "[skip ci]" in git(flow.repos.remote, "log", "-1", "--format=%B", commit)


def test_tag_pipeline_releases_stage_images_to_prod(flow: Flow) -> None:
    assert flow.release.ok, flow.release.output
    assert _started(flow.release) == {"release"}
    (commit,) = flow.commits(flow.manifests[2], flow.released)
    (entry,) = flow.overlay(commit, "prod")["images"]
    (stage,) = flow.overlay(commit, "stage")["images"]
    assert (entry["name"], entry["newTag"], entry["digest"]) == ("vote", "1.0.0", stage["digest"])
    repository = ImageRef.parse(f"{flow.registry.address}/homelab/vote")
    assert (
        manifest_digest(repository.with_tag("1.0.0"), flow.registry.credentials) == stage["digest"]
    )
    message = git(flow.repos.remote, "log", "-1", "--format=%B", commit)
    assert "prod: release 1.0.0 [skip ci]" in message
    assert "Release-Tag: v1.0.0" in message
    assert "release 1.0.0 to prod, images of stage:" in flow.release.stdout


def test_pushes_use_gitlab_token_and_no_secret_is_shown(flow: Flow) -> None:
    # The server accepts only oauth2:TOKEN: a commit there means GITLAB_TOKEN won over the job token.
    assert f"to {BRANCH} of {flow.manifests_url}" in flow.develop.output
    assert len(flow.commits(flow.manifests[0], flow.manifests[2])) == 2
    secrets = (TOKEN, JOB_TOKEN, flow.registry.credentials.password.secret)
    texts = [flow.develop.output, flow.stage.output, flow.release.output]
    written = [flow.repos.work / "build.env", flow.repos.work / "release-report.json"]
    written += sorted((flow.repos.work / ".gitlab-ci-local" / "output").glob("*.log"))
    texts += [path.read_text(encoding="utf-8") for path in written]
    for secret in secrets:
        assert not any(secret in text for text in texts)
    assert len(written) >= 4, "the job logs were not found where gitlab-ci-local writes them"


# -- strategy child-pipeline: fan_out, one build job per service, one writer ---------------------

TWELVE = (
    "api-v2",
    "auth.svc",
    "billing",
    "cart",
    "catalog",
    "gateway",
    "mail.worker",
    "orders",
    "payments",
    "search",
    "users",
    "web-ui",
)
FIVE = ("api-v2", "auth.svc", "cart", "mail.worker", "web-ui")
BROKEN = "cart"


def child_inputs(source: str, engine: DockerEngine) -> dict[str, object]:
    """The template's inputs for the child-pipeline strategy on the session's engine."""
    return {
        "source": source,
        "nox_args": "--no-venv",
        "services": [],
        "docker_host": engine.host,
        "docker_cert_path": "",
        "docker_tls_verify": "",
        "strategy": "child-pipeline",
    }


def project_variables(work: Path, url: str, registry: LocalRegistry) -> dict[str, str]:
    """What GitLab gives every job of the pipelines, child pipelines included."""
    host = url.removeprefix("http://")
    return {
        "CI_PROJECT_DIR": str(work),
        "CI_REPOSITORY_URL": f"http://gitlab-ci-token:{JOB_TOKEN}@{host}/remote.git",
        "GITLAB_TOKEN": TOKEN,
        "CI_REGISTRY": registry.address,
        "CI_REGISTRY_IMAGE": f"{registry.address}/homelab",
        "CI_REGISTRY_USER": registry.credentials.username,
        "CI_REGISTRY_PASSWORD": registry.credentials.password.secret,
    }


def run_push(work: Path, before: str) -> PipelineRun:
    """The push pipeline of the checked-out commit (its jobs run in ``work``)."""
    return run_pipeline(work, variables={"CI_COMMIT_BEFORE_SHA": before})


@dataclass(frozen=True)
class ChildRun:
    """One push through the child-pipeline strategy: the commit, the run, manifests before/after."""

    commit: str
    run: PipelineRun
    before: str
    after: str
    child: str  # the child-pipeline.yml fan_out wrote


@dataclass(frozen=True)
class ChildFlow:
    """Three pushes to the twelve-service monorepo: five changed, five with one broken, none."""

    repos: ExampleRepos
    registry: LocalRegistry
    five: ChildRun
    broken: ChildRun
    nothing: ChildRun

    def entries(self, commit: str) -> dict[str, dict[str, Any]]:
        text = git(self.repos.remote, "show", f"{commit}:{OVERLAY}/kustomization.yaml")
        return {e["name"]: e for e in YAML(typ="safe").load(text)["images"]}

    def commits(self, run: ChildRun) -> list[str]:
        return git(self.repos.remote, "rev-list", f"{run.before}..{run.after}").split()

    def artifact(self, job: str, name: str) -> Path:
        return artifacts_folder(self.repos.work, job) / name


@pytest.fixture(scope="module")
def child_flow(
    tmp_path_factory: pytest.TempPathFactory,
    gitlab_ci_local: str,
    source: str,
    docker_engine: DockerEngine,
    registry: LocalRegistry,
) -> ChildFlow:
    """Push five changed services, then five with one broken Dockerfile, then no service."""
    tmp = tmp_path_factory.mktemp("child")
    repos = create_services_repos(tmp, TWELVE)
    add_gitlab_origin(repos.work)
    install_templates(repos.work, child_inputs(source, docker_engine))
    base = repos.commit("CI: include homelab-release", ".gitlab-ci.yml", ".gitlab")
    with git_http_server(tmp, "oauth2", TOKEN) as url:
        write_local_variables(repos.work, project_variables(repos.work, url, registry))

        def push(commit: str, before: str) -> ChildRun:
            tip = _tip(repos)
            run = run_push(repos.work, before)
            child = artifacts_folder(repos.work, "fan_out") / "child-pipeline.yml"
            return ChildRun(commit, run, tip, _tip(repos), child.read_text(encoding="utf-8"))

        five = push(change_services(repos, FIVE, "release 2"), base)
        break_service(repos, BROKEN)
        broken = push(change_services(repos, FIVE, "release 3"), five.commit)
        (repos.work / "README.md").write_text("Twelve services.\n")
        nothing = push(repos.commit("docs: README"), broken.commit)
    return ChildFlow(repos, registry, five, broken, nothing)


def test_child_pipeline_builds_the_five_changed_services_and_commits_once(
    child_flow: ChildFlow,
) -> None:
    run = child_flow.five
    build_jobs = {f"build:{service}" for service in FIVE}
    assert set(started_jobs(run.run)) == {"fan_out", WRITER, *build_jobs}, run.run.output
    assert re.search(r"^ PASS\s+build_develop_child\s*$", run.run.stdout, re.MULTILINE)
    assert job_results(run.run) == dict.fromkeys({"fan_out", *build_jobs, WRITER}, 0)
    (commit,) = child_flow.commits(run)
    message = git(child_flow.repos.remote, "log", "-1", "--format=%B", commit)
    assert "[skip ci]" in message
    assert f"Source-Commit: {run.commit}" in message
    assert f"develop: update {', '.join(sorted(FIVE))}" in message
    before, after = child_flow.entries(run.before), child_flow.entries(run.after)
    repository = f"{child_flow.registry.address}/homelab"
    for service in FIVE:
        entry = after[service]
        assert (entry["newName"], entry["newTag"]) == (f"{repository}/{service}", run.commit)
        ref = ImageRef.parse(f"{entry['newName']}@{entry['digest']}")
        assert image_exists(ref, child_flow.registry.credentials)
    assert {s: after[s] for s in TWELVE if s not in FIVE} == {
        s: before[s] for s in TWELVE if s not in FIVE
    }, "the seven services that did not change keep their entries"


def test_child_pipeline_with_a_failing_build_lands_the_other_four_and_fails(
    child_flow: ChildFlow,
) -> None:
    run = child_flow.broken
    results = job_results(run.run)
    assert results.get(f"build:{BROKEN}"), run.run.output
    assert results[WRITER] == 1, "the writer fails the pipeline after writing the others"
    assert {job for job, code in results.items() if code} == {f"build:{BROKEN}", WRITER}
    (commit,) = child_flow.commits(run)
    after, before = child_flow.entries(run.after), child_flow.entries(run.before)
    assert {s for s in TWELVE if after[s] != before[s]} == set(FIVE) - {BROKEN}
    assert all(after[s]["newTag"] == run.commit for s in FIVE if s != BROKEN)
    assert after[BROKEN]["newTag"] == child_flow.five.commit, (
        "the failed build keeps the last image"
    )
    report = json.loads(child_flow.artifact(WRITER, "release-report.json").read_text())
    assert report["failed"] == [BROKEN]
    (failed,) = [b for b in report["builds"] if not b["ok"]]
    assert failed["service"] == BROKEN
    assert "missing.txt" in failed["error"]
    assert report["manifests_commit"] == commit
    dotenv = _dotenv(child_flow.artifact(WRITER, "build.env"))
    assert dotenv["FAILED_SERVICES"] == BROKEN
    assert dotenv["SERVICES"] == ",".join(s for s in sorted(FIVE) if s != BROKEN)


def test_child_pipeline_with_nothing_changed_runs_one_job_and_commits_nothing(
    child_flow: ChildFlow,
) -> None:
    run = child_flow.nothing
    assert set(started_jobs(run.run)) == {"fan_out", NOTHING_JOB}
    assert job_results(run.run) == {"fan_out": 0, NOTHING_JOB: 0}
    assert "no service changed: nothing to build, nothing to commit" in run.run.stdout
    assert run.after == run.before


def test_child_pipeline_holds_no_secret(child_flow: ChildFlow) -> None:
    secrets = (TOKEN, JOB_TOKEN, child_flow.registry.credentials.password.secret)
    state = child_flow.repos.work / ".gitlab-ci-local"
    written = sorted((state / "output").glob("*.log")) + sorted((state / "artifacts").rglob("*"))
    written = [path for path in written if path.is_file()]
    assert any(path.name == "child-pipeline.yml" for path in written)
    assert sum(path.parent.name == BUILT_FOLDER for path in written) >= len(FIVE)
    texts = [path.read_text(encoding="utf-8") for path in written]
    texts += [r.run.output for r in (child_flow.five, child_flow.broken, child_flow.nothing)]
    for secret in secrets:
        assert not any(secret in text for text in texts)


def test_generated_child_jobs_match_the_template_jobs(child_flow: ChildFlow) -> None:
    """The child's build job is set up like the template's build_develop (same image, fetch of
    homelab-release, cache, engine services and variables): the two are kept in step here."""
    work = child_flow.repos.work
    parent = YAML(typ="safe").load(preview(work, {"CI_COMMIT_BRANCH": "develop"}))
    (work / ".gitlab-ci-local" / "child.yml").write_text(child_flow.five.child, encoding="utf-8")
    child = YAML(typ="safe").load(preview_file(work, ".gitlab-ci-local/child.yml"))
    template, generated = parent["build_develop"], child[f"build:{FIVE[0]}"]
    for key in ("image", "before_script", "after_script", "cache", "services"):
        assert generated[key] == template[key], key
    variables = dict(template["variables"])
    assert variables.pop("HOMELAB_RELEASE_STRATEGY") == "child-pipeline"
    assert generated["variables"] == variables
    assert generated["script"][0].endswith(f"--service {FIVE[0]} --engine docker")
    assert child[WRITER]["before_script"] == parent["promote"]["before_script"]


def test_two_child_pipelines_at_once_lose_nothing(
    tmp_path: Path,
    gitlab_ci_local: str,
    source: str,
    docker_engine: DockerEngine,
    registry: LocalRegistry,
) -> None:
    """Two pushes, each a child pipeline in its own checkout (two runners), at the same time:
    both land, and a service both changed ends at the later commit's image, in the overlay and
    in ``latest``, whichever pipeline finished last."""
    services = ("billing", "orders", "search", "users")
    repos = create_services_repos(tmp_path, services)
    install_templates(repos.work, child_inputs(source, docker_engine))
    base = repos.commit("CI: include homelab-release", ".gitlab-ci.yml", ".gitlab")
    first = change_services(repos, ("billing", "orders"), "one")
    second = change_services(repos, ("orders", "search"), "two")
    tip = _tip(repos)
    with git_http_server(tmp_path, "oauth2", TOKEN) as url, ThreadPoolExecutor(2) as pool:
        runs = []
        for name, commit, before in (("runner-a", first, base), ("runner-b", second, first)):
            clone = tmp_path / name
            git(tmp_path, "clone", "--quiet", "--branch", "develop", str(repos.remote), str(clone))
            git(clone, "checkout", "--quiet", "-B", "develop", commit)
            add_gitlab_origin(clone)
            write_local_variables(clone, project_variables(clone, url, registry))
            runs.append(pool.submit(run_push, clone, before))
        outcomes = [run.result() for run in runs]
    for outcome, changed in zip(
        outcomes, (("billing", "orders"), ("orders", "search")), strict=True
    ):
        jobs = {"fan_out", WRITER, *(f"build:{service}" for service in changed)}
        assert job_results(outcome) == dict.fromkeys(jobs, 0), outcome.output
    assert len(git(repos.remote, "rev-list", f"{tip}..{BRANCH}").split()) == 2
    text = git(repos.remote, "show", f"{BRANCH}:{OVERLAY}/kustomization.yaml")
    entries = {e["name"]: e for e in YAML(typ="safe").load(text)["images"]}
    expected = {"billing": first, "orders": second, "search": second, "users": "v0"}
    assert {s: str(entries[s]["newTag"]) for s in services} == expected
    for service in ("billing", "orders", "search"):
        latest = ImageRef.parse(f"{entries[service]['newName']}:latest")
        assert manifest_digest(latest, registry.credentials) == entries[service]["digest"], service


# -- engine: buildah, with no Docker Engine anywhere ----------------------------------------------


def test_develop_pipeline_builds_with_buildah_and_no_docker_engine(
    tmp_path: Path,
    gitlab_ci_local: str,
    source: str,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
) -> None:
    repos = create_example_repos(tmp_path / "flow")
    add_gitlab_origin(repos.work)
    inputs = {"source": source, "nox_args": "--no-venv", "engine": "buildah"}
    install_templates(repos.work, inputs)
    base = repos.commit("CI: include homelab-release", ".gitlab-ci.yml", ".gitlab")
    app = repos.work / "vote" / "app.sh"
    app.write_text(app.read_text() + "echo vote built by buildah\n")
    change = repos.commit("vote: v2", "vote")
    project = f"{registry.address}/homelab-buildah-{change[:8]}"
    with git_http_server(tmp_path / "flow", "oauth2", TOKEN) as url:
        variables = project_variables(repos.work, url, registry) | {
            "CI_COMMIT_BEFORE_SHA": base,
            "CI_REGISTRY_IMAGE": project,
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker-engine.sock",  # nothing answers here
            "CONTAINERS_STORAGE_CONF": buildah_env["CONTAINERS_STORAGE_CONF"],
        }
        run = run_pipeline(repos.work, variables=variables)
    assert run.ok, run.output
    assert _started(run) == {"build_develop"}
    assert "STEP 1/" in run.output, "the build log of buildah is not in the job log"
    (entry,) = YAML(typ="safe").load(
        git(repos.remote, "show", f"{BRANCH}:k8s/overlays/develop/kustomization.yaml")
    )["images"]
    reference = ImageRef.parse(f"{project}/vote:{change}")
    assert entry["newName"] == f"{project}/vote"
    assert entry["digest"] == manifest_digest(reference, registry.credentials)
    assert registry.credentials.password.secret not in run.output


def test_child_pipeline_builds_with_buildah_set_up_like_build_develop(
    tmp_path: Path,
    gitlab_ci_local: str,
    source: str,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
) -> None:
    """``engine: buildah`` reaches the child's build jobs: no Docker Engine anywhere, buildah's
    log in the job, one commit; the build job is set up like build_develop on buildah."""
    repos = create_example_repos(tmp_path / "flow")
    add_gitlab_origin(repos.work)
    inputs = {
        "source": source,
        "nox_args": "--no-venv",
        "engine": "buildah",
        "strategy": "child-pipeline",
    }
    install_templates(repos.work, inputs)
    base = repos.commit("CI: include homelab-release", ".gitlab-ci.yml", ".gitlab")
    app = repos.work / "vote" / "app.sh"
    app.write_text(app.read_text() + "echo vote built by buildah in a child pipeline\n")
    change = repos.commit("vote: v2", "vote")
    project = f"{registry.address}/homelab-child-buildah-{change[:8]}"
    tip = _tip(repos)
    with git_http_server(tmp_path / "flow", "oauth2", TOKEN) as url:
        variables = project_variables(repos.work, url, registry) | {
            "CI_REGISTRY_IMAGE": project,
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker-engine.sock",  # nothing answers here
            "CONTAINERS_STORAGE_CONF": buildah_env["CONTAINERS_STORAGE_CONF"],
        }
        write_local_variables(repos.work, variables)
        run = run_push(repos.work, base)
    assert job_results(run) == {"fan_out": 0, "build:vote": 0, WRITER: 0}, run.output
    assert "STEP 1/" in run.output, "the build log of buildah is not in the job log"
    assert len(git(repos.remote, "rev-list", f"{tip}..{BRANCH}").split()) == 1
    (entry,) = YAML(typ="safe").load(
        git(repos.remote, "show", f"{BRANCH}:k8s/overlays/develop/kustomization.yaml")
    )["images"]
    assert entry["digest"] == manifest_digest(
        ImageRef.parse(f"{project}/vote:{change}"), registry.credentials
    )
    parent = YAML(typ="safe").load(preview(repos.work, {"CI_COMMIT_BRANCH": "develop"}))
    child_file = artifacts_folder(repos.work, "fan_out") / "child-pipeline.yml"
    child = YAML(typ="safe").load(preview_file(repos.work, str(child_file.relative_to(repos.work))))
    template, generated = parent["build_develop"], child["build:vote"]
    for key in ("image", "before_script", "after_script", "cache", "services"):
        assert generated[key] == template[key], key
    variables = dict(template["variables"])
    variables.pop("HOMELAB_RELEASE_STRATEGY")
    assert generated["variables"] == variables
    assert generated["script"][0].endswith("--service vote --engine buildah")
