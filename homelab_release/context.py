"""The one reader of the outside world: GitLab's predefined variables, tokens and credentials.

:meth:`CiContext.from_env` is the only place in the package that reads the process environment
(``os.environ``). The CLI and the workflows read it once and hand values down; a library function
called without a value takes its documented default from a context read the same way. A caller
that passes ``env=`` (a mapping of a pipeline's variables) gets exactly that mapping everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from homelab_release.secrets import GitCredentials, HiddenText, RegistryCredentials

__all__ = ["SECRET_VARIABLES", "CiContext", "PipelineInfo", "read_environment"]

NO_SECRET = HiddenText("")
_DOCKER_VARIABLES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
#: The variables whose values are secrets GitLab or the user gives a job.
SECRET_VARIABLES = (
    "CI_JOB_TOKEN",
    "GITLAB_TOKEN",
    "HOMELAB_RELEASE_GIT_TOKEN",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPLOY_PASSWORD",
    "CI_DEPENDENCY_PROXY_PASSWORD",
    "CI_REPOSITORY_URL",  # holds the job token
)
#: What the buildah process gets from the environment: buildah's and the containers libraries'
#: own variables (BUILDAH_ISOLATION, CONTAINERS_STORAGE_CONF, STORAGE_DRIVER, REGISTRY_AUTH_FILE
#: ...), where to find programs and the user's folders, and the proxy and CA settings for pulls.
_BUILDAH_PREFIXES = ("BUILDAH_", "CONTAINERS_", "_CONTAINERS_", "STORAGE_", "XDG_")
_BUILDAH_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
    "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip


def read_environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """``env`` itself, or a read-only snapshot of the process environment when it is None."""
    return MappingProxyType(dict(os.environ)) if env is None else env


@dataclass(frozen=True)
class PipelineInfo:
    """What GitLab says about the pipeline: the facts that choose the base of a change set.

    Every field is the raw variable's value, ``""`` when it is unset, except ``before_sha``,
    which is None when ``CI_COMMIT_BEFORE_SHA`` is unset (an unset and an all-zeros before-SHA
    mean different things).
    """

    in_gitlab: bool = False  # GITLAB_CI=true
    source: str = ""  # CI_PIPELINE_SOURCE
    commit_sha: str = ""  # CI_COMMIT_SHA
    commit_branch: str = ""  # CI_COMMIT_BRANCH
    commit_tag: str = ""  # CI_COMMIT_TAG
    before_sha: str | None = None  # CI_COMMIT_BEFORE_SHA
    merge_request_base: str = ""  # CI_MERGE_REQUEST_DIFF_BASE_SHA
    default_branch: str = ""  # CI_DEFAULT_BRANCH

    @classmethod
    def from_variables(cls, env: Mapping[str, str]) -> PipelineInfo:
        """Read the pipeline's facts from a mapping of its variables."""
        return cls(
            in_gitlab=env.get("GITLAB_CI") == "true",
            source=env.get("CI_PIPELINE_SOURCE", ""),
            commit_sha=env.get("CI_COMMIT_SHA", ""),
            commit_branch=env.get("CI_COMMIT_BRANCH", ""),
            commit_tag=env.get("CI_COMMIT_TAG", ""),
            before_sha=env.get("CI_COMMIT_BEFORE_SHA"),
            merge_request_base=env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", ""),
            default_branch=env.get("CI_DEFAULT_BRANCH", ""),
        )


@dataclass(frozen=True)
class CiContext:
    """Everything homelab-release takes from its environment, read once.

    ``variables`` is the whole mapping the context was read from, kept for ``${VAR}`` expansion
    in ``homelab-release.toml``; it may hold secrets and never appears in a repr.
    """

    in_ci: bool = False
    pipeline: PipelineInfo = field(default_factory=PipelineInfo)
    project_dir: str = ""
    pipeline_url: str = ""
    project_url: str = ""
    registry_image: str = ""
    repository_url: HiddenText = NO_SECRET  # GitLab puts the job token in it
    git_credentials: GitCredentials | None = None
    registry_credentials: RegistryCredentials | None = None
    engine: str = ""  # HOMELAB_RELEASE_ENGINE
    write_mode: str = ""  # HOMELAB_RELEASE_WRITE: push | merge-request, for every environment
    signing_key: str = ""  # HOMELAB_RELEASE_SIGNING_KEY: a path (a GitLab file variable)
    docker: Mapping[str, str] = field(default_factory=dict, repr=False)
    buildah: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # its process's environment
    variables: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CiContext:
        """Read the context from ``env`` (default: the process environment, read now)."""
        env = read_environment(env)
        return cls(
            in_ci=env.get("GITLAB_CI") == "true" or env.get("CI") == "true",
            pipeline=PipelineInfo.from_variables(env),
            project_dir=env.get("CI_PROJECT_DIR", ""),
            pipeline_url=env.get("CI_PIPELINE_URL", ""),
            project_url=env.get("CI_PROJECT_URL", ""),
            registry_image=env.get("CI_REGISTRY_IMAGE", ""),
            repository_url=HiddenText(env.get("CI_REPOSITORY_URL", "")),
            git_credentials=_git_credentials(env),
            registry_credentials=_registry_credentials(env),
            engine=env.get("HOMELAB_RELEASE_ENGINE", ""),
            write_mode=env.get("HOMELAB_RELEASE_WRITE", ""),
            signing_key=env.get("HOMELAB_RELEASE_SIGNING_KEY", ""),
            docker={name: env[name] for name in _DOCKER_VARIABLES if name in env},
            buildah={
                name: value
                for name, value in env.items()
                if name in _BUILDAH_VARIABLES or name.startswith(_BUILDAH_PREFIXES)
            },
            variables=env,
        )

    @property
    def secrets(self) -> tuple[HiddenText, ...]:
        """The values of :data:`SECRET_VARIABLES` that are set, and the passwords of the
        credentials: what must never be written into a log or a file."""
        found = [
            HiddenText(self.variables[name])
            for name in SECRET_VARIABLES
            if self.variables.get(name)
        ]
        for credentials in (self.git_credentials, self.registry_credentials):
            if credentials is not None:
                found.append(credentials.password)
        return tuple(found)

    @property
    def commit_sha(self) -> str:
        """``CI_COMMIT_SHA``: the commit the pipeline runs for (the image tag)."""
        return self.pipeline.commit_sha

    @property
    def commit_tag(self) -> str:
        """``CI_COMMIT_TAG``: the tag of a tag pipeline ('' otherwise)."""
        return self.pipeline.commit_tag

    @property
    def commit_branch(self) -> str:
        """``CI_COMMIT_BRANCH``: the branch of a branch pipeline ('' otherwise)."""
        return self.pipeline.commit_branch


def _git_credentials(env: Mapping[str, str]) -> GitCredentials | None:
    """The token for pushes to the manifests branch and the user name GitLab expects with it."""
    for name in ("HOMELAB_RELEASE_GIT_TOKEN", "GITLAB_TOKEN"):
        if env.get(name):
            return GitCredentials("oauth2", HiddenText(env[name]))
    if env.get("CI_JOB_TOKEN"):
        return GitCredentials("gitlab-ci-token", HiddenText(env["CI_JOB_TOKEN"]))
    return None


def _registry_credentials(env: Mapping[str, str]) -> RegistryCredentials | None:
    """GitLab's ``CI_REGISTRY_USER`` / ``CI_REGISTRY_PASSWORD``, or None when either is unset."""
    user, password = env.get("CI_REGISTRY_USER", ""), env.get("CI_REGISTRY_PASSWORD", "")
    return RegistryCredentials(user, HiddenText(password)) if user and password else None
