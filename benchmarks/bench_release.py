"""Benchmark a release of N services: registry retag by digest against docker pull + tag + push.

    python benchmarks/bench_release.py [--services 50] [--rounds 5] [--workers 4] [--json FILE]

Starts its own dockerd and htpasswd registry (homelab_release.sandbox) and pushes N small distinct
images with ``build_image`` (``FROM scratch`` + static busybox, each with its own file), one
repository per service, like ``<registry>/bench/svc-07:<commit>``. Then, in interleaved rounds
(the order alternates), it gives all N images a version tag (a new one each round) in two ways:

(i)  ``retag(<repository>@<digest>, version)``: read the manifest, put it under the version,
     confirm with a HEAD; nothing pulled;
(ii) ``docker pull <repository>@<digest>`` + ``docker tag`` + ``docker push`` with the docker CLI
     against the private engine, on an engine whose images were all removed first (not timed);
(iii) for reference, (i) spread over ``--workers`` threads (what a caller could do; the target
     compares (i), sequential like (ii));
(i') for reference, (i) with the registry's Basic challenge answered on every retag (the
     registry module forgets which registries asked for Basic), as before that was remembered.

After each timing every new tag is checked in the registry (not timed) to serve the right digest.
Prints each round, the medians and (i)/(ii); the target is <= 0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker

from homelab_release import proc
from homelab_release import registry as registry_api
from homelab_release.build import build_image
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry, busybox_context
from homelab_release.engines.docker import DockerBuilder
from homelab_release.images import ImageRef
from homelab_release.registry import manifest_digest, retag

TARGET = 0.1
CHALLENGED = "(i') challenged s"


@dataclass(frozen=True)
class Service:
    """One pushed image: its repository and the digest the registry serves for it."""

    repository: str
    digest: str

    @property
    def pinned(self) -> str:
        """``repository@digest``."""
        return f"{self.repository}@{self.digest}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table, the medians and the ratio."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        root = Path(tmp)
        with DockerEngine(root / "engine") as engine, LocalRegistry(root / "registry") as registry:
            client = docker.APIClient(base_url=engine.host, version="auto", timeout=600)
            try:
                services = _push_services(args.services, client, registry, root)
                env = _docker_env(engine, registry, root)
                bench = _Bench(services, client, registry, env, args.workers)
                runs = [_round(i, bench) for i in range(args.rounds)]
            finally:
                client.close()
    summary = _summary(runs, args.services)
    _print(runs, summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": summary}, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=50, help="images to release (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--workers", type=int, default=4, help="threads for (iii) (default 4)")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def _push_services(
    count: int, client: docker.APIClient, registry: LocalRegistry, root: Path
) -> list[Service]:
    services = []
    start = time.perf_counter()
    for index in range(count):
        context = busybox_context(root / f"svc-{index:02d}", f"echo service {index} > /service")
        built = build_image(
            context=context,
            repository=f"{registry.address}/bench/svc-{index:02d}",
            tags=[f"{index:02d}c0ffee"],
            cache_from=[],
            engine=DockerBuilder(client),
            credentials=registry.credentials,
            revision=f"{index:02d}c0ffee",
            env={},
        )
        assert built.digest is not None
        services.append(Service(built.repository, built.digest))
    assert len({service.digest for service in services}) == count, "images are not distinct"
    print(f"pushed {count} images in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return services


def _docker_env(engine: DockerEngine, registry: LocalRegistry, root: Path) -> dict[str, str]:
    """The docker CLI's environment, logged in to the registry (the password goes on stdin)."""
    env = {"DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(root / "docker-config")}
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
    return env


@dataclass(frozen=True)
class _Bench:
    services: list[Service]
    client: docker.APIClient
    registry: LocalRegistry
    env: dict[str, str]
    workers: int


def _round(index: int, bench: _Bench) -> dict[str, float]:
    services, registry = bench.services, bench.registry
    variants: dict[str, Callable[[str], None]] = {
        "retag": lambda version: _retag(services, registry, version),
        "cli": lambda version: _docker_cli(services, bench.env, version),
        "threads": lambda version: _retag(services, registry, version, bench.workers),
        "challenged": lambda version: _retag(services, registry, version, challenged=True),
    }
    order = list(variants) if index % 2 == 0 else list(reversed(variants))  # alternate
    times = {}
    for name in order:
        version = f"1.{index}.0-{name}"
        _empty(bench.client)
        start = time.perf_counter()
        variants[name](version)
        times[name] = time.perf_counter() - start
        _check(services, registry, version)
    return times


def _retag(
    services: list[Service],
    registry: LocalRegistry,
    version: str,
    workers: int = 1,
    *,
    challenged: bool = False,
) -> None:
    def one(service: Service) -> str:
        if challenged:
            registry_api._BASIC_HOSTS.clear()  # as before the registry's scheme was kept
        return retag(ImageRef.parse(service.pinned), version, registry.credentials)

    if workers == 1:
        for service in services:
            one(service)
        return
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, services))


def _docker_cli(services: list[Service], env: dict[str, str], version: str) -> None:
    for service in services:
        target = f"{service.repository}:{version}"
        proc.run(("docker", "pull", "-q", service.pinned), env=env)
        proc.run(("docker", "tag", service.pinned, target), env=env)
        proc.run(("docker", "push", "-q", target), env=env)


def _empty(client: docker.APIClient) -> None:
    for image in client.images():
        client.remove_image(image["Id"], force=True)
    client.prune_images(filters={"dangling": False})  # type: ignore[no-untyped-call]
    assert not client.images(), "the engine still holds images"


def _check(services: list[Service], registry: LocalRegistry, version: str) -> None:
    for service in services:
        reference = ImageRef.parse(f"{service.repository}:{version}")
        found = manifest_digest(reference, registry.credentials)
        assert found == service.digest, f"{reference} serves {found}, not {service.digest}"


def _summary(runs: list[dict[str, float]], count: int) -> dict[str, float]:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    median["retag/cli"] = median["retag"] / median["cli"]
    median["retag per image ms"] = 1000 * median["retag"] / count
    median["cli per image ms"] = 1000 * median["cli"] / count
    median["threads/cli"] = median["threads"] / median["cli"]
    median["challenged/cli"] = median["challenged"] / median["cli"]
    return median


def _print(runs: list[dict[str, float]], median: dict[str, float]) -> None:
    print(
        f"{'round':>6} {'(i) retag s':>12} {'(ii) pull+tag+push s':>21} {'(i)/(ii)':>9}"
        f" {'(iii) threads s':>16} {CHALLENGED:>18}"
    )
    for i, run in enumerate(runs, 1):
        ratio = run["retag"] / run["cli"]
        print(
            f"{i:>6} {run['retag']:>12.3f} {run['cli']:>21.2f} {ratio:>9.3f}"
            f" {run['threads']:>16.3f} {run['challenged']:>18.3f}"
        )
    print(
        f"{'median':>6} {median['retag']:>12.3f} {median['cli']:>21.2f} "
        f"{median['retag/cli']:>9.3f} {median['threads']:>16.3f} {median['challenged']:>18.3f}"
    )
    print(
        f"per image: retag {median['retag per image ms']:.1f} ms, "
        f"docker pull + tag + push {median['cli per image ms']:.0f} ms"
    )
    print(f"(i)/(ii) = {median['retag/cli']:.3f} (target <= {TARGET})")
    print(f"(iii)/(ii) = {median['threads/cli']:.3f}")
    print(f"(i')/(ii) = {median['challenged/cli']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
