"""Build records: what a child pipeline's build job hands the writer, ``built/<service>.json``.

A record is a :class:`~homelab_release.develop.ServiceBuild` as JSON (service, repository, tag,
digest, the outcome, the error and the timing). :func:`write_build_record` writes one atomically;
:func:`read_build_records` reads one per planned service, and a record that is missing, unreadable
or for another service, tag or repository becomes a failed build saying why: the writer then
publishes every other service and fails the pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from homelab_release.build import BuildDurations
from homelab_release.childpipeline import build_job_name, record_name
from homelab_release.develop import DevelopPlan, ServiceBuild
from homelab_release.errors import ReleaseError
from homelab_release.files import write_atomic

__all__ = ["from_record", "read_build_records", "to_record", "write_build_record"]

log = logging.getLogger(__name__)

_PHASES = tuple(phase.name for phase in dataclasses.fields(BuildDurations))
_TEXT_FIELDS = ("service", "repository", "tag", "digest", "error")
_JSON_TYPES = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def to_record(build: ServiceBuild) -> dict[str, Any]:
    """``build`` as JSON-ready data."""
    phases = build.durations
    return {
        "service": build.service,
        "repository": build.repository,
        "tag": build.tag,
        "digest": build.digest,
        "ok": build.ok,
        "error": build.error,
        "seconds": round(build.seconds, 3),
        "phases": None if phases is None else phases.as_dict(3),
    }


def from_record(data: object, where: str) -> ServiceBuild:
    """The build :func:`to_record` wrote; a :class:`ReleaseError` naming ``where`` (the file)
    and the field when ``data`` is not such a record."""
    if not isinstance(data, dict):
        raise ReleaseError(f"{where}: not a build record (a JSON object was expected)")
    text = {key: _field(data, key, str, where) for key in _TEXT_FIELDS}
    ok = _field(data, "ok", bool, where)
    if ok and not (text["repository"] and text["tag"] and text["digest"]):
        raise ReleaseError(f"{where}: a successful build needs repository, tag and digest")
    seconds = _seconds(data, "seconds", where)
    phases = data.get("phases")
    if phases is not None and not isinstance(phases, dict):
        raise ReleaseError(f"{where}: phases must be an object or null")
    durations = (
        None
        if phases is None
        else BuildDurations(**{name: _seconds(phases, name, where) for name in _PHASES})
    )
    return ServiceBuild(ok=ok, seconds=seconds, durations=durations, **text)


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ReleaseError(f"{where}: {key} must be {_JSON_TYPES[kind]}, not {_json_type(value)}")
    return value


def _seconds(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReleaseError(f"{where}: {key} must be a number, not {_json_type(value)}")
    if not math.isfinite(value) or value < 0:
        raise ReleaseError(f"{where}: {key} must be a number of seconds, not {value}")
    return float(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value)) or ("an array" if isinstance(value, list) else "an object")


def write_build_record(folder: Path, build: ServiceBuild) -> Path:
    """Write ``build`` as ``folder/<service>.json`` (see :func:`record_name`); return the path."""
    path = folder / f"{record_name(build.service)}.json"
    write_atomic(path, json.dumps(to_record(build), indent=2) + "\n")
    return path


def read_build_records(folder: Path, plan: DevelopPlan) -> tuple[ServiceBuild, ...]:
    """One build per planned service, in the plan's order, from ``folder/<service>.json``.

    A missing, unreadable or mismatched record (another service, tag or repository) gives a
    failed build saying why; files of services not in the plan are ignored.
    """
    planned = {f"{record_name(t.service)}.json" for t in plan.targets}
    strays = sorted(p.name for p in folder.glob("*.json") if p.name not in planned)
    if strays:
        log.warning("ignoring build records of services not planned: %s", ", ".join(strays))
    builds = []
    for target in plan.targets:
        path = folder / f"{record_name(target.service)}.json"
        try:
            build = _read_record(path, target.service, target.repository, plan.tag)
        except ReleaseError as err:
            log.error("%s: %s", target.service, err)  # noqa: TRY400 (expected failure)
            build = ServiceBuild(
                target.service, target.repository, plan.tag, ok=False, error=str(err)
            )
        builds.append(build)
    return tuple(builds)


def _read_record(path: Path, service: str, repository: str, tag: str) -> ServiceBuild:
    job = build_job_name(service)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReleaseError(
            f"no build record {path.name}: job {job} did not finish (see its log)"
        ) from None
    except OSError as err:
        raise ReleaseError(f"{path}: cannot read the build record ({err.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReleaseError(f"{path.name}: not JSON ({err.msg}, line {err.lineno})") from None
    build = from_record(data, path.name)
    if build.service != service:
        raise ReleaseError(f"{path.name} is for service {build.service!r}, not {service!r}")
    for what, found, wanted in (
        ("tag", build.tag, tag),
        ("repository", build.repository, repository),
    ):
        if build.ok and found != wanted:
            raise ReleaseError(
                f"{path.name} is for {what} {found!r}, but the plan has {wanted!r}: "
                f"a record from another pipeline; rerun job {job}"
            )
    return build
