"""Benchmark the buildah engine: its cache repository, its overhead, and the Docker Engine beside it.

    python benchmarks/bench_buildah.py [--repeat N] [--sleep S] [--payload MIB] [--driver D]
                                       [--json FILE]

Starts its own htpasswd registry and dockerd (homelab_release.demo.sandbox) and keeps buildah's
images in a private storage (``--driver``, default overlay). One two-stage Dockerfile: a build
stage whose RUN sleeps ``--sleep`` seconds and writes ``--payload`` MiB of random data (default 8,
as in bench_build.py), and a final stage that copies from it. Every timing starts on an emptied
store (buildah) or engine (docker):

(a) buildah: a cold build into an empty cache repository, then a rebuild from that cache repository
    (``build_image(engine="buildah", cache_repo=...)``, both with push and digest check), with the
    three labels a GitLab job gets (created, revision, source); timed whole (build + push +
    confirm) and its build phase alone (``BuiltImage.durations.build``);
(a') as (a), the labels given to buildah as ``--label`` flags, as the engine did before it wrote
    them as one LABEL step (buildah before 1.29 makes one step of each flag);
(e) ``buildah build --cache-from/--cache-to`` alone, typed by hand: no labels, no push; cold into
    an empty cache repository, then on an emptied store (what the issue measured by hand);
(b) ``build_image(engine="buildah")`` without cache repository against the same ``buildah build``
    (same flags, labels and build arguments) + two ``buildah push`` run by hand;
(c) the Docker Engine: the same Dockerfile cold (``cache_from=[]``) and rebuilt from its
    ``<repository>:latest`` cache (the default);
(d) as (a), with ``ARG TARGETARCH`` as the build stage's first instruction (the seed's worker puts
    it there): buildah before 1.29 does not look ARG steps up in the cache repository.

Prints each run (with the load average) and the medians; targets: (a) cached/cold <= 0.2,
(b) build_image/by hand <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import docker

from homelab_release import proc
from homelab_release.build import BuiltImage, build_image
from homelab_release.demo.sandbox import BUSYBOX, DockerEngine, LocalRegistry
from homelab_release.engines.base import BuildRequest
from homelab_release.engines.buildah import BuildahBuilder
from homelab_release.engines.docker import DockerBuilder

DOCKERFILE = """\
FROM scratch AS build
{arg}COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN sleep {sleep} && dd if=/dev/urandom of=/payload bs=64k count={blocks} 2>/dev/null \\
    && echo ok > /app
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /app /payload /
"""
LABELS = {"org.opencontainers.image.revision": "abc123"}
SOURCE = "https://gitlab.example.com/homelab/bench"  # a GitLab job's CI_PROJECT_URL


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and the medians."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-buildah-") as tmp:
        root = Path(tmp)
        blocks = round(args.payload * 16)  # 64 KiB blocks
        plain = _context(
            root / "context", DOCKERFILE.format(arg="", sleep=args.sleep, blocks=blocks)
        )
        arg_first = DOCKERFILE.format(arg="ARG TARGETARCH\n", sleep=args.sleep, blocks=blocks)
        contexts = {"plain": plain, "arg": _context(root / "arg-first", arg_first)}
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(root), "CONTAINERS_STORAGE_CONF": str(_storage(root / "storage", args.driver))}  # fmt: skip
        with DockerEngine(root / "engine") as engine, LocalRegistry(root / "registry") as registry:
            bench = _Bench(root, env, registry, engine)
            runs = [bench.repetition(i, contexts) for i in range(args.repeat)]
        version = BuildahBuilder(settings=env).info().version
    summary = _summary(runs)
    _print(runs, summary, f"buildah {version}, {args.driver} storage, {args.payload:g} MiB payload")
    if args.json:
        document = {
            "buildah": str(version),
            "driver": args.driver,
            "payload_mib": args.payload,
            "runs": runs,
            "median": summary,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--sleep", type=float, default=3.0, help="seconds the RUN step takes")
    parser.add_argument(
        "--payload", type=float, default=8.0, help="MiB of random data the RUN step writes"
    )
    parser.add_argument(
        "--driver", default="overlay", help="buildah's storage driver (default overlay; vfs)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def _context(folder: Path, dockerfile: str) -> Path:
    folder.mkdir(parents=True)
    shutil.copy2(BUSYBOX, folder / "busybox")
    (folder / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return folder


def _storage(folder: Path, driver: str) -> Path:
    folder.mkdir(parents=True)
    conf = folder / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{folder / "graph"}"\n'
        f'runroot = "{folder / "run"}"\n',
        encoding="utf-8",
    )
    return conf


class _Bench:
    """The parts one repetition uses."""

    def __init__(
        self, root: Path, env: Mapping[str, str], registry: LocalRegistry, engine: DockerEngine
    ) -> None:
        self.root = root
        self.env = dict(env)
        self.registry = registry
        self.engine = engine

    def repetition(self, index: int, contexts: Mapping[str, Path]) -> dict[str, float]:
        project = f"{self.registry.address}/bench-{index}-{secrets.token_hex(3)}"
        times: dict[str, float] = {"load": os.getloadavg()[0]}
        plain = contexts["plain"]
        for name, context, engine in (
            ("", plain, "buildah"),
            ("flags ", plain, _FlagLabels),
            ("arg ", contexts["arg"], "buildah"),
        ):
            cache = f"{project}/cache-{name.strip() or 'plain'}"
            for phase in ("cold", "cached"):  # the cold build fills the cache repository
                built, times[name + phase] = self._buildah(
                    partial(self._lib, context, project, cache, engine)
                )
                times[f"{name}{phase} build"] = built.durations.build
                times[f"{name}{phase} push"] = built.durations.push + built.durations.verify
        auth = self._auth()  # logged in before, not timed: the build alone
        for phase in ("cold", "cached"):
            times[f"alone {phase}"] = self._buildah(
                partial(self._alone, plain, f"{project}/alone", f"{project}/cache-alone", auth)
            )[1]
        variants: dict[str, Callable[[], object]] = {
            "by hand": lambda: self._by_hand(plain, f"{project}/hand"),
            "build_image": lambda: self._lib(plain, project, ""),
        }
        order = list(variants) if index % 2 == 0 else list(reversed(variants))  # alternate
        for name in order:
            times[name] = self._buildah(variants[name])[1]
        client = docker.APIClient(base_url=self.engine.host, version="auto", timeout=600)
        try:
            for name, cache_from in (("docker cold", []), ("docker cached", None)):
                times[name] = self._docker(client, plain, project, cache_from)
        finally:
            client.close()
        times["load"] = max(times["load"], os.getloadavg()[0])
        return times

    # -- buildah ----------------------------------------------------------------------------------

    def _buildah(self, run: Callable[[], Any]) -> tuple[Any, float]:
        """What ``run`` returns and the seconds it takes, on an emptied buildah store."""
        for argv in (("buildah", "rm", "--all"), ("buildah", "rmi", "--all", "--force")):
            subprocess.run(argv, env=self.env, capture_output=True, check=False, timeout=300)
        start = time.perf_counter()
        result = run()
        return result, time.perf_counter() - start

    def _lib(
        self,
        context: Path,
        project: str,
        cache_repo: str,
        engine: str | type[BuildahBuilder] = "buildah",
    ) -> BuiltImage:
        return build_image(
            context=context,
            repository=f"{project}/lib",
            tags=["abc123", "latest"],
            labels=LABELS,
            engine=engine if isinstance(engine, str) else engine(settings=self.env),
            credentials=self.registry.credentials,
            cache_repo=cache_repo,
            revision="abc123",
            source=SOURCE,
            env=self.env,
        )

    def _auth(self) -> Path:
        """``buildah login`` into an auth file of the benchmark's own, as a user would."""
        auth = self.root / "auth.json"
        credentials = self.registry.credentials
        password = credentials.password
        login = ("buildah", "login", "--tls-verify=false", "--authfile", str(auth),
                 "-u", credentials.username, "--password-stdin", self.registry.address)  # fmt: skip
        proc.run(login, env=self.env, input_text=password.secret, secrets=[password])
        return auth

    def _alone(self, context: Path, repository: str, cache: str, auth: Path) -> None:
        """``buildah build`` with the cache repository, typed by hand: no labels, no push."""
        build = ["buildah", "build", "--layers", "--isolation", "chroot", "--format", "docker",
                 "--tls-verify=false", "--authfile", str(auth), "--cache-from", cache,
                 "--cache-to", cache, "-t", f"{repository}:abc123", str(context)]  # fmt: skip
        proc.run(build, env=self.env, timeout=600)

    def _by_hand(self, context: Path, repository: str) -> None:
        """What a careful user types: the same build, its tags, two pushes with an auth file."""
        auth = self._auth()
        build = ["buildah", "build", "--layers", "--isolation", "chroot", "--format", "docker",
                 "--tls-verify=false", "--authfile", str(auth), "-t", f"{repository}:abc123",
                 "-t", f"{repository}:latest", "--label", "org.opencontainers.image.created=now",
                 *(f"--label={k}={v}" for k, v in LABELS.items()),
                 f"--label=org.opencontainers.image.source={SOURCE}", str(context)]  # fmt: skip
        proc.run(build, env=self.env, timeout=600)
        for tag in ("abc123", "latest"):
            push = ("buildah", "push", "--tls-verify=false", "--authfile", str(auth),
                    f"{repository}:{tag}", f"docker://{repository}:{tag}")  # fmt: skip
            proc.run(push, env=self.env, timeout=600)

    # -- docker -----------------------------------------------------------------------------------

    def _docker(
        self,
        client: docker.APIClient,
        context: Path,
        project: str,
        cache_from: list[str] | None,
    ) -> float:
        """Seconds one build_image on the Docker Engine takes, on an emptied engine."""
        for container in client.containers(all=True):
            client.remove_container(container["Id"], force=True)
        for image in client.images():
            client.remove_image(image["Id"], force=True)
        client.prune_images(filters={"dangling": False})  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        build_image(
            context=context,
            repository=f"{project}/docker",
            tags=["abc123", "latest"],
            labels=LABELS,
            cache_from=cache_from,
            engine=DockerBuilder(client),
            credentials=self.registry.credentials,
            revision="abc123",
            source=SOURCE,
        )
        return time.perf_counter() - start


