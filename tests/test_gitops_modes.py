"""Merge-request mode and signed commits against real remotes: push options a pre-receive hook
records (over a path and through the smart-HTTP server), leases, and SSH signatures that
``git verify-commit`` checks with an allowed-signers file."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from homelab_release.errors import ConfigError, GitError
from homelab_release.git import parse_git_version, require_git
from homelab_release.gitops import (
    ManifestsRemote,
    MergeRequest,
    Writer,
    checkout,
    commit_message,
    parse_trailers,
    publish,
    subject_of,
)
from homelab_release.secrets import GitCredentials, HiddenText
from homelab_release.signing import check_signing_key, signing_key
from tests.githttp import git_http_server
from tests.gitrepo import GitRepo, run_git

BRANCH = "k8s-manifests"
TOKEN = "glpat-MergeRequestT0ken"
# Records every push's options, one line per option and a "--" line after each push.
HOOK = """#!/bin/sh
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
  eval "echo \\"\\$GIT_PUSH_OPTION_$i\\"" >> "$RECORD"
  i=$((i + 1))
done
echo -- >> "$RECORD"
"""


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote that advertises push options and records them with a pre-receive hook."""
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    run_git(bare, "config", "receive.advertisePushOptions", "true")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(HOOK.replace("$RECORD", str(tmp_path / "push-options.txt")))
    hook.chmod(0o755)
    seed = GitRepo.init(tmp_path / "seed", branch=BRANCH)
    seed.write("k8s/README", "manifests\n")
    seed.commit("initial")
    seed.git("push", "-q", str(bare), f"HEAD:refs/heads/{BRANCH}")
    return bare


def pushes(remote: Path) -> list[list[str]]:
    """The options of each push the hook saw (the seed's push had none)."""
    record = remote.parent / "push-options.txt"
    text = record.read_text() if record.exists() else ""
    blocks = text.split("--\n")[:-1]
    return [block.splitlines() for block in blocks]


def writer(name: str, text: str) -> Callable[[Path], str]:
    def apply(tree: Path) -> str:
        (tree / name).write_text(text)
        return name

    return apply


REQUEST = MergeRequest.for_environment("prod", BRANCH, ("release", "prod"))


