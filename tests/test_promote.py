"""promote_overlay on real overlay files: which entries move, what the result says changed.

The registry check has its own tests (test_workflows.py, against the real registry); here it is
off (``verify=False``) except where the check refuses before any registry is asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from homelab_release.errors import PromotionError
from homelab_release.overlay import ImageEntry, read_overlay_images
from homelab_release.promotion import PromotedImage, promote_overlay

SHA_A = "sha256:" + "a" * 64
HEAD = "resources:\n- ../../base  # every service\nimages:\n"


def overlays(tmp_path: Path, source: str, target: str) -> tuple[Path, Path]:
    """k8s/overlays/develop and k8s/overlays/stage holding the given ``images:`` lines."""
    folders = []
    for name, images in (("develop", source), ("stage", target)):
        folder = tmp_path / "k8s" / "overlays" / name
        folder.mkdir(parents=True)
        (folder / "kustomization.yaml").write_text(HEAD + images)
        folders.append(folder)
    return folders[0], folders[1]


# --- B7: duplicates in the source --------------------------------------------------------------


def test_duplicate_source_entries_promote_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, target = overlays(
        tmp_path,
        "- name: vote\n  newTag: v1\n- name: result\n  newTag: r1\n- name: vote\n  newTag: v9\n",
        "- name: vote  # the web front end\n  newTag: v0\n",
    )
    promotion = promote_overlay(source, target, verify=False)
    assert read_overlay_images(target) == (
        ImageEntry("result", None, "r1"),
        ImageEntry("vote", None, "v1"),  # the first vote entry, as kustomize renders develop
    )
    assert [(c.name, c.after.new_tag, c.reason) for c in promotion.changes] == [
        ("vote", "v1", "changed"),
        ("result", "r1", "added"),
    ]
    assert "# the web front end" in (target / "kustomization.yaml").read_text()
    assert "several entries named vote; using the first, vote:v1" in caplog.text


def test_duplicate_source_entries_with_a_selection(tmp_path: Path) -> None:
    source, target = overlays(
        tmp_path, "- name: vote\n  newTag: v1\n- name: vote\n  newTag: v9\n", ""
    )
    promotion = promote_overlay(source, target, images=["vote"], verify=False)
    assert read_overlay_images(target) == (ImageEntry("vote", None, "v1"),)
    assert promotion.changed


# --- B16: changed agrees with the file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_images", "reason"),
    [
        ("- name: vote\n  newTag: v1\n- name: vote\n  newTag: v9\n", "duplicates removed"),
        ("- name: vote\n  newTag: 012\n", "rewritten"),  # YAML 1.1 reads 012 as a number
        ('- name: vote\n  newTag: "012"\n  digest: ""\n', "rewritten"),
        ("- name: vote\n  newTag: v0\n- name: vote\n  newTag: v9\n", "changed, duplicates removed"),
    ],
)
def test_changed_follows_the_file_edit(tmp_path: Path, target_images: str, reason: str) -> None:
    tag = "012" if "012" in target_images else "v1"
    source, target = overlays(tmp_path, f'- name: vote\n  newTag: "{tag}"\n', target_images)
    before = read_overlay_images(target)[0]
    promotion = promote_overlay(source, target, verify=False)
    assert promotion.changed
    assert promotion.written
    assert promotion.diff
    assert promotion.changes == (
        PromotedImage("vote", before, ImageEntry("vote", None, tag), reason),
    )
    assert read_overlay_images(target) == (ImageEntry("vote", None, tag),)
    again = promote_overlay(source, target, verify=False)
    assert (again.changed, again.changes, again.diff, again.written) == (False, (), "", False)


def test_dry_run_says_changed_and_writes_nothing(tmp_path: Path) -> None:
    duplicates = "- name: vote\n  newTag: v1\n- name: vote\n  newTag: v9\n"
    source, target = overlays(tmp_path, "- name: vote\n  newTag: v1\n", duplicates)
    promotion = promote_overlay(source, target, verify=False, dry_run=True)
    assert promotion.changed
    assert not promotion.written
    assert [c.reason for c in promotion.changes] == ["duplicates removed"]
    assert (target / "kustomization.yaml").read_text() == HEAD + duplicates


def test_nothing_to_promote_changes_nothing(tmp_path: Path) -> None:
    source, target = overlays(
        tmp_path, "- name: vote\n  newTag: v1\n", "- name: vote\n  newTag: 'v1'  # kept\n"
    )
    promotion = promote_overlay(source, target, verify=False)
    assert (promotion.changed, promotion.changes, promotion.diff) == (False, (), "")


# --- B12: tagSuffix travels --------------------------------------------------------------------


def test_tag_suffix_is_promoted(tmp_path: Path) -> None:
    source, target = overlays(
        tmp_path,
        "- name: vote\n  newName: reg/vote\n  tagSuffix: -debug\n",
        "- name: vote\n  newName: reg/vote\n",
    )
    promotion = promote_overlay(source, target, verify=False)
    assert read_overlay_images(target) == (ImageEntry("vote", "reg/vote", tag_suffix="-debug"),)
    assert [c.reason for c in promotion.changes] == ["changed"]


def test_tag_suffix_without_tag_cannot_be_verified(tmp_path: Path) -> None:
    source, target = overlays(tmp_path, "- name: vote\n  tagSuffix: -debug\n", "")
    with pytest.raises(
        PromotionError, match=r"entry 'vote'.*tagSuffix '-debug'.*verify=False"
    ) as refused:
        promote_overlay(source, target)
    assert "promote only the others: images=NAME" in str(refused.value)
    shown = refused.value.for_command_line()
    assert "promote only the others: --image NAME" in shown
    assert shown.endswith("--no-verify")
    assert (target / "kustomization.yaml").read_text() == HEAD


def test_rename_without_tag_cannot_be_verified(tmp_path: Path) -> None:
    source, target = overlays(tmp_path, "- name: vote\n  newName: reg/vote\n", "")
    with pytest.raises(PromotionError, match=r"entry 'vote'.*it keeps the tag of the base's image"):
        promote_overlay(source, target, lookup=lambda reference: SHA_A)
    assert (target / "kustomization.yaml").read_text() == HEAD


# --- what a dry run asks of the registry ---------------------------------------------------------

UNREACHABLE = (
    f"- name: vote\n  newName: 127.0.0.1:9/homelab/vote\n  newTag: v2\n  digest: {SHA_A}\n"
)


def test_a_dry_run_asks_no_registry(tmp_path: Path) -> None:
    source, target = overlays(tmp_path, UNREACHABLE, "")
    promotion = promote_overlay(source, target, dry_run=True)
    assert promotion.changed
    assert not promotion.written
    assert str(promotion.changes[0].after) == f"127.0.0.1:9/homelab/vote:v2@{SHA_A}"


def test_a_dry_run_verifies_when_asked_and_a_real_run_always(tmp_path: Path) -> None:
    source, target = overlays(tmp_path, UNREACHABLE, "")
    for options in ({"dry_run": True, "verify": True}, {}):
        with pytest.raises(PromotionError, match=r"cannot verify 127\.0\.0\.1:9/homelab/vote"):
            promote_overlay(source, target, **options)  # type: ignore[arg-type]
    assert read_overlay_images(target) == ()
