"""release, history and rollback end to end: the example, real remotes, Docker Engine and registry.

Two module-scoped pipeline histories are shared, each test starting from it again (the manifests
branch reset, no merge-request branch): ``released`` (develop built twice, vote changing in the
second, stage promoted, v1.0.0 released to prod) and ``built_three_times`` (develop only). Every
test that releases uses a version of its own, since registry tags stay; a test that deletes an
image builds its own.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from homelab_release import git as git_module
from homelab_release.cli import main
from homelab_release.demo import Sandbox
from homelab_release.demo.example import BUILDAH_ONLY, create_example_repos
from homelab_release.demo.sandbox import DockerEngine, LocalRegistry
from homelab_release.errors import (
    ConfigError,
    PromotionError,
    ReleaseError,
    RollbackError,
    VersionError,
)
from homelab_release.git import ZERO_SHA, git
from homelab_release.history import history, rollback
from homelab_release.images import ImageRef
from homelab_release.overlay import ImageEntry, apply_overlay_entries, read_overlay_images
from homelab_release.registry import manifest_digest, retag
from homelab_release.releases import release
from homelab_release.status import environment_status
from homelab_release.workflows import build_develop, promote

BRANCH = "k8s-manifests"


def images_of(box: Sandbox) -> str:
    """A registry prefix of this box's own: the session registry is shared, and a release tag
    (1.0.0) of another test's images must not meet this one's."""
    return f"{box.registry.address}/rel-{hashlib.sha256(str(box.folder).encode()).hexdigest()[:10]}"


def pipeline_env(box: Sandbox, *, before: str, sha: str) -> dict[str, str]:
    env = box.pipeline_env(branch="develop", before=before, sha=sha)
    return {**env, "CI_REGISTRY_IMAGE": images_of(box)}


def env_of(box: Sandbox, **extra: str) -> dict[str, str]:
    sha = box.repos.head()
    return {**pipeline_env(box, before=sha, sha=sha), **extra}


def tip(box: Sandbox) -> str:
    return git(box.repos.remote, "rev-parse", BRANCH).strip()


def overlay(box: Sandbox, name: str, rev: str = BRANCH) -> dict[str, ImageEntry]:
    tree = box.folder / f"read-{len(list(box.folder.iterdir()))}"
    git(box.folder, "clone", "-q", "--branch", BRANCH, str(box.repos.remote), str(tree))
    git(tree, "checkout", "-q", rev)
    entries = {e.name: e for e in read_overlay_images(tree / f"k8s/overlays/{name}")}
    shutil.rmtree(tree)
    return entries


def tag_digest(box: Sandbox, entry: ImageEntry, tag: str) -> str | None:
    assert entry.new_name
    reference = ImageRef.parse(entry.new_name).with_tag(tag)
    return manifest_digest(reference, box.registry.credentials)


def build(box: Sandbox, before: str) -> None:
    result = build_develop(
        box.repos.work, env=pipeline_env(box, before=before, sha=box.repos.head())
    )
    assert all(b.ok for b in result.builds)


def two_builds(
    folder: Path, docker_engine: DockerEngine, registry: LocalRegistry
) -> tuple[Sandbox, str, str]:
    """The example built on its first push, then again after a commit that changes vote; the
    sandbox and the manifests commit of each build."""
    box = Sandbox(
        folder,
        docker_engine.host,
        registry,
        create_example_repos(folder / "repos", without=BUILDAH_ONLY),
    )
    build(box, ZERO_SHA)
    first = tip(box)
    before = box.repos.head()
    script = box.repos.work / "vote" / "app.sh"
    script.write_text(script.read_text() + "# v2\n")
    box.repos.commit("vote: v2", "vote/app.sh")
    build(box, before)
    return box, first, tip(box)


@dataclass(frozen=True)
class Released:
    box: Sandbox
    states: tuple[str, ...]  # develop's manifests commits, oldest first
    released: str  # the manifests commit of the v1.0.0 release


@pytest.fixture(scope="module")
def released(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine, registry: LocalRegistry
) -> Released:
    box, first, second = two_builds(tmp_path_factory.mktemp("released"), docker_engine, registry)
    promote(box.repos.work, to="stage", env=env_of(box))
    result = release(box.repos.work, env=env_of(box, CI_COMMIT_TAG="v1.0.0"))
    assert result.commit is not None
    return Released(box, (first, second), result.commit)


def reset_manifests(box: Sandbox, commit: str) -> None:
    """The manifests branch back at ``commit``, and no merge request branch."""
    git(box.repos.remote, "update-ref", f"refs/heads/{BRANCH}", commit)
    branches = git(
        box.repos.remote, "for-each-ref", "--format=%(refname)", "refs/heads/homelab-release/"
    )
    for ref in branches.split():
        git(box.repos.remote, "update-ref", "-d", ref)


@pytest.fixture
def release_box(released: Released) -> Released:
    """:func:`released`, its manifests branch back at the v1.0.0 release."""
    reset_manifests(released.box, released.released)
    return released


def test_release_tags_stage_images_by_digest_and_writes_prod_once(release_box: Released) -> None:
    released = release_box
    box = released.box
    stage = overlay(box, "stage", released.released)
    prod = overlay(box, "prod", released.released)
    assert set(prod) == {"vote", "result", "worker"}
    for name, entry in prod.items():
        assert entry.new_tag == "1.0.0"
        assert entry.digest == stage[name].digest
        assert entry.new_name == stage[name].new_name
        assert tag_digest(box, entry, "1.0.0") == stage[name].digest
    parents = git(
        box.repos.remote, "rev-list", "--count", f"{released.released}^..{released.released}"
    )
    assert parents.strip() == "1"
    message = git(box.repos.remote, "log", "-1", "--format=%B", released.released)
    assert message.startswith("prod: release 1.0.0 [skip ci]")
    assert "Release: 1.0.0\nRelease-Tag: v1.0.0\nPromoted-From: stage" in message


def test_prod_file_keeps_its_comments(release_box: Released) -> None:
    released = release_box
    text = git(
        released.box.repos.remote,
        "show",
        f"{released.released}:k8s/overlays/prod/kustomization.yaml",
    )
    assert text.startswith("# Prod: only released versions get here")
    assert 'newTag: "1.0.0"' in text or "newTag: 1.0.0" in text


def test_status_shows_the_version(release_box: Released) -> None:
    released = release_box
    status = environment_status(released.box.repos.work, env=env_of(released.box))
    versions = {e.name: e.version for e in status.environments}
    assert versions == {"develop": None, "stage": None, "prod": "1.0.0"}
    prod = status.environments[2]
    assert prod.behind == (), "the same digests under a version tag are not behind stage"


@pytest.mark.parametrize(
    ("tag", "options", "error", "message"),
    [
        ("v2.0.0", {}, VersionError, r"outside prod's policy environments\.prod\.versions"),
        ("v1.0.0-alpha.beta", {}, VersionError, "PEP 440"),
        ("release-7", {}, VersionError, "names no version"),
        ("v1.1.0rc1", {}, VersionError, "pre-release"),
        ("v0.9.0", {"allow_downgrade": True}, VersionError, "outside"),
        ("v1.1.0", {"to": "stage"}, ConfigError, "no versions policy"),
    ],
)
def test_refused_releases_write_and_tag_nothing(
    release_box: Released,
    tag: str,
    options: dict[str, object],
    error: type[ReleaseError],
    message: str,
) -> None:
    box = release_box.box
    before = tip(box)
    with pytest.raises(error, match=message):
        release(box.repos.work, tag=tag, env=env_of(box), **options)  # type: ignore[arg-type]
    assert tip(box) == before
    vote = overlay(box, "stage")["vote"]
    for version in ("2.0.0", "1.1.0rc1", "0.9.0", "1.1.0"):  # no other test uses these
        assert tag_digest(box, vote, version) is None


def test_a_release_tag_never_moves(release_box: Released) -> None:
    released = release_box
    box = released.box
    older = overlay(box, "develop", released.states[0])["vote"]  # not the image stage runs
    assert older.new_name
    assert older.digest
    retag(
        ImageRef.parse(older.new_name).with_digest(older.digest), "1.0.9", box.registry.credentials
    )
    before = tip(box)
    with pytest.raises(PromotionError, match=r"1\.0\.9 is sha256:.*a release tag never moves"):
        release(box.repos.work, tag="v1.0.9", env=env_of(box))
    assert tip(box) == before
    assert tag_digest(box, overlay(box, "stage")["result"], "1.0.9") is None, "nothing tagged"


class ReadOnlyRegistry(LocalRegistry):
    """A second registry process on the session registry's storage, in read-only maintenance
    mode: reads work, every write is refused (HTTP 405), as a registry refusing a push does."""

    def __init__(self, folder: Path, of: LocalRegistry) -> None:
        super().__init__(folder, username=of.credentials.username, password=of.credentials.password)
        self.data = of.folder / "data"

    def _write_config(self) -> Path:
        config = super()._write_config()
        text = config.read_text().replace(str(self.folder / "data"), str(self.data))
        text = text.replace(
            "  delete:\n    enabled: true\n", "  maintenance:\n    readonly:\n      enabled: true\n"
        )
        config.write_text(text)
        return config


def test_a_refused_retag_stops_before_the_commit_and_names_the_tags_made(
    release_box: Released, tmp_path: Path
) -> None:
    box = release_box.box
    stage = overlay(box, "stage")
    with ReadOnlyRegistry(tmp_path / "ro", box.registry) as readonly:
        # stage runs worker from a mirror that refuses writes; vote and result come first
        worker = stage["worker"]
        assert worker.new_name
        mirrored = worker.new_name.replace(box.registry.address, readonly.address)
        tree = tmp_path / "manifests"
        git(tmp_path, "clone", "-q", "--branch", BRANCH, str(box.repos.remote), str(tree))
        kustomization = tree / "k8s/overlays/stage/kustomization.yaml"
        kustomization.write_text(kustomization.read_text().replace(worker.new_name, mirrored))
        git(tree, "commit", "-qam", "stage: worker from the mirror")
        git(tree, "push", "-q", "origin", f"HEAD:{BRANCH}")
        before = tip(box)
        order = [e.name for e in read_overlay_images(tree / "k8s/overlays/stage")]
        assert order.index("worker") == 2
        with pytest.raises(PromotionError) as refused:
            release(box.repos.work, tag="v1.4.0", env=env_of(box))
    message = str(refused.value)
    assert "release 1.4.0 stopped, nothing was committed" in message
    assert f"{readonly.address}" in message
    assert f"{stage['vote'].new_name}:1.4.0" in message
    assert f"{stage['result'].new_name}:1.4.0" in message
    assert "cannot be taken back" in message
    assert tip(box) == before
    assert tag_digest(box, stage["vote"], "1.4.0") == stage["vote"].digest  # made before the stop


@pytest.fixture(scope="module")
def built_three_times(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine, registry: LocalRegistry
) -> tuple[Sandbox, list[str]]:
    """develop built three times (vote changed each time); its manifests commits, oldest first."""
    folder = tmp_path_factory.mktemp("rollback")
    repos = create_example_repos(folder / "repos", without=BUILDAH_ONLY)
    box = Sandbox(folder, docker_engine.host, registry, repos)
    build(box, ZERO_SHA)
    commits = [tip(box)]
    for version in (2, 3):
        before = box.repos.head()
        script = box.repos.work / "vote" / "app.sh"
        script.write_text(script.read_text() + f"# v{version}\n")
        box.repos.commit(f"vote: v{version}", "vote/app.sh")
        build(box, before)
        commits.append(tip(box))
    return box, commits


@pytest.fixture
def rollback_box(built_three_times: tuple[Sandbox, list[str]]) -> tuple[Sandbox, list[str]]:
    """:func:`built_three_times` with the manifests branch back at the third build and no merge
    request branch (the builds are shared; what a rollback test writes is undone)."""
    box, commits = built_three_times
    reset_manifests(box, commits[2])
    return box, commits


def test_history_lists_the_states_and_rollback_takes_only_those(
    rollback_box: tuple[Sandbox, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, commits = rollback_box
    found = history(box.repos.work, environment="develop", env=env_of(box))
    assert [s.commit for s in found.states[:3]] == commits[::-1]
    assert len(found.states) == 4
    assert found.states[3].images == (), "the overlay as the manifests were laid out"
    newest = found.states[0]
    assert newest.source_commit == box.repos.head()
    assert {e.name for e in newest.images} == {"vote", "result", "worker"}
    for key, value in env_of(box).items():
        monkeypatch.setenv(key, value)
    assert main(["history", "--env", "develop", "--json", "--repo", str(box.repos.work)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["commit"] for s in data["states"][:3]] == commits[::-1]
    assert data["states"][0]["source_commit"] == box.repos.head()
    assert main(["history", "--env", "develop", "--repo", str(box.repos.work)]) == 0
    text = capsys.readouterr().out
    assert f"{commits[2][:12]}  current" in text
    assert f"source {box.repos.head()[:12]}" in text
    # a rollback target must be a state of that environment
    before = tip(box)
    other = git(box.repos.remote, "rev-parse", "develop").strip()  # a monorepo commit
    with pytest.raises(RollbackError, match="is not a state of the stage overlay"):
        rollback(box.repos.work, environment="stage", to=commits[1], env=env_of(box))
    with pytest.raises(RollbackError, match="is not a state of the develop overlay"):
        rollback(box.repos.work, environment="develop", to=other, env=env_of(box))
    assert tip(box) == before


def test_rollback_writes_the_old_state_as_a_new_commit(
    rollback_box: tuple[Sandbox, list[str]],
) -> None:
    box, commits = rollback_box
    old = overlay(box, "develop", commits[0])
    result = rollback(box.repos.work, environment="develop", steps=2, env=env_of(box))
    assert result.commit is not None
    assert git(box.repos.remote, "rev-parse", f"{result.commit}^").strip() == commits[2]
    assert overlay(box, "develop") == old
    message = git(box.repos.remote, "log", "-1", "--format=%B", result.commit)
    assert f"Rollback-Of: {commits[2]}" in message
    assert f"Rollback-To: {commits[0]}" in message
    assert tag_digest(box, old["vote"], "latest") == old["vote"].digest, "latest follows"
    again = rollback(box.repos.work, environment="develop", to=commits[0][:10], env=env_of(box))
    assert again.commit is None, "already there: nothing to commit"


def test_promote_refuses_an_environment_that_takes_releases(release_box: Released) -> None:
    box = release_box.box
    with pytest.raises(PromotionError, match="takes versioned releases"):
        promote(box.repos.work, to="prod", env=env_of(box))


def test_a_signed_release_verifies(
    release_box: Released, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = release_box.box
    key = tmp_path / "keys" / "signing"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # (read once: TMPDIR is too late)
    copies: list[Path] = []
    commit = git_module.commit

    def commit_noting_the_key(*args: Any, **options: Any) -> str:
        copy = options.get("signing_key")
        if copy is not None:
            copies.append(copy)
            assert copy.is_file(), "the private copy exists while git signs"
        return commit(*args, **options)

    monkeypatch.setattr(git_module, "commit", commit_noting_the_key)
    env = env_of(box, CI_COMMIT_TAG="v1.0.1", HOMELAB_RELEASE_SIGNING_KEY=str(key))
    result = release(box.repos.work, env=env)
    assert result.commit is not None
    assert len(copies) == 1
    assert copies[0].parent.parent == temporary
    assert copies[0].parent.name.startswith("homelab-release-signing-")
    assert not copies[0].parent.exists(), "the private copy's folder is removed"
    assert list(temporary.iterdir()) == [], "no temporary folder is left behind"
    signers = tmp_path / "allowed_signers"
    public = key.with_suffix(".pub").read_text().strip()
    signers.write_text(f'homelab-release@localhost namespaces="git" {public}\n')
    done = subprocess.run(
        ["git", "-C", str(box.repos.remote), "-c", f"gpg.ssh.allowedSignersFile={signers}",
         "verify-commit", result.commit],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_missing_signing_key_stops_everything_first(release_box: Released) -> None:
    box = release_box.box
    before = tip(box)
    env = env_of(box, CI_COMMIT_TAG="v1.0.2", HOMELAB_RELEASE_SIGNING_KEY="/nonexistent/key")
    with pytest.raises(
        ConfigError, match="HOMELAB_RELEASE_SIGNING_KEY = '/nonexistent/key': no such"
    ):
        release(box.repos.work, env=env)
    assert tag_digest(box, overlay(box, "stage")["vote"], "1.0.2") is None
    script = box.repos.work / "worker" / "app.sh"
    script.write_text(script.read_text() + "# signed?\n")
    parent = box.repos.head()
    head = box.repos.commit("worker: change", "worker/app.sh")
    with pytest.raises(ConfigError, match="no such file"):
        build_develop(
            box.repos.work,
            env={**pipeline_env(box, before=parent, sha=head),
                 "HOMELAB_RELEASE_SIGNING_KEY": "/nonexistent/key"},
        )  # fmt: skip
    worker = ImageRef.parse(f"{images_of(box)}/worker").with_tag(head)
    assert manifest_digest(worker, box.registry.credentials) is None, "nothing was built"
    assert tip(box) == before


def test_rollback_in_merge_request_mode_pushes_a_branch(
    rollback_box: tuple[Sandbox, list[str]],
) -> None:
    box, commits = rollback_box
    git(box.repos.remote, "config", "receive.advertisePushOptions", "true")
    latest = tag_digest(box, overlay(box, "develop")["vote"], "latest")
    result = rollback(
        box.repos.work,
        environment="develop",
        steps=1,
        env=env_of(box, HOMELAB_RELEASE_WRITE="merge-request"),
    )
    assert result.published is not None
    assert result.published.merge_request
    assert result.published.branch == "homelab-release/develop"
    assert tip(box) == commits[2], "the manifests branch waits for the merge request"
    proposed = git(box.repos.remote, "rev-parse", "homelab-release/develop").strip()
    assert proposed == result.commit
    assert overlay(box, "develop", proposed) == overlay(box, "develop", commits[1])
    assert result.latest == ()
    assert tag_digest(box, overlay(box, "develop")["vote"], "latest") == latest, "not merged yet"


def test_rollback_refuses_when_an_image_is_gone(
    tmp_path: Path, docker_engine: DockerEngine, registry: LocalRegistry
) -> None:
    """Builds of its own (images under a prefix of its own): it deletes an image."""
    box, first, _ = two_builds(tmp_path, docker_engine, registry)
    old = overlay(box, "develop", first)["vote"]
    assert old.new_name
    assert old.digest
    path = ImageRef.parse(old.new_name).path
    assert path.startswith(images_of(box).split("/", 1)[1]), "an image of this test's own"
    request = urllib.request.Request(
        f"http://{box.registry.address}/v2/{path}/manifests/{old.digest}", method="DELETE"
    )
    request.add_header("Authorization", box.registry.credentials.basic_header())
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        assert answer.status == 202
    before = tip(box)
    with pytest.raises(RollbackError, match="not in the registry") as refused:
        rollback(box.repos.work, environment="develop", to=first, env=env_of(box))
    assert old.digest in str(refused.value)
    assert tip(box) == before


def test_a_release_in_merge_request_mode_pushes_a_branch_and_says_so(
    release_box: Released, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    box = release_box.box
    git(box.repos.remote, "config", "receive.advertisePushOptions", "true")
    before = tip(box)
    env = env_of(box, CI_COMMIT_TAG="v1.0.3", HOMELAB_RELEASE_WRITE="merge-request")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["release", "--repo", str(box.repos.work)]) == 0
    out = capsys.readouterr().out
    proposed = git(box.repos.remote, "rev-parse", "homelab-release/prod").strip()
    assert f"prod overlay: pushed {proposed[:12]} to homelab-release/prod (merge request)" in out
    assert "committed" not in out
    assert tip(box) == before, "the manifests branch waits for the merge request"
    assert {e.new_tag for e in overlay(box, "prod", proposed).values()} == {"1.0.3"}
    assert {e.new_tag for e in overlay(box, "prod").values()} == {"1.0.0"}


# A pipeline that lands right after the rollback's push: the remote's post-receive hook commits
# the newest vote digest again on top of the rollback (once), as a develop pipeline of a later
# commit would.
LATER_PIPELINE = """#!/bin/sh
unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
read old new ref
[ "$ref" = "refs/heads/{branch}" ] && [ ! -e "{mark}" ] || exit 0
touch "{mark}"
file=k8s/overlays/develop/kustomization.yaml
export GIT_INDEX_FILE="{mark}.index" GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@localhost
export GIT_COMMITTER_NAME=ci GIT_COMMITTER_EMAIL=ci@localhost
blob=$(git show "$new:$file" | sed "s/{old}/{new}/" | git hash-object -w --stdin)
git read-tree "$new"
git update-index --cacheinfo "100644,$blob,$file"
commit=$(git commit-tree "$(git write-tree)" -p "$new" -m "develop: update vote")
git update-ref "$ref" "$commit" "$new"
"""


def test_rollback_moves_latest_to_what_the_tip_names_after_a_later_pipeline(
    rollback_box: tuple[Sandbox, list[str]], tmp_path: Path
) -> None:
    box, commits = rollback_box
    newest = overlay(box, "develop", commits[2])["vote"]
    restored = overlay(box, "develop", commits[1])["vote"]
    assert newest.digest
    assert restored.digest
    assert newest.digest != restored.digest
    hook = box.repos.remote / "hooks" / "post-receive"
    script = LATER_PIPELINE.format(
        branch=BRANCH, mark=tmp_path / "landed", old=restored.digest, new=newest.digest
    )
    hook.write_text(script)
    hook.chmod(0o755)
    try:
        result = rollback(box.repos.work, environment="develop", steps=1, env=env_of(box))
    finally:
        hook.unlink()
    assert result.commit is not None
    assert git(box.repos.remote, "rev-parse", f"{BRANCH}^").strip() == result.commit
    assert overlay(box, "develop")["vote"].digest == newest.digest, "the later pipeline landed"
    assert tag_digest(box, newest, "latest") == newest.digest, "latest serves the tip's image"
    (vote,) = [move for move in result.latest if move.repository == newest.new_name]
    assert vote.digest == newest.digest


def test_rollback_refuses_a_state_with_an_entry_it_cannot_check(
    rollback_box: tuple[Sandbox, list[str]], tmp_path: Path
) -> None:
    """An entry without newTag or digest keeps the base's tag, which the registry cannot be
    asked about: the same refusal as in promotion and release, not a silent pass."""
    box, _ = rollback_box
    tree = tmp_path / "manifests"
    git(tmp_path, "clone", "-q", "--branch", BRANCH, str(box.repos.remote), str(tree))
    folder = tree / "k8s/overlays/develop"
    states = []
    for name in ("127.0.0.1:9/postgres", "127.0.0.1:9/postgres-next"):
        apply_overlay_entries(folder, [ImageEntry("postgres", name)])
        git(tree, "commit", "-qam", f"develop: postgres from {name}")
        states.append(git(tree, "rev-parse", "HEAD").strip())
    git(tree, "push", "-q", "origin", f"HEAD:{BRANCH}")
    with pytest.raises(RollbackError, match="entry 'postgres' cannot be checked in the registry"):
        rollback(box.repos.work, environment="develop", to=states[0], env=env_of(box))
    assert tip(box) == states[1]
