"""Which services changed between two commits, with GitLab's ``rules: changes:`` semantics.

Three parts, kept apart so the pure ones can be table-tested:

* **Globs** (pure): GitLab matches ``rules: changes:`` patterns with Ruby's
  ``File.fnmatch?(glob, path, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)``. This module translates
  such a glob into a Python regular expression that gives the same answers: ``{a,b}`` braces are
  expanded textually first (as Ruby does, nesting included), then ``*``, ``?`` and ``[...]`` never
  match ``/``, ``**/`` at the start of a segment matches zero or more folders, any other ``**``
  acts like ``*``, dotfiles match, ``\\`` escapes, ``[!a]``/``[^a]`` negate, a leading ``!`` is a
  literal character and nothing is normalised. Each service's globs are compiled once.
* **Git** (I/O): :func:`changed_files` lists the paths ``git diff-tree -r --no-renames`` reports,
  so a deletion counts and a rename counts as a deletion plus an addition.
* **Base selection**: from an explicit ``base`` (merge base with ``head``, GitLab's ``compare_to``)
  or from GitLab's predefined ``CI_*`` variables, deepening a shallow clone within a bound.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from homelab_release import git
from homelab_release.config import ReleaseConfig, load_config
from homelab_release.context import read_environment
from homelab_release.errors import CommandError, ConfigError, GitError

log = logging.getLogger(__name__)

#: Depths (in commits) by which a shallow clone is deepened, one fetch each, before giving up.
DEEPEN_STEPS: tuple[int, ...] = (50, 200, 1000)
#: How deep the default branch is fetched into a shallow clone that lacks it.
BRANCH_FETCH_DEPTH = 50
#: Brace expansion beyond this many alternatives is refused (it would be a typo or an attack).
MAX_BRACE_ALTERNATIVES = 1024

_SHA = re.compile(r"^[0-9a-f]{40}$")
_OBJECT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ANY_TAIL = "(?:[^/]*/)*[^/]*"  # what ``**/*`` translates to: any rest of a path
_MAX_CHAR = chr(0x10FFFF)


# -- globs (pure) ----------------------------------------------------------------------------


class GlobError(ValueError):
    """A glob is malformed; the message says why and how to fix it."""


def check_braces(pattern: str) -> None:
    """Raise :class:`GlobError` when ``pattern`` is empty or has an unclosed ``{``.

    Ruby never matches a glob with an unclosed ``{``, a silent trap, so it is refused here (write
    ``\\{`` for a literal brace). A stray ``}`` is a literal character, as in Ruby.
    """
    if not pattern:
        raise GlobError("empty pattern: remove it or write a glob such as 'dir/**/*'")
    depth = 0
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            next(chars, None)
        elif char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
    if depth:
        raise GlobError("unbalanced '{': close it with '}' or escape it as '\\{'")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` groups the way Ruby's ``ruby_brace_expand`` does (textually, nested)."""
    lbrace, rbrace = _outer_group(pattern)
    if lbrace < 0:
        return [pattern]
    if rbrace < 0:
        return []  # Ruby: an unclosed group matches nothing
    head, tail = pattern[:lbrace], pattern[rbrace + 1 :]
    out: list[str] = []
    for choice in _alternatives(pattern, lbrace, rbrace):
        out.extend(expand_braces(head + choice + tail))
        if len(out) > MAX_BRACE_ALTERNATIVES:
            raise GlobError(f"braces expand to more than {MAX_BRACE_ALTERNATIVES} alternatives")
    return out


def _outer_group(pattern: str) -> tuple[int, int]:
    """Positions of the first top-level ``{`` and its matching ``}`` (-1 when absent)."""
    lbrace, nest, i = -1, 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "{":
            lbrace = i if nest == 0 else lbrace
            nest += 1
        elif char == "}" and lbrace >= 0:
            nest -= 1
            if nest == 0:
                return lbrace, i
        elif char == "\\":
            i += 1
        i += 1
    return lbrace, -1


def _alternatives(pattern: str, lbrace: int, rbrace: int) -> Iterable[str]:
    """The comma-separated choices between ``lbrace`` and ``rbrace`` (nested groups kept whole)."""
    p = lbrace
    while p < rbrace:
        p += 1
        start, nest = p, 0
        while p < rbrace and not (pattern[p] == "," and nest == 0):
            nest += {"{": 1, "}": -1}.get(pattern[p], 0)
            if pattern[p] == "\\":
                p += 1
                if p == rbrace:
                    break
            p += 1
        yield pattern[start:p]


@dataclass(frozen=True)
class _Translation:
    """One brace-free glob as a regex, plus the literal text every match starts with."""

    prefix: str
    regex: str
    tail: str  # the regex after the prefix: "" for an exact path, _ANY_TAIL for "anything below"


def translate(pattern: str) -> _Translation:
    """Translate one brace-free glob into a regex with Ruby's FNM_PATHNAME|FNM_DOTMATCH rules."""
    parts: list[str] = []
    prefix: list[str] = []
    i, segment_start = 0, True
    while i < len(pattern):
        if segment_start and pattern.startswith("**/", i):
            while pattern.startswith("**/", i):
                i += 3
            parts.append("(?:[^/]*/)*")
            continue
        piece, i, literal = _token(pattern, i)
        segment_start = literal == "/"
        if literal is not None and len(parts) == len(prefix):
            prefix.append(literal)
        parts.append(piece)
    literal_part = "".join(prefix)
    return _Translation(literal_part, "".join(parts), "".join(parts[len(prefix) :]))


def _token(pattern: str, i: int) -> tuple[str, int, str | None]:
    """The regex for the element at ``i``, the next index and its literal character (if any)."""
    char = pattern[i]
    if char == "*":
        while i < len(pattern) and pattern[i] == "*":
            i += 1
        return "[^/]*", i, None
    if char == "?":
        return "[^/]", i + 1, None
    if char == "[":
        return _bracket(pattern, i + 1)
    if char == "\\":
        i += 1
        if i == len(pattern):
            return "", i, ""  # a trailing backslash matches nothing more (as in Ruby)
        char = pattern[i]
    return re.escape(char), i + 1, char


def _bracket(pattern: str, i: int) -> tuple[str, int, None]:
    """Parse a bracket expression after its ``[`` like Ruby's ``bracket()``; never matches ``/``."""
    end = len(pattern)
    negate = i < end and pattern[i] in "!^"
    i += negate
    ranges: list[tuple[str, str]] = []
    while i < end and pattern[i] != "]":
        low, i = _bracket_char(pattern, i)
        if i < end and pattern[i] == "-" and pattern[i + 1 : i + 2] != "]":
            high, i = _bracket_char(pattern, i + 1)
            ranges.append((low, high))
        else:
            ranges.append((low, low))
        if i >= end:
            break
    if i >= end:
        raise GlobError("unterminated '[': close it with ']' or escape it as '\\['")
    return _class_regex(ranges, negate), i + 1, None


def _bracket_char(pattern: str, i: int) -> tuple[str, int]:
    if pattern[i : i + 1] == "\\":
        i += 1
    if i >= len(pattern):
        raise GlobError("unterminated '[': close it with ']' or escape it as '\\['")
    return pattern[i], i + 1


def _class_regex(ranges: Sequence[tuple[str, str]], negate: bool) -> str:
    """A character class for Ruby's ranges: ``[z-a]`` holds just ``z`` and ``a``; never ``/``."""
    items: list[str] = []
    for low, high in ranges:
        if low <= high:
            items.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            items.extend((re.escape(low), re.escape(high)))
    body = "".join(items)
    if negate:
        return f"[^/{body}]"
    if not items:
        return "(?!)"
    return f"(?!/)[{body}]"


@dataclass(frozen=True)
class Matcher:
    """A set of globs compiled once: answers "does any of them match any of these paths?".

    Each brace-free alternative is indexed by its literal prefix, so only the paths that start
    with it (found by bisection in the sorted list) are looked at; ``dir/**/*`` and exact paths
    need no regex at all. One bisection for the ``stem`` all the prefixes share (typically the
    service's folder) rules out most services at once. The one regex for all the globs is
    compiled on first use.
    """

    globs: tuple[str, ...]
    alternatives: tuple[_Translation, ...]
    pattern: str
    stem: str = ""
    _compiled: list[re.Pattern[str]] = field(default_factory=list, repr=False, compare=False)

    @property
    def regex(self) -> re.Pattern[str]:
        """The combined regex (full match) of all the globs."""
        if not self._compiled:
            self._compiled.append(re.compile(self.pattern))
        return self._compiled[0]

    def matches_sorted(self, paths: Sequence[str]) -> bool:
        """Whether any glob matches any of ``paths``, which must be sorted."""
        end = len(paths)
        lo = bisect.bisect_left(paths, self.stem)
        if lo == end or not paths[lo].startswith(self.stem):
            return False
        for alt in self.alternatives:
            lo = bisect.bisect_left(paths, alt.prefix)
            if lo == end or not paths[lo].startswith(alt.prefix):
                continue  # no path starts with the prefix: the usual case, one bisection
            if alt.tail == _ANY_TAIL or (alt.tail == "" and paths[lo] == alt.prefix):
                return True
            if alt.tail and self._regex_matches(paths, lo, alt.prefix):
                return True
        return False

    def _regex_matches(self, paths: Sequence[str], lo: int, prefix: str) -> bool:
        if self.regex.fullmatch(paths[lo]):
            return True  # often the first candidate matches: no need to find where they end
        hi = _prefix_end(paths, lo, prefix)
        return any(map(self.regex.fullmatch, paths[lo + 1 : hi]))


def _prefix_end(paths: Sequence[str], lo: int, prefix: str) -> int:
    """The end of the block of sorted ``paths`` that starts at ``lo`` and starts with ``prefix``."""
    if not prefix:
        return len(paths)
    stem = prefix.rstrip(_MAX_CHAR)
    if stem != prefix:  # only for paths holding U+10FFFF: walk the block
        hi = lo
        while hi < len(paths) and paths[hi].startswith(prefix):
            hi += 1
        return hi
    successor = stem[:-1] + chr(ord(stem[-1]) + 1)  # just above every string starting with stem
    return bisect.bisect_left(paths, successor, lo)


def _translate_or_none(pattern: str) -> _Translation | None:
    """A brace expansion that splits a bracket (``[a{b,c]}`` gives ``[ab``) never matches, as in Ruby."""
    try:
        return translate(pattern)
    except GlobError:
        return None


@functools.lru_cache(maxsize=4096)
def compile_globs(globs: tuple[str, ...]) -> Matcher:
    """Compile ``globs`` once; :class:`GlobError` names the first malformed one."""
    alternatives: list[_Translation] = []
    for glob in globs:
        try:
            check_braces(glob)
            translate(glob)  # refuses an unterminated '[' in the glob as written
            alternatives.extend(filter(None, map(_translate_or_none, expand_braces(glob))))
        except GlobError as err:
            raise GlobError(f"pattern {glob!r}: {err}") from None
    pattern = "|".join(dict.fromkeys(a.regex for a in alternatives)) or "(?!)"
    stem = _common_prefix([a.prefix for a in alternatives])
    return Matcher(globs, tuple(alternatives), pattern, stem)


def _common_prefix(texts: Sequence[str]) -> str:
    """The longest string that every one of ``texts`` starts with ("" when there are none)."""
    if not texts:
        return ""
    low, high = min(texts), max(texts)  # the first and last share what all of them share
    end = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
    return low[:end]


def matches_any(globs: Iterable[str], paths: Iterable[str]) -> bool:
    """True when any of ``globs`` matches any of ``paths``, exactly as GitLab's ``rules: changes:``.

    Raises :class:`~homelab_release.errors.ConfigError` for an empty or malformed glob.
    """
    try:
        matcher = compile_globs(tuple(globs))
    except GlobError as err:
        raise ConfigError(str(err)) from None
    return matcher.matches_sorted(sorted(paths))


def compile_services(services: Mapping[str, Sequence[str]], where: str) -> dict[str, Matcher]:
    """Compile each service's globs; :class:`ConfigError` names ``where``, the service and glob."""
    compiled: dict[str, Matcher] = {}
    for name, globs in services.items():
        if isinstance(globs, str):
            raise ConfigError(
                f"{where}: services.{name}.paths must be a list of globs, not a string"
            )
        try:
            compiled[name] = compile_globs(tuple(globs))
        except GlobError as err:
            raise ConfigError(f"{where}: services.{name}.paths: {err}") from None
    return compiled


def match_services(matchers: Mapping[str, Matcher], files: Sequence[str]) -> tuple[str, ...]:
    """The sorted names of the services whose globs match any of the sorted ``files``."""
    return tuple(sorted(name for name, m in matchers.items() if m.matches_sorted(files)))


# -- git (I/O) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeSet:
    """What changed between two commits and which services that concerns."""

    base: str | None  # the commit compared from, or None when no base could be found
    head: str
    files: tuple[str, ...]
    services: tuple[str, ...]
    reason: str  # one line: which comparison was made, and why


def changed_files(repo: Path | str, base: str, head: str) -> tuple[str, ...]:
    """The sorted paths that differ between ``base`` and ``head`` (deletions and both sides of a
    rename included), as ``git diff-tree -r --no-renames`` lists them."""
    return _diff_tree(repo, base, head)


def _diff_tree(repo: Path | str, base: str, head: str, *options: str) -> tuple[str, ...]:
    out = git.git(
        repo, "diff-tree", "-r", "--no-renames", "--name-only", "-z", *options, "--end-of-options",
        base, head,
    )  # fmt: skip
    return tuple(sorted(filter(None, out.split("\0"))))


def _try_diff_tree(repo: Path | str, base: str, head: str, *options: str) -> tuple[str, ...] | None:
    """:func:`_diff_tree`, or None when git refuses (a missing commit, no single merge base)."""
    try:
        return _diff_tree(repo, base, head, *options)
    except CommandError:
        return None


@dataclass(frozen=True)
class _Base:
    sha: str | None
    reason: str
    files: tuple[str, ...] | None = None  # already listed, when known


def _rev_parse(repo: Path | str, *args: str) -> list[str] | None:
    """The lines ``git rev-parse ARGS`` prints, or None when it fails."""
    try:
        return git.git(repo, "rev-parse", *args).split()
    except CommandError:
        return None


def _resolve_all(repo: Path | str, refs: Sequence[str]) -> list[str | None]:
    """The commits ``refs`` name (None where one names none), asked in one git process when all
    of them do (the common case), one by one otherwise."""
    if not any(ref.startswith("-") for ref in refs):
        out = _rev_parse(repo, *(f"{ref}^{{commit}}" for ref in refs)) or []
        if len(out) == len(refs) and all(map(_OBJECT_ID.match, out)):
            return list(out)
    return [git.resolve(repo, ref) for ref in refs]


def _require_commits(repo: Path | str, refs: Mapping[str, str]) -> dict[str, str]:
    """The SHA of each ``{role: ref}``; fetches a missing SHA, else :class:`GitError` naming it."""
    resolved = _resolve_all(repo, list(refs.values()))
    return {
        role: sha or _require_commit(repo, ref, role)
        for (role, ref), sha in zip(refs.items(), resolved, strict=True)
    }


def _short(sha: str) -> str:
    return sha[:12]


def _require_commit(repo: Path | str, ref: str, role: str) -> str:
    """The SHA of ``ref``; :class:`GitError` naming it (or the missing repository) otherwise."""
    sha = git.resolve(repo, ref)
    if sha is None:
        git.toplevel(repo)  # raises when ``repo`` is not a git work tree at all
        sha = _fetch_commit(repo, ref)
    if sha is None:
        raise GitError(
            f"{role} {ref!r} does not name a commit in {repo}; "
            f"pass an existing branch, tag or SHA as --{role} (in a shallow clone, fetch it first)"
        )
    return sha


def _remote(repo: Path | str) -> str | None:
    """The remote to fetch from: ``origin`` when it exists, else the first one, else None."""
    remotes = git.git(repo, "remote").split()
    return "origin" if "origin" in remotes else next(iter(remotes), None)


def _fetch(repo: Path | str, options: Sequence[str], refs: Sequence[str] = ()) -> bool:
    """``git fetch --no-tags OPTIONS REMOTE REFS``; False (logged) when it fails or there is no remote."""
    remote = _remote(repo)
    if remote is None:
        return False
    try:
        git.git(repo, "fetch", "--quiet", "--no-tags", *options, remote, *refs)
    except CommandError as err:
        log.debug("fetch from %s failed: %s", remote, err)
        return False
    return True


def _fetch_commit(repo: Path | str, ref: str) -> str | None:
    """Fetch the commit ``ref`` (a full SHA) from the remote; its SHA when that worked."""
    if not _SHA.match(ref):
        return None
    depth = ("--depth=1",) if git.is_shallow(repo) else ()
    log.info("commit %s is not in the clone; fetching it", _short(ref))
    return git.resolve(repo, ref) if _fetch(repo, depth, [ref]) else None


def _deepened(repo: Path | str, probe: Callable[[], str | None], *wants: str) -> str | None:
    """``probe()``, retried after deepening a shallow clone by each of :data:`DEEPEN_STEPS`."""
    result = probe()
    for step in DEEPEN_STEPS:
        if result is not None or not git.is_shallow(repo):
            break
        log.info("shallow clone: deepening by %d commits", step)
        deepen = [f"--deepen={step}"]
        if not (_fetch(repo, deepen, wants) or _fetch(repo, deepen)):
            break
        result = probe()
    return result


def _try_merge_base(repo: Path | str, one: str, two: str) -> str | None:
    try:
        return git.git(repo, "merge-base", one, two).strip() or None
    except CommandError:
        return None


def _merge_base(repo: Path | str, one: str, two: str) -> str | None:
    """The merge base of two commits, deepening a shallow clone as needed; None when none."""
    return _deepened(repo, lambda: _try_merge_base(repo, one, two), one, two)


_GIVE_UP = "every service counts as changed"
_BOUND = f"deepening the clone by up to {sum(DEEPEN_STEPS)} commits"


def _explicit_base(repo: Path | str, ref: str, head: str) -> tuple[str, _Base]:
    """GitLab's ``compare_to``: from the merge base of ``ref`` and ``head``; returns head's SHA."""
    return _explicit_at_once(repo, ref, head) or _explicit_careful(repo, ref, head)


def _explicit_at_once(repo: Path | str, ref: str, head: str) -> tuple[str, _Base] | None:
    """The common case of :func:`_explicit_base` in as few git processes as possible, else None.

    One ``git rev-parse BASE...HEAD`` names head's commit and the merge bases. When both refs are
    full SHAs (nothing can move them), ``git diff-tree --merge-base`` runs alongside it on the
    same commits (peeling tags as rev-parse does). Anything unusual (a ref that does not
    resolve, no merge base or several) is left to :func:`_explicit_careful`.
    """
    if any(r.startswith("-") or ".." in r for r in (ref, head)):
        return None
    with ThreadPoolExecutor(max_workers=1) as pool:
        early = None
        if _SHA.match(ref) and _SHA.match(head):
            early = pool.submit(_try_diff_tree, repo, ref, head, "--merge-base")
        found = _symmetric_difference(repo, ref, head)
        files = early.result() if early else None
    if found is None:
        return None
    head_sha, merge_base = found
    return head_sha, _Base(merge_base, _explicit_reason(ref, merge_base, head_sha), files)


def _symmetric_difference(repo: Path | str, ref: str, head: str) -> tuple[str, str] | None:
    """Head's commit and its one merge base with ``ref``, from ``git rev-parse BASE...HEAD``
    (which prints head, base, then ``^`` and each merge base); None unless there is exactly one."""
    lines = _rev_parse(repo, f"{ref}^{{commit}}...{head}^{{commit}}")
    if lines is None or len(lines) != 3 or not lines[2].startswith("^"):
        return None
    head_sha, merge_base = lines[0], lines[2][1:]
    if not all(map(_OBJECT_ID.match, (head_sha, lines[1], merge_base))):
        return None
    return head_sha, merge_base


def _explicit_careful(repo: Path | str, ref: str, head: str) -> tuple[str, _Base]:
    """:func:`_explicit_base` step by step: fetches a missing base commit, deepens a shallow
    clone, names a ref that does not resolve and says when there is no common ancestor."""
    shas = _require_commits(repo, {"head": head, "base": ref})
    sha, head = shas["base"], shas["head"]
    merge_base = _merge_base(repo, sha, head)
    if merge_base is None:
        return head, _Base(
            None, f"base {ref} and head {_short(head)} have no common ancestor; {_GIVE_UP}"
        )
    return head, _Base(merge_base, _explicit_reason(ref, merge_base, head))


def _explicit_reason(ref: str, merge_base: str, head: str) -> str:
    return (
        f"compared the merge base {_short(merge_base)} of {ref} and head {_short(head)} "
        "with the head (explicit base)"
    )


def _direct_base(
    repo: Path | str, head: str, kind: str, variable: str, sha: str, *, known: str | None
) -> _Base:
    """A tree diff from the commit a CI variable names (``known`` when already resolved),
    fetched or deepened into reach."""
    found = (
        known
        or git.resolve(repo, sha)
        or _fetch_commit(repo, sha)
        or _deepened(repo, lambda: git.resolve(repo, sha), head)
    )
    if found is None:
        return _Base(
            None,
            f"{kind}: {variable} {_short(sha)} is not in the clone, even after fetching it and "
            f"{_BOUND}; {_GIVE_UP}",
        )
    return _Base(found, _direct_reason(kind, variable, found, head))


def _direct_reason(kind: str, variable: str, base: str, head: str) -> str:
    return f"{kind}: compared {variable} {_short(base)} with head {_short(head)}"


def _direct_at_once(
    repo: Path | str, head: str, env: Mapping[str, str]
) -> tuple[str, _Base] | None:
    """A push or merge request pipeline's comparison with the diff and the resolution of both
    commits run side by side; None (the step-by-step path takes over) unless it is sure.

    The diff is made between full SHAs: the CI variable's and head's, ``head`` itself or, for
    ``HEAD``, ``CI_COMMIT_SHA`` (what GitLab checks out). It counts only when ``git rev-parse``
    confirms that both name those very commits.
    """
    direct = _env_commit(env)
    guess = head if _SHA.match(head) else env.get("CI_COMMIT_SHA", "") if head == "HEAD" else ""
    if direct is None or not (_SHA.match(direct[2]) and _SHA.match(guess)):
        return None
    kind, variable, sha = direct
    with ThreadPoolExecutor(max_workers=1) as pool:
        diff = pool.submit(_try_diff_tree, repo, sha, guess)
        resolved = _rev_parse(repo, f"{head}^{{commit}}", f"{sha}^{{commit}}")
        files = diff.result()
    if files is None or resolved != [guess, sha]:
        return None
    return guess, _Base(sha, _direct_reason(kind, variable, sha, guess), files)


def _pipeline_kind(env: Mapping[str, str]) -> str:
    """How to name the pipeline in the reason line."""
    if env.get("CI_COMMIT_TAG"):
        return f"tag pipeline ({env['CI_COMMIT_TAG']})"
    source = env.get("CI_PIPELINE_SOURCE", "")
    if source and source != "push":
        return f"{source} pipeline"
    if source or env.get("GITLAB_CI"):
        return "new branch pipeline (CI_COMMIT_BEFORE_SHA is all zeros)"
    return "outside CI"


def _branch(repo: Path | str, name: str) -> tuple[str, str] | None:
    """``name`` as a remote-tracking or local branch, fetched from the remote if need be."""
    remote = _remote(repo) or "origin"
    for ref in (f"refs/remotes/{remote}/{name}", f"refs/heads/{name}"):
        sha = git.resolve(repo, ref)
        if sha is not None:
            return ref.removeprefix("refs/remotes/").removeprefix("refs/heads/"), sha
    depth = (f"--depth={BRANCH_FETCH_DEPTH}",) if git.is_shallow(repo) else ()
    tracking = f"refs/remotes/{remote}/{name}"
    if _fetch(repo, depth, [f"+refs/heads/{name}:{tracking}"]):
        sha = git.resolve(repo, tracking)
        return (f"{remote}/{name}", sha) if sha else None
    return None


def _default_branch(
    repo: Path | str, env: Mapping[str, str], configured: str
) -> tuple[str, str] | None:
    """changes.default_branch, else CI_DEFAULT_BRANCH, else origin/HEAD, else main or master."""
    for name in filter(None, (configured, env.get("CI_DEFAULT_BRANCH", ""))):
        found = _branch(repo, name)
        if found:
            return found
    origin_head = git.resolve(repo, "refs/remotes/origin/HEAD")
    if origin_head:
        return "origin/HEAD", origin_head
    for name in ("main", "master"):
        for ref in (f"refs/remotes/origin/{name}", f"refs/heads/{name}"):
            sha = git.resolve(repo, ref)
            if sha:
                return ref.removeprefix("refs/remotes/").removeprefix("refs/heads/"), sha
    return None


def _default_branch_base(
    repo: Path | str, head: str, env: Mapping[str, str], configured: str
) -> _Base:
    kind = _pipeline_kind(env)
    branch = _default_branch(repo, env, configured)
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
            f"{kind}: head {_short(head)} has no merge base with {name}, even after {_BOUND}; "
            f"{_GIVE_UP}",
        )
    if merge_base == head and _is_first_push_of(name, env):
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


def _is_first_push_of(default_branch: str, env: Mapping[str, str]) -> bool:
    """A push creating the default branch itself (a new feature branch at its tip is not)."""
    before = env.get("CI_COMMIT_BEFORE_SHA")
    branch = env.get("CI_COMMIT_BRANCH", "")
    return (
        before is not None
        and not before.strip("0")
        and env.get("CI_PIPELINE_SOURCE", "push") == "push"
        and not env.get("CI_COMMIT_TAG")
        and branch != ""
        and (default_branch == branch or default_branch.endswith(f"/{branch}"))
    )


def base_from_env(
    repo: Path | str, head: str, env: Mapping[str, str] | None = None, default_branch: str = ""
) -> tuple[str | None, str]:
    """The base commit GitLab's predefined variables call for, and the reason line.

    Merge request pipelines compare from ``CI_MERGE_REQUEST_DIFF_BASE_SHA``, pushes to an existing
    branch from ``CI_COMMIT_BEFORE_SHA`` (a direct tree diff, also after a force push); anything
    else (new branch, tag, schedule, web, API, outside CI) from the merge base with the default
    branch. The SHA is None, and the reason says why, when no base can be found.
    """
    env = read_environment(env)
    _, found = _env_base(repo, head, env, default_branch)
    return found.sha, found.reason


def _env_commit(env: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The pipeline kind, variable and SHA of a direct comparison, when the variables give one."""
    merge_request = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", "")
    if merge_request:
        return "merge request pipeline", "CI_MERGE_REQUEST_DIFF_BASE_SHA", merge_request
    before = env.get("CI_COMMIT_BEFORE_SHA", "")
    if before.strip("0"):
        return "push pipeline", "CI_COMMIT_BEFORE_SHA", before
    return None


def _env_base(
    repo: Path | str, head: str, env: Mapping[str, str], default_branch: str
) -> tuple[str, _Base]:
    """Resolve ``head`` (with the CI variable's commit, in one process); return its SHA and base."""
    direct = _env_commit(env)
    refs = [head, direct[2]] if direct else [head]
    resolved = _resolve_all(repo, refs)
    head = resolved[0] or _require_commit(repo, head, "head")
    if direct:
        return head, _direct_base(repo, head, *direct, known=resolved[1])
    return head, _default_branch_base(repo, head, env, default_branch)


# -- detect_changes --------------------------------------------------------------------------


def detect_changes(
    repo: Path | str = ".",
    *,
    base: str | None = None,
    head: str = "HEAD",
    services: Mapping[str, Sequence[str]] | None = None,
    config: ReleaseConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> ChangeSet:
    """The services whose files changed between ``base`` and ``head``, as GitLab would say.

    ``services`` maps names to GitLab ``rules: changes:`` globs; when None they come from
    ``config`` (loaded from ``repo`` when None too), whose ``changes.always`` globs mark every
    service as changed. With ``base`` the comparison starts at the merge base of ``base`` and
    ``head``; without, the base follows GitLab's ``CI_*`` variables (see :func:`base_from_env`).
    When no base can be found, every service counts as changed and ``reason`` says why.
    """
    env = read_environment(env)
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
    if base is not None:
        head_sha, found = _explicit_base(repo, base, head)
    else:
        head_sha, found = _direct_at_once(repo, head, env) or _env_base(
            repo, head, env, config.default_branch if config else ""
        )
    return _change_set(repo, found, head_sha, matchers, always)


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
