"""The dotenv format GitLab's ``artifacts:reports:dotenv`` reads, and the names it gives services."""

from __future__ import annotations

from collections.abc import Mapping

from homelab_release.errors import ReleaseError

__all__ = ["dotenv_key", "format_dotenv"]


def format_dotenv(values: Mapping[str, str]) -> str:
    """``KEY=VALUE`` lines as GitLab's ``artifacts:reports:dotenv`` reads them (no quoting)."""
    lines = []
    for key, value in values.items():
        if "\n" in value:
            raise ReleaseError(f"dotenv value of {key} has a newline, which GitLab cannot read")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def dotenv_key(service: str) -> str:
    """The dotenv variable naming a service's image: ``vote`` -> ``VOTE_IMAGE``."""
    cleaned = "".join(c if c.isalnum() else "_" for c in service.upper())
    return f"{cleaned}_IMAGE"
