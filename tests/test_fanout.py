"""The child-pipeline strategy: the generated YAML, the plan it carries, the build records, and the
three steps (fan-out, build-service, publish-develop) against the real engine, registry and remote.

The template running it in gitlab-ci-local is tested in test_gitlab_templates.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from homelab_release.buildrecords import (
    from_record,
    read_build_records,
    to_record,
    write_build_record,
)
from homelab_release.changes import ChangeSet
from homelab_release.childpipeline import (
    BUILD_STAGE,
    JOB_TEMPLATE,
    MAX_JOB_NAME,
    NOTHING_JOB,
    PLAN_VARIABLES,
    PUBLISH_STAGE,
    WRITER,
    ChildPipeline,
    JobSettings,
    build_job_name,
    child_pipeline,
    record_name,
    render,
)
from homelab_release.cli import main
from homelab_release.demo import Sandbox
from homelab_release.demo.example import BUILDAH_ONLY, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry
from homelab_release.develop import BuildTarget, DevelopPlan, ServiceBuild
from homelab_release.errors import ConfigError, FanOutError, ReleaseError
from homelab_release.fanout import (
    PlannedRun,
    build_planned_service,
    fan_out,
    generate,
    publish_planned,
)
from homelab_release.git import git
from homelab_release.gitlabtext import parse_gitlab_array
from homelab_release.overlay import read_overlay_images
from homelab_release.secrets import HiddenText
from homelab_release.workspace import Workspace
from tests.faults import FallingEngine
from tests.gitlabci import add_gitlab_origin, job_results, run_pipeline, started_jobs
from tests.gitrepo import run_git

SHA = "a" * 40
BEFORE = "b" * 40
SETTINGS = JobSettings(image="python:3.12", source="https://gitlab.example.com/h/r.git")
REGISTRY = "registry.example.com/homelab"


def plan_of(services: list[str], *, reason: str = "push pipeline", files: int = 3) -> DevelopPlan:
    targets = tuple(BuildTarget(s, f"{REGISTRY}/{s}", s, f"{s}/Dockerfile", s) for s in services)
    changes = ChangeSet(BEFORE, SHA, tuple(f"f{i}" for i in range(files)), tuple(services), reason)
    return DevelopPlan("develop", changes, SHA, targets)


def load(text: str) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(text)
    return data


# -- job names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "job"),
    [
        ("vote", "build:vote"),
        ("api-v2", "build:api-v2"),
        ("auth.svc", "build:auth.svc"),
        ("mail_worker.v1-2", "build:mail_worker.v1-2"),
        ("Web", "build:Web"),
    ],
)
def test_plain_service_names_are_kept(service: str, job: str) -> None:
    assert build_job_name(service) == job
    assert record_name(service) == service


@pytest.mark.parametrize(
    "service", ["my service", "a:b", "ünï", "-dash", "x" * 300, "a/b", ".", "vote\n", "a\nb"]
)
def test_other_names_are_cleaned_hashed_and_short_enough(service: str) -> None:
    name = build_job_name(service)
    assert re.fullmatch(r"build:[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{10}", name), name
    assert len(name) <= MAX_JOB_NAME


@given(st.lists(st.text(min_size=1, max_size=300), min_size=2, max_size=8, unique=True))
def test_job_names_are_unique_and_valid_for_any_names(services: list[str]) -> None:
    names = [build_job_name(service) for service in services]
    assert len(set(names)) == len(names)
    assert all(len(name) <= MAX_JOB_NAME and "\n" not in name for name in names)


# -- the generated pipeline ------------------------------------------------------------------------


def test_five_services_give_five_build_jobs_and_a_writer_that_needs_them() -> None:
    services = ["api-v2", "auth.svc", "cart", "mail.worker", "web-ui"]
    pipeline = child_pipeline(plan_of(services), SETTINGS)
    data = load(render(pipeline))
    assert data["stages"] == [BUILD_STAGE, PUBLISH_STAGE]
    builds = [name for name in data if name.startswith("build:")]
    assert builds == [f"build:{s}" for s in services] == list(pipeline.build_jobs)
    cart = data["build:cart"]
    assert cart["artifacts"] == {"when": "always", "paths": ["built/cart.json"]}
    (command,) = cart["script"]
    assert '-s build_service -- --repo "$CI_PROJECT_DIR" --service cart' in command
    writer = data[WRITER]
    assert writer["when"] == "always"
    assert writer["stage"] == PUBLISH_STAGE
    assert writer["needs"] == [{"job": name, "artifacts": True} for name in builds]
    assert writer["artifacts"]["reports"] == {"dotenv": "build.env"}
    assert pipeline.writer_needs


def test_every_child_job_gets_the_write_mode() -> None:
    settings = dataclasses.replace(SETTINGS, write="merge-request")
    data = load(render(child_pipeline(plan_of(["cart"]), settings)))
    assert data[JOB_TEMPLATE]["variables"]["HOMELAB_RELEASE_WRITE"] == "merge-request"
    assert data[WRITER]["extends"] == JOB_TEMPLATE, "the writer honours merge-request mode"


@pytest.mark.parametrize(("count", "needs"), [(50, True), (51, False)])
def test_the_writer_waits_by_stage_beyond_fifty_build_jobs(count: int, needs: bool) -> None:
    pipeline = child_pipeline(plan_of([f"svc-{i:03d}" for i in range(count)]), SETTINGS)
    writer = load(render(pipeline))[WRITER]
    assert ("needs" in writer) is needs
    assert writer["when"] == "always"
    assert pipeline.writer_needs is needs


def test_nothing_planned_gives_one_job_that_says_so() -> None:
    pipeline = child_pipeline(plan_of([]), SETTINGS)
    data = load(render(pipeline))
    assert [key for key in data if key not in ("stages", "variables")] == [NOTHING_JOB]
    assert data["stages"] == [BUILD_STAGE]
    assert data[NOTHING_JOB]["stage"] == BUILD_STAGE
    assert pipeline.build_jobs == ()


def test_same_input_same_bytes_and_the_yaml_reads_back_as_the_data() -> None:
    plan = plan_of(
        ["b", "a.v2", "c-d", "x\ny: z", "on"],
        reason='ünïcode \u2028 line\tseparator \x7f and "quotes"',
    )
    settings = replace(
        SETTINGS,
        runner_tags=("docker", "on"),
        build_services=({"name": "docker:27-dind", "alias": "docker"}, "redis:7"),
        build_variables=(("DOCKER_HOST", "tcp://docker:2376"), ("Y", "yes")),
        build_setup=("apk add git",),
        resource_group="manifests",
    )
    first = render(child_pipeline(plan, settings))
    assert first == render(child_pipeline(plan, settings))
    assert load(first) == child_pipeline(plan, settings).data()


@given(
    st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5, unique=True),
    st.text(max_size=80),
)
def test_any_names_and_reason_read_back_as_written(services: list[str], reason: str) -> None:
    pipeline = child_pipeline(plan_of(services, reason=reason), SETTINGS)
    assert load(render(pipeline)) == pipeline.data()


def test_plan_values_are_escaped_so_gitlab_never_expands_them() -> None:
    plan = plan_of(["vote"], reason="new branch feature/$GITLAB_TOKEN ${CI_JOB_TOKEN}")
    variables = load(render(child_pipeline(plan, SETTINGS)))["variables"]
    assert (
        variables[PLAN_VARIABLES["reason"]] == "new branch feature/$$GITLAB_TOKEN $${CI_JOB_TOKEN}"
    )


def test_the_plan_travels_in_the_variables() -> None:
    plan = plan_of(["api-v2", "auth.svc"], reason="push pipeline: compared x with y", files=7)
    pipeline = child_pipeline(plan, SETTINGS)
    planned = PlannedRun.from_variables(dict(pipeline.variables))
    assert planned == PlannedRun(
        "develop", SHA, ("api-v2", "auth.svc"), SHA, BEFORE, plan.changes.reason, 7
    )


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({PLAN_VARIABLES["services"]: "vote,result"}, "must be a JSON array of service names"),
        ({PLAN_VARIABLES["services"]: "[]"}, "HOMELAB_RELEASE_ENVIRONMENT, HOMELAB_RELEASE_TAG"),
    ],
)
def test_a_broken_plan_in_the_variables_is_named(variables: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        PlannedRun.from_variables(variables)


def test_outside_a_child_pipeline_there_is_no_plan() -> None:
    assert PlannedRun.from_variables({"CI_COMMIT_SHA": SHA}) is None


def test_a_secret_value_in_a_setting_is_refused_without_showing_it() -> None:
    token = "glpat-S3cretValue"
    settings = replace(SETTINGS, source=f"https://oauth2:{token}@gitlab.example.com/h/r.git")
    pipeline = child_pipeline(plan_of(["vote"]), settings)
    with pytest.raises(FanOutError, match=r"on line \d+.*\$\{CI_JOB_TOKEN\}") as caught:
        render(pipeline, [HiddenText(token)])
    assert token not in str(caught.value)
    reference = replace(
        SETTINGS, source="https://gitlab-ci-token:${CI_JOB_TOKEN}@gitlab.example.com/h/r.git"
    )
    text = render(child_pipeline(plan_of(["vote"]), reference), [HiddenText(token)])
    assert "${CI_JOB_TOKEN}@gitlab.example.com" in text, "a reference is expanded in the child"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"image": " "}, "image is empty"),
        ({"source": ""}, "source is empty"),
        ({"build_variables": (("DOCKER-HOST", "x"),)}, "'DOCKER-HOST' is not a CI/CD variable"),
        ({"build_services": ({"alias": "docker"},)}, "neither an image name nor a mapping"),
        ({"build_services": (1,)}, "build service 1 is neither"),
        ({"runner_tags": ("",)}, "runner tag ''"),
    ],
)
def test_bad_job_settings_are_named(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(FanOutError, match=re.escape(error)):
        replace(SETTINGS, **settings)


def test_a_cleaned_name_does_not_clash_with_a_plain_one() -> None:
    pipeline = child_pipeline(plan_of(["a b", "a-b"]), SETTINGS)
    assert len(set(pipeline.build_jobs)) == 2  # "a b" is hashed, "a-b" is not: no clash


# -- array inputs as GitLab writes them into a string ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", []),
        ("[]", []),
        (
            '[{"name":"docker:27-dind","alias":"docker"}]',
            [{"name": "docker:27-dind", "alias": "docker"}],
        ),
        (
            '[{:name=>"docker:27-dind", :alias=>"docker"}]',
            [{"name": "docker:27-dind", "alias": "docker"}],
        ),
        (
            '[{name: "docker:27-dind", alias: "docker"}]',
            [{"name": "docker:27-dind", "alias": "docker"}],
        ),
        (
            '[{"name"=>"docker:27-dind", "command"=>["--tls=false"]}]',
            [{"name": "docker:27-dind", "command": ["--tls=false"]}],
        ),
        ('["docker", "linux"]', ["docker", "linux"]),
        ("[:docker]", ["docker"]),
        ("[{:pull=>true, :n=>nil}]", [{"pull": True, "n": None}]),
    ],
)
def test_gitlab_arrays_are_read_as_json_or_ruby(text: str, value: list[Any]) -> None:
    assert parse_gitlab_array(text, "--build-services") == value


@pytest.mark.parametrize("text", ["docker:27-dind", "{:name=>1}", "[1, 2", '["a" "b"]', "[$(rm)]"])
def test_text_that_is_no_array_is_named(text: str) -> None:
    with pytest.raises(ConfigError, match="--runner-tags"):
        parse_gitlab_array(text, "--runner-tags")


# -- build records -----------------------------------------------------------------------------------


def test_a_build_record_reads_back_as_the_build(tmp_path: Path) -> None:
    from homelab_release.build import BuildDurations

    build = ServiceBuild("auth.svc", f"{REGISTRY}/auth.svc", SHA, ok=True, digest="sha256:" + "1" * 64,
                         seconds=2.5, durations=BuildDurations(0.1, 1.5, 0.7, 0.2))  # fmt: skip
    path = write_build_record(tmp_path, build)
    assert path.name == "auth.svc.json"
    assert from_record(json.loads(path.read_text()), path.name) == build
    failed = ServiceBuild("cart", "", SHA, ok=False, error="COPY failed")
    assert from_record(to_record(failed), "x") == failed


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"ok": "yes"}, "ok must be a boolean, not a string"),
        ({"seconds": -1}, "seconds must be a number of seconds"),
        ({"seconds": True}, "seconds must be a number, not a boolean"),
        ({"digest": ""}, "a successful build needs repository, tag and digest"),
        ({"service": None}, "service must be a string, not null"),
        ({"error": ["x"]}, "error must be a string, not an array"),
        ({"phases": {"build": 1}}, "cache_pull must be a number, not null"),
        ({"phases": []}, "phases must be an object or null"),
    ],
)
def test_a_bad_build_record_is_named(change: dict[str, Any], error: str) -> None:
    good = ServiceBuild("vote", f"{REGISTRY}/vote", SHA, ok=True, digest="sha256:" + "2" * 64)
    with pytest.raises(ReleaseError, match=re.escape(f"vote.json: {error}")):
        from_record(to_record(good) | change, "vote.json")


def test_records_missing_broken_or_from_another_pipeline_count_as_failed(tmp_path: Path) -> None:
    plan = plan_of(["ok", "missing", "broken", "stale", "other-repo"])
    digest = "sha256:" + "3" * 64
    for service, tag, repository in (
        ("ok", SHA, f"{REGISTRY}/ok"),
        ("stale", "c" * 40, f"{REGISTRY}/stale"),
        ("other-repo", SHA, "elsewhere/other-repo"),
        ("not-planned", SHA, f"{REGISTRY}/not-planned"),
    ):
        write_build_record(tmp_path, ServiceBuild(service, repository, tag, ok=True, digest=digest))
    (tmp_path / "broken.json").write_text("{not json")
    builds = {b.service: b for b in read_build_records(tmp_path, plan)}
    assert list(builds) == ["ok", "missing", "broken", "stale", "other-repo"]
    assert builds["ok"].ok
    assert builds["ok"].digest == digest
    assert "job build:missing did not finish" in builds["missing"].error
    assert "broken.json: not JSON" in builds["broken"].error
    assert "is for tag 'cccc" in builds["stale"].error
    assert "is for repository 'elsewhere/other-repo'" in builds["other-repo"].error
    assert not any(builds[s].ok for s in ("missing", "broken", "stale", "other-repo"))


# -- gitlab-ci-local reads the generated YAML ---------------------------------------------------------


@pytest.mark.gitlab
def test_gitlab_ci_local_expands_no_plan_value_into_a_secret(tmp_path: Path) -> None:
    """The no-op child echoes the change reason; with ``$GITLAB_TOKEN`` in it (a branch may be
    called so), GitLab must print the text, not the token."""
    from tests.gitlabci import find_gitlab_ci_local, write_local_variables

    if find_gitlab_ci_local() is None:
        pytest.skip("gitlab-ci-local 4.60.0 not found: run scripts/setup.sh")
    token = "glpat-NeverExpanded"
    reason = "new branch feature/$GITLAB_TOKEN ${GITLAB_TOKEN} $$GITLAB_TOKEN"
    text = render(child_pipeline(plan_of([], reason=reason), SETTINGS))
    run_git(tmp_path, "init", "-q", "-b", "develop")
    (tmp_path / ".gitlab-ci.yml").write_text(text)
    run_git(tmp_path, "add", ".gitlab-ci.yml")
    run_git(tmp_path, "commit", "-qm", "child")
    add_gitlab_origin(tmp_path)
    write_local_variables(tmp_path, {"GITLAB_TOKEN": token})
    run = run_pipeline(tmp_path)
    assert started_jobs(run) == [NOTHING_JOB]
    assert job_results(run) == {NOTHING_JOB: 0}
    assert f"changes: {reason}" in run.stdout
    assert token not in run.output


@pytest.mark.gitlab
def test_five_hundred_services_with_120_changed_give_valid_yaml_with_a_stage_ordered_writer(
    tmp_path: Path,
) -> None:
    from tests.gitlabci import find_gitlab_ci_local

    if find_gitlab_ci_local() is None:
        pytest.skip("gitlab-ci-local 4.60.0 not found: run scripts/setup.sh")
    services = [f"svc-{i:03d}" for i in range(500)]
    repo = tmp_path / "monorepo"
    repo.mkdir()
    (repo / "homelab-release.toml").write_text(
        '[registry]\nrepository = "registry.example.com/m"\n'
    )
    for service in services:
        (repo / service).mkdir()
        (repo / service / "Dockerfile").write_text("FROM scratch\n")
    run_git(repo, "init", "-q", "-b", "develop")
    run_git(repo, "add", ".")
    run_git(repo, "commit", "-qm", "services")
    first = run_git(repo, "rev-parse", "HEAD").strip()
    changed = services[::4][:120]
    for service in changed:
        (repo / service / "app.txt").write_text("new\n")
    run_git(repo, "add", ".")
    run_git(repo, "commit", "-qm", "120 services")
    ws = Workspace.open(repo, env={})
    done = generate(ws, SETTINGS, base=first)
    assert done.pipeline.services == tuple(changed)
    assert not done.pipeline.writer_needs
    run_git(repo, "checkout", "-q", "-b", "child")
    (repo / "child.yml").write_text(done.text)
    add_gitlab_origin(repo)
    listed = run_pipeline(repo, "--list-json", "--file", "child.yml", timeout=180)
    assert listed.ok, listed.output
    assert "json schema validated" in listed.output
    jobs = json.loads(listed.stdout[listed.stdout.index("[") :])
    assert [job["name"] for job in jobs] == [build_job_name(s) for s in changed] + [WRITER]
    writer = load(done.text)[WRITER]
    assert (writer["stage"], writer["when"], "needs" in writer) == (PUBLISH_STAGE, "always", False)


# -- the three steps on the real engine, registry and remote ------------------------------------------


@pytest.fixture
def box(tmp_path: Path, docker_engine: DockerEngine, registry: LocalRegistry) -> Sandbox:
    repos = create_example_repos(tmp_path / "repos", without=BUILDAH_ONLY)
    return Sandbox(tmp_path, docker_engine.host, registry, repos)


def child_env(box: Sandbox, pipeline: ChildPipeline, before: str) -> dict[str, str]:
    """A child job's environment: the push pipeline's variables and the plan's."""
    head = git(box.repos.work, "rev-parse", "HEAD").strip()
    env = box.pipeline_env(branch="develop", before=before, sha=head)
    return env | {"CI_PIPELINE_SOURCE": "parent_pipeline"} | dict(pipeline.variables)


