"""check_entries: the one registry check of promotion, release and rollback (the lookups here
are tables; the real registry answers in test_workflows.py and test_releases.py)."""

from __future__ import annotations

import pytest

from homelab_release.entries import ImageEntry
from homelab_release.errors import PromotionError, RegistryError, RollbackError
from homelab_release.images import ImageRef
from homelab_release.registrycheck import check_entries

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64
PRESENT = {f"reg.example/vote@{SHA_A}": SHA_A, "reg.example/result:r1": SHA_B}


def lookup(reference: ImageRef) -> str | None:
    """The registry as a table: tag references by name, digest references by repository@digest."""
    key = f"{reference.repository}@{reference.digest}" if reference.digest else str(reference)
    return PRESENT.get(key)


VOTE = ImageEntry("vote", "reg.example/vote", "v1", SHA_A)
RESULT = ImageEntry("result", "reg.example/result", "r1")
GONE = ImageEntry("worker", "reg.example/worker", "w1")
BASE_TAG = ImageEntry("db", "reg.example/db")
SUFFIX = ImageEntry("cache", None, tag_suffix="-debug")


def test_found_entries_give_their_digests() -> None:
    check = check_entries((VOTE, RESULT), lookup, doing="promoting", error=PromotionError)
    assert check.digests == {"vote": SHA_A, "result": SHA_B}
    assert (check.missing, check.unverifiable, check.problem) == ((), (), "")


def test_one_problem_names_every_missing_and_unverifiable_entry() -> None:
    entries = (VOTE, GONE, BASE_TAG, SUFFIX)
    check = check_entries(entries, lookup, doing="rolling back", error=RollbackError)
    assert check.missing == ("reg.example/worker:w1",)
    assert check.unverifiable == (BASE_TAG, SUFFIX)
    assert check.problem.startswith("these images are not in the registry: reg.example/worker:w1")
    assert "image entry 'db' cannot be checked in the registry: it keeps the tag" in check.problem
    assert (
        "entry 'cache' cannot be checked in the registry: its tagSuffix '-debug'" in check.problem
    )


@pytest.mark.parametrize("error", [PromotionError, RollbackError])
def test_a_registry_that_cannot_be_asked_is_the_callers_error(
    error: type[PromotionError],
) -> None:
    def unreachable(reference: ImageRef) -> str | None:
        raise RegistryError("registry reg.example is not reachable")

    with pytest.raises(error, match=r"cannot verify reg\.example/vote:v1@.* before rolling back"):
        check_entries((VOTE,), unreachable, doing="rolling back", error=error)
