"""write_atomic: complete replacement, modes, symlinks, no leftovers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from homelab_release.files import write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "build.env"
    write_atomic(target, "A=1\n")
    assert target.read_text() == "A=1\n"
    assert mode(target) == 0o644
    assert list(target.parent.iterdir()) == [target]


def test_existing_mode_and_symlink_are_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "kustomization.yaml"
    link.symlink_to(real)
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert mode(real) == 0o600


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "build.env"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "bad \udcff\n")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]
