#!/bin/sh
# The run benchmark (berth run vs ctr run), under the shared bench lock so it
# never overlaps another benchmark:  test/bench/run/run.sh [--rounds N] [--containers N] [--true-runs N] [--json FILE]
set -eu
cd "$(dirname "$0")/../../.."
exec flock /tmp/berth-bench.lock npm run bench:run -- "$@"
