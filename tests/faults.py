"""Faults the tests cannot produce for real, in one place (each is the one mock of its tests)."""

from __future__ import annotations

from homelab_release.engines.base import BuildRequest, LocalImage
from homelab_release.secrets import RegistryCredentials

__all__ = ["FallingEngine"]


class FallingEngine:
    """An engine whose build raises ``error``: an exception the library never raises on purpose
    (an SDK's own error, a bug, an interrupt), which no real engine can be made to raise."""

    name = "falling"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def unsupported(self, dockerfile: str) -> tuple[str, ...]:
        return ()

    def remedy(self) -> str:
        return ""

    def build(self, request: BuildRequest, credentials: RegistryCredentials | None) -> LocalImage:
        raise self.error

    def push(
        self,
        request: BuildRequest,
        image: LocalImage,
        tag: str,
        credentials: RegistryCredentials | None,
    ) -> str | None:
        raise AssertionError("nothing is pushed after a failed build")

    def close(self) -> None:
        """Nothing to release."""
