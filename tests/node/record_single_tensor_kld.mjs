// Records llama.cpp's own single-tensor ΔKL on refcode-32m (issue 15 item 2): the oracle that
// tests/analyze/slow_prediction.cpp checks samq's predicted Δloss against. Runnable by hand; not
// part of ctest (about 20 minutes on 2 cores with the defaults).
//
//   cd tests/node && node record_single_tensor_kld.mjs [--out FILE] [--chunks N] [--threads N] [--limit N] [--imatrix FILE]
//
// For every (tensor, type) below, samq writes a GGUF of ../shared/models/refcode-32m in which that
// one tensor has the type and every other matrix stays BF16 (`samq quantize` with a plan made
// here: the BF16 bytes are copied as they are, the quantized tensor is importance-weighted with
// the imatrix `samq analyze` writes for the first 32 chunks of 512 tokens of calib.txt, the
// calibration slice the test analyses). llama.cpp (node-llama-cpp 3.22.1, CPU) evaluates that
// file and the BF16 file on the same held-out text, and the mean KL divergence
// KL(P_bf16 || P_file) per scored token is computed here from llama.cpp's raw logits (all 8192).
//   text:   calib.txt from byte 1,000,000 on (never used for calibration, never eval.txt):
//           N chunks of 512 tokens, BOS first, each chunk's second half scored (as llama-perplexity)
//   types:  q2_K and q4_K for every matrix; q3_K, q6_K and iq4_xs for a subset (SUBSET below:
//           every matrix kind of layers 0, 3 and 7, plus token_embd and output)
//
// Environment: SAMQ_BINARY (default build/samq), SAMQ_SHARED_DIR.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const shared = process.env.SAMQ_SHARED_DIR ?? path.resolve(repo, "../shared");
const samq = process.env.SAMQ_BINARY ?? path.join(repo, "build/samq");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const out = opt("--out", path.join(repo, "tests/analyze/data/refcode-32m-llamacpp-kld.json"));
const nChunks = Number(opt("--chunks", "16"));
const threads = Number(opt("--threads", "2"));
const limit = Number(opt("--limit", "0"));  // smoke runs: only the first N measurements
const CTX = 512, TEXT_OFFSET = 1000000;
const ALL_TYPES = ["q2_K", "q4_K"], SUBSET_TYPES = ["q3_K", "q6_K", "iq4_xs"];
const SUBSET = (name) => /^blk\.(0|3|7)\./.test(name) || name === "token_embd.weight" || name === "output.weight";
// bytes per block of 256 (ggml-formats.md)
const BLOCK_BYTES = {q2_K: 84, q3_K: 110, q4_K: 144, q6_K: 210, iq4_xs: 136};

const {getLlama, readGgufFileInfo} = await import("node-llama-cpp");
const nlcVersion = JSON.parse(fs.readFileSync(path.join(here, "node_modules/node-llama-cpp/package.json"), "utf8")).version;
const model_dir = path.join(shared, "models/refcode-32m");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "samq-stkld-"));
const run = (...a) => execFileSync(samq, ["-q", ...a], {stdio: ["ignore", "inherit", "inherit"]});

// The BF16 base, the calibration imatrix, and a plan listing the model's tensors in source order.
const bf16 = path.join(work, "bf16.gguf");
run("convert", model_dir, "-o", bf16, "--type", "bf16");
const calibSlice = path.join(work, "calib-300000.txt");
{
  const c = fs.readFileSync(path.join(shared, "data/calib.txt"));
  let e = 300000;
  while (e > 0 && (c[e] & 0xc0) === 0x80) e--;
  fs.writeFileSync(calibSlice, c.subarray(0, e));
}
const imatrix = opt("--imatrix", null) ?? path.join(work, "imatrix.gguf");  // --imatrix: one made before by this analysis
if (!opt("--imatrix", null))
  run("analyze", model_dir, "--calib", calibSlice, "--ctx", String(CTX), "--tokens", "16384", "-o", path.join(work, "s.json"),
      "--imatrix-out", imatrix);
