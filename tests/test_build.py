"""build_image against a private Docker Engine and an htpasswd registry (both real), plus its checks."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import docker
import docker.errors
import pytest

from homelab_release.build import BuildDurations, BuiltImage, build_image, push_order
from homelab_release.cli import main
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry, busybox_context
from homelab_release.dockerfile import buildkit_features
from homelab_release.engines.base import credential_secrets, step_count
from homelab_release.engines.docker import DockerBuilder
from homelab_release.errors import BuildError, ImageRefError, PushError
from homelab_release.images import ImageRef
from homelab_release.registry import image_exists, manifest_digest
from homelab_release.secrets import HiddenText, RegistryCredentials

NO_ENGINE = "unix:///nonexistent/docker.sock"


def _repo(registry: LocalRegistry) -> str:
    return f"{registry.address}/homelab/svc-{secrets.token_hex(4)}"


def _exists(repository: str, tag: str, registry: LocalRegistry) -> bool:
    return image_exists(ImageRef.parse(f"{repository}:{tag}"), registry.credentials)


def _password_leaks(password: str, caplog: pytest.LogCaptureFixture, *objects: object) -> bool:
    texts = [r.getMessage() for r in caplog.records] + [str(o) for o in objects]
    texts += [repr(o) for o in objects]
    return any(password in text for text in texts)


# -- pure logic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["3f1c2ab", "latest"], ("3f1c2ab", "latest")),
        (["latest", "3f1c2ab"], ("3f1c2ab", "latest")),
        (["a", "b", "a"], ("a", "b")),
        ("only", ("only",)),
    ],
)
def test_push_order_puts_latest_last(tags: list[str] | str, expected: tuple[str, ...]) -> None:
    assert push_order(tags) == expected


@pytest.mark.parametrize(
    ("tags", "error"), [([], BuildError), (["-bad"], ImageRefError), (["latest"], BuildError)]
)
def test_push_order_rejects(tags: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        push_order(tags)


def test_the_helpers_every_engine_shares() -> None:
    assert [step_count(n) for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    password = HiddenText("s3cret")
    assert credential_secrets(RegistryCredentials("user", password)) == (password,)
    assert credential_secrets(None) == ()


def test_build_durations_as_dict_gives_every_phase_in_order_rounded() -> None:
    phases = BuildDurations(cache_pull=0.12345, build=2.3456, push=0.4, verify=0.0049)
    assert list(phases.as_dict(2).items()) == [
        ("cache_pull", 0.12), ("build", 2.35), ("push", 0.4), ("verify", 0.0)
    ]  # fmt: skip
    assert phases.as_dict(3) == {"cache_pull": 0.123, "build": 2.346, "push": 0.4, "verify": 0.005}


@pytest.mark.parametrize(
    ("dockerfile", "features"),
    [
        ("FROM scratch\nCOPY a /a\nRUN true\n", ()),
        ("# syntax=docker/dockerfile:1\nFROM scratch\n", ("a '# syntax=' parser directive",)),
        ("FROM scratch\n# syntax=late is a comment\n", ()),
        ("FROM x\nRUN --mount=type=cache,target=/c make\n", ("RUN --mount/--network/--security",)),
        ("FROM x\nRUN \\\n  --mount=type=secret,id=a cat\n", ("RUN --mount/--network/--security",)),
        ("FROM x\nrun --network=none true\n", ("RUN --mount/--network/--security",)),
        ("FROM x\nCOPY --link a /a\n", ("COPY/ADD --link/--parents/--exclude/--checksum",)),
        (
            "FROM x\nCOPY --chown=1 --link a /a\n",
            ("COPY/ADD --link/--parents/--exclude/--checksum",),
        ),
        ("FROM x\nCOPY --chown=1:1 a /a\n", ()),
        ("FROM x\nRUN <<EOF\necho hi\nEOF\n", ("a here-document (<<EOF)",)),
        ("FROM x\nRUN echo --mount is just text\n", ()),
        ("FROM x\n# RUN --mount=type=cache in a comment\nRUN true\n", ()),
        (
            "FROM --platform=${BUILDPLATFORM} scratch AS build\n",
            ("FROM --platform with a build argument such as $BUILDPLATFORM",),
        ),
        (
            "FROM --platform=$BUILDPLATFORM x\n",
            ("FROM --platform with a build argument such as $BUILDPLATFORM",),
        ),
        ("FROM --platform=linux/amd64 x\n", ()),
    ],
)
def test_buildkit_features(dockerfile: str, features: tuple[str, ...]) -> None:
    assert buildkit_features(dockerfile) == features


# -- checks before the engine is contacted ------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docker engine, at a DOCKER_HOST where none answers: an error proves the check ran
    before contacting one."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    monkeypatch.setenv("HOMELAB_RELEASE_ENGINE", "docker")


@pytest.mark.usefixtures("no_engine")
@pytest.mark.parametrize(
    ("repository", "tags", "error", "says"),
    [
        ("127.0.0.1:5000/Homelab/vote", ["a"], ImageRefError, "'Homelab'"),
        ("127.0.0.1:5000/homelab/vote:1", ["a"], BuildError, "without tag"),
        ("127.0.0.1:5000/homelab/vote", ["bad tag"], ImageRefError, "' '"),
        ("127.0.0.1:5000/homelab/vote", [], BuildError, "no tags"),
        ("", ["a"], ImageRefError, "empty"),
    ],
)
def test_bad_names_fail_before_the_engine(
    tmp_path: Path, repository: str, tags: list[str], error: type[Exception], says: str
) -> None:
    context = busybox_context(tmp_path / "ctx")
    with pytest.raises(error, match=says):
        build_image(context=context, repository=repository, tags=tags, push=False)


@pytest.mark.usefixtures("no_engine")
def test_missing_context_and_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is not a folder"):
        build_image(context=tmp_path / "nope", repository="x/y", tags=["a"])
    (tmp_path / "ctx").mkdir()
    with pytest.raises(BuildError, match=r"Dockerfile .*ctx/Dockerfile does not exist"):
        build_image(context=tmp_path / "ctx", repository="x/y", tags=["a"])
    with pytest.raises(BuildError, match=r"Other\.Dockerfile does not exist"):
        build_image(
            context=tmp_path / "ctx", repository="x/y", tags=["a"], dockerfile="Other.Dockerfile"
        )


@pytest.mark.usefixtures("no_engine")
def test_buildkit_dockerfile_fails_before_the_engine(tmp_path: Path) -> None:
    context = busybox_context(tmp_path / "ctx", extra="RUN --mount=type=cache,target=/c true\n")
    with pytest.raises(BuildError, match=r"uses RUN --mount.*which the docker engine") as caught:
        build_image(context=context, repository="x/y", tags=["a"], push=False)
    assert "cannot build; they need BuildKit, which the docker SDK cannot drive: build it with " \
        "the buildah engine (--engine buildah" in str(caught.value)  # fmt: skip


@pytest.mark.usefixtures("no_engine")
def test_unreachable_engine_names_docker_host(tmp_path: Path) -> None:
    context = busybox_context(tmp_path / "ctx")
    with pytest.raises(BuildError) as caught:
        build_image(context=context, repository="x/y", tags=["a"], push=False)
    message = str(caught.value)
    assert f"DOCKER_HOST={NO_ENGINE}" in message
    assert "docker:dind" in message


# -- against the real engine and registry -------------------------------------------------------


def test_pushes_every_tag_at_the_registry_digest(
    busybox: Path,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = registry.credentials.password.secret
    monkeypatch.setenv("CI_REGISTRY_USER", registry.credentials.username)
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", password)
    monkeypatch.setenv("CI_PROJECT_URL", "https://gitlab.example.com/homelab/go")
    repository = _repo(registry)

    built = build_image(
        context=busybox,
        repository=repository,
        tags=["latest", "3f1c2ab"],
        engine=DockerBuilder(docker_client),
    )

    assert built.tags == ("3f1c2ab", "latest")
    for tag in built.tags:
        registry_digest = manifest_digest(
            ImageRef.parse(f"{repository}:{tag}"), registry.credentials
        )
        assert registry_digest == built.digest
    assert built.digest is not None
    assert built.digest.startswith("sha256:")
    assert built.references == (
        f"{repository}:3f1c2ab@{built.digest}",
        f"{repository}:latest@{built.digest}",
    )
    labels = _labels_of(docker_client, built.image_id)
    assert labels["org.opencontainers.image.source"] == "https://gitlab.example.com/homelab/go"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert not _password_leaks(password, caplog, built)
    pushes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pushing ")]
    assert pushes == [f"pushing {repository}:3f1c2ab"], "latest is moved by digest, not pushed"
    assert built.latest is not None
    assert built.latest.moved


def test_latest_moves_only_after_the_registry_confirmed_the_commit_tag(
    busybox: Path,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repository = _repo(registry)
    build_image(
        context=busybox,
        repository=repository,
        tags=["latest", "3f1c2ab"],
        engine=DockerBuilder(docker_client),
        credentials=registry.credentials,
    )
    # What happened, in order: pushes (our log) and the registry's answers (real HTTP requests).
    events = []
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith(f"pushing {repository}:"):
            events.append(("push", message.rsplit(":", 1)[1]))
        asked = re.search(r"(HEAD|PUT) \S+/manifests/(\S+) -> HTTP 20[01]", message)
        if asked:
            events.append((asked[1], asked[2]))
    assert events == [
        ("push", "3f1c2ab"),
        ("HEAD", "3f1c2ab"),  # the registry confirms the commit tag
        ("PUT", "latest"),  # then latest gets the same manifest, by digest
        ("HEAD", "latest"),  # and is confirmed
    ]


def test_env_gives_the_engine_credentials_and_labels(
    busybox: Path,
    docker_engine: DockerEngine,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)  # the process environment must not be read
    monkeypatch.setenv("CI_COMMIT_SHA", "0" * 40)
    monkeypatch.setenv("CI_PROJECT_URL", "https://wrong.example.com/from/os-environ")
    env = {
        "DOCKER_HOST": docker_engine.host,
        "CI_REGISTRY_USER": registry.credentials.username,
        "CI_REGISTRY_PASSWORD": registry.credentials.password.secret,
        "CI_COMMIT_SHA": "c0ffee" * 6 + "abcd",
        "CI_PROJECT_URL": "https://gitlab.example.com/homelab/go",
    }
    repository = _repo(registry)
    built = build_image(context=busybox, repository=repository, tags=["abc"], env=env)
    assert _exists(repository, "abc", registry)
    labels = _labels_of(docker_client, built.image_id)
    assert labels["org.opencontainers.image.revision"] == env["CI_COMMIT_SHA"]
    assert labels["org.opencontainers.image.source"] == env["CI_PROJECT_URL"]


def test_labels_build_args_and_target(
    tmp_path: Path, docker_client: docker.APIClient, registry: LocalRegistry
) -> None:
    context = busybox_context(tmp_path / "ctx")
    (context / "Dockerfile").write_text(
        "FROM scratch AS base\nCOPY busybox /bin/busybox\nARG GREETING\nLABEL greeting=$GREETING\n"
        "FROM base AS final\nLABEL stage=final\n"
    )

    def labels(target: str | None) -> dict[str, str]:
        built = build_image(
            context=context,
            repository=_repo(registry),
            tags=["t1"],
            build_args={"GREETING": "hello"},
            labels={"team": "homelab", "org.opencontainers.image.source": "explicit"},
            target=target,
            push=False,
            engine=DockerBuilder(docker_client),
            revision="c0ffee",
            source="https://ignored.example.com",
        )
        assert built.digest is None
        assert built.references == (f"{built.repository}:t1",)
        return _labels_of(docker_client, built.image_id)

    final, base = labels(None), labels("base")
    assert final["stage"] == "final"
    assert "stage" not in base
    for found in (final, base):
        assert found["greeting"] == "hello"
        assert found["team"] == "homelab"
        assert found["org.opencontainers.image.revision"] == "c0ffee"
        assert found["org.opencontainers.image.source"] == "explicit"


def test_failing_step_raises_with_log_tail_and_pushes_nothing(
    tmp_path: Path, docker_client: docker.APIClient, registry: LocalRegistry
) -> None:
    context = busybox_context(tmp_path / "ctx", "echo step-output-before-failure && exit 3")
    repository = _repo(registry)
    with pytest.raises(BuildError) as caught:
        build_image(
            context=context,
            repository=repository,
            tags=["abc", "latest"],
            engine=DockerBuilder(docker_client),
            credentials=registry.credentials,
        )
    assert "step-output-before-failure" in str(caught.value)
    assert "returned a non-zero code: 3" in str(caught.value)
    assert not _exists(repository, "abc", registry)
    assert not _exists(repository, "latest", registry)


@pytest.mark.parametrize("cache_from", [None, []], ids=["with-cache-pull", "no-cache-pull"])
def test_stopped_registry_gives_push_error(
    busybox: Path,
    docker_client: docker.APIClient,
    stopped_registry: LocalRegistry,
    cache_from: list[str] | None,
) -> None:
    repository = f"{stopped_registry.address}/homelab/vote"
    with pytest.raises(PushError, match=f"registry {stopped_registry.address} is unreachable"):
        build_image(
            context=busybox,
            repository=repository,
            tags=["abc"],
            cache_from=cache_from,
            engine=DockerBuilder(docker_client),
            credentials=stopped_registry.credentials,
        )


@pytest.mark.parametrize("cache_from", [None, []], ids=["with-cache-pull", "no-cache-pull"])
def test_wrong_password_gives_push_error_without_the_password(
    busybox: Path,
    docker_client: docker.APIClient,
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
    cache_from: list[str] | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    credentials = RegistryCredentials(registry.credentials.username, HiddenText(wrong))
    repository = _repo(registry)
    with pytest.raises(PushError) as caught:
        build_image(
            context=busybox,
            repository=repository,
            tags=["abc", "latest"],
            cache_from=cache_from,
            engine=DockerBuilder(docker_client),
            credentials=credentials,
        )
    assert f"refused user {registry.credentials.username!r}" in str(caught.value)
    assert "CI_REGISTRY_PASSWORD" in str(caught.value)
    assert not _password_leaks(wrong, caplog, caught.value, credentials)
    assert not _exists(repository, "latest", registry)


def test_rebuild_on_an_emptied_engine_uses_the_registry_cache(
    tmp_path: Path, docker_client: docker.APIClient, registry: LocalRegistry
) -> None:
    context = busybox_context(tmp_path / "ctx", "echo slow-step > /out")
    repository = _repo(registry)

    def build(tag: str, cache_from: list[str] | None) -> BuiltImage:
        _remove_every_image(docker_client)
        return build_image(
            context=context,
            repository=repository,
            tags=[tag, "latest"],
            cache_from=cache_from,
            engine=DockerBuilder(docker_client),
            credentials=registry.credentials,
        )

    cold = build("one", None)
    without_cache = build("two", [])
    warm = build("three", None)

    assert cold.cached_steps == 0
    assert without_cache.cached_steps == 0
    assert warm.cached_steps >= 3  # COPY busybox, RUN --install, RUN script
    assert warm.digest != cold.digest  # the created label differs: a new image, same layers


def _remove_every_image(client: docker.APIClient) -> None:
    for container in client.containers(all=True):
        client.remove_container(container["Id"], force=True)
    for _ in range(10):  # a parent goes only once its children are gone: repeat until empty
        for image in client.images(all=True):
            _remove_image(client, image["Id"])
    assert client.images(all=True) == []


def _remove_image(client: docker.APIClient, image_id: str) -> None:
    try:
        client.remove_image(image_id, force=True)
    except docker.errors.APIError as err:
        if err.status_code not in (404, 409):  # gone already, or still has child images
            raise


def _labels_of(client: docker.APIClient, image_id: str) -> dict[str, str]:
    labels: dict[str, str] = client.inspect_image(image_id)["Config"]["Labels"]  # type: ignore[no-untyped-call]
    return labels


def test_cli_build_prints_the_pushed_references(
    busybox: Path,
    docker_engine: DockerEngine,
    registry: LocalRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    monkeypatch.setenv("CI_REGISTRY_USER", registry.credentials.username)
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.credentials.password.secret)
    repository = _repo(registry)
    argv = ["build", "--context", str(busybox), "--repository", repository]
    assert main([*argv, "--tag", "latest", "--tag", "abc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("@")[0] for line in lines] == [f"{repository}:abc", f"{repository}:latest"]
    digest = manifest_digest(ImageRef.parse(f"{repository}:abc"), registry.credentials)
    assert lines[0].endswith(f"@{digest}")


@pytest.mark.usefixtures("no_engine")
def test_cli_build_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["build", "--context", str(tmp_path / "nope"), "--repository", "x/y", "--tag", "a"]
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith("homelab-release: error: build context")
