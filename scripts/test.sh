#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, build everything, run the default tests
# (ctest labels `unit` and `integration`; `load` runs are separate).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build -L 'unit|integration' --output-on-failure -j "${KVSERVE_TEST_JOBS:-2}" "$@"
