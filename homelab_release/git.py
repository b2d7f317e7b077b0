"""Small helpers over the ``git`` command line (machine-readable output, one process helper)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from homelab_release import proc
from homelab_release.errors import CommandError, GitError
from homelab_release.secrets import HiddenText

ZERO_SHA = "0" * 40

# Commits made by the tool never depend on the user's or runner's global git configuration.
_NEUTRAL_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


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
