"""The buildah engine: real buildah (as root and as unprivileged users) and a real htpasswd registry.

Pure parts (versions, features, platform arguments, engine names, Dockerfile reading) are tables;
everything else builds for real: the seed's worker shape (``FROM --platform=${BUILDPLATFORM}``,
``ARG TARGETARCH``, ``RUN --mount=type=cache``, ``COPY --from``) is built and pushed, rebuilt on an
emptied store from the cache repository, built rootless, and broken in the ways a runner breaks.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

from homelab_release.build import BuiltImage, build_image, build_request
from homelab_release.config import load_config
from homelab_release.context import CiContext
from homelab_release.demo.sandbox import (
    BUSYBOX,
    LocalRegistry,
    SandboxUnavailableError,
    check_requirements,
)
from homelab_release.dockerfile import (
    append_to_stage,
    base_images,
    declare_global_args,
    escape_token,
    global_args_missing,
    label_instruction,
    platform_args_used,
    stage_args,
)
from homelab_release.engines.buildah import (
    BuildahBuilder,
    parse_version,
    platform_args,
    unsupported_features,
)
from homelab_release.engines.choice import choose_engine, engine_name, make_engine
from homelab_release.errors import BuildError, ConfigError, PushError
from homelab_release.images import ImageRef
from homelab_release.registry import image_labels, manifest_digest
from homelab_release.secrets import HiddenText, RegistryCredentials
from tests.buildahinfra import RunAs, User, storage_conf

#: The voting app's worker, in busybox: a build stage on the build platform with a slow RUN that
#: keeps a cache mount, the target architecture declared after it, and a final stage that copies.
WORKER = """\
# syntax=docker/dockerfile:1
FROM --platform=${BUILDPLATFORM} scratch AS build
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN --mount=type=cache,target=/root/.cache mkdir -p /out && echo compiling-MARK && sleep 2 \\
    && echo compiled > /out/app && date >> /root/.cache/runs && wc -l /root/.cache/runs
ARG BUILDPLATFORM
ARG TARGETARCH
RUN echo "built on ${BUILDPLATFORM} for linux/${TARGETARCH}" | tee /out/arch
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /out /out
"""


def worker_context(folder: Path, mark: str = "", *, slow: bool = True) -> Path:
    """A build context with the worker shape; ``mark`` makes its slow step unique, ``slow=False``
    takes the sleep out of it (for the tests about faults, not about the cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, folder / "busybox")
    text = WORKER.replace("compiling-MARK", f"compiling-{mark or secrets.token_hex(4)}")
    text = text if slow else text.replace("&& sleep 2 ", "")
    (folder / "Dockerfile").write_text(text, encoding="utf-8")
    return folder


def _repo(registry: LocalRegistry, name: str = "worker") -> str:
    return f"{registry.address}/homelab-{secrets.token_hex(4)}/{name}"


def _digest(ref: str, registry: LocalRegistry) -> str | None:
    return manifest_digest(ImageRef.parse(ref), registry.credentials)


def _tags(repository: str, registry: LocalRegistry) -> list[str]:
    """The tags the registry lists for ``repository`` (the cache repository's layers)."""
    name = repository.split("/", 1)[1]
    request = urllib.request.Request(f"http://{registry.address}/v2/{name}/tags/list")
    request.add_header("Authorization", registry.credentials.basic_header())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            tags: list[str] = json.load(answer).get("tags") or []
    except urllib.error.HTTPError as err:
        err.close()
        return []
    return tags


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


# -- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)", "1.28.2"),
        ('{\n    "version": "1.39.3",\n    "goVersion": "go1.23"\n}', "1.39.3"),
        ("buildah version 1.33.0-dev (image-spec 1.1.0)", "1.33.0"),
        ("buildah version 1.9.0", "1.9.0"),
    ],
)
def test_parse_version(output: str, version: str) -> None:
    assert parse_version(output) == Version(version)


def test_parse_version_refuses_what_it_cannot_read() -> None:
    with pytest.raises(BuildError, match="cannot read the buildah version from 'podman 4'"):
        parse_version("podman 4")


