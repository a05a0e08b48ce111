// Records what llama.cpp (node-llama-cpp 3.22.1, prebuilt CPU binaries) computes for a few
// hundred-token texts, teacher-forced, so samq can be compared with it position by position
// (tests/model/slow_llamacpp_fixture.cpp). Runnable by hand; not part of ctest (about 10 minutes on
// 2 cores with the defaults, 6 texts x 512 tokens: the BF16 model's token-by-token decode is most of it).
//
//   cd tests/node && node record_llamacpp_fixture.mjs [--out FILE] [--flash on|off|auto]
//        [--threads N] [--batch N] [--texts N] [--len N] [--no-decode] [--no-greedy]
//        [--alt-flash on|off] [--kv F16|F32|...] [--model NAME] [--bf16 FILE]
//
// For each model (the BF16 file from `samq convert ../shared/models/refcode-32m --type bf16`, and
// ../shared/golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf) and each text (slices of
// ../shared/data/calib.txt, never eval.txt: BOS + the first len-1 tokens of llama.cpp's
// tokenization of the slice):
//   prefill: the whole text evaluated in one llama_decode (batch size >= len), next-token
//            top-5 log-probs at every position (from the raw logits and their total weight);
//   decode:  the same text fed one token per llama_decode (what generation does);
//   greedy:  from BOS + the first 32 tokens, 32 greedy steps (temperature 0) with top-5;
//   prefill_alt (with --alt-flash on|off): prefill again in a second context whose only change is
//            flash attention, to measure how much llama.cpp disagrees with itself.
// Every setting that changes llama.cpp's numerics is passed explicitly and written into the
// fixture: flash attention, K/V cache types, threads, batch size, context size.
//
// Environment: SAMQ_BINARY (to convert the BF16 file when --bf16 is not given), SAMQ_SHARED_DIR.
import {execFileSync} from "node:child_process";
import {createHash} from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

import {llamaBuildCpuFeatures} from "./interop-helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const shared = process.env.SAMQ_SHARED_DIR ?? path.resolve(repo, "../shared");

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const flag = (name) => args.includes(name);
const out = opt("--out", path.join(repo, "tests/data/llamacpp/teacher-fixture.json"));
const flashArg = opt("--flash", "off");
const flashAttention = flashArg === "auto" ? "auto" : flashArg === "on";
const threads = Number(opt("--threads", "2"));
const nTexts = Number(opt("--texts", "6"));
const LEN = Number(opt("--len", "512"));
const batchSize = Number(opt("--batch", String(Math.max(512, LEN))));
const contextSize = Number(opt("--ctx", String(Math.max(512, LEN + 64))));
const kvType = opt("--kv", "F16");
const TOP_K = 5;
const GREEDY_PROMPT = 32, GREEDY_STEPS = 32;
const onlyModel = opt("--model", null);
const altFlashArg = opt("--alt-flash", null);
const altFlash = altFlashArg === null ? null : altFlashArg === "auto" ? "auto" : altFlashArg === "on";

if (!fs.existsSync(path.join(here, "node_modules/node-llama-cpp"))) {
  console.log("SKIP: tests/node/node_modules/node-llama-cpp missing (run scripts/setup.sh)");
  process.exit(77);
}
const {getLlama} = await import("node-llama-cpp");
const nlcVersion = JSON.parse(fs.readFileSync(path.join(here, "node_modules/node-llama-cpp/package.json"), "utf8")).version;

let bf16 = opt("--bf16", null);
if (!bf16) {
  const samq = process.env.SAMQ_BINARY ?? path.join(repo, "build/samq");
  bf16 = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "samq-rec-")), "refcode-32m-bf16.gguf");
  execFileSync(samq, ["-q", "convert", path.join(shared, "models/refcode-32m"), "-o", bf16, "--type", "bf16"],
               {stdio: ["ignore", "inherit", "inherit"]});
}
const models = {
  "refcode-32m-bf16": {file: bf16, made_by: "samq convert ../shared/models/refcode-32m --type bf16"},
  "refcode-32m-Q4_K_M-imatrix": {file: path.join(shared, "golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"),
                                 made_by: "../shared/golden/anchors (llama-quantize)"},
};

// Slices of calib.txt, cut on UTF-8 boundaries, spread over the file.
const calib = fs.readFileSync(path.join(shared, "data/calib.txt"));
const slice = (start, len) => {
  let s = start, e = Math.min(calib.length, start + len);
  while (s < e && (calib[s] & 0xc0) === 0x80) s++;
  while (e > s && e < calib.length && (calib[e] & 0xc0) === 0x80) e--;
  return {start: s, end: e, text: calib.subarray(s, e).toString("utf8")};
};
const OFFSETS = [0, 400000, 900000, 1500000, 1800000, 1200000].slice(0, nTexts);

