"""The one helper for running external programs.

Commands are argv tuples (never shell strings), always run with a timeout, and fail with a
:class:`~homelab_release.errors.CommandError` that carries the command and its redacted output.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from homelab_release.errors import CommandError, ReleaseError
from homelab_release.secrets import HiddenText, redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input_text: str | None = None,
    secrets: Iterable[str | HiddenText] = (),
    hint: str = "",
) -> str:
    """Run ``argv`` and return its stdout; raise :class:`CommandError` on a non-zero exit.

    ``env`` is added to the current environment. ``secrets`` are masked in every log line and
    error message; URL credentials are always masked.
    """
    argv = tuple(argv)
    secrets = tuple(secrets)
    shown = tuple(redact(arg, secrets) for arg in argv)
    if shutil.which(argv[0]) is None:
        raise ReleaseError(f"Cannot find command {argv[0]!r}: is it installed and on PATH?")
    full_env = {**os.environ, **env} if env else None
    log.debug("running %s", " ".join(shown))
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=full_env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        output = _decode(err.stdout) + _decode(err.stderr)
        raise CommandError(
            shown, -1, redact(output, secrets), f"timed out after {timeout:g}s"
        ) from None
    if proc.returncode != 0:
        output = redact(proc.stdout + proc.stderr, secrets)
        log.debug("%s exited %d:\n%s", shown[0], proc.returncode, output)
        raise CommandError(shown, proc.returncode, output, hint)
    return proc.stdout


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
