"""``homelab-release demo``: the develop -> stage flow in a local sandbox, narrated.

The steps are :data:`homelab_release.demo.steps.STEPS`. Whatever happens, the engine and the
registry are stopped and the sandbox folder removed (unless ``--keep``) before the command ends;
the line that says so comes last, after the error message when a step failed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from homelab_release.demo.box import ENGINES, sandbox
from homelab_release.demo.steps import STEPS, Scene, Step, play

__all__ = ["register", "run", "run_demo"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = sub.add_parser(
        "demo",
        help="run build-develop, a one-service change, promote and status in a local sandbox",
        description="Start a registry on 127.0.0.1, lay out the example monorepo as git "
        "repositories and run the whole develop -> stage flow on it, without GitLab. Builds with "
        "buildah (no daemon; Debian's buildah, and uidmap when not root) or, with --engine "
        "docker, on a Docker Engine it starts (root, docker.io) or reuses (DOCKER_HOST); the "
        "docker engine leaves out the service it cannot build. Also needs docker-registry, "
        "busybox-static, apache2-utils and git (scripts/setup.sh installs them all).",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=ENGINES[0],
        help=f"build engine (default {ENGINES[0]})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the sandbox folder (and its reports) afterwards"
    )
    parser.add_argument(
        "--example",
        type=Path,
        help="the example to lay out (default: the copy of examples/homelab-go shipped with "
        "homelab-release)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo on stdout."""
    run_demo(sys.stdout, keep=args.keep, example=args.example, engine=args.engine)
    return 0


def run_demo(
    out: TextIO,
    *,
    keep: bool = False,
    example: Path | None = None,
    steps: Sequence[Step] = STEPS,
    engine: str = ENGINES[0],
) -> Path:
    """Run the narrated demo, writing to ``out``; return the sandbox folder (removed unless kept).

    When a step fails, the error propagates with a note (``BaseException.add_note``) that says
    what was stopped and removed: the command line prints it after the error message.
    """
    folder = Path(tempfile.mkdtemp(prefix="homelab-release-demo-"))
    try:
        with sandbox(folder, example=example, engine=engine) as box:
            play(Scene(box, out, keep=keep), steps)
    except BaseException as err:
        err.add_note(_clean_up(folder, keep=keep))
        raise
    print("\n" + _clean_up(folder, keep=keep), file=out, flush=True)
    return folder


def _clean_up(folder: Path, *, keep: bool) -> str:
    """Remove the sandbox folder unless kept; the line that tells what became of it."""
    if keep:
        return f"The demo's engine and registry are stopped; its sandbox is kept in {folder}."
    shutil.rmtree(folder, ignore_errors=True)
    return "Everything the demo started is stopped and its sandbox removed."
