"""The release workflows the Nox sessions and the CLI run, composed from the library's steps.

``build_develop`` (:mod:`homelab_release.develop`): detect changed services -> build and push them
-> write every successful build into the develop overlay in one commit -> report. ``promote``: copy
the source environment's image entries into the target environment's overlay in one commit.
``plan``: a dry run of both, with no side effects.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_release.changes import ChangeSet
from homelab_release.config import Environment, ReleaseConfig
from homelab_release.context import CiContext
from homelab_release.develop import (
    BuildDevelopResult,
    ServiceBuild,
    build_develop,
    develop_entries,
    plan_develop,
)
from homelab_release.entries import ImageEntry
from homelab_release.environments import source_of, write_entries
from homelab_release.errors import ConfigError, PromotionError, ReleaseError
from homelab_release.gitops import Published, PublishedResult, checkout
from homelab_release.overlay import OverlayEdit, apply_overlay_entries, read_overlay_images
from homelab_release.promotion import (
    Promotion,
    promote_overlay,
    promoted_entries,
    promotion_of,
    verify_promoted,
)
from homelab_release.registrycheck import registry_lookup
from homelab_release.workspace import Workspace

__all__ = [
    "BuildDevelopResult",
    "Plan",
    "PlannedPromotion",
    "PromoteResult",
    "ServiceBuild",
    "build_develop",
    "plan",
    "promote",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromoteResult(PublishedResult):
    """What ``promote`` did: the environments, the promotion and the commit."""

    source: str
    target: str
    promotion: Promotion
    published: Published | None = None


# -- promote ---------------------------------------------------------------------------------


def promote(
    repo: Path | str = ".",
    *,
    to: str | None = None,
    images: Collection[str] | None = None,
    dry_run: bool = False,
    verify: bool | None = None,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> PromoteResult:
    """Copy the image entries of the target's ``promote_from`` overlay into the target overlay.

    Every promoted image must be in the registry first (``verify``, default ``not dry_run``),
    asked with the registry credentials of ``env`` (None: the process environment) or none;
    ``dry_run`` shows the diff and writes nothing.
    """
    ws = Workspace.open(repo, config, env)
    target = _target_environment(ws.config, to, ws.context)
    source = _promotion_source(ws.config, target)
    lookup = registry_lookup(ws.context.registry_credentials, ws.config.insecure_registries)
    remote = ws.remote()
    with checkout(remote) as tree:
        if dry_run:
            promotion = promote_overlay(
                tree / source.overlay, tree / target.overlay,
                images=images, dry_run=True, verify=verify, lookup=lookup,
            )  # fmt: skip
            return PromoteResult(source.name, target.name, promotion)

        def entries(root: Path) -> tuple[ImageEntry, ...]:
            chosen = promoted_entries(root / source.overlay, images)
            if verify is not False:
                verify_promoted(chosen, lookup)
            return chosen

        def subject(edit: OverlayEdit) -> str:
            names = ", ".join(name.rsplit("/", 1)[-1] for name in edit.edited)
            return f"promote {names} from {source.name}"

        trailers = {"Promoted-From": source.name, "Source-Commit": ws.source_commit}
        written = write_entries(
            ws, target, tree, remote, entries, subject=subject, trailers=trailers
        )
        promotion = promotion_of(tree / source.overlay, written.edit, written.entries)
    return PromoteResult(source.name, target.name, promotion, written.published)


def _target_environment(cfg: ReleaseConfig, name: str | None, context: CiContext) -> Environment:
    if name:
        return cfg.environment(name)
    if context.commit_branch:
        try:
            return cfg.environment(context.commit_branch)
        except ConfigError as err:
            raise ConfigError(f"{err}; or pass to=ENV", parameter="to") from None
    raise ConfigError(
        "no target environment: pass to=ENV, or run on a branch named like an environment "
        f"({', '.join(e.name for e in cfg.environments if e.promote_from)})",
        parameter="to",
    )


def _promotion_source(cfg: ReleaseConfig, target: Environment) -> Environment:
    if target.versions is not None:
        raise PromotionError(
            f"environment {target.name!r} takes versioned releases (versions = "
            f"{str(target.versions)!r}), not promotions: push a tag like v1.4.0 (the release job "
            "runs homelab-release release), or remove its versions policy"
        )
    return source_of(cfg, target)


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPromotion:
    """A promotion ``plan`` computed, or why it could not (``problem``)."""

    source: str
    target: str
    promotion: Promotion | None = None
    problem: str = ""


@dataclass(frozen=True)
class Plan:
    """What ``build_develop`` and ``promote`` would do now."""

    changes: ChangeSet
    tag: str
    environment: str
    references: tuple[str, ...]
    edit: OverlayEdit | None
    promotions: tuple[PlannedPromotion, ...]


def plan(
    repo: Path | str = ".",
    *,
    environment: str = "develop",
    base: str | None = None,
    head: str = "HEAD",
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> Plan:
    """Compute, without building, writing or pushing anything, what the workflows would change.

    The develop edit is computed exactly as ``build_develop`` computes it (an entry that already
    holds a later commit's image stays), but digests are only known after a build: the planned
    entries keep the current digest.
    """
    ws = Workspace.open(repo, config, env)
    develop = plan_develop(ws, environment=environment, base=base, head=head)
    planned = tuple(
        ServiceBuild(t.service, t.repository, develop.tag, ok=True) for t in develop.targets
    )
    references = tuple(f"{b.repository}:{b.tag}" for b in planned)
    target = ws.config.environment(environment)
    with checkout(ws.remote()) as tree:
        edit = None
        if planned:
            overlay = tree / target.overlay
            entries = develop_entries(ws, develop, planned, read_overlay_images(overlay))
            edit = apply_overlay_entries(overlay, entries, dry_run=True)
        promotions = tuple(
            _plan_promotion(tree, ws.config, e)
            for e in ws.config.environments
            if e.promote_from and e.versions is None  # releases go there, not promotions
        )
    return Plan(develop.changes, develop.tag, environment, references, edit, promotions)


def _plan_promotion(tree: Path, cfg: ReleaseConfig, target: Environment) -> PlannedPromotion:
    source = source_of(cfg, target)
    try:
        promotion = promote_overlay(
            tree / source.overlay, tree / target.overlay, dry_run=True, verify=False
        )
    except ReleaseError as err:
        return PlannedPromotion(source.name, target.name, problem=str(err))
    return PlannedPromotion(source.name, target.name, promotion)
