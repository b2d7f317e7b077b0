"""Benchmark build_image against the docker CLI, and the registry layer cache on an emptied engine.

    python benchmarks/bench_build.py [--repeat N] [--sleep SECONDS] [--json FILE]

Starts its own dockerd and registry (homelab_release.demo.sandbox), then for each repetition, always on
an engine whose images were all removed first:

(a) ``docker build`` + ``docker tag`` + ``docker push`` of two tags with the docker CLI;
(b) ``build_image`` of the same context with the same two tags (cache pull, build, push, digest
    check included);
(c) a rebuild of that context: cold (``cache_from=[]``) and with the registry cache (the default:
    ``<repository>:latest`` pulled first).

The context's RUN step sleeps for ``--sleep`` seconds and writes 8 MB, like a small compile step.
Prints each run and the medians; targets: (b)/(a) <= 1.1 and (c) cached/cold <= 0.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from homelab_release import proc
from homelab_release.build import build_image
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry, busybox_context
from homelab_release.engines.docker import DockerBuilder


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and the medians."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp)
        script = f"sleep {args.sleep} && dd if=/dev/urandom of=/payload bs=1M count=8"
        context = busybox_context(root / "context", script)
        with DockerEngine(root / "engine") as engine, LocalRegistry(root / "registry") as registry:
            runs = [_repetition(i, engine, registry, context, root) for i in range(args.repeat)]
    summary = _summary(runs)
    _print(runs, summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": summary}, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--sleep", type=float, default=3.0, help="seconds the RUN step takes")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def _repetition(
    index: int, engine: DockerEngine, registry: LocalRegistry, context: Path, root: Path
) -> dict[str, float]:
    client = docker.APIClient(base_url=engine.host, version="auto", timeout=600)
    try:
        cli_repo = f"{registry.address}/bench/cli-{index}"
        lib_repo = f"{registry.address}/bench/lib-{index}"
        variants: dict[str, Callable[[], object]] = {
            "cli": lambda: _docker_cli(engine, registry, context, cli_repo, root),
            "build_image": lambda: _build_image(client, registry, context, lib_repo, None),
        }
        order = list(variants) if index % 2 == 0 else list(reversed(variants))  # alternate
        times = {name: _timed(client, variants[name]) for name in order}
        times["cold"] = _timed(
            client, lambda: _build_image(client, registry, context, lib_repo, [])
        )
        times["cached"] = _timed(
            client, lambda: _build_image(client, registry, context, lib_repo, None)
        )
    finally:
        client.close()
    return times


def _timed(client: docker.APIClient, run: Callable[[], object]) -> float:
    """Seconds ``run`` takes, on an engine emptied of every image first."""
    _empty(client)
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _empty(client: docker.APIClient) -> None:
    for container in client.containers(all=True):
        client.remove_container(container["Id"], force=True)
    for image in client.images():
        client.remove_image(image["Id"], force=True)
    client.prune_images(filters={"dangling": False})  # type: ignore[no-untyped-call]


def _docker_cli(
    engine: DockerEngine, registry: LocalRegistry, context: Path, repository: str, root: Path
) -> None:
    env = {
        "DOCKER_HOST": engine.host,
        "DOCKER_CONFIG": str(root / "docker-config"),
        "DOCKER_BUILDKIT": "0",
    }
    password = registry.credentials.password
    login = (
        "docker",
        "login",
        "-u",
        registry.credentials.username,
        "--password-stdin",
        registry.address,
    )
    proc.run(login, env=env, input_text=password.secret, secrets=[password])
    proc.run(("docker", "build", "-q", "-t", f"{repository}:abc123", str(context)), env=env)
    proc.run(("docker", "tag", f"{repository}:abc123", f"{repository}:latest"), env=env)
    proc.run(("docker", "push", "-q", f"{repository}:abc123"), env=env)
    proc.run(("docker", "push", "-q", f"{repository}:latest"), env=env)


def _build_image(
    client: docker.APIClient,
    registry: LocalRegistry,
    context: Path,
    repository: str,
    cache_from: list[str] | None,
) -> None:
    build_image(
        context=context,
        repository=repository,
        tags=["abc123", "latest"],
        cache_from=cache_from,
        engine=DockerBuilder(client),
        credentials=registry.credentials,
        revision="abc123",
    )


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    median["build_image/cli"] = median["build_image"] / median["cli"]
    median["cached/cold"] = median["cached"] / median["cold"]
    return median


def _print(runs: list[dict[str, float]], median: dict[str, float]) -> None:
    print(f"{'run':>6} {'(a) cli':>9} {'(b) build_image':>16} {'(c) cold':>9} {'(c) cached':>11}")
    for i, run in enumerate(runs, 1):
        print(
            f"{i:>6} {run['cli']:>9.2f} {run['build_image']:>16.2f} {run['cold']:>9.2f} {run['cached']:>11.2f}"
        )
    print(
        f"{'median':>6} {median['cli']:>9.2f} {median['build_image']:>16.2f} "
        f"{median['cold']:>9.2f} {median['cached']:>11.2f}"
    )
    print(f"(b)/(a) = {median['build_image/cli']:.2f} (target <= 1.1)")
    print(f"(c) cached/cold = {median['cached/cold']:.2f} (target <= 0.5)")


if __name__ == "__main__":
    sys.exit(main())
