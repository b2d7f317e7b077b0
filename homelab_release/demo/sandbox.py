"""Local stand-ins for CI's parts: a private Docker Engine and an htpasswd-protected registry.

Used by the test fixtures and by ``homelab-release demo``. Both run from Debian packages (``docker.io``,
``docker-registry``) and talk only over 127.0.0.1 or a unix socket; the engine is started with
``--bridge=none --iptables=false --ip6tables=false`` so that it creates no container network.

>>> with DockerEngine(Path("/tmp/x/engine")) as engine, LocalRegistry(Path("/tmp/x/reg")) as reg:  # doctest: +SKIP
...     build_image(context=busybox_context(Path("/tmp/x/ctx"), "echo hi"), ...)

Each part is stopped by the PID it was started with; nothing else is touched. Before starting
anything, :func:`check_requirements` tells in one message everything missing on this machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from homelab_release import proc
from homelab_release.context import read_environment
from homelab_release.errors import ReleaseError
from homelab_release.secrets import HiddenText, RegistryCredentials

__all__ = [
    "BUILDAH_NEEDS",
    "BUSYBOX",
    "ENGINE_NEEDS",
    "REGISTRY_NEEDS",
    "ROOTLESS_NEEDS",
    "DockerEngine",
    "LocalRegistry",
    "Requirement",
    "SandboxError",
    "SandboxUnavailableError",
    "busybox_context",
    "check_requirements",
    "default_search_path",
    "free_port",
    "locate",
    "ping",
    "require",
    "reusable_engine",
]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
BUSYBOX = Path("/bin/busybox")


class SandboxError(ReleaseError):
    """A local part (engine, registry) failed to start or stop."""


class SandboxUnavailableError(SandboxError):
    """A local part cannot run on this machine at all (a package is missing, or root is needed)."""


@dataclass(frozen=True)
class Requirement:
    """A program (looked up on the search path) or a file (an absolute path) and its Debian package."""

    name: str
    package: str

    def find(self, search_path: str) -> str | None:
        """Where it is, or None."""
        if Path(self.name).is_absolute():
            return self.name if Path(self.name).is_file() else None
        return shutil.which(self.name, path=search_path)


ENGINE_NEEDS = (Requirement("dockerd", "docker.io"), Requirement("containerd", "docker.io"))
BUILDAH_NEEDS = (Requirement("buildah", "buildah"),)
ROOTLESS_NEEDS = (Requirement("newuidmap", "uidmap"), Requirement("newgidmap", "uidmap"))
REGISTRY_NEEDS = (
    Requirement("docker-registry", "docker-registry"),
    Requirement("htpasswd", "apache2-utils"),
)
_ROOT_HINT = "run as root (dockerd needs it)"
_REUSE_HINT = ", or set DOCKER_HOST=unix:///PATH/docker.sock to a running engine you may use"


def check_requirements(
    *,
    reuse_engine: bool = False,
    uid: int | None = None,
    search_path: str | None = None,
    busybox: Path = BUSYBOX,
    engine: str = "docker",
) -> None:
    """Check up front everything the sandbox (and so ``nox -s demo``) needs on this machine.

    That is ``docker-registry``, ``htpasswd`` (``apache2-utils``), ``/bin/busybox``
    (``busybox-static``), ``git`` and the engine's parts. ``engine="docker"``: root, ``dockerd``
    and ``containerd`` (``docker.io``); with ``reuse_engine``, an engine answering on
    ``DOCKER_HOST`` (as :class:`DockerEngine` ``reuse=True`` adopts it) stands in for all three.
    ``engine="buildah"``: ``buildah``, and for a user other than root ``newuidmap`` and
    ``newgidmap`` (``uidmap``). Raises :class:`SandboxUnavailableError` with one message naming
    every missing part and a single ``apt-get install`` line for all of them. ``uid`` (default the
    effective uid), ``search_path`` (default ``$PATH`` plus ``/usr/sbin`` and ``/sbin``) and
    ``busybox`` say where to look.
    """
    if engine == "buildah":
        rootless = (os.geteuid() if uid is None else uid) != 0
        parts = (*BUILDAH_NEEDS, *(ROOTLESS_NEEDS if rootless else ()))
        dockerd = False
    else:
        dockerd = not (reuse_engine and reusable_engine() is not None)
        parts = ENGINE_NEEDS if dockerd else ()
    needs = (
        *parts,
        *REGISTRY_NEEDS,
        Requirement(str(busybox), "busybox-static"),
        Requirement("git", "git"),
    )
    what = "buildah and a local registry" if engine == "buildah" else ""
    locate(needs, root=dockerd, uid=uid, search_path=search_path, reuse=reuse_engine, what=what)


def locate(
    needs: Sequence[Requirement],
    *,
    root: bool = False,
    uid: int | None = None,
    search_path: str | None = None,
    reuse: bool = False,
    what: str = "",
) -> dict[str, str]:
    """The path of each of ``needs`` by name; :class:`SandboxUnavailableError` naming all missing.

    ``root``: also require the effective uid (or ``uid``) to be 0. ``what``: the parts, for the
    message (default the local Docker Engine and registry).
    """
    where = search_path if search_path is not None else default_search_path()
    found = {need.name: need.find(where) for need in needs}
    missing = [need for need in needs if found[need.name] is None]
    not_root = root and (os.geteuid() if uid is None else uid) != 0
    if missing or not_root:
        raise SandboxUnavailableError(_unavailable(missing, not_root, reuse=reuse, what=what))
    return {name: path for name, path in found.items() if path is not None}


def require(program: str, package: str) -> str:
    """The path of ``program``; :class:`SandboxUnavailableError` saying what to install otherwise."""
    return locate([Requirement(program, package)])[program]


def default_search_path() -> str:
    """``$PATH`` and then ``/usr/sbin:/sbin`` (dockerd is there, not on every user's PATH)."""
    path = read_environment().get("PATH", os.defpath)
    return os.pathsep.join((path, "/usr/sbin", "/sbin"))


def _unavailable(
    missing: Sequence[Requirement], not_root: bool, *, reuse: bool, what: str = ""
) -> str:
    lines = [
        f"the sandbox ({what or 'local Docker Engine and registry'}) cannot run on this machine:"
    ]
    if missing:
        packages = " ".join(dict.fromkeys(need.package for need in missing))
        lines.append("  missing: " + ", ".join(f"{n.name} ({n.package})" for n in missing))
        lines.append(f"  install them (as root): apt-get install {packages}")
    if not_root:
        lines.append(f"  {_ROOT_HINT}{_REUSE_HINT if reuse else ''}")
    return "\n".join(lines)


def reusable_engine(env: Mapping[str, str] | None = None) -> str | None:
    """``DOCKER_HOST`` when it is a ``unix://`` socket on which an engine answers, else None."""
    host = read_environment(env).get("DOCKER_HOST", "")
    if host.startswith("unix://") and ping(Path(host.removeprefix("unix://"))):
        return host
    return None


class _Daemon:
    """A long-running child process with its output in a log file, stopped by its PID."""

    name = "daemon"

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None
        self._log_start = 0

    def _spawn(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self._log_start = self._log.tell()  # the file may hold earlier runs: this one starts here
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**read_environment(), **(env or {})},
        )

    def start(self) -> Self:
        """Start the process and wait until it is ready."""
        raise NotImplementedError

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise SandboxError(f"{self.name} exited with code {code}{self._tail()}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise SandboxError(f"{self.name} did not become ready within {timeout:g}s{self._tail()}")

    def output(self) -> str:
        """What the process wrote since it was last started (earlier runs' lines left out)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def _tail(self) -> str:
        if self.log_path is None:
            return ""
        lines = self.output().strip().splitlines()[-15:]
        if not lines:
            return f" (its log {self.log_path} is empty)"
        return f" (log {self.log_path}):\n  " + "\n  ".join(lines)

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None when it was not started or has stopped."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def stop(self) -> None:
        """SIGTERM the process, wait for it, SIGKILL it after :data:`STOP_TIMEOUT`."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class DockerEngine(_Daemon):
    """A private ``dockerd`` with its own data root, exec root and unix socket.

    ``reuse=True`` first tries the engine named by ``DOCKER_HOST``: when it answers ``/_ping``,
    it is used as is and never stopped.
    """

    name = "dockerd"

    def __init__(
        self, folder: Path, *, reuse: bool = False, timeout: float = START_TIMEOUT
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.reuse = reuse
        self.timeout = timeout
        self.host = ""
        self.reused = False
        self._runtime: Path | None = None

    def start(self) -> Self:
        """Start dockerd (or adopt ``DOCKER_HOST``) and wait until it answers ``/_ping``."""
        if self.reuse and self._adopt():
            return self
        dockerd = locate(ENGINE_NEEDS, root=True, reuse=self.reuse)["dockerd"]
        self.folder.mkdir(parents=True, exist_ok=True)
        # Unix socket paths are limited to ~107 bytes: keep the socket and exec root short.
        self._runtime = Path(tempfile.mkdtemp(prefix="hr-dockerd-", dir="/tmp"))
        socket_path = self._runtime / "docker.sock"
        self.host = f"unix://{socket_path}"
        self._spawn(self._argv(dockerd, self._runtime), self.folder / "dockerd.log")
        self._wait_until(lambda: ping(socket_path), self.timeout)
        return self

    def _argv(self, dockerd: str, runtime: Path) -> list[str]:
        return [
            dockerd,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            f"--data-root={self.folder / 'data'}",
            f"--exec-root={runtime / 'exec'}",
            f"--pidfile={runtime / 'dockerd.pid'}",
            f"--host=unix://{runtime / 'docker.sock'}",
        ]

    def _adopt(self) -> bool:
        host = reusable_engine()
        if host is None:
            return False
        self.host, self.reused = host, True
        return True

    def stop(self) -> None:
        """Stop dockerd (and the containerd it started) by PID; a reused engine is left alone."""
        if self.reused:
            return
        runtime = self._runtime
        containerd = _read_pid(runtime / "exec/containerd/containerd.pid") if runtime else None
        super().stop()
        if containerd is not None:
            _terminate(containerd)
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None


def ping(socket_path: Path) -> bool:
    """Whether a Docker Engine answers ``GET /_ping`` with ``OK`` on ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(4096)
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


class LocalRegistry(_Daemon):
    """``docker-registry serve`` on 127.0.0.1 with one htpasswd (bcrypt) user.

    ``address`` is ``127.0.0.1:PORT``; ``credentials`` are the user and password to push with.
    """

    name = "docker-registry"

    def __init__(
        self,
        folder: Path,
        *,
        username: str = "homelab",
        password: HiddenText | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.credentials = RegistryCredentials(
            username, password or HiddenText("pw-" + secrets.token_hex(12))
        )
        self.timeout = timeout
        self.port = 0

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Write the htpasswd file and config, start the registry, wait until ``/v2/`` says 401."""
        programs = locate(REGISTRY_NEEDS)
        registry = programs["docker-registry"]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_htpasswd(programs["htpasswd"])
        for _attempt in range(3):  # a free port may be taken between choosing and binding it
            self.port = free_port()
            config = self._write_config()
            self._spawn([registry, "serve", str(config)], self.folder / "registry.log", _REG_ENV)
            try:
                self._wait_until(self._answers, self.timeout)
            except SandboxError:
                if "address already in use" not in self.output():
                    raise
                continue
            return self
        raise SandboxError(f"docker-registry could not bind a free port{self._tail()}")

    def _write_htpasswd(self, htpasswd: str) -> None:
        password = self.credentials.password
        line = proc.run(
            (htpasswd, "-niB", self.credentials.username),
            input_text=password.secret + "\n",
            secrets=[password],
            timeout=60,
        )
        (self.folder / "htpasswd").write_text(line.strip() + "\n", encoding="utf-8")

    def _write_config(self) -> Path:
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.folder / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
            f"auth:\n  htpasswd:\n    realm: homelab-release\n    path: {self.folder / 'htpasswd'}\n",
            encoding="utf-8",
        )
        return config

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                return False  # 200 would mean no authentication: not what was configured
        except urllib.error.HTTPError as err:
            err.close()
            return err.code == 401
        except OSError:
            return False


_REG_ENV = {"REGISTRY_HTTP_SECRET": "homelab-release-sandbox"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def busybox_context(folder: Path, script: str = "true", *, extra: str = "") -> Path:
    """Write a build context ``FROM scratch`` with Debian's static busybox and one ``RUN script``.

    ``extra`` is appended to the Dockerfile as is. Returns ``folder``.
    """
    locate([Requirement(str(BUSYBOX), "busybox-static")])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, folder / "busybox")
    (folder / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        f"RUN {script}\n" + extra,
        encoding="utf-8",
    )
    return folder


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _terminate(pid: int) -> None:
    """SIGTERM a process we started (by PID) and wait briefly until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
