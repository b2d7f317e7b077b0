"""A monorepo of many tiny services and its manifests, as real git repositories.

Each service is ``FROM scratch`` + ``COPY app.txt``: it builds in milliseconds with no base image.
The layout mirrors :func:`homelab_release.demo.example.create_example_repos`: a bare remote with
the services on ``develop`` and the manifests on ``k8s-manifests``, and a work clone of ``develop``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from homelab_release.demo.example import ExampleRepos
from homelab_release.git import git

__all__ = ["BRANCH", "OVERLAY", "break_service", "change_services", "create_services_repos"]

BRANCH = "k8s-manifests"
OVERLAY = "k8s/overlays/develop"
DOCKERFILE = "FROM scratch\nCOPY app.txt /app.txt\n"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Many Services",
    "GIT_AUTHOR_EMAIL": "many@example.com",
    "GIT_COMMITTER_NAME": "Many Services",
    "GIT_COMMITTER_EMAIL": "many@example.com",
}


def create_services_repos(dest: Path, services: Sequence[str]) -> ExampleRepos:
    """``dest/remote.git`` and a work clone ``dest/monorepo`` with ``services``.

    The develop overlay names every service (entry ``name`` = the service) with an old image.
    """
    dest.mkdir(parents=True, exist_ok=True)
    remote = dest / "remote.git"
    git(dest, "init", "--quiet", "--bare", "--initial-branch", "develop", str(remote))
    manifests = dest / "manifests-src"
    overlay = manifests / OVERLAY
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(_kustomization(services), encoding="utf-8")
    _push(manifests, remote, BRANCH, "Manifests")
    work = dest / "monorepo"
    work.mkdir()
    (work / "homelab-release.toml").write_text(_config(services), encoding="utf-8")
    for service in services:
        (work / service).mkdir()
        (work / service / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
        (work / service / "app.txt").write_text(f"{service} 1\n", encoding="utf-8")
    _push(work, remote, "develop", "Services")
    return ExampleRepos(remote, work)


def change_services(repos: ExampleRepos, services: Sequence[str], note: str) -> str:
    """Append ``note`` to each service's ``app.txt``, commit and push; return the commit."""
    for service in services:
        with (repos.work / service / "app.txt").open("a", encoding="utf-8") as app:
            app.write(f"{note}\n")
    return repos.commit(f"{', '.join(services)}: {note}", *services)


def break_service(repos: ExampleRepos, service: str) -> None:
    """Make ``service``'s Dockerfile copy a file that does not exist (a real build failure)."""
    dockerfile = repos.work / service / "Dockerfile"
    dockerfile.write_text(DOCKERFILE + "COPY missing.txt /missing.txt\n", encoding="utf-8")


def _kustomization(services: Sequence[str]) -> str:
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "images:"]
    for service in services:
        lines += [
            f"  - name: {service}",
            f"    newName: registry.invalid/old/{service}",
            '    newTag: "v0"',
        ]
    return "\n".join(lines) + "\n"


def _config(services: Sequence[str]) -> str:
    lines = [
        "[registry]",
        'repository = "${CI_REGISTRY_IMAGE}"',
        "",
        "[manifests]",
        f'branch = "{BRANCH}"',
        "",
        "[environments.develop]",
        f'overlay = "{OVERLAY}"',
    ]
    for service in services:
        lines += [
            "",
            f"[services.{json.dumps(service)}]",
            f"kustomize_name = {json.dumps(service)}",
        ]
    return "\n".join(lines) + "\n"


def _push(tree: Path, remote: Path, branch: str, message: str) -> None:
    git(tree, "init", "--quiet", "--initial-branch", "develop")
    git(tree, "remote", "add", "origin", str(remote))
    git(tree, "add", "--all")
    git(tree, "commit", "--quiet", "-m", message, env=_IDENTITY)
    git(tree, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
