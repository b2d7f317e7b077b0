"""The demo's sandbox: a build engine, a registry and the example's repositories, no GitLab.

:func:`sandbox` starts a registry on 127.0.0.1 and, for the docker engine, starts (or reuses) a
Docker Engine; buildah needs no daemon, and keeps its images in the sandbox folder. It lays out the
example monorepo as git repositories; :meth:`Sandbox.pipeline_env` gives the variables GitLab would
set for a push pipeline, so that the workflows run the same code paths as in CI. The narration of
``homelab-release demo`` lives in :mod:`homelab_release.demo.steps`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from homelab_release.demo.example import ExampleRepos, create_example_repos
from homelab_release.demo.sandbox import (
    DockerEngine,
    LocalRegistry,
    check_requirements,
    default_search_path,
)

__all__ = ["ENGINES", "Sandbox", "buildah_storage", "sandbox"]

#: The engines the demo runs on; the first is the default.
ENGINES = ("buildah", "docker")


@dataclass(frozen=True)
class Sandbox:
    """The parts of a running demo: its folder, engine, registry and repositories.

    ``docker_host`` names the Docker Engine (docker), ``storage`` buildah's storage.conf (buildah).
    """

    folder: Path
    docker_host: str
    registry: LocalRegistry
    repos: ExampleRepos
    engine: str = "docker"
    storage: Path | None = None

    def pipeline_env(self, *, branch: str, before: str, sha: str) -> dict[str, str]:
        """The variables GitLab would give a push pipeline on ``branch`` (and the engine's)."""
        creds = self.registry.credentials
        return {
            **self.engine_env(),
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

    def engine_env(self) -> dict[str, str]:
        """What the engine needs: ``DOCKER_HOST``, or buildah's storage and search path."""
        if self.engine != "buildah":
            return {"DOCKER_HOST": self.docker_host, "HOMELAB_RELEASE_ENGINE": "docker"}
        env = {"HOMELAB_RELEASE_ENGINE": "buildah", "PATH": default_search_path()}
        env["HOME"] = str(self.folder / "home")
        if self.storage is not None:
            env["CONTAINERS_STORAGE_CONF"] = str(self.storage)
        return env


def buildah_storage(folder: Path) -> Path:
    """A containers-storage.conf (vfs) keeping buildah's images and layers in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{folder / "graph"}"\n'
        f'runroot = "{folder / "run"}"\n',
        encoding="utf-8",
    )
    return conf


@contextmanager
def sandbox(
    folder: Path | None = None, *, example: Path | None = None, engine: str = ENGINES[0]
) -> Iterator[Sandbox]:
    """Start the registry (and for ``engine="docker"`` the engine) and lay out the example; stop
    what was started on exit.

    ``example`` defaults to the example shipped with the package
    (:func:`~homelab_release.demo.example.find_example`).
    """
    # everything missing, in one message, before starting anything
    check_requirements(reuse_engine=True, engine=engine)
    root = folder or Path(tempfile.mkdtemp(prefix="homelab-release-demo-"))
    with ExitStack() as stack:
        host, storage = "", None
        if engine == "buildah":
            storage = buildah_storage(root / "buildah")
            (root / "home").mkdir(exist_ok=True)
        else:
            host = stack.enter_context(DockerEngine(root / "engine", reuse=True)).host
        registry = stack.enter_context(LocalRegistry(root / "registry"))
        repos = create_example_repos(root / "repos", source=example)
        yield Sandbox(root, host, registry, repos, engine, storage)
