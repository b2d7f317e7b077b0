"""Writing to the manifests branch: shallow checkout, one commit, race-safe push.

:func:`publish` clones the branch into a temporary folder, lets a callback edit the work tree,
commits with the tool's identity and pushes. When another pipeline pushed first, it fetches the new
tip, runs the callback again on it and retries with jittered backoff, so concurrent pipelines lose
nothing. Credentials travel to git through a credential helper that reads them from the child's
environment: they are never written into a URL on disk, an argument list or a log line.

A :class:`Writer` says how the commit is made and where it goes: its author, an SSH key that signs
it (:mod:`homelab_release.signing`), and in merge-request mode (:class:`MergeRequest`) a branch
``homelab-release/<environment>`` instead of the manifests branch, pushed with GitLab's push
options so that GitLab opens the merge request, or updates the one already open: a later run
builds on that branch and pushes with a lease on the commit it saw there.
"""

from __future__ import annotations

import logging
import random
import re
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
    "MERGE_REQUEST_PREFIX",
    "Author",
    "ManifestsRemote",
    "MergeRequest",
    "Published",
    "PublishedResult",
    "Writer",
    "checkout",
    "clone",
    "commit_message",
    "parse_trailers",
    "publish",
    "refresh",
    "split_credentials",
    "subject_of",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_AUTHOR = "homelab-release <homelab-release@localhost>"
#: Merge-request mode pushes to ``homelab-release/<environment>``.
MERGE_REQUEST_PREFIX = "homelab-release/"
_TRAILER = re.compile(r"^(?P<key>[A-Za-z0-9][A-Za-z0-9-]*): (?P<value>.*)$")


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
    """What :func:`publish` did: the pushed commit (None when nothing changed), the attempts,
    and the branch it went to (the manifests branch, or a merge request's source branch)."""

    commit: str | None
    attempts: int
    branch: str = ""
    merge_request: bool = False


class PublishedResult:
    """What a workflow result that may have written the manifests branch has in common: its
    ``published`` field and the :attr:`commit` it made."""

    published: Published | None

    @property
    def commit(self) -> str | None:
        """The manifests commit, None when nothing was committed."""
        return self.published.commit if self.published else None


@dataclass(frozen=True)
class MergeRequest:
    """Merge-request mode: commits go to ``source`` and GitLab opens a merge request into
    ``target`` (the manifests branch) when the push carries :meth:`push_options`."""

    source: str
    target: str
    title: str
    labels: tuple[str, ...] = ()

    @classmethod
    def for_environment(
        cls, environment: str, target: str, labels: tuple[str, ...] = ()
    ) -> MergeRequest:
        """The merge request of one environment: branch ``homelab-release/<environment>``."""
        title = f"{environment}: image updates from homelab-release"
        return cls(f"{MERGE_REQUEST_PREFIX}{environment}", target, title, labels)

    def push_options(self) -> tuple[str, ...]:
        """GitLab's push options: open (or update) the merge request, remove the branch on merge."""
        options = [
            "merge_request.create",
            f"merge_request.target={self.target}",
            f"merge_request.title={self.title}",
            "merge_request.remove_source_branch",
        ]
        options += [f"merge_request.label={label}" for label in self.labels]
        return tuple(_one_line(option) for option in options)


def _one_line(option: str) -> str:
    """A push option cannot hold a line break: git refuses it."""
    return " ".join(option.splitlines())


@dataclass(frozen=True)
class Writer:
    """How :func:`publish` commits and where it pushes: the author, an optional SSH key that
    signs the commit (the path of a checked private copy, see :mod:`homelab_release.signing`),
    and an optional merge request (None: push to the manifests branch)."""

    author: str = DEFAULT_AUTHOR
    signing_key: Path | None = None
    merge_request: MergeRequest | None = None