def test_fan_out_build_each_and_publish_land_one_commit_like_build_develop(box: Sandbox) -> None:
    work = box.repos.work
    before = git(work, "rev-parse", "HEAD").strip()
    for service in ("vote", "worker"):
        app = work / service / "app.sh"
        app.write_text(app.read_text() + "echo v2\n")
    head = box.repos.commit("vote, worker: v2")
    parent = box.pipeline_env(branch="develop", before=before, sha=head)
    done = fan_out(work, settings=SETTINGS, env=parent)
    assert done.output == work / "child-pipeline.yml"
    assert done.output.read_text() == done.text
    assert json.loads((work / "changes.json").read_text())["services"] == ["vote", "worker"]
    assert done.pipeline.build_jobs == ("build:vote", "build:worker")
    env = child_env(box, done.pipeline, before)
    records = [build_planned_service(work, service=s, env=env) for s in done.pipeline.services]
    assert [r.path.name for r in records] == ["vote.json", "worker.json"]
    assert all(r.build.ok and r.build.tag == head for r in records)
    tip = run_git(box.repos.remote, "rev-parse", "k8s-manifests").strip()
    result = publish_planned(work, env=env)
    assert result.failed == ()
    assert run_git(box.repos.remote, "rev-list", "--count", f"{tip}..k8s-manifests").strip() == "1"
    message = run_git(box.repos.remote, "log", "-1", "--format=%B", "k8s-manifests")
    assert "develop: update vote, worker" in message
    assert f"Source-Commit: {head}" in message
    tree = box.folder / "read"
    git(box.folder, "clone", "-q", "--branch", "k8s-manifests", str(box.repos.remote), str(tree))
    entries = {e.name: e for e in read_overlay_images(tree / "k8s/overlays/develop")}
    for record in records:
        entry = entries[record.build.service]
        assert (entry.new_tag, entry.digest) == (head, record.build.digest)
    assert "result" not in entries or entries["result"].new_tag != head
    report = json.loads((work / "release-report.json").read_text())
    assert report["changes"]["files"] == 2, "the parent's count of changed files"
    assert report["changes"]["services"] == ["vote", "worker"]
    assert "SERVICES=vote,worker" in (work / "build.env").read_text()


