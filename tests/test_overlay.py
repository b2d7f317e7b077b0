"""set_overlay_image / apply_overlay_entries: kustomize's entries, every other byte kept."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from homelab_release import proc
from homelab_release.errors import ImageRefError, OverlayError
from homelab_release.images import KEEP, ImageSpec
from homelab_release.overlay import (
    ImageEntry,
    apply_overlay_entries,
    find_kustomization,
    read_overlay_images,
    set_overlay_image,
)
from tests.oracles import kustomize_binary, missing_tool

DATA = Path(__file__).parent / "data" / "overlays"
CASES = sorted(path.name for path in DATA.iterdir() if path.is_dir())
SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


def overlay_with(tmp_path: Path, text: str | bytes, name: str = "kustomization.yaml") -> Path:
    """A folder holding one kustomization file with ``text``."""
    folder = tmp_path / "overlay"
    folder.mkdir(exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)
    return folder


def images_yaml(*entries: ImageEntry) -> str:
    """A plain kustomization holding ``entries``."""
    lines = ["resources:", "- ../base", "images:"]
    for entry in entries:
        pairs = list(entry.fields().items())
        lines.append(f'- {pairs[0][0]}: "{pairs[0][1]}"')
        lines.extend(f'  {key}: "{value}"' for key, value in pairs[1:])
    return "\n".join(lines) + "\n"


# --- byte-exact fixtures ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_fixture_gives_the_expected_bytes(tmp_path: Path, case: str) -> None:
    folder = overlay_with(tmp_path, (DATA / case / "before.yaml").read_bytes())
    specs = (DATA / case / "specs.txt").read_text().split()
    edit = set_overlay_image(folder, *specs)
    expected = (DATA / case / "after.yaml").read_bytes()
    assert (folder / "kustomization.yaml").read_bytes() == expected
    assert edit.changed
    assert edit.after == read_overlay_images(folder)
    again = set_overlay_image(folder, *specs)
    assert not again.changed
    assert again.diff == ""
    assert (folder / "kustomization.yaml").read_bytes() == expected


def test_diff_shows_only_the_changed_entry_line(tmp_path: Path) -> None:
    before = (DATA / "comments-and-odd-indent" / "before.yaml").read_text()
    folder = overlay_with(tmp_path, before)
    edit = set_overlay_image(folder, "registry.example.com/homelab/result:9e8f7d6")
    changed = [line for line in edit.diff.splitlines() if line[:1] in "+-"]
    assert changed[2:] == ['-      newTag: "77aa0b1"', '+      newTag: "9e8f7d6"']
    assert "   # set by CI" in edit.diff  # context lines keep their comments


def test_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, (DATA / "crlf" / "before.yaml").read_bytes())
    set_overlay_image(folder, "worker:w1")
    data = (folder / "kustomization.yaml").read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n")


# --- block and multi-line scalars ----------------------------------------------------------------

_TAIL = "resources:\n  - ../base\n"


def _resources(text: str) -> object:
    """The ``resources:`` of a kustomization text, as a YAML reader sees them."""
    data = _data(text)
    assert isinstance(data, dict)
    return data["resources"]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("|\n      v1\n", "v2\n"),  # the B4 report: a clipped literal block
        ("|-\n      v1\n", "v2\n"),
        ("|+\n      v1\n\n", "v2\n\n"),  # kept trailing blank line stays a blank line
        (">\n      v1\n      more\n", "v2\n"),
        ("|-   # pinned\n      v1\n", "v2   # pinned\n"),
        ("|\n", "v2\n"),  # an empty block scalar
        ('"v\n      1"\n', '"v2"\n'),  # a double-quoted scalar over two lines keeps its quotes
        ("v\n      1   # folded plain\n", "v2   # folded plain\n"),
        ("\n      v1\n", "\n      v2\n"),  # the value on the line after its key
    ],
)
def test_block_and_multi_line_values_are_replaced_whole(
    tmp_path: Path, value: str, written: str
) -> None:
    folder = overlay_with(tmp_path, f"images:\n  - name: vote\n    newTag: {value}{_TAIL}")
    edit = set_overlay_image(folder, "vote:v2")
    assert (folder / "kustomization.yaml").read_text() == (
        f"images:\n  - name: vote\n    newTag: {written}{_TAIL}"
    )
    assert edit.after == read_overlay_images(folder) == (ImageEntry("vote", None, "v2"),)
    assert _resources((folder / "kustomization.yaml").read_text()) == ["../base"]


@pytest.mark.parametrize(
    ("entry", "specs", "expected"),
    [
        ("- name: vote\n  newTag: |-\n    v1\n  digest: |\n    x\n", ["vote:v2"], "newTag: v2\n"),
        ("- name: vote\n  newName: >-\n    reg/vote\n\n", ["vote=*@" + SHA_A], "digest: "),
        ("- newTag: |-\n    v1\n  name: vote\n", [f"vote@{SHA_A}"], "- name: vote\n  digest: "),
        ("- name: vote\n  newTag: |-\n    v1\n", ["a:1", "zz:2"], "- name: zz\n  newTag: "),
    ],
)
def test_fields_around_block_scalars_are_added_and_dropped(
    tmp_path: Path, entry: str, specs: list[str], expected: str
) -> None:
    folder = overlay_with(tmp_path, f"images:\n{entry}{_TAIL}")
    edit = set_overlay_image(folder, *specs)
    text = (folder / "kustomization.yaml").read_text()
    assert expected in text
    assert read_overlay_images(folder) == edit.after
    assert text.endswith(_TAIL)
    assert _resources(text) == ["../base"]


# --- kustomize's semantics ----------------------------------------------------------------------

VOTE = ImageEntry("vote", "registry/vote", "v1")


@pytest.mark.parametrize(
    ("initial", "specs", "expected"),
    [
        ((), ["vote=registry/vote:v2"], [ImageEntry("vote", "registry/vote", "v2")]),
        ((VOTE,), ["vote:v2"], [ImageEntry("vote", None, "v2")]),  # whole entry replaced
        ((VOTE,), ["vote=*:v2"], [ImageEntry("vote", "registry/vote", "v2")]),
        ((VOTE,), ["vote=other/vote:*"], [ImageEntry("vote", "other/vote", "v1")]),
        ((VOTE,), [f"vote=*@{SHA_A}"], [ImageEntry("vote", "registry/vote", None, SHA_A)]),
        ((VOTE,), [f"vote=*:*@{SHA_A}"], [ImageEntry("vote", "registry/vote", "v1", SHA_A)]),
        ((VOTE,), [f"vote@{SHA_A}"], [ImageEntry("vote", None, None, SHA_A)]),
        ((VOTE,), [f"vote:v3@{SHA_A}"], [ImageEntry("vote", None, "v3", SHA_A)]),
        (
            (ImageEntry("vote", None, "v1", SHA_A),),
            ["vote=*:v2"],
            [ImageEntry("vote", None, "v2")],  # setting a tag clears the digest
        ),
        (
            (ImageEntry("vote", None, "v1", SHA_A),),
            ["vote=*:v2@*"],
            [ImageEntry("vote", None, "v2", SHA_A)],
        ),
        ((VOTE,), ["vote=*"], [ImageEntry("vote", "registry/vote")]),
        ((), ["vote=*:v2"], [ImageEntry("vote", None, "v2")]),  # '*' of nothing is nothing
        ((VOTE,), ["vote:v2", "vote:v3"], [ImageEntry("vote", None, "v3")]),  # later spec wins
        ((VOTE,), ["vote:v2", "vote=*:v3"], [ImageEntry("vote", "registry/vote", "v3")]),
        (
            (ImageEntry("b", None, "1"), ImageEntry("d", None, "1")),
            ["c:2", "a:2", "e:2"],
            [ImageEntry(n, None, t) for n, t in zip("abcde", "21212", strict=True)],
        ),
        (
            (VOTE, ImageEntry("vote", "other", "v9")),
            ["vote=*:v2"],
            [ImageEntry("vote", "registry/vote", "v2")],  # duplicates collapse into the first
        ),
        (
            (ImageEntry("w", None, "1"), ImageEntry("w", None, "2"), VOTE),
            ["vote:v2"],
            [ImageEntry("w", None, "1"), ImageEntry("vote", None, "v2")],
        ),
        (
            (ImageEntry("vote", "r/vote", tag_suffix="-debug"), ImageEntry("w", tag_suffix="-x")),
            ["vote=*"],  # a matched entry is replaced: kustomize drops its tagSuffix too
            [ImageEntry("vote", "r/vote"), ImageEntry("w", tag_suffix="-x")],
        ),
    ],
)
def test_entries_follow_kustomize(
    tmp_path: Path, initial: tuple[ImageEntry, ...], specs: list[str], expected: list[ImageEntry]
) -> None:
    folder = overlay_with(tmp_path, images_yaml(*initial))
    edit = set_overlay_image(folder, *specs)
    assert list(read_overlay_images(folder)) == expected
    assert list(edit.after) == expected
    assert edit.before == initial


def test_keyword_form_equals_the_spec_form(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    edit = set_overlay_image(folder, "vote", new_name=KEEP, new_tag="v2", digest=SHA_B)
    assert edit.after == (ImageEntry("vote", "registry/vote", "v2", SHA_B),)
    spec = ImageSpec.parse(f"vote=*:v2@{SHA_B}")
    assert not set_overlay_image(folder, spec).changed


def test_kustomization_without_images_gets_them(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, "resources:\n- ../base\n")
    set_overlay_image(folder, "vote:v1")
    assert (folder / "kustomization.yaml").read_text() == (
        "resources:\n- ../base\nimages:\n- name: vote\n  newTag: v1\n"
    )


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "---\n", "resources: [a]"])
def test_nearly_empty_files_get_images(tmp_path: Path, text: str) -> None:
    folder = overlay_with(tmp_path, text)
    set_overlay_image(folder, "vote:v1")
    assert read_overlay_images(folder) == (ImageEntry("vote", None, "v1"),)
    assert (folder / "kustomization.yaml").read_text().startswith(text)


@pytest.mark.parametrize("name", ["kustomization.yaml", "kustomization.yml", "Kustomization"])
def test_every_kustomization_name_is_found(tmp_path: Path, name: str) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE), name)
    assert find_kustomization(folder) == folder / name
    assert find_kustomization(folder / name) == folder / name
    assert set_overlay_image(folder / name, "vote:v9").path == folder / name


# --- apply_overlay_entries ------------------------------------------------------------------------


def test_apply_entries_replaces_adds_and_leaves_others(tmp_path: Path) -> None:
    text = images_yaml(
        ImageEntry("a", None, "1"),
        ImageEntry("c", "reg/c", "1", SHA_A),
        ImageEntry("d", None, "1"),
        ImageEntry("d", None, "2"),
        ImageEntry("c", None, "9"),
    )
    folder = overlay_with(tmp_path, text)
    edit = apply_overlay_entries(folder, [ImageEntry("c", None, "2"), ImageEntry("b", "reg/b")])
    assert edit.after == (
        ImageEntry("a", None, "1"),
        ImageEntry("b", "reg/b"),
        ImageEntry("c", None, "2"),
        ImageEntry("d", None, "1"),
        ImageEntry("d", None, "2"),  # not named: untouched, duplicate and all
    )
    assert read_overlay_images(folder) == edit.after
    assert edit.edited == ("c", "b")  # c rewritten and its duplicate removed, b added


def test_apply_entries_dry_run_writes_nothing(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    before = (folder / "kustomization.yaml").read_bytes()
    edit = apply_overlay_entries(folder, [ImageEntry("vote", None, "v2")], dry_run=True)
    assert edit.changed
    assert '+  newTag: "v2"' in edit.diff
    assert (folder / "kustomization.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([ImageEntry("vote", None, "v1/x")], "tag 'v1/x' has a '/'"),
        ([ImageEntry("Vote")], "component 'Vote' is not valid"),
        ([ImageEntry("vote", None, None, "sha256:1")], "not of the form algorithm:hex"),
        ([ImageEntry("vote"), ImageEntry("vote")], r"'vote' is given twice for .*kustomization"),
        ([ImageEntry("vote", tag_suffix="/x")], "tagSuffix '/x' has a '/'"),
    ],
)
def test_apply_entries_refuses_bad_entries(
    tmp_path: Path, entries: list[ImageEntry], message: str
) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    with pytest.raises(OverlayError, match=message):
        apply_overlay_entries(folder, entries)


def test_tag_suffix_is_read_and_written(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, "images:\n- name: vote  # web\n  tagSuffix: -debug\n")
    assert read_overlay_images(folder) == (ImageEntry("vote", tag_suffix="-debug"),)
    entries = [ImageEntry("vote", "r/vote", tag_suffix="-1"), ImageEntry("w", tag_suffix=".2")]
    edit = apply_overlay_entries(folder, entries)
    assert (folder / "kustomization.yaml").read_text() == (
        'images:\n- name: vote  # web\n  newName: r/vote\n  tagSuffix: "-1"\n'
        '- name: w\n  tagSuffix: ".2"\n'
    )
    assert edit.after == read_overlay_images(folder) == tuple(entries)
    assert not apply_overlay_entries(folder, entries).changed


# --- bad input: a clear error and the file untouched ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "specs", "message"),
    [
        (images_yaml(VOTE), [], "no image spec given"),
        (images_yaml(VOTE), ["vote"], "not in any accepted form"),
        (images_yaml(VOTE), ["vote:v1/x"], "tag 'v1/x' has a '/'"),
        (images_yaml(VOTE), ["vote@md5:12"], "digest 'md5:12'"),
        ("images:\n- name: vote\n  newTag: [v1\n", ["vote:v2"], r"not valid YAML at line 4"),
        ("a: 1\n  b: 2\n", ["vote:v2"], r"not valid YAML at line 2"),
        ("images: {name: vote}\n", ["vote:v2"], r"images: in .* \(line 1\) is not a list"),
        ("images:\n- newTag: v1\n", ["vote:v2"], "line 2 .* has no name"),
        ("images:\n- vote\n", ["vote:v2"], "is not a mapping"),
        ("images:\n- name: vote\n  tag: v1\n", ["vote:v2"], "unknown key 'tag'"),
        ("images:\n- name: vote\n  newTag: [v1]\n", ["vote:v2"], "newTag is not a single value"),
        ("images: []\nimages: []\n", ["vote:v2"], r"several images: keys \(lines 1, 2\)"),
        ("- a\n- b\n", ["vote:v2"], "top level is not a mapping"),
        ("a: 1\n---\nb: 2\n", ["vote:v2"], "not valid YAML"),
        ("x: &e {name: vote}\nimages:\n- *e\n", ["vote:v2"], "uses a YAML alias"),
    ],
)
def test_bad_input_is_refused_and_the_file_is_untouched(
    tmp_path: Path, text: str, specs: list[str], message: str
) -> None:
    folder = overlay_with(tmp_path, text)
    before = (folder / "kustomization.yaml").stat()
    with pytest.raises((OverlayError, ImageRefError), match=message):
        set_overlay_image(folder, *specs)
    assert (folder / "kustomization.yaml").read_text() == text
    assert (folder / "kustomization.yaml").stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(path.name for path in folder.iterdir()) == ["kustomization.yaml"]


def test_keywords_need_one_bare_name(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    with pytest.raises(ImageRefError, match="exactly one bare image name"):
        set_overlay_image(folder, "vote", "result", new_tag="v2")
    with pytest.raises(ImageRefError, match="image name 'vote:v1' has a tag"):
        set_overlay_image(folder, "vote:v1", new_tag="v2")


def test_missing_and_ambiguous_kustomization(tmp_path: Path) -> None:
    with pytest.raises(OverlayError, match="does not exist"):
        set_overlay_image(tmp_path / "nowhere", "vote:v1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OverlayError, match=r"has no kustomization\.yaml"):
        set_overlay_image(tmp_path / "empty", "vote:v1")
    folder = overlay_with(tmp_path, "a: 1\n")
    (folder / "kustomization.yml").write_text("b: 2\n")
    with pytest.raises(OverlayError, match=r"several kustomization files \(kustomization.yaml"):
        read_overlay_images(folder)


# --- writing ------------------------------------------------------------------------------------


def test_write_keeps_the_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    path = folder / "kustomization.yaml"
    path.chmod(0o640)
    set_overlay_image(folder, "vote:v2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in folder.iterdir()] == ["kustomization.yaml"]


def test_no_change_means_no_write(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    path = folder / "kustomization.yaml"
    inode = path.stat().st_ino
    edit = set_overlay_image(folder, "vote=registry/vote:v1")
    assert not edit.changed
    assert path.stat().st_ino == inode  # an atomic write would have replaced the inode
    assert edit.before == edit.after == (VOTE,)


def test_dry_run_computes_everything_and_writes_nothing(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE))
    before = (folder / "kustomization.yaml").read_bytes()
    edit = set_overlay_image(folder, "result:r1", dry_run=True)
    assert edit.changed
    assert edit.after[0] == ImageEntry("result", None, "r1")
    assert "+- name: result" in edit.diff
    assert (folder / "kustomization.yaml").read_bytes() == before


def test_a_symlinked_kustomization_stays_a_symlink(tmp_path: Path) -> None:
    folder = overlay_with(tmp_path, images_yaml(VOTE), "real.yaml")
    (folder / "kustomization.yaml").symlink_to("real.yaml")
    set_overlay_image(folder, "vote:v2")
    assert (folder / "kustomization.yaml").is_symlink()
    assert read_overlay_images(folder / "real.yaml") == (ImageEntry("vote", None, "v2"),)


# --- properties ---------------------------------------------------------------------------------

_names = st.sampled_from(["vote", "result", "worker", "reg.io/homelab/vote", "a", "zeta"])
_tags = st.sampled_from(["v1", "1.10", "012", "on", "1e3", "0x1F", "1234", "null", "3f1c2ab", "*"])
_digests = st.sampled_from([SHA_A, SHA_B, "*"])


@st.composite
def _spec_texts(draw: st.DrawFn) -> str:
    name = draw(_names)
    new_name = draw(st.none() | st.sampled_from(["*", "reg.io/x/y", "localhost:5000/vote"]))
    tag, digest = draw(st.none() | _tags), draw(st.none() | _digests)
    if new_name is None and tag is None and digest is None:
        tag = "v1"
    text = name if new_name is None else f"{name}={new_name}"
    return text + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# how a value is written after "key:" (the text up to the end of its last line); IND is the
# indentation of continuation lines. Block and multi-line styles are edited with a re-parse check;
# the one-line styles are spliced unchecked, which these examples show to be safe.
_BLOCK_STYLES = {
    "plain": " {v}",
    "single": " '{v}'",
    "double": ' "{v}"',
    "next-line": "\n{ind}{v}",
    "literal": " |-\n{ind}{v}",
    "literal-comment": " |-   # note\n{ind}{v}",
    "folded-blank": " >-\n{ind}{v}\n",
    "double-two-lines": ' "{v3}\\\n{ind}{rest}"',
}
_FLOW_STYLES = {"plain": "{v}", "single": "'{v}'", "double": '"{v}"'}
_ONE_LINE = frozenset(("plain", "single", "double", "next-line", "double-two-lines"))


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, str, str]:
    """(prefix, images block, suffix) of a kustomization in a random but valid style."""
    dash = draw(st.sampled_from(["", "  ", "    "]))
    gap = draw(st.sampled_from([" ", "   "]))
    lines = ["images:" + draw(st.sampled_from(["", "  # CI writes these"]))]
    for name in draw(st.lists(_names, max_size=4)):
        if draw(st.booleans()):
            lines.append(f"{dash}# about {name}")
        fields = draw(st.lists(st.sampled_from(_FIELDS), max_size=2, unique_by=str))
        if draw(st.booleans()):
            lines.append(f"{dash}-{gap}" + _flow_entry_text(draw, name, fields))
        else:
            lines.append(f"{dash}-{gap}name: {name}")
            lines.extend(
                _block_pair_text(draw, " " * (len(dash) + 1 + len(gap)), k, v) for k, v in fields
            )
    if len(lines) == 1:
        lines[0] = "images: []"
    prefix = "---\n# overlay\nresources:\n" + dash + "- ../base   # base\n"
    suffix = "# end\n" + draw(st.sampled_from(["", "namePrefix: dev-\n"]))
    return prefix, "\n".join(lines) + "\n", suffix


def _block_pair_text(draw: st.DrawFn, key_col: str, key: str, value: str) -> str:
    style = draw(st.sampled_from(sorted(_BLOCK_STYLES)))
    text = _BLOCK_STYLES[style].format(v=value, ind=key_col + "  ", v3=value[:3], rest=value[3:])
    comment = draw(st.sampled_from(["", "  # pinned"])) if style in _ONE_LINE else ""
    return f"{key_col}{key}:{text}{comment}"


def _flow_entry_text(draw: st.DrawFn, name: str, fields: list[tuple[str, str]]) -> str:
    pairs = [f"name: {name}"]
    for key, value in fields:
        styles = sorted(_FLOW_STYLES) if ":" not in value else ["double", "single"]
        pairs.append(f"{key}: " + _FLOW_STYLES[draw(st.sampled_from(styles))].format(v=value))
    return "{" + ", ".join(pairs) + "}" + draw(st.sampled_from(["", "  # pinned"]))


_FIELDS = [("newName", "reg.io/x/y"), ("newTag", "v0"), ("digest", SHA_A), ("tagSuffix", "_s")]


def _kustomize_model(entries: tuple[ImageEntry, ...], specs: list[str]) -> list[ImageEntry]:
    """``kustomize edit set image`` v5's RunSetImage, restated: the entries it writes, by name."""
    wanted: dict[str, ImageSpec | ImageEntry] = {}
    for text in specs:
        spec = ImageSpec.parse(text)
        wanted[spec.name] = spec
    for entry in entries:
        arg = wanted.get(entry.name)
        if isinstance(arg, ImageSpec):
            keep = {"new_name": entry.new_name, "new_tag": entry.new_tag, "digest": entry.digest}
            fields = {f: keep[f] if getattr(arg, f) is KEEP else getattr(arg, f) for f in keep}
            wanted[entry.name] = ImageEntry(entry.name, **fields)
        elif arg is None:
            wanted[entry.name] = entry
    return [_without_keep(name, value) for name, value in sorted(wanted.items())]