def test_merge_request_push_carries_gitlab_push_options(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    before = run_git(remote, "rev-parse", BRANCH)
    with checkout(target) as tree:
        _, published = publish(
            tree, target, writer("a.txt", "a\n"), str, writer=Writer(merge_request=REQUEST)
        )
    assert published.branch == "homelab-release/prod"
    assert published.merge_request
    assert run_git(remote, "rev-parse", BRANCH) == before, "the manifests branch is left alone"
    assert run_git(remote, "rev-parse", "homelab-release/prod").strip() == published.commit
    assert run_git(remote, "show", "homelab-release/prod:a.txt") == "a\n"
    assert pushes(remote)[-1] == [
        "merge_request.create",
        f"merge_request.target={BRANCH}",
        "merge_request.title=prod: image updates from homelab-release",
        "merge_request.remove_source_branch",
        "merge_request.label=release",
        "merge_request.label=prod",
    ]


def test_a_second_run_updates_the_open_merge_request_branch(remote: Path) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    mode = Writer(merge_request=REQUEST)
    with checkout(target) as tree:
        _, first = publish(tree, target, writer("a.txt", "a\n"), str, writer=mode)
    with checkout(target) as tree:
        _, second = publish(tree, target, writer("b.txt", "b\n"), str, writer=mode)
    branch = "homelab-release/prod"
    assert second.commit is not None
    assert run_git(remote, "rev-parse", f"{second.commit}^").strip() == first.commit
    assert run_git(remote, "show", f"{branch}:a.txt") == "a\n", "built on what was there"
    assert run_git(remote, "show", f"{branch}:b.txt") == "b\n"
    assert run_git(remote, "branch", "--list", "homelab-release/*").split() == [branch]


def test_the_lease_refuses_a_branch_that_moved_and_the_retry_keeps_both(
    remote: Path, tmp_path: Path
) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    mode = Writer(merge_request=REQUEST)
    with checkout(target) as tree:
        publish(tree, target, writer("a.txt", "a\n"), str, writer=mode)
    rounds = 0

    def apply(tree: Path) -> str:
        nonlocal rounds
        rounds += 1
        if rounds == 1:  # someone else pushes to the merge request's branch meanwhile
            other = tmp_path / "other"
            run_git(tmp_path, "clone", "-q", "--branch", REQUEST.source, str(remote), str(other))
            (other / "c.txt").write_text("c\n")
            run_git(other, "add", "c.txt")
            run_git(other, "commit", "-qm", "reviewer's fix")
            run_git(other, "push", "-q", "origin", f"HEAD:{REQUEST.source}")
        return writer("b.txt", "b\n")(tree)

    with checkout(target) as tree:
        _, published = publish(tree, target, apply, str, writer=mode, backoff=0.01)
    assert published.attempts == 2
    files = run_git(remote, "ls-tree", "--name-only", REQUEST.source).split()
    assert {"a.txt", "b.txt", "c.txt"} <= set(files), "the reviewer's commit is kept"


def test_push_options_go_through_the_smart_http_server(remote: Path) -> None:
    with git_http_server(remote.parent, "oauth2", TOKEN) as base:
        target = ManifestsRemote.from_url(
            f"{base}/remote.git", BRANCH, GitCredentials("oauth2", HiddenText(TOKEN))
        )
        with checkout(target) as tree:
            _, published = publish(
                tree, target, writer("a.txt", "a\n"), str, writer=Writer(merge_request=REQUEST)
            )
    assert published.commit is not None
    assert pushes(remote)[-1][:2] == ["merge_request.create", f"merge_request.target={BRANCH}"]


def test_a_remote_without_push_options_is_a_clear_error(remote: Path) -> None:
    run_git(remote, "config", "receive.advertisePushOptions", "false")
    target = ManifestsRemote(str(remote), BRANCH)
    with checkout(target) as tree, pytest.raises(GitError, match="does not take push options"):
        publish(tree, target, writer("a.txt", "a\n"), str, writer=Writer(merge_request=REQUEST))
    assert "homelab-release/prod" not in run_git(remote, "branch", "--list")


def test_push_options_hold_no_line_break() -> None:
    request = MergeRequest("homelab-release/x", BRANCH, "two\nlines", ("a\nb",))
    assert all("\n" not in option for option in request.push_options())


# -- trailers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "trailers"),
    [
        (
            commit_message("s", "body", {"Source-Commit": "abc", "Pipeline": "u"}),
            {"Source-Commit": "abc", "Pipeline": "u"},
        ),
        (commit_message("s", "", {"Rollback-Of": "abc"}), {"Rollback-Of": "abc"}),
        ("subject only\n", {}),
        ("s\n\nnot: a trailer block\nbecause this line is prose\n", {}),
        ("s\n\nKey: one\nKey: two\n", {"Key": "one"}),
        ("s\n\nbody\n\nA-B: x: y\n", {"A-B": "x: y"}),
    ],
)
def test_parse_trailers(message: str, trailers: dict[str, str]) -> None:
    assert parse_trailers(message) == trailers


def test_subject_drops_skip_ci() -> None:
    assert subject_of(commit_message("prod: release 1.0.0")) == "prod: release 1.0.0"


# -- signing ---------------------------------------------------------------------------------


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, str]:
    """An ed25519 key without passphrase from ssh-keygen: its path and its public half."""
    key = tmp_path / "keys" / "signing"
    key.parent.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(key)], check=True
    )
    return key, key.with_suffix(".pub").read_text().strip()


