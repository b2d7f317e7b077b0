"""An environment's overlay on the manifests branch: where its images come from, writing image
entries into it in one commit, and the ``latest`` tags that follow it.

Every workflow that writes an overlay (develop builds, promotion, release, rollback) goes
through :func:`write_entries`: the entries are applied in a checkout of the manifests branch and
published in one commit made by the workspace's writer (author, signing key, merge-request
mode), again on the new tip when another pipeline pushed first. The commit's body lists the
entries that render differently afterwards; its trailers end with the pipeline's URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_release.config import Environment, ReleaseConfig
from homelab_release.entries import ImageEntry, changed_entries, first_by_name
from homelab_release.errors import ConfigError
from homelab_release.gitops import ManifestsRemote, Published, commit_message, publish, refresh
from homelab_release.images import ImageRef
from homelab_release.latest import LatestMove, follow_overlay
from homelab_release.overlay import OverlayEdit, apply_overlay_entries, read_overlay_images
from homelab_release.workspace import Workspace

__all__ = ["Written", "follow_latest", "source_of", "write_entries"]

#: The entries to write, given the checkout's root (read again on a new tip), or the entries.
EntriesAt = Callable[[Path], Sequence[ImageEntry]] | Sequence[ImageEntry]


def source_of(cfg: ReleaseConfig, target: Environment) -> Environment:
    """The environment whose images ``target`` takes (its ``promote_from``)."""
    if target.promote_from is None:
        raise ConfigError(
            f"environment {target.name!r} has no promote_from, so no environment's images go "
            f"there; set environments.{target.name}.promote_from in homelab-release.toml"
        )
    return cfg.environment(target.promote_from)


@dataclass(frozen=True)
class Written:
    """What :func:`write_entries` did: the overlay edit, the commit, the entries applied."""

    edit: OverlayEdit
    published: Published
    entries: tuple[ImageEntry, ...]


def write_entries(
    ws: Workspace,
    environment: Environment,
    tree: Path,
    remote: ManifestsRemote,
    entries: EntriesAt,
    *,
    subject: Callable[[OverlayEdit], str] | str,
    trailers: Mapping[str, str],
) -> Written:
    """Write ``entries`` into ``environment``'s overlay in the checkout ``tree`` and publish the
    change in one commit (nothing when nothing changes).

    The subject is ``<environment>: <subject>`` (a callable is given the edit); the body lists
    the entries that render differently; ``trailers`` (empty values left out) are followed by
    ``Pipeline``. A callable ``entries`` runs again on the branch's new tip after a lost race.
    """

    def apply(root: Path) -> tuple[OverlayEdit, tuple[ImageEntry, ...]]:
        chosen = tuple(entries(root) if callable(entries) else entries)
        return apply_overlay_entries(root / environment.overlay, chosen), chosen

    def message(applied: tuple[OverlayEdit, tuple[ImageEntry, ...]]) -> str:
        edit = applied[0]
        body = "\n".join(
            f"{e.name}: {e.reference}" for e in changed_entries(edit.before, edit.after)
        )
        title = subject(edit) if callable(subject) else subject
        footer = {**trailers, "Pipeline": ws.context.pipeline_url}
        return commit_message(f"{environment.name}: {title}", body, footer)

    with ws.writer(environment.name) as writer:
        (edit, chosen), published = publish(tree, remote, apply, message, writer=writer)
    return Written(edit, published, chosen)


def follow_latest(
    ws: Workspace,
    environment: Environment,
    targets: Mapping[str, ImageRef],
    tree: Path,
    remote: ManifestsRemote,
) -> tuple[LatestMove, ...]:
    """Each target's ``latest`` serves what ``environment``'s overlay names at the manifests
    branch's tip (see :func:`~homelab_release.latest.follow_overlay`): the checkout ``tree`` is
    brought to the tip before every read, so a pipeline that pushed meanwhile is seen."""
    overlay = tree / environment.overlay

    def read_tip() -> dict[str, ImageEntry]:
        refresh(tree, remote)
        return first_by_name(read_overlay_images(overlay))

    return follow_overlay(
        targets,
        read_tip,
        credentials=ws.context.registry_credentials,
        insecure=ws.config.insecure_registries,
    )
