"""History and rollback: the earlier states of an environment's overlay, and going back to one.

:func:`history` reads the commits of the manifests branch that changed an environment's overlay
(first parent, newest first; GitPython behind :func:`homelab_release.git.file_history`), each with
its time, its ``Source-Commit`` and ``Pipeline`` trailers and the image entries the overlay held
after it. :func:`rollback` writes the image entries of one of those states back as a **new** commit
(history is never rewritten) with ``Rollback-Of:`` (the state it replaces) and ``Rollback-To:``
trailers, after checking that every image of that state is still in the registry. Entries the old
state does not name (a service added since) stay as they are.

A rollback of an environment that builds write into (one without ``promote_from``, e.g. develop)
also moves each restored service's ``latest`` to the restored digest, so ``latest`` and the overlay
agree. The develop path's rule ("never replace a later commit's image") compares a build with what
the overlay holds *now*: after a rollback from C2 to C1, the next pipeline of a commit after C1
writes its image. That is how to roll forward (push a fix or a revert); a retried job of C2 itself
would bring C2 back, so do not retry it. A pipeline still running during the rollback cannot undo
it unnoticed in GitLab: the template's ``resource_group`` runs the rollback job after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from homelab_release import git
from homelab_release.config import Environment, ReleaseConfig
from homelab_release.entries import ImageEntry, first_entries
from homelab_release.environments import follow_latest, write_entries
from homelab_release.errors import ConfigError, OverlayError, RollbackError
from homelab_release.gitops import (
    ManifestsRemote,
    Published,
    PublishedResult,
    checkout,
    parse_trailers,
    subject_of,
)
from homelab_release.kustomization import KUSTOMIZATION_NAMES, ImagesDocument
from homelab_release.latest import LatestMove
from homelab_release.overlay import OverlayEdit, apply_overlay_entries
from homelab_release.registrycheck import check_entries, registry_lookup
from homelab_release.workspace import Workspace

__all__ = [
    "DEFAULT_LIMIT",
    "MIN_PREFIX",
    "History",
    "OverlayState",
    "RollbackResult",
    "choose_state",
    "history",
    "history_data",
    "read_states",
    "rollback",
]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
#: The fewest hex digits of a commit that ``to=`` takes as a prefix.
MIN_PREFIX = 7
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class OverlayState:
    """The overlay after one commit: the commit, its time, subject and trailers, the entries."""

    commit: str
    time: int
    subject: str
    trailers: Mapping[str, str] = field(default_factory=dict)
    images: tuple[ImageEntry, ...] = ()
    problem: str = ""  # the overlay could not be read at this commit

    @property
    def source_commit(self) -> str:
        """The monorepo commit the state came from (``Source-Commit``), '' when unknown."""
        return self.trailers.get("Source-Commit", "")

    @property
    def pipeline(self) -> str:
        """The pipeline that wrote the state (``Pipeline``), '' when unknown."""
        return self.trailers.get("Pipeline", "")


@dataclass(frozen=True)
class History:
    """The states of one environment's overlay, newest (the current one) first."""

    environment: str
    overlay: str
    branch: str
    states: tuple[OverlayState, ...]


