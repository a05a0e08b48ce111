// Soak test of `samq serve` (issue 17 closing note): mixed clients against one server on
// loopback for a bounded time, reporting crashes, lost requests and RSS drift.
//
//   node bench/serve_soak.mjs --samq build/samq [--minutes 10] [--model PATH | (default) --fake-model]
//
// Clients, all at once:
//   normal        completions and chat, streamed and not; each answer is checked (with the fake
//                 model, against its known greedy text)
//   slow          trickles its request over ~1.5 s, then reads the answer a few bytes at a time
//   disconnecting starts a stream and closes the socket after the first chunk, or before any
//   malformed     bad JSON, wrong types, garbage bytes, oversized heads, chunked junk, bad lengths
// Outcomes: a request is "lost" when it got neither a complete answer nor an HTTP error status
// (a reset, a truncated body, a timeout). 429/503 are refusals, counted apart. The server's RSS
// (VmRSS) is sampled every 5 s; drift = last sample vs the first sample after the warm-up minute.
// Exit code 1 when the server died, a request was lost, or the RSS drifted by more than 10%.
// Loopback only; everything is bounded by --minutes (+ 30 s to drain).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const samq = opt("--samq", "build/samq");
const minutes = Number(opt("--minutes", "10"));
const model = opt("--model", null);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "samq-soak-"));
const portFile = path.join(dir, "port");
const serveArgs = ["serve", ...(model ? [model] : ["--fake-model", "--fake-step-ms", "2"]), "--alias", "soak",
                   ...(opt("--http-threads", null) ? ["--http-threads", opt("--http-threads", null)] : []),
                   "--parallel", "4", "--queue", "8", "--read-timeout-s", "3", "--write-timeout-s", "5",
                   "--port", "0", "--port-file", portFile];
const proc = spawn(samq, serveArgs, { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
proc.stderr.on("data", (d) => { log = (log + d).slice(-20000); });
let exited = null;
proc.on("exit", (code, signal) => { exited = { code, signal }; });
process.on("exit", () => { try { proc.kill("SIGKILL"); } catch {} });

let port = null;
for (let i = 0; i < 600 && port === null; i++) {
  await sleep(100);
  if (fs.existsSync(portFile)) {
    const p = Number(fs.readFileSync(portFile, "utf8").trim());
    try { if ((await fetch(`http://127.0.0.1:${p}/ready`)).status === 200) port = p; } catch {}
  }
}
if (port === null) { console.error(`server did not start:\n${log}`); process.exit(1); }
const base = `http://127.0.0.1:${port}`;

const stats = {};
const count = (kind, outcome) => { stats[kind] ??= {}; stats[kind][outcome] = (stats[kind][outcome] ?? 0) + 1; };
const lostSamples = [];
const lost = (kind, why) => { count(kind, "lost"); if (lostSamples.length < 20) lostSamples.push(`${kind}: ${why}`); };
const end = Date.now() + minutes * 60000;
const running = () => Date.now() < end && exited === null;

function rss() {
  try { return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${proc.pid}/status`, "utf8"))[1]); } catch { return NaN; }
}

// The fake model's greedy text after "a": "bcd...z." then the end.
const fakeText = (n) => "bcdefghijklmnopqrstuvwxyz.".slice(0, n);

async function normal(i) {
  const stream = i % 2 === 0, chat = i % 3 === 0;
  const body = chat ? { messages: [{ role: "user", content: "a" }], max_tokens: 8, temperature: 0, stream }
                    : { prompt: "a", max_tokens: 8, temperature: 0, stream };
  let res;
  try {
    res = await fetch(`${base}/v1/${chat ? "chat/completions" : "completions"}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(60000) });
  } catch (e) { return lost("normal", `fetch: ${e.message}`); }
  if (res.status === 429 || res.status === 503) { await res.text().catch(() => {}); return count("normal", "refused"); }
  let text;
  try { text = await res.text(); } catch (e) { return lost("normal", `body: ${e.message}`); }
  if (res.status !== 200) return lost("normal", `status ${res.status}: ${text.slice(0, 200)}`);
  let out = "";
  try {
    if (stream) {
      if (!text.endsWith("data: [DONE]\n\n")) return lost("normal", `stream without [DONE]: ${text.slice(-200)}`);
      for (const ev of text.split("\n\n")) {
        if (!ev.startsWith("data: {")) continue;
        const j = JSON.parse(ev.slice(6));
        if (j.error) return lost("normal", `stream error ${JSON.stringify(j.error)}`);
        const c = j.choices[0];
        if (c) out += chat ? (c.delta.content ?? "") : c.text;
      }
    } else {
      const j = JSON.parse(text);
      out = chat ? j.choices[0].message.content : j.choices[0].text;
    }
  } catch (e) { return lost("normal", `parse: ${e.message}: ${text.slice(0, 200)}`); }
  if (!model && !chat && out !== fakeText(8)) return lost("normal", `wrong text ${JSON.stringify(out)}`);
  count("normal", "ok");
}

