#!/usr/bin/env bash
# README command 1: install what is missing, build in Release, start kvserve on 127.0.0.1:50051.
# Extra arguments go to kvserve (e.g. --model=DIR); see `build/server/kvserve --help`. With no
# --model it serves models/default when the tree has one, else the embedded random model (README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh kvserve kvserve-cli
echo "kvserve: in another terminal try: build/tools/cli/kvserve-cli generate --prompt \"Once upon a time\" --max-tokens 32" >&2
# Idle OpenMP workers sleep instead of spinning: on a shared or busy machine spinning workers stall
# the engine for seconds (see docs/benchmarks.md). Set OMP_WAIT_POLICY=ACTIVE on dedicated cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec build/server/kvserve --listen=127.0.0.1:50051 "$@"
