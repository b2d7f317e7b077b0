"""Nox sessions: the release workflows a GitLab job calls by name, and the project's own checks.

Sessions are thin: they install the package and run one ``homelab-release`` command, forwarding
everything after ``--``. With ``nox --no-venv`` (an image that already has homelab-release
installed) the install step is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent


def _install_self(session: nox.Session) -> None:
    if session.venv_backend != "none":
        session.install(str(ROOT))


def _release(session: nox.Session, command: str) -> None:
    """Run ``homelab-release COMMAND`` on the monorepo: ``--repo`` if given, else
    ``$CI_PROJECT_DIR``, else the folder nox was started from (nox itself runs in this one)."""
    _install_self(session)
    args = list(session.posargs)
    if "--repo" not in args and not os.environ.get("CI_PROJECT_DIR"):
        args[:0] = ["--repo", session.invoked_from]
    session.run("homelab-release", command, *args)


@nox.session(default=False, tags=["ci"])
def build_develop(session: nox.Session) -> None:
    """Build and push the changed services, then update the develop overlay in one commit."""
    _release(session, "build-develop")


@nox.session(default=False, tags=["ci"])
def fan_out(session: nox.Session) -> None:
    """Plan the develop run once and write the child pipeline: one build job per service."""
    _release(session, "fan-out")


@nox.session(default=False, tags=["ci"])
def build_service(session: nox.Session) -> None:
    """Build and push one service of the child pipeline's plan; write built/<service>.json."""
    _release(session, "build-service")


@nox.session(default=False, tags=["ci"])
def publish_develop(session: nox.Session) -> None:
    """Write the child pipeline's builds into the develop overlay in one commit."""
    _release(session, "publish-develop")


@nox.session(default=False, tags=["ci"])
def promote(session: nox.Session) -> None:
    """Copy the tested images of the previous environment into this branch's environment."""
    _release(session, "promote")


@nox.session(default=False, tags=["ci"])
def release(session: nox.Session) -> None:
    """Tag the images the source environment runs with this tag's version; write the target."""
    _release(session, "release")


@nox.session(default=False, tags=["ci"])
def rollback(session: nox.Session) -> None:
    """Write an earlier state of an environment's overlay back: -- --env ENV --to COMMIT."""
    _release(session, "rollback")


@nox.session(default=False)
def history(session: nox.Session) -> None:
    """List the earlier states of an environment's overlay: -- --env ENV [--json]."""
    _release(session, "history")


@nox.session(default=False)
def plan(session: nox.Session) -> None:
    """Show what build_develop and promote would do, changing nothing."""
    _release(session, "plan")


@nox.session(default=False)
def status(session: nox.Session) -> None:
    """Show which image each environment runs, and which environments are behind."""
    _release(session, "status")


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run the whole develop -> stage flow on the example in a sandbox (buildah; -- --engine docker)."""
    _install_self(session)
    example = ROOT / "examples" / "homelab-go"
    session.run("homelab-release", "demo", "--example", str(example), *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run one benchmark: nox -s bench -- NAME [its options] (NAME: benchmarks/bench_NAME.py)."""
    session.install("-e", ".")
    if not session.posargs:
        names = sorted(
            p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
        )
        session.error(f"name a benchmark: {', '.join(names)}")
    name, *options = session.posargs
    session.run("python", str(ROOT / "benchmarks" / f"bench_{name}.py"), *options)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real git, Docker Engine, registry, kustomize and gitlab-ci-local)."""
    session.install("-e", ".[test]")
    session.run("pytest", "--cov", "--cov-report=term:skip-covered", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and types: ruff and mypy --strict."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