def history(
    repo: Path | str = ".",
    *,
    environment: str,
    limit: int | None = DEFAULT_LIMIT,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> History:
    """The last ``limit`` states (None: all) of ``environment``'s overlay on the manifests branch."""
    if limit is not None and limit < 1:
        raise ConfigError(
            f"limit={limit}: give the number of states to list, 1 or more (None: all of them)",
            parameter="limit",
        )
    ws = Workspace.open(repo, config, env)
    target = ws.config.environment(environment)
    remote = ws.remote()
    with checkout(remote, history=True) as tree:
        states = read_states(tree, target, limit=limit)
    return History(target.name, target.overlay, remote.branch, states)


def read_states(
    tree: Path, environment: Environment, *, limit: int | None = None, rev: str = "HEAD"
) -> tuple[OverlayState, ...]:
    """The states of ``environment``'s overlay in the clone ``tree`` (it needs the history)."""
    folder = environment.overlay.strip("/")
    revisions = git.file_history(tree, folder, KUSTOMIZATION_NAMES, rev=rev, max_count=limit)
    return tuple(_state(folder, revision) for revision in revisions)


def _state(folder: str, revision: git.Revision) -> OverlayState:
    subject = subject_of(revision.message)
    trailers = parse_trailers(revision.message)
    base = OverlayState(revision.sha, revision.time, subject, trailers)
    if len(revision.files) != 1:
        what = "no kustomization file" if not revision.files else "several kustomization files"
        return replace(base, problem=f"{folder} has {what} at this commit")
    ((name, text),) = revision.files.items()
    try:
        entries = ImagesDocument.load(Path(folder) / name, text).entries
    except OverlayError as err:
        return replace(base, problem=str(err))
    return replace(base, images=first_entries(entries, f"{folder} at {revision.sha[:12]}"))


def choose_state(
    states: Sequence[OverlayState],
    *,
    environment: str,
    to: str | None = None,
    steps: int | None = None,
) -> OverlayState:
    """The state a rollback goes to: the commit ``to`` names (a full SHA or a unique prefix of
    at least :data:`MIN_PREFIX` hex digits), or the one ``steps`` states before the current one."""
    if (to is None) == (steps is None):
        raise RollbackError("give the state to roll back to: to=COMMIT or steps=N (one of them)")
    if not states:
        raise RollbackError(f"the {environment} overlay has no history on the manifests branch")
    if steps is not None:
        return _steps_back(states, environment, steps)
    wanted = (to or "").strip().lower()
    found = [s for s in states if len(wanted) >= MIN_PREFIX and s.commit.startswith(wanted)]
    if len(found) != 1:
        listed = ", ".join(f"{s.commit[:12]} ({s.subject})" for s in states[:5])
        raise RollbackError(
            f"commit {to!r} {_why_not(wanted, found)} the {environment} overlay (commits that "
            f"changed it, newest first: {listed}); see homelab-release history --env {environment}",
            parameter="to",
        )
    return found[0]


def _steps_back(states: Sequence[OverlayState], environment: str, steps: int) -> OverlayState:
    earlier = len(states) - 1
    if earlier == 0:
        raise RollbackError(
            f"the {environment} overlay has no earlier state to roll back to: only its current "
            f"one, {states[0].commit[:12]} ({states[0].subject})"
        )
    if not 1 <= steps <= earlier:
        raise RollbackError(
            f"steps={steps}: the {environment} overlay has {earlier} earlier state(s) in the "
            f"history read; give a number from 1 to {earlier}",
            parameter="steps",
        )
    return states[steps]


def _why_not(wanted: str, found: Sequence[OverlayState]) -> str:
    if found:
        return "names several states of"
    if len(wanted) < MIN_PREFIX and _HEX.fullmatch(wanted):
        return f"is too short to name a state of (a prefix needs at least {MIN_PREFIX} hex digits)"
    return "is not a state of"


@dataclass(frozen=True)
class RollbackResult(PublishedResult):
    """What ``rollback`` did: the state replaced, the state restored, the edit and the commit."""

    environment: str
    current: OverlayState
    restored: OverlayState
    edit: OverlayEdit | None = None
    published: Published | None = None
    latest: tuple[LatestMove, ...] = ()
    dry_run: bool = False


def rollback(
    repo: Path | str = ".",
    *,
    environment: str,
    to: str | None = None,
    steps: int | None = None,
    dry_run: bool = False,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> RollbackResult:
    """Write the image entries of an earlier state of ``environment``'s overlay back, as a new
    commit, after checking that each of its images is still in the registry."""
    ws = Workspace.open(repo, config, env)
    target = ws.config.environment(environment)
    if not dry_run:
        ws.check_writer(target.name)
    remote = ws.remote()
    with checkout(remote, history=True) as tree:
        states = read_states(tree, target, limit=steps + 1 if steps and steps > 0 else None)
        state = choose_state(states, environment=target.name, to=to, steps=steps)
        current = states[0]
        entries = _restorable(state, target.name)
        _require_images(ws, entries, state)
        if dry_run:
            edit = apply_overlay_entries(tree / target.overlay, entries, dry_run=True)
            return RollbackResult(target.name, current, state, edit, dry_run=True)
        trailers = {
            "Rollback-Of": current.commit,
            "Rollback-To": state.commit,
            "Source-Commit": state.source_commit,
        }
        written = write_entries(
            ws, target, tree, remote, entries,
            subject=f"roll back to {state.commit[:12]}", trailers=trailers,
        )  # fmt: skip
        published = written.published
        moved = published.commit is not None and not published.merge_request
        moves = _follow_latest(ws, target, entries, tree, remote) if moved else ()
    return RollbackResult(target.name, current, state, written.edit, published, moves)


def _restorable(state: OverlayState, environment: str) -> tuple[ImageEntry, ...]:
    if state.problem:
        raise RollbackError(
            f"cannot roll the {environment} overlay back to {state.commit[:12]}: {state.problem}"
        )
    if not state.images:
        raise RollbackError(
            f"state {state.commit[:12]} of the {environment} overlay names no images: there is "
            "nothing to restore; pick a later state (homelab-release history)"
        )
    return state.images


def _require_images(ws: Workspace, entries: Sequence[ImageEntry], state: OverlayState) -> None:
    """Every image of the state must still be in the registry; one error says what is not."""
    lookup = registry_lookup(ws.context.registry_credentials, ws.config.insecure_registries)
    check = check_entries(entries, lookup, doing="rolling back", error=RollbackError)
    if check.problem:
        raise RollbackError(
            f"not rolling back to {state.commit[:12]}: {check.problem}; pick another state "
            "(homelab-release history) or rebuild them"
        )


def _follow_latest(
    ws: Workspace,
    target: Environment,
    entries: Sequence[ImageEntry],
    tree: Path,
    remote: ManifestsRemote,
) -> tuple[LatestMove, ...]:
    """An environment builds write into (no promote_from): its ``latest`` tags follow the
    overlay at the branch's tip, so they serve the restored images (or a later pipeline's)."""
    if target.promote_from is not None:
        return ()
    targets = {e.name: e.repository for e in entries if e.new_name and e.digest}
    return follow_latest(ws, target, targets, tree, remote)


def history_data(found: History) -> dict[str, object]:
    """The history as plain data for ``--json``."""
    return {
        "environment": found.environment,
        "overlay": found.overlay,
        "branch": found.branch,
        "states": [
            {
                "commit": s.commit,
                "time": s.time,
                "subject": s.subject,
                "source_commit": s.source_commit or None,
                "pipeline": s.pipeline or None,
                "trailers": dict(s.trailers),
                "problem": s.problem or None,
                "images": {e.name: e.reference for e in s.images},
            }
            for s in found.states
        ],
    }
