"""buildah: a daemonless (and, with subuid/subgid ranges, rootless) build engine driven as a program.

``buildah build --layers`` builds the request, chroot-isolated unless ``BUILDAH_ISOLATION`` says
otherwise, in the storage the standard containers configuration names (``CONTAINERS_STORAGE_CONF``,
``STORAGE_DRIVER``). With a cache repository, every layer of every stage is read from and written
to it (``--cache-from``/``--cache-to``, kaniko's ``--cache-repo``); a cache repository that is
unreachable or refuses the credentials never fails a build: one warning, and the build goes on
without it. ``buildah push --digestfile`` pushes one tag; the registry confirms it afterwards.

Credentials reach buildah only through an auth file, mode 0600 in a private temporary folder that
is removed when the command ends: never ``--creds``, never an argument (every user of a shared
runner can read every process's arguments).

The process gets only the environment :attr:`~homelab_release.context.CiContext.buildah` carries
(buildah's and the containers libraries' variables, ``PATH``, ``HOME``, proxies), plus:

- the automatic platform arguments (``TARGETARCH`` ...), as BuildKit defines them, as build
  arguments for those the Dockerfile uses and the request does not set; and, before buildah 1.37,
  which leaves them empty in ``FROM`` lines unless an ``ARG`` before the first ``FROM`` declares
  them (BuildKit predefines them there), a copy of the Dockerfile that declares the ones its
  ``FROM`` lines use;
- before 1.29, a ``TMPDIR`` of the user's own (``/var/tmp/homelab-release-<uid>``) unless one is
  set: those versions keep every user's ``RUN --mount=type=cache`` folders in one shared
  ``/var/tmp/buildah-cache``, and a rootless build cannot write into a folder that root (or another
  user) made first: ``Permission denied`` (containers/buildah#4404, fixed in 1.29).

Before 1.29, buildah turns every ``--label`` into a ``LABEL`` step of its own, each looked up in
and written to the cache repository (``org.opencontainers.image.created`` changes every build);
before 1.30 it appends them to the file's last stage, which ``--target`` may leave unbuilt, and the
labels are then lost when the target stage comes from cache. On those versions the labels go into
the Dockerfile copy instead, as one ``LABEL`` instruction at the end of the stage that is built:
what ``--label`` does from 1.30 on (containers/buildah#4511, #4673).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import pwd
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from homelab_release import proc
from homelab_release.dockerfile import (
    append_to_stage,
    base_images,
    declare_global_args,
    global_args_missing,
    instructions,
    label_instruction,
    platform_args_used,
    read_dockerfile,
    stage_args,
)
from homelab_release.engines.base import (
    DEFAULT_TIMEOUT,
    BuildLog,
    BuildRequest,
    LocalImage,
    credential_secrets,
    step_count,
)
from homelab_release.errors import BuildError, CommandError, PushError, RegistryError, ReleaseError
from homelab_release.images import ImageRef
from homelab_release.registry import manifest_digest, registry_host, scheme
from homelab_release.secrets import RegistryCredentials, redact

__all__ = [
    "ARG_CACHE_VERSION",
    "CACHE_MOUNT_VERSION",
    "CACHE_REPO_VERSION",
    "FEATURES",
    "GLOBAL_ARGS_VERSION",
    "INSTALL_HINT",
    "LABEL_STEP_VERSION",
    "MIN_VERSION",
    "BuildahBuilder",
    "BuildahInfo",
    "parse_version",
    "platform_args",
    "unsupported_features",
]

log = logging.getLogger(__name__)

MIN_VERSION = Version("1.23.0")  # `buildah build` (before: `buildah bud` only)
CACHE_REPO_VERSION = Version("1.27.0")  # --cache-to / --cache-from
ARG_CACHE_VERSION = Version("1.29.0")  # ARG steps looked up in the cache repository (#4315)
CACHE_MOUNT_VERSION = Version("1.29.0")  # one RUN --mount=type=cache folder per user (#4404)
GLOBAL_ARGS_VERSION = Version("1.37.0")  # platform arguments predefined where FROM lines read them
LABEL_STEP_VERSION = Version("1.30.0")  # --label: one step, in the built stage (#4511, #4673)
INSTALL_HINT = (
    "install buildah and uidmap (Debian/Ubuntu: apt-get install buildah uidmap; Fedora: dnf "
    "install buildah), or run the job in an image that has it (quay.io/buildah/stable)"
)
PUSH_RETRIES = ("--retry", "2", "--retry-delay", "1s")  # 3 attempts, about 2 s apart at most

#: Dockerfile features buildah builds only from some version on (None: no version does).
FEATURES: tuple[tuple[re.Pattern[str], str, Version | None], ...] = (
    (re.compile(r"^RUN\s+(?:--\S+\s+)*--network\b", re.I), "RUN --network", Version("1.30.0")),
    (re.compile(r"^RUN\s+(?:--\S+\s+)*--security\b", re.I), "RUN --security", None),
    (re.compile(r"^(?:RUN|COPY|ADD)\s.*<<-?[\"']?[A-Za-z_]", re.I), "a here-document (<<EOF)",
     Version("1.33.0")),
    (re.compile(r"^ADD\s+(?:--\S+\s+)*--checksum\b", re.I), "ADD --checksum", Version("1.33.0")),
    (re.compile(r"^ADD\s+(?:--\S+\s+)*--keep-git-dir\b", re.I), "ADD --keep-git-dir",
     Version("1.37.0")),
    (re.compile(r"^(?:COPY|ADD)\s+(?:--\S+\s+)*--exclude\b", re.I), "COPY/ADD --exclude",
     Version("1.38.0")),
    (re.compile(r"^COPY\s+(?:--\S+\s+)*--parents\b", re.I), "COPY --parents", Version("1.40.0")),
    (re.compile(r"^(?:COPY|ADD)\s+(?:--\S+\s+)*--link\b", re.I), "COPY/ADD --link",
     Version("1.41.0")),
)  # fmt: skip

_VERSION = re.compile(r"(?:buildah version |\"version\":\s*\")(?P<version>\d+\.\d+[^\s\"]*)")
_PROGRESS = re.compile(r"^(?:\[\d+/\d+\] )?(?:STEP \d+/\d+: |COMMIT\b)")
_CACHE_HIT = re.compile(r"^--> Using cache ")
_WARNING = re.compile(r"level=warning msg=\"(?P<message>.*)\"$")
_CACHE_PUSH_FAILED = re.compile(r"failed pushing cache to", re.I)
_NO_SUBIDS = re.compile(r"no (?:subuid|subgid) ranges found|no [UG]ID ranges set aside", re.I)
_NO_UIDMAP = re.compile(r"newuidmap|newgidmap", re.I)
_NO_USERNS = re.compile(
    r"unshare\(CLONE_NEWUSER\)|user namespaces? (?:are )?not (?:enabled|allowed)", re.I
)
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client", re.I)
_REFUSED = re.compile(r"unauthorized|authentication required|denied|forbidden", re.I)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|connection reset|no route to host|"
    r"network is unreachable|TLS handshake timeout|\b50[0234]\b",
    re.I,
)
_ISOLATION = "BUILDAH_ISOLATION"
_FORMAT = "BUILDAH_FORMAT"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GO_ARCH = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386",
    "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}  # fmt: skip


@dataclass(frozen=True)
class BuildahInfo:
    """The installed buildah: its version and the platform it builds for (``os/arch[/variant]``)."""

    version: Version
    platform: str


def parse_version(output: str) -> Version:
    """The version in the output of ``buildah version --json`` or ``buildah --version``.

    >>> parse_version("buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)")
    <Version('1.28.2')>
    """
    match = _VERSION.search(output)
    try:
        return Version(match["version"].split("-", 1)[0]) if match else Version("")
    except InvalidVersion:
        raise BuildError(f"cannot read the buildah version from {output.strip()[:200]!r}") from None


def unsupported_features(dockerfile: str, version: Version) -> tuple[str, ...]:
    """The features of ``dockerfile`` (its text) that buildah ``version`` cannot build, each
    with the version that can (:data:`FEATURES`).

    >>> unsupported_features("FROM x\\nRUN --network=none true", Version("1.28.2"))
    ('RUN --network (needs buildah 1.30.0 or later)',)
    """
    found: list[str] = []
    for line in instructions(dockerfile):
        for pattern, feature, since in FEATURES:
            if pattern.search(line) and (since is None or version < since):
                needs = f"buildah {since} or later" if since else "BuildKit; no buildah has it"
                entry = f"{feature} (needs {needs})"
                if entry not in found:
                    found.append(entry)
    return tuple(found)


def platform_args(target: str) -> dict[str, str]:
    """BuildKit's automatic platform arguments for building on and for ``target``
    (``os/arch[/variant]``): homelab-release does not cross-build, so both are the same.

    >>> platform_args("linux/arm/v7")["TARGETVARIANT"]
    'v7'
    """
    os_name, arch, variant = [*target.split("/"), "", ""][:3]
    values = {}
    for side in ("BUILD", "TARGET"):
        values[f"{side}PLATFORM"] = target
        values[f"{side}OS"] = os_name
        values[f"{side}ARCH"] = arch
        values[f"{side}VARIANT"] = variant
    return values


#: What each buildah program file said about itself: (path, inode, mtime) -> info.
_KNOWN: dict[tuple[str, int, int], BuildahInfo] = {}
_KNOWN_LOCK = threading.Lock()


class BuildahBuilder:
    """buildah as a build engine (see :class:`~homelab_release.engines.base.Engine`)."""

    name = "buildah"

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        program: str = "buildah",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Run ``program`` with the environment ``settings`` (see
        :attr:`~homelab_release.context.CiContext.buildah`; default: none but a standard
        ``PATH``). ``timeout``: seconds a buildah command may stay silent before it is stopped."""
        self._settings = dict(settings or {})
        self._program = program
        self._timeout = timeout
        self._info: BuildahInfo | None = None
        self._lock = threading.Lock()

    # -- the installed buildah -------------------------------------------------------------------

    def available(self) -> bool:
        """Whether the buildah program is on the ``PATH`` of its environment (never raises)."""
        return self._path() is not None

    def info(self) -> BuildahInfo:
        """The version and platform of the installed buildah (asked once per program file);
        :class:`BuildError` when it is missing or older than :data:`MIN_VERSION`."""
        with self._lock:
            if self._info is None:
                self._info = self._known_info()
            return self._info

    def _known_info(self) -> BuildahInfo:
        program = self._path()
        if program is None:
            raise BuildError(f"cannot find {self._program!r} on PATH: {INSTALL_HINT}")
        found = Path(program).stat()
        key = (program, found.st_ino, found.st_mtime_ns)
        with _KNOWN_LOCK:
            if key not in _KNOWN:
                _KNOWN[key] = self._ask_info()
            return _KNOWN[key]

    def _path(self) -> str | None:
        return shutil.which(self._program, path=self._settings.get("PATH", _DEFAULT_PATH))

    def _ask_info(self) -> BuildahInfo:
        program = self._path() or self._program
        code, output = self._capture((program, "version", "--json"))
        if code != 0:  # before `version --json`, or buildah cannot start at all
            code, output = self._capture((program, "--version"))
        if code != 0:
            raise BuildError(f"{program} --version failed (exit code {code}): {output[-800:]}")
        version = parse_version(output)
        if version < MIN_VERSION:
            raise BuildError(
                f"buildah {version} is too old: homelab-release needs buildah {MIN_VERSION} or "
                f"later (`buildah build`); {INSTALL_HINT}"
            )
        target = _json_field(output, "osArch") or _host_platform()
        if target == "linux/arm" and platform.machine().startswith("armv"):
            target += f"/v{platform.machine()[4]}"
        return BuildahInfo(version, target)

    def _capture(self, argv: Sequence[str]) -> tuple[int, str]:
        """Run a short buildah command; its exit code and output (stdout and stderr)."""
        lines: list[str] = []
        code = proc.stream(
            argv, lines.append, env=self._environment(), inherit_env=False, idle_timeout=60
        )
        return code, "\n".join(lines).strip()

    # -- the Engine interface --------------------------------------------------------------------

    def unsupported(self, dockerfile: str) -> tuple[str, ...]:
        return unsupported_features(dockerfile, self.info().version)

    def remedy(self) -> str:
        return (
            f"this is buildah {self.info().version}: upgrade it (quay.io/buildah/stable has the "
            "newest), build it with the docker engine if it is not a BuildKit feature, or "
            "rewrite that part"
        )

    def build(self, request: BuildRequest, credentials: RegistryCredentials | None) -> LocalImage:
        started = time.monotonic()
        info = self.info()
        dockerfile = read_dockerfile(request.dockerfile)
        with _private_folder() as folder:
            auth = _auth_file(folder, request.repository, credentials)
            iidfile = folder / "iid"
            file, labelled = _dockerfile_copy(request, dockerfile, info, folder)

            def run(cache: ImageRef | None) -> int:
                argv = self._build_argv(
                    request, info=info, dockerfile=dockerfile, cache=cache, auth=auth,
                    iidfile=iidfile, file=file, labelled=labelled,
                )  # fmt: skip
                return self._run_build(request, argv, credentials)

            cache = self._usable_cache(request, credentials, dockerfile, info)
            try:
                cached = run(cache)
            except _CachePushError as err:
                log.warning("building without the cache repository %s: %s", cache, err)
                cached = run(None)
            image_id = iidfile.read_text(encoding="utf-8").strip()
        log.info("built %s (%s from cache)", image_id[:19], step_count(cached))
        return LocalImage(image_id, cached, {"build": time.monotonic() - started})

    def push(
        self,
        request: BuildRequest,
        image: LocalImage,
        tag: str,
        credentials: RegistryCredentials | None,
    ) -> str | None:
        name = f"{request.repository}:{tag}"
        log.info("pushing %s", name)
        with _private_folder() as folder:
            auth = _auth_file(folder, request.repository, credentials)
            argv = [
                self._program, "push", *PUSH_RETRIES,
                *_tls(request, {registry_host(request.repository)}),
                *(("--authfile", str(auth)) if auth else ()),
                "--digestfile", str(folder / "digest"),
                name, f"docker://{name}",
            ]  # fmt: skip
            lines = self._log(request, credentials)
            code = self._stream(argv, lines.line, credentials, PushError)
            if code != 0:
                raise PushError(f"pushing {name} failed{_push_hint(lines, request, credentials)}")
            digest = (folder / "digest").read_text(encoding="utf-8").strip() or None
        log.info("pushed %s%s", name, f"@{digest}" if digest else "")
        return digest

    def close(self) -> None:
        """Nothing to release: every buildah command cleans up after itself."""

    # -- building ---------------------------------------------------------------------------------

    def _build_argv(
        self,
        request: BuildRequest,
        *,
        info: BuildahInfo,
        dockerfile: str,
        cache: ImageRef | None,
        auth: Path | None,
        iidfile: Path,
        file: Path | None = None,
        labelled: bool = False,
    ) -> list[str]:
        """``buildah build`` of ``request``; ``file``: the Dockerfile to read instead of the
        request's, ``labelled``: whether that copy sets the labels (see :func:`_dockerfile_copy`)."""
        settings = self._settings
        argv = [self._program, "build", "--layers", "--file", str(file or request.dockerfile)]
        argv += [] if _ISOLATION in settings else ["--isolation", "chroot"]
        argv += [] if _FORMAT in settings else ["--format", "docker"]
        argv += ["--target", request.target] if request.target else []
        for name, value in self._build_args(request, info, dockerfile).items():
            argv += ["--build-arg", f"{name}={value}"]
        for name, value in ({} if labelled else request.labels).items():
            argv += ["--label", f"{name}={value}"]
        for tag in request.tags:
            argv += ["--tag", f"{request.repository}:{tag}"]
        if cache is not None:
            argv += ["--cache-from", str(cache), "--cache-to", str(cache)]
        argv += _tls(request, _hosts(dockerfile, cache))
        argv += ["--authfile", str(auth)] if auth else []
        return [*argv, "--iidfile", str(iidfile), str(request.context)]

    def _build_args(
        self, request: BuildRequest, info: BuildahInfo, dockerfile: str
    ) -> dict[str, str]:
        """The request's build arguments, and the platform ones the Dockerfile uses (unless set)."""
        automatic = platform_args(info.platform)
        missing = [n for n in platform_args_used(dockerfile) if n not in request.build_args]
        return {**{name: automatic[name] for name in missing}, **request.build_args}

    def _usable_cache(
        self,
        request: BuildRequest,
        credentials: RegistryCredentials | None,
        dockerfile: str,
        info: BuildahInfo,
    ) -> ImageRef | None:
        """The request's cache repository, if this buildah can use it and the registry answers;
        otherwise None after one warning (a cache repository never fails a build)."""
        cache = request.cache_repo
        if cache is None:
            return None
        if info.version < CACHE_REPO_VERSION:
            log.warning(
                "building without the cache repository %s: buildah %s cannot use one (it needs "
                "buildah %s or later)",
                cache, info.version, CACHE_REPO_VERSION,
            )  # fmt: skip
            return None
        problem = _cache_problem(request, cache, credentials, dockerfile)
        if problem:
            log.warning("building without the cache repository %s: %s", cache, problem)
            return None
        _warn_stage_args(request, dockerfile, info)
        return cache

    def _run_build(
        self, request: BuildRequest, argv: list[str], credentials: RegistryCredentials | None
    ) -> int:
        """Run the build; the steps taken from cache. :class:`BuildError` with the log's tail."""
        log.info("building %s from %s", request.repository, request.context)
        lines = self._log(request, credentials)
        seen: list[str] = []

        def take(raw: str) -> None:
            line = lines.line(raw)
            if _CACHE_PUSH_FAILED.search(line) or _NO_SUBIDS.search(line):
                seen.append(line)

        code = self._stream(argv, take, credentials, BuildError)
        if code == 0:
            return lines.cached
        pushes = [line for line in seen if _CACHE_PUSH_FAILED.search(line)]
        if pushes:
            raise _CachePushError(pushes[-1].split("Error: ", 1)[-1])
        raise BuildError(
            f"building {request.repository} from {request.context} failed "
            f"(buildah exited with {code}){_build_hint(seen, lines)}{lines.tail()}"
        )

    # -- running buildah -------------------------------------------------------------------------

    def _log(self, request: BuildRequest, credentials: RegistryCredentials | None) -> BuildLog:
        return BuildLog(
            credential_secrets(credentials),
            request.repository.path.rsplit("/", 1)[-1],
            logger=log,
            progress=_PROGRESS,
            cache_hit=_CACHE_HIT,
            warning=_WARNING,
        )

    def _stream(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], object],
        credentials: RegistryCredentials | None,
        error: type[ReleaseError],
    ) -> int:
        """Run buildah (``argv[0]`` resolved on its PATH); its exit code. ``error`` when it is
        missing or stays silent longer than the timeout."""
        program = self._path()
        if program is None:
            raise error(f"cannot find {self._program!r} on PATH: {INSTALL_HINT}")
        try:
            return proc.stream(
                [program, *argv[1:]],
                on_line,
                env=self._environment(),
                inherit_env=False,
                idle_timeout=self._timeout,
                secrets=credential_secrets(credentials),
            )
        except CommandError as err:
            raise error(f"buildah {argv[1]}: {err}") from None

    def _environment(self) -> dict[str, str]:
        """The buildah process's whole environment (see the module's documentation)."""
        env = {"PATH": _DEFAULT_PATH, **self._settings}
        info = self._info
        if info is not None and info.version < CACHE_MOUNT_VERSION and "TMPDIR" not in env:
            folder = _own_temp_folder()
            if folder is not None:
                env["TMPDIR"] = str(folder)
        return env


