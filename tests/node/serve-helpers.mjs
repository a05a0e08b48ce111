// Shared by the serve*.test.mjs tests: start `samq serve` on a free loopback port, wait until
// it is ready, and always kill it at the end. Exit code 77 (ctest SKIP) when the openai client,
// the samq binary or the model is missing; under CI=true that is a failure (exit 1) instead.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const SKIP = 77;

export function skip(why) {
  if (process.env.CI === "true") {
    console.error(`FAIL (CI=true, a skip is not allowed): ${why}`);
    process.exit(1);
  }
  console.log(`SKIP: ${why}`);
  process.exit(SKIP);
}

export async function loadOpenAI() {
  if (!fs.existsSync(path.join(here, "node_modules", "openai"))) skip("tests/node/node_modules/openai missing (run scripts/setup.sh)");
  return (await import("openai")).default;
}

export function samqBinary() {
  const b = process.env.SAMQ_BINARY || path.join(here, "..", "..", "build", "samq");
  if (!fs.existsSync(b)) skip(`samq binary not found at ${b} (set SAMQ_BINARY)`);
  return b;
}

export function refModel() {
  const shared = process.env.SAMQ_SHARED_DIR || path.join(here, "..", "..", "..", "shared");
  const m = path.join(shared, "models", "refcode-32m");
  if (!fs.existsSync(path.join(m, "config.json"))) skip(`reference model not found at ${m}`);
  return m;
}

// The Q4_K_M anchor GGUF of refcode-32m (a mixed-precision file as samq quantize writes them),
// or null when the shared golden files are absent.
export function refAnchorGguf() {
  const shared = process.env.SAMQ_SHARED_DIR || path.join(here, "..", "..", "..", "shared");
  const f = path.join(shared, "golden", "anchors", "refcode-32m-Q4_K_M-imatrix.gguf");
  return fs.existsSync(f) ? f : null;
}

const servers = new Set();
function killAll() {
  for (const s of servers) { try { s.proc.kill("SIGKILL"); } catch {} }
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { killAll(); process.exit(1); });

// Starts `samq serve ARGS --port 0`; resolves {url, port, proc, stop(), log()} once /ready is 200.
export async function startServer(args, { readyTimeoutMs = 60000, env = undefined } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "samq-serve-"));
  const portFile = path.join(dir, "port");
  const proc = spawn(samqBinary(), ["serve", ...args, "--port", "0", "--port-file", portFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: env ? { ...process.env, ...env } : process.env,
  });
  let log = "";
  proc.stdout.on("data", (d) => { log += d; });
  proc.stderr.on("data", (d) => { log += d; });
  const exited = new Promise((res) => proc.on("exit", (code, signal) => res({ code, signal })));
  const s = { proc, log: () => log, exited };
  servers.add(s);
  const t0 = Date.now();
  let port = null;
  while (Date.now() - t0 < readyTimeoutMs) {
    if (proc.exitCode !== null) break;
    if (fs.existsSync(portFile)) {
      port = Number(fs.readFileSync(portFile, "utf8").trim());
      try {
        const r = await fetch(`http://127.0.0.1:${port}/ready`);
        if (r.status === 200) break;
      } catch {}
    }
    await sleep(100);
  }
  if (proc.exitCode !== null || port === null) {
    servers.delete(s);
    const msg = `samq serve did not start (args ${args.join(" ")}):\n${log}`;
    throw new Error(msg);
  }
  s.port = port;
  s.url = `http://127.0.0.1:${port}`;
  s.stop = async (signal = "SIGTERM", timeoutMs = 20000) => {
    if (proc.exitCode === null) proc.kill(signal);
    const r = await Promise.race([exited, sleep(timeoutMs).then(() => null)]);
    if (r === null) proc.kill("SIGKILL");
    servers.delete(s);
    fs.rmSync(dir, { recursive: true, force: true });
    return r;
  };
  return s;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let failures = 0;
export async function test(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
export function done() {
  console.log(failures ? `${failures} test(s) failed` : "all passed");
  process.exit(failures ? 1 : 0);
}

export function percentile(xs, p) {
  const v = [...xs].sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)];
}

// Raw HTTP/1.1 over a socket, for what fetch will not send (slow clients, broken framing).
export async function rawRequest(port, chunks, { delayMs = 0, timeoutMs = 15000 } = {}) {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const sock = net.createConnection({ host: "127.0.0.1", port });
    let data = "";
    const timer = setTimeout(() => { sock.destroy(); resolve({ data, timedOut: true }); }, timeoutMs);
    sock.on("data", (d) => { data += d; });
    sock.on("close", () => { clearTimeout(timer); resolve({ data, timedOut: false }); });
    sock.on("error", () => {});
    sock.on("connect", async () => {
      for (const c of chunks) {
        if (sock.destroyed) break;
        sock.write(c);
        if (delayMs) await sleep(delayMs);
      }
    });
  });
}
