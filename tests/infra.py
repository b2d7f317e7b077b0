"""Session fixtures for the real Docker Engine and registry (a pytest plugin, see conftest.py).

The parts are started once per session with :mod:`homelab_release.demo.sandbox` and stopped at its
end. In CI (``CI=true``) a part that cannot be started is a test error; elsewhere the tests that need
it are skipped with a one-line reason only when it cannot run here at all (no root, package missing).
:func:`missing` is that rule for any part or tool. Every test that uses one of these fixtures gets
the ``docker`` marker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import docker
import pytest

from homelab_release.demo.sandbox import (
    DockerEngine,
    LocalRegistry,
    SandboxUnavailableError,
    busybox_context,
)
from homelab_release.secrets import RegistryCredentials

DOCKER_FIXTURES = frozenset(
    {"docker_engine", "docker_client", "registry", "registry_credentials", "stopped_registry"}
)


def in_ci() -> bool:
    """Whether the tests run in CI, where a missing part is a failure rather than a skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(reason: str, kind: str = "part") -> NoReturn:
    """A part (or a ``kind="tool"``) a test needs is missing: in CI it fails, elsewhere it skips.

    ``reason`` is shown on one line in the summary (line breaks are folded).
    """
    reason = " ".join(line.strip() for line in reason.splitlines())
    if in_ci():
        pytest.fail(f"CI needs this {kind}: {reason}", pytrace=False)
    pytest.skip(reason)


def _unavailable(err: SandboxUnavailableError) -> NoReturn:
    missing(str(err))


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A private dockerd (no container network) for the whole session."""
    engine = DockerEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.start()
    except SandboxUnavailableError as err:
        _unavailable(err)
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> Iterator[docker.APIClient]:
    """A low-level SDK client of :func:`docker_engine`."""
    client = docker.APIClient(base_url=docker_engine.host, version="auto", timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry on 127.0.0.1 with htpasswd (bcrypt) auth for the whole session."""
    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    try:
        local.start()
    except SandboxUnavailableError as err:
        _unavailable(err)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def registry_credentials(registry: LocalRegistry) -> RegistryCredentials:
    """The user and password the session registry accepts."""
    return registry.credentials


@pytest.fixture
def stopped_registry(tmp_path: Path) -> LocalRegistry:
    """A registry that ran (so its address and credentials are real) and has been stopped."""
    local = LocalRegistry(tmp_path / "stopped-registry")
    try:
        local.start()
    except SandboxUnavailableError as err:
        _unavailable(err)
    local.stop()
    return local


@pytest.fixture
def busybox(tmp_path: Path) -> Path:
    """A build context ``FROM scratch`` + busybox whose RUN step writes a file."""
    return busybox_context(tmp_path / "context", "echo built > /built")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the engine or the registry with ``docker``."""
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
