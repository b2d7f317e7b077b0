"""``homelab-release changes``: plain and JSON output, errors as one line and exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from homelab_release.cli import main
from tests.gitrepo import GitRepo


@pytest.fixture
def monorepo(repo: GitRepo) -> tuple[GitRepo, str]:
    """Three services; the last commit changes vote and worker. Returns the repo and its base."""
    repo.commit("seed", "vote/Dockerfile", "result/Dockerfile", "worker/Dockerfile")
    base = repo.head()
    repo.commit("work", "vote/app.py", "worker/app.go", "docs/readme.md")
    return repo, base


def test_prints_one_service_per_line(
    monorepo: tuple[GitRepo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, base = monorepo
    assert main(["changes", "--repo", str(repo.path), "--base", base]) == 0
    captured = capsys.readouterr()
    assert captured.out == "vote\nworker\n"
    assert "explicit base" in captured.err


def test_prints_nothing_when_nothing_changed(
    monorepo: tuple[GitRepo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = monorepo
    assert main(["changes", "--repo", str(repo.path), "--base", "HEAD"]) == 0
    assert capsys.readouterr().out == ""


def test_json_output(monorepo: tuple[GitRepo, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, base = monorepo
    assert main(["changes", "--repo", str(repo.path), "--base", base, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "base": base,
        "head": repo.head(),
        "files": ["docs/readme.md", "vote/app.py", "worker/app.go"],
        "services": ["vote", "worker"],
        "reason": data["reason"],
    }
    assert "merge base" in data["reason"]


def test_head_option(monorepo: tuple[GitRepo, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, base = monorepo
    repo.commit("more", "result/app.py")
    assert main(["changes", "--repo", str(repo.path), "--base", base, "--head", "HEAD~1"]) == 0
    assert capsys.readouterr().out == "vote\nworker\n"


def test_ci_variables_choose_the_base(
    monorepo: tuple[GitRepo, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, base = monorepo
    monkeypatch.setenv("CI_PIPELINE_SOURCE", "push")
    monkeypatch.setenv("CI_COMMIT_BEFORE_SHA", base)
    assert main(["changes", "--repo", str(repo.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["base"] == base
    assert "push pipeline" in data["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--head", "nope"], "head 'nope' does not name a commit"),
        (["--base", "nope"], "base 'nope' does not name a commit"),
    ],
)
def test_bad_refs_exit_1_with_one_line(
    monorepo: tuple[GitRepo, str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    repo, _ = monorepo
    assert main(["changes", "--repo", str(repo.path), *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("homelab-release: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_not_a_repository_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["changes", "--repo", str(tmp_path)]) == 1
    assert "is not a git repository" in capsys.readouterr().err


def test_python_dash_m(monorepo: tuple[GitRepo, str]) -> None:
    repo, base = monorepo
    result = subprocess.run(
        [sys.executable, "-m", "homelab_release", "changes", "--base", base],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "vote\nworker\n"
