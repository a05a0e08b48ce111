// Loopback load test of `samq serve` on refcode-32m: 1, 4 and 8 concurrent streaming clients
// (bounded: a fixed number of requests per client and a wall-clock cap). Prints p50/p99
// end-to-end and first-token latency and aggregate generated tokens/s, and checks that
// continuous batching pays: with 8 clients, aggregate generation >= 2.5x that of 1 client.
import { loadOpenAI, refModel, startServer, test, done, percentile } from "./serve-helpers.mjs";

const OpenAI = await loadOpenAI();
const model = refModel();
const srv = await startServer([model, "--parallel", "8", "--queue", "8", "--alias", "refcode"]);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 120000 });
const MAX_TOKENS = 48;
const prompts = ["def quicksort(arr):\n", "import numpy as np\n\n", "class Stack:\n    def __init__(self):\n",
                 "// C function to reverse a string\n", "SELECT name FROM users WHERE", "#include <stdio.h>\n\nint main() {\n",
                 "function debounce(fn, ms) {\n", "fn main() {\n    let v = vec!["];

async function one(i) {
  const t0 = performance.now();
  let first = null, tokens = 0;
  const stream = await client.completions.create({ model: "refcode", prompt: prompts[i % prompts.length], max_tokens: MAX_TOKENS,
                                                   temperature: 0.8, seed: i, stream: true, stream_options: { include_usage: true } });
  for await (const c of stream) {
    if (first === null && c.choices.length && c.choices[0].text) first = performance.now() - t0;
    if (c.usage) tokens = c.usage.completion_tokens;
  }
  return { ms: performance.now() - t0, ttft: first ?? NaN, tokens };
}

import fs from "node:fs";
function serverCpuS() {
  const f = fs.readFileSync(`/proc/${srv.proc.pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;  // utime + stime, clock ticks (100 Hz)
}

async function level(clients, perClient, capMs) {
  const c0 = process.cpuUsage(), s0 = serverCpuS();
  const t0 = performance.now();
  const results = [];
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let k = 0; k < perClient && performance.now() - t0 < capMs; k++) results.push(await one(c * 100 + k));
  }));
  const wall = (performance.now() - t0) / 1000;
  const toks = results.reduce((s, r) => s + r.tokens, 0);
  const row = { clients, requests: results.length, tokens: toks, wall_s: +wall.toFixed(2), tok_per_s: +(toks / wall).toFixed(1),
                p50_ms: Math.round(percentile(results.map((r) => r.ms), 50)), p99_ms: Math.round(percentile(results.map((r) => r.ms), 99)),
                ttft_p50_ms: Math.round(percentile(results.map((r) => r.ttft), 50)), ttft_p99_ms: Math.round(percentile(results.map((r) => r.ttft), 99)),
                client_cpu_s: +((process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1e6).toFixed(2),
                server_cpu_s: +(serverCpuS() - s0).toFixed(2) };
  console.log(JSON.stringify(row));
  return row;
}

await test("load: 1, 4, 8 clients; 8 clients >= 2.5x the aggregate tokens/s of 1", async () => {
  await one(0);  // warm-up
  // The 1- and 8-client levels run twice, interleaved, and are pooled: this machine is shared
  // (ctest -j runs other suites beside this one), and interleaving spreads that load over both.
  // A second full attempt is allowed when the first falls short; both are printed.
  let ratio = 0;
  for (let attempt = 1; attempt <= 2 && !(ratio >= 2.5); attempt++) {
    const r1a = await level(1, 4, 60000);
    const r8a = await level(8, 3, 60000);
    const r4 = await level(4, 3, 60000);
    const r1b = await level(1, 4, 60000);
    const r8b = await level(8, 3, 60000);
    const rate = (a, b) => (a.tokens + b.tokens) / (a.wall_s + b.wall_s);
    const one_rate = rate(r1a, r1b), eight_rate = rate(r8a, r8b);
    ratio = eight_rate / one_rate;
    console.log(`attempt ${attempt}: aggregate generation: 1 client ${one_rate.toFixed(1)} tok/s, 4 clients ${r4.tok_per_s} tok/s ` +
                `(${(r4.tok_per_s / one_rate).toFixed(2)}x), 8 clients ${eight_rate.toFixed(1)} tok/s (${ratio.toFixed(2)}x)`);
    if (r1a.requests + r1b.requests < 4 || r8a.requests + r8b.requests < 16) throw new Error("too few requests finished within the time cap");
  }
  if (!(ratio >= 2.5)) throw new Error(`8 clients reached only ${ratio.toFixed(2)}x of 1 client (need >= 2.5x)`);
});

await srv.stop("SIGKILL");
done();
