// The @huggingface/tokenizers side of tokenizer_bench.sh: same paragraphs, passes and output
// format as tokenizer_bench.cc ("<file> <MB/s of the median pass> <tokens per pass>").
//
//   node tokenizer_bench.mjs --modules DIR --tokenizer TOKENIZER_DIR FILE...
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const argv = process.argv.slice(2);
const opt = (name) => argv[argv.indexOf(`--${name}`) + 1];
const files = argv.filter((a, i) => !a.startsWith("--") && !argv[i - 1]?.startsWith("--"));
const require = createRequire(path.join(path.resolve(opt("modules")), "node_modules", "x.js"));
const { Tokenizer } = require("@huggingface/tokenizers");
const dir = opt("tokenizer");
const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
                          JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
for (const file of files) {
  const text = fs.readFileSync(file, "utf8");
  const paragraphs = text.split("\n\n");
  const bytes = paragraphs.reduce((n, p) => n + Buffer.byteLength(p, "utf8"), 0);
  const seconds = [];
  let tokens = 0;
  for (let pass = 0; pass < 6; ++pass) {
    const start = process.hrtime.bigint();
    let count = 0;
    for (const p of paragraphs) count += tok.encode(p, { add_special_tokens: true }).ids.length;
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    if (pass > 0) seconds.push(s);
    tokens = count;
  }
  seconds.sort((a, b) => a - b);
  console.log(`${file} ${(bytes / seconds[Math.floor(seconds.length / 2)] / 1e6).toFixed(2)} ${tokens}`);
}
