"""``homelab-release.toml``: services, environments, registry and manifests settings.

Every key is optional and every string may use ``${VAR}`` or ``${VAR:-default}``, expanded from the
environment. With no file, services are the top-level folders that hold a ``Dockerfile`` and the
environments are the seed's ``develop`` and ``stage`` (promoted from ``develop``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homelab_release.context import read_environment
from homelab_release.dotenv import dotenv_key
from homelab_release.errors import ConfigError, ReleaseError
from homelab_release.gitops import DEFAULT_AUTHOR
from homelab_release.images import ImageRef
from homelab_release.versions import VersionPolicy, parse_policy

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_MANIFESTS_BRANCH",
    "ENGINES",
    "WRITE_MODES",
    "Environment",
    "ReleaseConfig",
    "Service",
    "check_sources",
    "load_config",
]

CONFIG_NAME = "homelab-release.toml"
DEFAULT_MANIFESTS_BRANCH = "k8s-manifests"
#: How a write reaches an environment's overlay: a push to the manifests branch, or a push to
#: ``homelab-release/<environment>`` that asks GitLab to open (or update) a merge request.
WRITE_MODES = ("push", "merge-request")
#: The values of ``[build] engine``.
ENGINES = ("auto", "docker", "buildah")

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Service:
    """One buildable service of the monorepo."""

    name: str
    paths: tuple[str, ...]
    context: str
    dockerfile: str
    image: str
    kustomize_name: str | None = None

    def image_repository(self, registry: str) -> str:
        """The image repository the service is pushed to: ``<registry>/<image>``."""
        return f"{registry.rstrip('/')}/{self.image}" if registry else self.image

    def overlay_name(self, registry: str) -> str:
        """The ``images[].name`` of the service's overlay entry."""
        return self.kustomize_name or self.image_repository(registry)


@dataclass(frozen=True)
class Environment:
    """One environment of the promotion chain and its kustomize overlay.

    ``versions`` is the policy of an environment that takes versioned releases (None: it takes
    none). ``write`` is how its overlay is written (:data:`WRITE_MODES`; None when the
    configuration does not say, so that ``HOMELAB_RELEASE_WRITE`` or the default, ``push``,
    decides); ``merge_request_labels`` label the merge requests of ``merge-request`` mode.
    """

    name: str
    overlay: str
    promote_from: str | None = None
    versions: VersionPolicy | None = None
    write: str | None = None
    merge_request_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseConfig:
    """The whole configuration of one monorepo, with defaults filled in."""

    root: Path
    source: Path | None = None
    registry: str = ""
    manifests_url: str = field(default="", repr=False)  # may carry ${GITLAB_TOKEN}
    manifests_branch: str = DEFAULT_MANIFESTS_BRANCH
    services: tuple[Service, ...] = ()
    environments: tuple[Environment, ...] = ()
    always: tuple[str, ...] = ()
    default_branch: str = ""
    author: str = DEFAULT_AUTHOR
    signing_key: str = ""  # a path: manifests commits are signed with this SSH key
    insecure_registries: tuple[str, ...] = field(default=())
    #: key -> (its text, the variables it uses that are unset): for messages about empty values
    unset_variables: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    #: ``[build] engine``: "docker", "buildah" or "auto" (HOMELAB_RELEASE_ENGINE, else detected)
    engine: str = "auto"
    #: ``[build] cache_repo``, default ``<registry>/cache``; "" when there is none
    cache_repo: str = ""
    #: Whether every service's context folder and Dockerfile were found under ``root`` when the
    #: configuration was loaded (:func:`load_config` checks them; a hand-made one is not checked).
    sources_checked: bool = False

    @property
    def where(self) -> str:
        """How to name the configuration in messages."""
        return str(self.source) if self.source else f"{self.root} (no {CONFIG_NAME})"

    def service(self, name: str) -> Service:
        """The service called ``name``; :class:`ConfigError` listing the known ones otherwise."""
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services) or "none"
        raise ConfigError(f"{self.where}: no service {name!r} (services: {known})")

    def environment(self, name: str) -> Environment:
        """The environment called ``name``; :class:`ConfigError` listing the known ones otherwise."""
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments) or "none"
        if not name.strip():
            raise ConfigError(f"{self.where}: the environment name is empty; give one of {known}")
        raise ConfigError(
            f"{self.where}: no environment {name!r} (environments: {known}); "
            f"add [environments.{name}] to {CONFIG_NAME}"
        )

    def require_registry(self) -> str:
        """The registry repository prefix; :class:`ConfigError` saying how to set it when unset."""
        if not self.registry:
            raise ConfigError(
                self.unset_message("registry.repository")
                or f"{self.where}: no image registry: set registry.repository in {CONFIG_NAME} "
                "or the CI_REGISTRY_IMAGE variable"
            )
        return self.registry

    def unset_message(self, key: str) -> str:
        """Why ``key`` came out empty when a variable it uses is unset, else ''."""
        if key not in self.unset_variables:
            return ""
        text, names = self.unset_variables[key]
        return _unset_message(self.where, key, text, names)