// Raw socket: sends pieces with a delay, reads everything (optionally slowly) until close.
function raw(pieces, { delayMs = 0, readDelayMs = 0, closeAfterBytes = 0, timeoutMs = 30000 } = {}) {
  return new Promise((resolve) => {
    const sock = net.createConnection({ host: "127.0.0.1", port });
    let data = "", done = false;
    const finish = (how) => { if (done) return; done = true; clearTimeout(timer); sock.destroy(); resolve({ data, how }); };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    sock.on("data", (d) => {
      data += d;
      if (closeAfterBytes && data.length >= closeAfterBytes) return finish("closed-by-client");
      if (readDelayMs) { sock.pause(); setTimeout(() => sock.resume(), readDelayMs); }
    });
    sock.on("end", () => finish("end"));
    sock.on("close", () => finish("close"));
    sock.on("error", () => finish("error"));
    sock.on("connect", async () => {
      for (const p of pieces) {
        if (done) return;
        sock.write(p);
        if (delayMs) await sleep(delayMs);
      }
    });
  });
}
const post = (pathname, body, extra = "") =>
  `POST ${pathname} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const statusOf = (data) => { const m = /^HTTP\/1\.1 (\d{3})/.exec(data); return m ? Number(m[1]) : 0; };

async function slow(i) {
  const req = post("/v1/completions", JSON.stringify({ prompt: "a", max_tokens: 8, temperature: 0, stream: i % 2 === 0 }));
  const pieces = [];
  for (let k = 0; k < req.length; k += Math.ceil(req.length / 10)) pieces.push(req.slice(k, k + Math.ceil(req.length / 10)));
  const r = await raw(pieces, { delayMs: 150, readDelayMs: 100 });
  const st = statusOf(r.data);
  if (st === 429 || st === 503) return count("slow", "refused");
  if (st !== 200) return lost("slow", `status ${st} (${r.how}): ${r.data.slice(0, 120)}`);
  if (i % 2 === 0 ? !r.data.includes("data: [DONE]") : !r.data.includes('"finish_reason"')) return lost("slow", `incomplete (${r.how})`);
  count("slow", "ok");
}

async function disconnecting(i) {
  const req = post("/v1/completions", JSON.stringify({ prompt: "a", max_tokens: 200, temperature: 0.8, stream: true }));
  await raw([req], { closeAfterBytes: i % 2 === 0 ? 1 : 400, timeoutMs: 10000 });
  count("disconnecting", "done");  // any outcome is fine: the server must only survive it
}

const malformed = [
  () => [post("/v1/completions", "{not json")],
  () => [post("/v1/completions", JSON.stringify({ prompt: 5 }))],
  () => [post("/v1/completions", JSON.stringify({ prompt: "a", temperature: "hot" }))],
  () => [post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: [{ type: 5 }] }] }))],
  () => [post("/v1/completions", JSON.stringify({ prompt: "a", max_tokens: -1 }))],
  () => [post("/v1/completions", '{"prompt":"a","temperature":1e400}')],
  () => [post("/v1/completions", JSON.stringify({ prompt: "a", bogus: 1 }))],
  () => [Buffer.from(Array.from({ length: 512 }, () => Math.floor(Math.random() * 256)))],
  () => [`GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  () => [`GET /health HTTP/1.1\r\n${"X-A: b\r\n".repeat(100)}\r\n`],
  () => ["POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n"],
  () => ["POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":"],  // short body
  () => ["POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n"],  // no length
  () => [post("/v1/completions", "{}", "Content-Encoding: gzip\r\n")],
];
async function malformedClient(i) {
  const r = await raw(malformed[i % malformed.length](), { timeoutMs: 15000 });
  const st = statusOf(r.data);
  if (st >= 400 && st < 600 && st !== 500) count("malformed", "rejected");
  else if (st === 0 && (i % malformed.length === 7 || i % malformed.length === 11)) count("malformed", "dropped");  // garbage/short: closed
  else lost("malformed", `status ${st} for case ${i % malformed.length} (${r.how}): ${r.data.slice(0, 120)}`);
}

