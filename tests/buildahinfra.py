"""Session fixtures for buildah, as root and as unprivileged users (a pytest plugin, see conftest.py).

Root builds use a private vfs storage in the session's tmp folder (nothing goes to the machine's
``/var/lib/containers``). Rootless builds run homelab-release itself as an unprivileged user:
``homelab-rootless`` with ``/etc/subuid`` and ``/etc/subgid`` ranges, and ``homelab-nosubid``, a
system user without them. Both are created only when missing and never removed: the machine may be
shared, and another session may be using them. Their code is a copy of ``homelab_release`` and its
dependencies in a folder they can read (the test virtualenv usually lives where they cannot).

In CI (``CI=true``) a missing buildah, uidmap or root fails these tests instead of skipping them
(:func:`tests.infra.missing`). Every test that uses one of these fixtures gets the ``buildah`` marker.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra import missing

BUILDAH_FIXTURES = frozenset(
    {"buildah_env", "empty_buildah_store", "rootless_user", "no_subid_user", "run_as"}
)
ROOTLESS = "homelab-rootless"
NO_SUBID = "homelab-nosubid"
SUBID_COUNT = 65536
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: What ``python -m homelab_release`` imports, copied for the unprivileged users.
MODULES = (
    "homelab_release", "docker", "requests", "urllib3", "idna", "certifi", "charset_normalizer",
    "ruamel", "packaging",
)  # fmt: skip


def storage_conf(folder: Path, driver: str = "vfs") -> Path:
    """Write a containers-storage.conf keeping images in ``folder``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\n'
        f'graphroot = "{folder / "graph"}"\nrunroot = "{folder / "run"}"\n',
        encoding="utf-8",
    )
    return conf


def _require_buildah() -> str:
    found = shutil.which("buildah", path=SEARCH_PATH)
    if found is None:
        missing("buildah is not installed: apt-get install buildah uidmap", kind="tool")
    return found


