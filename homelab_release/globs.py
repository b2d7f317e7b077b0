"""GitLab's glob semantics for ``rules: changes:``, pure: no I/O, table-tested.

GitLab matches ``rules: changes:`` patterns with Ruby's
``File.fnmatch?(glob, path, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)``. This module translates
such a glob into a Python regular expression that gives the same answers: ``{a,b}`` braces are
expanded textually first (as Ruby does, nesting included), then ``*``, ``?`` and ``[...]`` never
match ``/``, ``**/`` at the start of a segment matches zero or more folders, any other ``**`` acts
like ``*``, dotfiles match, ``\\`` escapes, ``[!a]``/``[^a]`` negate, a leading ``!`` is a literal
character and nothing is normalised. Each set of globs is compiled once (:func:`compile_globs`)
into a :class:`Matcher` that answers for a sorted list of paths.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from homelab_release.errors import ConfigError

__all__ = [
    "MAX_BRACE_ALTERNATIVES",
    "GlobError",
    "Matcher",
    "check_braces",
    "compile_globs",
    "compile_services",
    "expand_braces",
    "match_services",
    "matches_any",
    "translate",
]

#: Brace expansion beyond this many alternatives is refused (it would be a typo or an attack).
MAX_BRACE_ALTERNATIVES = 1024

_ANY_TAIL = "(?:[^/]*/)*[^/]*"  # what ``**/*`` translates to: any rest of a path
_MAX_CHAR = chr(0x10FFFF)


class GlobError(ConfigError, ValueError):
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
