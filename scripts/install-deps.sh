#!/usr/bin/env bash
# Installs the Debian 12 packages kvserve needs, only those that are missing. Idempotent.
#
#   scripts/install-deps.sh [build] [test] [sanitize] [python] [runtime] [image] [bench] [train]
#                                                                            (default: build)
#
#   build    compilers, CMake, gRPC/protobuf, oneDNN, Abseil, nlohmann-json, prometheus-cpp, FFTW
#            (S4 convolution), PCRE2 and ICU (tokenizer.json), cpp-httplib (the OpenAI HTTP API
#            and /metrics) and OpenSSL (their TLS): what `kvserve` needs
#   test     GoogleTest/GMock, Google Benchmark, promtool (in Debian's prometheus package),
#            yamllint (tests/deploy/check_manifests.sh), python3 (tests/docs/check_citations.py),
#            openssl (tests/server/tls_test.cc makes its certificates)
#   sanitize clang 14 and its sanitizer runtimes (ASan, UBSan, TSan)
#   python   Debian's PyTorch/numpy/grpcio for tools/reference/ (run with /usr/bin/python3)
#   runtime  shared libraries only, for the container's final stage
#   image    podman, runc and mmdebstrap: build and run the image without a Docker engine
#            (scripts/image-test.sh)
#   bench    gnuplot (no X11) for kvserve-bench --sweep's throughput-vs-latency PNG
#   train    the text the shipped models are trained on (fortunes, fortunes-min), the word list
#            tools/train/english_check.py reads (wamerican) and gnuplot for docs/quality.md's plot;
#            with the python group, everything tools/train/ needs
# Used by scripts/serve.sh, scripts/test.sh and the Dockerfile.
set -euo pipefail

declare -A groups=(
  [build]="g++ cmake ninja-build ccache pkg-config git libgrpc++-dev protobuf-compiler-grpc
           libprotobuf-dev protobuf-compiler grpc-proto libdnnl-dev libabsl-dev nlohmann-json3-dev
           prometheus-cpp-dev libfftw3-dev libpcre2-dev libicu-dev libcpp-httplib-dev libssl-dev"
  [test]="libgtest-dev libgmock-dev libbenchmark-dev prometheus yamllint python3 openssl"
  [sanitize]="clang-14 libclang-rt-14-dev"
  [image]="podman runc mmdebstrap"
  [bench]="gnuplot-nox"
  [train]="fortunes fortunes-min wamerican gnuplot-nox"
  [python]="python3-torch python3-numpy python3-grpcio python3-protobuf libopenblas0-pthread"
  [runtime]="libgrpc++1.51 libgrpc29 libprotobuf32 libdnnl2 libabsl20220623 libgomp1
             libprometheus-cpp-core1.0 libfftw3-double3 libpcre2-8-0 libicu72 libcpp-httplib0.11
             libssl3"
)

wanted=()
for group in "${@:-build}"; do
  [[ -n "${groups[$group]+x}" ]] || { echo "install-deps: unknown group '$group'" >&2; exit 2; }
  wanted+=(${groups[$group]})
done

# The manifest schema check (tests/deploy) needs Node.js and npm. Machines that already have them
# (e.g. from NodeSource, whose nodejs bundles npm) must not get Debian's npm, which conflicts.
for group in "${@:-build}"; do
  if [[ "$group" == test ]] && ! command -v npm >/dev/null; then
    wanted+=(nodejs npm)
  fi
done

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