class _CachePushError(ReleaseError):
    """buildah could not write a layer to the cache repository."""


# -- pieces ------------------------------------------------------------------------------------


def _json_field(output: str, name: str) -> str:
    """``name`` of the JSON object ``output`` holds, '' when there is none."""
    try:
        data = json.loads(output)
    except ValueError:
        return ""
    return str(data.get(name) or "") if isinstance(data, dict) else ""


def _dockerfile_copy(
    request: BuildRequest, dockerfile: str, info: BuildahInfo, folder: Path
) -> tuple[Path | None, bool]:
    """The Dockerfile buildah ``info`` should read instead of the request's (a copy in ``folder``,
    the ignore files buildah looks for beside it copied too), or None; and whether that copy sets
    the request's labels (see :func:`_adapted`)."""
    text, labelled = _adapted(request, dockerfile, info)
    if text == dockerfile:
        return None, False
    path = request.dockerfile
    copy = folder / path.name
    copy.write_text(text, encoding="utf-8")
    for suffix in (".containerignore", ".dockerignore"):  # buildah reads <file>.<suffix> first
        ignore = path.with_name(path.name + suffix)
        if ignore.is_file():
            shutil.copy2(ignore, folder / ignore.name)
    return copy, labelled


def _adapted(request: BuildRequest, dockerfile: str, info: BuildahInfo) -> tuple[str, bool]:
    """``dockerfile`` (text) as buildah ``info`` should read it, and whether it sets the labels.

    - Before :data:`GLOBAL_ARGS_VERSION`, buildah leaves the platform arguments empty in ``FROM``
      lines unless an ``ARG`` before the first ``FROM`` declares them (BuildKit predefines them
      there): declare the ones its ``FROM`` lines use.
    - Before :data:`LABEL_STEP_VERSION`, ``--label`` flags become steps of the file's last stage
      (before 1.29 one step each, each looked up in and written to the cache repository), lost
      when ``--target`` names an earlier stage whose steps all come from cache: end the stage
      that is built (``--target``, else the last) with one ``LABEL`` instruction instead, as
      ``--label`` does from 1.30 on. Labels one line cannot hold (a line break in a value) stay
      ``--label`` flags, and so do all labels when the file is not UTF-8 text.
    """
    text = dockerfile
    missing = global_args_missing(dockerfile) if info.version < GLOBAL_ARGS_VERSION else ()
    if missing:
        text = declare_global_args(text, missing)
        log.debug("%s: declaring %s before the first FROM", request.dockerfile, missing)
    if not request.labels or info.version >= LABEL_STEP_VERSION or "\ufffd" in dockerfile:
        return text, False  # (U+FFFD: bytes that are not UTF-8, which a copy would not keep)
    instruction = label_instruction(request.labels)
    labelled = append_to_stage(text, instruction, request.target) if instruction else None
    if labelled is None:
        return text, False
    log.debug("%s: the labels as one LABEL step (buildah %s)", request.dockerfile, info.version)
    return labelled, True