def _without_keep(name: str, value: ImageSpec | ImageEntry) -> ImageEntry:
    """A spec never matched keeps nothing: its '*' fields become empty."""
    if isinstance(value, ImageEntry):
        return value
    new_name, new_tag, digest = (
        None if v is KEEP else v for v in (value.new_name, value.new_tag, value.digest)
    )
    assert not isinstance(new_name, type(KEEP))
    assert not isinstance(new_tag, type(KEEP))
    assert not isinstance(digest, type(KEEP))
    return ImageEntry(name, new_name, new_tag, digest)


def _data(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_documents(), specs=st.lists(_spec_texts(), min_size=1, max_size=3))
def test_edits_match_kustomize_and_keep_everything_else(
    tmp_path: Path, document: tuple[str, str, str], specs: list[str]
) -> None:
    prefix, block, suffix = document
    text = prefix + block + suffix
    folder = overlay_with(tmp_path, text)
    before = read_overlay_images(folder)
    edit = set_overlay_image(folder, *specs)
    new_text = (folder / "kustomization.yaml").read_text()
    assert sorted(edit.after, key=lambda e: e.name) == _kustomize_model(before, specs)
    assert read_overlay_images(folder) == edit.after
    assert new_text.startswith(prefix)
    assert new_text.endswith(suffix)
    old_data, new_data = _data(text), _data(new_text)
    assert isinstance(old_data, dict)
    assert isinstance(new_data, dict)
    old_data.pop("images"), new_data.pop("images")
    assert old_data == new_data
    for key, value in YAML(typ="safe", pure=True).load(new_text)["images"][0].items():
        assert isinstance(value, str), (key, value)  # YAML 1.2 reads strings
    assert edit.changed == bool(edit.edited)
    assert set(edit.edited) >= {e.name for e in edit.after if e not in edit.before}
    assert not set_overlay_image(folder, *specs).changed


