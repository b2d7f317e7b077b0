"""GitLab ``rules: changes:`` glob semantics: Ruby ``File.fnmatch?`` with
FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB, reasoned from GitLab's docs and Ruby's dir.c.

Every expected value in GLOB_CASES was also checked against Ruby 3.1's ``File.fnmatch?`` while
writing this table.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homelab_release import changes
from homelab_release.errors import ConfigError, ReleaseError
from homelab_release.globs import (
    GlobError,
    compile_globs,
    compile_services,
    expand_braces,
    match_services,
    matches_any,
)

# (glob, path, GitLab matches?)
GLOB_CASES: list[tuple[str, str, bool]] = [
    # GitLab docs examples
    ("Dockerfile", "Dockerfile", True),
    ("Dockerfile", "vote/Dockerfile", False),
    ("docker/scripts/*", "docker/scripts/build.sh", True),
    ("docker/scripts/*", "docker/scripts/sub/build.sh", False),
    ("dockerfiles/**/*", "dockerfiles/a/b/Dockerfile", True),
    ("dockerfiles/**/*", "dockerfiles/Dockerfile", True),
    ("more_scripts/*.{rb,py,sh}", "more_scripts/x.py", True),
    ("more_scripts/*.{rb,py,sh}", "more_scripts/x.sh", True),
    ("more_scripts/*.{rb,py,sh}", "more_scripts/x.js", False),
    ("**/*.json", "a.json", True),
    ("**/*.json", "a/b/c.json", True),
    ("**/*.json", "a/b/c.json5", False),
    # the seed's default: <name>/**/*
    ("vote/**/*", "vote/app.py", True),
    ("vote/**/*", "vote/a/b/c.py", True),
    ("vote/**/*", "vote", False),
    ("vote/**/*", "voter/app.py", False),
    ("vote/**/*", "result/vote/app.py", False),
    ("vote/**/*", "vote/.dockerignore", True),
    ("vote/**/*", "vote/.hidden/x", True),
    # trap: * ? [..] never match /
    ("*", "a", True),
    ("*", "a/b", False),
    ("vote/*", "vote/a/b.py", False),
    ("a?b", "a/b", False),
    ("a?b", "axb", True),
    ("a[/]b", "a/b", False),
    ("a[!x]b", "a/b", False),
    ("a[^x]b", "a/b", False),
    ("a[.-0]b", "a/b", False),
    ("a[.-0]b", "a.b", True),
    ("a[.-0]b", "a0b", True),
    ("*a", "x/a", False),
    # trap: **/ matches zero or more folders
    ("**/a", "a", True),
    ("**/a", "x/a", True),
    ("**/a", "x/y/a", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "ab", False),
    ("a/**/**/b", "a/b", True),
    ("**/", "a/", True),
    ("a/**/", "a/b", False),
    ("**/*", ".gitlab-ci.yml", True),
    ("**/*", "a/b/c", True),
    ("**/b/**/d", "a/b/c/d", True),
    ("**/b/**/d", "b/d", True),
    ("**/b/**/d", "a/c/d", False),
    # trap: ** not followed by / behaves like *
    ("vote/**", "vote/a.py", True),
    ("vote/**", "vote/a/b.py", False),
    ("**", "a", True),
    ("**", "a/b", False),
    ("**.py", "a.py", True),
    ("**.py", "a/b.py", False),
    ("a**/b", "a/b", True),
    ("a**/b", "axy/b", True),
    ("a**/b", "a/x/b", False),
    ("x/a**/b", "x/a/y/b", False),
    ("***/a", "x/a", True),
    ("***/a", "x/y/a", False),
    ("**\\/a", "x/a", True),
    ("**\\/a", "x/y/a", False),
    # trap: wildcards match dotfiles (FNM_DOTMATCH)
    ("*", ".env", True),
    ("?env", ".env", True),
    ("[.]env", ".env", True),
    ("*/*", ".a/.b", True),
    ("**/.env", "a/.b/.env", True),
    ("vote/*", "vote/.dockerignore", True),
    ("*", ".", True),
    # trap: braces, nested, empty choices, spanning segments
    ("{a,b}", "a", True),
    ("{a,b}", "b", True),
    ("{a,b}", "c", False),
    ("{a,b}", "{a,b}", False),
    ("{a,{b,c}d}", "cd", True),
    ("{a,{b,c}d}", "bd", True),
    ("{a,{b,c}d}", "d", False),
    ("x{,y}", "x", True),
    ("x{,y}", "xy", True),
    ("{vote,result}/**/*", "result/a/b", True),
    ("{vote,result}/**/*", "worker/a", False),
    ("{a/b,c}/d", "a/b/d", True),
    ("{**/,}x", "a/b/x", True),
    ("{**/,}x", "x", True),
    ("{a}", "a", True),
    ("{}", "", True),
    ("a{}b", "ab", True),
    ("{a,b}{c,d}", "bd", True),
    ("[{a,b}]", "a", True),
    ("[a{b,c]}", "c", True),
    ("[a{b,c]}", "]", False),
    ("\\{a,b}", "{a,b}", True),
    ("\\{a,b}", "a", False),
    ("a}", "a}", True),
    ("{a}}", "a}", True),
    ("}{a,b}", "}b", True),
    ("{a\\,b,c}", "a,b", True),
    ("{a\\,b,c}", "c", True),
    # trap: a leading ! is literal (no negation in GitLab)
    ("!vote/*", "vote/a", False),
    ("!vote/*", "!vote/a", True),
    ("!", "!", True),
    ("a!", "a!", True),
    # trap: [!a] and [^a] are negated classes
    ("[!a]", "b", True),
    ("[!a]", "a", False),
    ("[^a]", "b", True),
    ("[^a]", "a", False),
    ("[!a-c]x", "dx", True),
    ("[!a-c]x", "bx", False),
    ("[a-c]", "b", True),
    ("[a-c]", "d", False),
    ("[a-c]", "-", False),
    ("[abc]", "c", True),
    ("[a-]", "-", True),
    ("[-a]", "-", True),
    ("[]", "]", False),
    ("[]a]", "]a]", False),
    ("[]a]", "a", False),
    ("[!]", "x", True),
    ("[!]", "/", False),
    ("[^]", "x", True),
    ("[!]]", "x]", True),
    ("[\\]]", "]", True),
    ("[\\!a]", "!", True),
    ("[\\!a]", "b", False),
    ("[a\\-z]", "-", True),
    ("[a\\-z]", "m", False),
    ("[z-a]", "z", True),
    ("[z-a]", "a", True),
    ("[z-a]", "m", False),
    ("[[]", "[", True),
    ("[*]", "*", True),
    ("[*]", "x", False),
    ("[?]", "?", True),
    ("[a/b]", "a", True),
    ("[a/b]", "b", True),
    ("[é]", "é", True),
    ("?", "é", True),
    # trap: backslash escapes
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("\\?", "?", True),
    ("\\?", "a", False),
    ("\\[a]", "[a]", True),
    ("\\[a]", "a", False),
    ("\\a", "a", True),
    ("a\\\\b", "a\\b", True),
    ("a\\/b", "a/b", True),
    ("abc\\", "abc", True),
    ("*\\", "abc", True),
    ("a/\\**/b", "a/*x/b", True),
    ("a/\\**/b", "a/x/y/b", False),
    # trap: case-sensitive
    ("Dockerfile", "dockerfile", False),
    ("vote/**/*", "Vote/a", False),
    ("[a-z]", "A", False),
    ("*.PY", "a.py", False),
    # trap: no normalisation
    ("./vote/*", "vote/a", False),
    ("vote/*", "./vote/a", False),
    ("vote//a", "vote/a", False),
    ("vote//a", "vote//a", True),
    ("/vote/*", "vote/a", False),
    ("vote/", "vote", False),
    ("vote/../result/*", "result/a", False),
    # literal characters that are special in regexes stay literal
    ("a+b(c)|d$", "a+b(c)|d$", True),
    ("a.b", "axb", False),
    ("^a", "^a", True),
    ("a b", "a b", True),
    ("a]b", "a]b", True),
    ("a,b", "a,b", True),
    ("a\nb", "a\nb", True),
    ("*", "a\nb", True),
    # * backtracking within one segment
    ("a*b*c", "aXbYbZc", True),
    ("a*b*c", "aXbYbZ", False),
    ("*a*", "bab", True),
    ("*.tar.gz", "x.tar.gz", True),
    ("*.tar.gz", "x.tar.gz.bak", False),
    ("*/*.py", "a/b.py", True),
    ("*/*.py", "a/b/c.py", False),
]


@pytest.mark.parametrize(("glob", "path", "expected"), GLOB_CASES)
def test_glob_table(glob: str, path: str, expected: bool) -> None:
    assert matches_any([glob], [path]) is expected


def test_table_has_no_contradictions() -> None:
    seen: dict[tuple[str, str], bool] = {}
    for glob, path, expected in GLOB_CASES:
        assert seen.setdefault((glob, path), expected) is expected


# Ruby never matches a glob with an unclosed '{' or an unterminated '['; both are typos in
# practice, so they are refused with the fix in the message.
@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("", "empty pattern"),
        ("{a,b", "unbalanced '{'"),
        ("vote/{a,{b}", "unbalanced '{'"),
        ("[{]", "unbalanced '{'"),
        ("{a,b}}{", "unbalanced '{'"),
        ("[ab", "unterminated '['"),
        ("[", "unterminated '['"),
        ("[!", "unterminated '['"),
        ("[a-", "unterminated '['"),
        ("[\\", "unterminated '['"),
        ("x/[a-z", "unterminated '['"),
    ],
)
def test_malformed_globs_are_refused(glob: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        matches_any([glob], ["a"])
    assert repr(glob) in str(info.value)


@pytest.mark.parametrize("glob", ["\\{a,b", "a\\}", "a}", "\\[ab", "[}]", "[a{b,c]}"])
def test_escaped_or_bracketed_braces_are_accepted(glob: str) -> None:
    matches_any([glob], ["a"])


def test_a_malformed_glob_is_a_release_error() -> None:
    with pytest.raises(GlobError) as info:
        compile_globs(("[ab",))
    assert isinstance(info.value, ReleaseError)
    assert isinstance(info.value, ValueError)


def test_matches_any_stays_importable_from_changes() -> None:
    assert changes.matches_any is matches_any
    assert changes.matches_any(["vote/**/*"], ["vote/a"]) is True


def test_too_many_brace_alternatives_are_refused() -> None:
    with pytest.raises(ConfigError, match="more than"):
        matches_any(["{a,b}" * 12], ["a"])


@pytest.mark.parametrize(
    ("glob", "expansions"),
    [
        ("a", ["a"]),
        ("{a,b}", ["a", "b"]),
        ("x{a,b}y", ["xay", "xby"]),
        ("{a,{b,c}}", ["a", "b", "c"]),
        ("{a,b}{c,d}", ["ac", "ad", "bc", "bd"]),
        ("{,a}", ["", "a"]),
        ("\\{a,b}", ["\\{a,b}"]),
        ("{a\\,b,c}", ["a\\,b", "c"]),
        ("a}{b,c}", ["a}b", "a}c"]),
    ],
)
def test_expand_braces_like_ruby(glob: str, expansions: list[str]) -> None:
    assert expand_braces(glob) == expansions


def test_unclosed_brace_expands_to_nothing_like_ruby() -> None:
    assert expand_braces("{a,b") == []


# -- several globs, several paths ----------------------------------------------------------


@pytest.mark.parametrize(
    ("globs", "paths", "expected"),
    [
        ([], ["a"], False),
        (["a"], [], False),
        (["vote/**/*", "shared/*"], ["shared/x"], True),
        (["vote/**/*", "shared/*"], ["shared/x/y", "voter/x"], False),
        (["vote/**/*"], ["a", "b", "vote", "vote/x", "z"], True),
        (["vote/Dockerfile"], ["vote/Dockerfile.bak", "vote/Dockerfil"], False),
        (["vote/Dockerfile"], ["vote/Dockerfile.bak", "vote/Dockerfile"], True),
        (["vote/*.py"], ["vote/a/b.py", "vote/c.txt", "vote/d.py"], True),
        (["**/*.md"], ["docs/a.txt", "vote/README.md"], True),
        # the shared stem "svc/" is present, but only a later glob or a later candidate matches
        (["svc/src/**/*.py", "svc/Dockerfile"], ["svc/Dockerfile"], True),
        (["svc/src/**/*.py", "svc/Dockerfile"], ["svc/README.md", "svc/src/a.txt"], False),
        (["svc/src/**/*.py"], ["svc/src/a.txt", "svc/src/b/c.py"], True),
        (["svc/src/**/*.py"], ["svc/src/a.txt", "svc/srcx/c.py", "svc/src.py"], False),
        (["svc/{a,b}/*"], ["svc/c/x", "svc/b/x"], True),
        (["a/x", "b/**/*"], ["b/y"], True),  # no shared stem
    ],
)
def test_matches_any(globs: list[str], paths: list[str], expected: bool) -> None:
    assert matches_any(globs, paths) is expected
    assert matches_any(globs, reversed(paths)) is expected


def test_globs_compile_once() -> None:
    assert compile_globs(("vote/**/*",)) is compile_globs(("vote/**/*",))


SERVICES = {
    "vote": ["vote/**/*"],
    "result": ["result/**/*", "shared/results.proto"],
    "worker": ["worker/**/*.{cs,csproj}", "shared/*.proto"],
}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], ()),
        (["README.md"], ()),
        (["vote/app.py"], ("vote",)),
        (["shared/results.proto"], ("result", "worker")),
        (["worker/Program.cs", "vote/x"], ("vote", "worker")),
        (["worker/Dockerfile"], ()),
        (["voter/app.py", "result-old/x"], ()),
    ],
)
def test_match_services(files: list[str], expected: tuple[str, ...]) -> None:
    matchers = compile_services(SERVICES, "test")
    assert match_services(matchers, sorted(files)) == expected


def test_bad_service_glob_names_service_and_pattern() -> None:
    with pytest.raises(ConfigError) as info:
        compile_services({"vote": ["vote/**/*"], "worker": ["worker/{a,b"]}, "cfg.toml")
    message = str(info.value)
    assert "cfg.toml" in message
    assert "services.worker.paths" in message
    assert "'worker/{a,b'" in message


def test_service_globs_given_as_a_string_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"services\.vote\.paths must be a list"):
        compile_services({"vote": "vote/**/*"}, "cfg")


# -- properties ---------------------------------------------------------------------------

SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "._-+ ,!^$()@", min_size=1)
PATH = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
SPECIAL = set("*?[]{}\\")


@given(PATH)
def test_glob_without_wildcards_matches_exactly_itself(path: str) -> None:
    assert matches_any([path], [path])


@given(PATH, PATH)
def test_glob_without_wildcards_matches_nothing_else(glob: str, path: str) -> None:
    assert matches_any([glob], [path]) is (glob == path)


@given(st.text(min_size=1, max_size=20).filter(lambda t: "\0" not in t))
def test_escaped_text_matches_exactly_itself(text: str) -> None:
    glob = "".join(f"\\{c}" if c in SPECIAL else c for c in text)
    assert matches_any([glob], [text])
    assert not matches_any([glob], [text + "x"])


@given(st.lists(SEGMENT, min_size=1, max_size=3).map("/".join), PATH)
def test_folder_glob_matches_everything_below(folder: str, rest: str) -> None:
    assert matches_any([f"{folder}/**/*"], [f"{folder}/{rest}"])
    assert not matches_any([f"{folder}/**/*"], [f"{folder}x/{rest}"])


@given(PATH)
def test_star_never_crosses_a_slash(path: str) -> None:
    assert matches_any(["*"], [path]) is ("/" not in path)
    assert matches_any(["**"], [path]) is ("/" not in path)
    assert matches_any(["**/*"], [path])


GLOB_ATOMS = st.sampled_from(
    ["a", "b", ".", "/", "*", "**", "**/", "?", "[ab]", "[!a]", "{a,b}", "{,a/}", "\\*", "x"]
)
PATH_ATOMS = st.sampled_from(["a", "b", ".", "/", "x", "*", "ab"])


@given(
    st.lists(st.lists(GLOB_ATOMS, min_size=1, max_size=6).map("".join), max_size=4),
    st.lists(st.lists(PATH_ATOMS, min_size=1, max_size=6).map("".join), max_size=8),
)
def test_indexed_matching_agrees_with_the_combined_regex(
    globs: list[str], paths: list[str]
) -> None:
    """The prefix index is only a shortcut: it answers like one full regex per path."""
    try:
        matcher = compile_globs(tuple(globs))
    except GlobError:
        return
    expected = any(matcher.regex.fullmatch(p) for p in paths)
    assert matches_any(globs, paths) is expected


@given(st.lists(GLOB_ATOMS, min_size=1, max_size=6).map("".join), PATH)
def test_brace_glob_matches_like_its_expansions(glob: str, path: str) -> None:
    expansions = expand_braces(glob)
    assert matches_any([glob], [path]) is any(matches_any([e], [path]) for e in expansions if e)
