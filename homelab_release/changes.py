"""Which services changed between two commits, with GitLab's ``rules: changes:`` semantics.

Globs are matched as GitLab matches them by :mod:`homelab_release.globs` (pure), and git runs in
:mod:`homelab_release.git`; this module holds GitLab's rules for choosing the base:

* an explicit ``base``: from the merge base of ``base`` and ``head`` (GitLab's ``compare_to``);
* a merge request pipeline: from ``CI_MERGE_REQUEST_DIFF_BASE_SHA``; a push to an existing
  branch: from ``CI_COMMIT_BEFORE_SHA`` (a direct tree diff, also after a force push);
* anything else (new branch, tag, schedule, web, API, outside CI): from the merge base with the
  default branch.

A shallow clone is deepened within a bound (:data:`DEEPEN_STEPS`) and a missing base commit is
fetched by SHA; when no base can be found, every service counts as changed and the reason says
why. The common cases take one quick path (:func:`_at_once`); anything unusual goes the careful
way (:func:`_careful`), which gives the same answer in more git processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from homelab_release import git
from homelab_release.config import ReleaseConfig, load_config
from homelab_release.context import CiContext, PipelineInfo
from homelab_release.errors import ConfigError, GitError
from homelab_release.git import changed_files
from homelab_release.globs import (
    GlobError,
    Matcher,
    compile_globs,
    compile_services,
    match_services,
)

# Importable from here as the 0.1.0 changelog documented it; its home is homelab_release.globs.
from homelab_release.globs import matches_any as matches_any  # noqa: PLC0414

__all__ = ["BRANCH_FETCH_DEPTH", "DEEPEN_STEPS", "ChangeSet", "detect_changes", "pipeline_base"]

log = logging.getLogger(__name__)

#: Depths (in commits) by which a shallow clone is deepened, one fetch each, before giving up.
DEEPEN_STEPS: tuple[int, ...] = (50, 200, 1000)
#: How deep the default branch is fetched into a shallow clone that lacks it.
BRANCH_FETCH_DEPTH = 50

_GIVE_UP = "every service counts as changed"


@dataclass(frozen=True)
class ChangeSet:
    """What changed between two commits and which services that concerns."""

    base: str | None  # the commit compared from, or None when no base could be found
    head: str
    files: tuple[str, ...]
    services: tuple[str, ...]
    reason: str  # one line: which comparison was made, and why

    def to_json(self) -> str:
        """The change set as a JSON object (base, head, files, services, reason): what
        ``homelab-release changes --json`` prints and fan-out writes to ``changes.json``."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


# -- detect_changes --------------------------------------------------------------------------


def detect_changes(
    repo: Path | str = ".",
    *,
    base: str | None = None,
    head: str = "HEAD",
    services: Mapping[str, Sequence[str]] | None = None,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
    pipeline: PipelineInfo | None = None,
) -> ChangeSet:
    """The services whose files changed between ``base`` and ``head``, as GitLab would say.

    ``services`` maps names to GitLab ``rules: changes:`` globs; when None they come from
    ``config`` (loaded from ``repo`` when None too), whose ``changes.always`` globs mark every
    service as changed. With ``base`` the comparison starts at the merge base of ``base`` and
    ``head``; without, the base follows the pipeline's variables (see :func:`pipeline_base`):
    ``pipeline`` when the caller has read them already, else read from ``env`` (default: the
    process environment). When no base can be found, every service counts as changed and
    ``reason`` says why.
    """
    if pipeline is None:
        context = CiContext.from_env(env)
        pipeline, env = context.pipeline, context.variables
    if services is None:
        config = config or load_config(git.toplevel(repo), env)
        services = {s.name: s.paths for s in config.services}
        if not services:
            raise ConfigError(
                f"{config.where}: no services: no top-level folder holds a Dockerfile; "
                "add [services.NAME] tables to homelab-release.toml"
            )
    matchers = compile_services(services, config.where if config else "services")
    always = _always(config)
    default_branch = config.default_branch if config else ""
    head_sha, found = _choose(repo, base, head, pipeline, default_branch)
    return _change_set(repo, found, head_sha, matchers, always)


