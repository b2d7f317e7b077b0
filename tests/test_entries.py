"""ImageEntry, first_by_name, changed_entries and the entry planner: pure, no YAML."""

from __future__ import annotations

import pytest

from homelab_release.entries import (
    Action,
    EntryPlan,
    ImageEntry,
    Insertion,
    Step,
    changed_entries,
    check_entry,
    first_by_name,
    first_entries,
    plan_entries,
)
from homelab_release.errors import OverlayError

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64

KEEP, REWRITE, DROP = Action.KEEP, Action.REWRITE, Action.DROP


def tagged(name: str, tag: str) -> ImageEntry:
    """The entry ``name`` with ``newTag: tag``."""
    return ImageEntry(name, None, tag)


A1, A2 = tagged("a", "1"), tagged("a", "2")
B1, C1, C2, C9 = tagged("b", "1"), tagged("c", "1"), tagged("c", "2"), tagged("c", "9")
D1, D2, E1, W1, W2 = (
    tagged("d", "1"),
    tagged("d", "2"),
    tagged("e", "1"),
    tagged("w", "1"),
    tagged("w", "2"),
)
Z1 = tagged("zeta", "1")


# --- ImageEntry.rendered, reference and str -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "image", "rendered"),
    [
        (ImageEntry("vote", None, "v2"), "vote", "vote:v2"),
        (ImageEntry("vote", "reg/vote"), "vote:v1", "reg/vote:v1"),
        (ImageEntry("vote", None, None, SHA_A), "vote:v1", f"vote@{SHA_A}"),
        (ImageEntry("vote", None, "v2"), f"vote:v1@{SHA_B}", "vote:v2"),
        (ImageEntry("vote", "r/v", "v2", SHA_A), "vote:v1", f"r/v:v2@{SHA_A}"),
        (ImageEntry("vote", "r/v"), f"vote@{SHA_B}", f"r/v@{SHA_B}"),
        # kustomize appends tagSuffix twice unless newName renames the image (kustomize#4814)
        (ImageEntry("vote", tag_suffix="-dbg"), "vote:v1", "vote:v1-dbg-dbg"),
        (ImageEntry("vote", "vote", tag_suffix="-d"), "vote:v1", "vote:v1-d-d"),
        (ImageEntry("vote", "r/v", tag_suffix="-dbg"), f"vote:v1@{SHA_B}", "r/v:v1-dbg"),
        (ImageEntry("vote", "r/v", tag_suffix="-d"), "vote", "r/v:-d"),
        (ImageEntry("vote", None, "v2", tag_suffix="-dbg"), "vote:v1", "vote:v2"),
        (ImageEntry("vote", None, None, SHA_A, "-dbg"), "vote:v1", f"vote@{SHA_A}"),
        (
            ImageEntry("localhost:5000/vote", None, "v2"),
            "localhost:5000/vote",
            "localhost:5000/vote:v2",
        ),
    ],
)
def test_rendered_follows_kustomize(entry: ImageEntry, image: str, rendered: str) -> None:
    assert entry.rendered(image) == rendered


def test_reference_is_the_render_of_the_bare_name() -> None:
    assert ImageEntry("vote", "r/vote", "v2", SHA_A).reference == f"r/vote:v2@{SHA_A}"
    assert ImageEntry("vote").reference == "vote"


def test_str_is_the_reference_and_repr_stays_the_dataclass_one() -> None:
    entry = ImageEntry("vote", "registry/vote", "3f1c", SHA_A)
    assert str(entry) == f"registry/vote:3f1c@{SHA_A}" == entry.reference
    assert f"{entry}" == str(entry)
    assert repr(entry) == (
        f"ImageEntry(name='vote', new_name='registry/vote', new_tag='3f1c', digest='{SHA_A}', "
        "tag_suffix=None)"
    )
    assert str(ImageEntry("vote", tag_suffix="-x")) == "vote:-x-x"  # as kustomize renders it


# --- first_by_name and changed_entries ------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ((), {}),
        ((A1, B1), {"a": A1, "b": B1}),
        ((A1, A2), {"a": A1}),  # kustomize renders the first of duplicate names
        ((B1, A2, A1, B1), {"b": B1, "a": A2}),
    ],
)
def test_first_by_name_keeps_the_first_of_each_name(
    entries: tuple[ImageEntry, ...], expected: dict[str, ImageEntry]
) -> None:
    first = first_by_name(entries)
    assert first == expected
    assert list(first) == list(expected)  # in the order the names first appear
    assert first_by_name(iter(entries)) == expected  # any iterable


@pytest.mark.parametrize(
    ("entry", "image"),
    [
        (ImageEntry("vote", "reg.example/vote", "v1"), "reg.example/vote:v1"),
        (ImageEntry("vote", "reg.example/vote", "v1", SHA_A), f"reg.example/vote:v1@{SHA_A}"),
        (ImageEntry("reg.example/vote", None, None, SHA_A), f"reg.example/vote@{SHA_A}"),
        (ImageEntry("vote", "reg.example/vote"), None),  # the base's tag: nothing to look up
        (ImageEntry("vote", None, tag_suffix="-debug"), None),
    ],
)
def test_image_is_what_the_registry_is_asked_for(entry: ImageEntry, image: str | None) -> None:
    assert (str(entry.image) if entry.image else None) == image
    assert entry.repository.repository == (entry.new_name or entry.name)