@pytest.mark.parametrize(
    ("dockerfile", "version", "found"),
    [
        ("FROM x\nRUN --mount=type=cache,target=/c true\n", "1.28.2", ()),
        ("# syntax=docker/dockerfile:1\nFROM --platform=$BUILDPLATFORM x\n", "1.28.2", ()),
        ("FROM x\nRUN --network=none true\n", "1.28.2", ("RUN --network (needs buildah 1.30.0 or later)",)),
        ("FROM x\nRUN --network=none true\n", "1.30.0", ()),
        ("FROM x\nRUN --security=insecure true\n", "1.44.0", ("RUN --security (needs BuildKit; no buildah has it)",)),
        ("FROM x\nRUN <<EOF\necho\nEOF\n", "1.32.0", ("a here-document (<<EOF) (needs buildah 1.33.0 or later)",)),
        ("FROM x\nRUN <<EOF\necho\nEOF\n", "1.33.0", ()),
        ("FROM x\nCOPY --link a /a\nADD --link b /b\n", "1.40.0", ("COPY/ADD --link (needs buildah 1.41.0 or later)",)),
        ("FROM x\nCOPY --parents a /a\n", "1.39.0", ("COPY --parents (needs buildah 1.40.0 or later)",)),
        ("FROM x\nCOPY --exclude=*.md . /a\n", "1.37.0", ("COPY/ADD --exclude (needs buildah 1.38.0 or later)",)),
        ("FROM x\nADD --checksum=sha256:ab a /a\n", "1.32.0", ("ADD --checksum (needs buildah 1.33.0 or later)",)),
        ("FROM x\n# RUN --network=none in a comment\nRUN echo --network\n", "1.28.2", ()),
    ],
)  # fmt: skip
def test_unsupported_features_by_version(
    dockerfile: str, version: str, found: tuple[str, ...]
) -> None:
    assert unsupported_features(dockerfile, Version(version)) == found


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("linux/amd64", {"TARGETPLATFORM": "linux/amd64", "TARGETARCH": "amd64", "TARGETVARIANT": ""}),
        ("linux/arm64", {"BUILDPLATFORM": "linux/arm64", "BUILDOS": "linux", "BUILDARCH": "arm64"}),
        ("linux/arm/v7", {"TARGETARCH": "arm", "TARGETVARIANT": "v7", "BUILDPLATFORM": "linux/arm/v7"}),
    ],
)  # fmt: skip
def test_platform_args_as_buildkit_defines_them(target: str, expected: dict[str, str]) -> None:
    values = platform_args(target)
    assert values.items() >= expected.items()
    assert set(values) == {f"{side}{part}" for side in ("BUILD", "TARGET")
                           for part in ("PLATFORM", "OS", "ARCH", "VARIANT")}  # fmt: skip


@pytest.mark.parametrize(
    ("given", "config", "variable", "chosen"),
    [
        (None, "", "", "auto"),
        ("docker", "buildah", "buildah", "docker"),
        ("auto", "buildah", "docker", "auto"),
        (None, "buildah", "docker", "buildah"),
        (None, "auto", "buildah", "buildah"),
        (None, "", "Docker", "docker"),
        (None, "auto", "auto", "auto"),
    ],
)
def test_engine_name_precedence(given: str | None, config: str, variable: str, chosen: str) -> None:
    assert engine_name(given, config=config, variable=variable) == chosen


@pytest.mark.parametrize(
    ("given", "variable", "says"),
    [("kaniko", "", "engine = 'kaniko'"), (None, "podman", "HOMELAB_RELEASE_ENGINE = 'podman'")],
)
def test_engine_name_refuses_unknown_engines(given: str | None, variable: str, says: str) -> None:
    with pytest.raises(BuildError, match=f"{says} is not a build engine; use docker, buildah"):
        engine_name(given, variable=variable)


DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=debian
FROM --platform=${BUILDPLATFORM} golang:1.22 AS build
ARG TARGETOS TARGETARCH=amd64
RUN GOOS=$TARGETOS GOARCH=${TARGETARCH} go build
FROM build AS test
COPY --from=build /a /a
COPY --chown=1 --from=docker.io/library/busybox:1 /bin/busybox /b
FROM $BASE
COPY --from=0 /x /x
"""


def test_dockerfile_reading_for_buildah() -> None:
    assert global_args_missing(DOCKERFILE) == ("BUILDPLATFORM",)
    assert global_args_missing("ARG TARGETARCH\nFROM x-$TARGETARCH\n") == ()
    assert global_args_missing("FROM x-${TARGETARCH}\nARG TARGETOS\n") == ("TARGETARCH",)
    declared = declare_global_args(DOCKERFILE, ("BUILDPLATFORM",)).splitlines()
    assert declared[:4] == [
        *DOCKERFILE.splitlines()[:2],
        "ARG BUILDPLATFORM",
        DOCKERFILE.splitlines()[2],
    ]
    assert platform_args_used(DOCKERFILE) == ("BUILDPLATFORM", "TARGETOS", "TARGETARCH")
    assert stage_args(DOCKERFILE) == (("build", "TARGETOS"), ("build", "TARGETARCH"))
    assert base_images(DOCKERFILE) == ("golang:1.22", "docker.io/library/busybox:1", "$BASE")
    assert stage_args("ARG A\nFROM x\nARG B\nFROM y\nARG C\n") == (("0", "B"), ("1", "C"))


@pytest.mark.parametrize(
    ("labels", "instruction"),
    [
        ({"a": "b"}, "LABEL 'a'='b'"),
        ({"k": "$HOME ${X} `id` \\ \"q\"", "x y": "a=b"},
         "LABEL 'k'='$HOME ${X} `id` \\ \"q\"' 'x y'='a=b'"),
        ({"it's": "it's"}, "LABEL 'it'\"'\"'s'='it'\"'\"'s'"),
        ({"empty": ""}, "LABEL 'empty'=''"),
        ({"café": "✓"}, "LABEL 'café'='✓'"),
        ({}, None),
        ({"": "v"}, None),
        ({"a=b": "v"}, None),
        ({"a": "two\nlines"}, None),
        ({"a": "tab\there"}, None),
    ],
)  # fmt: skip
def test_label_instruction(labels: dict[str, str], instruction: str | None) -> None:
    assert label_instruction(labels) == instruction


STAGES = """\
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM scratch \\
    AS build
RUN a \\
# a comment inside the continuation

    && b