def test_build_service_refuses_a_service_the_parent_did_not_plan_and_records_why(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = box.repos.work
    head = git(work, "rev-parse", "HEAD").strip()
    plan = plan_of(["vote"])
    pipeline = child_pipeline(
        replace(plan, tag=head, changes=replace(plan.changes, head=head)), SETTINGS
    )
    for key, value in child_env(box, pipeline, head).items():
        monkeypatch.setenv(key, value)
    assert main(["build-service", "--repo", str(work), "--service", "worker"]) == 1
    assert "service 'worker' is not in the parent pipeline's plan (vote)" in capsys.readouterr().err
    record = json.loads((work / "built" / "worker.json").read_text())
    assert (record["ok"], record["tag"]) == (False, head)
    assert "not in the parent pipeline's plan" in record["error"]


@pytest.mark.parametrize(
    ("error", "text"),
    [(RuntimeError("the engine fell over"), "RuntimeError: the engine fell over"),
     (KeyboardInterrupt(), "KeyboardInterrupt")],
)  # fmt: skip
def test_a_build_job_that_an_unexpected_error_ends_still_writes_its_record(
    box: Sandbox, tmp_path: Path, error: BaseException, text: str
) -> None:
    work = box.repos.work
    head = git(work, "rev-parse", "HEAD").strip()
    built = tmp_path / "built"
    env = box.pipeline_env(branch="develop", before=head, sha=head)
    engine = FallingEngine(error)
    with pytest.raises(type(error)) as raised:
        build_planned_service(work, service="vote", output=built, engine=engine, env=env)
    assert raised.value is error
    record = json.loads((built / "vote.json").read_text())
    assert (record["service"], record["ok"], record["tag"]) == ("vote", False, head)
    assert record["repository"] == f"{box.registry.address}/homelab/vote"
    assert record["error"] == text


def test_publish_with_a_failed_build_writes_the_others_and_exits_1(
    box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = box.repos.work
    before = git(work, "rev-parse", "HEAD").strip()
    for service in ("vote", "result"):
        app = work / service / "app.sh"
        app.write_text(app.read_text() + "echo v3\n")
    head = box.repos.commit("vote, result: v3")
    done = fan_out(
        work, settings=SETTINGS, env=box.pipeline_env(branch="develop", before=before, sha=head)
    )
    env = child_env(box, done.pipeline, before)
    build_planned_service(work, service="vote", env=env)  # result's build job never reports
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["publish-develop", "--repo", str(work)]) == 1
    out = capsys.readouterr().out
    assert re.search(
        r"^result\s+FAILED\s+no build record result\.json: job build:result did", out, re.M
    )
    assert "develop overlay: committed" in out
    dotenv = (work / "build.env").read_text()
    assert "FAILED_SERVICES=result\n" in dotenv
    assert "SERVICES=vote\n" in dotenv


def test_publish_outside_a_child_pipeline_says_where_it_runs(box: Sandbox) -> None:
    with pytest.raises(ConfigError, match="run it in the child pipeline fan-out writes"):
        publish_planned(box.repos.work, env={})


def test_fan_out_refuses_an_overlay_missing_before_any_build(box: Sandbox) -> None:
    work = box.repos.work
    config = work / "homelab-release.toml"
    config.write_text(
        config.read_text().replace(
            'overlay = "k8s/overlays/develop"', 'overlay = "k8s/overlays/dev"'
        )
    )
    head = box.repos.commit("config: a missing overlay")
    env = box.pipeline_env(
        branch="develop", before=git(work, "rev-parse", "HEAD~1").strip(), sha=head
    )
    with pytest.raises(
        ConfigError, match="overlay k8s/overlays/dev of environment develop does not exist"
    ):
        fan_out(work, settings=SETTINGS, env=env)
    assert not (work / "child-pipeline.yml").exists()


def test_a_hand_made_config_has_its_sources_checked_when_planned(tmp_path: Path) -> None:
    from homelab_release.config import Environment, ReleaseConfig, Service, load_config
    from homelab_release.context import CiContext
    from homelab_release.develop import plan_services

    run_git(tmp_path, "init", "-q", "-b", "develop")
    (tmp_path / "vote").mkdir()
    (tmp_path / "vote" / "Dockerfile").write_text("FROM scratch\n")
    run_git(tmp_path, "add", ".")
    run_git(tmp_path, "commit", "-qm", "vote")
    services = (
        Service("vote", ("vote/**/*",), "vote", "vote/Dockerfile", "vote"),
        Service("poll", ("poll/**/*",), "poll", "poll/Dockerfile", "poll"),
        Service("vtoe", ("vtoe/**/*",), "vtoe", "vtoe/Dockerfile", "vtoe"),
        Service("web", ("vote/**/*",), "vote", "vote/Containerfile", "web"),
    )
    develop = (Environment("develop", "k8s/overlays/develop"),)
    config = ReleaseConfig(tmp_path, registry=REGISTRY, services=services, environments=develop)
    ws = Workspace(tmp_path, config, CiContext.from_env({}), {})
    assert plan_services(ws, ["vote"]).services == ("vote",)
    with pytest.raises(ConfigError, match=r"\[services\.poll\]: its build context 'poll' is not a"):
        plan_services(ws, ["poll"])
    with pytest.raises(ConfigError, match="Dockerfile 'vote/Containerfile' does not exist"):
        plan_services(ws, ["web"])
    # The same failure reads the same as when the configuration is loaded: one check.
    with pytest.raises(ConfigError) as planned:
        plan_services(ws, ["vtoe"])
    assert "(did you mean [services.vote]?)" in str(planned.value)
    (tmp_path / "homelab-release.toml").write_text("[services.vote]\n[services.vtoe]\n")
    with pytest.raises(ConfigError) as loaded:
        load_config(tmp_path)
    assert str(planned.value).removeprefix(config.where) == str(loaded.value).removeprefix(
        str(tmp_path / "homelab-release.toml")
    )


def small_monorepo(root: Path, services: tuple[str, ...] = ("vote", "result")) -> str:
    """A monorepo whose second commit changes every service; returns the first commit."""
    root.mkdir()
    (root / "homelab-release.toml").write_text(
        '[registry]\nrepository = "registry.example.com/m"\n'
    )
    for service in services:
        (root / service).mkdir()
        (root / service / "Dockerfile").write_text("FROM scratch\n")
    run_git(root, "init", "-q", "-b", "develop")
    run_git(root, "add", ".")
    run_git(root, "commit", "-qm", "services")
    first = run_git(root, "rev-parse", "HEAD").strip()
    for service in services:
        (root / service / "app.txt").write_text("new\n")
    run_git(root, "add", ".")
    run_git(root, "commit", "-qm", "change")
    return first


def test_a_cache_repo_given_to_a_workflow_replaces_the_configured_one(tmp_path: Path) -> None:
    small_monorepo(tmp_path / "monorepo")
    ws = Workspace.open(tmp_path / "monorepo", env={})
    assert ws.config.cache_repo == "registry.example.com/m/cache"
    assert ws.with_cache_repo(None) is ws
    assert ws.with_cache_repo("").config.cache_repo == ""
    assert ws.with_cache_repo("registry.example.com/m/layers").config.cache_repo == (
        "registry.example.com/m/layers"
    )
    assert ws.config.cache_repo == "registry.example.com/m/cache", "a new workspace, this one kept"


def test_fan_out_gives_the_child_jobs_the_write_mode_of_the_env_it_reads(tmp_path: Path) -> None:
    first = small_monorepo(tmp_path / "monorepo")
    env = {"CI_PROJECT_DIR": str(tmp_path), "HOMELAB_RELEASE_WRITE": "merge-request"}
    for settings, mode in ((SETTINGS, "merge-request"), (replace(SETTINGS, write="push"), "push")):
        done = fan_out(
            tmp_path / "monorepo", settings=settings, base=first, check_overlay=False, env=env
        )
        assert load(done.text)[JOB_TEMPLATE]["variables"]["HOMELAB_RELEASE_WRITE"] == mode


def test_the_command_reads_the_template_options_as_gitlab_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside CI, changes.json goes to ./homelab-release-reports
    first = small_monorepo(tmp_path / "monorepo")
    output = tmp_path / "child.yml"
    argv = [
        "fan-out", "--repo", str(tmp_path / "monorepo"), "--base", first, "--no-check",
        "--output", str(output), "--image=python:3.12", "--source=https://h/r.git",
        "--nox-args=--no-venv", '--runner-tags=["docker", "linux"]',
        '--build-services=[{:name=>"docker:27-dind", :alias=>"docker"}]',
        "--build-variable=DOCKER_HOST=tcp://docker:2376", "--build-variable=DOCKER_TLS_VERIFY=",
        "--build-args=--engine docker",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "child pipeline: 2 build job(s), then the writer" in out
    written = (tmp_path / "homelab-release-reports" / "changes.json").read_text()
    changes = json.loads(written)
    assert (changes["base"], changes["services"]) == (first, ["result", "vote"])
    assert main(["changes", "--repo", str(tmp_path / "monorepo"), "--base", first, "--json"]) == 0
    assert capsys.readouterr().out == written, "changes.json is what changes --json prints"
    data = load(output.read_text())
    assert data[".homelab-release"]["tags"] == ["docker", "linux"]
    build = data[".homelab-release-build"]
    assert build["services"] == [{"name": "docker:27-dind", "alias": "docker"}]
    assert build["variables"] == {"DOCKER_HOST": "tcp://docker:2376", "DOCKER_TLS_VERIFY": ""}
    (script,) = data["build:vote"]["script"]
    assert script.endswith(
        '-s build_service --no-venv -- --repo "$CI_PROJECT_DIR" --service vote --engine docker'
    )


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ("--build-variable=DOCKER_HOST", "--build-variable 'DOCKER_HOST': write NAME=VALUE"),
        ("--build-services=docker:27-dind", "--build-services: 'docker:27-dind' is neither JSON"),
        ("--image= ", "image is empty"),
    ],
)
def test_the_command_names_a_bad_option(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    error: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    first = small_monorepo(tmp_path / "monorepo")
    argv = ["fan-out", "--repo", str(tmp_path / "monorepo"), "--base", first, "--no-check",
            "--image=python:3.12", "--source=https://h/r.git", option]  # fmt: skip
    assert main(argv) == 1
    assert error in capsys.readouterr().err
    assert not (tmp_path / "homelab-release-reports").exists(), "nothing written"
