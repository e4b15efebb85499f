#!/usr/bin/env bash
# README command 1: install what is missing, build in Release, start kvserve on 127.0.0.1:50051.
# Extra arguments go to kvserve (e.g. --model=DIR); see `build/server/kvserve --help`. With no
# --model it serves models/default when the tree has one, else the embedded random model (README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh kvserve kvserve-cli
echo "kvserve: in another terminal try: build/tools/cli/kvserve-cli generate --prompt \"The best way to learn is\" --max-tokens 48" >&2
# kvserve's own matmul workers bound their spinning; oneDNN's OpenMP workers (used only with
# --nobatch-invariant) would spin and stall the engine on a shared machine, so they sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec build/server/kvserve --listen=127.0.0.1:50051 "$@"
