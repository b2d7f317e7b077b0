"""``homelab-release demo``: the develop -> stage flow in a local sandbox, narrated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from homelab_release.demo import run_demo
from homelab_release.example import EXAMPLE


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
