"""The demo's sandbox: a Docker Engine, a registry and the example's repositories, no GitLab.

:func:`sandbox` starts (or reuses) the engine and a registry on 127.0.0.1 and lays out the example
monorepo as git repositories; :meth:`Sandbox.pipeline_env` gives the variables GitLab would set
for a push pipeline, so that the workflows run the same code paths as in CI. The narration of
``homelab-release demo`` lives in :mod:`homelab_release.demo.steps`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from homelab_release.demo.example import ExampleRepos, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry, check_requirements

__all__ = ["Sandbox", "sandbox"]


@dataclass(frozen=True)
class Sandbox:
    """The parts of a running demo: its folder, engine host, registry and repositories."""

    folder: Path
    docker_host: str
    registry: LocalRegistry
    repos: ExampleRepos

    def pipeline_env(self, *, branch: str, before: str, sha: str) -> dict[str, str]:
        """The variables GitLab would give a push pipeline on ``branch``."""
        creds = self.registry.credentials
        return {
            "DOCKER_HOST": self.docker_host,
            "CI_REGISTRY_IMAGE": f"{self.registry.address}/homelab",
            "CI_REGISTRY_USER": creds.username,
            "CI_REGISTRY_PASSWORD": creds.password.secret,
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "push",
            "CI_COMMIT_BRANCH": branch,
            "CI_COMMIT_BEFORE_SHA": before,
            "CI_COMMIT_SHA": sha,
            "CI_DEFAULT_BRANCH": "develop",
            "CI_PROJECT_DIR": str(self.repos.work),
        }


@contextmanager
def sandbox(folder: Path | None = None, *, example: Path | None = None) -> Iterator[Sandbox]:
    """Start the engine and registry and lay out the example; stop what was started on exit.

    ``example`` defaults to the example shipped with the package (:func:`~homelab_release.demo.example.find_example`).
    """
    check_requirements(reuse_engine=True)  # everything missing, in one message, before starting
    root = folder or Path(tempfile.mkdtemp(prefix="homelab-release-demo-"))
    with ExitStack() as stack:
        engine = stack.enter_context(DockerEngine(root / "engine", reuse=True))
        registry = stack.enter_context(LocalRegistry(root / "registry"))
        repos = create_example_repos(root / "repos", source=example)
        yield Sandbox(root, engine.host, registry, repos)
