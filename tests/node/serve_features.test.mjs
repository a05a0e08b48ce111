// Issue 17 item 9, through the official `openai` client on the real refcode-32m model:
// logprobs/top_logprobs, n > 1, response_format json_object, presence/frequency penalties,
// logit_bias, and a 400 naming any field samq does not implement.
// The model is required: without it this test fails (it does not skip).
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { loadOpenAI, samqBinary, startServer, test, done } from "./serve-helpers.mjs";

const shared = process.env.SAMQ_SHARED_DIR || path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..", "..", "shared");
const model = path.join(shared, "models", "refcode-32m");
if (!fs.existsSync(path.join(model, "config.json"))) {
  console.log(`FAIL: reference model not found at ${model}`);
  process.exit(1);
}
const OpenAI = await loadOpenAI();
const srv = await startServer([model, "--parallel", "4", "--queue", "8", "--alias", "refcode"]);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 120000 });
const prompt = "def fibonacci(n):\n";
const near = (a, b, tol = 1e-3) => Math.abs(a - b) <= tol;

await test("completions logprobs: tokens spell the text, the greedy token is the most likely, streamed = not", async () => {
  const r = await client.completions.create({ model: "refcode", prompt, max_tokens: 16, temperature: 0, logprobs: 3 });
  const c = r.choices[0], lp = c.logprobs;
  if (!lp || lp.tokens.length !== 16) throw new Error(`logprobs ${JSON.stringify(lp)}`);
  if (lp.tokens.join("") !== c.text) throw new Error(`tokens ${JSON.stringify(lp.tokens)} vs text ${JSON.stringify(c.text)}`);
  let off = 0;
  for (let k = 0; k < 16; k++) {
    const top = Object.entries(lp.top_logprobs[k]);
    if (top.length < 1 || top.length > 3) throw new Error(`top ${k}: ${JSON.stringify(top)}`);
    const best = Math.max(...top.map(([, v]) => v));
    if (!(lp.token_logprobs[k] <= 0) || !near(lp.token_logprobs[k], best)) throw new Error(`token ${k}: ${lp.token_logprobs[k]} vs top ${best}`);
    if (lp.text_offset[k] !== off) throw new Error(`text_offset ${k}: ${lp.text_offset[k]} != ${off}`);
    off += lp.tokens[k].length;
    const mass = top.reduce((s, [, v]) => s + Math.exp(v), 0);
    if (mass > 1.0001) throw new Error(`top mass ${mass}`);
  }
  const stream = await client.completions.create({ model: "refcode", prompt, max_tokens: 16, temperature: 0, logprobs: 3, stream: true });
  const sl = [];
  for await (const ch of stream) if (ch.choices.length && ch.choices[0].logprobs) sl.push(...ch.choices[0].logprobs.token_logprobs);
  if (sl.length !== 16 || !sl.every((v, k) => near(v, lp.token_logprobs[k]))) throw new Error(`streamed ${JSON.stringify(sl)}`);
});

await test("chat logprobs with top_logprobs", async () => {
  const r = await client.chat.completions.create({ model: "refcode", messages: [{ role: "user", content: "Write a Python list." }],
                                                   max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2 });
  const c = r.choices[0];
  const content = c.logprobs?.content;
  if (!content || content.length !== r.usage.completion_tokens) throw new Error(`content ${JSON.stringify(c.logprobs)} usage ${r.usage.completion_tokens}`);
  for (const e of content) {
    if (e.top_logprobs.length !== 2 || !near(e.logprob, e.top_logprobs[0].logprob)) throw new Error(`entry ${JSON.stringify(e)}`);
    if (!Array.isArray(e.bytes)) throw new Error("no bytes");
  }
});

await test("n = 3: greedy choices are equal; seeded sampled choices differ and repeat", async () => {
  const g = await client.completions.create({ model: "refcode", prompt, max_tokens: 12, temperature: 0, n: 3 });
  if (g.choices.length !== 3 || g.choices.some((c, i) => c.index !== i || c.text !== g.choices[0].text)) throw new Error(JSON.stringify(g.choices));
  const one = await client.completions.create({ model: "refcode", prompt, max_tokens: 12, temperature: 0 });
  if (one.choices[0].text !== g.choices[0].text) throw new Error("n=3 greedy differs from n=1");
  if (g.usage.completion_tokens !== 3 * one.usage.completion_tokens) throw new Error(`usage ${JSON.stringify(g.usage)}`);
  const req = { model: "refcode", messages: [{ role: "user", content: "Say something." }], max_tokens: 16, temperature: 1.2, seed: 7, n: 3 };
  const a = await client.chat.completions.create(req), b = await client.chat.completions.create(req);
  const ta = a.choices.map((c) => c.message.content), tb = b.choices.map((c) => c.message.content);
  if (new Set(ta).size < 2) throw new Error(`choices all equal: ${JSON.stringify(ta)}`);
  if (JSON.stringify(ta) !== JSON.stringify(tb)) throw new Error(`seeded choices differ between runs: ${JSON.stringify(ta)} vs ${JSON.stringify(tb)}`);
  // Streaming n = 2 through the client: every choice index finishes once.
  const s = await client.completions.create({ model: "refcode", prompt, max_tokens: 8, temperature: 0, n: 2, stream: true });
  const fin = [0, 0], txt = ["", ""];
  for await (const ch of s) for (const c of ch.choices) { txt[c.index] += c.text; if (c.finish_reason) fin[c.index]++; }
  if (fin[0] !== 1 || fin[1] !== 1 || txt[0] !== txt[1]) throw new Error(`stream n=2 ${JSON.stringify({ fin, txt })}`);
});

