"""Shared fixtures: real git repositories in tmp dirs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.gitrepo import GitRepo

pytest_plugins = ["tests.infra", "tests.buildahinfra"]

# The machine is shared and CI has two cores: a slow example is not a failure.
settings.register_profile("homelab-release", deadline=None)
settings.load_profile("homelab-release")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """An empty git repository on branch main."""
    return GitRepo.init(tmp_path / "repo")


@pytest.fixture(autouse=True)
def _clean_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without GitLab's CI_* variables, homelab-release's own and an engine's,
    whatever the machine running them sets."""
    import os

    for name in list(os.environ):
        if name.startswith(("CI_", "GITLAB_", "HOMELAB_RELEASE_", "DOCKER_")) and name != "CI":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _reset_cli_logging() -> Iterator[None]:
    """``cli.main`` points the package logger at the (captured) stderr; undo it after each test."""
    yield
    logger = logging.getLogger("homelab_release")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