FROM build
COPY --from=build /a /a
"""


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        (STAGES, None, STAGES + "LABEL x\n"),
        (STAGES, "build", STAGES.replace("    && b\n", "    && b\nLABEL x\n")),
        (STAGES, "1", STAGES + "LABEL x\n"),  # an unnamed stage is known by its number
        (STAGES, "0", None),  # a named one is not
        (STAGES, "Build", None),  # --target is case-sensitive
        (STAGES.rstrip("\n"), None, STAGES + "LABEL x\n"),
        ("FROM a\nRUN x \\\n", None, None),  # the file ends inside an instruction
        ("# escape=`\nFROM a AS s\nRUN x `\n  y\nFROM b\n", "s",
         "# escape=`\nFROM a AS s\nRUN x `\n  y\nLABEL x\nFROM b\n"),
        ("# nothing\n", None, None),
    ],
)  # fmt: skip
def test_append_to_stage(text: str, target: str | None, expected: str | None) -> None:
    assert append_to_stage(text, "LABEL x", target) == expected


def test_escape_token_is_read_only_from_the_top() -> None:
    assert escape_token("# syntax=x\n# escape=`\nFROM a\n") == "`"
    assert escape_token("FROM a\n# escape=`\n") == "\\"
    assert escape_token("# a comment\n# escape=`\nFROM a\n") == "\\"


@pytest.mark.parametrize(
    ("table", "engine", "cache_repo"),
    [
        ("", "auto", "127.0.0.1:5000/homelab/cache"),
        ('[build]\nengine = "buildah"\n', "buildah", "127.0.0.1:5000/homelab/cache"),
        ('[build]\ncache_repo = "registry.example.com/g/p/layers"\n', "auto",
         "registry.example.com/g/p/layers"),
        ('[build]\ncache_repo = ""\n', "auto", ""),
        ('[build]\ncache_repo = "${UNSET_VARIABLE}/cache"\n', "auto", ""),
    ],
)  # fmt: skip
def test_build_table(tmp_path: Path, table: str, engine: str, cache_repo: str) -> None:
    (tmp_path / "homelab-release.toml").write_text(table, encoding="utf-8")
    config = load_config(tmp_path, {"CI_REGISTRY_IMAGE": "127.0.0.1:5000/homelab"})
    assert (config.engine, config.cache_repo) == (engine, cache_repo)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            '[build]\nengine = "kaniko"\n',
            "build.engine = 'kaniko' is not an engine; use one of auto",
        ),
        ('[build]\ncache_repo = "r.example.com/cache:v1"\n', "without tag or digest"),
        ('[build]\ncache_repo = "Bad/Name"\n', "build.cache_repo = 'Bad/Name'"),
        ('[build]\ncache = "x"\n', "unknown key build.cache"),
    ],
)
def test_build_table_refuses_bad_values(tmp_path: Path, table: str, says: str) -> None:
    (tmp_path / "homelab-release.toml").write_text(table, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(tmp_path, {})


# -- choosing the engine -------------------------------------------------------------------------


def test_auto_takes_buildah_when_no_docker_engine_answers(
    tmp_path: Path, buildah_env: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    host = f"unix://{tmp_path}/no-docker.sock"
    engine = choose_engine(CiContext.from_env({**buildah_env, "DOCKER_HOST": host}))
    assert engine.name == "buildah"
    assert f"build engine: buildah (auto: no Docker Engine answers at DOCKER_HOST={host})" in (
        _messages(caplog, logging.WARNING)
    )


def test_auto_without_any_engine_says_how_to_get_each(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "PATH": str(tmp_path)}
    with pytest.raises(BuildError) as caught:
        build_image(context=worker_context(tmp_path / "ctx"), repository="x/y", tags=["a"], env=env)
    message = str(caught.value)
    assert "no Docker Engine answers at DOCKER_HOST=unix://" in message
    assert "buildah is not on PATH" in message
    assert "docker:dind" in message
    assert "apt-get install buildah uidmap" in message


def test_the_variable_and_the_config_choose_the_engine(tmp_path: Path) -> None:
    ctx = CiContext.from_env({"HOMELAB_RELEASE_ENGINE": "buildah"})
    assert make_engine(None, ctx).name == "buildah"
    assert make_engine(None, ctx, config="docker").name == "docker"
    assert make_engine("docker", ctx, config="buildah").name == "docker"


def test_missing_buildah_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"cannot find 'buildah' on PATH: install buildah and "):
        build_image(
            context=worker_context(tmp_path / "ctx"),
            repository="127.0.0.1:5000/x/y",
            tags=["a"],
            engine="buildah",
            env={"PATH": str(tmp_path)},
        )


def _fake_buildah(folder: Path, version: str) -> Path:
    """A ``buildah`` that reports ``version`` and runs the real one for everything else: an old
    buildah cannot be installed next to the new one, so only its version answer is made up."""
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("buildah", path="/usr/local/bin:/usr/bin:/bin")
    script = folder / "buildah"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in version|--version) echo "buildah version {version} (fake)"; exit 0;; esac\n'
        f'exec {real} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def _logged_buildah(folder: Path, calls: Path) -> Path:
    """A ``buildah`` that writes each call's first argument to ``calls``, then runs the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("buildah", path="/usr/local/bin:/usr/bin:/bin")
    script = folder / "buildah"
    script.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec {real} "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return folder


def test_too_old_buildah_is_refused_with_the_minimum(
    tmp_path: Path, buildah_env: Mapping[str, str]
) -> None:
    fake = _fake_buildah(tmp_path / "bin", "1.22.1")
    env = {**buildah_env, "PATH": f"{fake}:{buildah_env['PATH']}"}
    with pytest.raises(BuildError, match=r"buildah 1\.22\.1 is too old: .* needs buildah 1\.23\.0"):
        build_image(
            context=worker_context(tmp_path / "ctx"), repository="x/y", tags=["a"],
            engine="buildah", env=env, push=False,
        )  # fmt: skip


