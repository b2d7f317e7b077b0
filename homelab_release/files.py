"""Atomic file replacement: readers see the old content or the new, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["NEW_FILE_MODE", "write_atomic"]

NEW_FILE_MODE = 0o644


def write_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` (through a symlink, if it is one) with ``text``.

    The text goes to a unique temporary file in the same folder, is flushed to disk and renamed
    over the target; an existing file keeps its mode. A failure leaves no temporary file behind.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.exists() else NEW_FILE_MODE
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
