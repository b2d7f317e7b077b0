"""The demo end to end: the README's first command, in-process and from an installed wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from homelab_release.cli import main
from homelab_release.demo.example import EXAMPLE_NAME, find_example
from homelab_release.demo.sandbox import (
    DockerEngine,
    SandboxUnavailableError,
    check_requirements,
    default_search_path,
)
from homelab_release.demo.steps import STEPS
from homelab_release.errors import ReleaseError
from tests.infra import missing

ROOT = Path(__file__).resolve().parent.parent
FINAL = "Everything the demo started is stopped and its sandbox removed."


@pytest.fixture
def demo_env(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Reuse the session's engine (for ``--engine docker``); the sandbox folder goes under
    ``tmp_path`` (returned)."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # (read once, so TMPDIR is too late)
    return tmp_path


@pytest.fixture
def buildah_demo_env(buildah_env: Mapping[str, str], demo_env: Path) -> Path:
    """:func:`demo_env` where buildah is installed (the demo keeps its images in its sandbox)."""
    return demo_env


def steps_of(out: str) -> list[str]:
    """The text under each numbered heading, in order."""
    return re.split(r"^=== \d+\. .*$", out, flags=re.MULTILINE)[1:]


def test_demo_runs_the_whole_flow_on_buildah_and_cleans_up(
    buildah_demo_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_env = buildah_demo_env
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "build engine: buildah, no daemon" in out
    headings = re.findall(r"^=== (\d+)\. (.*)$", out, re.MULTILINE)
    assert headings == [(str(n), step.title) for n, step in enumerate(STEPS, 1)]
    step1, step2, step3, step4, step5, step6 = steps_of(out)
    for service in ("vote", "result", "worker", "tally"):
        assert re.search(rf"^{service}\s+built\s", step1, re.MULTILINE)
    assert "develop overlay: committed" in step1
    built_in_step2 = re.findall(r"^(\w+)\s+built\s", step2, re.MULTILINE)
    assert built_in_step2 == ["vote"]
    assert "promote develop -> stage:" in step3
    assert "stage overlay: committed" in step3
    assert "release 1.0.0 to prod, images of stage:" in step4
    assert "prod overlay: committed" in step4
    assert (
        len(
            re.findall(
                r"^  (vote|result|worker|tally): .*:1\.0\.0@sha256:\w+ \(tag created\)$",
                step4,
                re.MULTILINE,
            )
        )
        == 4
    )
    assert "develop (k8s/overlays/develop on k8s-manifests), newest first:" in step5
    assert len(re.findall(r"^[0-9a-f]{12} ", step5, re.MULTILINE)) == 3  # two builds + the layout
    assert "ENVIRONMENT  SERVICE" in step6
    assert "is behind" not in step6
    assert "prod runs version 1.0.0" in step6
    assert "report:" not in out  # the reports are inside the sandbox, removed at the end
    assert re.search(r"^stage\s+tally\s", step6, re.MULTILINE)
    assert out.rstrip().splitlines()[-1] == FINAL
    assert list(demo_env.glob("homelab-release-demo-*")) == []


def test_demo_on_docker_leaves_out_what_it_cannot_build(
    demo_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--engine", "docker"]) == 0
    out = capsys.readouterr().out
    assert "Docker Engine: unix://" in out
    step1, *_ = steps_of(out)
    (refused,) = [line for line in step1.splitlines() if line.startswith("tally: left out")]
    assert "tally/Dockerfile uses " in refused
    assert "FROM --platform with a build argument such as $BUILDPLATFORM" in refused
    assert "build it with the buildah engine (--engine buildah" in refused
    built = re.findall(r"^(\w+)\s+built\s", step1, re.MULTILINE)
    assert built == ["result", "vote", "worker"]
    assert "FAILED" not in out
    assert out.rstrip().splitlines()[-1] == FINAL


def test_kept_demo_shows_reports_that_exist(
    demo_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--keep", "--engine", "docker"]) == 0
    out = capsys.readouterr().out
    reports = [Path(p) for p in re.findall(r"^report: (.+)$", out, re.MULTILINE)]
    assert {p.name for p in reports} == {"build.env", "release-report.json"}
    assert all(p.is_file() for p in reports)
    (folder,) = demo_env.glob("homelab-release-demo-*")
    assert out.rstrip().endswith(f"its sandbox is kept in {folder}.")
    assert all(p.is_relative_to(folder) for p in reports)


def test_failed_step_says_so_before_the_clean_up_line(
    demo_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = demo_env / "broken-example"
    shutil.copytree(find_example(), example)
    dockerfile = example / "monorepo" / "vote" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN ["/bin/busybox", "false"]\n')
    assert main(["demo", "--engine", "docker", "--example", str(example)]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^vote\s+FAILED\s", captured.out, re.MULTILINE)
    assert "=== 2." not in captured.out  # the demo stops at the failed step
    assert FINAL not in captured.out
    assert captured.err.rstrip().splitlines()[-2:] == [
        "homelab-release: error: build_develop could not build vote (see the table above)",
        FINAL,
    ]
    assert list(demo_env.glob("homelab-release-demo-*")) == []


def test_example_is_found_in_the_checkout_or_the_package(tmp_path: Path) -> None:
    assert find_example() == ROOT / "examples" / EXAMPLE_NAME
    installed = tmp_path / "site" / EXAMPLE_NAME
    shutil.copytree(ROOT / "examples" / EXAMPLE_NAME, installed)
    assert find_example(roots=[installed.parent, ROOT / "examples"]) == installed
    with pytest.raises(ReleaseError, match=r"not installed \(looked in .*nowhere.*--example PATH"):
        find_example(roots=[tmp_path / "nowhere"])


# -- from a wheel, outside the checkout ---------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built with pip from a copy of the checkout's files (tracked and new, not ignored)."""
    if shutil.which("git") is None:
        missing("git is not on PATH (apt-get install git)")
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # (a file deleted but not yet committed is listed too)
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)])
    (built,) = dist.glob("homelab_release-*.whl")
    return built


