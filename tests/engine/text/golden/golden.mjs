// Reference ids and texts for tokenizer_golden (see check_tokenizers.sh).
//
//   node golden.mjs --modules NODE_MODULES_PARENT --tokenizer DIR --out FILE.jsonl
//   node golden.mjs --variant NAME --from DIR --to OUT_DIR
//
// The first form writes one JSON object per corpus string:
//   {"text", "ids" (add_special_tokens=true), "ids_plain" (false),
//    "decoded" (decode(ids), skip_special_tokens=false), "decoded_skip" (true),
//    "exclude" (optional: {"<check>": "<named difference>"})}
// using @huggingface/tokenizers (HF's JavaScript port of the Rust tokenizers crate).
//
// The second form writes a variant of a real tokenizer whose pipeline uses components the four
// real files do not (Metaspace, Digits, NFKC, regex Replace, ByteLevel with its own regex), so that
// they are compared with the reference too.
//
// Named differences where the JS port departs from the Rust crate; the checker skips the named
// check and counts it (it follows the crate, see hf_pre_tokenizer.h / hf_decoder.h):
//   digits-non-ascii: JS Digits splits on ASCII \d only; the crate on every char::is_numeric
//     (Unicode N: "५", "٤", "①"). Strings with a non-ASCII numeric character skip all checks.
//   metaspace-first-token: the JS Metaspace decoder removes one leading space of the first token;
//     the crate removes every replacement character of the first token. Decodes whose first token
//     holds two or more replacement characters skip that decode check.
//
// The corpus is deterministic: fixed edge cases, strings drawn from a seeded PRNG, and paragraphs
// of the Debian license texts (when installed) cut at fixed positions.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));

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

const kMeta = "\u2581";
const variants = {
  // SentencePiece-style without the normalizer: what newer Llama/Mistral files (legacy=false) use.
  "metaspace": (t) => {
    t.normalizer = null;
    t.pre_tokenizer = { type: "Metaspace", replacement: kMeta, prepend_scheme: "first", split: false };
    t.decoder = { type: "Sequence", decoders: [
      { type: "Metaspace", replacement: kMeta, prepend_scheme: "first", split: false },
      { type: "ByteFallback" }, { type: "Fuse" }] };
  },
  // Byte-level with NFKC, whitespace squeezing, isolated digits and GPT-2's own regex.
  "bytelevel-digits": (t) => {
    t.normalizer = { type: "Sequence", normalizers: [
      { type: "NFKC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }] };
    t.pre_tokenizer = { type: "Sequence", pretokenizers: [
      { type: "Digits", individual_digits: true },
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true }] };
  },
};

if (args.variant) {
  const from = path.resolve(args.from);
  const t = JSON.parse(fs.readFileSync(path.join(from, "tokenizer.json"), "utf8"));
  if (!variants[args.variant]) throw new Error(`unknown variant ${args.variant}`);
  variants[args.variant](t);
  fs.mkdirSync(args.to, { recursive: true });
  fs.writeFileSync(path.join(args.to, "tokenizer.json"), JSON.stringify(t));
  fs.copyFileSync(path.join(from, "tokenizer_config.json"), path.join(args.to, "tokenizer_config.json"));
}

// The named differences (see the top of this file) that apply to one string.
function exclusions(tok, config, text, ids) {
  const exclude = {};
  const pre = JSON.stringify(config.pre_tokenizer ?? null);
  const nonAsciiNumeric = /[^\P{N}0-9]/u;
  if (pre.includes('"Digits"') &&
      (nonAsciiNumeric.test(text) || nonAsciiNumeric.test(text.normalize("NFKC")))) {
    for (const check of ["ids", "ids_plain", "decoded", "decoded_skip"]) exclude[check] = "digits-non-ascii";
  }
  const dec = JSON.stringify(config.decoder ?? null);
  if (dec.includes('"Metaspace"')) {
    const special = new Set(config.added_tokens.filter((a) => a.special).map((a) => a.id));
    for (const [check, skip] of [["decoded", false], ["decoded_skip", true]]) {
      const first = ids.find((id) => !(skip && special.has(id)));
      const token = first === undefined ? "" : (tok.id_to_token(first) ?? "");
      if ([...token].filter((c) => c === kMeta).length >= 2) exclude[check] = "metaspace-first-token";
    }
  }
  return Object.keys(exclude).length ? exclude : undefined;
}

if (args.out) {
  const require = createRequire(path.join(path.resolve(args.modules), "node_modules", "x.js"));
  const { Tokenizer } = require("@huggingface/tokenizers");
  const dir = path.resolve(args.tokenizer);
  const read = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
  const config = read("tokenizer.json");  // a private copy: the Tokenizer may keep and change its own
  const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
  const lines = [];
  for (const text of makeCorpus()) {
    const ids = tok.encode(text, { add_special_tokens: true }).ids;
    const idsPlain = tok.encode(text, { add_special_tokens: false }).ids;
    lines.push(JSON.stringify({
      text, ids, ids_plain: idsPlain,
      // The JS port refuses an empty list; the crate returns "".
      decoded: ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "",
      decoded_skip: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "",
      exclude: exclusions(tok, config, text, ids),
    }));
  }
  fs.writeFileSync(args.out, lines.join("\n") + "\n");
  console.log(`golden.mjs: ${lines.length} strings -> ${args.out}`);
}
