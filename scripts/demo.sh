#!/usr/bin/env bash
# The demo: builds an image from busybox-static in code, starts a local
# registry, pulls the image with berth and lists it. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p .
node dist/scripts/demo.js "$@"
