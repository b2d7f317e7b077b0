"""``homelab-release rollback``: write an earlier state of an overlay back, as a new commit."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_repo_option, section, short
from homelab_release.history import RollbackResult, rollback

__all__ = ["register", "run", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rollback",
        help="write an earlier state of an environment's overlay back as a new commit",
        description="Restore the image entries an environment's overlay had after an earlier "
        "commit (see homelab-release history), in a new commit with a Rollback-Of trailer, after "
        "checking that every image is still in the registry. History is never rewritten.",
    )
    add_repo_option(parser)
    parser.add_argument("--env", required=True, dest="environment", help="the environment")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="the commit of the state to restore (from history)")
    target.add_argument(
        "--steps", type=int, help="restore the state this many changes before the current one"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check everything and show the diff; write nothing"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with section("rollback"):
        result = rollback(
            args.repo,
            environment=args.environment,
            to=args.to,
            steps=args.steps,
            dry_run=args.dry_run,
        )
    print(summary(result))
    return 0


def summary(result: RollbackResult) -> str:
    """What was (or would be) restored, the diff and the commit."""
    head = (
        f"rollback {result.environment}: {short(result.current.commit)} -> "
        f"{short(result.restored.commit)} ({result.restored.subject})"
    )
    lines = [head]
    if result.edit is not None and result.edit.diff:
        lines.append(result.edit.diff.rstrip("\n"))
    if result.dry_run:
        lines.append("dry run: nothing written")
    elif result.published is not None and result.published.merge_request:
        lines.append(f"pushed {short(result.commit)} to {result.published.branch} (merge request)")
    elif result.commit:
        lines.append(f"{result.environment} overlay: committed {short(result.commit)}")
    else:
        lines.append(f"{result.environment} already has those images; nothing to commit")
    lines.extend(f"  {move}" for move in result.latest)
    return "\n".join(lines)