def pipeline_base(
    repo: Path | str, head: str, pipeline: PipelineInfo, default_branch: str = ""
) -> tuple[str | None, str]:
    """The base commit GitLab's rules call for in ``pipeline``, and the reason line.

    Merge request pipelines compare from ``CI_MERGE_REQUEST_DIFF_BASE_SHA``, pushes to an existing
    branch from ``CI_COMMIT_BEFORE_SHA`` (a direct tree diff, also after a force push); anything
    else (new branch, tag, schedule, web, API, outside CI) from the merge base with the default
    branch (``default_branch``, else ``CI_DEFAULT_BRANCH``, else the remote's HEAD, main or
    master). The SHA is None, and the reason says why, when no base can be found.
    """
    _, found = _choose(repo, None, head, pipeline, default_branch)
    return found.sha, found.reason


def _always(config: ReleaseConfig | None) -> Matcher | None:
    if config is None or not config.always:
        return None
    try:
        return compile_globs(config.always)
    except GlobError as err:
        raise ConfigError(f"{config.where}: changes.always: {err}") from None


def _change_set(
    repo: Path | str,
    found: _Base,
    head: str,
    matchers: Mapping[str, Matcher],
    always: Matcher | None,
) -> ChangeSet:
    everything = tuple(sorted(matchers))
    if found.sha is None:
        log.warning("%s", found.reason)
        return ChangeSet(None, head, (), everything, found.reason)
    files = changed_files(repo, found.sha, head) if found.files is None else found.files
    if always is not None and always.matches_sorted(files):
        trigger = next(f for f in files if always.regex.fullmatch(f))
        reason = f"{found.reason}; {trigger} matches changes.always, so {_GIVE_UP}"
        return ChangeSet(found.sha, head, files, everything, reason)
    return ChangeSet(found.sha, head, files, match_services(matchers, files), found.reason)


# -- what the rules ask for (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class _Want:
    """The comparison GitLab's rules ask for, before git is asked anything."""

    ref: str  # an explicit base or a CI variable's SHA; "" for the default branch's merge base
    merge_base: bool  # from the merge base of ``ref`` and head (an explicit base)
    kind: str  # how the reason line names the pipeline
    variable: str = ""  # the CI variable that named ``ref``

    def reason(self, base: str, head: str) -> str:
        """The reason line of a comparison from ``base`` to ``head`` that was found."""
        if self.merge_base:
            return (
                f"compared the merge base {_short(base)} of {self.ref} and head {_short(head)} "
                "with the head (explicit base)"
            )
        return f"{self.kind}: compared {self.variable} {_short(base)} with head {_short(head)}"


def _want(base: str | None, pipeline: PipelineInfo) -> _Want:
    if base is not None:
        return _Want(base, merge_base=True, kind="explicit base")
    if pipeline.merge_request_base:
        return _Want(
            pipeline.merge_request_base,
            merge_base=False,
            kind="merge request pipeline",
            variable="CI_MERGE_REQUEST_DIFF_BASE_SHA",
        )
    before = pipeline.before_sha or ""
    if before.strip("0"):
        return _Want(before, False, "push pipeline", "CI_COMMIT_BEFORE_SHA")
    return _Want("", False, _pipeline_kind(pipeline))


def _pipeline_kind(pipeline: PipelineInfo) -> str:
    """How to name a pipeline that compares with the default branch in the reason line."""
    if pipeline.commit_tag:
        return f"tag pipeline ({pipeline.commit_tag})"
    if pipeline.source and pipeline.source != "push":
        return f"{pipeline.source} pipeline"
    if pipeline.source or pipeline.in_gitlab:
        return "new branch pipeline (CI_COMMIT_BEFORE_SHA is all zeros)"
    return "outside CI"


def _head_guess(head: str, pipeline: PipelineInfo) -> str:
    """The full SHA ``head`` most likely names, "" when unknown: ``head`` itself, or for ``HEAD``
    the ``CI_COMMIT_SHA`` that GitLab checks out."""
    if git.is_commit_sha(head):
        return head
    return pipeline.commit_sha if head == "HEAD" and git.is_commit_sha(pipeline.commit_sha) else ""


def _is_first_push_of(default_branch: str, pipeline: PipelineInfo) -> bool:
    """A push creating the default branch itself (a new feature branch at its tip is not)."""
    branch = pipeline.commit_branch
    return (
        pipeline.before_sha is not None
        and not pipeline.before_sha.strip("0")
        and pipeline.source in ("", "push")
        and not pipeline.commit_tag
        and branch != ""
        and (default_branch == branch or default_branch.endswith(f"/{branch}"))
    )


def _short(sha: str) -> str:
    return sha[:12]


# -- finding the base ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    sha: str | None
    reason: str
    files: tuple[str, ...] | None = None  # already listed, when known