def commit_message(subject: str, body: str = "", trailers: Mapping[str, str] | None = None) -> str:
    """A commit message with ``[skip ci]`` in the subject and ``Key: value`` trailers."""
    parts = [f"{subject} [skip ci]"]
    if body:
        parts.append(body.rstrip("\n"))
    lines = [f"{key}: {value}" for key, value in (trailers or {}).items() if value]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` trailers of a commit message: its last paragraph, when every line of
    it is one (the first of a repeated key wins); {} otherwise."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        match = _TRAILER.match(line.strip())
        if match is None:
            return {}
        found.setdefault(match["key"], match["value"].strip())
    return found


def subject_of(message: str) -> str:
    """The first line of a commit message, without ``[skip ci]``."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first.replace("[skip ci]", "").strip()


@contextmanager
def checkout(remote: ManifestsRemote, *, history: bool = False) -> Iterator[Path]:
    """A checkout of the manifests branch in a temporary folder, removed afterwards: shallow,
    or with the branch's whole history (``history``, for reading earlier states)."""
    with tempfile.TemporaryDirectory(prefix="homelab-release-manifests-") as tmp:
        yield clone(remote, Path(tmp) / "manifests", history=history)


def publish(
    tree: Path,
    remote: ManifestsRemote,
    apply: Callable[[Path], T],
    message: Callable[[T], str],
    *,
    writer: Writer | None = None,
    attempts: int = 8,
    backoff: float = 0.5,
) -> tuple[T, Published]:
    """Run ``apply`` on the checkout ``tree``, commit and push; retry when another push won.

    ``apply`` must be idempotent: after a rejected push it runs again on the freshly fetched branch
    (so a concurrent pipeline's update is kept, never overwritten). Returns the last ``apply``
    result and what was pushed; when ``apply`` changes nothing, nothing is committed.
    ``writer`` (default: :class:`Writer` with the default author) signs the commit and, in merge-request mode, moves
    ``tree`` to the merge request's branch when it exists and pushes there instead.
    """
    writer = writer or Writer()
    identity = Author.parse(writer.author)
    request = writer.merge_request
    branch = request.source if request else remote.branch
    for attempt in range(1, attempts + 1):
        lease = _start_merge_request(tree, remote, request) if request else None
        result = apply(tree)
        if not git.stage_all(tree):
            log.info("manifests: nothing to commit on %s", branch)
            return result, Published(None, attempt, branch, request is not None)
        sha = git.commit(
            tree, message(result), name=identity.name, email=identity.email,
            signing_key=writer.signing_key,
        )  # fmt: skip
        if _push(tree, remote, request, lease):
            log.info("manifests: pushed %s to %s of %s", sha[:12], branch, remote.shown)
            if request:
                log.info(
                    "manifests: GitLab opens or updates the merge request into %s", request.target
                )
            return result, Published(sha, attempt, branch, request is not None)
        if attempt == attempts:
            break
        delay = min(backoff * 2 ** (attempt - 1), 8.0) * random.uniform(0.5, 1.5)  # noqa: S311
        log.info("manifests: %s moved on; retrying in %.1fs", branch, delay)
        time.sleep(delay)
        refresh(tree, remote)
    raise GitError(
        f"could not push to {branch} of {remote.shown} after {attempts} attempts: other "
        "pipelines kept pushing first; run the job again"
    )


def _start_merge_request(tree: Path, remote: ManifestsRemote, request: MergeRequest) -> str:
    """Build on the merge request's branch when it exists (an open merge request: a second run
    updates it); else on the manifests branch as checked out. Returns the lease for the push:
    the branch's SHA, or "" (it must not exist yet)."""
    try:
        seen = git.fetch_branch(tree, request.source, remote.transport)
    except CommandError as err:
        raise GitError(
            f"cannot read branch {request.source} of {remote.shown}: {_last_line(err.output)}"
        ) from None
    if seen is None:
        return ""
    log.info("manifests: %s exists (an open merge request): adding to it", request.source)
    git.reset_to(tree, seen)
    return seen


def clone(remote: ManifestsRemote, target: Path, *, history: bool = False) -> Path:
    """Single-branch clone of the manifests branch into ``target``: shallow (depth 1), or with
    the whole history of the branch (``history``)."""
    depth = None if history else 1
    try:
        git.clone_branch(remote.url, target, remote.branch, remote.transport, depth=depth)
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


def _push(
    tree: Path, remote: ManifestsRemote, request: MergeRequest | None, lease: str | None
) -> bool:
    """Push HEAD to the branch (or the merge request's); False when the remote moved on (the
    caller retries)."""
    branch = request.source if request else remote.branch
    options = request.push_options() if request else ()
    try:
        return git.push_head(tree, branch, remote.transport, push_options=options, lease=lease)
    except CommandError as err:
        raise GitError(
            f"push to {branch} of {remote.shown} failed: {_last_line(err.output, err.returncode)}; "
            "check that the token (GITLAB_TOKEN) may push to that branch"
        ) from None


def refresh(tree: Path, remote: ManifestsRemote) -> None:
    """Drop local changes and commits and move to the remote branch's current tip."""
    git.reset_to_fetched(tree, remote.branch, remote.transport)


def _last_line(output: str, returncode: int | None = None) -> str:
    if output.strip():
        return output.strip().splitlines()[-1]
    return f"git exited with {returncode} and no output" if returncode is not None else "no output"
