"""homelab-release: build changed monorepo services and promote their images through GitOps.

The four workhorses are :func:`detect_changes`, :func:`build_image`, :func:`set_overlay_image`
and :func:`promote_overlay`; :func:`build_develop` and :func:`promote` compose them into the two
workflows that the Nox sessions run.
"""

from homelab_release.build import BuildDurations, BuiltImage, build_image
from homelab_release.changes import ChangeSet, detect_changes, matches_any
from homelab_release.config import Environment, ReleaseConfig, Service, load_config
from homelab_release.errors import (
    BuildError,
    ConfigError,
    GitError,
    ImageRefError,
    OverlayError,
    PromotionError,
    PushError,
    RegistryError,
    ReleaseError,
)
from homelab_release.images import ImageRef, ImageSpec
from homelab_release.overlay import (
    ImageEntry,
    OverlayEdit,
    apply_overlay_entries,
    find_kustomization,
    read_overlay_images,
    set_overlay_image,
)
from homelab_release.promote import PromotedImage, Promotion, promote_overlay
from homelab_release.registry import image_exists, manifest_digest
from homelab_release.secrets import HiddenText, RegistryCredentials
from homelab_release.status import Status, environment_status
from homelab_release.workflows import (
    BuildDevelopResult,
    Plan,
    PromoteResult,
    ServiceBuild,
    build_develop,
    plan,
    promote,
)

__all__ = [
    "BuildDevelopResult",
    "BuildDurations",
    "BuildError",
    "BuiltImage",
    "ChangeSet",
    "ConfigError",
    "Environment",
    "GitError",
    "HiddenText",
    "ImageEntry",
    "ImageRef",
    "ImageRefError",
    "ImageSpec",
    "OverlayEdit",
    "OverlayError",
    "Plan",
    "PromoteResult",
    "PromotedImage",
    "Promotion",
    "PromotionError",
    "PushError",
    "RegistryCredentials",
    "RegistryError",
    "ReleaseConfig",
    "ReleaseError",
    "Service",
    "ServiceBuild",
    "Status",
    "apply_overlay_entries",
    "build_develop",
    "build_image",
    "detect_changes",
    "environment_status",
    "find_kustomization",
    "image_exists",
    "load_config",
    "manifest_digest",
    "matches_any",
    "plan",
    "promote",
    "promote_overlay",
    "read_overlay_images",
    "set_overlay_image",
]
