"""What the commands print for people: snapshots of the summaries built from result values."""

from __future__ import annotations

from pathlib import Path

from homelab_release.build import BuildDurations
from homelab_release.changes import ChangeSet
from homelab_release.commands.build_develop import short_reference, summary
from homelab_release.develop import BuildDevelopResult, ServiceBuild
from homelab_release.gitops import Published

SHA = "8a9d7e3c4b21" + "0" * 28
DIGEST = "sha256:1244" + "f" * 60
REPO = "registry.gitlab.com/homelab/go/vote"


def test_short_reference_cuts_the_commit_and_the_digest() -> None:
    assert short_reference(REPO, SHA, DIGEST) == f"{REPO}:8a9d7e3c4b21…@sha256:1244…"
    assert short_reference(REPO, "v1.4.0", DIGEST) == f"{REPO}:v1.4.0@sha256:1244…"


def test_build_develop_summary_fits_a_job_log() -> None:
    changes = ChangeSet("b" * 40, SHA, ("vote/app.sh",), ("vote", "worker"), "push pipeline: ...")
    phases = BuildDurations(cache_pull=0.2, build=2.3, push=0.4, verify=0.1)
    builds = (
        ServiceBuild("vote", REPO, SHA, ok=True, digest=DIGEST, seconds=3.0, durations=phases),
        ServiceBuild("worker", REPO, SHA, ok=False, error="building failed: exit 3\nlog"),
    )
    result = BuildDevelopResult(
        "develop",
        changes,
        SHA,
        builds,
        None,
        Published("f4320264" * 5, 1),
        reports=(Path("build.env"),),
    )
    assert summary(result).splitlines() == [
        "changes: push pipeline: ...",
        "SERVICE  RESULT  IMAGE                                                           BUILD  PUSH",
        f"vote     built   {REPO}:8a9d7e3c4b21…@sha256:1244…  2.5s   0.5s",
        "worker   FAILED  building failed: exit 3                                         0.0s   -",
        "develop overlay: committed f4320264f432",
        "report: build.env",
    ]
    assert max(len(line) for line in summary(result).splitlines()) < 100
