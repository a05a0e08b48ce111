// Shared by the *_interop.test.mjs tests (samq's files in an independent llama.cpp through
// node-llama-cpp): repository paths, the samq binary and ../shared from ctest's environment, a
// work folder, the llama.cpp import (exit 77 = ctest SKIP when node-llama-cpp is missing) and a
// failure counter.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import {fileURLToPath} from "node:url";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../..");
export const samq = process.env.SAMQ_BINARY ?? path.join(repo, "build/samq");
export const shared = process.env.SAMQ_SHARED_DIR ?? path.resolve(repo, "../shared");

// Exit 77 (ctest SKIP) for a missing dependency, except under CI=true, where CI's setup.sh must
// have installed everything: there it is a failure (exit 1).
export function skipOrFailInCi(why) {
  if (process.env.CI === "true") {
    console.error(`FAIL (CI=true, a skip is not allowed): ${why}`);
    process.exit(1);
  }
  console.log(`SKIP: ${why}`);
  process.exit(77);
}

// node-llama-cpp's getLlama, or a skip (a failure under CI=true) when the package is not installed.
export async function importGetLlama() {
  if (!fs.existsSync(path.join(here, "node_modules/node-llama-cpp")))
    skipOrFailInCi("tests/node/node_modules/node-llama-cpp missing (run scripts/setup.sh)");
  return (await import("node-llama-cpp")).getLlama;
}

// SAMQ_WORK_DIR (or a fresh temporary folder), joined with sub, created.
export function workDir(...sub) {
  const dir = path.join(process.env.SAMQ_WORK_DIR ?? fs.mkdtempSync("/tmp/samq-node-"), ...sub);
  fs.mkdirSync(dir, {recursive: true});
  return dir;
}

// fail(msg) prints and counts; finish() exits 1 after any failure.
export const checks = {
  failures: 0,
  fail(msg) {
    this.failures++;
    console.error("FAIL: " + msg);
  },
  finish() {
    if (this.failures) {
      console.error(`${this.failures} failure(s)`);
      process.exit(1);
    }
  },
};

// ---- which llama.cpp CPU build made a fixture, and can this machine reproduce its numerics ----
// llama.cpp's log-probs depend on the CPU backend variant node-llama-cpp loads (ggml picks the
// best libggml-cpu-<variant>.so the CPU supports): AVX-512/AMX kernels sum in another order than
// AVX2 ones, so log-probs differ by a few 1e-2 and near-tie greedy choices can flip. Fixtures
// record the CPU features of the build that made them (llama_cpp.cpu_features, /proc/cpuinfo flag
// names); a machine lacking one of them cannot reproduce those numbers, and the comparisons
// that depend on them are skipped there (everything else still runs).

// llama.cpp's feature names (llama.systemInfo, "CPU : SSE3 = 1 | AVX2 = 1 | ...") -> the
// /proc/cpuinfo flags each needs (ggml-cpu/arch/x86/cpu-feats.cpp: AVX512 = F+CD+VL+DQ+BW; the
// AMX_INT8 build also needs AMX_TILE). Names that are not ISA features (LLAMAFILE, REPACK,
// OPENMP, ...) map to nothing.
const LLAMA_FEATURE_FLAGS = {
  SSE3: ["pni"], SSSE3: ["ssse3"], AVX: ["avx"], AVX_VNNI: ["avx_vnni"], AVX2: ["avx2"], F16C: ["f16c"],
  FMA: ["fma"], BMI2: ["bmi2"], AVX512: ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
  AVX512_VBMI: ["avx512vbmi"], AVX512_VNNI: ["avx512_vnni"], AVX512_BF16: ["avx512_bf16"],
  AMX_INT8: ["amx_tile", "amx_int8"],
  NEON: ["asimd"], FP16_VA: ["asimdhp"], DOTPROD: ["asimddp"], MATMUL_INT8: ["i8mm"], SVE: ["sve"],
};

// The fixtures committed before llama_cpp.cpu_features existed were all recorded with
// node-llama-cpp 3.22.1's libggml-cpu-sapphirerapids.so (an Intel Xeon with AVX-512 and AMX);
// ggml/src/CMakeLists.txt: sapphirerapids = SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VBMI
// AVX512_VNNI AVX512_BF16 AMX_TILE AMX_INT8. Keep in sync with tests/model/slow_llamacpp_fixture.cpp.
export const SAPPHIRERAPIDS_CPU_FEATURES = [
  "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
  "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
];

// The /proc/cpuinfo flags the loaded llama.cpp CPU backend needs, from llama.systemInfo
// (sorted, without duplicates).
export function llamaBuildCpuFeatures(systemInfo) {
  const flags = new Set();
  for (const m of String(systemInfo).matchAll(/([A-Z0-9_]+)\s*=\s*1\b/g))
    for (const f of LLAMA_FEATURE_FLAGS[m[1]] ?? []) flags.add(f);
  return [...flags].sort();
}

