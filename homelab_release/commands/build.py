"""``homelab-release build``: build one context, push its tags, print the pushed references."""

from __future__ import annotations

import argparse

from homelab_release.build import build_image
from homelab_release.commands._common import add_engine_options

__all__ = ["register", "run"]

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "build",
        help="build an image (Docker Engine or buildah), push every tag and confirm the digest",
        description="Build CONTEXT on the chosen engine, tag it with every --tag, push the tags "
        "(latest last) with CI_REGISTRY_USER / CI_REGISTRY_PASSWORD, check that the registry "
        "serves one digest for all of them and print repository:tag@digest per tag.",
    )
    parser.add_argument("--context", required=True, help="the build context folder")
    parser.add_argument("--repository", required=True, help="image repository, without tag")
    parser.add_argument(
        "--tag", action="append", required=True, dest="tags", help="a tag (repeatable)"
    )
    parser.add_argument("--dockerfile", help="Dockerfile, relative to the context")
    parser.add_argument("--no-push", action="store_true", help="build and tag only")
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    built = build_image(
        context=args.context,
        repository=args.repository,
        tags=args.tags,
        dockerfile=args.dockerfile,
        push=not args.no_push,
        engine=args.engine,
        cache_repo=args.cache_repo,
    )
    print("\n".join(built.references))
    return 0
