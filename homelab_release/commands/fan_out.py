"""``homelab-release fan-out``: plan the develop run once and write its child pipeline."""

from __future__ import annotations

import argparse

from homelab_release.childpipeline import MAX_NEEDS, JobSettings
from homelab_release.commands._common import add_repo_option, section
from homelab_release.errors import ConfigError
from homelab_release.fanout import FanOut, fan_out
from homelab_release.gitlabtext import parse_gitlab_array

__all__ = ["register", "run", "settings", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fan-out",
        help="plan the develop run and write a GitLab child pipeline: one build job per "
        "changed service, then one writer",
        description="Detect the changed services once and write the child pipeline of the "
        "child-pipeline strategy: a build:<service> job per service (build-service) and the "
        "writer publish_develop (publish-develop), with the plan in its variables. The job "
        "options below are what the template's inputs give; pass them in single quotes so that "
        "a ${CI_JOB_TOKEN} reaches the child as a reference, not as the token.",
    )
    add_repo_option(parser)
    parser.add_argument("--environment", default="develop", help="overlay to update")
    parser.add_argument("--base", help="compare from this ref (default: from CI_* variables)")
    parser.add_argument("--output", help="the YAML file (default: child-pipeline.yml)")
    parser.add_argument(
        "--max-needs",
        type=int,
        default=MAX_NEEDS,
        help=f"most build jobs the writer lists in needs; beyond, it waits by stage "
        f"(default {MAX_NEEDS}, GitLab's limit)",
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="do not check that the overlay exists on the manifests branch",
    )
    jobs = parser.add_argument_group("the child pipeline's jobs")
    jobs.add_argument("--image", required=True, help="job image (python 3.11+ and git)")
    jobs.add_argument("--source", required=True, help="git URL of homelab-release")
    jobs.add_argument("--ref", default="main", help="its branch, tag or commit")
    jobs.add_argument("--nox-args", default="", help="extra nox options, e.g. --no-venv")
    jobs.add_argument("--runner-tags", default="", help='tags of every job, an array: ["a"]')
    jobs.add_argument("--resource-group", default="", help="resource_group of the writer")
    jobs.add_argument("--build-image", default="", help="image of the build jobs (default --image)")
    jobs.add_argument("--build-services", default="", help="services: of the build jobs, an array")
    jobs.add_argument(
        "--build-variable",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable of the build jobs (repeat the option for more)",
    )
    jobs.add_argument(
        "--build-setup",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a before_script line of the build jobs, run before homelab-release is fetched",
    )
    jobs.add_argument("--build-args", default="", help="extra options of build-service")
    jobs.add_argument("--publish-args", default="", help="extra options of publish-develop")
    parser.set_defaults(func=run)


def settings(args: argparse.Namespace) -> JobSettings:
    """The job settings the options give."""
    variables = []
    for item in args.build_variable:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--build-variable {item!r}: write NAME=VALUE")
        variables.append((name, value))
    services = parse_gitlab_array(args.build_services, "--build-services")
    tags = parse_gitlab_array(args.runner_tags, "--runner-tags")
    return JobSettings(
        image=args.image,
        source=args.source,
        ref=args.ref,
        nox_args=args.nox_args,
        runner_tags=tuple(tags),
        build_image=args.build_image,
        build_services=tuple(services),
        build_variables=tuple(variables),
        build_setup=tuple(args.build_setup),
        build_args=args.build_args,
        publish_args=args.publish_args,
        resource_group=args.resource_group,
    )  # write: fan_out takes HOMELAB_RELEASE_WRITE from the environment it reads


def run(args: argparse.Namespace) -> int:
    with section("fan_out"):
        done = fan_out(
            args.repo,
            settings=settings(args),
            environment=args.environment,
            base=args.base,
            output=args.output,
            max_needs=args.max_needs,
            check_overlay=args.check,
        )
    print(summary(done))
    return 0


def summary(done: FanOut) -> str:
    """The job-log summary: what changed and the jobs of the child pipeline."""
    lines = [f"changes: {done.plan.changes.reason}"]
    pipeline = done.pipeline
    if not pipeline.build_jobs:
        lines.append("no service changed: the child pipeline has one job that says so")
    else:
        waits = "needs" if pipeline.writer_needs else "stage order (more jobs than needs allows)"
        lines.append(f"child pipeline: {len(pipeline.build_jobs)} build job(s), then the writer")
        lines.extend(f"  {name}" for name in pipeline.build_jobs)
        lines.append(f"the writer waits for them by {waits}")
    lines.append(f"written: {done.output}")
    return "\n".join(lines)
