"""The command line's error boundary and its global options.

A ReleaseError is one ``homelab-release: error:`` message and exit 1; anything else is exit 3 with
one line naming the error and the log that holds its traceback (0600 in a 0700 folder); an
interrupt is 130. ``-v`` works before and after the subcommand.
"""

from __future__ import annotations

import argparse
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from homelab_release.cli import LOG_NAME, build_parser, guarded, log_folder, main
from homelab_release.errors import ReleaseError
from tests.gitrepo import GitRepo

ARGS = argparse.Namespace()
TOKEN = "glpat-Cli3rrorSecret"


def boom(_args: argparse.Namespace) -> int:
    """A command with a bug: the kind of error the boundary exists for."""
    return {"a": 1}["b"]


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.rstrip("\n").splitlines()


# -- ReleaseError: exit 1, one line ---------------------------------------------------------------


def test_release_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    missing = tmp_path / "nowhere"
    assert main(["set-image", "--overlay", str(missing), "vote:1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"homelab-release: error: overlay {missing} does not exist")
    assert not (tmp_path / ".cache").exists()  # an explained error leaves no log


def test_notes_follow_the_error_message(capsys: pytest.CaptureFixture[str]) -> None:
    def fails(_args: argparse.Namespace) -> int:
        err = ReleaseError("the registry refused the push")
        err.add_note("Everything the demo started is stopped.")
        raise err

    assert guarded(fails, ARGS) == 1
    assert stderr_lines(capsys) == [
        "homelab-release: error: the registry refused the push",
        "Everything the demo started is stopped.",
    ]


def test_installed_command_exits_1_on_a_bad_base(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit("seed", "vote/Dockerfile")
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "homelab-release"), "changes", "--repo", str(repo.path), "--base", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"homelab-release: error: base 'nope' does not name a commit in {repo.path}; pass an "
        "existing branch, tag or SHA as --base (in a shallow clone, fetch it first)"
    ]


# -- anything else: exit 3, one line, the traceback in a private log ----------------------------


def cache_env(tmp_path: Path, **extra: str) -> Mapping[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home"), **extra}


def test_unexpected_error_is_one_line_and_a_private_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guarded(boom, ARGS, env=cache_env(tmp_path)) == 3
    log = tmp_path / "cache" / "homelab-release" / LOG_NAME
    assert stderr_lines(capsys) == [
        f"homelab-release: unexpected error: KeyError: 'b' (the traceback is in {log}; "
        "please report it)"
    ]
    text = log.read_text()
    assert "Traceback (most recent call last):" in text
    assert 'return {"a": 1}["b"]' in text
    assert text.startswith("time: ")
    assert "homelab-release " in text.splitlines()[1]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_verbose_prints_the_traceback_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guarded(boom, ARGS, verbose=True, env=cache_env(tmp_path)) == 3
    lines = stderr_lines(capsys)
    assert lines[0] == "Traceback (most recent call last):"
    assert "KeyError: 'b'" in lines
    assert lines[-1].startswith("homelab-release: unexpected error: KeyError: 'b' (the traceback")


def test_ci_prints_the_traceback_since_its_cache_goes_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guarded(boom, ARGS, env=cache_env(tmp_path, GITLAB_CI="true")) == 3
    assert stderr_lines(capsys)[0] == "Traceback (most recent call last):"


@pytest.mark.parametrize(
    ("xdg", "expected"),
    [
        (None, "home/.cache/homelab-release"),
        ("", "home/.cache/homelab-release"),
        ("relative/cache", "home/.cache/homelab-release"),  # invalid for XDG: ignored
        ("ABS/xdg", "xdg/homelab-release"),
    ],
)
def test_log_folder_follows_xdg(tmp_path: Path, xdg: str | None, expected: str) -> None:
    env = {"HOME": str(tmp_path / "home")}
    if xdg is not None:
        env["XDG_CACHE_HOME"] = xdg.replace("ABS", str(tmp_path))
    assert log_folder(env) == tmp_path / expected


def test_an_old_log_is_replaced_and_made_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cache" / "homelab-release"
    folder.mkdir(parents=True)
    (folder / LOG_NAME).write_text("an earlier crash\n" * 100)
    (folder / LOG_NAME).chmod(0o644)
    assert guarded(boom, ARGS, env=cache_env(tmp_path)) == 3
    assert "an earlier crash" not in (folder / LOG_NAME).read_text()
    assert stat.S_IMODE((folder / LOG_NAME).stat().st_mode) == 0o600


def test_unwritable_log_prints_the_traceback_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    assert guarded(boom, ARGS, env=cache_env(tmp_path)) == 3
    lines = stderr_lines(capsys)
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1].startswith("homelab-release: unexpected error: KeyError: 'b' (the traceback ")
    assert "could not be written" in lines[-1]


def test_secrets_reach_neither_the_line_nor_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def leaks(_args: argparse.Namespace) -> int:
        raise ValueError(f"cannot parse {TOKEN} from https://user:pw-in-url@gitlab.example/x.git")

    env = cache_env(tmp_path, GITLAB_TOKEN=TOKEN)
    assert guarded(leaks, ARGS, verbose=True, env=env) == 3
    shown = capsys.readouterr().err
    logged = (tmp_path / "cache" / "homelab-release" / LOG_NAME).read_text()
    for text in (shown, logged):
        assert "cannot parse **** from https://****@gitlab.example/x.git" in text
        assert TOKEN not in text
        assert "pw-in-url" not in text


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    assert guarded(interrupted, ARGS) == 130
    assert stderr_lines(capsys) == ["homelab-release: interrupted"]


# -- global options after the subcommand ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["plan"], False),
        (["-v", "plan"], True),
        (["plan", "-v"], True),
        (["plan", "--verbose", "--base", "HEAD"], True),
        (["-v", "plan", "-v"], True),
    ],
)
def test_verbose_before_or_after_the_subcommand(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_every_subcommand_takes_the_global_options() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 8
    for name, command in sub.choices.items():
        verbose = command._option_string_actions.get("-v")
        assert verbose is not None, name
        assert verbose.default is argparse.SUPPRESS, name  # keeps a -v given before the command
        assert command._option_string_actions["--verbose"] is verbose


def test_verbose_after_the_subcommand_logs_debug_details(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit("seed", "vote/Dockerfile")
    assert main(["changes", "--repo", str(repo.path), "--base", "HEAD", "-v"]) == 0
    assert "running git" in capsys.readouterr().err
    assert main(["changes", "--repo", str(repo.path), "--base", "HEAD"]) == 0
    assert "running git" not in capsys.readouterr().err


def test_library_messages_name_the_parameter_and_the_command_line_the_flag(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    from homelab_release.changes import detect_changes
    from homelab_release.cli import main
    from homelab_release.errors import GitError

    repo.commit("seed", "vote/Dockerfile")
    with pytest.raises(GitError, match=r"SHA as base= \(in a shallow clone") as caught:
        detect_changes(repo.path, base="nope")
    assert "--base" not in str(caught.value)
    assert main(["changes", "--repo", str(repo.path), "--base", "nope"]) == 1
    assert "SHA as --base (in a shallow clone" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("message", "parameter", "shown"),
    [
        ("pass to=ENV or run on a branch", "to", "pass --to ENV or run on a branch"),
        ("SHA as base= (in a shallow clone", "base", "SHA as --base (in a shallow clone"),
        (
            "pass allow_downgrade=True to go back",
            "allow_downgrade",
            "pass --allow-downgrade to go back",
        ),
        ("promote with verify=False", "verify", "promote with --no-verify"),
        ("pass images=vote to promote", "images", "pass --image vote to promote"),
        (
            "promote images=NAME, or verify=False",
            ("images", "verify"),
            "promote --image NAME, or --no-verify",
        ),
        ("nothing to change in base_ref=x", "base", "nothing to change in base_ref=x"),
    ],
)
def test_for_command_line_turns_parameters_into_flags(
    message: str, parameter: str | tuple[str, ...], shown: str
) -> None:
    from homelab_release.errors import ReleaseError

    error = ReleaseError(message, parameter=parameter)
    assert str(error) == message
    assert error.for_command_line() == shown
