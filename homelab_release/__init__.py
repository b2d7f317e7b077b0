"""homelab-release: build changed monorepo services and promote their images through GitOps overlays."""

from homelab_release.config import Environment, ReleaseConfig, Service, load_config
from homelab_release.errors import ReleaseError
from homelab_release.images import ImageRef

__all__ = [
    "Environment",
    "ImageRef",
    "ReleaseConfig",
    "ReleaseError",
    "Service",
    "load_config",
]