const r6 = (x) => Math.round(x * 1e6) / 1e6;
// Top-k natural-log probabilities of one output of controlledEvaluate: logit - max - log(sum exp(logit - max)).
const topOf = (next) => {
  const e = [...next.logits.entries()].slice(0, TOP_K);
  const mx = e[0][1];
  const lse = Math.log(next.totalLogitWeight);
  return e.map(([id, l]) => [id, r6(l - mx - lse)]);
};
const want = {generateNext: {logits: {filter: {includeTop: TOP_K}}, totalLogitWeight: true}};

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const recorded = {};
for (const [key, m] of Object.entries(models)) {
  if (onlyModel && key !== onlyModel) continue;
  const t0 = Date.now();
  const model = await llama.loadModel({modelPath: m.file});
  const ctxOpts = {contextSize, batchSize, threads, flashAttention, sequences: 1,
                   experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType};
  const ctx = await model.createContext(ctxOpts);
  const seq = ctx.getSequence();
  const altCtx = altFlash === null ? null : await model.createContext({...ctxOpts, flashAttention: altFlash});
  const altSeq = altCtx?.getSequence();
  const texts = [];
  for (const off of OFFSETS) {
    const s = slice(off, 8 * LEN);
    const ids = [model.tokens.bos, ...model.tokenize(s.text, false)].slice(0, LEN);
    if (ids.length < LEN) throw new Error(`calib.txt[${off}...] gives only ${ids.length} tokens`);
    // prefill: one call, every position asks for its next-token distribution
    await seq.clearHistory();
    const res = await seq.controlledEvaluate(ids.map((t) => [t, want]));
    const prefill = ids.map((_, i) => topOf(res[i].next));
    let prefillAlt;
    if (altSeq) {
      await altSeq.clearHistory();
      const r = await altSeq.controlledEvaluate(ids.map((t) => [t, want]));
      prefillAlt = ids.map((_, i) => topOf(r[i].next));
    }
    let decode;
    if (!flag("--no-decode")) {
      await seq.clearHistory();
      decode = [];
      for (const t of ids) {
        const r = await seq.controlledEvaluate([[t, want]]);
        decode.push(topOf(r[0].next));
      }
    }
    let greedy;
    if (!flag("--no-greedy")) {
      await seq.clearHistory();
      const prompt = ids.slice(0, GREEDY_PROMPT);
      const steps = [];
      const gen = {generateNext: {...want.generateNext, token: true, options: {temperature: 0}}};
      let r = await seq.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t, gen] : t)));
      let next = r[prompt.length - 1].next;
      for (let i = 0; i < GREEDY_STEPS; i++) {
        steps.push({token: next.token, top5: topOf(next)});
        if (i + 1 < GREEDY_STEPS) next = (await seq.controlledEvaluate([[next.token, gen]]))[0].next;
      }
      greedy = {prompt_ids: prompt, generated_ids: steps.map((s) => s.token), steps};
    }
    texts.push({source: `calib.txt[${s.start}:${s.end}] (first ${LEN} tokens with BOS)`, ids, prefill,
                ...(prefillAlt ? {prefill_alt: prefillAlt} : {}),
                ...(decode ? {decode} : {}), ...(greedy ? {greedy} : {})});
  }
  await ctx.dispose();
  if (altCtx) await altCtx.dispose();
  await model.dispose();
  recorded[key] = {made_by: m.made_by, sha256: createHash("sha256").update(fs.readFileSync(m.file)).digest("hex"), texts};
  console.log(`recorded ${key}: ${texts.length} texts x ${LEN} positions in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

const fixture = {
  format:
    "llama.cpp teacher-forced next-token distributions, written by tests/node/record_llamacpp_fixture.mjs. " +
    "models.<name>: {made_by, sha256 of the GGUF, texts[]}. Each text: ids (BOS + llama.cpp's tokenization, no " +
    "special-token parsing), prefill[i] / decode[i] = top-5 [[id, natural-log probability], ...] (highest first) " +
    "of the distribution at position i (predicting ids[i+1]); prefill: all ids in one llama_decode; decode: one " +
    "token per llama_decode; prefill_alt (optional): as prefill, in a context that differs only by " +
    "llama_cpp.prefill_alt_settings. greedy: from prompt_ids, temperature-0 steps {token, top5}. Log-probs are " +
    "logit - max - log(sum exp(logit - max)) from llama.cpp's raw logits, rounded to 1e-6.",
  // system_info / cpu_features: the CPU build of llama.cpp that computed the log-probs (its
  // numerics are ISA-specific; see fixtureCpuBuild in interop-helpers.mjs).
  llama_cpp: {binding: "node-llama-cpp", version: nlcVersion, gpu: false, cpu: os.cpus()[0]?.model ?? "?",
              system_info: llama.systemInfo, cpu_features: llamaBuildCpuFeatures(llama.systemInfo),
              settings: {flashAttention, kv_cache_type_k: kvType, kv_cache_type_v: kvType, threads, batchSize,
                         contextSize, sequences: 1},
              ...(altFlash === null ? {} : {prefill_alt_settings: {flashAttention: altFlash}})},
  len: LEN,
  top_k: TOP_K,
  models: recorded,
};
fs.mkdirSync(path.dirname(out), {recursive: true});
fs.writeFileSync(out, JSON.stringify(fixture) + "\n");
console.log(`wrote ${out} (${(fs.statSync(out).size / 1024).toFixed(0)} KiB)`);
process.exit(0);
