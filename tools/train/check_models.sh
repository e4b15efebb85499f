#!/usr/bin/env bash
# Serves each trained model with kvserve and checks that a greedy 200-token continuation is
# English-like: at least 90 % of its words are in Debian wamerican's list (tools/train/english_check.py).
#
#   tools/train/check_models.sh [BUILD_DIR] [MODEL_DIR...]   (default: build, models/fortune-*/)
#
# REQUIRES: BUILD_DIR/server/kvserve and BUILD_DIR/tools/cli/kvserve-cli built; /usr/bin/python3;
# the wamerican package. Each model is served alone on 127.0.0.1 with a free port (port 0; the port
# is read from kvserve's "listening on" log line), metrics and HTTP off. Prints, per model, the kvserve
# load line (KV bytes per token), the sample and the checker's verdict; exits 1 if any model fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
cd "$root"
shift || true
prompt=${KVSERVE_CHECK_PROMPT:-"The meaning of life is"}
dirs=("$@")
((${#dirs[@]})) || dirs=("$root"/models/fortune-*/)
status=0
server=""
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null' EXIT
for dir in "${dirs[@]}"; do
  dir=${dir%/}
  log=$(mktemp "${TMPDIR:-/tmp}/kvserve-check.XXXXXX")
  "$build/server/kvserve" --model="$dir" --listen=127.0.0.1:0 --metrics-address= --http-address= \
    2>"$log" &
  server=$!
  port=""
  for _ in $(seq 600); do
    port=$(sed -n 's/.*kvserve listening on .* (port \([0-9]*\)).*/\1/p' "$log")
    [[ -n "$port" ]] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$port" ]]; then
    echo "check_models: FAIL: $dir: kvserve did not start:" >&2
    cat "$log" >&2
    kill "$server" 2>/dev/null || true
    status=1
    continue
  fi
  echo "== $dir"
  grep -o "model '.*" "$log" | head -1
  if sample=$("$build/tools/cli/kvserve-cli" generate --target="127.0.0.1:$port" \
                --prompt "$prompt" --max-tokens 200 --temperature 0 --ignore-eos); then
    printf '%s%s\n' "$prompt" "$sample"
    /usr/bin/python3 -m tools.train.english_check --min 0.9 <<<"$sample" || status=1
  else
    echo "check_models: FAIL: $dir: generate failed" >&2
    status=1
  fi
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -f "$log"
done
exit $status
