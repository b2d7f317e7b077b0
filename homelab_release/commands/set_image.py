"""``homelab-release set-image``: ``kustomize edit set image`` that keeps the file as it was."""

from __future__ import annotations

import argparse

from homelab_release.images import SPEC_FORMS
from homelab_release.overlay import OverlayEdit, first_by_name, set_overlay_image

__all__ = ["register", "run", "summary"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "set-image",
        help="set images in a kustomization like 'kustomize edit set image', keeping its comments",
        description="Set images in an overlay's kustomization with the arguments and results of "
        "'kustomize edit set image' (v5); only the lines of the entries that change are touched. "
        f"SPEC forms: {', '.join(SPEC_FORMS)}; '*' keeps a field's current value.",
    )
    parser.add_argument(
        "--overlay", default=".", help="the overlay folder or its kustomization file (default: .)"
    )
    parser.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    parser.add_argument("--diff", action="store_true", help="print the unified diff too")
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="e.g. vote=registry/vote:v2")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    edit = set_overlay_image(args.overlay, *args.specs, dry_run=args.dry_run)
    print(summary(edit, show_diff=args.diff or args.dry_run, dry_run=args.dry_run))
    return 0


def summary(edit: OverlayEdit, *, show_diff: bool = False, dry_run: bool = False) -> str:
    """One line per entry whose lines change (``name: old -> new``), then the diff if asked."""
    if not edit.changed:
        return f"{edit.path}: unchanged"
    old, new = first_by_name(edit.before), first_by_name(edit.after)
    lines = [f"{edit.path}:" + (" (dry run, nothing written)" if dry_run else "")]
    for name in sorted(edit.edited):
        before = old[name].reference if name in old else "(new)"
        after = new[name].reference if name in new else "(removed)"
        lines.append(f"  {name}: {before} -> {after}")
    if show_diff:
        lines.append(edit.diff.rstrip("\n"))
    return "\n".join(lines)
