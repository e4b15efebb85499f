// Drives a running kvserve's OpenAI-compatible HTTP API with the official `openai` npm client, as
// users and tools do, and checks what comes back. Run by check_openai_client.sh, which starts the
// server (embedded random-weight model: byte-level tokenizer, no chat template, context 2048).
//
//   node client.mjs --modules NPM_DIR --base-url http://127.0.0.1:PORT/v1 \
//                   --metrics-url http://127.0.0.1:PORT/metrics
//
// Exit 0 when every check passes; otherwise prints each failure and exits 1.
import path from "node:path";
import { createRequire } from "node:module";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const modules = path.resolve(args.modules ?? ".");
const require = createRequire(path.join(modules, "package.json"));
const { default: OpenAI } = await import(require.resolve("openai"));

const client = new OpenAI({ baseURL: args["base-url"], apiKey: "unused", maxRetries: 0, timeout: 60_000 });
const model = "tiny-llama-gqa-random-weights";
// A chat template sent with each chat request (vLLM's `chat_template` field): the embedded model
// has none of its own.
const template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";

let failures = 0;
function check(condition, what) {
  if (!condition) {
    failures++;
    console.error(`FAIL: ${what}`);
  }
}
async function test(name, body) {
  try {
    await body();
    console.log(`ok: ${name}`);
  } catch (e) {
    failures++;
    console.error(`FAIL: ${name}: ${e?.stack ?? e}`);
  }
}
async function expectError(name, status, paramOrText, call) {
  await test(name, async () => {
    try {
      await call();
      check(false, `${name}: no error`);
    } catch (e) {
      check(e instanceof OpenAI.APIError, `${name}: not an APIError: ${e}`);
      check(e.status === status, `${name}: status ${e.status}, want ${status}`);
      check(typeof e.error?.message === "string" && e.error.message.length > 0, `${name}: no message`);
      check("type" in e.error && "param" in e.error && "code" in e.error,
            `${name}: error JSON lacks type/param/code: ${JSON.stringify(e.error)}`);
      check(e.error.param === paramOrText || e.error.message.includes(paramOrText),
            `${name}: neither param nor message names ${paramOrText}: ${JSON.stringify(e.error)}`);
    }
  });
}

// Metric value of the first series of `family` whose label set contains `label`.
async function metric(family, label = "") {
  const text = await (await fetch(args["metrics-url"])).text();
  for (const line of text.split("\n")) {
    if (line.startsWith(family + "{") && line.includes(label)) return Number(line.split(" ").pop());
  }
  return NaN;
}

await test("models.list names the served model", async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  check(models.length === 1 && models[0] === model, `models: ${models}`);
});

await test("non-streaming completion, greedy, is reproducible and counts usage", async () => {
  const request = { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 };
  const a = await client.completions.create(request);
  const b = await client.completions.create(request);
  check(a.object === "text_completion", `object ${a.object}`);
  check(a.choices.length === 1 && a.choices[0].finish_reason === "length", JSON.stringify(a.choices));
  check(a.choices[0].text === b.choices[0].text, "greedy completions differ");
  check(a.usage.prompt_tokens === 17 && a.usage.completion_tokens === 8, JSON.stringify(a.usage));
});

await test("streaming completion equals the non-streaming one and ends with usage", async () => {
  const request = { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 };
  const whole = await client.completions.create(request);
  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(text === whole.choices[0].text, `streamed ${JSON.stringify(text)} vs ${JSON.stringify(whole.choices[0].text)}`);
  check(finish === "length", `finish ${finish}`);
  check(usage?.completion_tokens === 8, `usage ${JSON.stringify(usage)}`);
});

await test("n > 1 with a seed gives n choices, reproducibly", async () => {
  const request = { model, prompt: "abc", max_tokens: 6, n: 3, seed: 11 };
  const a = await client.completions.create(request);
  const b = await client.completions.create(request);
  check(a.choices.length === 3, `${a.choices.length} choices`);
  check(a.choices.map((c) => c.index).join() === "0,1,2", "indices");
  check(JSON.stringify(a.choices.map((c) => c.text)) === JSON.stringify(b.choices.map((c) => c.text)),
        "seeded samples differ between runs");
});

