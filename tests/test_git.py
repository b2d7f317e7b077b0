"""git.py, the one place that runs git: each operation against real repositories and remotes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from homelab_release import git
from homelab_release.errors import CommandError, GitError
from homelab_release.secrets import GitCredentials, HiddenText
from tests.gitrepo import GitRepo, run_git


def clone_of(source: Path, dest: Path, *options: str) -> GitRepo:
    run_git(source.parent, "clone", "-q", *options, f"file://{source}", str(dest))
    return GitRepo(dest)


# -- names and commits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0123456789abcdef0123456789abcdef01234567", True),
        ("0123456789abcdef" * 4, True),  # SHA-256 repositories
        ("0123456789abcdef0123456789abcdef0123456", False),
        ("0123456789ABCDEF0123456789ABCDEF01234567", False),
        ("0123456789abcdef0123456789abcdef01234567\n", False),
        ("0123456789abcdef0123456789abcdef012345678", False),
        ("HEAD", False),
        ("", False),
    ],
)
def test_is_commit_sha(text: str, expected: bool) -> None:
    assert git.is_commit_sha(text) is expected


def test_toplevel_of_a_subfolder(repo: GitRepo) -> None:
    repo.commit("seed", "vote/a")
    assert git.toplevel(repo.path / "vote") == repo.path.resolve()


def test_toplevel_outside_a_repository_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"is not a git repository.*as repo="):
        git.toplevel(tmp_path)


def test_head_commit(repo: GitRepo) -> None:
    repo.commit("one", "a")
    head = repo.commit("two", "b")
    assert git.head_commit(repo.path) == head


def test_head_commit_of_an_empty_repository(repo: GitRepo) -> None:
    with pytest.raises(GitError, match="no commit checked out"):
        git.head_commit(repo.path)


def test_head_commit_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="is not a git repository"):
        git.head_commit(tmp_path)


def test_commit_time_is_the_strict_iso_committer_date(repo: GitRepo) -> None:
    sha = repo.commit("one", "a")
    repo.git("-c", "user.name=x", "-c", "user.email=y", "tag", "-a", "-m", "t", "v1")
    expected = repo.git("show", "-s", "--format=%cI", sha).strip()
    assert git.commit_time(repo.path, sha) == expected
    assert git.commit_time(repo.path, "v1") == expected  # a tag names its commit
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", expected)


def test_commit_time_of_a_missing_commit(repo: GitRepo) -> None:
    repo.commit("one", "a")
    with pytest.raises(GitError, match=r"commit f{40} is not in"):
        git.commit_time(repo.path, "f" * 40)


def test_commit_times_in_one_process_leaving_out_missing_ones(repo: GitRepo) -> None:
    one = repo.commit("one", "a")
    two = repo.commit("two", "b")
    times = git.commit_times(repo.path, [two, "latest", "f" * 40, one, "--all", two])
    assert set(times) == {one, two}
    assert times[two] == int(repo.git("show", "-s", "--format=%ct", two))
    assert times[one] <= times[two]


def test_commit_times_of_nothing(tmp_path: Path) -> None:
    assert git.commit_times(tmp_path, ["latest"]) == {}  # no git process: not even a repository


def test_resolve_and_resolve_all(repo: GitRepo) -> None:
    one = repo.commit("one", "a")
    two = repo.commit("two", "b")
    repo.git("tag", "-a", "-m", "annotated", "v1", one)
    assert git.resolve(repo.path, "v1") == one
    assert git.resolve(repo.path, "nope") is None
    assert git.resolve(repo.path, "--all") is None
    assert git.resolve_all(repo.path, ["HEAD", "v1"]) == [two, one]
    assert git.resolve_all(repo.path, ["HEAD", "nope", "HEAD~1"]) == [two, None, one]
    assert git.resolve_all(repo.path, ["-q", "HEAD"]) == [None, two]


def test_resolve_pair_lists_every_merge_base(repo: GitRepo) -> None:
    fork = repo.commit("seed", "a")
    repo.git("checkout", "-q", "-b", "feature")
    one = repo.commit("feature", "b")
    repo.git("checkout", "-q", "main")
    two = repo.commit("main", "c")
    assert git.resolve_pair(repo.path, "main", "feature", merge_bases=True) == git.Pair(
        two, one, (fork,)
    )
    assert git.resolve_pair(repo.path, "main", "feature", merge_bases=False) == git.Pair(two, one)
    repo.git("merge", "-q", "--no-edit", one)
    repo.git("checkout", "-q", "feature")
    repo.git("merge", "-q", "--no-edit", two)
    criss_cross = git.resolve_pair(repo.path, "main", "feature", merge_bases=True)
    assert criss_cross is not None
    assert sorted(criss_cross.merge_bases) == sorted([one, two])


def test_resolve_pair_refuses_what_is_not_a_name(repo: GitRepo) -> None:
    repo.commit("one", "a")
    repo.commit("two", "b")
    assert git.resolve_pair(repo.path, "HEAD~1..HEAD", "HEAD", merge_bases=False) is None
    assert git.resolve_pair(repo.path, "HEAD", "--all", merge_bases=True) is None
    assert git.resolve_pair(repo.path, "nope", "HEAD", merge_bases=True) is None
    repo.git("checkout", "-q", "--orphan", "other")
    repo.commit("unrelated", "c")
    unrelated = git.resolve_pair(repo.path, "main", "other", merge_bases=True)
    assert unrelated is not None
    assert unrelated.merge_bases == ()


def test_merge_base_and_is_ancestor(repo: GitRepo) -> None:
    one = repo.commit("one", "a")
    two = repo.commit("two", "b")
    assert git.merge_base(repo.path, one, two) == one
    assert git.merge_base(repo.path, one, "f" * 40) is None
    assert git.is_ancestor(repo.path, one, two)
    assert not git.is_ancestor(repo.path, two, one)
    assert not git.is_ancestor(repo.path, one, "f" * 40)  # no remote to fetch it from


def test_is_ancestor_fetches_from_the_only_remote_even_when_not_origin(
    repo: GitRepo, tmp_path: Path
) -> None:
    one = repo.commit("one", "a")
    clone = clone_of(repo.path, tmp_path / "clone")
    clone.git("remote", "rename", "origin", "upstream")
    two = repo.commit("two", "b")
    assert git.resolve(clone.path, two) is None
    repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
    assert git.is_ancestor(clone.path, one, two)
    assert git.resolve(clone.path, two) == two


def test_is_shallow(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit("one", "a")
    repo.commit("two", "b")
    assert not git.is_shallow(repo.path)
    assert git.is_shallow(clone_of(repo.path, tmp_path / "c", "--depth", "1").path)


def test_uncommitted_lists_tracked_changes_under_the_paths(repo: GitRepo) -> None:
    repo.commit("seed", "vote/a", "result/b")
    assert git.uncommitted(repo.path, ["vote"]) == ""
    repo.write("vote/a", "edited\n")
    repo.write("vote/new", "untracked\n")
    repo.write("result/b", "edited\n")
    assert git.uncommitted(repo.path, ["vote"]) == " M vote/a"
    assert git.uncommitted(repo.path, ["vote", "result"]).splitlines() == [
        " M result/b",
        " M vote/a",
    ]
    assert git.uncommitted(repo.path, []).splitlines() == [" M result/b", " M vote/a"]


# -- what changed ----------------------------------------------------------------------------


@pytest.fixture
def submodule_history(repo: GitRepo, tmp_path: Path) -> tuple[GitRepo, str, str]:
    """main with a file, a folder and a submodule; then a rename, an edit and a submodule move."""
    sub = GitRepo.init(tmp_path / "sub")
    sub.commit("s1", "f")
    repo.commit("seed", "a", "d/b")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "sub")
    before = repo.commit("with submodule")
    sub.commit("s2", "f")
    repo.git("-C", "sub", "-c", "protocol.file.allow=always", "pull", "-q", "origin", "main")
    repo.git("mv", "a", "c")
    repo.write("d/b", "edited\n")
    repo.git("config", "-f", ".gitmodules", "submodule.sub.ignore", "all")
    after = repo.commit("move")
    return repo, before, after


EXPECTED = (".gitmodules", "a", "c", "d/b", "sub")

# Settings that change what `git diff` prints or lists, when nothing pins them.
HOSTILE = {
    "diff.relative": "true",
    "diff.renames": "copies",
    "diff.ignoreSubmodules": "all",
    "submodule.sub.ignore": "all",
    "diff.noprefix": "true",
    "diff.mnemonicPrefix": "true",
    "diff.external": "false",
    "diff.orderFile": "order.txt",
    "color.ui": "always",
    "color.diff": "always",
    "core.quotePath": "true",
    "status.submoduleSummary": "true",
    "diff.submodule": "log",
    "diff.shout.textconv": "false",  # every file's textconv program fails
}


def test_changed_files_lists_renames_as_two_paths_and_submodule_moves(
    submodule_history: tuple[GitRepo, str, str],
) -> None:
    repo, before, after = submodule_history
    assert git.changed_files(repo.path, before, after) == EXPECTED


def test_changed_files_ignores_the_users_git_configuration(
    submodule_history: tuple[GitRepo, str, str],
) -> None:
    repo, before, after = submodule_history
    (repo.path / "order.txt").write_text("sub\nc\n")
    (repo.path / ".git" / "info" / "attributes").write_text("* diff=shout\n")
    for key, value in HOSTILE.items():
        repo.git("config", key, value)
    assert git.changed_files(repo.path / "d", before, after) == EXPECTED
    assert git.try_changed_files(repo.path / "d", before, after) == EXPECTED


def test_changed_files_from_the_merge_base(repo: GitRepo) -> None:
    repo.commit("seed", "a")
    repo.git("checkout", "-q", "-b", "feature")
    head = repo.commit("feature", "vote/x")
    repo.git("checkout", "-q", "main")
    main = repo.commit("main", "result/y")
    assert git.changed_files(repo.path, main, head) == ("result/y", "vote/x")
    assert git.changed_files(repo.path, main, head, merge_base=True) == ("vote/x",)


def test_try_changed_files_is_none_where_git_refuses(repo: GitRepo) -> None:
    head = repo.commit("seed", "a")
    assert git.try_changed_files(repo.path, "f" * 40, head) is None
    with pytest.raises(CommandError):
        git.changed_files(repo.path, "f" * 40, head)


# -- remotes ---------------------------------------------------------------------------------


def test_remote_name_and_url_follow_one_rule(repo: GitRepo) -> None:
    repo.commit("seed", "a")
    assert git.remote_name(repo.path) is None
    assert git.remote_url(repo.path) is None
    repo.git("remote", "add", "upstream", "https://example.invalid/up.git")
    assert git.remote_name(repo.path) == "upstream"
    assert git.remote_url(repo.path) == "https://example.invalid/up.git"
    repo.git("remote", "add", "origin", "https://example.invalid/origin.git")
    repo.git("remote", "add", "aaa", "https://example.invalid/aaa.git")
    assert git.remote_name(repo.path) == "origin"
    assert git.remote_url(repo.path) == "https://example.invalid/origin.git"


def test_fetch_without_a_remote_is_false(repo: GitRepo) -> None:
    repo.commit("seed", "a")
    assert git.fetch(repo.path, ["main"]) is False


def test_fetch_deepens_a_shallow_clone(repo: GitRepo, tmp_path: Path) -> None:
    for n in range(4):
        repo.commit(f"c{n}", f"f{n}")
    clone = clone_of(repo.path, tmp_path / "clone", "--depth", "1")
    assert git.fetch(clone.path, deepen=2)
    assert clone.git("rev-list", "--count", "HEAD").strip() == "3"
    assert git.fetch(clone.path, ["no-such-branch"]) is False


@pytest.fixture
def bare(repo: GitRepo, tmp_path: Path) -> Path:
    repo.commit("seed", "a")
    repo.commit("more", "b")
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo.path), str(remote))
    return remote


def test_clone_commit_and_push(bare: Path, tmp_path: Path) -> None:
    target = tmp_path / "work"
    git.clone_branch(f"file://{bare}", target, "main", git.Transport())
    assert git.is_shallow(target)  # git ignores --depth for a plain path, not for file://
    assert git.stage_all(target) is False
    (target / "c").write_text("c\n")
    assert git.stage_all(target) is True
    sha = git.commit(target, "subject\n\nbody\n", name="Bot", email="bot@example.com")
    assert git.push_head(target, "main", git.Transport()) is True
    assert run_git(bare, "rev-parse", "main").strip() == sha
    shown = run_git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", "main")
    assert shown.startswith("Bot <bot@example.com>|Bot <bot@example.com>|subject\n\nbody\n")


def test_push_after_the_branch_moved_is_false_then_reset_catches_up(
    bare: Path, tmp_path: Path
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for target in (ours, theirs):
        git.clone_branch(str(bare), target, "main", git.Transport())
    (theirs / "t").write_text("t\n")
    git.stage_all(theirs)
    tip = git.commit(theirs, "theirs", name="T", email="t@example.com")
    assert git.push_head(theirs, "main", git.Transport())
    (ours / "o").write_text("o\n")
    git.stage_all(ours)
    git.commit(ours, "ours", name="O", email="o@example.com")
    assert git.push_head(ours, "main", git.Transport()) is False
    git.reset_to_fetched(ours, "main", git.Transport())
    assert git.head_commit(ours) == tip
    assert not (ours / "o").exists()


def test_push_that_fails_otherwise_raises(bare: Path, tmp_path: Path) -> None:
    target = tmp_path / "work"
    git.clone_branch(str(bare), target, "main", git.Transport())
    run_git(target, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(CommandError, match="push"):
        git.push_head(target, "main", git.Transport())


def test_push_without_a_remote_names_the_fix(repo: GitRepo) -> None:
    repo.commit("seed", "a")
    with pytest.raises(GitError, match=r"no remote.*git remote add"):
        git.push_head(repo.path, "main", git.Transport())


def test_transport_keeps_the_password_out_of_its_repr() -> None:
    transport = git.Transport(GitCredentials("oauth2", HiddenText("glpat-secret")))
    assert "glpat-secret" not in repr(transport)
    assert transport.env["HOMELAB_RELEASE_GIT_PASSWORD"] == "glpat-secret"
    assert transport.secrets == (HiddenText("glpat-secret"),)
    assert "HOMELAB_RELEASE_GIT_PASSWORD" not in git.Transport().env
    assert git.Transport().secrets == ()
