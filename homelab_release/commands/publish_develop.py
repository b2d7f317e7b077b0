"""``homelab-release publish-develop``: the child pipeline's writer, one commit for every build."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_repo_option, section
from homelab_release.commands.build_develop import summary
from homelab_release.fanout import publish_planned

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "publish-develop",
        help="write the build jobs' images into the develop overlay in one commit",
        description="Read every built/<service>.json of the child pipeline's build jobs and "
        "write the successful builds into the environment's overlay in one commit, exactly as "
        "build-develop does; a planned service without a record failed. Exits 1 when a build "
        "failed, after writing the others.",
    )
    add_repo_option(parser)
    parser.add_argument(
        "--from", dest="built", help="folder of the build records (default: built/)"
    )
    parser.add_argument("--report-dir", help="where build.env and release-report.json go")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with section("publish_develop"):
        result = publish_planned(args.repo, built=args.built, report_dir=args.report_dir)
    print(summary(result))
    return 1 if result.failed else 0