def test_first_entries_warns_about_each_later_duplicate(caplog: pytest.LogCaptureFixture) -> None:
    assert first_entries((A1, B1, A2, tagged("a", "3")), "k8s/overlays/stage") == (A1, B1)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["k8s/overlays/stage: several entries named a; using the first, a:1"] * 2
    caplog.clear()
    assert first_entries((A1, B1), "x") == (A1, B1)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ((), (), ()),
        ((A1,), (A1,), ()),
        ((A1,), (A2,), (A2,)),
        ((), (B1, A1), (B1, A1)),  # new names, in after's order
        ((A1, B1), (B1,), ()),  # a name that is gone is not a changed entry
        ((A1, A2), (A1,), ()),  # a removed duplicate renders the same
        ((A2, A1), (A1,), (A1,)),  # the duplicate that rendered was A2
        ((A1,), (A1, A2), ()),  # a duplicate added after the first renders nothing new
        ((C1, A1, B1), (A2, B1, C2), (A2, C2)),
    ],
)
def test_changed_entries_compares_what_kustomize_renders(
    before: tuple[ImageEntry, ...], after: tuple[ImageEntry, ...], expected: tuple[ImageEntry, ...]
) -> None:
    assert changed_entries(before, after) == expected


# --- check_entry ------------------------------------------------------------------------------------


def test_check_entry_returns_a_valid_entry() -> None:
    entry = ImageEntry("localhost:5000/vote", "reg/vote", "1.10", SHA_A, "-x")
    assert check_entry(entry) is entry


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            ImageEntry("vote", "reg/vote:v1"),
            "image entry 'vote' is not valid: image name 'reg/vote:v1' has a tag",
        ),
        (ImageEntry("vote", tag_suffix="x" * 128), "tagSuffix 'x+' is empty or too long"),
        (ImageEntry("vote", tag_suffix=""), "tagSuffix '' is empty or too long"),
        (ImageEntry("vote", tag_suffix="-é"), "tagSuffix '-é' has a 'é'"),
    ],
)
def test_check_entry_names_the_bad_field(entry: ImageEntry, message: str) -> None:
    with pytest.raises(OverlayError, match=message):
        check_entry(entry)


# --- plan_entries ------------------------------------------------------------------------------------

PLANS = {
    "empty list gets the entry": (
        (),
        {"a": A1},
        True,
        EntryPlan((), (Insertion(None, (A1,)),), (A1,)),
    ),
    "targeted entry is rewritten": (
        (A1, B1),
        {"a": A2},
        True,
        EntryPlan((Step(REWRITE, A2), Step(KEEP, B1)), (), (A2, B1)),
    ),
    "a rewrite to the same value is still planned (the text may need quotes)": (
        (A1,),
        {"a": A1},
        True,
        EntryPlan((Step(REWRITE, A1),), (), (A1,)),
    ),
    "set image collapses every duplicate": (
        (W1, W2, A1),
        {"a": A2},
        True,
        EntryPlan((Step(KEEP, W1), Step(DROP, W2), Step(REWRITE, A2)), (), (W1, A2)),
    ),
    "apply entries collapses only targeted duplicates": (
        (W1, W2, A1, A1),
        {"a": A2},
        False,
        EntryPlan(
            (Step(KEEP, W1), Step(KEEP, W2), Step(REWRITE, A2), Step(DROP, A1)), (), (W1, W2, A2)
        ),
    ),
    "new name goes before the first kept entry with a greater name": (
        (A1, C1, D1, D2, C9),
        {"c": C2, "b": B1},
        False,
        EntryPlan(
            (Step(KEEP, A1), Step(REWRITE, C2), Step(KEEP, D1), Step(KEEP, D2), Step(DROP, C9)),
            (Insertion(1, (B1,)),),
            (A1, B1, C2, D1, D2),
        ),
    ),
    "new names in name order, each in its own place": (
        (B1, D1),
        {"e": E1, "c": C1, "a": A1},
        True,
        EntryPlan(
            (Step(KEEP, B1), Step(KEEP, D1)),
            (Insertion(0, (A1,)), Insertion(1, (C1,)), Insertion(None, (E1,))),
            (A1, B1, C1, D1, E1),
        ),
    ),
    "an unsorted list: new names before the first greater one": (
        (Z1, B1),
        {"c": C1, "a": A1},
        True,
        EntryPlan((Step(KEEP, Z1), Step(KEEP, B1)), (Insertion(0, (A1, C1)),), (A1, C1, Z1, B1)),
    ),
    "names after every kept name go last, together": (
        (A1, A2),
        {"d": D1, "c": C1},
        True,
        EntryPlan((Step(KEEP, A1), Step(DROP, A2)), (Insertion(None, (C1, D1)),), (A1, C1, D1)),
    ),
    "nothing targeted, nothing collapses": (
        (A1, A2),
        {},
        False,
        EntryPlan((Step(KEEP, A1), Step(KEEP, A2)), (), (A1, A2)),
    ),
    "nothing targeted, duplicates still collapse": (
        (A1, A2),
        {},
        True,
        EntryPlan((Step(KEEP, A1), Step(DROP, A2)), (), (A1,)),
    ),
}


@pytest.mark.parametrize(
    ("current", "targets", "collapse_all", "expected"), PLANS.values(), ids=PLANS
)
def test_plan_entries(
    current: tuple[ImageEntry, ...],
    targets: dict[str, ImageEntry],
    collapse_all: bool,
    expected: EntryPlan,
) -> None:
    plan = plan_entries(current, targets, collapse_all=collapse_all)
    assert plan == expected
    assert plan.added == tuple(
        targets[name] for name in sorted(targets) if name not in {entry.name for entry in current}
    )
    # each target once; untouched names as they were, their duplicates collapsed if asked
    for name, target in targets.items():
        assert [e for e in plan.after if e.name == name] == [target]
    untouched = [e for e in current if e.name not in targets]
    kept = [e for e in plan.after if e.name not in targets]
    assert kept == (list(first_by_name(untouched).values()) if collapse_all else untouched)