def verify(
    remote: Path, commit: str, public: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'homelab-release@localhost namespaces="git" {public}\n')
    return subprocess.run(
        ["git", "-C", str(remote), "-c", f"gpg.ssh.allowedSignersFile={signers}",
         "verify-commit", commit],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_commits_are_signed_with_the_key(
    remote: Path, tmp_path: Path, keypair: tuple[Path, str]
) -> None:
    key, public = keypair
    key.chmod(0o644)  # as a file variable may be written: the private copy is what git uses
    target = ManifestsRemote(str(remote), BRANCH)
    with signing_key(key, setting="manifests.signing_key") as copy, checkout(target) as tree:
        assert copy is not None
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        _, published = publish(
            tree, target, writer("a.txt", "a\n"), str, writer=Writer(signing_key=copy)
        )
    assert not copy.parent.exists(), "the private copy is removed"
    assert published.commit is not None
    done = verify(remote, published.commit, public, tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'Good "git" signature for homelab-release@localhost' in done.stderr


def test_an_unsigned_commit_fails_verification(
    remote: Path, tmp_path: Path, keypair: tuple[Path, str]
) -> None:
    target = ManifestsRemote(str(remote), BRANCH)
    with checkout(target) as tree:
        _, published = publish(tree, target, writer("a.txt", "a\n"), str)
    assert published.commit is not None
    assert verify(remote, published.commit, keypair[1], tmp_path).returncode != 0


def test_another_key_does_not_verify(
    remote: Path, tmp_path: Path, keypair: tuple[Path, str]
) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    target = ManifestsRemote(str(remote), BRANCH)
    with signing_key(other, setting="k") as copy, checkout(target) as tree:
        _, published = publish(
            tree, target, writer("a.txt", "a\n"), str, writer=Writer(signing_key=copy)
        )
    assert published.commit is not None
    assert verify(remote, published.commit, keypair[1], tmp_path).returncode != 0


@pytest.fixture
def unreadable(tmp_path: Path, keypair: tuple[Path, str]) -> Iterator[Path]:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key = keypair[0]
    key.chmod(0)
    yield key
    key.chmod(0o600)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, key: tmp / "missing", r"manifests\.signing_key = '.*missing': no such file"),
        (lambda tmp, key: tmp, r"cannot be read"),
        (lambda tmp, key: key.with_suffix(".pub"), r"is not an SSH private key"),
    ],
    ids=["missing", "folder", "public-half"],
)
def test_bad_keys_are_clear_errors(
    tmp_path: Path,
    keypair: tuple[Path, str],
    make: Callable[[Path, Path], Path],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_signing_key(make(tmp_path, keypair[0]), setting="manifests.signing_key")


def test_a_key_with_a_passphrase_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-phrase", "-f", str(key)], check=True
    )
    with pytest.raises(ConfigError, match="passphrase") as refused:
        check_signing_key(key, setting="HOMELAB_RELEASE_SIGNING_KEY")
    assert "PRIVATE KEY" not in str(refused.value)


def test_the_key_never_reaches_a_log(
    tmp_path: Path, keypair: tuple[Path, str], caplog: pytest.LogCaptureFixture, remote: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    target = ManifestsRemote(str(remote), BRANCH)
    with signing_key(keypair[0], setting="k") as copy, checkout(target) as tree:
        publish(tree, target, writer("a.txt", "a\n"), str, writer=Writer(signing_key=copy))
    secret = keypair[0].read_text().splitlines()[1]
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("git version 2.39.5\n", "2.39.5"),
        ("git version 2.39.3 (Apple Git-145)\n", "2.39.3"),
        ("git version 2.45.1.windows.1\n", "2.45.1"),
        ("git version 2.34\n", "2.34"),
        ("nothing here", None),
    ],
)
def test_parse_git_version(output: str, version: str | None) -> None:
    found = parse_git_version(output)
    assert (str(found) if found else None) == version


def test_an_old_git_is_named_with_the_minimum() -> None:
    with pytest.raises(GitError, match=r"needs git 2\.34 or later; this machine has git 2\.30\.2"):
        require_git("2.34", "signing", Version("2.30.2"))
    require_git("2.34", "signing", Version("2.34.0"))
