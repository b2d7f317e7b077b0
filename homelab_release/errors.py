"""The errors the library raises on purpose.

Every one is a :class:`ReleaseError`: the CLI and the Nox sessions turn them into a one-line message
and exit code 1. Messages name the object that was wrong and say how to fix it; they never carry a
token or a password (see :mod:`homelab_release.secrets`).
"""

from __future__ import annotations

import re

__all__ = [
    "BuildError",
    "CommandError",
    "ConfigError",
    "FanOutError",
    "GitError",
    "ImageRefError",
    "OverlayError",
    "PromotionError",
    "PushError",
    "RegistryError",
    "ReleaseError",
    "RollbackError",
    "VersionError",
]


class ReleaseError(Exception):
    """Base of every error homelab-release raises on purpose.

    ``parameter`` names the argument (or a tuple of the arguments) the message tells a Python
    caller to fix (``base=``); the command line shows the flag instead (``--base``, see
    :meth:`for_command_line`).
    """

    def __init__(self, *args: object, parameter: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.parameter = parameter

    def for_command_line(self) -> str:
        """The message as the command line says it: ``name=True`` becomes ``--name``,
        ``name=False`` ``--no-name``, ``name=VALUE`` ``--name VALUE`` and a bare ``name=``
        ``--name``; a parameter whose flag is named differently (``images=``, ``--image``)
        takes that flag's name."""
        text = str(self)
        names = (self.parameter,) if isinstance(self.parameter, str) else self.parameter or ()
        for parameter in names:
            name = re.escape(parameter)
            flag = _FLAGS.get(parameter, "--" + parameter.replace("_", "-"))
            text = re.sub(rf"\b{name}=True\b", flag, text)
            text = re.sub(rf"\b{name}=False\b", "--no-" + flag[2:], text)
            text = re.sub(rf"\b{name}=(?=[^\s)\]}},;:.])", flag + " ", text)
            text = re.sub(rf"\b{name}=", flag, text)
        return text


#: Library parameters whose command-line flag is not ``--`` plus the name: a repeatable flag
#: takes one value each time, so it is singular.
_FLAGS = {"images": "--image"}


class ConfigError(ReleaseError):
    """``homelab-release.toml`` (or an argument standing in for it) is not valid."""


class CommandError(ReleaseError):
    """An external command failed; carries its argv, exit code and (redacted) output."""

    def __init__(self, argv: tuple[str, ...], returncode: int, output: str, hint: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        message = f"command {' '.join(argv)!r} failed with exit code {returncode}"
        tail = output.strip().splitlines()[-10:]
        if tail:
            message += ":\n  " + "\n  ".join(tail)
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class GitError(ReleaseError):
    """A git repository, ref or remote is missing or refuses an operation."""


class ImageRefError(ReleaseError, ValueError):
    """An image reference or a ``kustomize edit set image`` argument is not valid."""


class OverlayError(ReleaseError):
    """A kustomize overlay cannot be read or edited."""


class BuildError(ReleaseError):
    """An image build failed; the message ends with the last lines of the build log."""


class PushError(ReleaseError):
    """Pushing an image, or confirming it in the registry, failed."""


class RegistryError(ReleaseError):
    """The registry could not be asked about an image (unreachable, refused credentials)."""


class PromotionError(ReleaseError):
    """A promotion cannot proceed; nothing was written."""


class FanOutError(ReleaseError):
    """The child pipeline of the child-pipeline strategy cannot be generated (bad job settings,
    a secret in its text); nothing was written."""


class RollbackError(PromotionError):
    """A rollback cannot proceed (no such state, an image gone); nothing was written."""


class VersionError(ReleaseError):
    """A release tag names no version, or the target's policy refuses it; nothing was written."""