class _FlagLabels(BuildahBuilder):
    """The engine as it was before it wrote the labels as one LABEL step: every label a
    ``--label`` flag (one step each before buildah 1.29). Only for Dockerfiles that need no other
    change (the benchmark's: no platform argument in a FROM line)."""

    def _build_argv(self, request: BuildRequest, **parts: Any) -> list[str]:
        return super()._build_argv(request, **{**parts, "file": None, "labelled": False})


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    for name, cached, cold in RATIOS:
        median[name] = median[cached] / median[cold]
    return median


#: (name, numerator, denominator) of each ratio, over medians.
RATIOS = (
    ("(a) cached/cold, build+push+confirm", "cached", "cold"),
    ("(a) cached/cold, build phase only", "cached build", "cold build"),
    ("(a') --label flags: cached/cold, build+push+confirm", "flags cached", "flags cold"),
    ("(a') --label flags: cached/cold, build phase only", "flags cached build", "flags cold build"),
    ("(e) buildah build alone by hand: cached/cold", "alone cached", "alone cold"),
    ("(b) build_image/by hand", "build_image", "by hand"),
    ("(c) docker cached/cold", "docker cached", "docker cold"),
    ("(d) arg cached/cold", "arg cached", "arg cold"),
)
COLUMNS = ("load", "cold", "cached", "cold build", "cached build", "cached push", "flags cold",
           "flags cached", "alone cold", "alone cached", "by hand", "build_image", "docker cold",
           "docker cached", "arg cold", "arg cached")  # fmt: skip


def _print(runs: list[dict[str, float]], median: dict[str, float], title: str) -> None:
    print(title)
    print(f"{'run':>6} " + " ".join(f"{name:>13}" for name in COLUMNS))
    for i, run in enumerate(runs, 1):
        print(f"{i:>6} " + " ".join(f"{run[name]:>13.2f}" for name in COLUMNS))
    print(f"{'median':>6} " + " ".join(f"{median[name]:>13.2f}" for name in COLUMNS))
    for name, *_ in RATIOS:
        target = {"(a) cached/cold, build+push+confirm": " (target <= 0.2)",
                  "(b) build_image/by hand": " (target <= 1.1)"}.get(name, "")  # fmt: skip
        print(f"{name} = {median[name]:.2f}{target}")


if __name__ == "__main__":
    sys.exit(main())
