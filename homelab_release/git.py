"""The one place that runs git: named operations over machine-readable output.

Every git process of the package starts here, through :func:`git` (raises
:class:`~homelab_release.errors.CommandError` on failure) or :func:`attempt` (the exit code is
an answer: a ref that names nothing, a fetch that may fail). Callers keep the policy (which base
to compare from, when to retry); this module knows git's options and what its output means.
Remotes are chosen by one rule, :func:`remote_name`: ``origin`` when it exists, else the first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypedDict, Unpack

from packaging.version import InvalidVersion, Version

from homelab_release import proc
from homelab_release.errors import GitError
from homelab_release.secrets import GitCredentials, HiddenText

__all__ = [
    "FETCH_DEPTH",
    "NETWORK_TIMEOUT",
    "SHA_PATTERN",
    "SSH_SIGNING_GIT",
    "ZERO_SHA",
    "GitOptions",
    "Pair",
    "Revision",
    "Transport",
    "attempt",
    "changed_files",
    "clone_branch",
    "commit",
    "commit_time",
    "commit_times",
    "fetch",
    "fetch_branch",
    "file_history",
    "git",
    "git_version",
    "head_commit",
    "is_ancestor",
    "is_commit_sha",
    "is_shallow",
    "merge_base",
    "parse_git_version",
    "push_head",
    "remote_name",
    "remote_url",
    "require_git",
    "reset_to",
    "reset_to_fetched",
    "resolve",
    "resolve_all",
    "resolve_pair",
    "stage_all",
    "toplevel",
    "try_changed_files",
    "uncommitted",
]

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
#: A full object name: 40 hex digits (SHA-1), or 64 in a SHA-256 repository.
SHA_PATTERN = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
#: How deep :func:`is_ancestor` fetches a commit that is not in the clone.
FETCH_DEPTH = 50
#: Timeout of the remote operations that must not hold up a job: clone, push, their fetch and
#: the fetch of :func:`is_ancestor` (a base commit or a deepening may take the default).
NETWORK_TIMEOUT = 120.0
#: The first git that signs commits with an SSH key (``gpg.format=ssh``).
SSH_SIGNING_GIT = "2.34"

# Git never prompts (a job has no terminal) and speaks English (its messages are parsed).
_NEUTRAL_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
# What `git push --porcelain` says when the branch moved on since the fetch (the caller retries).
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "stale info")
# The credential helper reads the secret from the environment of the git process it serves.
_HELPER = (
    '!f() { test "$1" = get || exit 0; echo "username=$HOMELAB_RELEASE_GIT_USERNAME"; '
    'echo "password=$HOMELAB_RELEASE_GIT_PASSWORD"; }; f'
)
# Options that keep the user's configuration from changing which paths `git diff` lists: no
# rename pairing (a rename is a deletion plus an addition), full paths from the top even in a
# subfolder with diff.relative, submodule changes listed whatever `ignore` says, no external
# diff or textconv programs, no colour codes; -z prints names raw (core.quotePath does not
# apply). diff.noprefix and the like change only patch headers, which --name-only never prints.
_DIFF_NAMES = (
    "diff", "--name-only", "-z", "--no-renames", "--no-relative", "--ignore-submodules=none",
    "--no-ext-diff", "--no-textconv", "--no-color",
)  # fmt: skip


class GitOptions(TypedDict, total=False):
    """The keyword options of :func:`git` and :func:`attempt` (see :func:`proc.attempt`)."""

    env: Mapping[str, str]  # added to the environment of the git process
    timeout: float
    secrets: Sequence[str | HiddenText]  # masked in every log line and error
    input_text: str  # the git process's stdin


def git(repo: Path | str, *args: str, **options: Unpack[GitOptions]) -> str:
    """Run ``git -C repo ARGS`` and return its stdout; :class:`CommandError` when it fails."""
    return attempt(repo, *args, **options).check(options.get("secrets", ()))


def attempt(repo: Path | str, *args: str, **options: Unpack[GitOptions]) -> proc.Completed:
    """Run ``git -C repo ARGS`` and return what it did, whatever its exit code."""
    options["env"] = {**_NEUTRAL_ENV, **options.get("env", {})}
    return proc.attempt(("git", "-C", str(repo), *args), **options)


# -- names and commits -----------------------------------------------------------------------


def is_commit_sha(text: str) -> bool:
    """Whether ``text`` is a full commit SHA (40 hex digits, or 64 in a SHA-256 repository)."""
    return SHA_PATTERN.fullmatch(text) is not None


def toplevel(path: Path | str) -> Path:
    """The root of the work tree holding ``path``; :class:`GitError` when it is not in one."""
    done = attempt(path, "rev-parse", "--show-toplevel")
    if not done.ok:
        raise GitError(
            f"{path} is not a git repository; run inside the monorepo's clone or pass its path "
            "as repo=",
            parameter="repo",
        )
    return Path(done.stdout.strip())


def resolve(repo: Path | str, ref: str) -> str | None:
    """The commit SHA ``ref`` names in ``repo``, or None when it names no commit."""
    done = attempt(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
    )
    return (done.stdout.strip() or None) if done.ok else None


def resolve_all(repo: Path | str, refs: Sequence[str]) -> list[str | None]:
    """The commits ``refs`` name (None where one names none), in one git process when all of them
    do (the common case), one by one otherwise."""
    if not any(ref.startswith("-") for ref in refs):
        found = _rev_parse(repo, *(f"{ref}^{{commit}}" for ref in refs))
        if found is not None and len(found) == len(refs):
            return list(found)
    return [resolve(repo, ref) for ref in refs]


@dataclass(frozen=True)
class Pair:
    """The commits a base and a head name, and (when asked for) their merge bases."""

    base: str
    head: str
    merge_bases: tuple[str, ...] = ()


def resolve_pair(repo: Path | str, base: str, head: str, *, merge_bases: bool) -> Pair | None:
    """Resolve ``base`` and ``head`` in one ``git rev-parse`` (``BASE...HEAD`` with
    ``merge_bases``, which also lists every merge base); None when either names no commit, or
    starts with ``-`` or holds ``..`` (a range, not a name)."""
    if any(ref.startswith("-") or ".." in ref for ref in (base, head)):
        return None
    if not merge_bases:
        found = _rev_parse(repo, f"{head}^{{commit}}", f"{base}^{{commit}}")
        return Pair(found[1], found[0]) if found and len(found) == 2 else None
    lines = _lines(repo, f"{base}^{{commit}}...{head}^{{commit}}")  # head, base, ^each merge base
    if lines is None or len(lines) < 2 or not all(line.startswith("^") for line in lines[2:]):
        return None
    names = [lines[0], lines[1], *(line[1:] for line in lines[2:])]
    if not all(map(is_commit_sha, names)):
        return None
    return Pair(names[1], names[0], tuple(names[2:]))


def _rev_parse(repo: Path | str, *args: str) -> list[str] | None:
    """The object names ``git rev-parse ARGS`` prints; None when it fails or prints anything else."""
    lines = _lines(repo, *args)
    return lines if lines is not None and all(map(is_commit_sha, lines)) else None


def _lines(repo: Path | str, *args: str) -> list[str] | None:
    done = attempt(repo, "rev-parse", *args)
    return done.stdout.split() if done.ok else None


def head_commit(repo: Path | str) -> str:
    """The SHA of the commit ``HEAD`` names; :class:`GitError` when there is none yet."""
    sha = resolve(repo, "HEAD")
    if sha is None:
        toplevel(repo)  # raises when ``repo`` is not a git work tree at all
        raise GitError(f"{repo} has no commit checked out (HEAD names none); commit first")
    return sha


def commit_time(repo: Path | str, sha: str) -> str:
    """The committer date of commit ``sha`` in strict ISO 8601 (``%cI``)."""
    done = attempt(
        repo, "show", "--no-patch", "--format=%cI", "--end-of-options", f"{sha}^{{commit}}"
    )
    if not done.ok or not done.stdout.strip():
        raise GitError(f"commit {sha} is not in {repo}; fetch it first")
    return done.stdout.strip()


def commit_times(repo: Path | str, shas: Sequence[str]) -> dict[str, int]:
    """The unix committer times of those ``shas`` that are commits of the clone, in one git
    process; the others (not full SHAs, or missing) are left out."""
    wanted = sorted({sha for sha in shas if is_commit_sha(sha)})
    if not wanted:
        return {}
    out = git(repo, "log", "--no-walk=unsorted", "--ignore-missing", "--format=%H %ct", *wanted)
    return {sha: int(time) for sha, time in (line.split() for line in out.splitlines())}


def is_shallow(repo: Path | str) -> bool:
    """Whether ``repo`` is a shallow clone."""
    return git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"


def merge_base(repo: Path | str, one: str, two: str) -> str | None:
    """The merge base git picks for two commits, or None when they have none (or one is missing)."""
    done = attempt(repo, "merge-base", "--end-of-options", one, two)
    return (done.stdout.strip() or None) if done.ok else None


def is_ancestor(repo: Path | str, older: str, newer: str) -> bool:
    """Whether commit ``older`` is an ancestor of commit ``newer`` (fetching ``newer`` if missing).

    False when either commit cannot be found, even after fetching ``newer`` from the remote.
    """
    if resolve(repo, newer) is None and not fetch(
        repo, [newer], depth=FETCH_DEPTH, timeout=NETWORK_TIMEOUT
    ):
        return False
    return attempt(repo, "merge-base", "--is-ancestor", "--end-of-options", older, newer).ok


def uncommitted(repo: Path | str, paths: Sequence[str]) -> str:
    """``git status --porcelain --untracked-files=no -- PATHS``: the tracked files under ``paths``
    (the whole tree when empty) that differ from ``HEAD``, one per line; "" when none."""
    return git(repo, "status", "--porcelain", "--untracked-files=no", "--", *paths).rstrip("\n")


# -- what changed ----------------------------------------------------------------------------


def changed_files(
    repo: Path | str, base: str, head: str, *, merge_base: bool = False
) -> tuple[str, ...]:
    """The sorted paths that differ between the trees of ``base`` (with ``merge_base``: of its
    merge base with ``head``) and ``head``: additions, edits, deletions, both sides of a rename
    and submodule moves, whatever the user's git configuration says."""
    return _paths(git(repo, *_diff_args(base, head, merge_base)))


