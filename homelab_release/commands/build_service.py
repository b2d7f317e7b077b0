"""``homelab-release build-service``: build and push one named service (a child pipeline job)."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_engine_options, add_repo_option
from homelab_release.commands.build_develop import short_reference
from homelab_release.fanout import build_planned_service

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "build-service",
        help="build and push one service and write built/<service>.json (no change detection)",
        description="Build and push the commit tag of one service, as a build job of the "
        "child pipeline fan-out writes does, and write its outcome to built/<service>.json "
        "for the writer (publish-develop). In that child pipeline the tag is the parent's plan.",
    )
    add_repo_option(parser)
    parser.add_argument("--service", required=True, help="the service to build")
    parser.add_argument(
        "--tag", help="image tag (default: the plan's, else CI_COMMIT_SHA, else HEAD)"
    )
    parser.add_argument("--output", help="folder of the record (default: built/)")
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    done = build_planned_service(
        args.repo,
        service=args.service,
        output=args.output,
        tag=args.tag,
        engine=args.engine,
        cache_repo=args.cache_repo,
    )
    build = done.build
    if build.ok:
        print(
            f"{build.service}: built {short_reference(build.repository, build.tag, build.digest)}"
        )
    else:
        print(f"{build.service}: FAILED: {build.error}")
    print(f"record: {done.path}")
    return 0 if build.ok else 1
