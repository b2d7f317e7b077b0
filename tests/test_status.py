"""status: environments x services from the manifests branch of the example, and drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homelab_release.cli import main
from homelab_release.commands.status import render
from homelab_release.demo import Sandbox
from homelab_release.demo.example import BUILDAH_ONLY, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry
from homelab_release.errors import ConfigError
from homelab_release.git import ZERO_SHA, git
from homelab_release.status import age, environment_status
from homelab_release.workflows import build_develop, promote


@pytest.fixture
def box(tmp_path: Path, docker_engine: DockerEngine, registry: LocalRegistry) -> Sandbox:
    return Sandbox(
        tmp_path,
        docker_engine.host,
        registry,
        create_example_repos(tmp_path / "r", without=BUILDAH_ONLY),
    )


def env_of(box: Sandbox, before: str) -> dict[str, str]:
    sha = git(box.repos.work, "rev-parse", "HEAD").strip()
    env = box.pipeline_env(branch="develop", before=before, sha=sha)
    return {**env, "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86400 * 3, "3d"),
        (-5, "0s"),
    ],
)
def test_age(seconds: float, text: str) -> None:
    assert age(seconds) == text


def test_status_before_any_build_shows_empty_environments(box: Sandbox) -> None:
    status = environment_status(box.repos.work, env=env_of(box, ZERO_SHA))
    assert [e.name for e in status.environments] == ["develop", "stage", "prod"]
    for environment in status.environments:
        assert [i.service for i in environment.images] == ["result", "vote", "worker"]
        assert all(i.entry is None for i in environment.images)
        assert environment.behind == ()


def test_status_marks_stage_behind_develop(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = git(box.repos.work, "rev-parse", "HEAD").strip()
    build_develop(box.repos.work, env=env_of(box, ZERO_SHA))
    promote(box.repos.work, to="stage", env=env_of(box, ZERO_SHA))
    status = environment_status(box.repos.work, env=env_of(box, ZERO_SHA))
    assert status.environments[1].behind == ()
    stage_vote = status.environments[1].images[1]
    assert stage_vote.commit == first
    assert stage_vote.commit_time is not None

    script = box.repos.work / "vote" / "app.sh"
    script.write_text(script.read_text() + "# new\n")
    second = box.repos.commit("vote: change", "vote/app.sh")
    build_develop(box.repos.work, env=env_of(box, first))
    status = environment_status(box.repos.work, env=env_of(box, first))
    develop, stage, prod = status.environments
    assert stage.behind == ("vote",)
    assert develop.behind == ()
    assert prod.behind == ("result", "vote", "worker"), "nothing released yet"
    assert (develop.version, stage.version, prod.version) == (None, None, None)
    assert develop.images[1].commit == second
    text = render(status)
    assert "* stage is behind develop by vote" in text
    assert "vote*" in text
    assert second[:12] in text

    for key, value in env_of(box, first).items():
        monkeypatch.setenv(key, value)
    assert main(["status", "--json", "--repo", str(box.repos.work)]) == 0
    data = json.loads(capsys.readouterr().out)
    stage_data = data["environments"][1]
    assert stage_data["behind"] == ["vote"]
    assert stage_data["services"]["vote"]["commit"] == first
    assert data["environments"][0]["services"]["vote"]["tag"] == second


def test_status_without_a_registry_says_how_to_set_it(tmp_path: Path) -> None:
    from tests.gitrepo import GitRepo

    repo = GitRepo.init(tmp_path / "monorepo")
    repo.commit("vote", "vote/Dockerfile")
    with pytest.raises(ConfigError, match=r"no image registry: set registry\.repository"):
        environment_status(repo.path, env={})
