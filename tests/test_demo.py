"""The demo end to end: the README's first command, run in-process through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from homelab_release.cli import main
from homelab_release.sandbox import DockerEngine


def test_demo_runs_the_whole_flow_and_cleans_up(
    docker_engine: DockerEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)  # reuse the session's engine
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    step1, rest = out.split("=== 2.", 1)
    step2, rest = rest.split("=== 3.", 1)
    step3, step4 = rest.split("=== 4.", 1)
    for service in ("vote", "result", "worker"):
        assert re.search(rf"^{service}\s+built\s", step1, re.MULTILINE)
    assert "develop overlay: committed" in step1
    built_in_step2 = re.findall(r"^(\w+)\s+built\s", step2, re.MULTILINE)
    assert built_in_step2 == ["vote"]
    assert "promote develop -> stage:" in step3
    assert "stage overlay: committed" in step3
    assert "ENVIRONMENT  SERVICE" in step4
    assert "is behind" not in step4
    assert "sandbox removed" in out
    assert list(tmp_path.glob("homelab-release-demo-*")) == []
