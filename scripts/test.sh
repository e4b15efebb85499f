#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, build everything, run the default tests
# (ctest labels `unit` and `integration`; `load` runs are separate).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
# Tests run two at a time on CI's two cores; oneDNN's spinning OpenMP workers would then starve
# each other (a 10-50x slowdown), so they sleep instead (kvserve's own kernel workers bound their
# spinning anyway, engine/kernels/thread_pool.h).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --test-dir build -L 'unit|integration' --output-on-failure -j "${KVSERVE_TEST_JOBS:-2}" "$@"
