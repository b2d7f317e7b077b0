"""``homelab-release history``: the earlier states of an environment's overlay."""

from __future__ import annotations

import argparse
import json
import time

from homelab_release.commands._common import add_repo_option, short, short_digest, table
from homelab_release.history import DEFAULT_LIMIT, History, history, history_data
from homelab_release.status import age

__all__ = ["register", "render", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "history",
        help="list the earlier states of an environment's overlay",
        description="The commits of the manifests branch that changed an environment's overlay, "
        "newest first: commit, age, the source commit and pipeline trailers, and the images of "
        "each state (give one of them to homelab-release rollback --to).",
    )
    add_repo_option(parser)
    parser.add_argument("--env", required=True, dest="environment", help="the environment")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"states to list (default {DEFAULT_LIMIT})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = history(args.repo, environment=args.environment, limit=args.limit)
    print(json.dumps(history_data(found), indent=2) if args.json else render(found))
    return 0


def render(found: History, now: float | None = None) -> str:
    """One block per state: its commit line, then its images."""
    now = time.time() if now is None else now
    if not found.states:
        return f"{found.environment}: no commit of {found.branch} changed {found.overlay}"
    lines = [f"{found.environment} ({found.overlay} on {found.branch}), newest first:"]
    for index, state in enumerate(found.states):
        mark = "current" if index == 0 else f"-{index}"
        lines.append(
            f"{short(state.commit)}  {mark:>7}  {age(now - state.time):>4} ago  {state.subject}"
        )
        facts = []
        if state.source_commit:
            facts.append(f"source {short(state.source_commit)}")
        if state.pipeline:
            facts.append(f"pipeline {state.pipeline}")
        if "Rollback-To" in state.trailers:
            facts.append(f"rollback to {short(state.trailers['Rollback-To'])}")
        if facts:
            lines.append("    " + ", ".join(facts))
        if state.problem:
            lines.append(f"    cannot read: {state.problem}")
        rows = [(f"    {e.name}", e.new_tag or "-", short_digest(e.digest)) for e in state.images]
        if rows:
            lines.append(table(("    IMAGE", "TAG", "DIGEST"), rows))
    return "\n".join(lines)
