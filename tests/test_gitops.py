"""gitops: checkout, one commit, race-safe push and credentials, against real git remotes."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from homelab_release.errors import GitError
from homelab_release.gitops import (
    ManifestsRemote,
    Writer,
    checkout,
    clone,
    commit_message,
    publish,
    split_credentials,
)
from homelab_release.secrets import GitCredentials, HiddenText
from tests.githttp import git_http_server
from tests.gitrepo import GitRepo, run_git

BRANCH = "k8s-manifests"
TOKEN = "glpat-Sup3rSecretToken"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose k8s-manifests branch holds one file."""
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    seed = GitRepo.init(tmp_path / "seed", branch=BRANCH)
    seed.write("k8s/README", "manifests\n")
    seed.commit("initial")
    seed.git("push", "-q", str(bare), f"HEAD:refs/heads/{BRANCH}")
    return bare


def log_of(bare: Path) -> list[str]:
    return run_git(bare, "log", "--format=%s", BRANCH).splitlines()


def writer(name: str, text: str) -> Callable[[Path], str]:
    def apply(tree: Path) -> str:
        (tree / name).write_text(text)
        return name

    return apply


def test_publish_makes_one_commit_with_trailers_and_identity(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    with checkout(target) as tree:
        result, published = publish(
            tree,
            target,
            writer("a.txt", "a\n"),
            lambda name: commit_message(f"update {name}", "body", {"Source-Commit": "abc"}),
        )
    assert result == "a.txt"
    assert published.commit is not None
    assert published.attempts == 1
    message = run_git(remote, "log", "-1", "--format=%B", BRANCH)
    assert message.startswith("update a.txt [skip ci]\n\nbody\n\nSource-Commit: abc")
    author = run_git(remote, "log", "-1", "--format=%an <%ae>|%cn", BRANCH).strip()
    assert author == "homelab-release <homelab-release@localhost>|homelab-release"
    assert run_git(remote, "show", f"{BRANCH}:a.txt") == "a\n"


def test_publish_without_changes_commits_nothing(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    before = log_of(remote)
    with checkout(target) as tree:
        _, published = publish(tree, target, writer("k8s/README", "manifests\n"), str)
    assert published.commit is None
    assert log_of(remote) == before


def test_publish_reapplies_after_another_push_won(remote: Path, tmp_path: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    with checkout(target) as tree:
        other = clone(target, tmp_path / "other")
        (other / "b.txt").write_text("b\n")
        run_git(other, "add", "b.txt")
        run_git(other, "commit", "-qm", "other pipeline")
        run_git(other, "push", "-q", "origin", f"HEAD:{BRANCH}")
        _, published = publish(tree, target, writer("a.txt", "a\n"), str, backoff=0.01)
    assert published.attempts == 2
    assert log_of(remote)[:2] == ["a.txt", "other pipeline"]
    assert run_git(remote, "show", f"{BRANCH}:b.txt") == "b\n"


def test_concurrent_publishers_lose_no_update(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    errors: list[BaseException] = []
    attempts: list[int] = []
    all_cloned = threading.Barrier(4, timeout=60)

    def one(index: int) -> None:
        first = True

        def apply(tree: Path) -> str:
            nonlocal first
            if first:  # every publisher has its checkout before anyone pushes: they must race
                first = False
                all_cloned.wait()
            return writer(f"f{index}.txt", f"{index}\n")(tree)

        try:
            with checkout(target) as tree:
                _, published = publish(tree, target, apply, str, backoff=0.05)
            attempts.append(published.attempts)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(log_of(remote)[:4]) == [f"f{i}.txt" for i in range(4)]
    files = run_git(remote, "ls-tree", "--name-only", BRANCH).split()
    assert {f"f{i}.txt" for i in range(4)} <= set(files)
    assert sorted(attempts)[0] == 1
    assert max(attempts) >= 2  # the losers re-applied their edit on the new tip


def test_missing_branch_says_how_to_create_it(remote: Path) -> None:
    expected = r"branch 'nope' does not exist .*git push origin"
    with pytest.raises(GitError, match=expected), checkout(ManifestsRemote(str(remote), "nope")):
        pass


def test_bad_author_is_an_error(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    with checkout(target) as tree, pytest.raises(GitError, match="Name <email>"):
        publish(tree, target, writer("a", "a"), str, writer=Writer("nobody"))


@pytest.mark.parametrize(
    ("url", "clean", "user", "password"),
    [
        (
            "https://oauth2:tok@gitlab.example/g/p.git",
            "https://gitlab.example/g/p.git",
            "oauth2",
            "tok",
        ),
        ("https://gitlab-ci-token:a%40b@h/p.git", "https://h/p.git", "gitlab-ci-token", "a@b"),
        ("https://h/p.git", "https://h/p.git", None, None),
        ("/srv/git/p.git", "/srv/git/p.git", None, None),
        ("https://user@h/p.git", "https://h/p.git", None, None),
    ],
)
def test_split_credentials(url: str, clean: str, user: str | None, password: str | None) -> None:
    got_url, creds = split_credentials(url)
    assert got_url == clean
    assert (creds.username if creds else None) == user
    assert (creds.password.secret if creds else None) == password


def test_explicit_token_wins_and_never_shows(tmp_path: Path) -> None:
    remote = ManifestsRemote.from_url(
        f"https://x:{TOKEN}@h/p.git", BRANCH, GitCredentials("oauth2", HiddenText("other-token"))
    )
    assert remote.url == "https://h/p.git"
    assert remote.credentials is not None
    assert remote.credentials.password.secret == "other-token"
    assert TOKEN not in repr(remote)
    assert "other-token" not in repr(remote)


def test_http_push_with_token_keeps_it_out_of_files_and_logs(
    remote: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with git_http_server(remote.parent, "oauth2", TOKEN) as base:
        target = ManifestsRemote.from_url(
            f"{base}/remote.git", BRANCH, GitCredentials("oauth2", HiddenText(TOKEN))
        )
        with checkout(target) as tree:
            _, published = publish(tree, target, writer("a.txt", "a\n"), str)
            on_disk = subprocess.run(
                ["grep", "-r", "-l", TOKEN, str(tree)], capture_output=True, text=True, check=False
            )
    assert published.commit is not None
    assert on_disk.stdout == ""
    assert TOKEN not in caplog.text


def test_http_wrong_token_fails_without_showing_it(remote: Path) -> None:
    with git_http_server(remote.parent, "oauth2", "right-token") as base:
        target = ManifestsRemote.from_url(
            f"{base}/remote.git", BRANCH, GitCredentials("oauth2", HiddenText(TOKEN))
        )
        with pytest.raises(GitError) as caught, checkout(target):
            pass
    assert TOKEN not in str(caught.value)
    assert "cannot clone the manifests repository http://127.0.0.1" in str(caught.value)


def test_token_in_url_of_unreachable_remote_is_redacted() -> None:
    target = ManifestsRemote.from_url(f"http://oauth2:{TOKEN}@127.0.0.1:9/p.git", BRANCH)
    with pytest.raises(GitError) as caught, checkout(target):
        pass
    assert TOKEN not in str(caught.value)
    assert "http://127.0.0.1:9/p.git" in str(caught.value)
