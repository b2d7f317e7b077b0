"""The narrated steps of ``homelab-release demo``, as a list that new steps join without a rewrite.

A :class:`Step` is a title and an action; the action runs one part of the flow in the sandbox
(through the same workflows a GitLab job runs) and shows its result through the :class:`Scene`.
:func:`play` numbers the steps and runs them in order. An action that fails shows what it has and
raises a :class:`~homelab_release.errors.ReleaseError`, which stops the demo.

To add a step, write an action ``def my_step(scene: Scene) -> None`` and put
``Step("what it shows", my_step)`` where it belongs in :data:`STEPS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from homelab_release.build import refusal
from homelab_release.commands import build_develop as build_command
from homelab_release.commands import history as history_command
from homelab_release.commands import promote as promote_command
from homelab_release.commands import release as release_command
from homelab_release.commands import status as status_command
from homelab_release.config import ReleaseConfig, load_config
from homelab_release.demo.box import Sandbox
from homelab_release.engines.docker import DockerBuilder
from homelab_release.errors import ReleaseError
from homelab_release.git import ZERO_SHA
from homelab_release.history import history
from homelab_release.releases import release
from homelab_release.status import environment_status
from homelab_release.workflows import build_develop, promote

__all__ = [
    "STEPS",
    "DemoStepError",
    "Scene",
    "Step",
    "change_vote",
    "first_push",
    "play",
    "promote_to_stage",
    "release_to_prod",
    "show_history",
    "show_status",
]


class DemoStepError(ReleaseError):
    """A step of the demo did not do what it shows (for example a build failed)."""


@dataclass(frozen=True)
class Scene:
    """What a step works on: the running sandbox, where to show results, and whether it is kept.

    ``keep`` says the sandbox folder outlives the demo, so paths inside it are worth showing.
    """

    box: Sandbox
    out: TextIO
    keep: bool = False

    def show(self, text: str) -> None:
        """Print ``text`` (a result, a table) to the narration."""
        print(text, file=self.out, flush=True)

    def push_env(self, *, before: str, sha: str | None = None) -> dict[str, str]:
        """GitLab's variables for a push to develop from ``before`` to ``sha`` (default HEAD)."""
        sha = sha or self.box.repos.head()
        return self.box.pipeline_env(branch="develop", before=before, sha=sha)


@dataclass(frozen=True)
class Step:
    """One narrated step: the title shown above it and the action that runs it."""

    title: str
    action: Callable[[Scene], None]


def first_push(scene: Scene) -> None:
    """The first pipeline on develop: every service is built and the develop overlay written.

    On the docker engine, a service whose Dockerfile it refuses is left out, with the refusal.
    """
    env = scene.push_env(before=ZERO_SHA)
    _build_develop(scene, env, _buildable(scene, env))


def _buildable(scene: Scene, env: dict[str, str]) -> ReleaseConfig | None:
    """On the docker engine, the configuration without the services it cannot build (each
    refusal shown); None (the configuration as it is) on buildah."""
    if scene.box.engine != "docker":
        return None
    work = scene.box.repos.work
    config = load_config(work, env)
    engine = DockerBuilder(settings={})  # only reads Dockerfiles: it never connects
    refused = {s.name: refusal(engine, work / s.dockerfile) for s in config.services}
    for name, message in refused.items():
        if message:
            scene.show(f"{name}: left out on the docker engine: {message}")
    return dataclasses.replace(
        config, services=tuple(s for s in config.services if not refused[s.name])
    )


def change_vote(scene: Scene) -> None:
    """A commit that touches only vote, and its pipeline: only vote is built."""
    repos = scene.box.repos
    before = repos.head()
    script = repos.work / "vote" / "app.sh"
    script.write_text(script.read_text() + "# vote: now with a new question\n")
    sha = repos.commit("vote: ask a new question", "vote/app.sh")
    _build_develop(scene, scene.push_env(before=before, sha=sha))


def promote_to_stage(scene: Scene) -> None:
    """A pipeline on stage: develop's image entries are copied into the stage overlay."""
    env = {**scene.push_env(before=scene.box.repos.head()), "CI_COMMIT_BRANCH": "stage"}
    scene.show(promote_command.summary(promote(scene.box.repos.work, env=env)))


def release_to_prod(scene: Scene) -> None:
    """A tag pipeline for v1.0.0: stage's images get the tag 1.0.0 (by digest) and prod names them."""
    env = {**scene.push_env(before=scene.box.repos.head()), "CI_COMMIT_TAG": "v1.0.0"}
    env.pop("CI_COMMIT_BRANCH")  # a tag pipeline has no branch
    scene.show(release_command.summary(release(scene.box.repos.work, env=env)))


def show_history(scene: Scene) -> None:
    """``homelab-release history --env develop``: the states a rollback can go back to."""
    env = scene.push_env(before=scene.box.repos.head())
    found = history(scene.box.repos.work, environment="develop", env=env)
    scene.show(history_command.render(found))


def show_status(scene: Scene) -> None:
    """``homelab-release status``: which image each environment runs."""
    env = scene.push_env(before=scene.box.repos.head())
    scene.show(status_command.render(environment_status(scene.box.repos.work, env=env)))


def _build_develop(scene: Scene, env: dict[str, str], config: ReleaseConfig | None = None) -> None:
    result = build_develop(scene.box.repos.work, env=env, config=config)
    if not scene.keep:  # the reports are written inside the sandbox, which is about to go
        result = dataclasses.replace(result, reports=())
    scene.show(build_command.summary(result))
    if result.failed:
        names = ", ".join(build.service for build in result.failed)
        raise DemoStepError(f"build_develop could not build {names} (see the table above)")


STEPS: tuple[Step, ...] = (
    Step("First push to develop: build_develop builds every service", first_push),
    Step("A change to vote only: build_develop builds only vote", change_vote),
    Step(
        "Merge to stage: promote copies develop's images into stage (no rebuild)", promote_to_stage
    ),
    Step("Tag v1.0.0: release tags stage's images 1.0.0 and writes prod", release_to_prod),
    Step("homelab-release history --env develop: the states a rollback can restore", show_history),
    Step("homelab-release status: what each environment runs", show_status),
)


def play(scene: Scene, steps: Sequence[Step] = STEPS) -> None:
    """Describe the sandbox, then run ``steps`` in order under numbered headings."""
    box = scene.box
    _heading(scene, "The sandbox")
    engine = (
        f"Docker Engine: {box.docker_host}"
        if box.engine == "docker"
        else f"build engine: buildah, no daemon (images in {box.storage and box.storage.parent})"
    )
    scene.show(
        f"{engine}\nregistry: {box.registry.address} (htpasswd auth)\n"
        f"monorepo: {box.repos.work} (branch develop), manifests: branch k8s-manifests of "
        f"{box.repos.remote}"
    )
    for number, step in enumerate(steps, 1):
        _heading(scene, f"{number}. {step.title}")
        step.action(scene)


def _heading(scene: Scene, title: str) -> None:
    scene.show(f"\n=== {title}")
