"""GitLab CI context: the predefined ``CI_*`` variables and the dotenv report.

Everything here reads an explicit mapping (``os.environ`` by default) so that callers and tests can
give a pipeline's variables without touching the process environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from homelab_release.errors import ReleaseError
from homelab_release.secrets import HiddenText

NO_SECRET = HiddenText("")


@dataclass(frozen=True)
class CiContext:
    """The parts of GitLab's predefined variables that the workflows use."""

    in_ci: bool = False
    commit_sha: str = ""
    commit_branch: str = ""
    project_dir: str = ""
    pipeline_url: str = ""
    project_url: str = ""
    repository_url: HiddenText = NO_SECRET
    git_token: HiddenText = NO_SECRET
    git_user: str = "oauth2"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CiContext:
        """Read the context from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        token, user = _git_token(env)
        return cls(
            in_ci=env.get("GITLAB_CI") == "true" or env.get("CI") == "true",
            commit_sha=env.get("CI_COMMIT_SHA", ""),
            commit_branch=env.get("CI_COMMIT_BRANCH", ""),
            project_dir=env.get("CI_PROJECT_DIR", ""),
            pipeline_url=env.get("CI_PIPELINE_URL", ""),
            project_url=env.get("CI_PROJECT_URL", ""),
            repository_url=HiddenText(env.get("CI_REPOSITORY_URL", "")),
            git_token=HiddenText(token),
            git_user=user,
        )


def _git_token(env: Mapping[str, str]) -> tuple[str, str]:
    """The token for pushes to the manifests branch and the user name GitLab expects with it."""
    for name in ("HOMELAB_RELEASE_GIT_TOKEN", "GITLAB_TOKEN"):
        if env.get(name):
            return env[name], "oauth2"
    if env.get("CI_JOB_TOKEN"):
        return env["CI_JOB_TOKEN"], "gitlab-ci-token"
    return "", "oauth2"


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
