#!/usr/bin/env bash
# The demo: builds images from busybox-static in code, starts a local
# registry, pulls and unpacks them with berth, runs containers (runc under
# conmon), exports and imports. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
node dist/scripts/demo.js "$@"
