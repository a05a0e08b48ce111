// Interop test (issue 15 item 6): `samq plan --fit-memory` against llama.cpp's own memory sizes.
// For refcode-32m and the qwen2 fixture (../shared/golden/archs/qwen2-tied-bias), at ctx 512 and
// 8192: samq analyzes the model (a short calibration: only the shapes matter here), plans with
// --fit-memory, and quantizes the plan; node-llama-cpp 3.22.1 then has llama.cpp compute what
// that file needs on CPU with its defaults (flash attention auto, one sequence, batch 512, F16
// K/V): the weights (estimateModelResourceRequirementsV2) and the context, i.e. KV cache plus
// compute buffer (estimateContextResourceRequirementsV2, which runs llama.cpp's own allocation
// without allocating). samq's estimate (file bytes + kv_cache_bytes + compute_bytes from
// plan.json) must be within 10 % of llama.cpp's total, and the file must fit the budget by
// llama.cpp's count within that same 10 %. The KV cache is also compared on its own (within 10 %).
//
// Environment (set by ctest): SAMQ_BINARY, SAMQ_SHARED_DIR, SAMQ_WORK_DIR. Exit 77 = skipped
// (never under CI=true: a missing model or node_modules is a failure there).
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import {checks, importGetLlama, samq, shared, skipOrFailInCi, workDir} from "./interop-helpers.mjs";

const fail = (msg) => checks.fail(msg);
const models = {
  "refcode-32m": path.join(shared, "models/refcode-32m"),
  "qwen2-tied-bias": path.join(shared, "golden/archs/qwen2-tied-bias"),
};
for (const dir of Object.values(models)) if (!fs.existsSync(path.join(dir, "config.json"))) skipOrFailInCi(`${dir} missing`);
if (!fs.existsSync(samq)) {
  console.error(`FAIL: samq binary not found at ${samq}`);
  process.exit(1);
}
const calibFile = path.join(shared, "data/calib.txt");
if (!fs.existsSync(calibFile)) skipOrFailInCi(`${calibFile} missing`);
const getLlama = await importGetLlama();
const {readGgufFileInfo, GgufInsights} = await import("node-llama-cpp");
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const work = workDir("fit-memory");
const run = (args) => execFileSync(samq, ["-q", ...args], {encoding: "utf8", stdio: ["ignore", "pipe", "pipe"]});
const MB = (b) => (b / 1e6).toFixed(2) + " MB";
const within = (a, b, tol) => Math.abs(a - b) <= tol * b;

const calib = path.join(work, "calib.txt");
fs.writeFileSync(calib, fs.readFileSync(calibFile).subarray(0, 20000));
let compared = 0;
for (const [name, dir] of Object.entries(models)) {
  const sens = path.join(work, `${name}.sensitivity.json`);
  run(["analyze", dir, "--calib", calib, "--tokens", "512", "--ctx", "512", "-o", sens, "--imatrix-out", "none"]);
  // llama.cpp's context sizes do not depend on the weights' types: a BF16 file gives the budget.
  const bf16 = path.join(work, `${name}-bf16.gguf`);
  run(["convert", dir, "-o", bf16, "--type", "bf16"]);
  const bf16Insights = await GgufInsights.from(await readGgufFileInfo(bf16), llama);
  for (const ctx of [512, 8192]) {
    const ctxOpts = {contextSize: ctx, modelGpuLayers: 0, batchSize: 512, sequences: 1, flashAttention: "auto"};
    // Budget: llama.cpp's context plus 60 % of the BF16 weights (about 5 bits per weight).
    const budget = Math.round((await bf16Insights.estimateContextResourceRequirementsV2(ctxOpts)).cpuRam +
                              0.6 * bf16Insights.modelSize);
    const plan = path.join(work, `${name}-${ctx}.plan.json`);
    run(["plan", sens, "--fit-memory", String(budget), "--ctx", String(ctx), "-o", plan]);
    const p = JSON.parse(fs.readFileSync(plan, "utf8"));
    const d = p.budget.details;
    const gguf = path.join(work, `${name}-${ctx}.gguf`);
    run(["quantize", dir, plan, "-o", gguf]);
    const info = await readGgufFileInfo(gguf);
    const ins = await GgufInsights.from(info, llama);
    const weights = (await ins.estimateModelResourceRequirementsV2({gpuLayers: 0})).cpuRam;
    const context = (await ins.estimateContextResourceRequirementsV2(ctxOpts)).cpuRam;
    // The F16 K/V cache as llama.cpp sizes it (llama_kv_cache: n_layer x (n_embd_k_gqa + n_embd_v_gqa)
    // x ctx), from the file's own metadata.
    const a = info.metadata[info.metadata.general.architecture];
    const nHead = a.attention.head_count, nKv = a.attention.head_count_kv ?? nHead;
    const kDim = a.attention.key_length ?? a.embedding_length / nHead, vDim = a.attention.value_length ?? kDim;
    const kvLlama = a.block_count * nKv * (kDim + vDim) * 2 * ctx;
    const file = p.totals.file_bytes;
    const samqTotal = file + d.kv_cache_bytes + d.compute_bytes;
    const llamaTotal = weights + context;
    console.log(`${name} ctx ${ctx}: budget ${MB(budget)}; samq: file ${MB(file)} + KV ${MB(d.kv_cache_bytes)} + ` +
                `compute ${MB(d.compute_bytes)} = ${MB(samqTotal)}; llama.cpp: weights ${MB(weights)} + context ${MB(context)} ` +
                `(KV ${MB(kvLlama)}, compute ${MB(context - kvLlama)}) = ${MB(llamaTotal)}; ratio ${(samqTotal / llamaTotal).toFixed(3)}`);
    if (!within(samqTotal, llamaTotal, 0.10))
      fail(`${name} ctx ${ctx}: samq's estimate ${MB(samqTotal)} is not within 10 % of llama.cpp's ${MB(llamaTotal)}`);
    if (!within(d.kv_cache_bytes, kvLlama, 0.10))
      fail(`${name} ctx ${ctx}: samq's KV cache ${MB(d.kv_cache_bytes)} is not within 10 % of llama.cpp's ${MB(kvLlama)}`);
    if (llamaTotal > 1.10 * budget) fail(`${name} ctx ${ctx}: llama.cpp needs ${MB(llamaTotal)} for a budget of ${MB(budget)}`);
    compared++;
  }
}
if (compared !== 4) fail(`only ${compared} of 4 comparisons ran`);
checks.finish();
console.log("PASS");
