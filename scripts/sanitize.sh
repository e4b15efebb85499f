#!/usr/bin/env bash
# The clang builds .ci/run adds to the Release test run (scripts/test.sh), in build-asan/:
#   1. ASan + UBSan (-O1) build of the unit tests of base/, cache/ and engine/ and of the libFuzzer
#      targets; under clang, kvserve_strict_warnings adds -Wthread-safety to -Werror, so this build
#      also enforces the ABSL_GUARDED_BY annotations of everything it compiles;
#   2. the same -Wthread-safety check, compile only (-fsyntax-only), of server/ and tools/, whose
#      tests are not run under ASan (see docs/testing.md for why and for the time budget);
#   3. those unit tests under ASan + UBSan (ctest label `unit`, excluding the npm golden checks);
#   4. scripts/fuzz.sh: the corpora and saved crashes replayed, then a fixed-seed fuzz of each
#      target.
# TSan is not run: Debian's gRPC and Abseil are not built with it (docs/testing.md).
#   scripts/sanitize.sh [build|thread-safety|test|fuzz]...     (default: all four, in that order)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build test sanitize
jobs=${KVSERVE_JOBS:-$(nproc)}
dir=build-asan

steps=("$@")
((${#steps[@]} > 0)) || steps=(build thread-safety test fuzz)

# The unit-test executables of the modules below server/ (tests/CMakeLists.txt globs them).
unit_tests() {
  local f
  for f in tests/base/*_test.cc tests/cache/*_test.cc tests/engine/*_test.cc \
           tests/engine/*/*_test.cc; do
    basename "$f" .cc
  done
}

configure() {
  # -O1: ASan's recommended level (usable speed, accurate stacks); line tables for symbolized
  # reports at a fraction of -g's compile time.
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Sanitize \
    -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -gline-tables-only" \
    -DKVSERVE_SANITIZE=ON -DKVSERVE_FUZZ=ON >/dev/null
}

for step in "${steps[@]}"; do
  case "$step" in
    build)
      configure
      targets=()
      for t in $(unit_tests) safetensors_header_fuzz model_config_fuzz tokenizer_json_fuzz \
               chat_template_fuzz utf8_stream_fuzz stop_matcher_fuzz proto_request_fuzz; do
        targets+=(--target "$t")
      done
      cmake --build "$dir" -j "$jobs" "${targets[@]}"
      ;;
    thread-safety)
      configure
      # The generated protobuf headers server/ includes (the build step makes them too).
      ninja -C "$dir" proto/kvserve/v1/kvserve.pb.h proto/kvserve/v1/kvserve.grpc.pb.h \
        proto/grpc/health/v1/health.pb.h proto/grpc/health/v1/health.grpc.pb.h >/dev/null
      # Every server/ and tools/ translation unit, as the build would compile it, without codegen.
      /usr/bin/python3 - "$dir" "$jobs" <<'PY'
import json, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
build, jobs = sys.argv[1], int(sys.argv[2])
units = [u for u in json.load(open(f"{build}/compile_commands.json"))
         if "/server/" in u["file"] or "/tools/" in u["file"]]
def check(u):
    args = [a for a in shlex.split(u["command"]) if not a.startswith("-fsanitize")]
    if args[0].endswith("ccache"): args = args[1:]
    out = args.index("-o"); del args[out:out + 2]
    return subprocess.run(args + ["-fsyntax-only"], cwd=u["directory"],
                          capture_output=True, text=True)
failed = 0
with ThreadPoolExecutor(jobs) as pool:
    for u, r in zip(units, pool.map(check, units)):
        if r.returncode != 0:
            failed += 1
            sys.stderr.write(f"--- {u['file']}\n{r.stderr}")
print(f"thread-safety: {len(units) - failed}/{len(units)} server/ and tools/ files clean")
sys.exit(1 if failed else 0)
PY
      ;;
    test)
      # halt_on_error: the first report fails the test; detect_leaks stays on (LeakSanitizer).
      export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
      export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
      export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
      # The tests of the unit-test executables only: ctest -L unit also holds script checks that
      # need the Release build.
      ctest --test-dir "$dir" -L unit -E 'golden|deploy|observability|docs_|layering' \
        --output-on-failure -j "${KVSERVE_TEST_JOBS:-2}" --timeout 900
      ;;
    fuzz)
      scripts/fuzz.sh "$dir"
      ;;
    *)
      echo "sanitize.sh: unknown step '$step' (build, thread-safety, test, fuzz)" >&2
      exit 2
      ;;
  esac
done