def try_changed_files(
    repo: Path | str, base: str, head: str, *, merge_base: bool = False
) -> tuple[str, ...] | None:
    """:func:`changed_files`, or None when git refuses (a missing commit; with ``merge_base``, not
    exactly one merge base)."""
    done = attempt(repo, *_diff_args(base, head, merge_base))
    return _paths(done.stdout) if done.ok else None


def _diff_args(base: str, head: str, merge_base: bool) -> tuple[str, ...]:
    options = ("--merge-base",) if merge_base else ()
    return (*_DIFF_NAMES, *options, "--end-of-options", base, head, "--")


def _paths(out: str) -> tuple[str, ...]:
    return tuple(sorted(filter(None, out.split("\0"))))


# -- remotes ---------------------------------------------------------------------------------


def remote_name(repo: Path | str) -> str | None:
    """The remote to talk to: ``origin`` when it exists, else the first one, else None."""
    remotes = git(repo, "remote").split()
    return "origin" if "origin" in remotes else next(iter(remotes), None)


def remote_url(repo: Path | str) -> str | None:
    """The URL of :func:`remote_name`'s remote, None without remotes. It may hold credentials
    (GitLab's runner clones from a URL with the job token in it): treat it as a secret."""
    name = remote_name(repo)
    return None if name is None else git(repo, "remote", "get-url", name).strip()


