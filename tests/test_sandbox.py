"""The local engine and registry the tests and the demo run on: start, answer, stop cleanly."""

from __future__ import annotations

import base64
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from homelab_release.sandbox import (
    DockerEngine,
    LocalRegistry,
    SandboxError,
    SandboxUnavailableError,
    busybox_context,
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
    with pytest.raises(
        SandboxUnavailableError, match="no-such-tool-xyz not found: apt-get install pkg-x"
    ):
        require("no-such-tool-xyz", "pkg-x")


def test_busybox_context(tmp_path: Path) -> None:
    context = busybox_context(tmp_path / "ctx", "echo hi > /hi", extra="LABEL a=b\n")
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM scratch\nCOPY busybox /bin/busybox\n")
    assert "RUN echo hi > /hi\n" in dockerfile
    assert dockerfile.endswith("LABEL a=b\n")
    assert (context / "busybox").stat().st_mode & stat.S_IXUSR
