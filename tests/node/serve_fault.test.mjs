// Fault test of `samq serve` on refcode-32m: the primary is made to fail, then to be slow, in
// the middle of a steady load (through the TEST-ONLY fault-injection endpoint, enabled by
// --enable-fault-injection). The fallback must serve and no request may fail; afterwards the
// circuit breaker returns traffic to the primary through half-open probes. A second scenario
// uses an OpenAI-compatible upstream (another samq serve on loopback) via --fallback-url.
import { loadOpenAI, refModel, refAnchorGguf, startServer, test, done, sleep } from "./serve-helpers.mjs";

const OpenAI = await loadOpenAI();
const model = refModel();
// As in production: the quantized file serves, the BF16 model stands by.
const quantized = refAnchorGguf() ?? model;

async function fault(srv, body) {
  const r = await fetch(`${srv.url}/internal/fault`, { method: "POST", body: JSON.stringify(body) });
  if (r.status !== 200) throw new Error(`fault endpoint: ${r.status}`);
  return r.json();
}
async function metricsText(srv) { return (await fetch(`${srv.url}/metrics`)).text(); }
function metric(text, re) {
  let sum = 0;
  for (const line of text.split("\n")) if (re.test(line)) sum += Number(line.split(" ").pop());
  return sum;
}

// Streams one completion; returns who served it, the text and the finish reason (throws on any error).
async function request(client, i) {
  const { data: stream, response } = await client.completions
    .create({ model: "primary", prompt: `def f${i}(x):\n`, max_tokens: 24, temperature: 0, stream: true }).withResponse();
  let text = "", finish = null;
  for await (const c of stream) if (c.choices.length) { text += c.choices[0].text; finish = c.choices[0].finish_reason ?? finish; }
  if (!finish) throw new Error("stream ended without finish_reason");
  return { by: response.headers.get("x-samq-served-by"), text, finish };
}

// Runs `clients` loops of requests until `stopAt()`; collects results and errors.
async function load(client, clients, stopAt, maxPerClient) {
  const results = [], errors = [];
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let k = 0; k < maxPerClient && !stopAt(); k++) {
      try { results.push({ t: Date.now(), i: c * 1000 + k, ...(await request(client, c * 1000 + k)) }); }
      catch (e) { errors.push(String(e)); }
    }
  }));
  return { results, errors };
}

await test("in-process fallback: primary fails, then is slow, mid-load; nothing fails; the breaker recovers", async () => {
  console.log(`  primary ${quantized}, fallback ${model}`);
  const srv = await startServer([quantized, "--alias", "primary", "--fallback", model, "--parallel", "4", "--queue", "16",
    "--enable-fault-injection", "--timeout-ms", "1500", "--sla-p99-ms", "4000", "--sla-window-s", "10", "--sla-min-samples", "4",
    "--breaker-failures", "2", "--breaker-cooldown-ms", "1500", "--breaker-probes", "2"]);
  try {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 60000 });
    const t0 = Date.now();
    const phases = (async () => {
      await sleep(3000);
      await fault(srv, { fail: true });                    // primary errors
      await sleep(4000);
      await fault(srv, { fail: false, delay_ms: 2500 });   // primary slower than --timeout-ms per token
      await sleep(5000);
      await fault(srv, { fail: false, delay_ms: 0 });      // primary healthy again
    })();
    const { results, errors } = await load(client, 4, () => Date.now() - t0 > 16000, 200);
    await phases;
    if (errors.length) throw new Error(`${errors.length} request(s) failed: ${errors.slice(0, 3).join(" | ")}`);
    const byFallback = results.filter((r) => r.by === "refcode-32m").length;
    const byPrimary = results.filter((r) => r.by === "primary").length;
    console.log(`  ${results.length} requests: ${byPrimary} by primary, ${byFallback} by fallback (first token)`);
    if (results.some((r) => !r.text.length)) throw new Error("empty answer");
    if (byFallback === 0) throw new Error("the fallback never served");
    const m = await metricsText(srv);
    const errs = metric(m, /^samq_fallback_activations_total\{reason="error"\}/);
    const tos = metric(m, /^samq_fallback_activations_total\{reason="timeout"\}/);
    const open = metric(m, /^samq_fallback_activations_total\{reason="circuit_open"\}/);
    console.log(`  fallback activations: error ${errs}, timeout ${tos}, circuit_open ${open}`);
    if (errs === 0 || tos + open === 0) throw new Error("fallback reasons not recorded");
    // Recovery: after the cool-down, probes go to the healthy primary and close the circuit.
    let last = null;
    for (let k = 0; k < 40; k++) {
      last = await request(client, 9000 + k);
      if (last.by === "primary" && metric(await metricsText(srv), /^samq_circuit_state /) === 0) break;
      await sleep(250);
    }
    if (last.by !== "primary") throw new Error(`primary never took traffic back (last served by ${last.by})`);
    if (metric(await metricsText(srv), /^samq_circuit_state /) !== 0) throw new Error("circuit not closed again");
  } finally {
    await srv.stop("SIGKILL");
  }
});

await test("upstream fallback over HTTP (--fallback-url): failing primary, nothing fails", async () => {
  const up = await startServer([model, "--alias", "upstream-model", "--parallel", "4"]);
  const srv = await startServer([model, "--alias", "primary", "--fallback-url", `${up.url}/v1`, "--parallel", "4",
    "--enable-fault-injection", "--timeout-ms", "3000", "--breaker-failures", "1000"]);
  try {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 60000 });
    const healthy = await request(client, 1);
    if (healthy.by !== "primary") throw new Error(`served by ${healthy.by}`);
    await fault(srv, { fail: true });
    const { results, errors } = await load(client, 3, () => false, 3);
    if (errors.length) throw new Error(`${errors.length} failed: ${errors[0]}`);
    if (!results.every((r) => r.by.startsWith("upstream:") && r.text.length)) throw new Error(JSON.stringify(results.map((r) => r.by)));
    // Same weights and greedy decoding, and the primary fails before any token: one at a time
    // (so both engines see batches of one), the upstream's answer equals the healthy primary's.
    for (const i of [7, 8]) {
      const viaUp = await request(client, i);
      await fault(srv, { fail: false });
      const direct = await request(client, i);
      await fault(srv, { fail: true });
      if (!viaUp.by.startsWith("upstream:") || direct.by !== "primary" || viaUp.text !== direct.text)
        throw new Error(`prompt ${i}: ${viaUp.by} ${JSON.stringify(viaUp.text)} vs ${direct.by} ${JSON.stringify(direct.text)}`);
    }
  } finally {
    await srv.stop("SIGKILL");
    await up.stop("SIGKILL");
  }
});

done();
