"""The local engine and registry the tests and the demo run on: start, answer, stop cleanly."""

from __future__ import annotations

import base64
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from homelab_release.demo.sandbox import (
    DockerEngine,
    LocalRegistry,
    SandboxError,
    SandboxUnavailableError,
    busybox_context,
    check_requirements,
    ping,
    require,
)


def _socket(engine: DockerEngine) -> Path:
    return Path(engine.host.removeprefix("unix://"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _status(url: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization or ""}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def test_session_engine_answers_on_a_short_socket(docker_engine: DockerEngine) -> None:
    assert docker_engine.host.startswith("unix:///")
    assert len(str(_socket(docker_engine))) < 100
    assert ping(_socket(docker_engine))


def test_engine_stops_with_its_containerd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # reuse finds nothing
    engine = DockerEngine(tmp_path / "engine", reuse=True)
    with engine:
        assert not engine.reused
        pid = engine.pid
        assert pid is not None
        # Go starts processes from any of its threads: look at the children of every thread.
        tasks = Path(f"/proc/{pid}/task").glob("*/children")
        children = [child for task in tasks for child in task.read_text().split()]
        assert children, "dockerd should have started its containerd"
        socket_path = _socket(engine)
        assert ping(socket_path)
    assert engine.pid is None
    assert not _alive(pid)
    assert not any(_alive(int(child)) for child in children)
    assert not socket_path.exists()
    assert (tmp_path / "engine" / "dockerd.log").is_file()


def test_reuse_adopts_docker_host_and_leaves_it_running(
    tmp_path: Path, docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    with DockerEngine(tmp_path / "unused", reuse=True) as adopted:
        assert adopted.reused
        assert adopted.host == docker_engine.host
        assert adopted.pid is None
    assert ping(_socket(docker_engine))
    assert not (tmp_path / "unused").exists()


def test_engine_that_cannot_start_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "data").write_text("a file where the data root should be")
    with pytest.raises(SandboxError, match=r"dockerd exited with code \d+ \(log .*dockerd\.log\)"):
        DockerEngine(folder).start()


def test_registry_requires_its_credentials(registry: LocalRegistry) -> None:
    url = f"http://{registry.address}/v2/"
    credentials = registry.credentials
    good = base64.b64encode(f"{credentials.username}:{credentials.password.secret}".encode())
    bad = base64.b64encode(f"{credentials.username}:wrong".encode())
    assert registry.address.startswith("127.0.0.1:")
    assert _status(url) == 401
    assert _status(url, f"Basic {bad.decode()}") == 401
    assert _status(url, f"Basic {good.decode()}") == 200
    htpasswd = (registry.folder / "htpasswd").read_text()
    assert htpasswd.startswith(f"{credentials.username}:$2y$")  # bcrypt
    assert credentials.password.secret not in htpasswd


def test_stopped_registry_refuses_connections(stopped_registry: LocalRegistry) -> None:
    assert stopped_registry.pid is None
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        _status(f"http://{stopped_registry.address}/v2/")


def test_require_names_the_package() -> None:
    with pytest.raises(SandboxUnavailableError) as caught:
        require("no-such-tool-xyz", "pkg-x")
    assert "missing: no-such-tool-xyz (pkg-x)" in str(caught.value)
    assert "apt-get install pkg-x" in str(caught.value)


def test_registry_retries_only_for_its_own_bind_failure(
    tmp_path: Path, registry: LocalRegistry
) -> None:
    # (the session registry proves docker-registry runs here)
    folder = tmp_path / "registry"
    folder.mkdir()
    earlier = "listen tcp 127.0.0.1:5000: bind: address already in use (an earlier run)\n"
    (folder / "registry.log").write_text(earlier)
    with pytest.raises(SandboxError) as caught:
        LocalRegistry(folder, timeout=0).start()  # fails for another reason: no time to start
    assert "did not become ready within 0s" in str(caught.value)
    assert "address already in use" not in str(caught.value)
    assert (folder / "registry.log").read_text().startswith(earlier)  # kept, just not read


# -- check_requirements -------------------------------------------------------------------------

EVERY_PROGRAM = ("dockerd", "containerd", "docker-registry", "htpasswd", "git")
EVERY_PACKAGE = "apt-get install docker.io docker-registry apache2-utils busybox-static git"


def _bin(folder: Path, programs: tuple[str, ...]) -> str:
    """A search path holding only executables named ``programs`` (they need only be found)."""
    folder.mkdir()
    for name in programs:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def _problems(tmp_path: Path, programs: tuple[str, ...], busybox: bool, uid: int) -> list[str]:
    """The lines of :func:`check_requirements`' message after its first, on a machine with just
    these parts (``[]`` when nothing is missing); the busybox path shows as BUSYBOX."""
    busybox_path = tmp_path / "busybox"
    if busybox:
        busybox_path.write_text("")
    try:
        check_requirements(
            uid=uid, search_path=_bin(tmp_path / "bin", programs), busybox=busybox_path
        )
    except SandboxUnavailableError as err:
        first, *rest = str(err).replace(str(busybox_path), "BUSYBOX").splitlines()
        assert first == "the sandbox (local Docker Engine and registry) cannot run on this machine:"
        return [line.strip() for line in rest]
    return []


ROOT = "run as root (dockerd needs it)"


@pytest.mark.parametrize(
    ("programs", "busybox", "uid", "expected"),
    [
        (EVERY_PROGRAM, True, 0, []),
        (EVERY_PROGRAM, True, 1000, [ROOT]),
        (
            (),
            False,
            0,
            [
                "missing: dockerd (docker.io), containerd (docker.io), docker-registry "
                "(docker-registry), htpasswd (apache2-utils), BUSYBOX (busybox-static), git (git)",
                f"install them (as root): {EVERY_PACKAGE}",
            ],
        ),
        (
            ("dockerd", "docker-registry", "git"),
            True,
            1000,
            [
                "missing: containerd (docker.io), htpasswd (apache2-utils)",
                "install them (as root): apt-get install docker.io apache2-utils",
                ROOT,
            ],
        ),
        (
            ("dockerd", "containerd", "docker-registry", "htpasswd"),
            False,
            0,
            [
                "missing: BUSYBOX (busybox-static), git (git)",
                "install them (as root): apt-get install busybox-static git",
            ],
        ),
    ],
    ids=["all-there", "not-root", "nothing-there", "some-missing-not-root", "busybox-and-git"],
)
def test_check_requirements_names_everything_at_once(
    tmp_path: Path, programs: tuple[str, ...], busybox: bool, uid: int, expected: list[str]
) -> None:
    assert _problems(tmp_path, programs, busybox, uid) == expected


def test_check_requirements_looks_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _bin(tmp_path / "empty", ()))  # (dockerd may still be in /usr/sbin)
    with pytest.raises(SandboxUnavailableError) as caught:
        check_requirements(uid=0, busybox=tmp_path / "none")
    message = str(caught.value)
    for part in ("docker-registry (docker-registry)", "htpasswd (apache2-utils)", "git (git)"):
        assert part in message
    assert sum("apt-get install" in line for line in message.splitlines()) == 1


def test_check_requirements_reuses_a_running_engine(
    tmp_path: Path, docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    empty = _bin(tmp_path / "empty", ())
    with pytest.raises(SandboxUnavailableError) as caught:
        check_requirements(reuse_engine=True, uid=1000, search_path=empty)
    message = str(caught.value)
    assert "dockerd" not in message
    assert "containerd" not in message
    assert "run as root" not in message
    assert (
        message.splitlines()[-1]
        .strip()
        .endswith("apt-get install docker-registry apache2-utils git")
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailableError, match="dockerd") as caught:
        check_requirements(reuse_engine=True, uid=1000, search_path=empty)
    assert "set DOCKER_HOST=unix://" in str(caught.value)


def test_busybox_context(tmp_path: Path) -> None:
    context = busybox_context(tmp_path / "ctx", "echo hi > /hi", extra="LABEL a=b\n")
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM scratch\nCOPY busybox /bin/busybox\n")
    assert "RUN echo hi > /hi\n" in dockerfile
    assert dockerfile.endswith("LABEL a=b\n")
    assert (context / "busybox").stat().st_mode & stat.S_IXUSR
