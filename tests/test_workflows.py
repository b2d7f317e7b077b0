"""build_develop, promote and plan end to end: real git remotes, Docker Engine and registry."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from homelab_release.cli import main
from homelab_release.demo import Sandbox
from homelab_release.demo.example import BUILDAH_ONLY, ExampleRepos, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry
from homelab_release.errors import ConfigError, GitError, PromotionError, ReleaseError
from homelab_release.git import ZERO_SHA, git
from homelab_release.images import ImageRef
from homelab_release.overlay import ImageEntry, read_overlay_images
from homelab_release.promotion import promote_overlay
from homelab_release.registry import image_exists, manifest_digest
from homelab_release.releases import release
from homelab_release.secrets import MASK
from homelab_release.status import environment_status
from homelab_release.workflows import BuildDevelopResult, build_develop, plan, promote
from tests.faults import FallingEngine
from tests.githttp import git_http_server
from tests.gitrepo import run_git

BRANCH = "k8s-manifests"
TOKEN = "glpat-W0rkflowSecret"


@pytest.fixture
def box(tmp_path: Path, docker_engine: DockerEngine, registry: LocalRegistry) -> Sandbox:
    """The example monorepo and manifests in a bare remote, wired to the session engine (without
    the service only buildah builds)."""
    repos = create_example_repos(tmp_path / "repos", without=BUILDAH_ONLY)
    return Sandbox(tmp_path, docker_engine.host, registry, repos)


def head(repos: ExampleRepos) -> str:
    return git(repos.work, "rev-parse", "HEAD").strip()


def push_env(box: Sandbox, before: str, sha: str | None = None, **extra: str) -> dict[str, str]:
    env = box.pipeline_env(branch="develop", before=before, sha=sha or head(box.repos))
    return {**env, "GITLAB_CI": "true", "CI": "true", "CI_PIPELINE_SOURCE": "push", **extra}


def overlay(box: Sandbox, name: str, ref: str = BRANCH) -> dict[str, ImageEntry]:
    """The image entries of an environment's overlay as the remote branch has them."""
    tree = box.folder / f"read-{name}-{len(list(box.folder.iterdir()))}"
    git(box.folder, "clone", "-q", "--branch", ref, str(box.repos.remote), str(tree))
    return {e.name: e for e in read_overlay_images(tree / f"k8s/overlays/{name}")}


def manifests_commits(box: Sandbox) -> int:
    return int(run_git(box.repos.remote, "rev-list", "--count", BRANCH))


def change(box: Sandbox, service: str) -> str:
    script = box.repos.work / service / "app.sh"
    script.write_text(script.read_text() + f"# change {len(script.read_text())}\n")
    return box.repos.commit(f"{service}: change", f"{service}/app.sh")


def first_build(box: Sandbox) -> BuildDevelopResult:
    return build_develop(box.repos.work, env=push_env(box, ZERO_SHA))


def test_first_push_builds_every_service_in_one_commit(box: Sandbox) -> None:
    commits = manifests_commits(box)
    result = first_build(box)
    sha = head(box.repos)
    assert [b.service for b in result.builds] == ["result", "vote", "worker"]
    assert all(b.ok for b in result.builds)
    assert manifests_commits(box) == commits + 1
    entries = overlay(box, "develop")
    for build in result.builds:
        entry = entries[build.service]
        assert entry.new_name == f"{box.registry.address}/homelab/{build.service}"
        assert entry.new_tag == sha
        assert entry.digest == build.digest
        ref = ImageRef.parse(f"{entry.new_name}@{entry.digest}")
        assert image_exists(ref, box.registry.credentials)
    message = run_git(box.repos.remote, "log", "-1", "--format=%B", BRANCH)
    assert "[skip ci]" in message
    assert f"Source-Commit: {sha}" in message