def _unset_message(where: str, key: str, text: str, names: Sequence[str]) -> str:
    return (
        f"{where}: {key} = {text!r}, but the variable {', '.join(names)} "
        f"{'is' if len(names) == 1 else 'are'} not set; set it, or give a default: "
        f"${{{names[0]}:-VALUE}}"
    )


def load_config(repo: Path | str = ".", env: Mapping[str, str] | None = None) -> ReleaseConfig:
    """Read ``homelab-release.toml`` at the root of ``repo`` (if any) and fill in the defaults."""
    root = Path(repo).resolve()
    env = read_environment(env)
    if not root.is_dir():
        raise ConfigError(
            f"{root} is not a folder; pass the monorepo's root as repo=", parameter="repo"
        )
    path = root / CONFIG_NAME
    if not path.is_file():
        return _build(root, None, {}, env)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {_with_line(str(err), text)}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text: {err}") from err
    return _build(root, path, data, env)


def _with_line(message: str, text: str) -> str:
    """tomllib says "at end of document" without a line number: name the last line."""
    return message.replace(
        "(at end of document)", f"(at end of document, line {len(text.splitlines()) or 1})"
    )


# -- validation ------------------------------------------------------------------------------

_SCHEMA: dict[str, dict[str, type]] = {
    "registry": {"repository": str, "insecure": list},
    "manifests": {"url": str, "branch": str, "author": str, "signing_key": str},
    "changes": {"always": list, "default_branch": str},
    "build": {"engine": str, "cache_repo": str},
}
_SERVICE_KEYS: dict[str, type] = {
    "paths": list,
    "context": str,
    "dockerfile": str,
    "image": str,
    "kustomize_name": str,
}
_ENV_KEYS: dict[str, type] = {
    "overlay": str,
    "promote_from": str,
    "versions": str,
    "prereleases": bool,
    "write": str,
    "merge_request_labels": list,
}


class _Reader:
    """Type-checked, variable-expanded access to one table, with errors naming file and key."""

    def __init__(self, where: str, env: Mapping[str, str]) -> None:
        self.where = where
        self.env = env
        self.unset: dict[str, tuple[str, list[str]]] = {}

    def table(self, value: Any, key: str, allowed: Mapping[str, type]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: [{key}] must be a table")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown key {key}.{unknown[0]} (allowed: {', '.join(allowed)})"
            )
        out: dict[str, Any] = {}
        for name, kind in allowed.items():
            if name in value:
                out[name] = self._typed(f"{key}.{name}", value[name], kind)
        return out

    def _typed(self, key: str, value: Any, kind: type) -> Any:
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{self.where}: {key} must be a list of strings")
            return tuple(self.expand(v, key) for v in value)
        if not isinstance(value, kind):
            raise ConfigError(f"{self.where}: {key} must be a {kind.__name__}, not {value!r}")
        return self.expand(value, key) if isinstance(value, str) else value

    def expand(self, text: str, key: str) -> str:
        """``text`` with ``${VAR}`` and ``${VAR:-default}`` expanded; a variable that is unset or
        empty and has no default is remembered with ``key``, for the messages that need it."""

        def value(match: re.Match[str]) -> str:
            found = self.env.get(match["name"]) or match["default"]
            if found is None:
                self.unset.setdefault(key, (text, []))[1].append(match["name"])
            return found or ""

        return _VAR.sub(value, text)

    def require_set(self, key: str) -> None:
        """``key`` names a branch or a folder: a variable it uses that is unset (and has no
        default) makes it name another one than meant (an empty overlay is the manifests
        root, an empty branch the default one), so that is an error when the file is read."""
        if key in self.unset:
            text, names = self.unset[key]
            raise ConfigError(_unset_message(self.where, key, text, names))


