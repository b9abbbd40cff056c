#!/usr/bin/env bash
# Runs berth's whole test suite (unit, conformance, integration against a real
# registry), installing what it needs first. Tests need root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
