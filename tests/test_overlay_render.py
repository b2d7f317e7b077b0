"""Overlays edited by set_overlay_image, rendered by ``kubectl kustomize`` (the oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from homelab_release.images import split_reference
from homelab_release.overlay import ImageEntry, apply_overlay_entries, set_overlay_image
from tests.oracles import render, require_render

pytestmark = pytest.mark.kustomize

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64
# container name -> image in the base Deployments
BASE_IMAGES = {
    "vote": "registry.example.com/homelab/vote",
    "vote-tagged": "registry.example.com/homelab/vote:old",
    "vote-digest": f"registry.example.com/homelab/vote@{SHA_B}",
    "result": "result:1",
    "worker": "localhost:5000/homelab/worker",
    "other": "busybox:1.36",
}
TRICKY_TAGS = ["1e3", "012", "1.10", "on", "yes", "null", "0x1F", "1234", "NO", "y", "1_000", "v1"]


def deployment(name: str, images: dict[str, str]) -> str:
    containers = "".join(f"      - name: {c}\n        image: {i}\n" for c, i in images.items())
    return (
        "apiVersion: apps/v1\nkind: Deployment\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  selector:\n    matchLabels: {{app: {name}}}\n"
        f"  template:\n    metadata:\n      labels: {{app: {name}}}\n"
        f"    spec:\n      containers:\n{containers}"
    )


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """k8s/base with two Deployments and k8s/overlays/develop with commented images."""
    require_render()
    base = tmp_path / "k8s" / "base"
    base.mkdir(parents=True)
    (base / "web.yaml").write_text(deployment("web", dict(list(BASE_IMAGES.items())[:3])))
    (base / "back.yaml").write_text(deployment("back", dict(list(BASE_IMAGES.items())[3:])))
    (base / "kustomization.yaml").write_text("resources:\n- web.yaml\n- back.yaml\n")
    folder = tmp_path / "k8s" / "overlays" / "develop"
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(
        "---\n# develop\nresources:\n  - ../../base  # all services\n"
        "images:\n  # the web front end\n  - name: registry.example.com/homelab/vote\n"
        "    newTag: 'start'   # set by CI\n"
    )
    return folder


def rendered_images(folder: Path) -> dict[str, str]:
    """Container name -> image, from ``kubectl kustomize``."""
    output = render(folder)
    images: dict[str, str] = {}
    for doc in YAML(typ="safe", pure=True).load_all(output):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            images[container["name"]] = container["image"]
    return images


def expected_images(entries: tuple[ImageEntry, ...]) -> dict[str, str]:
    """What kustomize's rules give for each base image (entry names are unique here)."""
    by_name = {entry.name: entry for entry in entries}
    result = {}
    for container, image in BASE_IMAGES.items():
        entry = by_name.get(split_reference(image)[0])
        result[container] = entry.rendered(image) if entry else image
    return result


@pytest.mark.parametrize(
    "specs",
    [
        ["registry.example.com/homelab/vote:3f1c2ab"],
        [f"registry.example.com/homelab/vote=*@{SHA_A}"],
        [f"registry.example.com/homelab/vote=reg.io/vote:v2@{SHA_A}"],
        ["registry.example.com/homelab/vote=reg.io/vote"],
        ["result=registry.example.com/homelab/result:r2", "localhost:5000/homelab/worker:w1"],
        [f"localhost:5000/homelab/worker=localhost:5000/homelab/worker:w2@{SHA_A}"],
        ["registry.example.com/homelab/vote=*:*@" + SHA_A],
    ],
)
def test_render_matches_kustomize_rules(overlay: Path, specs: list[str]) -> None:
    edit = set_overlay_image(overlay, *specs)
    assert rendered_images(overlay) == expected_images(edit.after)
    assert "# the web front end" in (overlay / "kustomization.yaml").read_text()


@pytest.mark.parametrize("tag", TRICKY_TAGS)
def test_tags_render_as_the_exact_string(overlay: Path, tag: str) -> None:
    set_overlay_image(overlay, f"registry.example.com/homelab/vote:{tag}", f"result:{tag}")
    images = rendered_images(overlay)
    assert images["vote"] == f"registry.example.com/homelab/vote:{tag}"
    assert images["result"] == f"result:{tag}"


def test_apply_entries_render_tag_and_digest(overlay: Path) -> None:
    entries = [
        ImageEntry("registry.example.com/homelab/vote", "reg.io/vote", "012", SHA_A),
        ImageEntry("result", None, None, SHA_B),
    ]
    apply_overlay_entries(overlay, entries)
    images = rendered_images(overlay)
    assert images["vote"] == f"reg.io/vote:012@{SHA_A}"
    assert images["vote-digest"] == f"reg.io/vote:012@{SHA_A}"
    assert images["result"] == f"result@{SHA_B}"
    assert images["other"] == "busybox:1.36"


def test_tag_suffix_renders_as_kustomize_v5_does(overlay: Path) -> None:
    entries = [
        ImageEntry("registry.example.com/homelab/vote", "reg.io/vote", tag_suffix="-debug"),
        ImageEntry("localhost:5000/homelab/worker", tag_suffix="_1.0"),
        ImageEntry("result", None, "r2", tag_suffix="-ignored"),  # newTag wins over tagSuffix
    ]
    edit = apply_overlay_entries(overlay, entries)
    images = rendered_images(overlay)
    assert images == expected_images(edit.after)
    assert images["vote-tagged"] == "reg.io/vote:old-debug"
    assert images["vote-digest"] == "reg.io/vote:-debug"  # the digest goes, the suffix stays
    # not renamed: kustomize appends the suffix twice (kubernetes-sigs/kustomize#4814)
    assert images["worker"] == "localhost:5000/homelab/worker:_1.0_1.0"
    assert images["result"] == "result:r2"
