"""Benchmark: detect_changes against a bare ``git diff --name-only`` on a synthetic monorepo.

The repository is built with ``git fast-import``: SERVICES services x FILES files each, 3 globs per
service, and a second commit that changes CHANGED files spread over half the services. The script
reports the median wall time of ``detect_changes(base=first, head=second)``, of detect_changes in
a push pipeline (head ``HEAD``, ``CI_COMMIT_BEFORE_SHA`` and ``CI_COMMIT_SHA`` set as GitLab sets
them; once more without ``CI_COMMIT_SHA``), of the one git command that lists the paths
(``git.changed_files``: ``git diff --name-only -z`` with the user's configuration pinned off, split
and sorted) and of ``git diff --name-only first second`` on the same commits, run both through
``proc.run`` and as a bare ``subprocess.run`` (beside it, as a bare ``subprocess.run`` too, the
``git diff-tree`` that detect_changes used before), and the ratios (target: <= 1.3).

    python benchmarks/bench_changes.py            # 500 x 200 files, 10,000 changed
    python benchmarks/bench_changes.py --quick    # 50 x 40 files, 500 changed (a smoke run)
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from homelab_release import git, proc
from homelab_release.changes import detect_changes

IDENTITY = "Bench <bench@example.com> 1700000000 +0000"


@dataclass(frozen=True)
class Shape:
    """The size of the synthetic monorepo."""

    services: int
    files: int
    changed: int
    runs: int


FULL = Shape(services=500, files=200, changed=10_000, runs=31)
QUICK = Shape(services=50, files=40, changed=500, runs=3)


def service_name(index: int) -> str:
    return f"svc-{index:03d}"


def service_files(name: str, count: int) -> list[str]:
    """A service folder: Python sources in packages, docs, tests and a few build files."""
    fixed = [f"{name}/Dockerfile", f"{name}/requirements.txt", f"{name}/.dockerignore"]
    files = fixed[: min(3, count)]
    for j in range(count - len(files)):
        kind = j % 4
        if kind == 3:
            files.append(f"{name}/docs/page{j}.md")
        elif kind == 2:
            files.append(f"{name}/tests/test_{j}.py")
        else:
            files.append(f"{name}/src/pkg{j % 8}/mod{j}.py")
    return files


def service_globs(name: str) -> list[str]:
    """Three GitLab-style globs per service; docs and tests do not trigger a build."""
    return [f"{name}/src/**/*.py", f"{name}/Dockerfile", f"{name}/{{requirements,constraints}}.txt"]


def fast_import_stream(shape: Shape, rng: random.Random) -> Iterator[str]:
    """Two commits: every file, then ``shape.changed`` files changed over half the services."""
    yield "blob\nmark :1\ndata 3\nv1\n\nblob\nmark :2\ndata 3\nv2\n\n"
    names = [service_name(i) for i in range(shape.services)]
    all_files = {name: service_files(name, shape.files) for name in names}
    yield from _commit(
        ":10", "first", None, (f"M 100644 :1 {f}" for fs in all_files.values() for f in fs)
    )
    touched = rng.sample(names, shape.services // 2)
    per_service = shape.changed // len(touched)
    changes = (
        f"M 100644 :2 {f}" for name in touched for f in rng.sample(all_files[name], per_service)
    )
    yield from _commit(":11", "second", ":10", changes)


def _commit(mark: str, message: str, parent: str | None, lines: Iterator[str]) -> Iterator[str]:
    yield f"commit refs/heads/main\nmark {mark}\ncommitter {IDENTITY}\n"
    yield f"data {len(message)}\n{message}\n"
    if parent:
        yield f"from {parent}\n"
    for line in lines:
        yield line + "\n"
    yield "\n"


def build_repo(root: Path, shape: Shape) -> tuple[str, str]:
    """Create the monorepo under ``root``; return the SHAs of its two commits.

    The index holds the second commit, as in a checkout (a CI job's clone): some git commands
    read it, and a 100,000-entry index takes time to read. The files themselves are not written.
    """
    git.git(root, "init", "-q", "-b", "main")
    stream = "".join(fast_import_stream(shape, random.Random(42)))
    proc.run(("git", "-C", str(root), "fast-import", "--quiet"), input_text=stream)
    git.git(root, "read-tree", "main")
    second = git.git(root, "rev-parse", "main").strip()
    first = git.git(root, "rev-parse", "main~1").strip()
    return first, second


def interleaved_medians(actions: list[Callable[[], object]], runs: int) -> list[float]:
    """Median seconds of each action, timed in turn within every round so that load from other
    processes on the machine falls on all of them alike."""
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for action, samples in zip(actions, times, strict=True):
            start = time.perf_counter()
            action()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def report(runs: int, rows: list[tuple[str, float]]) -> None:
    """Print one line per measurement: label, median in milliseconds."""
    for label, seconds in rows:
        print(f"{label:46s} median of {runs}: {seconds * 1000:5.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small repository, 3 runs")
    parser.add_argument("--runs", type=int, help="timed runs per measurement")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else FULL
    runs = args.runs or shape.runs
    services = {service_name(i): service_globs(service_name(i)) for i in range(shape.services)}
    with tempfile.TemporaryDirectory(prefix="bench-changes-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        first, second = build_repo(root, shape)
        built = time.perf_counter() - start
        print(f"repository: {shape.services} services x {shape.files} files, built in {built:.1f}s")

        def detect() -> object:
            return detect_changes(root, base=first, head=second, services=services, env={})

        push_env = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BEFORE_SHA": first}
        ci_env = {**push_env, "CI_COMMIT_SHA": second}  # GitLab checks out CI_COMMIT_SHA as HEAD

        def detect_push() -> object:
            return detect_changes(root, services=services, env=ci_env)

        def detect_push_without_sha() -> object:
            return detect_changes(root, services=services, env=push_env)

        def diff() -> object:
            return git.git(root, "diff", "--name-only", first, second)

        def listing() -> object:
            return git.changed_files(root, first, second)

        bare_argv = ("git", "-C", str(root), "diff", "--name-only", first, second)
        tree_argv = ("git", "-C", str(root), "diff-tree", "-r", "--no-renames", "--name-only", "-z")

        def bare_diff() -> object:
            return subprocess.run(bare_argv, capture_output=True, check=True)

        def bare_diff_tree() -> object:  # the command detect_changes ran before (0.1.0)
            return subprocess.run((*tree_argv, first, second), capture_output=True, check=True)

        start = time.perf_counter()
        result = detect_changes(root, base=first, head=second, services=services, env={})
        cold = time.perf_counter() - start
        files = len(git.git(root, "diff", "--name-only", "-z", first, second).split("\0")) - 1
        assert len(result.files) == files == shape.changed, (len(result.files), files)
        assert detect_changes(root, services=services, env=ci_env) == detect_push_without_sha()
        print(f"changed: {files} files; {len(result.services)} services matched")
        print(
            f"detect_changes first call (compiles {shape.services * 3} globs): {cold * 1000:.1f} ms"
        )
        actions = [
            bare_diff, bare_diff_tree, diff, listing, detect, detect_push, detect_push_without_sha
        ]  # fmt: skip
        medians = interleaved_medians(actions, runs)
        bare, tree, git_time, listed, explicit, push, push_no_sha = medians
        report(runs, [
            ("git diff --name-only (subprocess.run)", bare),
            ("git diff-tree -r --name-only (subprocess.run)", tree),
            ("git diff --name-only (proc.run)", git_time),
            ("git.changed_files (pinned diff, sorted)", listed),
            ("detect_changes(base=first, head=second)", explicit),
            ("detect_changes push pipeline", push),
            ("detect_changes push, no CI_COMMIT_SHA", push_no_sha),
        ])  # fmt: skip
        measured = (
            ("changed_files", listed),
            ("explicit base", explicit),
            ("push pipeline", push),
            ("push, no CI_COMMIT_SHA", push_no_sha),
        )
        for label, value in measured:
            print(
                f"ratio, {label}: {value / git_time:.2f} against proc.run, "
                f"{value / bare:.2f} against subprocess.run (target <= 1.30)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
