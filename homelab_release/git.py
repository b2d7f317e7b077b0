"""Small helpers over the ``git`` command line (machine-readable output, one process helper)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from homelab_release import proc
from homelab_release.errors import CommandError, GitError
from homelab_release.secrets import HiddenText

ZERO_SHA = "0" * 40

# Git never prompts (a job has no terminal) and speaks English (its messages are parsed).
_NEUTRAL_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_SHA = re.compile(r"^[0-9a-f]{40}$")
FETCH_DEPTH = 50


def git(
    repo: Path | str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = proc.DEFAULT_TIMEOUT,
    secrets: Iterable[str | HiddenText] = (),
    input_text: str | None = None,
) -> str:
    """Run ``git -C repo ARGS`` and return its stdout."""
    return proc.run(
        ("git", "-C", str(repo), *args),
        env={**_NEUTRAL_ENV, **(env or {})},
        timeout=timeout,
        secrets=secrets,
        input_text=input_text,
    )


def toplevel(path: Path | str) -> Path:
    """The root of the work tree holding ``path``; :class:`GitError` when it is not in one."""
    try:
        return Path(git(path, "rev-parse", "--show-toplevel").strip())
    except CommandError as err:
        raise GitError(
            f"{path} is not a git repository; run inside the monorepo's clone or pass --repo"
        ) from err


def resolve(repo: Path | str, ref: str) -> str | None:
    """The commit SHA ``ref`` names in ``repo``, or None when it names no commit."""
    try:
        out = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except CommandError:
        return None
    return out.strip() or None


def is_shallow(repo: Path | str) -> bool:
    """Whether ``repo`` is a shallow clone."""
    return git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"


def is_commit_sha(text: str) -> bool:
    """Whether ``text`` is a full (40 hex digits) commit SHA."""
    return bool(_SHA.match(text))


def is_ancestor(repo: Path | str, older: str, newer: str) -> bool:
    """Whether commit ``older`` is an ancestor of commit ``newer`` (fetching ``newer`` if missing).

    False when either commit cannot be found, even after fetching ``newer`` from ``origin``.
    """
    if resolve(repo, newer) is None:
        try:
            git(repo, "fetch", "--quiet", f"--depth={FETCH_DEPTH}", "origin", newer, timeout=120)
        except CommandError:
            return False
    try:
        git(repo, "merge-base", "--is-ancestor", older, newer)
    except CommandError:
        return False
    return True
