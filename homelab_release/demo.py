"""``nox -s demo``: the whole develop -> stage flow in a sandbox, without GitLab.

It starts (or reuses) a Docker Engine and a local registry on 127.0.0.1, lays out the example
monorepo as git repositories, then runs and narrates: the first build_develop (every service), a
change to one service and build_develop again (only that one), promote to stage, and status.
The pipelines get the variables GitLab would set, so the same code paths run as in CI.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from homelab_release.commands import build_develop as build_command
from homelab_release.commands import promote as promote_command
from homelab_release.commands import status as status_command
from homelab_release.example import EXAMPLE, ExampleRepos, create_example_repos
from homelab_release.git import ZERO_SHA, git
from homelab_release.sandbox import DockerEngine, LocalRegistry
from homelab_release.status import environment_status
from homelab_release.workflows import build_develop, promote


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
            "CI_COMMIT_BRANCH": branch,
            "CI_COMMIT_BEFORE_SHA": before,
            "CI_COMMIT_SHA": sha,
            "CI_DEFAULT_BRANCH": "develop",
            "CI_PROJECT_DIR": str(self.repos.work),
        }


@contextmanager
def sandbox(folder: Path | None = None, *, example: Path = EXAMPLE) -> Iterator[Sandbox]:
    """Start the engine and registry and lay out the example; stop what was started on exit."""
    root = folder or Path(tempfile.mkdtemp(prefix="homelab-release-demo-"))
    with ExitStack() as stack:
        engine = stack.enter_context(DockerEngine(root / "engine", reuse=True))
        registry = stack.enter_context(LocalRegistry(root / "registry"))
        repos = create_example_repos(root / "repos", source=example)
        yield Sandbox(root, engine.host, registry, repos)


def run_demo(out: TextIO, *, keep: bool = False, example: Path = EXAMPLE) -> Path:
    """Run the narrated demo, writing to ``out``; return the sandbox folder (removed unless kept)."""
    folder = Path(tempfile.mkdtemp(prefix="homelab-release-demo-"))
    try:
        with sandbox(folder, example=example) as box:
            _narrate(box, out)
    finally:
        if keep:
            print(f"\nThe sandbox is kept in {folder} (engine and registry stopped).", file=out)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print("\nEverything the demo started is stopped and its sandbox removed.", file=out)
    return folder


def _narrate(box: Sandbox, out: TextIO) -> None:
    say = _Narrator(out)
    say.step(
        "The sandbox",
        f"Docker Engine: {box.docker_host}\nregistry: {box.registry.address} (htpasswd auth)\n"
        f"monorepo: {box.repos.work} (branch develop), manifests: branch k8s-manifests of "
        f"{box.repos.remote}",
    )
    first = git(box.repos.work, "rev-parse", "HEAD").strip()
    env = box.pipeline_env(branch="develop", before=ZERO_SHA, sha=first)
    say.step("1. First push to develop: build_develop builds every service", "")
    say.result(build_command.summary(build_develop(box.repos.work, env=env)))

    (box.repos.work / "vote" / "app.sh").write_text(
        (box.repos.work / "vote" / "app.sh").read_text() + "# vote: now with a new question\n"
    )
    second = box.repos.commit("vote: ask a new question", "vote/app.sh")
    env = box.pipeline_env(branch="develop", before=first, sha=second)
    say.step("2. A change to vote only: build_develop builds only vote", "")
    say.result(build_command.summary(build_develop(box.repos.work, env=env)))

    say.step("3. Merge to stage: promote copies develop's images into stage (no rebuild)", "")
    stage_env = {**env, "CI_COMMIT_BRANCH": "stage"}
    say.result(promote_command.summary(promote(box.repos.work, env=stage_env)))

    say.step("4. homelab-release status: what each environment runs", "")
    say.result(status_command.render(environment_status(box.repos.work, env=env)))


class _Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def step(self, title: str, text: str) -> None:
        print(f"\n=== {title}", file=self.out, flush=True)
        if text:
            print(text, file=self.out, flush=True)

    def result(self, text: str) -> None:
        print(text, file=self.out, flush=True)