await test("logprobs: one entry per token, top alternatives bounded", async () => {
  const r = await client.completions.create({ model, prompt: "abc", max_tokens: 5, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  check(lp.tokens.length === 5 && lp.token_logprobs.length === 5 && lp.top_logprobs.length === 5,
        JSON.stringify(lp));
  check(lp.token_logprobs.every((x) => x <= 0), "a logprob above 0");
  check(lp.top_logprobs.every((t) => Object.keys(t).length <= 2), "more than 2 alternatives");
});

await test("stop: the stop string ends the text and is not included", async () => {
  const greedy = { model, prompt: "Once upon a time", max_tokens: 16, temperature: 0 };
  const free = (await client.completions.create(greedy)).choices[0].text;
  // Stop at the text's 4th character (the byte-level model produces one character per token).
  const stop = [...free].slice(3, 4).join("");
  const stopped = await client.completions.create({ ...greedy, stop: [stop] });
  check(stopped.choices[0].finish_reason === "stop", `finish ${stopped.choices[0].finish_reason}`);
  check(stopped.choices[0].text === free.slice(0, free.indexOf(stop)),
        `${JSON.stringify(stopped.choices[0].text)} vs prefix of ${JSON.stringify(free)}`);
});

await test("chat: non-streaming and streaming agree; role comes first", async () => {
  const request = { model, messages: [{ role: "user", content: "hi" }], max_completion_tokens: 6,
                    temperature: 0, chat_template: template };
  const whole = await client.chat.completions.create(request);
  check(whole.object === "chat.completion", `object ${whole.object}`);
  check(whole.choices[0].message.role === "assistant", "role");
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let text = "", first = true;
  for await (const chunk of stream) {
    if (first) check(chunk.choices[0].delta.role === "assistant", "first delta lacks the role");
    first = false;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  check(text === whole.choices[0].message.content, `${JSON.stringify(text)} vs ${JSON.stringify(whole.choices[0].message.content)}`);
});

await test("chat logprobs with top_logprobs", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }],
    max_tokens: 4, logprobs: true, top_logprobs: 2, chat_template: template });
  const content = r.choices[0].logprobs.content;
  check(content.length === 4, `${content.length} entries`);
  check(content.every((t) => typeof t.token === "string" && Array.isArray(t.bytes) && t.top_logprobs.length <= 2),
        JSON.stringify(content[0]));
});

await test("a client-side abort cancels the request and frees the cache", async () => {
  const cancelledBefore = await metric("kvserve_request_failure_total", 'reason="cancelled"');
  const controller = new AbortController();
  const stream = await client.completions.create(
      { model, prompt: "abc", max_tokens: 2000, ignore_eos: true, stream: true },
      { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) {
      if (++chunks === 3) controller.abort();
    }
  } catch (e) {
    check(e.name === "AbortError" || e instanceof OpenAI.APIUserAbortError, `unexpected ${e}`);
  }
  // Bounded polling (no sleeps): the server notices the hang-up and cancels within an engine step.
  let freed = false;
  for (let i = 0; i < 20000 && !freed; i++) {
    freed = (await metric("kvserve_kv_cache_usage_ratio")) === 0 &&
            (await metric("kvserve_requests_running")) === 0 &&
            (await metric("kvserve_request_failure_total", 'reason="cancelled"')) === cancelledBefore + 1;
  }
  check(freed, "the KV cache was not freed, or the call was not counted as cancelled");
});

await expectError("wrong type is 400 naming the field", 400, "max_tokens",
  () => client.completions.create({ model, prompt: "a", max_tokens: "ten" }));
await expectError("out-of-range value is 400 naming the field", 400, "top_p",
  () => client.completions.create({ model, prompt: "a", top_p: 1.5 }));
await expectError("unknown model is 404", 404, "model",
  () => client.completions.create({ model: "gpt-9", prompt: "a" }));
await expectError("chat without a template is 400 naming it", 400, "chat_template",
  () => client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] }));
await expectError("missing messages is 400", 400, "messages",
  () => client.chat.completions.create({ model }));
await expectError("a body over --http-max-body-bytes is 413", 413, "body",
  () => client.completions.create({ model, prompt: "x".repeat(9 << 20) }));
await expectError("too many samples is 400", 400, "n",
  () => client.completions.create({ model, prompt: "a", n: 17 }));

if (failures > 0) {
  console.error(`client.mjs: ${failures} failure(s)`);
  process.exit(1);
}
console.log("client.mjs: all checks passed");
