// Issue 17 item 10: `samq serve --upstream URL --upstream URL2` makes other OpenAI-compatible
// servers the primary (here: two `samq serve --fake-model` processes as the replicas), balanced
// by fewest outstanding requests, each with its own breaker; samq's SLA, breakers and metrics
// sit in front. Driven by the official `openai` client; loopback only, bounded.
import { loadOpenAI, startServer, test, done, sleep } from "./serve-helpers.mjs";

const OpenAI = await loadOpenAI();
const replica = () => startServer(["--fake-model", "--alias", "fake", "--fake-step-ms", "2", "--parallel", "4",
                                   "--queue", "8", "--enable-fault-injection"]);
const r1 = await replica(), r2 = await replica();
const name = (r) => `upstream:127.0.0.1:${r.port}`;
const front = await startServer(["--upstream", r1.url, "--upstream", `${r2.url}/v1`, "--alias", "fake", "--parallel", "8",
                                 "--queue", "8", "--timeout-ms", "3000", "--breaker-failures", "2", "--breaker-window", "4", "--breaker-cooldown-ms", "1500",
                                 "--breaker-probes", "1"]);
const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 30000 });

async function fault(r, body) {
  const res = await fetch(`${r.url}/internal/fault`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`fault ${res.status}`);
}
async function served(r) {  // generation requests a replica answered with 200
  const t = await (await fetch(`${r.url}/metrics`)).text();
  let n = 0;
  for (const line of t.split("\n"))
    if (line.startsWith("samq_requests_total{") && line.includes('route="/v1/completions"') && line.includes('status="200"')) n += Number(line.split(" ").pop());
  return n;
}
async function frontMetric(prefix) {
  const t = await (await fetch(`${front.url}/metrics`)).text();
  const line = t.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? NaN : Number(line.split(" ").pop());
}
const circuit = (r) => frontMetric(`samq_primary_circuit_state{backend="${name(r)}"}`);

async function one(i, stream = i % 2 === 0) {
  const args = { model: "fake", prompt: "a", max_tokens: 6, temperature: 0 };
  if (stream) {
    const s = await client.completions.create({ ...args, stream: true }).withResponse();
    let text = "";
    for await (const c of s.data) if (c.choices.length) text += c.choices[0].text;
    return { text, by: s.response.headers.get("x-samq-served-by") };
  }
  const { data, response } = await client.completions.create(args).withResponse();
  return { text: data.choices[0].text, by: response.headers.get("x-samq-served-by") };
}

await test("both replicas serve; answers are the replicas' own", async () => {
  const b1 = await served(r1), b2 = await served(r2);
  const res = await Promise.all(Array.from({ length: 12 }, (_, i) => one(i)));
  for (const r of res) if (r.text !== "bcdefg") throw new Error(`text ${JSON.stringify(r.text)}`);
  const by = new Set(res.map((r) => r.by));
  const d1 = (await served(r1)) - b1, d2 = (await served(r2)) - b2;
  console.log(`  replica 1: ${d1}, replica 2: ${d2}, served-by ${[...by].join(", ")}`);
  if (d1 < 2 || d2 < 2 || d1 + d2 !== 12) throw new Error(`unbalanced: ${d1} / ${d2}`);
  if (!by.has(name(r1)) || !by.has(name(r2))) throw new Error(`served-by ${[...by]}`);
});

await test("fewest outstanding: a slow replica gets fewer requests", async () => {
  await fault(r1, { delay_ms: 150 });  // ~1 s per answer on replica 1
  const b1 = await served(r1), b2 = await served(r2);
  // 4 clients, 5 requests each: the fast replica frees its slots sooner and takes more.
  await Promise.all(Array.from({ length: 4 }, async (_, c) => { for (let k = 0; k < 5; k++) await one(c * 10 + k); }));
  await fault(r1, { delay_ms: 0 });
  const d1 = (await served(r1)) - b1, d2 = (await served(r2)) - b2;
  console.log(`  slow replica: ${d1}, fast replica: ${d2}`);
  if (!(d2 >= 2 * d1)) throw new Error(`slow ${d1} vs fast ${d2}`);
});

await test("a failing replica opens only its own breaker; nothing fails; it recovers through a probe", async () => {
  await fault(r1, { fail: true });
  const res = await Promise.all(Array.from({ length: 8 }, (_, i) => one(i)));
  for (const r of res) if (r.text !== "bcdefg") throw new Error(`text ${JSON.stringify(r.text)}`);
  if ((await circuit(r1)) !== 1 || (await circuit(r2)) !== 0) throw new Error(`circuits ${await circuit(r1)} / ${await circuit(r2)}`);
  const after = await served(r1);
  for (let i = 0; i < 4; i++) if ((await one(i)).by !== name(r2)) throw new Error("sent to the open replica");
  if ((await served(r1)) !== after) throw new Error("replica 1 served while open");
  await fault(r1, { fail: false });
  await sleep(1700);  // the cooldown
  for (let i = 0; i < 6; i++) await one(i);
  if ((await circuit(r1)) !== 0) throw new Error(`replica 1 circuit ${await circuit(r1)} after recovery`);
  if ((await served(r1)) <= after) throw new Error("replica 1 not used again");
});

await test("a replica that dies: requests go to the other one", async () => {
  await r2.stop("SIGKILL");
  const res = await Promise.all(Array.from({ length: 6 }, (_, i) => one(i)));
  for (const r of res) if (r.text !== "bcdefg") throw new Error(`text ${JSON.stringify(r.text)}`);
  const h = await fetch(`${front.url}/health`);
  if (h.status !== 200) throw new Error(`front health ${h.status}`);
});

await front.stop();
await r1.stop();
done();