def _host_platform() -> str:
    machine = platform.machine().lower()
    if machine.startswith("armv"):
        return f"linux/arm/v{machine[4]}"
    return f"linux/{_GO_ARCH.get(machine, machine)}"


@contextmanager
def _private_folder() -> Iterator[Path]:
    """A folder only this user can enter (0700), removed with everything in it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="homelab-release-buildah-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _auth_file(
    folder: Path, repository: ImageRef, credentials: RegistryCredentials | None
) -> Path | None:
    """An auth file (0600) with ``credentials`` for the repository's registry only; None
    without credentials (buildah then uses the user's own login, if any)."""
    if credentials is None:
        return None
    host = repository.domain or "docker.io"
    content = {"auths": {host: {"auth": credentials.basic_token()}}}
    path = folder / "auth.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(content, file)
    return path


def _own_temp_folder() -> Path | None:
    """``/var/tmp/homelab-release-<uid>``, made 0700 if missing; None (after a warning) when it
    exists but is not a folder of this user's that only they can enter."""
    uid = os.getuid()
    folder = Path("/var/tmp") / f"homelab-release-{uid}"  # noqa: S108 (checked below)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        found = folder.lstat()
    except OSError as err:
        log.warning("cannot use %s for buildah's temporary files: %s", folder, err)
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid or found.st_mode & 0o077:
        log.warning(
            "%s is not a folder that only uid %d can enter: leaving buildah's temporary files "
            "where buildah puts them (RUN --mount=type=cache may then be denied)",
            folder, uid,
        )  # fmt: skip
        return None
    return folder


def _hosts(dockerfile: str, cache: ImageRef | None) -> set[str]:
    """The registries a build talks to: its base images' and the cache repository's."""
    hosts = {registry_host(_parse(image)) for image in base_images(dockerfile)}
    return hosts | ({registry_host(cache)} if cache else set())


def _parse(image: str) -> ImageRef:
    try:
        return ImageRef.parse(image)
    except ReleaseError:  # "$BASE" and the like: a registry we cannot know, so not plain HTTP
        return ImageRef("unknown.invalid", "unknown")


def _tls(request: BuildRequest, hosts: set[str]) -> list[str]:
    """``--tls-verify=false`` when every registry in ``hosts`` is loopback or listed as insecure
    (plain HTTP); otherwise nothing: TLS stays on for every registry."""
    plain = {host for host in hosts if scheme(host, request.insecure_registries) == "http"}
    return ["--tls-verify=false"] if plain and plain == hosts else []


def _cache_problem(
    request: BuildRequest,
    cache: ImageRef,
    credentials: RegistryCredentials | None,
    dockerfile: str,
) -> str:
    """Why the cache repository cannot be used for this build, or ''."""
    host = registry_host(cache)
    hosts = _hosts(dockerfile, cache)
    if scheme(host, request.insecure_registries) == "http" and not _tls(request, hosts):
        others = ", ".join(sorted(h for h in hosts if h != host))
        return (
            f"it is plain HTTP, but the build also pulls from {others} over HTTPS; list {host} "
            "as insecure in registries.conf ([[registry]] location/insecure = true)"
        )
    same = registry_host(request.repository) == host
    try:
        manifest_digest(
            cache.with_tag("homelab-release-probe"),
            credentials if same else None,
            insecure=request.insecure_registries,
        )
    except RegistryError as err:
        return redact(str(err), credential_secrets(credentials))
    return ""


def _warn_stage_args(request: BuildRequest, dockerfile: str, info: BuildahInfo) -> None:
    """Buildah before 1.29 never looks an ARG step up in the cache repository, and a missed step
    ends the lookups for the rest of its stage (containers/buildah#4315)."""
    if info.version >= ARG_CACHE_VERSION:
        return
    found = stage_args(dockerfile)
    if found:
        stage, name = found[0]
        log.info(
            "%s: buildah %s rebuilds on an empty store every step after `ARG %s` in stage %s "
            "(it does not look ARG steps up in the cache repository before buildah %s, "
            "containers/buildah#4315): declare ARGs just before the steps that use them, after "
            "the slow ones, or use a newer buildah",
            request.dockerfile, info.version, name, stage, ARG_CACHE_VERSION,
        )  # fmt: skip


def _build_hint(seen: Sequence[str], lines: BuildLog) -> str:
    text = "\n".join(seen) + lines.tail()
    if _NO_SUBIDS.search(text):
        user = pwd.getpwuid(os.getuid()).pw_name
        return (
            f"; buildah says: {next(s for s in seen if _NO_SUBIDS.search(s))}. A rootless build "
            "needs subordinate uid and gid ranges: as root, run "
            f"`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` "
            "(and install uidmap)"
        )
    if _NO_UIDMAP.search(text) and "not found" in text:
        return "; newuidmap/newgidmap are missing: install uidmap"
    if _NO_USERNS.search(text):
        return (
            "; this runner does not allow user namespaces: set BUILDAH_ISOLATION=chroot and "
            "run as a user with subuid/subgid ranges, or allow unprivileged user namespaces"
        )
    if _PLAIN_HTTP.search(text):
        return (
            "; a registry answered over plain HTTP: list it in registry.insecure and in "
            "registries.conf ([[registry]] location/insecure = true)"
        )
    return ""


def _push_hint(
    lines: BuildLog, request: BuildRequest, credentials: RegistryCredentials | None
) -> str:
    text = lines.tail()
    host = registry_host(request.repository)
    if _REFUSED.search(text):
        user = f"user {credentials.username!r}" if credentials else "no credentials"
        return (
            f": registry {host} refused {user}; set CI_REGISTRY_USER / CI_REGISTRY_PASSWORD or "
            f"pass credentials= with a user that may push there{text}"
        )
    if _UNREACHABLE.search(text):
        return (
            f": registry {host} is unreachable or failing (after {PUSH_RETRIES[1]} retries): "
            f"check that it runs and that the runner can reach it{text}"
        )
    return text