async function loop(kind, fn, pauseMs) {
  for (let i = 0; running(); i++) {
    try { await fn(i); } catch (e) { lost(kind, `threw ${e.message}`); }
    if (pauseMs) await sleep(pauseMs);
  }
}

const rssSamples = [];
const t0 = Date.now();
const sampler = (async () => {
  while (running()) {
    rssSamples.push({ s: Math.round((Date.now() - t0) / 1000), kb: rss() });
    await sleep(5000);
  }
})();
let healthFail = 0;
const health = (async () => {
  while (running()) {
    try { if ((await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) })).status !== 200) healthFail++; } catch { healthFail++; }
    await sleep(1000);
  }
})();

await Promise.all([
  ...Array.from({ length: 4 }, () => loop("normal", normal, 0)),
  ...Array.from({ length: 2 }, () => loop("slow", slow, 100)),
  ...Array.from({ length: 2 }, () => loop("disconnecting", disconnecting, 50)),
  ...Array.from({ length: 2 }, () => loop("malformed", malformedClient, 20)),
  sampler, health,
]);

const crashed = exited !== null;
let threadsAtEnd = NaN;
try { threadsAtEnd = Number(/Threads:\s+(\d+)/.exec(fs.readFileSync(`/proc/${proc.pid}/status`, "utf8"))[1]); } catch {}
let alive = false;
try { alive = (await fetch(`${base}/health`, { signal: AbortSignal.timeout(5000) })).status === 200; } catch {}
const warm = rssSamples.find((x) => x.s >= 60) ?? rssSamples[0];
const last = rssSamples[rssSamples.length - 1];
const drift = warm && last ? (last.kb - warm.kb) / warm.kb : NaN;
const maxKb = Math.max(...rssSamples.map((x) => x.kb));
const totalLost = Object.values(stats).reduce((s, o) => s + (o.lost ?? 0), 0);
const summary = {
  minutes, model: model ?? "fake", crashed, exit: exited, alive_at_end: alive, health_failures: healthFail,
  requests: stats, lost: totalLost, lost_samples: lostSamples,
  rss_kb: { first: rssSamples[0]?.kb, after_warmup: warm?.kb, last: last?.kb, max: maxKb }, rss_drift: +drift.toFixed(4),
  rss_mb_per_minute: rssSamples.filter((x) => x.s % 60 < 5).map((x) => +(x.kb / 1024).toFixed(1)),
  server_threads_at_end: threadsAtEnd,
};
console.log(JSON.stringify(summary, null, 2));
if (!crashed) { proc.kill("SIGTERM"); for (let i = 0; i < 100 && exited === null; i++) await sleep(100); }
fs.rmSync(dir, { recursive: true, force: true });
if (crashed) console.error(log.slice(-3000));
process.exit(crashed || !alive || totalLost > 0 || !(Math.abs(drift) <= 0.10) ? 1 : 0);
