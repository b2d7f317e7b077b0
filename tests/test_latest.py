"""``latest`` against the real registry: moved by digest, only forward, never failing a build."""

from __future__ import annotations

import logging
from pathlib import Path

import docker
import pytest

from homelab_release.build import BuiltImage, build_image
from homelab_release.demo.sandbox import LocalRegistry, busybox_context
from homelab_release.engines.docker import DockerBuilder
from homelab_release.entries import ImageEntry
from homelab_release.images import ImageRef
from homelab_release.latest import follow_overlay
from homelab_release.registry import manifest_digest
from tests.gitrepo import GitRepo


@pytest.fixture
def history(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    """A repository holding a build context, and three commits, each a child of the one before."""
    repo = GitRepo.init(tmp_path / "monorepo")
    busybox_context(repo.path / "svc", "echo built > /built")
    return repo, [repo.commit(f"c{i}", f"svc/file{i}") for i in range(3)]


def _build(
    repo: GitRepo, repository: str, sha: str, client: docker.APIClient, registry: LocalRegistry
) -> BuiltImage:
    return build_image(
        context=repo.path / "svc",
        repository=repository,
        tags=[sha, "latest"],
        revision=sha,
        engine=DockerBuilder(client),
        credentials=registry.credentials,
    )


def _latest(repository: str, registry: LocalRegistry) -> str | None:
    return manifest_digest(ImageRef.parse(f"{repository}:latest"), registry.credentials)


def test_latest_never_moves_back_to_an_earlier_commit(
    history: tuple[GitRepo, list[str]],
    docker_client: docker.APIClient,
    registry: LocalRegistry,
) -> None:
    repo, (first, second, third) = history
    repository = f"{registry.address}/homelab/forward"
    newer = _build(repo, repository, second, docker_client, registry)
    assert newer.latest is not None
    assert newer.latest.moved
    assert _latest(repository, registry) == newer.digest

    older = _build(repo, repository, first, docker_client, registry)
    assert older.digest != newer.digest
    assert older.latest is not None
    assert not older.latest.moved
    assert f"it serves {second[:12]}, a later commit" in older.latest.note
    assert older.references == (f"{repository}:{first}@{older.digest}",), "no latest claimed"
    assert _latest(repository, registry) == newer.digest

    latest = _build(repo, repository, third, docker_client, registry)
    assert latest.latest is not None
    assert latest.latest.moved
    assert _latest(repository, registry) == latest.digest


def test_follow_overlay_ends_at_the_entry_of_the_final_tip(
    history: tuple[GitRepo, list[str]],
    docker_client: docker.APIClient,
    registry: LocalRegistry,
) -> None:
    repo, (first, second, _) = history
    repository = f"{registry.address}/homelab/follow"
    digests = []
    for sha in (first, second):
        built = build_image(
            context=repo.path / "svc",
            repository=repository,
            tags=[sha],
            revision=sha,
            engine=DockerBuilder(docker_client),
            credentials=registry.credentials,
        )
        digests.append(built.digest or "")
    # The tip as another pipeline moves it: first read A, then B on every later read.
    tips = [first, second]
    reads: list[str] = []

    def read_tip() -> dict[str, ImageEntry]:
        sha = tips[min(len(reads), 1)]
        reads.append(sha)
        digest = digests[tips.index(sha)]
        return {"svc": ImageEntry("svc", new_name=repository, new_tag=sha, digest=digest)}

    moves = follow_overlay(
        {"svc": ImageRef.parse(repository)}, read_tip, credentials=registry.credentials
    )
    assert reads == [first, second, second], "read, move, read again, move again, read again"
    assert [m.digest for m in moves] == [digests[1]]
    assert _latest(repository, registry) == digests[1]


def test_follow_overlay_leaves_entries_of_other_repositories_alone(
    registry: LocalRegistry,
) -> None:
    entry = ImageEntry(
        "svc", new_name="elsewhere.example.com/svc", new_tag="a", digest="sha256:" + "1" * 64
    )
    moves = follow_overlay(
        {"svc": ImageRef.parse(f"{registry.address}/homelab/svc")},
        lambda: {"svc": entry},
        credentials=registry.credentials,
    )
    assert moves == ()


def test_latest_trouble_never_fails_the_build(
    stopped_registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    repository = f"{stopped_registry.address}/homelab/svc"
    entry = ImageEntry("svc", new_name=repository, new_tag="a", digest="sha256:" + "1" * 64)
    moves = follow_overlay(
        {"svc": ImageRef.parse(repository)},
        lambda: {"svc": entry},
        credentials=stopped_registry.credentials,
        rounds=1,
    )
    (move,) = moves
    assert not move.moved
    assert "unreachable" in move.note
    assert f"{repository}:latest was not moved (the build stands)" in caplog.text
