"""``homelab-release promote``: copy the tested images of one environment into the next."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_repo_option, section, short
from homelab_release.workflows import PromoteResult, promote

__all__ = ["register", "run", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "promote",
        help="copy the image entries of the source environment's overlay into the target's",
        description="Promote the exact image references of an environment's promote_from "
        "overlay into its own overlay, in one commit, after checking that they are in the registry.",
    )
    add_repo_option(parser)
    parser.add_argument(
        "--to", help="target environment (default: the one named like CI_COMMIT_BRANCH)"
    )
    parser.add_argument(
        "--image", action="append", dest="images", help="promote only this entry name (repeatable)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show the diff; write nothing and do not ask the registry",
    )
    parser.add_argument("--no-verify", action="store_true", help="do not check the registry first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with section("promote"):
        result = promote(
            args.repo,
            to=args.to,
            images=args.images,
            dry_run=args.dry_run,
            verify=False if args.no_verify else None,
        )
    print(summary(result, dry_run=args.dry_run))
    return 0


def summary(result: PromoteResult, *, dry_run: bool = False) -> str:
    """What was (or would be) promoted, the diff and the commit."""
    head = f"promote {result.source} -> {result.target}"
    if not result.promotion.changed:
        return f"{head}: {result.target} already runs what {result.source} runs; nothing to commit"
    lines = [f"{head}:"]
    lines.extend(f"  {c.name}: {c.after.reference} ({c.reason})" for c in result.promotion.changes)
    lines.append(result.promotion.diff.rstrip("\n"))
    if dry_run:
        lines.append("dry run: nothing written")
    else:
        lines.append(f"{result.target} overlay: committed {short(result.commit)}")
    return "\n".join(lines)