@pytest.fixture(scope="session")
def buildah_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of root builds: a private vfs storage and home, the standard PATH."""
    _require_buildah()
    folder = tmp_path_factory.mktemp("buildah")
    (folder / "home").mkdir()
    env = {
        "PATH": SEARCH_PATH,
        "HOME": str(folder / "home"),
        "CONTAINERS_STORAGE_CONF": str(storage_conf(folder / "storage")),
    }
    yield env
    shutil.rmtree(folder / "storage", ignore_errors=True)


@pytest.fixture
def empty_buildah_store(buildah_env: Mapping[str, str]) -> Mapping[str, str]:
    """:func:`buildah_env` after every image and working container of its storage is removed."""
    for argv in (("buildah", "rm", "--all"), ("buildah", "rmi", "--all", "--force")):
        subprocess.run(argv, env=dict(buildah_env), capture_output=True, check=False, timeout=120)
    images = subprocess.run(
        ("buildah", "images", "--all", "--quiet"),
        env=dict(buildah_env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert images.stdout.strip() == "", "the buildah store is not empty"
    return buildah_env


# -- unprivileged users ---------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """An unprivileged user of this machine."""

    name: str
    uid: int
    home: Path


def _require_root_and_uidmap() -> None:
    if os.geteuid() != 0:
        missing("creating the rootless test users needs root", kind="part")
    _require_buildah()
    for program in ("newuidmap", "newgidmap", "useradd", "usermod", "runuser"):
        if shutil.which(program, path=SEARCH_PATH) is None:
            missing(f"{program} is missing: apt-get install uidmap passwd util-linux", kind="tool")


def _user(name: str, *, system: bool) -> User:
    """The user ``name``, created (with a home) when it does not exist yet."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        argv = ["useradd", "--create-home", "--shell", "/bin/sh", name]
        if system:
            argv[1:1] = ["--system", "--home-dir", f"/home/{name}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode not in (0, 9):  # 9: created meanwhile by another session
            pytest.fail(f"useradd {name} failed: {done.stderr.strip()}", pytrace=False)
        entry = pwd.getpwnam(name)
    return User(entry.pw_name, entry.pw_uid, Path(entry.pw_dir))


def _ranges(path: Path, name: str) -> list[tuple[int, int]]:
    """``(start, count)`` of every line of /etc/subuid or /etc/subgid, or only ``name``'s."""
    found = []
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and (not name or parts[0] == name) and parts[1].isdigit():
            found.append((int(parts[1]), int(parts[2])))
    return found


def _ensure_subids(user: User) -> None:
    """Give ``user`` subordinate uid and gid ranges after every existing one, if it has none."""
    files = (Path("/etc/subuid"), Path("/etc/subgid"))
    if all(_ranges(path, user.name) for path in files):
        return
    taken = [start + count for path in files for start, count in _ranges(path, "")]
    start = max([100000, *taken])
    span = f"{start}-{start + SUBID_COUNT - 1}"
    argv = ["usermod", "--add-subuids", span, "--add-subgids", span, user.name]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def rootless_user() -> User:
    """``homelab-rootless``: an unprivileged user with subuid/subgid ranges (created if missing)."""
    _require_root_and_uidmap()
    user = _user(ROOTLESS, system=False)
    _ensure_subids(user)
    return user


@pytest.fixture(scope="session")
def no_subid_user() -> User:
    """``homelab-nosubid``: a system user without subuid/subgid ranges (created if missing)."""
    _require_root_and_uidmap()
    user = _user(NO_SUBID, system=True)
    files = (Path("/etc/subuid"), Path("/etc/subgid"))
    if any(_ranges(path, user.name) for path in files):
        missing(f"{NO_SUBID} has subuid/subgid ranges on this machine: it cannot stand for a user "
                "without them")  # fmt: skip
    return user


# -- running homelab-release as another user ------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """Runs ``python -m homelab_release`` as a user, from a copy of the code they can read."""

    python: str
    site: Path
    folder: Path  # world-readable; per-user work folders go in here

    def workdir(self, user: User, name: str) -> Path:
        """A folder ``user`` owns inside :attr:`folder`."""
        path = self.folder / f"{user.name}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, user.uid, -1)
        return path

    def give(self, user: User, path: Path) -> None:
        """Make ``path`` (a tree) belong to ``user``."""
        for item in [path, *path.rglob("*")]:
            os.chown(item, user.uid, -1, follow_symlinks=False)

    def run(
        self, user: User, args: Sequence[str], env: Mapping[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``homelab-release ARGS`` as ``user`` with exactly ``env`` (plus PATH and PYTHONPATH)."""
        environment = {"PATH": SEARCH_PATH, "PYTHONPATH": str(self.site), **env}
        argv = ["runuser", "-u", user.name, "--", self.python, "-m", "homelab_release", *args]
        return subprocess.run(
            argv, env=environment, capture_output=True, text=True, check=False, timeout=timeout
        )


@pytest.fixture(scope="session")
def run_as(rootless_user: User) -> Iterator[RunAs]:
    """A :class:`RunAs` whose interpreter ``rootless_user`` can execute."""
    folder = Path(tempfile.mkdtemp(prefix="hr-runas-", dir="/tmp"))
    folder.chmod(0o755)
    site = folder / "site"
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            missing(f"cannot find the package {name} to copy for the rootless user", kind="tool")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [site, *site.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    python = _python_for(rootless_user)
    try:
        yield RunAs(python, site, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _python_for(user: User) -> str:
    """This interpreter if ``user`` may run it, else the system's python3 of the same version."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}"):
        probe = ["runuser", "-u", user.name, "--", candidate, "-c", "pass"]
        done = subprocess.run(probe, capture_output=True, check=False, timeout=60)
        if done.returncode == 0:
            return candidate
    return missing(
        f"{user.name} can run neither {sys.executable} nor /usr/bin/{version}", kind="tool"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses buildah with ``buildah``."""
    for item in items:
        if BUILDAH_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.buildah)