await test("response_format json_object: the answer is a JSON object", async () => {
  let complete = 0;
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({ model: "refcode", messages: [{ role: "user", content: "Give a JSON object with a name." }],
                                                     max_tokens: 96, temperature: 0.7, seed, response_format: { type: "json_object" } });
    const c = r.choices[0], text = c.message.content;
    if (!/^\s*\{/.test(text)) throw new Error(`not an object: ${JSON.stringify(text)}`);
    if (c.finish_reason === "stop") {
      const v = JSON.parse(text);  // throws when invalid
      if (typeof v !== "object" || Array.isArray(v) || v === null) throw new Error(`not an object: ${text}`);
      complete++;
    } else if (c.finish_reason !== "length") throw new Error(`finish ${c.finish_reason}`);
  }
  console.log(`  json_object: ${complete}/3 closed within 96 tokens`);
});

function tokenIds(text) {
  return JSON.parse(execFileSync(samqBinary(), ["tokenize", model, "-p", text], { encoding: "utf8" }));
}

await test("logit_bias steers tokens; penalties reduce repetition", async () => {
  // The first token of " banana", with its piece as the tokenizer prints it.
  const [idText, piece] = execFileSync(samqBinary(), ["tokenize", model, "-p", " banana", "--pieces"], { encoding: "utf8" }).split("\n")[0].split("\t");
  const r = await client.completions.create({ model: "refcode", prompt, max_tokens: 4, temperature: 0, logit_bias: { [idText]: 100 } });
  if (r.choices[0].text !== piece.repeat(4)) throw new Error(`biased text ${JSON.stringify(r.choices[0].text)}, piece ${JSON.stringify(piece)}`);
  const base = await client.completions.create({ model: "refcode", prompt, max_tokens: 64, temperature: 0, logprobs: 0 });
  const firstId = tokenIds(base.choices[0].logprobs.tokens[0])[0];
  const ban = await client.completions.create({ model: "refcode", prompt, max_tokens: 4, temperature: 0, logprobs: 0,
                                                logit_bias: { [firstId]: -100 } });
  if (ban.choices[0].logprobs.tokens[0] === base.choices[0].logprobs.tokens[0]) throw new Error("a -100 bias did not remove the greedy token");
  const pen = await client.completions.create({ model: "refcode", prompt, max_tokens: 64, temperature: 0, logprobs: 0,
                                                frequency_penalty: 2, presence_penalty: 1 });
  const distinct = (c) => new Set(c.logprobs.tokens).size / c.logprobs.tokens.length;
  console.log(`  distinct-token share: ${distinct(base.choices[0]).toFixed(2)} plain, ${distinct(pen.choices[0]).toFixed(2)} penalized`);
  if (!(distinct(pen.choices[0]) > distinct(base.choices[0]))) throw new Error("penalties did not reduce repetition");
});

await test("fields samq does not implement: 400 naming them", async () => {
  for (const [extra, param] of [[{ user: "u1" }, "user"], [{ guided_json: {} }, "guided_json"], [{ suffix: "x" }, "suffix"],
                                [{ response_format: { type: "json_schema", json_schema: { name: "x", schema: {} } } }, "response_format.type"]]) {
    try {
      await client.completions.create({ model: "refcode", prompt, max_tokens: 2, ...extra });
      throw new Error(`accepted ${JSON.stringify(extra)}`);
    } catch (e) {
      if (!(e instanceof OpenAI.APIError) || e.status !== 400 || e.param !== param) throw new Error(`${JSON.stringify(extra)}: ${e.status} ${e.param} ${e.message}`);
    }
  }
  try {
    await client.chat.completions.create({ model: "refcode", messages: [{ role: "user", content: "x" }], tool_choice: "auto" });
    throw new Error("accepted tool_choice");
  } catch (e) {
    if (e.status !== 400 || e.param !== "tool_choice") throw new Error(`tool_choice: ${e.status} ${e.param}`);
  }
});

await srv.stop();
done();
