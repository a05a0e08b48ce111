// Records llama.cpp's own single-tensor ΔKL on refcode-32m (issue 15 item 2): the oracle that
// tests/analyze/slow_prediction.cpp checks samq's predicted Δloss against. Runnable by hand; not
// part of ctest. The committed fixture (tests/analyze/data/refcode-32m-llamacpp-kld.json) was made
// with the defaults (and samq c65dc74): 185 measurements in 34 minutes on 2 cores shared with
// other work; a measurement takes 3 s on idle cores.
//
//   cd tests/node && node record_single_tensor_kld.mjs [--out FILE] [--chunks N] [--threads N]
//       [--imatrix FILE] [--limit N] [--only REGEX] [--samq-full]
//
// For every (tensor, type) below, samq writes a GGUF of ../shared/models/refcode-32m in which that
// one tensor has the type and every other matrix stays BF16 (`samq quantize` with a plan made
// here: the BF16 bytes are copied as they are, the quantized tensor is importance-weighted with
// the imatrix `samq analyze` writes for the first 32 chunks of 512 tokens of calib.txt, the
// calibration slice the test analyses). llama.cpp (node-llama-cpp 3.22.1, CPU) evaluates that
// file and the BF16 file on the same held-out text, and the mean KL divergence
// KL(P_bf16 || P_file) per scored token is computed here from llama.cpp's raw logits: over the BF16
// file's top 64 tokens plus the rest as one outcome (a lower bound of the full KL, see TOP_K).
//   text:   calib.txt from byte 1,000,000 on (never used for calibration, never eval.txt):
//           N chunks of 512 tokens, BOS first, each chunk's second half scored (llama-perplexity's
//           windows). Default N = 2 (510 scored tokens): every ΔKL, down to the q6_K ones of about
//           2e-5, is still several of its own standard errors (kld_se) above 0, and the floor (the
//           BF16 file measured against itself) is about 3e-8; more chunks cost time linearly.
//   types:  q2_K and q4_K for every matrix; q3_K, q6_K and iq4_xs for a subset (SUBSET below:
//           every matrix kind of layers 0, 3 and 7, plus token_embd and output), one type after
//           the other; the fixture is rewritten after every measurement ("complete": false until
//           the last).
//   --only REGEX: only the measurements whose "name type" matches (pilot runs).
//   --subset-types LIST: the subset's types instead of q3_K,q6_K,iq4_xs (also q5_K, q8_0).
//   --samq-full: also `samq eval` every file on the same windows against the BF16 file's logits
//           (samq_full_kld: samq's engine, full vocabulary), to see how far the top-64 bound falls
//           short of the full KL.
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
const nChunks = Number(opt("--chunks", "2"));
const threads = Number(opt("--threads", "2"));
const limit = Number(opt("--limit", "0"));  // smoke runs: only the first N measurements
const only = opt("--only", null);
// --samq-full: also `samq eval` every file on the same windows against the BF16 file's logits: the
// full-vocabulary KL from samq's engine (samq_full_kld), to see how far the top-64 bound falls short
const samqFull = args.includes("--samq-full");
const CTX = 512, TEXT_OFFSET = 1000000;
const ALL_TYPES = ["q2_K", "q4_K"], SUBSET_TYPES = opt("--subset-types", "q3_K,q6_K,iq4_xs").split(",");
const SUBSET = (name) => /^blk\.(0|3|7)\./.test(name) || name === "token_embd.weight" || name === "output.weight";
// bytes per block of 256 (ggml-formats.md)
const BLOCK_BYTES = {q2_K: 84, q3_K: 110, q4_K: 144, q5_K: 176, q6_K: 210, iq4_xs: 136, q8_0: 272};

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
const textPath = path.join(work, "heldout.txt"), baseLogits = path.join(work, "bf16.logits");
if (samqFull) {
  fs.writeFileSync(textPath, text);
  run("eval", bf16, "--text", textPath, "--chunks", String(nChunks), "--save-logits", baseLogits);
}
const samqKl = (file) => {
  const j = path.join(work, "eval.json");
  run("eval", file, "--text", textPath, "--chunks", String(nChunks), "--base-logits", baseLogits, "--json", j);
  return JSON.parse(fs.readFileSync(j, "utf8")).kld.mean;
};

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
    // llama-perplexity's windows (and samq eval's): BOS + the text's tokens, cut into chunks of
    // CTX, each chunk's first token replaced by BOS
    const full = [model.tokens.bos, ...all];
    if (full.length < nChunks * CTX) throw new Error(`held-out text gives ${all.length} tokens`);
    ids = [];
    for (let c = 0; c < nChunks; c++) ids.push([model.tokens.bos, ...full.slice(c * CTX + 1, (c + 1) * CTX)]);
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
// The mean KL over the scored tokens and its standard error from the means of blocks of 85 scored
// tokens (a third of a chunk's 255, so that a few chunks still give a few blocks; neighbouring
// blocks are a little correlated, which makes it an estimate on the low side): the measurement's
// own noise from the finite text.
const BLOCK = (CTX / 2 - 1) / 3, nBlocks = nChunks * 3;
const meanKl = (q) => {
  let s = 0;
  const block = new Float64Array(nBlocks);
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
    block[Math.floor(i / BLOCK)] += kl / BLOCK;
  }
  const mean = s / base.pos.length;
  let v = 0;
  for (const b of block) v += (b - mean) ** 2;
  return {mean, se: Math.sqrt(v / (nBlocks - 1) / nBlocks)};
};
// The floor: the BF16 file evaluated again through the measuring path (0 when llama.cpp is
// deterministic at this thread count).
const floor = meanKl(await logProbs(bf16, base));

