"""``homelab-release changes``: the services changed between the pipeline's base and head."""

from __future__ import annotations

import argparse
import logging

from homelab_release.changes import ChangeSet, detect_changes
from homelab_release.commands._common import add_repo_option

__all__ = ["register", "render", "run"]

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "changes",
        help="list the services whose files changed (GitLab rules:changes semantics)",
        description="Print the changed services, one per line, or as JSON with the compared "
        "commits, the changed files and the reason. Without --base, the base follows GitLab's "
        "CI_* variables (merge request, push, new branch, tag, schedule, outside CI).",
    )
    add_repo_option(parser)
    parser.add_argument(
        "--base", help="compare from the merge base of this ref and the head (default: from CI_*)"
    )
    parser.add_argument("--head", default="HEAD", help="compare to this ref (default: HEAD)")
    parser.add_argument(
        "--json", action="store_true", help="print base, head, files, services and reason as JSON"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    changes = detect_changes(args.repo, base=args.base, head=args.head)
    log.info("changes: %s", changes.reason)
    print(changes.to_json() if args.json else render(changes), end="")
    return 0


def render(changes: ChangeSet) -> str:
    """One changed service per line (nothing when none changed)."""
    return "".join(f"{name}\n" for name in changes.services)
