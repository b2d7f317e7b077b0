"""Signing manifests commits with an SSH key: check the key before anything runs, sign with a copy.

``[manifests] signing_key`` (or ``HOMELAB_RELEASE_SIGNING_KEY``, which a GitLab file-type variable
sets to a path) names an SSH private key without passphrase. :func:`signing_key` checks it (git
new enough, the file readable, a private key ``ssh-keygen`` can use) and yields the path of a
private copy: a 0600 file in a 0700 temporary folder that is removed afterwards, so git signs with
a key whose permissions ssh accepts whatever the original's are, and the key reaches no other
file, no argument list and no log line (git is given the copy's path, never its content).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from homelab_release import proc
from homelab_release.errors import CommandError, ConfigError
from homelab_release.git import SSH_SIGNING_GIT, require_git

__all__ = ["check_signing_key", "signing_key"]

log = logging.getLogger(__name__)

_PRIVATE_MARKERS = (b"-----BEGIN OPENSSH PRIVATE KEY-----", b"PRIVATE KEY-----")


@contextmanager
def signing_key(path: str | Path | None, *, setting: str) -> Iterator[Path | None]:
    """A checked, private copy of the SSH key at ``path`` (None: no signing, yields None).

    ``setting`` names where the path came from in messages (``manifests.signing_key``). Raises
    :class:`ConfigError` when the key is missing, unreadable, not a private key, protected by a
    passphrase, or when git is older than :data:`~homelab_release.git.SSH_SIGNING_GIT`.
    """
    if not path:
        yield None
        return
    require_git(SSH_SIGNING_GIT, "signing manifests commits with an SSH key")
    data = _read_key(Path(path), setting)
    with tempfile.TemporaryDirectory(prefix="homelab-release-signing-") as folder:
        copy = Path(folder) / "signing-key"
        descriptor = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "wb") as file:  # noqa: PTH123 (an open descriptor)
            file.write(data)
        _check_usable(copy, Path(path), setting)
        yield copy


def check_signing_key(path: str | Path | None, *, setting: str) -> None:
    """Raise the :class:`ConfigError` :func:`signing_key` would raise; write nothing that stays."""
    with signing_key(path, setting=setting):
        pass


def _read_key(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{setting} = {str(path)!r}: no such file; point it at the SSH private key that "
            "signs manifests commits (in GitLab: a file-type CI/CD variable)"
        ) from None
    except (PermissionError, IsADirectoryError) as err:
        raise ConfigError(
            f"{setting} = {str(path)!r} cannot be read ({err.strerror}); give the job read access "
            "to the key file"
        ) from None
    if not any(marker in data for marker in _PRIVATE_MARKERS):
        raise ConfigError(
            f"{setting} = {str(path)!r} is not an SSH private key (no 'PRIVATE KEY' block); "
            "create one with ssh-keygen -t ed25519 -N '' -f KEY and give its private half"
        )
    return data


def _check_usable(copy: Path, original: Path, setting: str) -> None:
    """``ssh-keygen -y`` derives the public key: it fails for a passphrase or a damaged key."""
    try:
        proc.run(("ssh-keygen", "-y", "-P", "", "-f", str(copy)), timeout=30)
    except CommandError:
        raise ConfigError(
            f"{setting} = {str(original)!r}: ssh-keygen cannot use this private key (it has a "
            "passphrase, or it is damaged); use a key without passphrase "
            "(ssh-keygen -t ed25519 -N '' -f KEY)"
        ) from None
    log.debug("signing manifests commits with the key of %s", setting)