// One type at a time (q2_K, q4_K, then the subset's), so that a partial fixture holds whole types.
const jobs = [];
const matrices = basePlan.tensors.filter((t) => {
  const dims = shape.get(t.name);
  return dims && dims.length >= 2 && dims[1] > 1;
});
for (const ty of ALL_TYPES) for (const t of matrices) jobs.push([t.name, ty]);
for (const ty of SUBSET_TYPES) for (const t of matrices) if (SUBSET(t.name)) jobs.push([t.name, ty]);
if (only) jobs.splice(0, jobs.length, ...jobs.filter(([n, ty]) => new RegExp(only).test(`${n} ${ty}`)));
if (limit > 0) jobs.splice(limit);
const writeDoc = (complete) => {
  const doc = {
    schema: "samq.llamacpp-single-tensor-kld/1",
    about: "Mean KL(P_bf16 || P_file) per scored token, computed from llama.cpp's raw logits (node-llama-cpp " + nlcVersion +
      ", CPU, flash attention off, f16 KV cache) of refcode-32m with ONE matrix quantized (by samq quantize, importance-weighted with samq analyze's " +
      "imatrix of calib.txt[0:300000], 16384 tokens, ctx 512) and every other matrix BF16, against the BF16 file (samq convert --type bf16). " +
      `Text: ${nChunks} chunks of ${CTX} tokens (BOS + llama.cpp's tokens) of calib.txt from byte ${TEXT_OFFSET}, the second half of each chunk scored. ` +
      `KL over the BF16 file's top ${TOP_K} tokens plus the rest as one outcome (a lower bound of the full KL; the top ${TOP_K} hold base_top_k_mass of the probability on average). ` +
      `Types: ${ALL_TYPES.join(" and ")} for every matrix; ${SUBSET_TYPES.join(", ")} for layers 0, 3 and 7, token_embd and output. Made by tests/node/record_single_tensor_kld.mjs.`,
    chunks: nChunks, ctx: CTX, text_offset: TEXT_OFFSET, scored_tokens: base.pos.length, threads,
    top_k: TOP_K, base_top_k_mass: Number(massT.toFixed(6)), floor_kld: floor.mean,
    complete, kld_se_about: "standard error of kld from the means of blocks of 85 scored tokens (3 per chunk)", measurements,
  };
  fs.writeFileSync(out + ".tmp", JSON.stringify(doc, null, 1) + "\n");
  fs.renameSync(out + ".tmp", out);
};
const measurements = [];
for (const [k, [name, type]] of jobs.entries()) {
  const planPath = path.join(work, "plan.json"), file = path.join(work, "one.gguf");
  fs.writeFileSync(planPath, JSON.stringify(planWith(name, type)));
  const tq = Date.now();
  run("quantize", model_dir, planPath, "--imatrix", imatrix, "-o", file);
  const te = Date.now();
  const q = await logProbs(file, base);
  const {mean: kld, se} = meanKl(q);
  const m = {name, type, kld: Number(kld.toPrecision(6)), kld_se: Number(se.toPrecision(3))};
  if (samqFull) m.samq_full_kld = Number(samqKl(file).toPrecision(6));
  measurements.push(m);
  fs.rmSync(file);
  writeDoc(false);  // a partial fixture after every measurement ("complete": false)
  process.stderr.write(`[${k + 1}/${jobs.length}] ${name} ${type}: KLD ${kld.toExponential(4)} ± ${se.toExponential(2)}${samqFull ? ` (samq full ${measurements.at(-1).samq_full_kld.toExponential(4)})` : ""} (quantize ${((te - tq) / 1000).toFixed(1)} s, llama.cpp ${((Date.now() - te) / 1000).toFixed(1)} s; ${((Date.now() - t0) / 1000).toFixed(0)} s in all)\n`);
}

writeDoc(measurements.length === jobs.length);
fs.rmSync(work, {recursive: true, force: true});
console.log(`wrote ${out}: ${measurements.length} measurements in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
process.exit(0);
