"""``homelab-release status``: which image each environment runs, and what is behind."""

from __future__ import annotations

import argparse
import json

from homelab_release.commands._common import add_repo_option, short, short_digest, table
from homelab_release.status import Status, age, environment_status, status_data

__all__ = ["register", "render", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="show which image each environment runs",
        description="A table of environments x services from the manifests branch: tag, digest, "
        "the monorepo commit each image was built from and its age; environments that differ "
        "from the one they promote from are marked.",
    )
    add_repo_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = environment_status(args.repo)
    print(json.dumps(status_data(status), indent=2) if args.json else render(status))
    return 0


def render(status: Status) -> str:
    """The status table and one line per environment that is behind its source."""
    rows = []
    for environment in status.environments:
        for image in environment.images:
            entry = image.entry
            mark = "*" if image.service in environment.behind else ""
            when = age(status.now - image.commit_time) if image.commit_time else "-"
            rows.append(
                (
                    environment.name,
                    image.service + mark,
                    short(entry.new_tag, 12) if entry and entry.new_tag else "-",
                    short_digest(entry.digest if entry else None),
                    short(image.commit),
                    when,
                )
            )
    lines = [table(("ENVIRONMENT", "SERVICE", "TAG", "DIGEST", "COMMIT", "AGE"), rows)]
    for environment in status.environments:
        if environment.version:
            lines.append(f"{environment.name} runs version {environment.version}")
        if environment.problem:
            lines.append(f"{environment.name}: {environment.problem}")
        if environment.behind:
            lines.append(
                f"* {environment.name} is behind {environment.promote_from} by "
                f"{', '.join(environment.behind)}"
            )
    return "\n".join(lines)
