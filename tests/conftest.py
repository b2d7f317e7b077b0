"""Shared fixtures: real git repositories in tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitrepo import GitRepo

pytest_plugins = ["tests.infra"]


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """An empty git repository on branch main."""
    return GitRepo.init(tmp_path / "repo")


@pytest.fixture(autouse=True)
def _clean_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without GitLab's CI_* variables, whatever the machine running them sets."""
    import os

    for name in list(os.environ):
        if name.startswith(("CI_", "GITLAB_")) and name != "CI":
            monkeypatch.delenv(name)
