#!/usr/bin/env bash
# Configures and builds kvserve in build/ (Release, ccache when present).
#   scripts/build.sh [cmake --build targets...]      (default: everything)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build test
jobs=${KVSERVE_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
if (($# > 0)); then
  targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build build -j "$jobs" "${targets[@]}"
else
  cmake --build build -j "$jobs"
fi
