#!/usr/bin/env bash
# Install everything procjob's tests, demo and benchmarks need, idempotently:
# Debian packages, a Python virtualenv (.venv) with the package and its dev tools, and the rig's
# Go builds (cached outside the repo, see hack/rig/build.sh). Safe to run again: each step checks
# before it installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
# The real node (make node-up, make image): containerd + runc + CNI plugins, iptables for its DNAT,
# socat for its API forwarder, buildah + debootstrap for images without a registry, gcc for pause.
apt_pkgs=(postgresql-15 postgresql-client-15 ca-certificates
  containerd runc containernetworking-plugins iptables socat buildah debootstrap gcc libc6-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts a system cluster on install; procjob's tests make their own throw-away ones.
else
  step "apt: ${apt_pkgs[*]} already installed"
fi
command -v go >/dev/null || { echo "setup: Go is not installed (Go >= 1.26 is needed for the rig)" >&2; exit 1; }

# --- Python ------------------------------------------------------------------------------------
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python >= 3.11 is needed (found $("$py" --version 2>&1))" >&2; exit 1; }
stamp=.venv/.procjob-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  step "python: creating .venv"
  "$py" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "python: installing procjob and its dev tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
else
  step "python: .venv up to date"
fi

# --- Go builds for the rig --------------------------------------------------------------------
step "rig: Go builds (cached; a cold build takes many minutes)"
hack/rig/build.sh
