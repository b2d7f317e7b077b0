"""``homelab-release demo``: the develop -> stage flow in a local sandbox, narrated."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from homelab_release.commands import build_develop as build_command
from homelab_release.commands import promote as promote_command
from homelab_release.commands import status as status_command
from homelab_release.demo import Sandbox, sandbox
from homelab_release.example import EXAMPLE
from homelab_release.git import ZERO_SHA, git
from homelab_release.status import environment_status
from homelab_release.workflows import build_develop, promote


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run build-develop, a one-service change, promote and status in a local sandbox",
        description="Start (or reuse, via DOCKER_HOST) a Docker Engine and a registry on "
        "127.0.0.1, lay out the example monorepo as git repositories and run the whole "
        "develop -> stage flow on it, without GitLab. Needs root and Debian's docker.io, "
        "docker-registry, busybox-static and apache2-utils (scripts/setup.sh installs them).",
    )
    parser.add_argument("--keep", action="store_true", help="keep the sandbox folder afterwards")
    parser.add_argument(
        "--example", type=Path, default=EXAMPLE, help="the example to lay out (examples/homelab-go)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_demo(sys.stdout, keep=args.keep, example=args.example)
    return 0


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