def _build(
    root: Path, path: Path | None, data: Mapping[str, Any], env: Mapping[str, str]
) -> ReleaseConfig:
    where = str(path) if path else str(root)
    reader = _Reader(where, env)
    allowed_top = {*_SCHEMA, "services", "environments"}
    unknown = sorted(set(data) - allowed_top)
    if unknown:
        raise ConfigError(
            f"{where}: unknown table [{unknown[0]}] (allowed: {', '.join(sorted(allowed_top))})"
        )
    registry = reader.table(data.get("registry", {}), "registry", _SCHEMA["registry"])
    manifests = reader.table(data.get("manifests", {}), "manifests", _SCHEMA["manifests"])
    reader.require_set("manifests.branch")
    changes = reader.table(data.get("changes", {}), "changes", _SCHEMA["changes"])
    build = reader.table(data.get("build", {}), "build", _SCHEMA["build"])
    services = _services(root, reader, data.get("services"))
    environments = _environments(reader, data.get("environments"))
    repository = registry.get("repository", env.get("CI_REGISTRY_IMAGE", "")).rstrip("/")
    return ReleaseConfig(
        root=root,
        source=path,
        registry=repository,
        manifests_url=manifests.get("url", ""),
        manifests_branch=manifests.get("branch") or DEFAULT_MANIFESTS_BRANCH,
        services=services,
        environments=environments,
        always=changes.get("always", ()),
        default_branch=changes.get("default_branch", ""),
        insecure_registries=registry.get("insecure", ()),
        author=manifests.get("author", DEFAULT_AUTHOR),
        signing_key=manifests.get("signing_key", ""),
        unset_variables={k: (text, tuple(names)) for k, (text, names) in reader.unset.items()},
        engine=_engine(where, build.get("engine") or "auto"),
        cache_repo=_cache_repo(where, build.get("cache_repo"), repository, reader.unset),
        sources_checked=True,  # configured services by check_sources, found ones by discovery
    )


def _engine(where: str, name: str) -> str:
    if name not in ENGINES:
        raise ConfigError(
            f"{where}: build.engine = {name!r} is not an engine; use one of {', '.join(ENGINES)}"
        )
    return name


def _cache_repo(where: str, given: str | None, registry: str, unset: Mapping[str, Any]) -> str:
    """``[build] cache_repo`` (a repository; "" for none, as when it names an unset variable:
    ``${CI_REGISTRY_IMAGE}/cache`` outside CI), else ``<registry>/cache``."""
    if given is None:
        return f"{registry}/cache" if registry else ""
    if not given or "build.cache_repo" in unset:
        return ""
    try:
        ref = ImageRef.parse(given)
    except ReleaseError as err:
        raise ConfigError(f"{where}: build.cache_repo = {given!r}: {err}") from None
    if ref.tag or ref.digest:
        raise ConfigError(
            f"{where}: build.cache_repo = {given!r} must be a repository without tag or digest "
            f"(for example {ref.repository!r}); the layers are tagged by buildah"
        )
    return ref.repository