def fetch(
    repo: Path | str,
    refs: Sequence[str] = (),
    *,
    depth: int | None = None,
    deepen: int | None = None,
    timeout: float = proc.DEFAULT_TIMEOUT,
) -> bool:
    """``git fetch --no-tags [--depth|--deepen] REMOTE REFS`` from :func:`remote_name`'s remote;
    False (the output logged at DEBUG) when it fails or there is no remote."""
    remote = remote_name(repo)
    if remote is None:
        return False
    options = [f"--depth={depth}"] if depth else []
    options += [f"--deepen={deepen}"] if deepen else []
    done = attempt(repo, "fetch", "--quiet", "--no-tags", *options, remote, *refs, timeout=timeout)
    return done.ok


@dataclass(frozen=True)
class Transport:
    """How git processes reach a remote: credentials through a credential helper that reads them
    from the child's environment (never a URL on disk, an argument or a log line)."""

    credentials: GitCredentials | None = None
    timeout: float = NETWORK_TIMEOUT

    @property
    def env(self) -> dict[str, str]:
        """Environment for git processes talking to the remote."""
        env = {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper",  # an empty value drops the user's helpers
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": _HELPER,
        }
        if self.credentials:
            env["HOMELAB_RELEASE_GIT_USERNAME"] = self.credentials.username
            env["HOMELAB_RELEASE_GIT_PASSWORD"] = self.credentials.password.secret
        return env

    @property
    def secrets(self) -> tuple[HiddenText, ...]:
        """The secrets to mask in every output of git."""
        return (self.credentials.password,) if self.credentials else ()