def _choose(
    repo: Path | str, base: str | None, head: str, pipeline: PipelineInfo, default_branch: str
) -> tuple[str, _Base]:
    """Head's SHA and the base to compare it with."""
    want = _want(base, pipeline)
    return _at_once(repo, want, head, _head_guess(head, pipeline)) or _careful(
        repo, want, head, pipeline, default_branch
    )


def _at_once(repo: Path | str, want: _Want, head: str, guess: str) -> tuple[str, _Base] | None:
    """The common cases in as few git processes as possible; None when anything is unusual.

    One ``git rev-parse`` names head's and the base's commits (for an explicit base, also the
    merge bases). When the base is a full SHA and ``guess`` names head's commit, the diff runs
    alongside it, and counts only when ``rev-parse`` confirms that both SHAs name those very
    commits. A ref that names no commit, no merge base or several: None, and :func:`_careful`
    takes over.
    """
    if not want.ref:
        return None
    files = None
    if git.is_commit_sha(want.ref) and guess:
        with ThreadPoolExecutor(max_workers=1) as pool:
            diff = pool.submit(
                git.try_changed_files, repo, want.ref, guess, merge_base=want.merge_base
            )
            pair = git.resolve_pair(repo, want.ref, head, merge_bases=want.merge_base)
            files = diff.result()
    else:
        pair = git.resolve_pair(repo, want.ref, head, merge_bases=want.merge_base)
    if pair is None or (want.merge_base and len(pair.merge_bases) != 1):
        return None
    if (pair.base, pair.head) != (want.ref, guess):
        files = None  # the diff was not of these commits
    base = pair.merge_bases[0] if want.merge_base else pair.base
    return pair.head, _Base(base, want.reason(base, pair.head), files)


def _careful(
    repo: Path | str, want: _Want, head: str, pipeline: PipelineInfo, default_branch: str
) -> tuple[str, _Base]:
    """Head's SHA and the base step by step: names a ref that does not resolve, fetches a missing
    base commit, deepens a shallow clone and says when there is no common ancestor."""
    if want.merge_base:
        return _explicit_base(repo, want, head)
    refs = [head, want.ref] if want.ref else [head]
    resolved = git.resolve_all(repo, refs)
    head_sha = resolved[0] or _fetched_or_error(repo, head, "head")
    if want.ref:
        return head_sha, _direct_base(repo, want, head_sha, known=resolved[1])
    return head_sha, _default_branch_base(repo, head_sha, want.kind, pipeline, default_branch)


def _explicit_base(repo: Path | str, want: _Want, head: str) -> tuple[str, _Base]:
    """GitLab's ``compare_to``: from the merge base of ``want.ref`` and ``head``."""
    head_found, base_found = git.resolve_all(repo, [head, want.ref])
    head_sha = head_found or _fetched_or_error(repo, head, "head")
    base_sha = base_found or _fetched_or_error(repo, want.ref, "base")
    found = _merge_base(repo, base_sha, head_sha)
    if found is None:
        reason = f"base {want.ref} and head {_short(head_sha)} have no common ancestor; {_GIVE_UP}"
        return head_sha, _Base(None, reason)
    return head_sha, _Base(found, want.reason(found, head_sha))


def _direct_base(repo: Path | str, want: _Want, head: str, *, known: str | None) -> _Base:
    """A tree diff from the commit a CI variable names (``known`` when it resolved already),
    fetched or deepened into reach."""
    found = (
        known
        or _fetch_commit(repo, want.ref)
        or _deepened(repo, lambda: git.resolve(repo, want.ref), head)
    )
    if found is None:
        return _Base(
            None,
            f"{want.kind}: {want.variable} {_short(want.ref)} is not in the clone, even after "
            f"fetching it and {_deepening()}; {_GIVE_UP}",
        )
    return _Base(found, want.reason(found, head))


