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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from homelab_release import git
from homelab_release.config import Environment, ReleaseConfig
from homelab_release.entries import ImageEntry, first_by_name
from homelab_release.errors import OverlayError, PromotionError, ReleaseError
from homelab_release.gitops import (
    Published,
    checkout,
    commit_message,
    parse_trailers,
    publish,
    subject_of,
)
from homelab_release.images import ImageRef
from homelab_release.kustomization import KUSTOMIZATION_NAMES, ImagesDocument
from homelab_release.latest import LatestMove, follow_overlay
from homelab_release.overlay import OverlayEdit, apply_overlay_entries, read_overlay_images
from homelab_release.registry import image_exists
from homelab_release.releases import source_reference
from homelab_release.workspace import Workspace

__all__ = [
    "DEFAULT_LIMIT",
    "History",
    "OverlayState",
    "RollbackError",
    "RollbackResult",
    "choose_state",
    "history",
    "history_data",
    "read_states",
    "rollback",
]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20


class RollbackError(PromotionError):
    """A rollback cannot proceed (no such state, an image gone); nothing was written."""


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
    return replace(base, images=tuple(first_by_name(entries).values()))


def choose_state(
    states: Sequence[OverlayState],
    *,
    environment: str,
    to: str | None = None,
    steps: int | None = None,
) -> OverlayState:
    """The state a rollback goes to: the commit ``to`` names (a full SHA or a unique prefix of
    at least 7 digits), or the one ``steps`` states before the current one."""
    if (to is None) == (steps is None):
        raise RollbackError(
            "give the state to roll back to: --to COMMIT or --steps N (one of them)"
        )
    if not states:
        raise RollbackError(f"the {environment} overlay has no history on the manifests branch")
    if steps is not None:
        if steps < 1 or steps >= len(states):
            raise RollbackError(
                f"--steps {steps}: the {environment} overlay has {len(states) - 1} earlier "
                f"state(s) in the history read; give 1 to {max(1, len(states) - 1)}, or --to COMMIT"
            )
        return states[steps]
    wanted = (to or "").strip().lower()
    found = [s for s in states if len(wanted) >= 7 and s.commit.startswith(wanted)]
    if len(found) != 1:
        listed = ", ".join(f"{s.commit[:12]} ({s.subject})" for s in states[:5])
        why = "names several states" if found else "is not a state of"
        raise RollbackError(
            f"commit {to!r} {why} the {environment} overlay (commits that changed it, newest "
            f"first: {listed}); see homelab-release history --env {environment}"
        )
    return found[0]


@dataclass(frozen=True)
class RollbackResult:
    """What ``rollback`` did: the state replaced, the state restored, the edit and the commit."""

    environment: str
    current: OverlayState
    restored: OverlayState
    edit: OverlayEdit | None = None
    published: Published | None = None
    latest: tuple[LatestMove, ...] = ()
    dry_run: bool = False

    @property
    def commit(self) -> str | None:
        """The manifests commit, None when nothing was committed."""
        return self.published.commit if self.published else None


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

        def apply(checkout_root: Path) -> OverlayEdit:
            return apply_overlay_entries(checkout_root / target.overlay, entries)

        def message(edit: OverlayEdit) -> str:
            body = "\n".join(f"{e.name}: {e.reference}" for e in entries)
            trailers = {
                "Rollback-Of": current.commit,
                "Rollback-To": state.commit,
                "Source-Commit": state.source_commit,
                "Pipeline": ws.context.pipeline_url,
            }
            subject = f"{target.name}: roll back to {state.commit[:12]}"
            return commit_message(subject, body, trailers)

        with ws.writer(target.name) as writer:
            edit, published = publish(tree, remote, apply, message, writer=writer)
        moved = published.commit is not None and not published.merge_request
        moves = _follow_latest(ws, target, entries, tree) if moved else ()
    return RollbackResult(target.name, current, state, edit, published, moves)


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
    """Every image of the state must still be in the registry; one error lists those gone."""
    credentials, insecure = ws.context.registry_credentials, ws.config.insecure_registries
    missing = []
    for entry in entries:
        try:
            reference = source_reference(entry)
        except PromotionError:
            continue  # it keeps the base's image: nothing the registry could have lost
        try:
            present = image_exists(reference, credentials, insecure=insecure)
        except ReleaseError as err:
            raise RollbackError(f"cannot check {reference} before rolling back: {err}") from err
        if not present:
            missing.append(str(reference))
    if missing:
        raise RollbackError(
            f"not rolling back to {state.commit[:12]}: these images are gone from the registry: "
            + ", ".join(missing)
            + "; pick another state (homelab-release history) or rebuild them"
        )


def _follow_latest(
    ws: Workspace, target: Environment, entries: Sequence[ImageEntry], tree: Path
) -> tuple[LatestMove, ...]:
    """An environment builds write into (no promote_from): its ``latest`` tags follow the
    overlay, so they serve the restored images too."""
    if target.promote_from is not None:
        return ()
    targets = {}
    for entry in entries:
        if entry.new_name and entry.digest:
            targets[entry.name] = ImageRef.parse(entry.new_name)
    overlay = tree / target.overlay
    return follow_overlay(
        targets,
        lambda: first_by_name(read_overlay_images(overlay)),
        credentials=ws.context.registry_credentials,
        insecure=ws.config.insecure_registries,
    )


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