def test_change_to_one_service_builds_and_writes_only_it(box: Sandbox) -> None:
    first_build(box)
    before_entries = overlay(box, "develop")
    before = head(box.repos)
    sha = change(box, "vote")
    commits = manifests_commits(box)
    result = build_develop(box.repos.work, env=push_env(box, before, sha))
    assert [b.service for b in result.builds] == ["vote"]
    assert manifests_commits(box) == commits + 1
    after = overlay(box, "develop")
    assert after["vote"].new_tag == sha
    assert after["result"] == before_entries["result"]
    assert after["worker"] == before_entries["worker"]
    dotenv = (box.repos.work / "build.env").read_text().splitlines()
    assert "SERVICES=vote" in dotenv
    assert f"IMAGE_TAG={sha}" in dotenv
    assert f"VOTE_IMAGE={after['vote'].new_name}:{sha}@{after['vote'].digest}" in dotenv
    report = json.loads((box.repos.work / "release-report.json").read_text())
    assert report["manifests_commit"] == result.commit
    assert report["builds"][0]["service"] == "vote"


def test_rerun_of_the_same_pipeline_changes_nothing(box: Sandbox) -> None:
    first_build(box)
    commits = manifests_commits(box)
    again = first_build(box)
    assert all(b.ok for b in again.builds)
    assert again.commit is None
    assert manifests_commits(box) == commits


def test_no_change_builds_nothing_and_commits_nothing(box: Sandbox) -> None:
    commits = manifests_commits(box)
    sha = head(box.repos)
    result = build_develop(box.repos.work, env=push_env(box, sha, sha))
    assert result.builds == ()
    assert result.commit is None
    assert manifests_commits(box) == commits
    assert "SERVICES=\n" in (box.repos.work / "build.env").read_text()


