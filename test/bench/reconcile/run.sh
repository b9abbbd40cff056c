#!/bin/sh
# The reconcile benchmark (plan with nothing to do; edit to running under the daemon),
# under the shared bench lock so it never overlaps another benchmark:
#   test/bench/reconcile/run.sh [--rounds N] [--containers N] [--runs N] [--edits N] [--json FILE]
set -eu
cd "$(dirname "$0")/../../.."
exec flock /tmp/berth-bench.lock npm run bench:reconcile -- "$@"
