"""The build engines behind :func:`homelab_release.build.build_image`.

``docker``: the Docker Engine through the docker SDK (a runner's socket or docker-in-docker).
Every engine implements :class:`~homelab_release.engines.base.Engine`.
"""

from homelab_release.engines.base import BuildRequest, Engine, LocalImage

__all__ = ["BuildRequest", "Engine", "LocalImage"]