# --- against the real kustomize binary ------------------------------------------------------------


# forms kustomize 4.5.4 reads as v5 does (it lacks NAME:TAG@DIGEST and NAME=NEW:TAG@DIGEST)
V4_CASES = [
    ["vote=registry/vote:v2"],
    ["vote:v2"],
    ["vote=*:v2"],
    ["vote=other/vote:*"],
    [f"vote=*@{SHA_A}"],
    [f"vote@{SHA_A}"],
    ["vote=*"],
    ["b:1", "a:2", "worker=reg/w"],
    ["vote=localhost:5000/homelab/vote:1.10"],
]


@pytest.mark.parametrize("specs", V4_CASES)
def test_same_entries_as_the_kustomize_binary(tmp_path: Path, specs: list[str]) -> None:
    binary = kustomize_binary()
    if binary is None:
        missing_tool("no kustomize binary (run scripts/setup.sh, or set KUSTOMIZE_BIN)")
    text = images_yaml(VOTE, ImageEntry("worker", None, "7"), ImageEntry("vote", "x", "9"))
    ours = overlay_with(tmp_path, text)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "kustomization.yaml").write_text(text)
    proc.run([binary, "edit", "set", "image", *specs], cwd=theirs)
    edit = set_overlay_image(ours, *specs)
    assert sorted(edit.after, key=lambda e: e.name) == list(read_overlay_images(theirs))


@pytest.mark.parametrize(
    ("ci", "outcome", "code"), [("true", "1 failed, 1 error", 1), ("", "2 skipped", 0)]
)
def test_missing_tools_fail_in_ci_and_skip_elsewhere(
    tmp_path: Path, ci: str, outcome: str, code: int
) -> None:
    """Without kustomize and kubectl (empty HOME, PATH of python only) the oracle tests react."""
    tests = [
        "tests/test_overlay.py::test_same_entries_as_the_kustomize_binary[specs0]",
        "tests/test_overlay_render.py::test_tags_render_as_the_exact_string[1e3]",
    ]
    env = {"HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent), "CI": ci}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert outcome in result.stdout
    assert ("CI needs this tool" in result.stdout) == bool(ci)
