"""``homelab-release set-image``: a drop-in for ``kustomize edit set image``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from homelab_release.cli import main

TEXT = "resources:\n- ../base\nimages:\n- name: vote  # web\n  newTag: v1\n"


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    folder = tmp_path / "develop"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(TEXT)
    return folder


def test_sets_images_and_prints_one_line_per_change(
    overlay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["set-image", "--overlay", str(overlay), "vote=*:v2", "result=reg/result:r1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "  result: (new) -> reg/result:r1" in out
    assert "  vote: vote:v1 -> vote:v2" in out
    assert "@@" not in out
    text = (overlay / "kustomization.yaml").read_text()
    assert "- name: vote  # web\n  newTag: v2\n" in text


def test_default_overlay_is_the_current_folder(
    overlay: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(overlay)
    assert main(["set-image", "--diff", "vote:v3"]) == 0
    out = capsys.readouterr().out
    assert "-  newTag: v1\n+  newTag: v3" in out
    assert "newTag: v3" in (overlay / "kustomization.yaml").read_text()


def test_dry_run_shows_the_diff_and_writes_nothing(
    overlay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["set-image", "--overlay", str(overlay), "--dry-run", "vote:v9"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing written" in out
    assert "+  newTag: v9" in out
    assert (overlay / "kustomization.yaml").read_text() == TEXT


def test_unchanged_says_so(overlay: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set-image", "--overlay", str(overlay), "vote:v1"]) == 0
    assert capsys.readouterr().out.strip().endswith("kustomization.yaml: unchanged")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vote", "is not in any accepted form; use one of:\n  NAME=NEWNAME:TAG"),
        ("vote:v1/x", "tag 'v1/x' has a '/'"),
    ],
)
def test_bad_spec_exits_1_with_one_message(
    overlay: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    assert main(["set-image", "--overlay", str(overlay), spec]) == 1
    err = capsys.readouterr().err
    assert err.startswith("homelab-release: error: ")
    assert message in err
    assert (overlay / "kustomization.yaml").read_text() == TEXT


def test_missing_overlay_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set-image", "--overlay", str(tmp_path), "vote:v1"]) == 1
    assert "has no kustomization.yaml" in capsys.readouterr().err


def test_runs_as_a_program(overlay: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "homelab_release", "set-image", "vote:v4"],
        cwd=overlay,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "vote: vote:v1 -> vote:v4" in result.stdout
    assert "newTag: v4" in (overlay / "kustomization.yaml").read_text()
