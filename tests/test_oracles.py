"""tests/oracles.py: only a kubectl whose built-in kustomize is v5 or later renders overlays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.oracles import _kustomize_major


@pytest.mark.parametrize(
    ("printed", "major"),
    [
        ("Client Version: v1.32.4\nKustomize Version: v5.5.0\n", 5),
        ("Client Version: v1.37.1\nKustomize Version: v5.8.1\n", 5),
        ("Client Version: v1.26.0\nKustomize Version: v4.5.7\n", 4),
        ('Client Version: version.Info{Major:"1", Minor:"20"}\n', 0),  # Debian 12's kubectl
    ],
)
def test_kustomize_version_of_a_kubectl(tmp_path: Path, printed: str, major: int) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!/bin/sh\nprintf '%s' '{printed}'\n")
    kubectl.chmod(0o755)
    assert _kustomize_major(str(kubectl)) == major


def test_a_kubectl_that_cannot_run_has_no_kustomize(tmp_path: Path) -> None:
    assert _kustomize_major(str(tmp_path / "absent")) == 0
    (tmp_path / "not-executable").write_text("")
    assert _kustomize_major(str(tmp_path / "not-executable")) == 0
