"""``homelab-release release``: tag what the source environment runs with a version, then name it."""

from __future__ import annotations

import argparse

from homelab_release.commands._common import add_repo_option, section, short
from homelab_release.releases import ReleaseResult, release
from homelab_release.versions import PEP440_NOTE

__all__ = ["register", "run", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "release",
        help="give the source environment's images a version tag and write them into the target",
        description="For a tag like v1.4.0: every image the target's promote_from environment "
        "runs gets the tag 1.4.0 in the registry (by digest: no pull, no rebuild), then the "
        "target's overlay names them (newTag 1.4.0 + digest) in one commit. The target's "
        f"versions policy decides which versions it takes; {PEP440_NOTE}.",
    )
    add_repo_option(parser)
    parser.add_argument("--to", help="target environment (default: the one with a versions policy)")
    parser.add_argument("--tag", help="the release tag, e.g. v1.4.0 (default: $CI_COMMIT_TAG)")
    parser.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="release a version lower than the one the target runs",
    )
    parser.add_argument(
        "--allow-prerelease",
        action="store_true",
        help="release a pre-release (1.4.0rc1) even where prereleases = false",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and show the diff; tag and write nothing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with section("release"):
        result = release(
            args.repo,
            to=args.to,
            tag=args.tag,
            allow_downgrade=args.allow_downgrade,
            allow_prerelease=args.allow_prerelease,
            dry_run=args.dry_run,
        )
    print(summary(result))
    return 0


def summary(result: ReleaseResult) -> str:
    """What was (or would be) tagged and written, and the commit."""
    was = f" (was {result.previous})" if result.previous else ""
    lines = [f"release {result.version.tag} to {result.target}{was}, images of {result.source}:"]
    for image in result.images:
        what = "tag created" if image.tagged else "tag already there"
        if result.dry_run:
            what = "would tag" if image.tagged else "tag already there"
        lines.append(f"  {image.name}: {image.entry.reference} ({what})")
    if result.edit is not None and result.edit.diff:
        lines.append(result.edit.diff.rstrip("\n"))
    if result.dry_run:
        lines.append("dry run: nothing tagged, nothing written")
    elif result.published is not None and result.published.merge_request:
        lines.append(
            f"{result.target} overlay: pushed {short(result.commit)} to "
            f"{result.published.branch} (merge request)"
        )
    elif result.commit:
        lines.append(f"{result.target} overlay: committed {short(result.commit)}")
    else:
        lines.append(f"{result.target} already runs {result.version.tag}; nothing to commit")
    return "\n".join(lines)