def _default_branch_base(
    repo: Path | str, head: str, kind: str, pipeline: PipelineInfo, configured: str
) -> _Base:
    branch = _default_branch(repo, (configured, pipeline.default_branch))
    if branch is None:
        return _Base(
            None,
            f"{kind}: no default branch to compare with (set CI_DEFAULT_BRANCH or "
            f"changes.default_branch, or fetch main); {_GIVE_UP}",
        )
    name, sha = branch
    merge_base = _merge_base(repo, sha, head)
    if merge_base is None:
        return _Base(
            None,
            f"{kind}: head {_short(head)} has no merge base with {name}, even after "
            f"{_deepening()}; {_GIVE_UP}",
        )
    if merge_base == head and _is_first_push_of(name, pipeline):
        # The first push of the default branch itself: no earlier commit says what is new.
        return _Base(
            None,
            f"{kind}: head {_short(head)} is the tip of {name}, so nothing earlier is known to "
            f"be deployed; {_GIVE_UP}",
        )
    return _Base(
        merge_base,
        f"{kind}: compared the merge base {_short(merge_base)} with {name} to head {_short(head)}",
    )


def _default_branch(repo: Path | str, named: Sequence[str]) -> tuple[str, str] | None:
    """The first of the branches ``named`` (changes.default_branch, CI_DEFAULT_BRANCH) that is
    found, else the remote's HEAD, else main or master: its short name and SHA."""
    remote = git.remote_name(repo)
    for name in filter(None, named):
        found = _branch(repo, remote, name)
        if found:
            return found
    remote_head = [f"refs/remotes/{remote}/HEAD"] if remote else []
    fallbacks = remote_head + _branch_refs(remote, "main") + _branch_refs(remote, "master")
    return _first_resolved(repo, fallbacks)


def _branch(repo: Path | str, remote: str | None, name: str) -> tuple[str, str] | None:
    """``name`` as a remote-tracking or local branch, fetched from the remote if need be."""
    found = _first_resolved(repo, _branch_refs(remote, name))
    if found or remote is None:
        return found
    tracking = f"refs/remotes/{remote}/{name}"
    depth = BRANCH_FETCH_DEPTH if git.is_shallow(repo) else None
    if git.fetch(repo, [f"+refs/heads/{name}:{tracking}"], depth=depth):
        return _first_resolved(repo, [tracking])
    return None


def _branch_refs(remote: str | None, name: str) -> list[str]:
    return ([f"refs/remotes/{remote}/{name}"] if remote else []) + [f"refs/heads/{name}"]


def _first_resolved(repo: Path | str, refs: Sequence[str]) -> tuple[str, str] | None:
    """The first of ``refs`` that names a commit, as a short name (``origin/main``), and its SHA."""
    for ref in refs:
        sha = git.resolve(repo, ref)
        if sha:
            return ref.removeprefix("refs/remotes/").removeprefix("refs/heads/"), sha
    return None


# -- reaching commits in a shallow clone -----------------------------------------------------


def _fetched_or_error(repo: Path | str, ref: str, role: str) -> str:
    """The SHA of ``ref``, which did not resolve: fetched by SHA, else :class:`GitError` naming
    it (or the missing repository)."""
    git.toplevel(repo)  # raises when ``repo`` is not a git work tree at all
    sha = _fetch_commit(repo, ref)
    if sha is None:
        raise GitError(
            f"{role} {ref!r} does not name a commit in {repo}; pass an existing branch, tag or "
            f"SHA as {role}= (in a shallow clone, fetch it first)",
            parameter=role,
        )
    return sha


def _fetch_commit(repo: Path | str, ref: str) -> str | None:
    """Fetch the commit ``ref`` (a full SHA) from the remote; its SHA when that worked."""
    if not git.is_commit_sha(ref):
        return None
    log.info("commit %s is not in the clone; fetching it", _short(ref))
    depth = 1 if git.is_shallow(repo) else None
    return git.resolve(repo, ref) if git.fetch(repo, [ref], depth=depth) else None


def _deepened(repo: Path | str, probe: Callable[[], str | None], *wants: str) -> str | None:
    """``probe()``, retried after deepening a shallow clone by each of :data:`DEEPEN_STEPS`."""
    result = probe()
    for step in DEEPEN_STEPS:
        if result is not None or not git.is_shallow(repo):
            break
        log.info("shallow clone: deepening by %d commits", step)
        if not (git.fetch(repo, wants, deepen=step) or git.fetch(repo, deepen=step)):
            break
        result = probe()
    return result


def _merge_base(repo: Path | str, one: str, two: str) -> str | None:
    """The merge base of two commits, deepening a shallow clone as needed; None when none."""
    return _deepened(repo, lambda: git.merge_base(repo, one, two), one, two)


def _deepening() -> str:
    """The bound of :func:`_deepened`, as the reason line says it (read when used: tests may
    lower :data:`DEEPEN_STEPS`)."""
    return f"deepening the clone by up to {sum(DEEPEN_STEPS)} commits"
