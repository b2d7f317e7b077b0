"""Reading an overlay's states from the manifests history (GitPython) and choosing one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homelab_release.config import Environment
from homelab_release.git import file_history
from homelab_release.gitops import commit_message
from homelab_release.history import OverlayState, RollbackError, choose_state, read_states
from tests.gitrepo import GitRepo

STAGE = Environment("stage", "k8s/overlays/stage", "develop")
OVERLAY = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: vote
    newName: registry.example.com/homelab/vote
    newTag: {tag}
"""


def write_state(repo: GitRepo, env: str, tag: str, trailers: dict[str, str] | None = None) -> str:
    repo.write(f"k8s/overlays/{env}/kustomization.yaml", OVERLAY.format(tag=tag))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", commit_message(f"{env}: vote {tag}", "", trailers))
    return repo.head()


@pytest.fixture
def manifests(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    """stage changed three times, develop twice in between, one commit touching nothing."""
    repo = GitRepo.init(tmp_path / "manifests", branch="k8s-manifests")
    repo.write("k8s/base/README", "base\n")
    repo.commit("base")
    stage = [write_state(repo, "stage", "a1", {"Source-Commit": "c1" * 20, "Pipeline": "p/1"})]
    write_state(repo, "develop", "b1")
    stage.append(write_state(repo, "stage", "a2", {"Source-Commit": "c2" * 20}))
    repo.commit("unrelated", "docs/notes.txt")
    write_state(repo, "develop", "b2")
    stage.append(write_state(repo, "stage", "a3"))
    return repo, stage[::-1]


def test_states_are_the_commits_that_changed_the_overlay_newest_first(
    manifests: tuple[GitRepo, list[str]],
) -> None:
    repo, stage = manifests
    states = read_states(repo.path, STAGE)
    assert [s.commit for s in states] == stage
    assert [s.images[0].new_tag for s in states] == ["a3", "a2", "a1"]
    assert states[2].source_commit == "c1" * 20
    assert states[2].pipeline == "p/1"
    assert states[1].trailers == {"Source-Commit": "c2" * 20}
    assert states[0].subject == "stage: vote a3"
    assert all(s.time > 0 for s in states)


def test_limit_reads_the_newest(manifests: tuple[GitRepo, list[str]]) -> None:
    repo, stage = manifests
    assert [s.commit for s in read_states(repo.path, STAGE, limit=2)] == stage[:2]


def test_a_state_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "m", branch="k8s-manifests")
    repo.write("k8s/overlays/stage/kustomization.yaml", "images: {broken\n")
    repo.commit("broken")
    (state,) = read_states(repo.path, STAGE)
    assert state.images == ()
    assert "kustomization.yaml" in state.problem


def test_no_git_process_outlives_the_read(manifests: tuple[GitRepo, list[str]]) -> None:
    repo, _ = manifests
    file_history(repo.path, "k8s/overlays/stage", ("kustomization.yaml",))
    assert _children_named("git") == []


def _children_named(name: str) -> list[str]:
    me = str(os.getpid())
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == me and fields.get("Name", "").strip() == name:
            found.append(status.parent.name)
    return found


STATES = tuple(
    OverlayState(sha * 40, 0, f"state {sha}") for sha in ("a", "b", "c", "d")
)  # newest first


@pytest.mark.parametrize(
    ("to", "steps", "chosen"),
    [
        (None, 1, "b"),
        (None, 3, "d"),
        ("c" * 40, None, "c"),
        ("ccccccc", None, "c"),
        ("CCCCCCCC", None, "c"),
        ("a" * 12, None, "a"),  # the current state: a rollback that changes nothing
    ],
)
def test_choose_state(to: str | None, steps: int | None, chosen: str) -> None:
    state = choose_state(STATES, environment="stage", to=to, steps=steps)
    assert state.commit == chosen * 40


@pytest.mark.parametrize(
    ("to", "steps", "message"),
    [
        (None, None, "--to COMMIT or --steps N"),
        ("a" * 40, 1, "--to COMMIT or --steps N"),
        (None, 4, r"--steps 4: the stage overlay has 3 earlier state\(s\)"),
        (None, 0, "--steps 0"),
        ("e" * 40, None, "is not a state of the stage overlay"),
        ("ccc", None, "is not a state of"),  # too short to name one
        ("main", None, "is not a state of"),
    ],
)
def test_choose_state_refuses(to: str | None, steps: int | None, message: str) -> None:
    with pytest.raises(RollbackError, match=message):
        choose_state(STATES, environment="stage", to=to, steps=steps)


def test_a_refusal_lists_the_states() -> None:
    with pytest.raises(RollbackError) as refused:
        choose_state(STATES, environment="stage", to="f" * 40)
    assert "bbbbbbbbbbbb (state b)" in str(refused.value)
    assert "homelab-release history --env stage" in str(refused.value)
