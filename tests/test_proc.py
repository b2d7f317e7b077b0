"""proc: run raises on failure, attempt returns the exit code; secrets never show."""

from __future__ import annotations

import sys

import pytest

from homelab_release import proc
from homelab_release.errors import CommandError, ReleaseError
from homelab_release.secrets import HiddenText

SECRET = "s3cr3t-token"


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_attempt_returns_a_failure_instead_of_raising() -> None:
    done = proc.attempt(
        python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    )
    assert (done.returncode, done.ok, done.stdout, done.stderr) == (3, False, "out\n", "err\n")
    assert proc.attempt(python("print('fine')")).ok


def test_completed_keeps_output_out_of_its_repr() -> None:
    done = proc.attempt(python(f"print({SECRET!r})"), secrets=[SECRET])
    assert done.stdout == f"{SECRET}\n"  # raw, for parsing
    assert SECRET not in repr(done)


def test_check_raises_with_the_output_redacted() -> None:
    argv = python(f"import sys; print('the token is {SECRET}'); sys.exit(2)")
    done = proc.attempt(argv, secrets=[HiddenText(SECRET)])
    with pytest.raises(CommandError) as info:
        done.check([HiddenText(SECRET)], hint="try again")
    assert info.value.returncode == 2
    assert SECRET not in str(info.value)
    assert "the token is ****" in str(info.value)
    assert str(info.value).endswith("try again")


def test_run_is_attempt_plus_check() -> None:
    assert proc.run(python("print('x')")) == "x\n"
    with pytest.raises(CommandError, match="exit code 1"):
        proc.run(python("raise SystemExit(1)"))


def test_attempt_still_raises_on_a_timeout() -> None:
    with pytest.raises(CommandError, match=r"timed out after 0\.5s; a hint"):
        proc.attempt(python("import time; time.sleep(30)"), timeout=0.5, hint="a hint")


def test_attempt_still_raises_for_a_missing_program() -> None:
    with pytest.raises(ReleaseError, match="Cannot find command 'no-such-program-here'"):
        proc.attempt(("no-such-program-here",))
