"""homelab-release: build changed monorepo services and promote their images through GitOps.

The four workhorses are :func:`detect_changes`, :func:`build_image`, :func:`set_overlay_image`
and :func:`promote_overlay`; :func:`build_develop`, :func:`promote` and :func:`plan` compose them
into the workflows that the Nox sessions run, :func:`release`, :func:`history` and
:func:`rollback` move released versions and earlier states, and :func:`environment_status` reads
what each environment runs. :func:`fan_out`, :func:`build_planned_service` and
:func:`publish_planned` run the same develop steps as jobs of a generated GitLab child pipeline
(strategy child-pipeline). Every error raised on purpose is a :class:`ReleaseError`.
"""

from homelab_release.build import (
    BuildDurations,
    BuildRequest,
    BuiltImage,
    build_image,
    build_request,
)
from homelab_release.changes import ChangeSet, detect_changes
from homelab_release.childpipeline import ChildPipeline, JobSettings
from homelab_release.config import Environment, ReleaseConfig, Service, load_config
from homelab_release.context import CiContext, PipelineInfo
from homelab_release.develop import BuildDevelopResult, DevelopPlan, ServiceBuild
from homelab_release.engines import Engine
from homelab_release.errors import (
    BuildError,
    CommandError,
    ConfigError,
    FanOutError,
    GitError,
    ImageRefError,
    OverlayError,
    PromotionError,
    PushError,
    RegistryError,
    ReleaseError,
)
from homelab_release.fanout import (
    BuiltRecord,
    FanOut,
    PlannedRun,
    build_planned_service,
    fan_out,
    publish_planned,
)
from homelab_release.gitops import Published
from homelab_release.history import (
    History,
    OverlayState,
    RollbackError,
    RollbackResult,
    history,
    rollback,
)
from homelab_release.images import KEEP, ImageSpec
from homelab_release.latest import LatestMove
from homelab_release.overlay import ImageEntry, OverlayEdit, set_overlay_image
from homelab_release.promotion import PromotedImage, Promotion, promote_overlay
from homelab_release.releases import ReleasedImage, ReleaseResult, release
from homelab_release.secrets import RegistryCredentials
from homelab_release.status import EnvironmentStatus, ServiceImage, Status, environment_status
from homelab_release.versions import ReleaseVersion, VersionError, VersionPolicy
from homelab_release.workflows import (
    Plan,
    PlannedPromotion,
    PromoteResult,
    build_develop,
    plan,
    promote,
)

__all__ = [
    "KEEP",
    "BuildDevelopResult",
    "BuildDurations",
    "BuildError",
    "BuildRequest",
    "BuiltImage",
    "BuiltRecord",
    "ChangeSet",
    "ChildPipeline",
    "CiContext",
    "CommandError",
    "ConfigError",
    "DevelopPlan",
    "Engine",
    "Environment",
    "EnvironmentStatus",
    "FanOut",
    "FanOutError",
    "GitError",
    "History",
    "ImageEntry",
    "ImageRefError",
    "ImageSpec",
    "JobSettings",
    "LatestMove",
    "OverlayEdit",
    "OverlayError",
    "OverlayState",
    "PipelineInfo",
    "Plan",
    "PlannedPromotion",
    "PlannedRun",
    "PromoteResult",
    "PromotedImage",
    "Promotion",
    "PromotionError",
    "Published",
    "PushError",
    "RegistryCredentials",
    "RegistryError",
    "ReleaseConfig",
    "ReleaseError",
    "ReleaseResult",
    "ReleaseVersion",
    "ReleasedImage",
    "RollbackError",
    "RollbackResult",
    "Service",
    "ServiceBuild",
    "ServiceImage",
    "Status",
    "VersionError",
    "VersionPolicy",
    "build_develop",
    "build_image",
    "build_planned_service",
    "build_request",
    "detect_changes",
    "environment_status",
    "fan_out",
    "history",
    "load_config",
    "plan",
    "promote",
    "promote_overlay",
    "publish_planned",
    "release",
    "rollback",
    "set_overlay_image",
]
