"""The build engines behind :func:`homelab_release.build.build_image`.

``docker``: the Docker Engine through the docker SDK (a runner's socket or docker-in-docker);
``buildah``: the buildah program, daemonless and rootless, with a cache repository. Every engine
implements :class:`~homelab_release.engines.base.Engine`; :func:`make_engine` picks one by name
(``auto``: the Docker Engine when it answers, else buildah).
"""

from homelab_release.engines.base import BuildRequest, Engine, LocalImage
from homelab_release.engines.buildah import BuildahBuilder
from homelab_release.engines.choice import engine_name, make_engine
from homelab_release.engines.docker import DockerBuilder

__all__ = [
    "BuildRequest",
    "BuildahBuilder",
    "DockerBuilder",
    "Engine",
    "LocalImage",
    "engine_name",
    "make_engine",
]