def test_failed_build_leaves_its_entry_and_fails_the_command(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first_build(box)
    before_entries = overlay(box, "develop")
    before = head(box.repos)
    dockerfile = box.repos.work / "worker" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN ["/bin/sh", "-c", "exit 3"]\n')
    change(box, "vote")
    sha = box.repos.commit("break worker", "worker/Dockerfile")
    for key, value in push_env(box, before, sha).items():
        monkeypatch.setenv(key, value)
    code = main(["build-develop", "--repo", str(box.repos.work)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out
    after = overlay(box, "develop")
    assert after["worker"] == before_entries["worker"]
    assert after["vote"].new_tag == sha
    dotenv = (box.repos.work / "build.env").read_text()
    assert "FAILED_SERVICES=worker" in dotenv


def checkout_at(box: Sandbox, sha: str, name: str) -> Path:
    """A clone of the monorepo at ``sha``, as a runner checks a pipeline's commit out."""
    clone = box.folder / name
    git(box.folder, "clone", "-q", str(box.repos.remote), str(clone))
    git(clone, "checkout", "-q", sha)
    return clone


def run_at(box: Sandbox, clone: Path, before: str, sha: str) -> BuildDevelopResult:
    return build_develop(clone, env=push_env(box, before, sha, CI_PROJECT_DIR=str(clone)))


def test_concurrent_pipelines_lose_no_update(box: Sandbox) -> None:
    shutil.copytree(box.repos.work / "worker", box.repos.work / "poll")
    config = box.repos.work / "homelab-release.toml"
    config.write_text(config.read_text() + '\n[services.poll]\nkustomize_name = "poll"\n')
    base = box.repos.commit("add poll")
    first_build(box)
    pipelines = []
    previous = base
    for service in ("vote", "result", "worker", "poll"):
        sha = change(box, service)
        pipelines.append((checkout_at(box, sha, f"runner-{service}"), previous, sha))
        previous = sha
    results: list[BuildDevelopResult] = []
    errors: list[BaseException] = []

    def run(clone: Path, before: str, sha: str) -> None:
        try:
            results.append(run_at(box, clone, before, sha))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=pipeline) for pipeline in pipelines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(r.commit is not None for r in results)
    entries = overlay(box, "develop")
    for service, (_, _, sha) in zip(("vote", "result", "worker", "poll"), pipelines, strict=True):
        assert entries[service].new_tag == sha
    assert max(r.published.attempts for r in results if r.published) > 1  # they did race


def test_an_older_pipeline_finishing_last_keeps_the_newer_image(box: Sandbox) -> None:
    first_build(box)
    start = head(box.repos)
    older = change(box, "vote")
    newer = change(box, "vote")
    older_clone = checkout_at(box, older, "runner-older")
    newer_clone = checkout_at(box, newer, "runner-newer")
    run_at(box, newer_clone, older, newer)
    commits = manifests_commits(box)
    late = run_at(box, older_clone, start, older)
    assert [b.service for b in late.builds] == ["vote"]
    assert late.commit is None
    assert manifests_commits(box) == commits
    assert overlay(box, "develop")["vote"].new_tag == newer


def test_build_develop_refuses_a_tree_that_is_not_head(box: Sandbox) -> None:
    first = head(box.repos)
    second = change(box, "vote")
    git(box.repos.work, "checkout", "-q", first)
    with pytest.raises(ReleaseError, match=r"builds the checked-out tree, but .* check out"):
        build_develop(box.repos.work, head=second, env=push_env(box, first, second))
    git(box.repos.work, "checkout", "-q", "develop")
    (box.repos.work / "vote" / "app.sh").write_text("echo uncommitted\n")
    with pytest.raises(ReleaseError, match=r"(?s)uncommitted changes in vote .*commit or stash"):
        build_develop(box.repos.work, env=push_env(box, first, second))


def test_promote_makes_stage_equal_develop_then_changes_nothing(box: Sandbox) -> None:
    first_build(box)
    env = push_env(box, ZERO_SHA, CI_COMMIT_BRANCH="stage")
    result = promote(box.repos.work, env=env)
    assert result.source == "develop"
    assert result.target == "stage"
    assert result.commit is not None
    assert overlay(box, "stage") == overlay(box, "develop")
    assert {c.name for c in result.promotion.changes} == {"vote", "result", "worker"}
    commits = manifests_commits(box)
    again = promote(box.repos.work, env=env)
    assert again.commit is None
    assert not again.promotion.changed
    assert manifests_commits(box) == commits


def test_promote_refuses_images_missing_from_the_registry(box: Sandbox) -> None:
    first_build(box)
    env = push_env(box, ZERO_SHA)
    tree = box.folder / "edit"
    git(box.folder, "clone", "-q", "--branch", BRANCH, str(box.repos.remote), str(tree))
    kustomization = tree / "k8s/overlays/develop/kustomization.yaml"
    text = kustomization.read_text()
    digest = overlay(box, "develop")["vote"].digest or ""
    kustomization.write_text(text.replace(digest, "sha256:" + "0" * 64))
    git(
        tree,
        "commit",
        "-qam",
        "point vote at nothing",
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    )
    git(tree, "push", "-q", "origin", f"HEAD:{BRANCH}")
    commits = manifests_commits(box)
    with pytest.raises(
        PromotionError, match=r"not in the registry: .*/homelab/vote:.*sha256:0{64}"
    ):
        promote(box.repos.work, to="stage", env=env)
    assert manifests_commits(box) == commits
    assert overlay(box, "stage") == {}


def test_promote_asks_the_registry_with_the_credentials_of_env_only(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env= without registry credentials and the right ones in the process environment: the
    check is anonymous (the registry refuses it), it does not borrow the process's."""
    first_build(box)
    env = push_env(box, ZERO_SHA, CI_COMMIT_BRANCH="stage")
    for key in ("CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD"):
        monkeypatch.setenv(key, env.pop(key))
    commits = manifests_commits(box)
    with pytest.raises(PromotionError, match=r"cannot verify .*/homelab/\w+.* refused access"):
        promote(box.repos.work, env=env)
    assert manifests_commits(box) == commits
    tree = box.folder / "manifests"
    git(box.folder, "clone", "-q", "--branch", BRANCH, str(box.repos.remote), str(tree))
    overlays = tree / "k8s" / "overlays"
    with pytest.raises(PromotionError, match="refused access"):
        promote_overlay(overlays / "develop", overlays / "stage", env={})
    assert read_overlay_images(overlays / "stage") == ()


def test_build_develop_in_merge_request_mode_pushes_a_branch_and_says_so(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_git(box.repos.remote, "config", "receive.advertisePushOptions", "true")
    before = run_git(box.repos.remote, "rev-parse", BRANCH)
    for key, value in push_env(box, ZERO_SHA, HOMELAB_RELEASE_WRITE="merge-request").items():
        monkeypatch.setenv(key, value)
    assert main(["build-develop", "--repo", str(box.repos.work)]) == 0
    out = capsys.readouterr().out
    proposed = run_git(box.repos.remote, "rev-parse", "homelab-release/develop").strip()
    assert (
        f"develop overlay: pushed {proposed[:12]} to homelab-release/develop (merge request)" in out
    )
    assert "committed" not in out
    assert run_git(box.repos.remote, "rev-parse", BRANCH) == before, "waits for the merge request"
    assert set(overlay(box, "develop", "homelab-release/develop")) == {"vote", "result", "worker"}


def test_promote_from_an_empty_overlay_is_an_error(box: Sandbox) -> None:
    with pytest.raises(PromotionError, match="has no images: entries"):
        promote(box.repos.work, to="stage", env=push_env(box, ZERO_SHA))


def test_promote_to_an_environment_without_source_names_it(box: Sandbox) -> None:
    with pytest.raises(ConfigError, match=r"'develop' has no promote_from"):
        promote(box.repos.work, to="develop", env=push_env(box, ZERO_SHA))
    with pytest.raises(ConfigError, match="pass to=ENV") as refused:
        promote(box.repos.work, env={})
    assert "pass --to ENV" in refused.value.for_command_line()


def test_plan_changes_nothing(box: Sandbox) -> None:
    refs_before = run_git(box.repos.remote, "show-ref")
    result = plan(box.repos.work, env=push_env(box, ZERO_SHA))
    assert result.references == tuple(
        f"{box.registry.address}/homelab/{s}:{head(box.repos)}"
        for s in ("result", "vote", "worker")
    )
    assert result.edit is not None
    assert "+  - name: result" in result.edit.diff
    assert run_git(box.repos.remote, "show-ref") == refs_before
    ref = ImageRef.parse(result.references[0])
    assert not image_exists(ref, box.registry.credentials)


def test_token_in_the_manifests_url_appears_nowhere(
    box: Sandbox, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with git_http_server(box.repos.remote.parent, "gitlab-ci-token", TOKEN) as base:
        url = f"{base.replace('http://', f'http://gitlab-ci-token:{TOKEN}@')}/remote.git"
        env = push_env(box, ZERO_SHA, CI_REPOSITORY_URL=url)
        result = build_develop(box.repos.work, env=env)
    assert result.commit is not None
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert TOKEN not in caplog.text
    for report in result.reports:
        assert TOKEN not in report.read_text()


def test_unreachable_manifests_remote_is_redacted_and_builds_nothing(box: Sandbox) -> None:
    env = push_env(box, ZERO_SHA, CI_REPOSITORY_URL=f"http://oauth2:{TOKEN}@127.0.0.1:9/x.git")
    with pytest.raises(GitError) as caught:
        build_develop(box.repos.work, env=env)
    assert TOKEN not in str(caught.value)
    assert "http://127.0.0.1:9/x.git" in str(caught.value)
    ref = ImageRef.parse(f"{box.registry.address}/homelab/vote:{head(box.repos)}")
    assert not image_exists(ref, box.registry.credentials)


def test_cli_plan_and_promote_dry_run_write_nothing(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in push_env(box, ZERO_SHA).items():
        monkeypatch.setenv(key, value)
    assert main(["plan", "--repo", str(box.repos.work)]) == 0
    out = capsys.readouterr().out
    assert "build-develop would build and push 3 image(s):" in out
    assert "+  - name: vote" in out
    assert "promote develop -> stage: cannot promote: source overlay" in out
    first_build(box)
    commits = manifests_commits(box)
    assert main(["promote", "--to", "stage", "--dry-run", "--repo", str(box.repos.work)]) == 0
    out = capsys.readouterr().out
    assert "promote develop -> stage:" in out
    assert "dry run: nothing written" in out
    assert "+  - name: worker" in out
    assert manifests_commits(box) == commits


# -- the develop path: checks before building, reports on every exit -----------------------------


def test_a_missing_overlay_is_found_before_anything_is_built(box: Sandbox, tmp_path: Path) -> None:
    config = box.repos.work / "homelab-release.toml"
    config.write_text(config.read_text().replace('"k8s/overlays/develop"', '"k8s/overlays/nope"'))
    box.repos.commit("point develop at a missing overlay")
    reports = tmp_path / "reports"
    with pytest.raises(ConfigError, match=r"overlay k8s/overlays/nope of environment develop"):
        build_develop(box.repos.work, env=push_env(box, ZERO_SHA), report_dir=reports)
    ref = ImageRef.parse(f"{box.registry.address}/homelab/vote:{head(box.repos)}")
    assert not image_exists(ref, box.registry.credentials), "nothing may be built or pushed"
    report = json.loads((reports / "release-report.json").read_text())
    assert "overlay k8s/overlays/nope" in report["error"]
    assert report["builds"] == []
    dotenv = (reports / "build.env").read_text().splitlines()
    assert "SERVICES=" in dotenv
    assert "FAILED_SERVICES=result,vote,worker" in dotenv


def test_a_service_without_its_folder_is_an_error_in_plan_and_build(box: Sandbox) -> None:
    config = box.repos.work / "homelab-release.toml"
    config.write_text(config.read_text().replace('kustomize_name = "vote"', 'context = "votee"'))
    box.repos.commit("typo in vote's context")
    for workflow in (plan, build_develop):
        with pytest.raises(
            ConfigError, match=r"\[services\.vote\]: its build context 'votee' is not a folder"
        ):
            workflow(box.repos.work, env=push_env(box, ZERO_SHA))


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (RuntimeError("the engine fell over"), "RuntimeError: the engine fell over"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
    ],
)
def test_an_error_the_library_does_not_raise_still_leaves_both_reports(
    box: Sandbox, tmp_path: Path, error: BaseException, text: str
) -> None:
    """An SDK's own error or an interrupt ends the run: the reports say so, the error goes on."""
    commits = manifests_commits(box)
    password = box.registry.credentials.password.secret
    error.args = tuple(f"{arg} (logged in with {password})" for arg in error.args)
    reports = tmp_path / "reports"
    with pytest.raises(type(error)) as raised:
        build_develop(
            box.repos.work,
            env=push_env(box, ZERO_SHA),
            engine=FallingEngine(error),
            report_dir=reports,
            workers=1,
        )
    assert raised.value is error
    report = json.loads((reports / "release-report.json").read_text())
    assert report["error"] == text + (f" (logged in with {MASK})" if error.args else "")
    assert report["builds"] == []
    assert report["failed"] == report["changes"]["services"] == ["result", "vote", "worker"]
    dotenv = (reports / "build.env").read_text()
    assert "FAILED_SERVICES=result,vote,worker" in dotenv.splitlines()
    assert password not in dotenv + (reports / "release-report.json").read_text()
    assert manifests_commits(box) == commits


def test_reports_that_cannot_be_written_do_not_hide_the_error_that_ended_the_run(
    box: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "reports"
    not_a_folder.write_text("a file where the report folder should be\n")
    with pytest.raises(ConfigError, match="no environment 'qa'"):
        build_develop(
            box.repos.work, environment="qa", env=push_env(box, ZERO_SHA), report_dir=not_a_folder
        )
    assert "the reports of the failed run could not be written" in caplog.text
    assert not_a_folder.read_text() == "a file where the report folder should be\n"


def test_reports_go_to_a_named_folder_outside_ci(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = head(box.repos)
    env = {k: v for k, v in push_env(box, sha, sha).items() if k != "CI_PROJECT_DIR"}
    monkeypatch.chdir(tmp_path)
    result = build_develop(box.repos.work, env=env)
    folder = tmp_path / "homelab-release-reports"
    assert result.reports == (folder / "build.env", folder / "release-report.json")
    assert not (box.repos.work / "build.env").exists(), "not silently into the monorepo"


def test_workflows_read_only_the_env_they_are_given(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process environment holds wrong credentials and another engine: env= alone counts."""
    # images of their own: the release tag 1.0.0 of the shared registry's homelab/* is another's
    env = {**push_env(box, ZERO_SHA), "CI_REGISTRY_IMAGE": f"{box.registry.address}/env-only"}
    wrong = {
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "CI_REGISTRY_USER": "nobody",
        "CI_REGISTRY_PASSWORD": "wrong-password",
        "CI_REGISTRY_IMAGE": "127.0.0.1:9/elsewhere",
        "CI_COMMIT_BRANCH": "develop",
        "CI_REPOSITORY_URL": "http://127.0.0.1:9/nowhere.git",
        "GITLAB_TOKEN": "wrong-token",
    }
    for key, value in wrong.items():
        monkeypatch.setenv(key, value)
    planned = plan(box.repos.work, env=env)
    assert planned.references[0].startswith(f"{box.registry.address}/env-only/")
    built = build_develop(box.repos.work, env=env)
    assert built.commit is not None
    assert all(b.ok for b in built.builds)
    promoted = promote(box.repos.work, env={**env, "CI_COMMIT_BRANCH": "stage"})
    assert promoted.commit is not None
    released = release(box.repos.work, env={**env, "CI_COMMIT_TAG": "v1.0.0"})
    assert released.commit is not None
    status = environment_status(box.repos.work, env=env)
    assert {e.name for e in status.environments} == {"develop", "stage", "prod"}
    assert all(i.entry is not None for e in status.environments for i in e.images)


def test_twenty_concurrent_pipelines_lose_nothing_in_the_overlay_or_latest(box: Sandbox) -> None:
    """Twenty pipelines on twenty commits at once, each in its own checkout, one engine and one
    registry: all succeed, and each service's overlay entry and ``latest`` are the newest commit
    that changed it (the fault-injection run found 6 to 8 of 20 exiting 0 and updates lost)."""
    services = ("vote", "result", "worker", "poll")
    shutil.copytree(box.repos.work / "worker", box.repos.work / "poll")
    config = box.repos.work / "homelab-release.toml"
    config.write_text(config.read_text() + '\n[services.poll]\nkustomize_name = "poll"\n')
    previous = box.repos.commit("add poll")
    first_build(box)
    pipelines = []
    newest: dict[str, str] = {}
    for number in range(20):
        service = services[number % len(services)]
        sha = change(box, service)
        pipelines.append((checkout_at(box, sha, f"runner-{number}"), previous, sha))
        newest[service] = previous = sha
    outcomes: list[BuildDevelopResult | BaseException] = []

    def run(clone: Path, before: str, sha: str) -> None:
        try:
            outcomes.append(run_at(box, clone, before, sha))
        except BaseException as err:  # reported below
            outcomes.append(err)

    threads = [threading.Thread(target=run, args=pipeline) for pipeline in pipelines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    results = [o for o in outcomes if isinstance(o, BuildDevelopResult)]
    assert len(results) == 20
    assert [b for r in results for b in r.failed] == []
    entries = overlay(box, "develop")
    for service, sha in newest.items():
        entry = entries[service]
        assert entry.new_tag == sha, f"{service}: the newest commit's image must win"
        latest = ImageRef.parse(f"{entry.new_name}:latest")
        assert manifest_digest(latest, box.registry.credentials) == entry.digest, service
