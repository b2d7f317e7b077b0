"""Benchmark: fan-out's generation of the child pipeline against detect_changes alone.

The monorepo is the one of ``bench_changes.py`` (500 services x 200 files, a second commit that
changes 10,000 files in 250 services), checked out, with a ``homelab-release.toml`` that gives
each service its three globs. Both sides get the same loaded configuration and compare the two
commits:

* ``detect_changes(base=first, head=second)``;
* ``fanout.generate``: ``plan_develop`` (that detect_changes, the tag, each changed service's
  image, overlay entry and build context checked on disk) + the child pipeline as data + its
  YAML (250 build jobs, the writer waiting by stage) + the secret check.

It reports the medians of interleaved runs and the ratio (target: <= 1.2), then the whole
``fan_out`` call once more (opening the workspace, loading the configuration, writing the file).

    python benchmarks/bench_fanout.py            # 500 x 200 files, 250 services changed
    python benchmarks/bench_fanout.py --quick    # 50 x 40 files (a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "benchmarks") not in sys.path:  # run as a script: bench_changes is a sibling
    sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_changes import (  # noqa: E402
    FULL,
    QUICK,
    Shape,
    build_repo,
    interleaved_medians,
    service_globs,
    service_name,
)

from homelab_release import git  # noqa: E402
from homelab_release.changes import detect_changes  # noqa: E402
from homelab_release.childpipeline import JobSettings  # noqa: E402
from homelab_release.config import load_config  # noqa: E402
from homelab_release.context import CiContext  # noqa: E402
from homelab_release.fanout import fan_out, generate  # noqa: E402
from homelab_release.workspace import Workspace  # noqa: E402

SETTINGS = JobSettings(
    image="python:3.12",
    source="https://gitlab.example.com/homelab/homelab-release.git",
    nox_args="--no-venv",
    build_services=({"name": "docker:27-dind", "alias": "docker"},),
    build_variables=(("DOCKER_HOST", "tcp://docker:2376"),),
    resource_group="manifests",
)


def write_config(root: Path, shape: Shape) -> None:
    """Each service with its three globs, and a registry."""
    lines = ['[registry]\nrepository = "registry.example.com/bench"\n']
    for index in range(shape.services):
        name = service_name(index)
        globs = ", ".join(f'"{glob}"' for glob in service_globs(name))
        lines.append(f"[services.{name}]\npaths = [{globs}]\n")
    (root / "homelab-release.toml").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small repository, 3 runs")
    parser.add_argument("--runs", type=int, help="timed runs per measurement")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else FULL
    runs = args.runs or shape.runs
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        start = time.perf_counter()
        first, second = build_repo(root, shape)
        git.git(root, "checkout", "--quiet", "--force", second)
        write_config(root, shape)
        print(f"repository: {shape.services} x {shape.files} files, checked out in "
              f"{time.perf_counter() - start:.1f}s")  # fmt: skip
        config = load_config(root, {})
        ws = Workspace(root, config, CiContext.from_env({}), {})

        def detect() -> object:
            return detect_changes(root, base=first, head=second, config=config, env={})

        def generation() -> object:
            return generate(ws, SETTINGS, base=first, head=second)

        done = generate(ws, SETTINGS, base=first, head=second)
        assert done.plan.changes.services == detect().services  # type: ignore[attr-defined]
        jobs = len(done.pipeline.build_jobs)
        print(f"child pipeline: {jobs} build jobs, writer by needs: {done.pipeline.writer_needs}, "
              f"{len(done.text.splitlines())} lines, {len(done.text) / 1024:.0f} KiB")  # fmt: skip
        detect_time, generate_time = interleaved_medians([detect, generation], runs)
        print(f"{'detect_changes(base=first, head=second)':46s} median of {runs}: "
              f"{detect_time * 1000:6.1f} ms")  # fmt: skip
        print(f"{'fanout.generate (plan + child pipeline + YAML)':46s} median of {runs}: "
              f"{generate_time * 1000:6.1f} ms")  # fmt: skip
        print(f"ratio: {generate_time / detect_time:.2f} (target <= 1.2)")
        whole = []
        for _ in range(max(3, runs // 5)):
            start = time.perf_counter()
            fan_out(root, settings=SETTINGS, base=first, output=Path(tmp) / "child.yml",
                    check_overlay=False, env={"CI_PROJECT_DIR": tmp})  # fmt: skip
            whole.append(time.perf_counter() - start)
        print(f"{'fan_out (open, load config, generate, write)':46s} median of {len(whole)}: "
              f"{statistics.median(whole) * 1000:6.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