const basePlanPath = path.join(work, "base-plan.json");
run("plan", model_dir, "--policy", "preset:Q8_0", "-o", basePlanPath);
const basePlan = JSON.parse(fs.readFileSync(basePlanPath, "utf8"));
const info = await readGgufFileInfo(bf16);
const shape = new Map(info.tensorInfo.map((t) => [t.name, t.dimensions.map(Number)]));

const pad32 = (n) => Math.ceil(n / 32) * 32;
function planWith(target, type) {
  const p = structuredClone(basePlan);
  for (const t of p.tensors) {
    const dims = shape.get(t.name);
    if (!dims) throw new Error(`${t.name} is not in ${bf16}`);
    const [cols, rows = 1] = dims;
    if (t.name === target) {
      if (cols % 256) throw new Error(`${t.name}: ${cols} columns, not a multiple of 256`);
      t.type = type;
      t.bytes = rows * (cols / 256) * BLOCK_BYTES[type];
    } else {
      t.type = dims.length >= 2 && rows > 1 ? "bf16" : "f32";
      t.bytes = t.params * (t.type === "bf16" ? 2 : 4);
    }
    delete t.dloss;
  }
  p.policy = "single-tensor";
  p.tensors.forEach((t) => (t.dloss = 0));
  const tensorBytes = p.tensors.reduce((s, t) => s + t.bytes, 0);
  p.totals.tensor_bytes = tensorBytes;
  p.totals.file_bytes = p.header.overhead_bytes + p.header.metadata_bytes + p.tensors.reduce((s, t) => s + pad32(t.bytes), 0);
  p.totals.bpw = (8 * tensorBytes) / p.totals.params;
  p.totals.dloss = 0;
  return p;
}

// The held-out text, tokenized by llama.cpp.
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const calib = fs.readFileSync(path.join(shared, "data/calib.txt"));
let s0 = TEXT_OFFSET;
while ((calib[s0] & 0xc0) === 0x80) s0++;
const text = calib.subarray(s0, s0 + nChunks * CTX * 8).toString("utf8");

// KL from the top TOP_K tokens T of the BF16 distribution, the rest grouped into one outcome:
//   sum_{k in T} p_k ln(p_k / q_k) + (1 - P_T) ln((1 - P_T) / (1 - Q_T)),
// a lower bound of the full KL (data processing) that is exact when P and Q are proportional
// outside T; the base's mean mass of T is recorded. (node-llama-cpp hands logits out as a Map per
// position: all 8192 of them cost ~0.1 s per position, the top 64 little.) Log-probs from
// llama.cpp's raw logits: logit - max - ln(totalLogitWeight), totalLogitWeight = sum exp(l - max)
// over the vocabulary; the max token is always among those returned (includeTop / includeMax).
const TOP_K = 64;
async function logProbs(file, base) {
  const model = await llama.loadModel({modelPath: file});
  const ctx = await model.createContext({contextSize: CTX, batchSize: CTX, threads, sequences: 1, flashAttention: false});
  const seq = ctx.getSequence();
  let ids = base?.ids;
  if (!ids) {
    const all = model.tokenize(text, false);
    if (all.length < nChunks * (CTX - 1)) throw new Error(`held-out text gives ${all.length} tokens`);
    ids = [];
    for (let c = 0; c < nChunks; c++) ids.push([model.tokens.bos, ...all.slice(c * (CTX - 1), (c + 1) * (CTX - 1))]);
  }
  const pos = [];  // per scored position: {top: ids of T, lp: Float64Array of log-probs on T}
  for (const chunk of ids) {
    await seq.clearHistory();
    const first = pos.length;
    const items = chunk.map((t, i) => {
      if (i < CTX / 2 || i >= CTX - 1) return t;
      const filter = base ? {tokens: base.pos[first + i - CTX / 2].top, includeMax: true} : {tokens: [], includeTop: TOP_K};
      return [t, {generateNext: {logits: {filter}, totalLogitWeight: true}}];
    });
    const res = await seq.controlledEvaluate(items);
    for (let i = CTX / 2; i < CTX - 1; i++) {
      const n = res[i].next;
      let mx = -Infinity;
      for (const l of n.logits.values()) mx = Math.max(mx, l);
      const lz = mx + Math.log(n.totalLogitWeight);
      const top = base ? base.pos[pos.length].top : [...n.logits.keys()];
      pos.push({top, lp: Float64Array.from(top, (id) => n.logits.get(id) - lz)});
    }
  }
  await ctx.dispose();
  await model.dispose();
  return {ids, pos};
}

