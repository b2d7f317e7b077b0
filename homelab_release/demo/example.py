"""Lay out the example monorepo (``examples/homelab-go``) as real git repositories.

Used by ``homelab-release demo`` and by the tests: a bare "remote" holding the services on
``develop`` and the manifests on ``k8s-manifests`` (as the seed keeps them: one repository, two
branches), and a work clone of ``develop`` to run the workflows in. Every service folder gets ``/bin/busybox`` (Debian's
busybox-static) so that its ``FROM scratch`` image builds without any network. ``tally`` is
shaped like the voting app's worker and builds on the buildah engine only (:data:`BUILDAH_ONLY`).

The example lives in the repository at ``examples/homelab-go``; a wheel carries it as package data
under ``homelab_release/demo/examples/`` (pyproject.toml maps the folder), and
:func:`find_example` looks in both places.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.config import CONFIG_NAME
from homelab_release.demo.sandbox import BUSYBOX
from homelab_release.errors import ReleaseError
from homelab_release.git import git

__all__ = ["BUILDAH_ONLY", "EXAMPLE_NAME", "ExampleRepos", "create_example_repos", "find_example"]

EXAMPLE_NAME = "homelab-go"
#: The example's services whose Dockerfiles only the buildah engine builds.
BUILDAH_ONLY = ("tally",)
_HERE = Path(__file__).resolve().parent
# an installed wheel's copy first, then a checkout's examples/ folder
_EXAMPLE_ROOTS = (_HERE / "examples", _HERE.parent.parent / "examples")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Example Developer",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Example Developer",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


@dataclass(frozen=True)
class ExampleRepos:
    """The example as git repositories: the bare remote and a work clone of ``develop``."""

    remote: Path
    work: Path

    def head(self) -> str:
        """The SHA of the work clone's ``HEAD``."""
        return git(self.work, "rev-parse", "HEAD").strip()

    def commit(self, message: str, *paths: str) -> str:
        """Stage ``paths`` (everything when none), commit in the work clone, push; return the SHA."""
        git(self.work, "add", "--all", "--", *(paths or (".",)))
        git(self.work, "commit", "--quiet", "-m", message, env=_IDENTITY)
        git(self.work, "push", "--quiet", "origin", "HEAD:refs/heads/develop")
        return self.head()


def find_example(name: str = EXAMPLE_NAME, roots: Sequence[Path] = _EXAMPLE_ROOTS) -> Path:
    """The folder of the example ``name``: the copy in the installed package, else the checkout's."""
    for root in roots:
        if _holds_example(root / name):
            return root / name
    looked = ", ".join(str(root / name) for root in roots)
    raise ReleaseError(
        f"the example {name!r} is not installed (looked in {looked}); reinstall homelab-release "
        "from its wheel, or pass --example PATH to a copy of examples/homelab-go"
    )


def _holds_example(folder: Path) -> bool:
    return (folder / "monorepo").is_dir() and (folder / "manifests").is_dir()


def create_example_repos(
    dest: Path,
    *,
    source: Path | None = None,
    busybox: Path = BUSYBOX,
    without: Sequence[str] = (),
) -> ExampleRepos:
    """Create ``dest/remote.git`` and ``dest/monorepo`` from the example in ``source``.

    ``source`` defaults to :func:`find_example`. ``without`` names services to leave out of the
    monorepo (their folders and their ``[services.NAME]`` tables): :data:`BUILDAH_ONLY` for a
    monorepo the Docker Engine builds entirely.
    """
    source = find_example() if source is None else source
    dest = dest.resolve()
    if not _holds_example(source):
        raise ReleaseError(
            f"{source} does not hold an example: it needs monorepo/ and manifests/ folders "
            "laid out like examples/homelab-go"
        )
    if not busybox.is_file():
        raise ReleaseError(f"{busybox} is missing: install Debian's busybox-static")
    dest.mkdir(parents=True, exist_ok=True)
    remote = dest / "remote.git"
    git(dest, "init", "--quiet", "--bare", "--initial-branch", "develop", str(remote))
    _push_tree(dest / "manifests-src", source / "manifests", remote, "k8s-manifests", "Manifests")
    work = dest / "monorepo"
    shutil.copytree(
        source / "monorepo", work, ignore=lambda folder, names: _left_out(names, without)
    )
    _drop_service_tables(work / CONFIG_NAME, without)
    services = sorted(dockerfile.parent.name for dockerfile in work.glob("*/Dockerfile"))
    for service in services:
        shutil.copy2(busybox, work / service / "busybox")
    _init(work, remote)
    repos = ExampleRepos(remote, work)
    repos.commit(f"Add the {', '.join(services)} services")
    return repos


def _left_out(names: Sequence[str], without: Sequence[str]) -> set[str]:
    return {name for name in names if name in without}


def _drop_service_tables(config: Path, without: Sequence[str]) -> None:
    """Remove the ``[services.NAME]`` tables (and the comment lines just above them) of the
    services left out, so that the configuration names only services that exist."""
    if not without or not config.is_file():
        return
    kept: list[str] = []
    dropping = False
    for line in config.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("["):
            dropping = line.strip() in {f"[services.{name}]" for name in without}
            if dropping:
                while kept and kept[-1].startswith("#"):
                    kept.pop()
        if not dropping:
            kept.append(line)
    config.write_text("".join(kept), encoding="utf-8")


def _init(tree: Path, remote: Path) -> None:
    git(tree, "init", "--quiet", "--initial-branch", "develop")
    git(tree, "remote", "add", "origin", str(remote))


def _push_tree(tree: Path, source: Path, remote: Path, branch: str, message: str) -> None:
    shutil.copytree(source, tree)
    _init(tree, remote)
    git(tree, "add", "--all")
    git(tree, "commit", "--quiet", "-m", message, env=_IDENTITY)
    git(tree, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
    shutil.rmtree(tree)
