#!/usr/bin/env bash
# Sets up the machine, then starts the Warren server on its embedded defaults
# (127.0.0.1:8080, data in /var/lib/warren, cache in /var/cache/warren).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\n==> starting the server (first start builds the templates; later starts use the cache)\n' >&2
exec node --import tsx packages/server/src/main.ts
