#!/usr/bin/env bash
# The OpenAI-compatible HTTP API driven by the official `openai` npm client (ctest `openai_client`,
# label integration):
#   1. npm ci the pinned client (package.json + package-lock.json here) into
#      BUILD_DIR/npm-openai-client, only when the lockfile changed; never into the repository;
#   2. start BUILD_DIR/server/kvserve (embedded model) with gRPC, metrics and HTTP on free ports;
#   3. client.mjs runs completions and chat, streaming and not, n > 1, logprobs, stop, a client-side
#      abort that must free the cache, and every error class, against it.
# Exit codes: 0 pass, 1 failure, 77 skipped (no node/npm, or the registry is unreachable); ctest
# reports 77 as SKIPPED, never as passed.
#
#   tests/server/openai_client/check_openai_client.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
[[ $# -ge 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
npm_dir="$build/npm-openai-client"
server="$build/server/kvserve"

fail() {
  echo "check_openai_client: FAIL: $*" >&2
  exit 1
}

[[ -x "$server" ]] || fail "$server not built"
"$root/tests/testing/npm_ci_pinned.sh" "$here" "$npm_dir" check_openai_client || exit $?

log=$(mktemp "${TMPDIR:-/tmp}/kvserve-openai-client.XXXXXX")
# --model= pins the embedded model (client.mjs names it and relies on its lack of a chat template),
# whatever default model directory the build tree holds (models/default).
OMP_WAIT_POLICY=PASSIVE "$server" --listen=127.0.0.1:0 --metrics-address=127.0.0.1:0 \
  --http-address=127.0.0.1:0 --threads=1 --model= 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
# Bounded wait for the start-up lines (the model is embedded: it loads in well under a second).
http_port="" metrics_port=""
for _ in $(seq 1 600); do
  http_port=$(sed -n 's/.*OpenAI-compatible HTTP API on .* (port \([0-9]*\)).*/\1/p' "$log")
  metrics_port=$(sed -n 's|.*metrics on http://.*:\([0-9]*\)/metrics.*|\1|p' "$log")
  [[ -n "$http_port" && -n "$metrics_port" ]] && break
  kill -0 "$pid" 2>/dev/null || fail "kvserve exited: $(cat "$log")"
  sleep 0.1
done
[[ -n "$http_port" ]] || fail "kvserve printed no HTTP port: $(cat "$log")"

node "$here/client.mjs" --modules "$npm_dir" --base-url "http://127.0.0.1:$http_port/v1" \
  --metrics-url "http://127.0.0.1:$metrics_port/metrics" || fail "client.mjs (see above)"
kill -TERM "$pid"
wait "$pid" || fail "kvserve did not exit 0 after SIGTERM: $(cat "$log")"
trap 'rm -f "$log"' EXIT
echo "check_openai_client: PASS"