def test_wheel_holds_every_module_and_the_example(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "homelab_release").rglob("*.py")}
    assert modules <= names, "add the missing subpackage to [tool.setuptools] packages"
    example = ROOT / "examples" / EXAMPLE_NAME
    shipped = {
        f"homelab_release/demo/examples/{EXAMPLE_NAME}/{p.relative_to(example).as_posix()}"
        for p in example.rglob("*")
        if p.is_file()
    }
    assert shipped <= names
    assert "homelab_release/py.typed" in names
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies (from the package index); its bin/."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], timeout=600)
    return venv / "bin"


@pytest.mark.buildah
def test_demo_runs_from_an_installed_wheel(installed: Path, tmp_path: Path) -> None:
    try:
        check_requirements(engine="buildah")  # the demo's default: buildah, no daemon
    except SandboxUnavailableError as err:
        missing(str(err))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = [p for p in default_search_path().split(":") if not p.startswith(sys.prefix)]
    env = {
        "PATH": ":".join([str(installed), *outside]),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    where = _run([str(installed / "python"), "-c", _WHERE], cwd=elsewhere, env=env).stdout
    assert where.splitlines() == [str(installed.parent), "True"], "not the wheel's copy"
    demo = subprocess.run(
        [str(installed / "homelab-release"), "demo"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert len(steps_of(demo.stdout)) == len(STEPS)
    assert "stage overlay: committed" in demo.stdout
    assert demo.stdout.rstrip().endswith(FINAL)
    assert list(tmp_path.glob("homelab-release-demo-*")) == []


# where the installed package and its example are: both inside the venv, not the checkout
_WHERE = (
    "import sys, homelab_release.demo.example as e\n"
    "print(sys.prefix)\n"
    "print(e.find_example().is_relative_to(sys.prefix))\n"
)


def _run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}{result.stderr}"
    return result
