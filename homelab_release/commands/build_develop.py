"""``homelab-release build-develop``: build changed services and update the develop overlay."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import (
    add_engine_options,
    add_repo_option,
    section,
    short,
    table,
)
from homelab_release.develop import DEFAULT_WORKERS
from homelab_release.workflows import BuildDevelopResult, ServiceBuild, build_develop

__all__ = ["register", "run", "short_reference", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "build-develop",
        help="build and push the changed services, then write them into the develop overlay",
        description="Detect changed services, build and push them, and write their image "
        "references into the environment's overlay in one commit on the manifests branch.",
    )
    add_repo_option(parser)
    parser.add_argument(
        "--environment", default="develop", help="overlay to update (default: develop)"
    )
    parser.add_argument(
        "--base", help="compare from this ref (default: chosen from CI_* variables)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"builds at the same time (default: {DEFAULT_WORKERS})",
    )
    parser.add_argument("--report-dir", help="where build.env and release-report.json go")
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with section("build_develop"):
        result = build_develop(
            args.repo,
            environment=args.environment,
            base=args.base,
            workers=args.workers,
            report_dir=args.report_dir,
            engine=args.engine,
            cache_repo=args.cache_repo,
        )
    print(summary(result))
    return 1 if result.failed else 0


def summary(result: BuildDevelopResult) -> str:
    """The job-log summary: what changed, each build, and the manifests commit.

    References are shortened to fit a job log (full values are in build.env and the JSON report).
    """
    lines = [f"changes: {result.changes.reason}"]
    if not result.changes.services:
        lines.append("no service changed: nothing built, nothing committed")
        return "\n".join(lines)
    rows = [
        (
            b.service,
            "built" if b.ok else "FAILED",
            short_reference(b.repository, b.tag, b.digest) if b.ok else b.error.splitlines()[0],
            *_times(b),
        )
        for b in result.builds
    ]
    lines.append(table(("SERVICE", "RESULT", "IMAGE", "BUILD", "PUSH"), rows))
    if result.commit:
        lines.append(f"{result.environment} overlay: committed {short(result.commit)}")
    elif result.edit is not None:
        lines.append(f"{result.environment} overlay: already up to date, nothing committed")
    else:
        lines.append(f"{result.environment} overlay: unchanged (no build succeeded)")
    lines.extend(f"latest: {move}" for move in result.latest if not move.moved)
    lines.extend(f"report: {path}" for path in result.reports)
    return "\n".join(lines)


def short_reference(repository: str, tag: str, digest: str) -> str:
    """``repo:8a9d7e3c4b21…@sha256:1244…``: a commit tag and a digest cut for people."""
    shown_tag = f"{tag[:12]}…" if len(tag) > 12 else tag
    algorithm, _, hexdigits = digest.partition(":")
    return f"{repository}:{shown_tag}@{algorithm}:{hexdigits[:4]}…"


def _times(build: ServiceBuild) -> tuple[str, str]:
    """Seconds building (cache pull included) and pushing (registry checks included)."""
    phases = build.durations
    if phases is None:
        return (f"{build.seconds:.1f}s", "-")
    return (f"{phases.cache_pull + phases.build:.1f}s", f"{phases.push + phases.verify:.1f}s")