def _subtables(reader: _Reader, raw: Any, key: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{reader.where}: [{key}] must hold tables like [{key}.NAME]")
    for name in raw:
        if not _NAME.match(name):
            raise ConfigError(
                f"{reader.where}: [{key}.{name}]: names use lowercase letters, digits, '.', '_', '-'"
            )
    return raw


def _services(root: Path, reader: _Reader, raw: Any) -> tuple[Service, ...]:
    tables = _subtables(reader, raw, "services")
    if not tables:
        tables = {d.name: {} for d in _discover(root)}
    services = []
    for name, table in sorted(tables.items()):
        values = reader.table(table, f"services.{name}", _SERVICE_KEYS)
        context = values.get("context", name)
        paths = values.get("paths", (f"{name}/**/*",))
        for pattern in paths:
            if not pattern:
                unset = reader.unset.get(f"services.{name}.paths")
                why = f" (the variable {', '.join(unset[1])} is not set)" if unset else ""
                raise ConfigError(
                    f"{reader.where}: services.{name}.paths has an empty pattern{why}"
                )
        service = Service(
            name=name,
            paths=paths,
            context=context,
            dockerfile=values.get("dockerfile", f"{context}/Dockerfile"),
            image=values.get("image", name),
            kustomize_name=values.get("kustomize_name") or None,
        )
        check_sources(root, reader.where, service)
        services.append(service)
    _check_report_keys(reader.where, services)
    return tuple(services)


def check_sources(root: Path, where: str, service: Service) -> None:
    """``service``'s build context must be a folder of ``root`` and its Dockerfile a file there;
    a :class:`ConfigError` naming the configuration (``where``) and the fix otherwise.

    :func:`load_config` checks every configured service so that a typo in a table name
    (``[services.vtoe]``) does not silently stand for a service nothing ever changes; a plan
    checks a configuration it was handed (see :attr:`ReleaseConfig.sources_checked`)."""
    name = service.name
    if not (root / service.context).is_dir():
        found = [d.name for d in _discover(root)]
        guess = difflib.get_close_matches(service.context, found, n=1)
        raise ConfigError(
            f"{where}: [services.{name}]: its build context {service.context!r} is not a folder "
            f"of {root}; set services.{name}.context, or rename the table"
            + (f" (did you mean [services.{guess[0]}]?)" if guess else "")
            + f"; folders with a Dockerfile: {', '.join(found) or 'none'}"
        )
    if not (root / service.dockerfile).is_file():
        raise ConfigError(
            f"{where}: [services.{name}]: Dockerfile {service.dockerfile!r} does not exist in "
            f"{root}; add it or set services.{name}.dockerfile"
        )


def _check_report_keys(where: str, services: list[Service]) -> None:
    """Two services must not share a dotenv variable (``vote-api`` and ``vote_api``)."""
    seen: dict[str, str] = {}
    for service in services:
        key = dotenv_key(service.name)
        if key in seen:
            raise ConfigError(
                f"{where}: services {seen[key]!r} and {service.name!r} would both report as "
                f"{key} in build.env; rename one"
            )
        seen[key] = service.name


def _discover(root: Path) -> list[Path]:
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and (d / "Dockerfile").is_file()
    )


def _environments(reader: _Reader, raw: Any) -> tuple[Environment, ...]:
    tables = _subtables(reader, raw, "environments")
    if not tables:
        tables = {"develop": {}, "stage": {"promote_from": "develop"}}
    envs = []
    for name, table in tables.items():
        values = reader.table(table, f"environments.{name}", _ENV_KEYS)
        reader.require_set(f"environments.{name}.overlay")
        source = values.get("promote_from") or None
        if source is not None and source not in tables:
            raise ConfigError(
                f"{reader.where}: environments.{name}.promote_from = {source!r} names no environment "
                f"(environments: {', '.join(tables)})"
            )
        if source == name:
            raise ConfigError(f"{reader.where}: environments.{name} cannot promote from itself")
        envs.append(
            Environment(
                name,
                values.get("overlay", f"k8s/overlays/{name}"),
                source,
                versions=_policy(reader.where, name, values),
                write=_write_mode(reader.where, name, values.get("write")),
                merge_request_labels=values.get("merge_request_labels", ()),
            )
        )
    _check_chain(reader.where, envs)
    return tuple(envs)


def _policy(where: str, name: str, values: Mapping[str, Any]) -> VersionPolicy | None:
    """``versions`` (and ``prereleases``, which needs it) of ``[environments.NAME]``."""
    key = f"environments.{name}"
    if "versions" not in values:
        if "prereleases" in values:
            raise ConfigError(
                f"{where}: {key}.prereleases needs {key}.versions (the versions it releases)"
            )
        return None
    prereleases = bool(values.get("prereleases", False))
    return parse_policy(
        values["versions"], prereleases=prereleases, where=f"{where}: {key}.versions"
    )


def _write_mode(where: str, name: str, mode: str | None) -> str | None:
    if mode is not None and mode not in WRITE_MODES:
        raise ConfigError(
            f"{where}: environments.{name}.write = {mode!r}; use "
            + " or ".join(repr(m) for m in WRITE_MODES)
        )
    return mode


def _check_chain(where: str, envs: list[Environment]) -> None:
    sources = {e.name: e.promote_from for e in envs}
    for env in envs:
        seen = [env.name]
        step = env.promote_from
        while step is not None:
            if step in seen:
                chain = " -> ".join([*seen, step])
                raise ConfigError(f"{where}: environments promote in a circle ({chain})")
            seen.append(step)
            step = sources.get(step)
