"""detect_changes on real git repositories, one per GitLab pipeline kind, shallow clones included."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homelab_release import changes, proc
from homelab_release.changes import detect_changes, pipeline_base
from homelab_release.config import load_config
from homelab_release.context import CiContext, PipelineInfo
from homelab_release.errors import ConfigError, GitError
from homelab_release.git import changed_files
from tests.gitrepo import GitRepo, run_git

SERVICES = {"vote": ["vote/**/*"], "result": ["result/**/*"], "worker": ["worker/**/*"]}
ALL = ("result", "vote", "worker")
ZEROS = "0" * 40


@pytest.fixture
def seeded(repo: GitRepo) -> GitRepo:
    """main with one commit holding vote/, result/ and worker/ (each with a Dockerfile)."""
    repo.commit("seed", "vote/Dockerfile", "result/Dockerfile", "worker/Dockerfile", "README.md")
    return repo


def detect(
    repo: GitRepo | Path, env: dict[str, str], base: str | None = None, head: str = "HEAD"
) -> changes.ChangeSet:
    path = repo.path if isinstance(repo, GitRepo) else repo
    return detect_changes(path, base=base, head=head, services=SERVICES, env=env)


def push_env(before: str) -> dict[str, str]:
    return {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BEFORE_SHA": before}


def branch_off(repo: GitRepo) -> tuple[str, str]:
    """feature branches off main (vote changes), then main moves on (result changes)."""
    fork = repo.head()
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature work", "vote/app.py")
    repo.git("checkout", "-q", "main")
    repo.commit("main work", "result/app.py")
    repo.git("checkout", "-q", "feature")
    return fork, repo.head()


# -- which files changed ------------------------------------------------------------------


def test_change_set_is_frozen() -> None:
    change = changes.ChangeSet(None, "h", (), (), "why")
    with pytest.raises(AttributeError):
        change.reason = "other"  # type: ignore[misc]


def test_changed_files_lists_additions_edits_and_deletions(seeded: GitRepo) -> None:
    before = seeded.head()
    (seeded.path / "README.md").unlink()
    seeded.write("vote/Dockerfile", "FROM scratch\n")
    after = seeded.commit("edit", "worker/src/main.go")
    assert changed_files(seeded.path, before, after) == (
        "README.md",
        "vote/Dockerfile",
        "worker/src/main.go",
    )


def test_a_rename_counts_as_delete_plus_add(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.git("mv", "vote/Dockerfile", "worker/Dockerfile.vote")
    seeded.commit("move")
    change = detect(seeded, push_env(before))
    assert change.files == ("vote/Dockerfile", "worker/Dockerfile.vote")
    assert change.services == ("vote", "worker")


def test_a_deleted_file_counts(seeded: GitRepo) -> None:
    before = seeded.head()
    (seeded.path / "result" / "Dockerfile").unlink()
    seeded.commit("delete")
    change = detect(seeded, push_env(before))
    assert change.files == ("result/Dockerfile",)
    assert change.services == ("result",)


def test_paths_with_spaces_and_unicode_are_read_whole(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.commit("odd names", "vote/a b/ç.txt")
    assert detect(seeded, push_env(before)).files == ("vote/a b/ç.txt",)


# -- pipeline kinds -----------------------------------------------------------------------


def test_push_compares_before_sha_with_head(seeded: GitRepo) -> None:
    seeded.commit("vote", "vote/app.py")
    before = seeded.head()
    head = seeded.commit("result", "result/app.py")
    change = detect(seeded, push_env(before))
    assert (change.base, change.head) == (before, head)
    assert change.services == ("result",)
    assert "push pipeline" in change.reason
    assert "CI_COMMIT_BEFORE_SHA" in change.reason


def test_force_push_is_a_direct_tree_diff(seeded: GitRepo) -> None:
    seed = seeded.head()
    before = seeded.commit("vote", "vote/app.py")
    seeded.git("reset", "-q", "--hard", seed)
    seeded.commit("result instead", "result/app.py")
    change = detect(seeded, push_env(before))
    assert change.base == before
    # vote/app.py disappears and result/app.py appears: both services changed
    assert change.files == ("result/app.py", "vote/app.py")
    assert change.services == ("result", "vote")


def test_merge_request_compares_diff_base_sha(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_COMMIT_BEFORE_SHA": ZEROS,
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": fork,
    }
    change = detect(seeded, env)
    assert (change.base, change.head) == (fork, head)
    assert change.services == ("vote",)
    assert "merge request pipeline" in change.reason


def test_new_branch_compares_with_the_merge_base_of_the_default_branch(seeded: GitRepo) -> None:
    fork, _ = branch_off(seeded)
    env = {**push_env(ZEROS), "CI_DEFAULT_BRANCH": "main"}
    change = detect(seeded, env)
    assert change.base == fork
    assert change.services == ("vote",)  # main's later result change is not the branch's
    assert "new branch pipeline" in change.reason
    assert "main" in change.reason


def test_tag_pipeline_compares_with_the_default_branch(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    seeded.git("tag", "v1.0.0")
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_TAG": "v1.0.0",
        "CI_COMMIT_BEFORE_SHA": ZEROS,
        "CI_DEFAULT_BRANCH": "main",
    }
    change = detect(seeded, env, head="v1.0.0")
    assert (change.base, change.head) == (fork, head)
    assert change.services == ("vote",)
    assert "tag pipeline (v1.0.0)" in change.reason


@pytest.mark.parametrize("source", ["schedule", "web", "api"])
def test_schedule_web_api_on_the_default_branch_see_no_change(seeded: GitRepo, source: str) -> None:
    seeded.commit("vote", "vote/app.py")
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": source,
        "CI_COMMIT_BEFORE_SHA": ZEROS,
        "CI_DEFAULT_BRANCH": "main",
    }
    change = detect(seeded, env)
    assert change.base == change.head == seeded.head()
    assert change.services == ()
    assert f"{source} pipeline" in change.reason


def test_outside_ci_compares_with_main(seeded: GitRepo) -> None:
    fork, _ = branch_off(seeded)
    change = detect(seeded, {})
    assert change.base == fork
    assert change.services == ("vote",)
    assert change.reason.startswith("outside CI")


def test_outside_ci_falls_back_to_master(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "old", branch="master")
    fork = repo.commit("seed", "vote/Dockerfile")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("work", "worker/app.py")
    change = detect(repo, {})
    assert change.base == fork
    assert change.services == ("worker",)
    assert "master" in change.reason


def test_outside_ci_uses_origin_head_of_a_clone(seeded: GitRepo, tmp_path: Path) -> None:
    seeded.git("branch", "-m", "trunk")
    clone = clone_of(seeded.path, tmp_path / "clone")
    fork = clone.head()
    clone.git("checkout", "-q", "-b", "feature")
    clone.commit("work", "result/app.py")
    change = detect(clone, {})
    assert change.base == fork
    assert change.services == ("result",)
    assert "origin/HEAD" in change.reason


def test_configured_default_branch_wins(seeded: GitRepo) -> None:
    seeded.git("checkout", "-q", "-b", "develop")
    fork = seeded.commit("develop work", "worker/app.py")
    seeded.git("checkout", "-q", "-b", "feature")
    seeded.commit("feature work", "vote/app.py")
    seeded.write("homelab-release.toml", '[changes]\ndefault_branch = "develop"\n')
    head = seeded.commit("config")
    config = load_config(seeded.path, env={})
    change = detect_changes(seeded.path, config=config, env={"CI_DEFAULT_BRANCH": "main"})
    assert (change.base, change.head) == (fork, head)
    assert change.services == ("vote",)


def test_no_default_branch_means_every_service(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "r", branch="trunk")
    repo.commit("seed", "vote/Dockerfile")
    change = detect(repo, {})
    assert change.base is None
    assert change.files == ()
    assert change.services == ALL
    assert "no default branch" in change.reason
    assert "every service" in change.reason


def test_before_sha_that_exists_nowhere_means_every_service(seeded: GitRepo) -> None:
    change = detect(seeded, push_env("1234567890" * 4))
    assert change.base is None
    assert change.services == ALL
    assert "CI_COMMIT_BEFORE_SHA 123456789012 is not in the clone" in change.reason


def test_pipeline_base_of_a_push_returns_sha_and_reason(seeded: GitRepo) -> None:
    before = seeded.head()
    head = seeded.commit("x", "vote/x")
    pipeline = CiContext.from_env(push_env(before)).pipeline
    sha, reason = pipeline_base(seeded.path, head, pipeline)
    assert sha == before
    assert "push pipeline" in reason


def test_pipeline_base_takes_the_pipeline_read_already(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    pipeline = PipelineInfo(source="merge_request_event", merge_request_base=fork)
    assert pipeline_base(seeded.path, head, pipeline) == (
        fork,
        f"merge request pipeline: compared CI_MERGE_REQUEST_DIFF_BASE_SHA {fork[:12]} with "
        f"head {head[:12]}",
    )
    sha, reason = pipeline_base(seeded.path, head, PipelineInfo(), default_branch="main")
    assert sha == fork
    assert reason.startswith("outside CI: compared the merge base")


def test_a_pipeline_given_wins_over_env(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.commit("vote", "vote/app.py")
    seeded.commit("result", "result/app.py")
    pipeline = PipelineInfo(in_gitlab=True, source="push", before_sha=before)
    bogus_env = push_env("1234567890" * 4)  # would name a commit that exists nowhere
    change = detect_changes(seeded.path, services=SERVICES, env=bogus_env, pipeline=pipeline)
    assert change.base == before
    assert change.services == ("result", "vote")


# -- explicit base ------------------------------------------------------------------------


def test_explicit_base_compares_from_the_merge_base(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    change = detect(seeded, push_env(ZEROS), base="main")  # the explicit base wins over CI_*
    assert (change.base, change.head) == (fork, head)
    assert change.services == ("vote",)
    assert "explicit base" in change.reason


def test_explicit_base_and_head(seeded: GitRepo) -> None:
    first = seeded.commit("vote", "vote/app.py")
    seeded.commit("result", "result/app.py")
    seeded.commit("worker", "worker/app.py")
    change = detect(seeded, {}, base=first, head="HEAD~1")
    assert change.services == ("result",)


def test_unrelated_histories_mean_every_service(seeded: GitRepo) -> None:
    seeded.git("checkout", "-q", "--orphan", "other")
    seeded.commit("unrelated", "vote/app.py")
    change = detect(seeded, {}, base="main")
    assert change.base is None
    assert change.services == ALL
    assert "no common ancestor" in change.reason


# -- configuration ------------------------------------------------------------------------


def test_services_come_from_the_configuration(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.commit("work", "worker/app.py", "docs/x.md")
    change = detect_changes(seeded.path, env=push_env(before))
    assert change.services == ("worker",)
    assert change.files == ("docs/x.md", "worker/app.py")


def test_changes_always_marks_every_service(seeded: GitRepo) -> None:
    seeded.write("homelab-release.toml", '[changes]\nalways = ["homelab-release.toml", ".ci/*"]\n')
    before = seeded.commit("config")
    seeded.commit("ci", ".ci/run")
    change = detect_changes(seeded.path, env=push_env(before))
    assert change.services == ALL
    assert ".ci/run matches changes.always" in change.reason


def test_changes_always_not_matching_changes_nothing(seeded: GitRepo) -> None:
    seeded.write("homelab-release.toml", '[changes]\nalways = ["homelab-release.toml"]\n')
    before = seeded.commit("config")
    seeded.commit("vote", "vote/app.py")
    assert detect_changes(seeded.path, env=push_env(before)).services == ("vote",)


def test_a_bad_glob_in_the_configuration_names_service_and_pattern(seeded: GitRepo) -> None:
    seeded.write("homelab-release.toml", '[services.vote]\npaths = ["vote/{app,lib"]\n')
    seeded.commit("config")
    with pytest.raises(ConfigError) as info:
        detect_changes(seeded.path, env={})
    message = str(info.value)
    assert "homelab-release.toml" in message
    assert "services.vote.paths" in message
    assert "'vote/{app,lib'" in message
    assert "unbalanced '{'" in message


def test_a_bad_always_glob_is_named(seeded: GitRepo) -> None:
    seeded.write("homelab-release.toml", '[changes]\nalways = ["[ab"]\n')
    seeded.commit("config")
    with pytest.raises(ConfigError, match=r"changes\.always: pattern '\[ab'"):
        detect_changes(seeded.path, env={})


def test_an_empty_glob_in_explicit_services_is_refused(seeded: GitRepo) -> None:
    with pytest.raises(ConfigError, match=r"services\.vote\.paths: pattern '': empty"):
        detect_changes(seeded.path, services={"vote": [""]}, env={})


def test_a_subfolder_works_as_repo(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.commit("work", "result/app.py")
    change = detect_changes(seeded.path / "vote", env=push_env(before))
    assert change.files == ("result/app.py",)
    assert change.services == ("result",)


# -- bad input ----------------------------------------------------------------------------


def test_not_a_git_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="is not a git repository"):
        detect_changes(tmp_path, services=SERVICES, env={})


def test_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="is not a git repository"):
        detect_changes(tmp_path / "nope", services=SERVICES, env={})


def test_bad_head_is_named(seeded: GitRepo) -> None:
    with pytest.raises(GitError, match=r"head 'no-such-branch' does not name a commit.* head="):
        detect(seeded, {}, head="no-such-branch")


@pytest.mark.parametrize("base", ["no-such-branch", "f" * 40, "HEAD~5", "--output=/tmp/x"])
def test_bad_base_is_named(seeded: GitRepo, base: str) -> None:
    with pytest.raises(GitError, match=r"base '.*' does not name a commit.* as base="):
        detect(seeded, {}, base=base)


# -- the quick paths (diff alongside the resolution) answer like the careful ones ------------


def git_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git subcommands detect_changes runs from now on (real git, only recorded)."""
    seen: list[str] = []
    real = proc.attempt

    def recording(argv: Sequence[str], **kwargs: Any) -> proc.Completed:
        if argv[0] == "git":
            seen.append(subcommand(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(proc, "attempt", recording)
    return seen


def subcommand(argv: Sequence[str]) -> str:
    """``diff`` in ``git -C repo -c key=value diff ...``."""
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-C", "-c"):
            next(args)
        elif not arg.startswith("-"):
            return arg
    raise AssertionError(argv)


@pytest.mark.parametrize("head", ["HEAD", "sha"])
def test_push_with_ci_commit_sha_takes_two_git_processes(
    seeded: GitRepo, monkeypatch: pytest.MonkeyPatch, head: str
) -> None:
    before = seeded.head()
    after = seeded.commit("result", "result/app.py")
    commands = git_commands(monkeypatch)
    env = {**push_env(before), "CI_COMMIT_SHA": after}
    change = detect(seeded, env, head=after if head == "sha" else "HEAD")
    assert (change.base, change.head, change.services) == (before, after, ("result",))
    assert sorted(commands) == ["diff", "rev-parse"]
    assert change == detect(seeded, push_env(before), head="HEAD")  # as without CI_COMMIT_SHA


def test_ci_commit_sha_that_is_not_head_is_not_trusted(seeded: GitRepo) -> None:
    before = seeded.head()
    other = seeded.commit("vote", "vote/app.py")
    head = seeded.commit("result", "result/app.py")
    change = detect(seeded, {**push_env(before), "CI_COMMIT_SHA": other})
    assert change.head == head
    assert change.files == ("result/app.py", "vote/app.py")
    assert change.services == ("result", "vote")


def test_merge_request_with_ci_commit_sha(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    env = {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": fork,
        "CI_COMMIT_SHA": head,
    }
    change = detect(seeded, env)
    assert (change.base, change.head, change.files) == (fork, head, ("vote/app.py",))
    assert "merge request pipeline" in change.reason


def test_before_sha_of_an_annotated_tag_counts_as_its_commit(seeded: GitRepo) -> None:
    before = seeded.head()
    seeded.git("tag", "-a", "-m", "release", "v1", before)
    tag_object = seeded.git("rev-parse", "v1").strip()
    assert tag_object != before
    head = seeded.commit("worker", "worker/app.py")
    change = detect(seeded, {**push_env(tag_object), "CI_COMMIT_SHA": head})
    assert (change.base, change.head, change.services) == (before, head, ("worker",))


def test_explicit_base_and_head_as_shas_on_forked_history(
    seeded: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    fork, head = branch_off(seeded)
    main = seeded.git("rev-parse", "main").strip()
    commands = git_commands(monkeypatch)
    change = detect(seeded, {}, base=main, head=head)
    assert (change.base, change.head) == (fork, head)
    assert change.files == ("vote/app.py",)  # main's result change is not compared
    assert sorted(commands) == ["diff", "rev-parse"]


def test_explicit_base_as_an_annotated_tag_object(seeded: GitRepo) -> None:
    fork, head = branch_off(seeded)
    seeded.git("tag", "-a", "-m", "release", "v1", "main")
    tag_object = seeded.git("rev-parse", "v1").strip()
    change = detect(seeded, {}, base=tag_object, head=head)
    assert (change.base, change.head, change.files) == (fork, head, ("vote/app.py",))


def test_explicit_base_with_two_merge_bases_uses_the_one_git_merge_base_picks(
    seeded: GitRepo,
) -> None:
    """A criss-cross merge: ``git diff --merge-base`` refuses, the careful path answers."""
    fork = seeded.head()
    seeded.git("checkout", "-q", "-b", "feature")
    one = seeded.commit("feature", "vote/a.py")
    seeded.git("checkout", "-q", "main")
    two = seeded.commit("main", "result/b.py")
    seeded.git("merge", "-q", "--no-edit", one)
    seeded.git("checkout", "-q", "feature")
    seeded.git("merge", "-q", "--no-edit", two)
    seeded.commit("feature again", "worker/c.py")
    seeded.git("checkout", "-q", "main")
    seeded.commit("main again", "README.md")
    assert len(seeded.git("merge-base", "--all", "main", "feature").split()) == 2
    picked = seeded.git("merge-base", "main", "feature").strip()
    change = detect(seeded, {}, base="main", head="feature")
    assert change.base == picked != fork
    assert change.files == changed_files(seeded.path, picked, change.head)
    assert "worker/c.py" in change.files


# -- shallow clones -----------------------------------------------------------------------


def clone_of(source: Path, dest: Path, *options: str) -> GitRepo:
    run_git(source.parent, "clone", "-q", *options, f"file://{source}", str(dest))
    return GitRepo(dest)


@pytest.fixture
def remote(seeded: GitRepo, tmp_path: Path) -> GitRepo:
    """The seeded repository as a bare remote (what GitLab's runner clones from)."""
    run_git(tmp_path, "clone", "-q", "--bare", str(seeded.path), str(tmp_path / "remote.git"))
    return GitRepo(tmp_path / "remote.git")


def is_shallow(repo: GitRepo) -> bool:
    return repo.git("rev-parse", "--is-shallow-repository").strip() == "true"


def test_shallow_push_fetches_the_before_commit(
    seeded: GitRepo, remote: GitRepo, tmp_path: Path
) -> None:
    before = seeded.commit("vote", "vote/app.py")
    for n in range(3):
        seeded.commit(f"worker {n}", f"worker/{n}.py")
    seeded.git("push", "-q", str(remote.path), "main")
    clone = clone_of(remote.path, tmp_path / "ci", "--depth", "1")
    assert is_shallow(clone)
    assert clone.git("rev-list", "--count", "HEAD").strip() == "1"
    change = detect(clone, push_env(before))
    assert change.base == before
    assert change.files == ("worker/0.py", "worker/1.py", "worker/2.py")
    assert change.services == ("worker",)


def test_shallow_new_branch_is_deepened_to_the_merge_base(
    seeded: GitRepo, remote: GitRepo, tmp_path: Path
) -> None:
    fork, _ = branch_off(seeded)
    seeded.commit("more feature work", "vote/more.py")
    seeded.git("push", "-q", str(remote.path), "main", "feature")
    clone = clone_of(remote.path, tmp_path / "ci", "--depth", "1", "--branch", "feature")
    env = {**push_env(ZEROS), "CI_DEFAULT_BRANCH": "main"}
    change = detect(clone, env)
    assert change.base == fork
    assert change.head == seeded.head()
    assert change.services == ("vote",)
    assert int(clone.git("rev-list", "--count", "HEAD").strip()) > 1  # it was deepened


def test_deepening_stops_at_the_bound(
    seeded: GitRepo, remote: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch_off(seeded)
    for n in range(4):
        seeded.commit(f"feature {n}", f"vote/{n}.py")
    seeded.git("push", "-q", str(remote.path), "main", "feature")
    clone = clone_of(remote.path, tmp_path / "ci", "--depth", "1", "--branch", "feature")
    monkeypatch.setattr(changes, "DEEPEN_STEPS", (1, 1))
    change = detect(clone, {**push_env(ZEROS), "CI_DEFAULT_BRANCH": "main"})
    assert change.base is None
    assert change.services == ALL
    assert "no merge base with origin/main" in change.reason


def test_shallow_force_push_fetches_the_unreachable_before_commit(
    seeded: GitRepo, remote: GitRepo, tmp_path: Path
) -> None:
    seed = seeded.head()
    before = seeded.commit("vote", "vote/app.py")
    seeded.git("push", "-q", str(remote.path), "main")
    seeded.git("reset", "-q", "--hard", seed)
    seeded.commit("worker instead", "worker/app.py")
    seeded.git("push", "-q", "--force", str(remote.path), "main")
    clone = clone_of(remote.path, tmp_path / "ci", "--depth", "1")
    change = detect(clone, push_env(before))
    assert change.base == before
    assert change.services == ("vote", "worker")


def test_shallow_clone_without_the_base_anywhere_means_every_service(
    seeded: GitRepo, remote: GitRepo, tmp_path: Path
) -> None:
    clone = clone_of(remote.path, tmp_path / "ci", "--depth", "1")
    change = detect(clone, push_env("abcdef0123" * 4))
    assert change.base is None
    assert change.services == ALL
    assert "even after fetching it and deepening" in change.reason


def test_first_push_of_the_default_branch_counts_every_service(repo: GitRepo) -> None:
    first = repo.commit("services", "vote/a", "result/b")
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BEFORE_SHA": "0" * 40,
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_BRANCH": "main",
    }
    services = {"vote": ["vote/**/*"], "result": ["result/**/*"]}
    changes = detect_changes(repo.path, services=services, env=env)
    assert changes.base is None
    assert changes.head == first
    assert changes.services == ("result", "vote")
    assert "is the tip of main" in changes.reason


def test_new_feature_branch_at_the_default_tip_changes_nothing(repo: GitRepo) -> None:
    first = repo.commit("services", "vote/a", "result/b")
    repo.git("checkout", "-q", "-b", "feature")
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BEFORE_SHA": "0" * 40,
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_BRANCH": "feature",
    }
    services = {"vote": ["vote/**/*"], "result": ["result/**/*"]}
    changes = detect_changes(repo.path, services=services, env=env)
    assert changes.base == first
    assert changes.services == ()
    assert "compared the merge base" in changes.reason


def test_a_monorepo_without_services_is_an_error(repo: GitRepo) -> None:
    repo.commit("docs only", "README.md")
    with pytest.raises(ConfigError, match=r"no services: .*\[services.NAME\]"):
        detect_changes(repo.path, env={})


def test_a_path_that_is_not_utf8_is_matched_not_fatal(repo: GitRepo) -> None:
    first = repo.commit("start", "vote/a")
    (repo.path / "vote").joinpath(os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name\n")
    second = repo.commit("odd name")
    changes = detect_changes(repo.path, base=first, head=second, services={"vote": ["vote/**/*"]})
    assert changes.services == ("vote",)
    assert changes.files == (os.fsdecode(b"vote/caf\xe9.txt"),)


# -- property: the quick path answers exactly like the careful one ---------------------------

FILES = ("vote/app.py", "vote/lib/x.py", "result/app.py", "worker/main.go", "README.md")


@dataclass(frozen=True)
class History:
    """Commits given by their parents (earlier indexes; none is a new root) and file edits."""

    commits: tuple[tuple[tuple[int, ...], tuple[tuple[str, bool], ...]], ...]
    tags: frozenset[int]  # commits with an annotated tag t<index>

    def stream(self) -> str:
        """A ``git fast-import`` stream: branch c<i> at commit i, tags t<i>."""
        out = []
        for i, (parents, edits) in enumerate(self.commits):
            out.append(f"commit refs/heads/c{i}\nmark :{i + 1}\n")
            out.append(f"committer T <t@example.com> {1700000000 + i} +0000\ndata 3\nc{i:02d}\n")
            out.extend(f"{'from' if n == 0 else 'merge'} :{p + 1}\n" for n, p in enumerate(parents))
            for path, keep in edits:
                out.append(f"M 100644 inline {path}\ndata 3\n{i:02d}\n" if keep else f"D {path}\n")
            out.append("\n")
        for i in sorted(self.tags):
            out.append(f"tag t{i}\nfrom :{i + 1}\ntagger T <t@example.com> 1700000000 +0000\n")
            out.append("data 3\ntag\n")
        return "".join(out)


@st.composite
def histories(draw: st.DrawFn) -> History:
    commits = []
    for i in range(draw(st.integers(1, 7))):
        # mostly one parent; sometimes a merge, sometimes an unrelated root
        count = draw(st.sampled_from((1, 1, 1, 1, 1, 2, 2, 0))) if i else 0
        parents = draw(
            st.lists(
                st.integers(0, max(i - 1, 0)),
                min_size=min(count, i),
                max_size=min(count, i),
                unique=True,
            )
        )
        edits = draw(st.dictionaries(st.sampled_from(FILES), st.booleans(), max_size=3))
        commits.append((tuple(parents), tuple(sorted(edits.items()))))
    tags = draw(st.frozensets(st.integers(0, len(commits) - 1), max_size=2))
    return History(tuple(commits), tags)


# A ref by kind and commit index (taken modulo the number of commits).
REF_KINDS = (
    "sha",
    "branch",
    "tag",
    "tag-object",
    "HEAD",
    "HEAD~1",
    "HEAD^2",
    "missing-sha",
    "missing",
)
REFS = st.tuples(st.sampled_from(REF_KINDS), st.integers(0, 6))


def ref_text(repo: Path, history: History, kind: str, index: int) -> str:
    i = index % len(history.commits)
    tagged = sorted(history.tags)
    if kind in ("tag", "tag-object") and tagged:
        name = f"t{tagged[index % len(tagged)]}"
        return name if kind == "tag" else run_git(repo, "rev-parse", name).strip()
    if kind == "sha":
        return run_git(repo, "rev-parse", f"c{i}").strip()
    if kind == "missing-sha":
        return f"{i:x}" * 40
    if kind == "missing":
        return "no-such-ref"
    return kind if kind.startswith("HEAD") else f"c{i}"


def outcome(repo: Path, base: str | None, head: str, pipeline: PipelineInfo) -> object:
    """The change set, or the error's type and message."""
    try:
        return detect_changes(repo, base=base, head=head, services=SERVICES, pipeline=pipeline)
    except GitError as err:
        return type(err), str(err)


@dataclass(frozen=True)
class Scenario:
    """A history, the pipeline's kind, the refs it names and the commit checked out."""

    history: History
    mode: str  # "explicit" (base=), "push" (CI_COMMIT_BEFORE_SHA) or "merge request"
    base_ref: tuple[str, int]
    head_ref: tuple[str, int]
    checked_out: int
    commit_sha: str  # CI_COMMIT_SHA: "" unset, "head" the checked-out commit, "other" c0


SCENARIOS = st.builds(
    Scenario,
    history=histories(),
    mode=st.sampled_from(["explicit", "push", "merge request"]),
    base_ref=REFS,
    head_ref=st.one_of(st.just(("HEAD", 0)), REFS),
    checked_out=st.integers(0, 6),
    commit_sha=st.sampled_from(["", "head", "other"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCENARIOS)
def test_the_quick_path_gives_the_careful_answer(scenario: Scenario) -> None:
    history, mode = scenario.history, scenario.mode
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        run_git(repo, "init", "-q")
        subprocess.run(
            ["git", "-C", str(repo), "fast-import", "--quiet"],
            input=history.stream(), text=True, check=True,
        )  # fmt: skip
        checked_out = scenario.checked_out % len(history.commits)
        run_git(repo, "symbolic-ref", "HEAD", f"refs/heads/c{checked_out}")
        base = ref_text(repo, history, *scenario.base_ref)
        head = ref_text(repo, history, *scenario.head_ref)
        head_sha = run_git(repo, "rev-parse", "HEAD").strip()
        other = run_git(repo, "rev-parse", "c0").strip()
        ci_sha = {"": "", "head": head_sha, "other": other}[scenario.commit_sha]
        pipeline = PipelineInfo(
            in_gitlab=True,
            source="merge_request_event" if mode == "merge request" else "push",
            commit_sha=ci_sha,
            before_sha=base if mode == "push" else ZEROS,
            merge_request_base=base if mode == "merge request" else "",
        )
        explicit = base if mode == "explicit" else None
        quick: list[object] = []
        at_once = changes._at_once

        def recording(*args: Any) -> object:
            quick.append(at_once(*args))
            return quick[-1]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(changes, "_at_once", recording)
            answer = outcome(repo, explicit, head, pipeline)
            patch.setattr(changes, "_at_once", lambda *args: None)
            careful = outcome(repo, explicit, head, pipeline)
        assert answer == careful
        if quick_path_expected(repo, mode, base, head):
            assert quick != [None]  # the quick path answered: the comparison was not vacuous


def quick_path_expected(repo: Path, mode: str, base: str, head: str) -> bool:
    """Both refs name commits (and, for an explicit base, they have exactly one merge base)."""
    names = [base, head]
    if any(n.startswith("-") or ".." in n for n in names):
        return False
    resolved = [
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{n}^{{commit}}"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
        for n in names
    ]  # fmt: skip
    if not all(resolved):
        return False
    if mode != "explicit":
        return True
    bases = run_git_allow_failure(repo, "merge-base", "--all", *resolved).split()
    return len(bases) == 1


def run_git_allow_failure(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False
    ).stdout