const t0 = Date.now();
const base = await logProbs(bf16, null);
let massT = 0;
for (const b of base.pos) for (const l of b.lp) massT += Math.exp(l);
massT /= base.pos.length;
const meanKl = (q) => {
  let s = 0;
  for (let i = 0; i < base.pos.length; i++) {
    const p = base.pos[i].lp, r = q.pos[i].lp;
    let kl = 0, pt = 0, qt = 0;
    for (let k = 0; k < p.length; k++) {
      const pk = Math.exp(p[k]);
      kl += pk * (p[k] - r[k]);
      pt += pk;
      qt += Math.exp(r[k]);
    }
    const pr = Math.max(1 - pt, 0), qr = Math.max(1 - qt, 1e-300);
    if (pr > 0) kl += pr * Math.log(pr / qr);
    s += kl;
  }
  return s / base.pos.length;
};

const jobs = [];
for (const t of basePlan.tensors) {
  const dims = shape.get(t.name);
  if (!dims || dims.length < 2 || dims[1] <= 1) continue;
  for (const ty of ALL_TYPES) jobs.push([t.name, ty]);
  if (SUBSET(t.name)) for (const ty of SUBSET_TYPES) jobs.push([t.name, ty]);
}
if (limit > 0) jobs.splice(limit);
const measurements = [];
for (const [k, [name, type]] of jobs.entries()) {
  const planPath = path.join(work, "plan.json"), file = path.join(work, "one.gguf");
  fs.writeFileSync(planPath, JSON.stringify(planWith(name, type)));
  run("quantize", model_dir, planPath, "--imatrix", imatrix, "-o", file);
  const q = await logProbs(file, base);
  const kld = meanKl(q);
  measurements.push({name, type, kld: Number(kld.toPrecision(6))});
  fs.rmSync(file);
  process.stderr.write(`[${k + 1}/${jobs.length}] ${name} ${type}: KLD ${kld.toExponential(4)} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
}

const doc = {
  schema: "samq.llamacpp-single-tensor-kld/1",
  about: "Mean KL(P_bf16 || P_file) per scored token, computed from llama.cpp's raw logits (node-llama-cpp " + nlcVersion +
    ", CPU, flash attention off, f16 KV cache) of refcode-32m with ONE matrix quantized (by samq quantize, importance-weighted with samq analyze's " +
    "imatrix of calib.txt[0:300000], 16384 tokens, ctx 512) and every other matrix BF16, against the BF16 file (samq convert --type bf16). " +
    `Text: ${nChunks} chunks of ${CTX} tokens (BOS + llama.cpp's tokens) of calib.txt from byte ${TEXT_OFFSET}, the second half of each chunk scored. ` +
    `KL over the BF16 file's top ${TOP_K} tokens plus the rest as one outcome (a lower bound of the full KL; the top ${TOP_K} hold base_top_k_mass of the probability on average). ` +
    "Types: q2_K and q4_K for every matrix; q3_K, q6_K and iq4_xs for layers 0, 3 and 7, token_embd and output. Made by tests/node/record_single_tensor_kld.mjs.",
  chunks: nChunks, ctx: CTX, text_offset: TEXT_OFFSET, scored_tokens: base.pos.length, threads,
  top_k: TOP_K, base_top_k_mass: Number(massT.toFixed(6)),
  measurements,
};
fs.writeFileSync(out + ".tmp", JSON.stringify(doc, null, 1) + "\n");
fs.renameSync(out + ".tmp", out);
fs.rmSync(work, {recursive: true, force: true});
console.log(`wrote ${out}: ${measurements.length} measurements in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
process.exit(0);
