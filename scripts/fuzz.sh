#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ built in BUILD_DIR (scripts/sanitize.sh build):
#   1. replays every seed input (tests/fuzz/corpus/<target>/) and every saved crash input
#      (tests/fuzz/crashes/<target>/): each must now pass;
#   2. fuzzes each target from its corpus with a fixed -seed and -runs, so a run is repeatable.
#      New corpus entries go to a scratch directory, not the repository. A crash is written to
#      tests/fuzz/crashes/<target>/ -- commit it with the fix, so step 1 replays it from then on.
#   scripts/fuzz.sh [BUILD_DIR] [TARGET...]        (default: build-asan, every target)
#   KVSERVE_FUZZ_RUNS (default 20000) and KVSERVE_FUZZ_SEED (default 1) set step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$f" _fuzz.cc)"); done
fi
runs=${KVSERVE_FUZZ_RUNS:-20000}
seed=${KVSERVE_FUZZ_SEED:-1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for t in "${targets[@]}"; do
  bin="$dir/tests/fuzz/${t}_fuzz"
  [[ -x "$bin" ]] || { echo "fuzz.sh: $bin not built (scripts/sanitize.sh build)" >&2; exit 1; }
  corpus=tests/fuzz/corpus/$t
  crashes=tests/fuzz/crashes/$t
  mkdir -p "$crashes"
  inputs=("$corpus"/* )
  [[ -e "${inputs[0]}" ]] || { echo "fuzz.sh: $corpus is empty" >&2; exit 1; }
  saved=()
  for f in "$crashes"/*; do [[ -e "$f" ]] && saved+=("$f"); done
  echo "== $t: replaying ${#inputs[@]} seed and ${#saved[@]} saved crash inputs"
  "$bin" "${inputs[@]}" "${saved[@]}" >"$scratch/$t.replay.log" 2>&1 ||
    { cat "$scratch/$t.replay.log" >&2; echo "fuzz.sh: $t fails on a committed input" >&2; exit 1; }
  echo "== $t: fuzzing, -seed=$seed -runs=$runs"
  mkdir -p "$scratch/$t"
  # -timeout: an input that takes 10 s is a hang, reported like a crash. -rss_limit_mb bounds
  # memory per input as the servers must (a loader that allocates on the input's say-so fails).
  if ! "$bin" -seed="$seed" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$crashes/" -print_final_stats=1 "$scratch/$t" "$corpus" \
       >"$scratch/$t.fuzz.log" 2>&1; then
    tail -50 "$scratch/$t.fuzz.log" >&2
    echo "fuzz.sh: $t crashed; the input is in $crashes/ -- fix the bug and commit it" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^Done' "$scratch/$t.fuzz.log" | tr '\n' ' ' || true
  echo
done
echo "fuzz.sh: ${#targets[@]} targets clean"