def clone_branch(
    url: str, target: Path, branch: str, transport: Transport, *, depth: int | None = 1
) -> None:
    """A single-branch clone of ``branch`` into ``target``, without tags: shallow (``depth``
    commits, default 1), or with the branch's whole history when ``depth`` is None."""
    shallow = ("--depth", str(depth)) if depth else ()
    git(
        ".", "clone", "--quiet", *shallow, "--single-branch", "--no-tags",
        "--branch", branch, "--", url, str(target),
        env=transport.env, secrets=transport.secrets, timeout=transport.timeout,
    )  # fmt: skip


def stage_all(repo: Path | str) -> bool:
    """Stage every change of the work tree; whether there is anything to commit."""
    git(repo, "add", "--all")
    return bool(git(repo, "status", "--porcelain", "-z").strip("\0"))


def commit(
    repo: Path | str, message: str, *, name: str, email: str, signing_key: Path | None = None
) -> str:
    """Commit what is staged as ``name <email>`` (author and committer), the message on stdin;
    the new commit's SHA. The runner's own set-up (signing, hooks) neither changes nor blocks it.

    With ``signing_key`` (the path of an SSH private key without passphrase), the commit is
    signed with it (``gpg.format=ssh``, for this commit only; git :data:`SSH_SIGNING_GIT` or
    later, see :func:`require_git`).
    """
    identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}
    identity |= {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
    git(
        repo, *_signing_options(signing_key), "commit", "--quiet", "--no-verify", "--file", "-",
        env=identity, input_text=message,
    )  # fmt: skip
    return head_commit(repo)


def _signing_options(signing_key: Path | None) -> tuple[str, ...]:
    if signing_key is None:
        return ("-c", "commit.gpgsign=false")
    return (
        "-c", "commit.gpgsign=true", "-c", "gpg.format=ssh", "-c", "gpg.ssh.program=ssh-keygen",
        "-c", f"user.signingkey={signing_key}",
    )  # fmt: skip


def push_head(
    repo: Path | str,
    branch: str,
    transport: Transport,
    *,
    push_options: Sequence[str] = (),
    lease: str | None = None,
) -> bool:
    """Push ``HEAD`` to ``branch`` of :func:`remote_name`'s remote. False when the remote refused
    because the branch moved on since the fetch; :class:`CommandError` for any other failure.

    ``push_options`` go to the remote (``--push-option``, e.g. GitLab's ``merge_request.create``);
    a remote that does not take push options is a :class:`GitError`. ``lease`` is the SHA the
    branch must still have for the push to replace it whatever it holds (``""``: the branch must
    not exist yet); None pushes only a fast-forward.
    """
    remote = _require_remote(repo)
    options = [f"--push-option={option}" for option in push_options]
    if lease is not None:
        options.append(f"--force-with-lease=refs/heads/{branch}:{lease}")
    done = attempt(
        repo, "push", "--quiet", "--porcelain", "--no-verify", *options, remote,
        f"HEAD:refs/heads/{branch}",
        env=transport.env, secrets=transport.secrets, timeout=transport.timeout,
    )  # fmt: skip
    if done.ok:
        return True
    output = done.stdout + done.stderr
    if "does not support push options" in output:
        raise GitError(
            "the remote does not take push options (merge_request.create ...); GitLab does: "
            'check manifests.url, or set write = "push" for this environment'
        )
    if any(marker in output for marker in _REJECTED):
        return False
    raise done.error(transport.secrets)


def fetch_branch(repo: Path | str, branch: str, transport: Transport) -> str | None:
    """Fetch the tip of ``branch`` (depth 1) from the remote; its SHA, or None when the remote
    has no such branch. The fetched commit is in the clone but nothing is checked out."""
    remote = _require_remote(repo)
    done = attempt(
        repo, "fetch", "--quiet", "--no-tags", "--depth", "1", remote, f"refs/heads/{branch}",
        env=transport.env, secrets=transport.secrets, timeout=transport.timeout,
    )  # fmt: skip
    if not done.ok:
        if "couldn't find remote ref" in done.stdout + done.stderr:
            return None
        raise done.error(transport.secrets)
    return git(repo, "rev-parse", "--verify", "FETCH_HEAD^{commit}").strip()


def reset_to(repo: Path | str, sha: str) -> None:
    """Move the checked-out branch to commit ``sha``, dropping local changes."""
    git(repo, "reset", "--quiet", "--hard", sha)


def reset_to_fetched(repo: Path | str, branch: str, transport: Transport) -> None:
    """Fetch the tip of ``branch`` and move to it, dropping local changes and commits.

    A shallow clone fetches only the tip (depth 1); a clone with the whole history keeps it.
    """
    remote = _require_remote(repo)
    depth = ("--depth", "1") if is_shallow(repo) else ()
    git(
        repo, "fetch", "--quiet", "--no-tags", *depth, remote, f"refs/heads/{branch}",
        env=transport.env, secrets=transport.secrets, timeout=transport.timeout,
    )  # fmt: skip
    git(repo, "reset", "--quiet", "--hard", "FETCH_HEAD")


# -- the git program -------------------------------------------------------------------------


def parse_git_version(text: str) -> Version | None:
    """The version in ``git --version``'s output (``git version 2.39.5``, ``2.39.3 (Apple
    Git-145)``, ``2.45.1.windows.1``), None when it names none."""
    match = re.search(r"\b(\d+(?:\.\d+){1,2})", text)
    if match is None:
        return None
    try:
        return Version(match[1])
    except InvalidVersion:  # pragma: no cover (the pattern only matches valid versions)
        return None


def git_version() -> Version | None:
    """The version of the ``git`` on PATH, None when its output names none."""
    return parse_git_version(proc.run(("git", "--version")))


def require_git(minimum: str, feature: str, found: Version | None = None) -> None:
    """:class:`GitError` naming ``minimum`` when git (``found``, default the one on PATH) is
    older than ``minimum``, which ``feature`` needs."""
    found = git_version() if found is None else found
    if found is None or found < Version(minimum):
        what = f"git {found}" if found else "a git whose version could not be read"
        raise GitError(
            f"{feature} needs git {minimum} or later; this machine has {what}: install a newer "
            "git in the job image"
        )


# -- history (GitPython) ---------------------------------------------------------------------


def _gitpython() -> ModuleType:
    """GitPython, imported when first needed: its import fails without git on PATH, and the
    package must import (and say what is missing) on such a machine too."""
    try:
        import git as gitpython  # noqa: PLC0415
    except ImportError as err:
        raise GitError(
            f"Cannot find command 'git' (GitPython: {str(err).splitlines()[0]}): is it installed "
            "and on PATH?"
        ) from None
    return gitpython


@dataclass(frozen=True)
class Revision:
    """One commit that changed a folder: its SHA, committer time (unix), message and the text
    of the asked-for files in that folder as the commit has them (absent ones left out)."""

    sha: str
    time: int
    message: str
    files: Mapping[str, str]


def file_history(
    repo: Path | str,
    folder: str,
    names: Sequence[str],
    *,
    rev: str = "HEAD",
    max_count: int | None = None,
) -> tuple[Revision, ...]:
    """The commits of ``rev``'s first-parent history that changed ``folder``, newest first, each
    with the files ``names`` of ``folder`` at that commit (read with GitPython).

    First parent: a merged merge request counts once, as its merge commit, and the commits of
    its branch are not states the branch ever had. The history stops where a shallow clone does.
    Every git process GitPython starts ends before this returns.
    """
    gitpython = _gitpython()
    found = []
    with gitpython.Repo(repo) as handle:
        commits = handle.iter_commits(rev, paths=folder, max_count=max_count, first_parent=True)
        for item in commits:
            files = {}
            for name in names:
                try:
                    blob = item.tree / f"{folder.strip('/')}/{name}"
                except KeyError:
                    continue
                files[name] = blob.data_stream.read().decode("utf-8", errors="replace")
            message = item.message if isinstance(item.message, str) else item.message.decode()
            found.append(Revision(item.hexsha, int(item.committed_date), message, files))
    return tuple(found)


def _require_remote(repo: Path | str) -> str:
    remote = remote_name(repo)
    if remote is None:
        raise GitError(f"{repo} has no remote to push to or fetch from; add one (git remote add)")
    return remote
