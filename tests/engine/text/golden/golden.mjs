// Reference ids and texts for tokenizer_golden (see check_tokenizers.sh).
//
//   node golden.mjs --modules NODE_MODULES_PARENT --tokenizer DIR --out FILE.jsonl
//
// Writes one JSON object per corpus string:
//   {"text", "ids" (add_special_tokens=true), "ids_plain" (false),
//    "decoded" (decode(ids), skip_special_tokens=false), "decoded_skip" (true)}
// using @huggingface/tokenizers (HF's JavaScript port of the Rust tokenizers crate).
//
// The corpus is deterministic: fixed edge cases, strings drawn from a seeded PRNG, and paragraphs
// of the Debian license texts (when installed) cut at fixed positions.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const require = createRequire(path.join(path.resolve(args.modules), "node_modules", "x.js"));
const { Tokenizer } = require("@huggingface/tokenizers");

// mulberry32: a small seeded PRNG, so every run draws the same strings.
function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeCorpus() {
  const corpus = [
    "", " ", "  ", "\n", "\r\n", "\t", " \t\n ", "a", " a", "a ", "  leading", "trailing  ",
    "Hello world", "Hello  world", "Hello\nworld", "Hello\r\nworld\r\n", "tab\tseparated\tvalues",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "v1.2.3-rc4",
    "it's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "I've", "I'VE", "I'm", "I'M", "you'll",
    "YOU'LL", "he'd", "HE'D", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏿‍💻 codes", "🇯🇵🇺🇸", "❤️", "a😀b", "😀😀😀 😀",
    "你好，世界！", "日本語のテキストです。", "한국어 텍스트", "中文 English 混合", "繁體中文測試",
    "مرحبا بالعالم", "שלום עולם", "Привет, мир!", "Ελληνικά", "हिन्दी पाठ", "ภาษาไทย",
    "e\u0301", "\u00e9", "A\u030a", "\u212b", "ﬁ ligature", "①②③", "Ｆｕｌｌｗｉｄｔｈ", "x\u0308\u0301",
    "<|im_start|>user\nHi<|im_end|>", "<|im_start|>assistant\n", "<|endoftext|>", "a<|endoftext|>b",
    "<s>", "</s>", "<s>Hello</s>", " <s> ", "<unk>", "<|begin_of_text|>Hi", "<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|im_start|><|im_end|>",
    "<tool_call>{\"a\": 1}</tool_call>", "<<s>>", "<|im_start", "im_start|>",
    "a".repeat(300), "ab".repeat(500), "supercalifragilisticexpialidocious".repeat(20),
    " ".repeat(50), "\n".repeat(20), "x" + " ".repeat(17) + "y", "-".repeat(80), "=".repeat(33),
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "C:\\Windows\\path",
    "def f(x):\n    return x ** 2\n", "if (a && b) { c(); }\n\t\treturn;", "{\"json\": [1, 2, 3]}",
    "¿Qué tal?", "naïve café", "Ångström", "straße", "ÀÉÎÕÜ", "\u00a0nbsp\u00a0", "zero\u200bwidth",
    "\u3000ideographic space", "line\u2028sep", "mixed 123abc456 def", "$100.00 €50 £20 ¥1000",
  ];
  const rand = mulberry32(20260514);
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const atoms = [
    "the", "The", "quick", "brown", "fox", " ", "  ", "\n", "\t", "\r\n", ",", ".", "!", "?", "'s",
    "'T", "'re", "'VE", "'m", "'LL", "'d", "123", "4", "56789", "😀", "👍🏽", "👨‍👩‍👧", "你好", "世界",
    "日本", "مرحبا", "e\u0301", "ñ", "Ω", "∑", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>",
    "</s>", "<|begin_of_text|>", "<|eot_id|>", "(", ")", "[", "]", "{", "}", "\"", "'", "-", "_",
    "/", "\\", "#", "@", "*", "+", "=", "::", "->", "...", "—", "…", "ℕ", "ﬀ", "🇫🇷", "x",
    "ABC", "camelCase", "snake_case", "0x1F", "\u00a0", "\u3000",
  ];
  for (let i = 0; i < 1500; ++i) {
    const n = 1 + Math.floor(rand() * 12);
    let s = "";
    for (let k = 0; k < n; ++k) s += pick(atoms);
    corpus.push(s);
  }
  // Random code points from several blocks (no surrogates: the text must be valid UTF-8).
  const blocks = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff],
                  [0x900, 0x97f], [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3],
                  [0x1f300, 0x1faff], [0x2000, 0x206f], [0x300, 0x36f]];
  for (let i = 0; i < 300; ++i) {
    const n = 1 + Math.floor(rand() * 20);
    let s = "";
    for (let k = 0; k < n; ++k) {
      const [lo, hi] = pick(blocks);
      s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
    }
    corpus.push(s);
  }
  // Natural English: license texts cut into paragraphs and windows.
  for (const file of ["GPL-3", "Apache-2.0", "GPL-2", "LGPL-2.1", "Artistic", "BSD"]) {
    const p = path.join("/usr/share/common-licenses", file);
    if (!fs.existsSync(p)) continue;
    const text = fs.readFileSync(p, "utf8");
    const paragraphs = text.split(/\n\s*\n/).filter((x) => x.trim().length > 0);
    for (let i = 0; i < paragraphs.length && i < 120; ++i) corpus.push(paragraphs[i]);
    for (let off = 0; off + 2000 < text.length && off < 40000; off += 4000) {
      corpus.push(text.slice(off, off + 2000));
    }
  }
  while (corpus.length < 2200) corpus.push(`filler ${corpus.length} text`);
  return corpus;
}

if (args.out) {
  const dir = path.resolve(args.tokenizer);
  const tok = new Tokenizer(
    JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  const lines = [];
  for (const text of makeCorpus()) {
    const ids = tok.encode(text, { add_special_tokens: true }).ids;
    const idsPlain = tok.encode(text, { add_special_tokens: false }).ids;
    lines.push(JSON.stringify({
      text, ids, ids_plain: idsPlain,
      // The JS port refuses an empty list; the crate returns "".
      decoded: ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "",
      decoded_skip: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "",
    }));
  }
  fs.writeFileSync(args.out, lines.join("\n") + "\n");
  console.log(`golden.mjs: ${lines.length} strings -> ${args.out}`);
}