def test_dockerfile_buildah_cannot_build_is_refused_before_anything_runs(
    tmp_path: Path, buildah_env: Mapping[str, str]
) -> None:
    context = worker_context(tmp_path / "ctx")
    with (context / "Dockerfile").open("a", encoding="utf-8") as file:
        file.write("RUN --security=insecure true\n")
    calls = tmp_path / "buildah-calls"
    logged = _logged_buildah(tmp_path / "bin", calls)
    with pytest.raises(BuildError) as caught:
        build_image(
            context=context, repository="x/y", tags=["a"], engine="buildah",
            env={**buildah_env, "PATH": f"{logged}:{buildah_env['PATH']}"},
        )  # fmt: skip
    assert "RUN --security (needs BuildKit; no buildah has it), which the buildah engine cannot " \
        "build; this is buildah " in str(caught.value)  # fmt: skip
    asked = calls.read_text(encoding="utf-8").split()
    assert asked, "the engine asked buildah for its version"
    assert set(asked) <= {"version", "--version"}, f"refused up front, yet buildah ran {asked}"


# -- building and pushing as root ----------------------------------------------------------------


@dataclass(frozen=True)
class Watched:
    """A build and what a watcher saw while it ran: process arguments and auth files."""

    built: BuiltImage
    repository: str
    cache_repo: str
    password: str
    argv_hits: tuple[str, ...]  # command lines that held the password
    auth_files: tuple[tuple[int, int], ...]  # (folder mode, file mode) of each auth file seen
    leftovers: tuple[str, ...]  # files holding the password after the build
    log: tuple[str, ...]


def _watch(stop: threading.Event, password: str, seen: dict[str, set[object]], temp: Path) -> None:
    """Until ``stop``: record every command line holding ``password`` and every auth file in
    ``temp``."""
    needle = password.encode()
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                raw = cmdline.read_bytes()
            except OSError:
                continue
            if needle in raw:
                seen["argv"].add(raw.replace(b"\0", b" ").decode(errors="replace"))
        for auth in temp.glob("homelab-release-buildah-*/auth.json"):
            try:
                modes = (auth.parent.stat().st_mode, auth.stat().st_mode)
            except OSError:
                continue
            seen["auth"].add(tuple(stat.S_IMODE(mode) for mode in modes))
        time.sleep(0.02)


def _files_holding(text: str, *folders: Path) -> tuple[str, ...]:
    needle = text.encode()
    found = []
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else ():
            try:
                if path.is_file() and path.stat().st_size < 2**20 and needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return tuple(found)


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
) -> Watched:
    """The worker shape built and pushed once, from the environment alone (credentials,
    CI_REGISTRY_IMAGE for the default cache repository), while a watcher reads every process's
    arguments and the temporary folders."""
    folder = tmp_path_factory.mktemp("worker")
    repository = _repo(registry)
    project = repository.rsplit("/", 1)[0]
    password = registry.credentials.password.secret
    env = {
        **buildah_env,
        "CI_REGISTRY_USER": registry.credentials.username,
        "CI_REGISTRY_PASSWORD": password,
        "CI_REGISTRY_IMAGE": project,
        "CI_PROJECT_URL": "https://gitlab.example.com/homelab/go",
    }
    # A temporary folder of this build's own: another build on the machine cannot look like ours.
    temp = folder / "tmp"
    temp.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(temp)
    seen: dict[str, set[object]] = {"argv": set(), "auth": set()}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(stop, password, seen, temp), daemon=True)
    records: list[str] = []
    handler = _Collect(records)
    package = logging.getLogger("homelab_release")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    watcher.start()
    try:
        built = build_image(
            context=worker_context(folder / "ctx"),
            repository=repository,
            tags=["c0ffee1", "latest"],
            engine="buildah",
            env=env,
        )
    finally:
        tempfile.tempdir = saved
        stop.set()
        watcher.join()
        package.removeHandler(handler)
        package.setLevel(level)
    after = set(temp.glob("homelab-release-buildah-*"))
    homes = (Path(buildah_env["HOME"]), temp, Path("/var/tmp/homelab-release-0"))
    return Watched(
        built=built,
        repository=repository,
        cache_repo=f"{project}/cache",
        password=password,
        argv_hits=tuple(str(hit) for hit in seen["argv"]),
        auth_files=tuple(sorted(mode for mode in seen["auth"])),  # type: ignore[misc]
        leftovers=tuple(str(p) for p in after) + _files_holding(password, *homes),
        log=tuple(records),
    )


