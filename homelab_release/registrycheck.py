"""Which image entries the registry has: the one check promotion, release and rollback make
before they write an overlay (the manifests branch never names an image the registry lacks).

An entry is looked up by :attr:`ImageEntry.image <homelab_release.entries.ImageEntry.image>`
(its digest when it has one, else its ``newTag``). An entry that names neither keeps the tag of
the base's image, which the overlay does not say: it cannot be looked up, and that refuses the
write as a missing image does. :func:`check_entries` asks about every entry and
:attr:`RegistryCheck.problem` words all that is wrong in one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from homelab_release.entries import ImageEntry
from homelab_release.errors import ReleaseError
from homelab_release.images import ImageRef
from homelab_release.registry import manifest_digest
from homelab_release.secrets import RegistryCredentials

__all__ = ["DigestLookup", "RegistryCheck", "check_entries", "registry_lookup"]

#: An image reference -> the digest the registry serves for it, None when it has none; raises
#: a :class:`ReleaseError` when the registry cannot be asked.
DigestLookup = Callable[[ImageRef], str | None]


def registry_lookup(
    credentials: RegistryCredentials | None, insecure: Iterable[str] = ()
) -> DigestLookup:
    """The lookup of the real registry, with ``credentials`` (None: anonymous)."""
    insecure = tuple(insecure)

    def lookup(reference: ImageRef) -> str | None:
        return manifest_digest(reference, credentials, insecure=insecure)

    return lookup


@dataclass(frozen=True)
class RegistryCheck:
    """What the registry said about some entries: each found one's digest (by entry name), the
    references it lacks, and the entries that name no tag or digest to look up."""

    digests: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    unverifiable: tuple[ImageEntry, ...] = ()

    @property
    def problem(self) -> str:
        """Why the entries cannot be written, '' when every one is in the registry."""
        parts = []
        if self.missing:
            parts.append("these images are not in the registry: " + ", ".join(self.missing))
        parts.extend(
            f"image entry {entry.name!r} cannot be checked in the registry: {_untagged(entry)}, "
            "which the overlay does not name (set newTag or digest in the entry)"
            for entry in self.unverifiable
        )
        return "; ".join(parts)


def check_entries(
    entries: Sequence[ImageEntry],
    lookup: DigestLookup,
    *,
    doing: str,
    error: type[ReleaseError],
) -> RegistryCheck:
    """Ask ``lookup`` about the image of every entry (names are unique: one entry per name).

    A registry that cannot be asked raises ``error`` ("cannot verify REF before ``doing``").
    """
    digests: dict[str, str] = {}
    missing: list[str] = []
    unverifiable: list[ImageEntry] = []
    for entry in entries:
        reference = entry.image
        if reference is None:
            unverifiable.append(entry)
            continue
        try:
            digest = lookup(reference)
        except ReleaseError as err:
            raise error(f"cannot verify {reference} before {doing}: {err}") from err
        if digest is None:
            missing.append(str(reference))
        else:
            digests[entry.name] = digest
    return RegistryCheck(digests, tuple(missing), tuple(unverifiable))


def _untagged(entry: ImageEntry) -> str:
    if entry.tag_suffix:
        return f"its tagSuffix {entry.tag_suffix!r} extends the tag of the base's image"
    return "it keeps the tag of the base's image"
