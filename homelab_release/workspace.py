"""The monorepo a workflow runs on: its root, its configuration and its CI context, read once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from homelab_release import git
from homelab_release.config import WRITE_MODES, ReleaseConfig, load_config
from homelab_release.context import CiContext
from homelab_release.errors import ConfigError
from homelab_release.gitops import ManifestsRemote, MergeRequest, Writer
from homelab_release.signing import check_signing_key, signing_key

__all__ = ["REPORT_FOLDER", "Workspace"]

#: Where reports go outside CI when no folder is given: a folder of this name in the current one.
REPORT_FOLDER = "homelab-release-reports"


@dataclass(frozen=True)
class Workspace:
    """The monorepo's root, its configuration and the context every step of a workflow shares.

    ``env`` is the mapping the context was read from (None: the process environment); it is
    passed on to the library functions so that they read exactly the same variables.
    """

    root: Path
    config: ReleaseConfig
    context: CiContext
    env: Mapping[str, str] | None = field(default=None, repr=False)  # holds secrets
    #: The signing keys :meth:`check_writer` checked: :meth:`writer` does not ask git's
    #: version and ssh-keygen about them again (a cache, not part of the value).
    _checked_keys: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    @classmethod
    def open(
        cls,
        repo: Path | str = ".",
        config: ReleaseConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Workspace:
        """Find the monorepo's root, read the context and load the configuration (unless given)."""
        root = git.toplevel(repo)
        context = CiContext.from_env(env)
        return cls(root, config or load_config(root, context.variables), context, env)

    @property
    def source_commit(self) -> str:
        """The monorepo commit a workflow runs for (a commit's ``Source-Commit`` trailer):
        ``CI_COMMIT_SHA``, else the checked-out commit."""
        return self.context.commit_sha or git.head_commit(self.root)

    def with_cache_repo(self, cache_repo: str | None) -> Workspace:
        """This workspace building with ``cache_repo`` instead of ``[build] cache_repo`` (``""``:
        none); itself when ``cache_repo`` is None."""
        if cache_repo is None:
            return self
        return replace(self, config=replace(self.config, cache_repo=cache_repo))

    def remote(self) -> ManifestsRemote:
        """The manifests repository: ``manifests.url``, else ``CI_REPOSITORY_URL``, else the
        monorepo's own remote."""
        unset = self.config.unset_message("manifests.url")
        if unset and not self.config.manifests_url:
            raise ConfigError(unset)
        url = (
            self.config.manifests_url
            or self.context.repository_url.secret
            or git.remote_url(self.root)
        )
        if not url:
            raise ConfigError(
                f"no manifests repository: set manifests.url in homelab-release.toml, or add a "
                f"remote to {self.root} (git remote add origin URL)"
            )
        branch = self.config.manifests_branch
        return ManifestsRemote.from_url(url, branch, self.context.git_credentials)

    def write_mode(self, environment: str) -> str:
        """How ``environment``'s overlay is written: its ``write`` setting, else
        ``HOMELAB_RELEASE_WRITE``, else ``push``."""
        mode = self.config.environment(environment).write or self.context.write_mode or "push"
        if mode not in WRITE_MODES:
            raise ConfigError(
                f"HOMELAB_RELEASE_WRITE = {mode!r}; use " + " or ".join(map(repr, WRITE_MODES))
            )
        return mode

    def merge_request(self, environment: str) -> MergeRequest | None:
        """The merge request ``environment``'s writes go through, None in ``push`` mode."""
        if self.write_mode(environment) != "merge-request":
            return None
        labels = self.config.environment(environment).merge_request_labels
        return MergeRequest.for_environment(environment, self.config.manifests_branch, labels)

    @property
    def _signing(self) -> tuple[str, str]:
        """The signing key's path and the setting that named it ('' when commits are unsigned).

        ``manifests.signing_key`` naming an unset variable is an error, not unsigned commits
        (``${KEY_FILE:-}`` says on purpose that the variable may be empty)."""
        unset = self.config.unset_message("manifests.signing_key")
        if unset:
            raise ConfigError(unset)
        if self.config.signing_key:
            return self.config.signing_key, "manifests.signing_key"
        return self.context.signing_key, "HOMELAB_RELEASE_SIGNING_KEY"

    def check_writer(self, environment: str) -> None:
        """Everything :meth:`writer` checks (the write mode, the signing key), before a workflow
        builds or changes anything."""
        self.merge_request(environment)
        path, setting = self._signing
        check_signing_key(path, setting=setting)
        if path:
            self._checked_keys.add(path)

    @contextmanager
    def writer(self, environment: str) -> Iterator[Writer]:
        """How commits to ``environment``'s overlay are made: the author, the signing key (a
        private copy, removed on exit) and the merge request of ``merge-request`` mode."""
        request = self.merge_request(environment)
        path, setting = self._signing
        with signing_key(path, setting=setting, checked=path in self._checked_keys) as key:
            yield Writer(self.config.author, key, request)

    def report_folder(self, given: Path | str | None = None) -> Path:
        """Where ``build.env`` and ``release-report.json`` go: ``given``, else ``CI_PROJECT_DIR``
        (GitLab uploads artifacts from there), else :data:`REPORT_FOLDER` in the current folder."""
        if given:
            return Path(given)
        if self.context.project_dir:
            return Path(self.context.project_dir)
        return Path.cwd() / REPORT_FOLDER
