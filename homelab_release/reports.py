"""The reports a develop run leaves for later jobs and for people.

``build.env`` (GitLab's ``artifacts:reports:dotenv``: ``SERVICES``, ``FAILED_SERVICES``,
``IMAGE_TAG``, ``MANIFESTS_COMMIT`` and ``<SERVICE>_IMAGE=repository:tag@digest``) and
``release-report.json`` (the change set, each build with its phases, the commit, and the error
when the run failed). They are written on every exit path, a failed run included, so that a job
that uploads them ``when: always`` always has them: a run notes what it learns in a
:class:`RunRecord` inside :func:`recorded`, which writes the reports however the block ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homelab_release.dotenv import dotenv_key, format_dotenv
from homelab_release.errors import ReleaseError
from homelab_release.files import write_atomic
from homelab_release.secrets import HiddenText, redact

if TYPE_CHECKING:
    from homelab_release.changes import ChangeSet
    from homelab_release.develop import ServiceBuild
    from homelab_release.latest import LatestMove

__all__ = [
    "DOTENV_NAME",
    "JSON_NAME",
    "RunRecord",
    "RunReport",
    "error_text",
    "recorded",
    "write_reports",
]

log = logging.getLogger(__name__)

DOTENV_NAME = "build.env"
JSON_NAME = "release-report.json"


@dataclass(frozen=True)
class RunReport:
    """What a develop run knows, complete or not: the reports are made from this.

    ``planned`` names the services the run set out to build; those without a successful build
    count as failed. ``error`` is the message of the error that ended the run early, if any.
    ``changed_files`` is the number of changed files when ``changes`` does not list them (the
    writer of a child pipeline has the parent's count, not its list).
    """

    environment: str
    tag: str = ""
    changes: ChangeSet | None = None
    planned: tuple[str, ...] = ()
    builds: tuple[ServiceBuild, ...] = ()
    commit: str | None = None
    latest: tuple[LatestMove, ...] = ()
    error: str = ""
    changed_files: int | None = None

    @property
    def built(self) -> tuple[ServiceBuild, ...]:
        return tuple(b for b in self.builds if b.ok)

    @property
    def failed(self) -> tuple[str, ...]:
        """Services planned but not built (their build failed, or the run ended first)."""
        done = {b.service for b in self.built}
        return tuple(name for name in self.planned if name not in done)


def write_reports(folder: Path, report: RunReport) -> tuple[Path, Path]:
    """Write ``build.env`` and ``release-report.json`` into ``folder`` (created if need be)."""
    dotenv = folder / DOTENV_NAME
    data = folder / JSON_NAME
    write_atomic(dotenv, format_dotenv(dotenv_values(report)))
    write_atomic(data, json.dumps(report_data(report), indent=2) + "\n")
    return dotenv, data


@dataclass
class RunRecord:
    """What a run knows so far (mutable on purpose): :func:`recorded` writes the reports from
    it when the run ends, however it ends; ``paths`` are the reports written."""

    report: RunReport
    paths: tuple[Path, ...] = ()

    def note(self, **changes: Any) -> None:
        """Add what the run learnt (fields of :class:`RunReport`)."""
        self.report = replace(self.report, **changes)


@contextmanager
def recorded(
    folder: Path, report: RunReport, secrets: Iterable[HiddenText] = ()
) -> Iterator[RunRecord]:
    """Write ``build.env`` and ``release-report.json`` into ``folder`` when the block ends, from
    what it noted in the :class:`RunRecord` it gets; on every exit, errors included.

    When an exception ends the block (a :class:`ReleaseError`, any other error, an interrupt),
    the JSON report's ``error`` says what it was (see :func:`error_text`, ``secrets`` masked) and
    the exception goes on; reports that cannot be written then are logged, not raised, so that
    the original error is the one the caller sees.
    """
    record = RunRecord(report)
    try:
        yield record
    except BaseException as err:
        failed = replace(record.report, error=redact(error_text(err), secrets))
        try:
            record.paths = write_reports(folder, failed)
        except Exception:
            log.exception("the reports of the failed run could not be written into %s", folder)
        raise
    record.paths = write_reports(folder, record.report)


def error_text(err: BaseException) -> str:
    """What ended a run, for the report: a :class:`ReleaseError`'s message, else the
    exception's type and message (``KeyboardInterrupt`` when there is no message)."""
    if isinstance(err, ReleaseError):
        return str(err)
    name = type(err).__name__
    return f"{name}: {err}" if str(err) else name


def dotenv_values(report: RunReport) -> dict[str, str]:
    """The dotenv report: ``SERVICES``, ``FAILED_SERVICES``, ``IMAGE_TAG``, ``MANIFESTS_COMMIT``
    and ``<SERVICE>_IMAGE`` of every service built."""
    values = {
        "SERVICES": ",".join(b.service for b in report.built),
        "FAILED_SERVICES": ",".join(report.failed),
        "IMAGE_TAG": report.tag,
        "MANIFESTS_COMMIT": report.commit or "",
    }
    values |= {dotenv_key(b.service): b.reference for b in report.built}
    return values


def report_data(report: RunReport) -> dict[str, object]:
    """The JSON report: the change set, each build, the manifests commit and any error."""
    return {
        "environment": report.environment,
        "tag": report.tag,
        "changes": _changes(report.changes, report.changed_files),
        "builds": [_build(b) for b in report.builds],
        "failed": list(report.failed),
        "manifests_commit": report.commit,
        "latest": [
            {"repository": m.repository, "moved": m.moved, "digest": m.digest, "note": m.note}
            for m in report.latest
        ],
        "error": report.error or None,
    }


def _changes(changes: ChangeSet | None, count: int | None) -> dict[str, object] | None:
    if changes is None:
        return None
    return {
        "base": changes.base,
        "head": changes.head,
        "reason": changes.reason,
        "services": list(changes.services),
        "files": len(changes.files) if count is None else count,
    }


def _build(build: ServiceBuild) -> dict[str, object]:
    phases = build.durations
    return {
        "service": build.service,
        "ok": build.ok,
        "reference": build.reference,
        "digest": build.digest,
        "error": build.error,
        "seconds": round(build.seconds, 2),
        "phases": None if phases is None else phases.as_dict(2),
    }
