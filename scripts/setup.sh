#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Warren: Debian packages, npm
# dependencies and the agent bundle. Idempotent; prints each step.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "warren setup must run as root (it installs packages and creates namespaces, cgroups, mounts)" >&2
  exit 1
fi

# Debian packages the server needs on the host.
# tmux, docker-registry, skopeo, umoci and busybox-static are for the test suite (terminal CLI
# tests, a local OCI registry and test images); the server itself does not call them.
# python3 runs the server's host-command spawner (packages/server/native/warren-spawner.py).
packages=(crun mmdebstrap nftables iproute2 util-linux mount patchelf gcc libc6-dev ca-certificates python3
  tmux docker-registry skopeo umoci busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
step "[1/3] Debian packages: ${packages[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "all present" >&2
fi

step "[2/3] npm dependencies"
stamp=node_modules/.warren-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
else
  echo "up to date" >&2
fi

step "[3/3] agent bundle"
node packages/agent/build.mjs
echo "templates are built (and cached under \${WARREN_CACHE_DIR:-/var/cache/warren}) when the server starts" >&2
