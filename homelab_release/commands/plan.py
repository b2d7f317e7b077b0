"""``homelab-release plan``: what build-develop and promote would do, with no side effects."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_repo_option
from homelab_release.workflows import Plan, plan

__all__ = ["register", "render", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "plan",
        help="show what build-develop and promote would change, changing nothing",
        description="Show the changed services, the image references build-develop would write "
        "and the overlay diffs of build-develop and of every promotion. Builds and writes nothing.",
    )
    add_repo_option(parser)
    parser.add_argument("--environment", default="develop", help="overlay build-develop updates")
    parser.add_argument(
        "--base", help="compare from this ref (default: chosen from CI_* variables)"
    )
    parser.add_argument("--head", default="HEAD", help="compare to this ref (default: HEAD)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(render(plan(args.repo, environment=args.environment, base=args.base, head=args.head)))
    return 0


def render(result: Plan) -> str:
    """The plan as text for people."""
    lines = [f"changes: {result.changes.reason}"]
    if result.references:
        lines.append(f"build-develop would build and push {len(result.references)} image(s):")
        lines.extend(f"  {ref} (digest known after the build)" for ref in result.references)
        if result.edit is not None and result.edit.diff:
            lines.append(result.edit.diff.rstrip("\n"))
    else:
        lines.append("build-develop: no service changed, nothing to build")
    for planned in result.promotions:
        head = f"promote {planned.source} -> {planned.target}"
        if planned.problem:
            lines.append(f"{head}: cannot promote: {planned.problem}")
        elif planned.promotion is None or not planned.promotion.changed:
            lines.append(f"{head}: nothing to promote")
        else:
            lines.append(f"{head}:")
            lines.append(planned.promotion.diff.rstrip("\n"))
    return "\n".join(lines)
