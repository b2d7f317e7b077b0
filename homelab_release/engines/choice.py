"""Which engine builds: a name given by the caller, else ``[build] engine``, else the
``HOMELAB_RELEASE_ENGINE`` variable, else ``auto``.

``auto`` takes the Docker Engine when one answers on ``DOCKER_HOST`` (or the default socket), else
buildah when it is on ``PATH``, else fails with one message saying how to get either.
"""

from __future__ import annotations

import logging

from homelab_release.context import CiContext
from homelab_release.engines.base import DEFAULT_TIMEOUT, Engine
from homelab_release.engines.buildah import INSTALL_HINT, BuildahBuilder
from homelab_release.engines.docker import DEFAULT_HOST, ENGINE_HINT, DockerBuilder
from homelab_release.errors import BuildError

__all__ = ["AUTO", "ENGINE_NAMES", "PROBE_TIMEOUT", "choose_engine", "engine_name", "make_engine"]

log = logging.getLogger(__name__)

AUTO = "auto"
ENGINE_NAMES = ("docker", "buildah")
PROBE_TIMEOUT = 10.0  # seconds auto detection waits for a Docker Engine to answer


def engine_name(given: str | None = None, *, config: str = "", variable: str = "") -> str:
    """The engine to use: ``docker``, ``buildah`` or ``auto``, from the first of ``given`` (an
    argument), ``config`` (``[build] engine``) and ``variable`` (``HOMELAB_RELEASE_ENGINE``) that
    names one; ``auto`` in ``config`` or ``variable`` hands the choice on to the next.

    >>> engine_name(None, config="auto", variable="buildah")
    'buildah'
    """
    for value, where in ((given, "engine"), (config, "[build] engine"), (variable, "variable")):
        name = (value or "").strip().lower()
        if name in ENGINE_NAMES or (name == AUTO and where == "engine"):
            return name
        if name and name != AUTO:
            source = "HOMELAB_RELEASE_ENGINE" if where == "variable" else where
            raise BuildError(
                f"{source} = {value!r} is not a build engine; use docker, buildah or auto"
            )
    return AUTO


def make_engine(
    given: str | None,
    ctx: CiContext,
    *,
    config: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> Engine:
    """The engine :func:`engine_name` names, set up from ``ctx`` (auto: detected now)."""
    name = engine_name(given, config=config, variable=ctx.engine)
    if name == "docker":
        return DockerBuilder(settings=ctx.docker, timeout=timeout)
    if name == "buildah":
        return BuildahBuilder(settings=ctx.buildah, timeout=timeout)
    return choose_engine(ctx, timeout=timeout)


def choose_engine(ctx: CiContext, *, timeout: float = DEFAULT_TIMEOUT) -> Engine:
    """``auto``: the Docker Engine if it answers, else buildah if installed, else a
    :class:`BuildError` saying how to get either."""
    host = ctx.docker.get("DOCKER_HOST", "")
    where = f"DOCKER_HOST={host}" if host else DEFAULT_HOST
    probe = DockerBuilder(settings=ctx.docker, timeout=PROBE_TIMEOUT)
    try:
        answers = probe.answers()
    finally:
        probe.close()
    if answers:
        log.info("build engine: docker (auto: the Docker Engine answers at %s)", where)
        return DockerBuilder(settings=ctx.docker, timeout=timeout)
    buildah = BuildahBuilder(settings=ctx.buildah, timeout=timeout)
    if buildah.available():
        report = log.warning if host else log.info
        report("build engine: buildah (auto: no Docker Engine answers at %s)", where)
        return buildah
    raise BuildError(
        f"no build engine: no Docker Engine answers at {where} and buildah is not on PATH. "
        f"For the Docker Engine: {ENGINE_HINT}. For buildah (daemonless, rootless): "
        f"{INSTALL_HINT}. Then choose it with --engine, [build] engine in homelab-release.toml "
        "or HOMELAB_RELEASE_ENGINE"
    )
