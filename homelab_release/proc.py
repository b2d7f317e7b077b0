"""The one helper for running external programs.

Commands are argv tuples (never shell strings), always run with a timeout. :func:`run` fails with
a :class:`~homelab_release.errors.CommandError` that carries the command and its redacted output;
:func:`attempt` is the same run for commands whose exit code is an answer (``git merge-base
--is-ancestor``, a probe that may find nothing): it returns a :class:`Completed` instead.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypedDict, Unpack, cast

from homelab_release.context import read_environment
from homelab_release.errors import CommandError, ReleaseError
from homelab_release.secrets import HiddenText, redact

__all__ = ["DEFAULT_TIMEOUT", "Completed", "RunOptions", "attempt", "run", "stream"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end: the exit code and what it printed.

    ``argv`` is the command as messages show it (secrets masked); ``stdout`` and ``stderr`` are
    the raw text, for parsing, and stay out of the repr.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether the command exited with 0."""
        return self.returncode == 0

    def check(self, secrets: Iterable[str | HiddenText] = (), hint: str = "") -> str:
        """``stdout``; :meth:`error` raised when the exit code is not 0."""
        if not self.ok:
            raise self.error(secrets, hint)
        return self.stdout

    def error(self, secrets: Iterable[str | HiddenText] = (), hint: str = "") -> CommandError:
        """The :class:`CommandError` for this run, its output with ``secrets`` masked."""
        output = redact(self.stdout + self.stderr, tuple(secrets))
        return CommandError(self.argv, self.returncode, output, hint)


class RunOptions(TypedDict, total=False):
    """The keyword options of :func:`run`: those of :func:`attempt`."""

    cwd: Path | str | None
    env: Mapping[str, str] | None
    timeout: float
    input_text: str | None
    secrets: Iterable[str | HiddenText]
    hint: str


def run(argv: Sequence[str], **options: Unpack[RunOptions]) -> str:
    """Run ``argv`` and return its stdout; raise :class:`CommandError` on a non-zero exit.

    ``env`` is added to the current environment. ``secrets`` are masked in every log line and
    error message; URL credentials are always masked. The options are :func:`attempt`'s.
    """
    secrets = options["secrets"] = tuple(options.get("secrets", ()))
    return attempt(argv, **options).check(secrets, options.get("hint", ""))


def attempt(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input_text: str | None = None,
    secrets: Iterable[str | HiddenText] = (),
    hint: str = "",
) -> Completed:
    """Run ``argv`` like :func:`run`, but return a non-zero exit as a :class:`Completed`.

    Only the exit code is left to the caller: a command that cannot start or runs past
    ``timeout`` still raises (:class:`ReleaseError`, :class:`CommandError` with ``hint``).
    """
    argv = tuple(argv)
    secrets = tuple(secrets)
    shown = tuple(redact(arg, secrets) for arg in argv)
    full_env = {**read_environment(), **env} if env else None
    log.debug("running %s", " ".join(shown))
    try:
        returncode, stdout, stderr = _communicate(argv, cwd, full_env, input_text, timeout)
    except subprocess.TimeoutExpired as err:
        output = _decode(err.stdout) + _decode(err.stderr)
        note = f"timed out after {timeout:g}s" + (f"; {hint}" if hint else "")
        raise CommandError(shown, -1, redact(output, secrets), note) from None
    if returncode != 0:
        log.debug("%s exited %d:\n%s", shown[0], returncode, redact(stdout + stderr, secrets))
    return Completed(shown, returncode, stdout, stderr)


def _communicate(
    argv: tuple[str, ...],
    cwd: Path | str | None,
    env: Mapping[str, str] | None,
    input_text: str | None,
    timeout: float,
) -> tuple[int, str, str]:
    """``subprocess.run(argv, capture_output=True, text=True, timeout=timeout)``, minus its
    polling: exit code, stdout and stderr; the process is killed when the timeout passes."""
    stdin = subprocess.PIPE if input_text is not None else None
    pipe = subprocess.PIPE
    try:
        # Git prints paths as raw bytes: a name that is not UTF-8 must not crash the reading.
        child = _Process(
            argv, cwd=cwd, env=env, stdin=stdin, stdout=pipe, stderr=pipe,
            encoding="utf-8", errors="surrogateescape",
        )  # fmt: skip
    except (FileNotFoundError, PermissionError) as err:
        if err.filename != argv[0]:
            raise  # the working directory, not the program
        raise ReleaseError(
            f"Cannot find command {argv[0]!r}: is it installed and on PATH?"
        ) from None
    with child:
        try:
            stdout, stderr = child.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
    return child.returncode, stdout, stderr


class _Process(subprocess.Popen[str]):
    """A ``Popen`` whose ``wait(timeout)`` sleeps until the child exits.

    CPython's ``wait`` with a timeout polls after 1, 2, 4 ... ms, and a child has usually closed
    its output a moment before it exits, so each command paid about a millisecond of sleep.
    """

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None and self.returncode is None:
            deadline = time.monotonic() + timeout
            _sleep_until_exit(self.pid, timeout)
            timeout = max(deadline - time.monotonic(), 0.0)
        return super().wait(timeout)


def _sleep_until_exit(pid: int, timeout: float) -> None:
    """Block until the (unreaped) child ``pid`` exits or ``timeout`` passes; return at once
    where pidfds are not available (``wait`` then polls as usual)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def stream(
    argv: Sequence[str],
    on_line: Callable[[str], object],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    idle_timeout: float = DEFAULT_TIMEOUT,
    secrets: Iterable[str | HiddenText] = (),
) -> int:
    """Run ``argv``, hand each line of its output (stdout and stderr merged) to ``on_line`` as it
    comes, and return its exit code.

    For long jobs whose progress matters (a build): the limit is on silence, not on the total
    time; a program that prints nothing for ``idle_timeout`` seconds is killed and a
    :class:`CommandError` raised. ``env`` is added to the current environment, or with
    ``inherit_env=False`` is the whole environment of the program. ``secrets`` are masked in the
    logged command line (the lines themselves go to ``on_line`` as they are).
    """
    argv = tuple(argv)
    shown = tuple(redact(arg, tuple(secrets)) for arg in argv)
    full_env = (
        dict(env or {}) if not inherit_env else ({**read_environment(), **env} if env else None)
    )
    log.debug("running %s", " ".join(shown))
    try:
        child = subprocess.Popen(
            argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    except (FileNotFoundError, PermissionError) as err:
        if err.filename != argv[0]:
            raise
        raise ReleaseError(
            f"Cannot find command {argv[0]!r}: is it installed and on PATH?"
        ) from None
    with child:
        output = cast("IO[bytes]", child.stdout)  # a pipe: stdout=PIPE
        if not _pump(output.fileno(), on_line, idle_timeout):
            child.kill()
            child.wait()
            note = f"printed nothing for {idle_timeout:g}s and was stopped"
            raise CommandError(shown, -1, "", note)
        return child.wait()


def _pump(fd: int, on_line: Callable[[str], object], idle_timeout: float) -> bool:
    """Read ``fd`` to its end, line by line; False when it stayed silent for ``idle_timeout``."""
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], idle_timeout)
        if not ready:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", errors="replace").rstrip("\r"))
    if pending:
        on_line(pending.decode("utf-8", errors="replace").rstrip("\r"))
    return True