class _Collect(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def test_worker_shape_builds_and_pushes_at_the_registry_digest(
    worker: Watched, registry: LocalRegistry
) -> None:
    built = worker.built
    assert built.engine == "buildah"
    assert built.tags == ("c0ffee1", "latest")
    assert built.digest is not None
    for tag in built.tags:
        assert _digest(f"{worker.repository}:{tag}", registry) == built.digest
    assert built.references == tuple(f"{worker.repository}:{t}@{built.digest}" for t in built.tags)
    assert built.durations.build > 0
    assert built.durations.push > 0


def test_platform_arguments_are_set_as_buildkit_sets_them(worker: Watched) -> None:
    arch = platform_args(BuildahBuilder(settings={}).info().platform)["TARGETARCH"]
    lines = [line for line in worker.log if line.endswith(f"for linux/{arch}")]
    assert lines, "the RUN that echoes the platform arguments is not in the log"
    assert f"built on linux/{arch} for linux/{arch}" in lines[0]


def test_platform_arguments_reach_from_lines_without_a_global_arg(
    tmp_path: Path, buildah_env: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # BuildKit predefines TARGETARCH where FROM lines are read; buildah before 1.37 does not
    caplog.set_level(logging.DEBUG)
    arch = platform_args(BuildahBuilder(settings=buildah_env).info().platform)["TARGETARCH"]
    base = worker_context(tmp_path / "base")
    (base / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    name = f"localhost/hr-base-{secrets.token_hex(3)}"
    build_image(context=base, repository=f"{name}-{arch}", tags=["base"], engine="buildah",
                push=False, env=buildah_env)  # fmt: skip
    context = worker_context(tmp_path / "ctx")
    (context / "Dockerfile").write_text(
        f'FROM {name}-${{TARGETARCH}}:base\nRUN ["/bin/busybox", "echo", "on-the-base"]\n'
    )
    built = build_image(
        context=context, repository="localhost/hr-derived", tags=["t"], engine="buildah",
        push=False, env=buildah_env,
    )  # fmt: skip
    assert built.image_id.startswith("sha256:")
    log = _messages(caplog)
    assert any(re.search(rf"STEP 1/\d+: FROM {name}-{arch}:base$", line) for line in log), log
    assert "hr-derived: on-the-base" in log
    assert (context / "Dockerfile").read_text().startswith("FROM "), "the file is left as it is"


def test_default_cache_repository_holds_every_layer(
    worker: Watched, registry: LocalRegistry
) -> None:
    # 6 build-stage steps and the 2 COPY --from of the final stage (the LABEL step too)
    assert len(_tags(worker.cache_repo, registry)) >= 8


def test_password_is_in_no_argv_and_no_leftover_file(worker: Watched) -> None:
    assert worker.argv_hits == ()
    assert worker.auth_files, "the watcher never saw the auth file: it proves nothing"
    assert set(worker.auth_files) == {(0o700, 0o600)}
    assert worker.leftovers == ()
    assert not any(worker.password in line for line in worker.log)
    assert worker.password not in repr(worker.built)


def test_rebuild_on_an_emptied_store_takes_every_stage_from_the_cache_repository(
    worker: Watched,
    empty_buildah_store: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    context = Path(
        next(line.split(" from ", 1)[1] for line in worker.log if line.startswith("building "))
    )
    rebuilt = build_image(
        context=context,
        repository=worker.repository,
        tags=["c0ffee2"],
        engine="buildah",
        credentials=registry.credentials,
        cache_repo=worker.cache_repo,
        env=empty_buildah_store,
    )
    log = _messages(caplog)
    pulled = [line for line in log if "Cache pulled from remote" in line]
    # the three steps of the build stage before its ARGs, and the final stage's COPY of /out
    # (buildah 1.28 runs the steps after an ARG again: containers/buildah#4315)
    assert len(pulled) >= 4, "\n".join(log)
    assert not any(re.search(r"^worker: compiling-\w+$", line) for line in log), (
        "the slow step ran again"
    )
    assert rebuilt.cached_steps >= 5
    assert _digest(f"{worker.repository}:c0ffee2", registry) == rebuilt.digest


#: Two stages with labels of their own: a base, and a final stage on it.
LABELLED = """\
FROM scratch AS base
COPY busybox /bin/busybox
LABEL stage=base keep=base
FROM base
LABEL stage=final
RUN ["/bin/busybox", "true"]
"""
#: Labels a Dockerfile line could mangle: quotes, $ and ` (expanded in LABEL), the escape
#: character, spaces, =, unicode, empty; ``stage`` overrides the file's own.
ODD_LABELS = {
    "org.opencontainers.image.created": "2024-05-01T10:00:00Z",
    "team": "home lab",
    "quote": 'it\'s "quoted"',
    "shell": "$HOME ${PATH} `id` \\ back\\",
    "eq": "a=b",
    "unicode": "café ✓",
    "empty": "",
    "stage": "overridden",
}


def _labels_from_flags(
    context: Path, env: Mapping[str, str], labels: Mapping[str, str], target: str | None
) -> dict[str, str]:
    """The oracle: the labels buildah itself gives the image when they are ``--label`` flags
    (``--no-cache``: buildah 1.28 drops them from a ``--target`` stage that comes from cache)."""
    name = f"localhost/hr-oracle-{secrets.token_hex(3)}"
    argv = ["buildah", "build", "--no-cache", "--isolation", "chroot", "--format", "docker",
            "--tag", name, *(["--target", target] if target else []),
            *(f"--label={key}={value}" for key, value in labels.items()), str(context)]  # fmt: skip
    subprocess.run(argv, env=dict(env), capture_output=True, check=True, timeout=300)
    shown = subprocess.run(
        ("buildah", "inspect", "--type", "image", name),
        env=dict(env), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found: dict[str, str] = json.loads(shown.stdout)["OCIv1"]["config"]["Labels"]
    return found


@pytest.mark.parametrize(
    ("target", "extra", "own_steps"),
    [
        (None, {}, 2),  # the file's two LABEL steps, then the labels
        ("base", {}, 1),  # the labels end the target stage, not the unbuilt last one
        (None, {"multi": "two\nlines"}, 2),  # no single line holds it: --label flags
    ],
)
def test_labels_reach_the_image_as_buildahs_own_label_flags_put_them(  # noqa: PLR0917
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
    target: str | None,
    extra: dict[str, str],
    own_steps: int,
) -> None:
    context = worker_context(tmp_path / "ctx")
    (context / "Dockerfile").write_text(LABELLED, encoding="utf-8")
    repository = _repo(registry, "labelled")
    labels = {**ODD_LABELS, **extra}
    source = "https://gitlab.example.com/homelab/go"
    for revision in ("c0ffee1", "c0ffee2"):  # the second build takes every other step from cache
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        build_image(
            context=context, repository=repository, tags=[revision], labels=labels,
            target=target, engine="buildah", credentials=registry.credentials, cache_repo="",
            revision=revision, source=source, env=buildah_env,
        )  # fmt: skip
    found = image_labels(ImageRef.parse(f"{repository}:c0ffee2"), registry.credentials)
    assert found is not None
    oci = {
        "org.opencontainers.image.revision": "c0ffee2",
        "org.opencontainers.image.source": source,
    }
    assert dict(found) == _labels_from_flags(context, buildah_env, {**oci, **labels}, target)
    assert {key: found[key] for key in labels} == labels
    assert found["keep"] == "base"
    log = _messages(caplog)
    assert any("Using cache" in line for line in log)
    steps = [line for line in log if re.search(r"STEP \d+/\d+: LABEL ", line)]
    # buildah before 1.29 makes a step of each --label flag; the engine writes one LABEL instead
    version = BuildahBuilder(settings={}).info().version
    per_flag = bool(extra) and version < Version("1.29")
    assert len(steps) == own_steps + (len(oci) + len(labels) if per_flag else 1), steps


def test_a_dockerfile_that_is_not_utf8_is_built_as_it_is(
    tmp_path: Path, buildah_env: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # a copy with the LABEL step would replace the byte that is not UTF-8: the labels stay flags
    caplog.set_level(logging.DEBUG)
    context = worker_context(tmp_path / "ctx", slow=False)
    dockerfile = context / "Dockerfile"
    dockerfile.write_bytes(
        b'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "echo", "caf\xe9"]\n'
    )
    built = build_image(context=context, repository="localhost/hr-latin1", tags=["t"],
                        engine="buildah", push=False, env=buildah_env)  # fmt: skip
    (command,) = [line for line in _messages(caplog) if " build --layers " in line]
    assert f" --file {dockerfile} " in command
    assert "--label org.opencontainers.image.created=" in command
    assert built.image_id.startswith("sha256:")


@pytest.mark.parametrize("suffix", [".dockerignore", ".containerignore"])
def test_the_ignore_file_beside_the_dockerfile_still_applies(
    tmp_path: Path, buildah_env: Mapping[str, str], caplog: pytest.LogCaptureFixture, suffix: str
) -> None:
    # before buildah 1.29 the engine builds from a copy of the Dockerfile (the labels are in it)
    caplog.set_level(logging.DEBUG)
    context = worker_context(tmp_path / "ctx", slow=False)
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY . /ctx/\nRUN ["/ctx/busybox", "ls", "/ctx"]\n', encoding="utf-8"
    )
    (context / f"Dockerfile{suffix}").write_text("secret.txt\n", encoding="utf-8")
    (context / "secret.txt").write_text("not for the image\n", encoding="utf-8")
    (context / "kept.txt").write_text("for the image\n", encoding="utf-8")
    build_image(context=context, repository="localhost/hr-ignore", tags=["t"], engine="buildah",
                push=False, env=buildah_env)  # fmt: skip
    listed = {
        line.split(": ", 1)[1] for line in _messages(caplog) if line.startswith("hr-ignore: ")
    }
    assert "kept.txt" in listed
    assert "secret.txt" not in listed


def test_unreachable_cache_repository_warns_once_and_builds(
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    stopped_registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = _repo(registry)
    built = build_image(
        context=worker_context(tmp_path / "ctx", slow=False),
        repository=repository,
        tags=["abc"],
        engine="buildah",
        credentials=registry.credentials,
        cache_repo=f"{stopped_registry.address}/homelab/cache",
        env=buildah_env,
    )
    assert _digest(f"{repository}:abc", registry) == built.digest
    warnings = _messages(caplog, logging.WARNING)
    (warning,) = [w for w in warnings if "cache repository" in w]
    assert warning.startswith(
        f"building without the cache repository {stopped_registry.address}/homelab/cache: "
        f"registry {stopped_registry.address} is unreachable"
    )


def test_cache_repository_refusing_the_credentials_warns_once_and_builds(
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = LocalRegistry(tmp_path / "other-registry")
    with other:
        repository = _repo(registry)
        cache = f"{other.address}/homelab/cache"
        built = build_image(
            context=worker_context(tmp_path / "ctx", slow=False),
            repository=repository,
            tags=["abc"],
            engine="buildah",
            credentials=registry.credentials,  # not sent to another registry: it refuses
            cache_repo=cache,
            env=buildah_env,
        )
        assert _tags(cache, other) == []
    assert _digest(f"{repository}:abc", registry) == built.digest
    (warning,) = [w for w in _messages(caplog, logging.WARNING) if "cache repository" in w]
    assert warning.startswith(f"building without the cache repository {cache}: ")
    assert "refused" in warning or "401" in warning


class ReadOnlyRegistry(LocalRegistry):
    """A registry anyone may read and no one may write (distribution's read-only maintenance
    mode): a cache repository that answers lookups but refuses every layer buildah writes."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        text = config.read_text(encoding="utf-8").split("auth:")[0]
        config.write_text(
            text.replace("  delete:\n", "  maintenance:\n    readonly:\n      enabled: true\n"
                         "  delete:\n"),
            encoding="utf-8",
        )  # fmt: skip
        return config

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                return True
        except OSError:
            return False


def test_cache_repository_refusing_writes_during_the_build_warns_once_and_builds(
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with ReadOnlyRegistry(tmp_path / "read-only") as read_only:
        repository = _repo(registry)
        cache = f"{read_only.address}/homelab/cache"
        built = build_image(
            context=worker_context(tmp_path / "ctx", slow=False),
            repository=repository,
            tags=["abc"],
            engine="buildah",
            credentials=registry.credentials,
            cache_repo=cache,
            env=buildah_env,
        )
    assert _digest(f"{repository}:abc", registry) == built.digest
    (warning,) = [w for w in _messages(caplog, logging.WARNING) if "cache repository" in w]
    assert warning.startswith(f"building without the cache repository {cache}: failed pushing ")


def test_old_buildah_builds_without_the_cache_repository(
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _fake_buildah(tmp_path / "bin", "1.26.0")
    repository = _repo(registry)
    built = build_image(
        context=worker_context(tmp_path / "ctx", slow=False),
        repository=repository,
        tags=["abc"],
        engine="buildah",
        credentials=registry.credentials,
        cache_repo=f"{registry.address}/homelab/cache-old",
        env={**buildah_env, "PATH": f"{fake}:{buildah_env['PATH']}"},
    )
    assert built.digest == _digest(f"{repository}:abc", registry)
    assert _tags(f"{registry.address}/homelab/cache-old", registry) == []
    assert (
        f"building without the cache repository {registry.address}/homelab/cache-old: buildah "
        "1.26.0 cannot use one (it needs buildah 1.27.0 or later)"
    ) in _messages(caplog, logging.WARNING)


def test_failing_run_raises_with_the_log_tail_and_pushes_nothing(
    tmp_path: Path, buildah_env: Mapping[str, str], registry: LocalRegistry
) -> None:
    context = worker_context(tmp_path / "ctx", slow=False)
    with (context / "Dockerfile").open("a", encoding="utf-8") as file:
        file.write("RUN echo step-output-before-failure && exit 3\n")
    repository = _repo(registry)
    with pytest.raises(BuildError) as caught:
        build_image(
            context=context, repository=repository, tags=["abc", "latest"], engine="buildah",
            credentials=registry.credentials, cache_repo="", env=buildah_env,
        )  # fmt: skip
    message = str(caught.value)
    assert f"building {repository} from {context} failed (buildah exited with " in message
    assert "step-output-before-failure" in message
    assert "last lines of the build log:" in message
    assert len(message.split("last lines of the build log:")[1].strip().splitlines()) <= 20
    assert _digest(f"{repository}:abc", registry) is None


def test_stopped_registry_gives_push_error_after_bounded_retries(
    tmp_path: Path, buildah_env: Mapping[str, str], stopped_registry: LocalRegistry
) -> None:
    repository = f"{stopped_registry.address}/homelab/worker"
    started = time.monotonic()
    with pytest.raises(PushError) as caught:
        build_image(
            context=worker_context(tmp_path / "ctx", slow=False), repository=repository, tags=["abc"],
            engine="buildah", credentials=stopped_registry.credentials, env=buildah_env,
        )  # fmt: skip
    assert f"pushing {repository}:abc failed: registry {stopped_registry.address} is " \
        "unreachable or failing (after 2 retries)" in str(caught.value)  # fmt: skip
    assert time.monotonic() - started < 60


def test_wrong_password_gives_push_error_without_the_password(
    tmp_path: Path,
    buildah_env: Mapping[str, str],
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    credentials = RegistryCredentials(registry.credentials.username, HiddenText(wrong))
    repository = _repo(registry)
    with pytest.raises(PushError) as caught:
        build_image(
            context=worker_context(tmp_path / "ctx", slow=False), repository=repository, tags=["abc"],
            engine="buildah", credentials=credentials, cache_repo="", env=buildah_env,
        )  # fmt: skip
    assert f"registry {registry.address} refused user {registry.credentials.username!r}" in str(
        caught.value
    )
    assert "CI_REGISTRY_PASSWORD" in str(caught.value)
    assert not any(wrong in text for text in [*_messages(caplog), str(caught.value)])


def test_a_request_keeps_its_cache_repository_and_labels(tmp_path: Path) -> None:
    request = build_request(
        context=worker_context(tmp_path / "ctx"),
        repository="127.0.0.1:5000/homelab/worker",
        tags=["latest", "abc"],
        cache_repo="127.0.0.1:5000/homelab/cache",
    )
    assert request.cache_repo == ImageRef.parse("127.0.0.1:5000/homelab/cache")
    assert build_request(context=tmp_path / "ctx", repository="x/y", tags="a").cache_repo is None
    with pytest.raises(BuildError, match=r"cache_repo '127\.0\.0\.1:5000/c:1' must be a name"):
        build_request(context=tmp_path / "ctx", repository="x/y", tags="a",
                      cache_repo="127.0.0.1:5000/c:1")  # fmt: skip


# -- rootless ------------------------------------------------------------------------------------


def _rootless_env(run_as: RunAs, user: User, registry: LocalRegistry) -> dict[str, str]:
    work = run_as.workdir(user, "storage")
    conf = storage_conf(work)
    run_as.give(user, work)
    return {
        "HOME": str(user.home),
        "CONTAINERS_STORAGE_CONF": str(conf),
        "CI_REGISTRY_USER": registry.credentials.username,
        "CI_REGISTRY_PASSWORD": registry.credentials.password.secret,
    }


def test_rootless_user_builds_and_pushes_the_worker_shape(
    run_as: RunAs, rootless_user: User, registry: LocalRegistry
) -> None:
    context = worker_context(run_as.workdir(rootless_user, "ctx"))
    run_as.give(rootless_user, context)
    repository = _repo(registry)
    argv = ["build", "--engine", "buildah", "--context", str(context), "--repository", repository,
            "--tag", "abc", "--cache-repo", f"{registry.address}/homelab-rootless/cache"]  # fmt: skip
    done = run_as.run(rootless_user, argv, _rootless_env(run_as, rootless_user, registry))
    assert done.returncode == 0, done.stdout + done.stderr
    digest = _digest(f"{repository}:abc", registry)
    assert done.stdout.strip() == f"{repository}:abc@{digest}"
    # the RUN --mount=type=cache folder is the user's own, not buildah 1.28's shared one
    folder = Path(f"/var/tmp/homelab-release-{rootless_user.uid}")
    if BuildahBuilder(settings={}).info().version < Version("1.29"):
        caches = list((folder / "buildah-cache").iterdir())
        assert caches, f"no cache mount folder in {folder}"
        assert {path.stat().st_uid for path in [folder, *caches]} == {rootless_user.uid}
    assert registry.credentials.password.secret not in done.stdout + done.stderr


def test_user_without_subuid_ranges_gets_buildahs_message_and_the_fix(
    run_as: RunAs, no_subid_user: User, registry: LocalRegistry
) -> None:
    context = worker_context(run_as.workdir(no_subid_user, "ctx"), slow=False)
    run_as.give(no_subid_user, context)
    argv = ["build", "--engine", "buildah", "--context", str(context),
            "--repository", _repo(registry), "--tag", "abc", "--cache-repo", ""]  # fmt: skip
    done = run_as.run(no_subid_user, argv, _rootless_env(run_as, no_subid_user, registry))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "buildah says: " in done.stderr
    assert re.search(r"no subuid ranges found|no UID ranges set aside", done.stderr)
    assert f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {no_subid_user.name}" \
        in done.stderr  # fmt: skip


def test_rootless_environment_carries_only_what_buildah_reads() -> None:
    ctx = CiContext.from_env(
        {"PATH": "/bin", "HOME": "/h", "BUILDAH_ISOLATION": "rootless", "STORAGE_DRIVER": "vfs",
         "CONTAINERS_STORAGE_CONF": "/s.conf", "CI_REGISTRY_PASSWORD": "secret", "GITLAB_TOKEN": "t",
         "DOCKER_HOST": "tcp://docker:2375", "HTTPS_PROXY": "http://proxy:3128"}
    )  # fmt: skip
    assert dict(ctx.buildah) == {
        "PATH": "/bin", "HOME": "/h", "BUILDAH_ISOLATION": "rootless", "STORAGE_DRIVER": "vfs",
        "CONTAINERS_STORAGE_CONF": "/s.conf", "HTTPS_PROXY": "http://proxy:3128",
    }  # fmt: skip
    assert "secret" not in repr(ctx)


def test_isolation_and_format_follow_the_variables(tmp_path: Path) -> None:
    builder = BuildahBuilder(settings={"BUILDAH_ISOLATION": "oci", "BUILDAH_FORMAT": "oci"})
    default = BuildahBuilder(settings={})
    request = build_request(context=worker_context(tmp_path / "ctx"), repository="x/y", tags="a")
    own = builder._build_argv(
        request, info=default.info(), dockerfile=WORKER, cache=None, auth=None, iidfile=tmp_path
    )
    standard = default._build_argv(
        request, info=default.info(), dockerfile=WORKER, cache=None, auth=None, iidfile=tmp_path
    )
    assert "--isolation" not in own
    assert "--format" not in own
    assert standard[standard.index("--isolation") + 1] == "chroot"
    assert standard[standard.index("--format") + 1] == "docker"


@pytest.mark.parametrize(
    ("uid", "missing_parts"),
    [
        (0, "buildah (buildah), docker-registry (docker-registry)"),
        (1000, "buildah (buildah), newuidmap (uidmap), newgidmap (uidmap), docker-registry"),
    ],
)
def test_demo_on_buildah_needs_no_root_and_no_dockerd(
    tmp_path: Path, uid: int, missing_parts: str
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("htpasswd", "git"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    (tmp_path / "busybox").write_text("")
    with pytest.raises(SandboxUnavailableError) as caught:
        check_requirements(
            engine="buildah", uid=uid, search_path=str(folder), busybox=tmp_path / "busybox"
        )
    first, missing, install = str(caught.value).splitlines()
    assert first == "the sandbox (buildah and a local registry) cannot run on this machine:"
    assert missing.strip().startswith(f"missing: {missing_parts}")
    assert "apt-get install buildah" in install
    assert "run as root" not in str(caught.value)
    assert "dockerd" not in str(caught.value)