// This machine's CPU flags (first "flags"/"Features" line of /proc/cpuinfo); null if unreadable.
export function machineCpuFlags(cpuinfo = null) {
  let text = cpuinfo;
  if (text === null) {
    try {
      text = fs.readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return null;
    }
  }
  const line = text.split("\n").find((l) => /^(flags|Features)\s*:/.test(l));
  return line ? new Set(line.slice(line.indexOf(":") + 1).trim().split(/\s+/)) : new Set();
}

// The llama.cpp build a fixture came from: {features (cpuinfo flags), source (how we know)}.
export function fixtureCpuBuild(fixture) {
  const lc = fixture?.llama_cpp ?? {};
  if (Array.isArray(lc.cpu_features))
    return {features: lc.cpu_features, source: "llama_cpp.cpu_features recorded in the fixture"};
  if (typeof lc.system_info === "string")
    return {features: llamaBuildCpuFeatures(lc.system_info), source: "llama_cpp.system_info recorded in the fixture"};
  return {features: SAPPHIRERAPIDS_CPU_FEATURES, source: "no record in the fixture: assumed node-llama-cpp's sapphirerapids build"};
}

// The features of `required` this machine lacks (all of them when /proc/cpuinfo is unreadable).
export function missingCpuFeatures(required, flags = machineCpuFlags()) {
  return required.filter((f) => !flags || !flags.has(f));
}

// samq's base-logits file (src/eval/logits_codec.h): tokens, and per scored position the codes;
// returns {tokens, top: per chunk, per scored position: {id: argmax (-1 when the top code is
// tied), gap: top-1 minus top-2 log-prob}}.
export function readSamqLogits(file) {
  const b = fs.readFileSync(file);
  let off = 0;
  const u32 = () => { const v = b.readUInt32LE(off); off += 4; return v; };
  if (b.toString("latin1", 0, 8) !== "SAMQLGT1") throw new Error(`${file}: not a samq logits file`);
  off = 8;
  const nCtx = u32(), nVocab = u32(), nChunk = u32();
  const tokens = [];
  for (let i = 0; i < nCtx * nChunk; i++) { tokens.push(b.readInt32LE(off)); off += 4; }
  const shaLen = u32();
  off += shaLen;
  const top = [];
  for (let c = 0; c < nChunk; c++) {
    u32();  // raw bytes
    const zBytes = u32();
    const raw = zlib.inflateSync(b.subarray(off, off + zBytes));
    off += zBytes;
    let p = 0;
    const rows = [];
    while (p < raw.length) {
      const scale = raw.readFloatLE(p);  // log p = scale * code + min_log_prob
      p += 8;
      const n = raw.readUInt32LE(p); p += 4;
      let id = -1, best = -1, bestCode = -1, second = 0, tied = false;  // ids: varint (id - previous id - 1), from -1
      for (let k = 0; k < n; k++) {
        let delta = 0, shift = 0, byte;
        do { byte = raw[p++]; delta |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80);
        id += delta + 1;
        const code = raw.readUInt16LE(p); p += 2;
        if (code > bestCode) { second = Math.max(second, bestCode); bestCode = code; best = id; tied = false; }
        else if (code === bestCode) tied = true;
        else second = Math.max(second, code);
      }
      rows.push({id: tied ? -1 : best, gap: tied ? 0 : scale * (bestCode - second)});
    }
    top.push(rows);
  }
  return {nCtx, nVocab, tokens, top};
}

// samq's greedy next token (from `samq eval --save-logits`, readSamqLogits) against llama.cpp's on
// the same chunks: llama.cpp evaluates each chunk of ctx tokens (BOS first, as samq eval and
// llama-perplexity do) and generates greedily at the scored positions (the second half). Counts:
// same (samq's top-2 gap >= margin), near (gap < margin: the engines sum in other orders) and
// nearSame among them, ties (samq's codes tie), total (not tied), and the first differences.
export async function topOneAgreement(m, ours, ctx, margin, contextSize = ctx) {
  const c0 = await m.createContext({contextSize, batchSize: ctx, threads: 2});
  const seq = c0.getSequence();
  const r = {same: 0, total: 0, ties: 0, nearSame: 0, near: 0, diffs: []};
  for (let c = 0; c < ours.top.length; c++) {
    const chunk = ours.tokens.slice(c * ctx, (c + 1) * ctx);
    chunk[0] = m.tokens.bos;
    await seq.clearHistory();
    const input = chunk.map((t, j) => (j >= ctx / 2 && j < ctx - 1 ? [t, {generateNext: {token: true, options: {temperature: 0}}}] : t));
    const outs = await seq.controlledEvaluate(input);
    ours.top[c].forEach(({id, gap}, k) => {
      const j = ctx / 2 + k;
      const l = outs[j]?.next?.token;
      if (id < 0) { r.ties++; return; }
      r.total++;
      if (gap < margin) {
        r.near++;
        r.nearSame += id === l ? 1 : 0;
        return;
      }
      if (id === l) r.same++;
      else if (r.diffs.length < 5) r.diffs.push(`chunk ${c} position ${j}: samq ${id}, llama.cpp ${l} (samq's top-2 gap ${gap.toFixed(4)})`);
    });
  }
  await c0.dispose();
  return r;
}
