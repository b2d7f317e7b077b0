"""Writing to the manifests branch: shallow checkout, one commit, race-safe push.

:func:`publish` clones the branch into a temporary folder, lets a callback edit the work tree,
commits with the tool's identity and pushes. When another pipeline pushed first, it fetches the new
tip, runs the callback again on it and retries with jittered backoff, so concurrent pipelines lose
nothing. Credentials travel to git through a credential helper that reads them from the child's
environment: they are never written into a URL on disk, an argument list or a log line.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from homelab_release import git
from homelab_release.errors import CommandError, GitError
from homelab_release.secrets import GitCredentials, HiddenText, redact_url

__all__ = [
    "DEFAULT_AUTHOR",
    "Author",
    "ManifestsRemote",
    "Published",
    "checkout",
    "clone",
    "commit_message",
    "publish",
    "refresh",
    "split_credentials",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_AUTHOR = "homelab-release <homelab-release@localhost>"


@dataclass(frozen=True)
class ManifestsRemote:
    """Where the manifests live: a credential-free URL, a branch and optional credentials."""

    url: str
    branch: str
    credentials: GitCredentials | None = None

    @classmethod
    def from_url(
        cls, url: str, branch: str, credentials: GitCredentials | None = None
    ) -> ManifestsRemote:
        """Split credentials out of ``url``; explicit ``credentials`` win over URL credentials."""
        clean, embedded = split_credentials(url)
        return cls(clean, branch, credentials or embedded)

    @property
    def shown(self) -> str:
        """The URL as messages show it."""
        return redact_url(self.url)

    @property
    def transport(self) -> git.Transport:
        """How git reaches this remote: its credentials, masked in every output."""
        return git.Transport(self.credentials)


def split_credentials(url: str) -> tuple[str, GitCredentials | None]:
    """``https://user:token@host/p.git`` -> (``https://host/p.git``, credentials)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=host))
    if not password:
        return clean, None
    return clean, GitCredentials(unquote(user), HiddenText(unquote(password)))


@dataclass(frozen=True)
class Author:
    """A commit identity parsed from ``Name <email>``."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Author:
        """Read ``Name <email>``; :class:`GitError` for anything else."""
        name, sep, rest = text.partition("<")
        if not sep or not rest.endswith(">") or not name.strip():
            raise GitError(f"commit author {text!r} is not of the form 'Name <email>'")
        return cls(name.strip(), rest[:-1].strip())


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did: the pushed commit (None when nothing changed) and the attempts."""

    commit: str | None
    attempts: int


def commit_message(subject: str, body: str = "", trailers: Mapping[str, str] | None = None) -> str:
    """A commit message with ``[skip ci]`` in the subject and ``Key: value`` trailers."""
    parts = [f"{subject} [skip ci]"]
    if body:
        parts.append(body.rstrip("\n"))
    lines = [f"{key}: {value}" for key, value in (trailers or {}).items() if value]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@contextmanager
def checkout(remote: ManifestsRemote) -> Iterator[Path]:
    """A shallow checkout of the manifests branch in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="homelab-release-manifests-") as tmp:
        yield clone(remote, Path(tmp) / "manifests")


def publish(
    tree: Path,
    remote: ManifestsRemote,
    apply: Callable[[Path], T],
    message: Callable[[T], str],
    *,
    author: str = DEFAULT_AUTHOR,
    attempts: int = 8,
    backoff: float = 0.5,
) -> tuple[T, Published]:
    """Run ``apply`` on the checkout ``tree``, commit and push; retry when another push won.

    ``apply`` must be idempotent: after a rejected push it runs again on the freshly fetched branch
    (so a concurrent pipeline's update is kept, never overwritten). Returns the last ``apply``
    result and what was pushed; when ``apply`` changes nothing, nothing is committed.
    """
    identity = Author.parse(author)
    for attempt in range(1, attempts + 1):
        result = apply(tree)
        if not git.stage_all(tree):
            log.info("manifests: nothing to commit on %s", remote.branch)
            return result, Published(None, attempt)
        sha = git.commit(tree, message(result), name=identity.name, email=identity.email)
        if _push(tree, remote):
            log.info("manifests: pushed %s to %s of %s", sha[:12], remote.branch, remote.shown)
            return result, Published(sha, attempt)
        if attempt == attempts:
            break
        delay = min(backoff * 2 ** (attempt - 1), 8.0) * random.uniform(0.5, 1.5)  # noqa: S311
        log.info("manifests: %s moved on; retrying in %.1fs", remote.branch, delay)
        time.sleep(delay)
        refresh(tree, remote)
    raise GitError(
        f"could not push to {remote.branch} of {remote.shown} after {attempts} attempts: other "
        "pipelines kept pushing first; run the job again"
    )


def clone(remote: ManifestsRemote, target: Path) -> Path:
    """Shallow, single-branch clone of the manifests branch into ``target``."""
    try:
        git.clone_branch(remote.url, target, remote.branch, remote.transport)
    except CommandError as err:
        raise GitError(_clone_failure(remote, err.output)) from None
    return target


def _clone_failure(remote: ManifestsRemote, output: str) -> str:
    if "not found in upstream" in output or "Remote branch" in output:
        return (
            f"branch {remote.branch!r} does not exist in {remote.shown}; create it "
            f"(git push origin HEAD:refs/heads/{remote.branch}) or set manifests.branch"
        )
    return (
        f"cannot clone the manifests repository {remote.shown} (branch {remote.branch}): "
        f"{_last_line(output)}; "
        "check manifests.url and that GITLAB_TOKEN can read and write it"
    )


def _push(tree: Path, remote: ManifestsRemote) -> bool:
    """Push HEAD to the branch; False when the remote moved on (the caller retries)."""
    try:
        return git.push_head(tree, remote.branch, remote.transport)
    except CommandError as err:
        raise GitError(
            f"push to {remote.branch} of {remote.shown} failed: {_last_line(err.output)}; "
            "check that the token (GITLAB_TOKEN) may push to that branch"
        ) from None


def refresh(tree: Path, remote: ManifestsRemote) -> None:
    """Drop local changes and commits and move to the remote branch's current tip."""
    git.reset_to_fetched(tree, remote.branch, remote.transport)


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1] if output.strip() else "no output"
