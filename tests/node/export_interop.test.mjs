// Interop test for `samq quantize`: a mixed-precision file (seven ggml types, from
// `samq plan --policy preset:Q4_K_M` plus --keep pins, quantized with llama.cpp's importance
// matrix) must load in an independent llama.cpp (node-llama-cpp 3.22.1, CPU), and llama.cpp
// and samq must agree on it:
//   1. greedy continuations of a few prompts: `samq generate --temp 0` equals llama.cpp's,
//      except after a step where llama.cpp's top-1/top-2 probability gap is below MARGIN;
//   2. same-top-1 agreement against the BF16 model on the first chunks of eval.txt (ctx 512,
//      second half of each chunk scored, as llama-perplexity): llama.cpp's figure, computed
//      here from per-position greedy tokens of both files, within TOL_TOP1 points of
//      `samq eval FILE --base MODEL`'s.
// Environment (set by ctest): SAMQ_BINARY, SAMQ_SHARED_DIR, SAMQ_WORK_DIR. Exit 77 = skipped.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import {checks, importGetLlama, samq, shared, workDir} from "./interop-helpers.mjs";

const getLlama = await importGetLlama();
const work = workDir("export");

const MARGIN = 2e-2;
const TOL_TOP1 = 1.5;  // percentage points
const N_GEN = 24;
const CHUNKS = 3, CTX = 512;
const fail = (m) => checks.fail(m);
const run = (args) => execFileSync(samq, args, {encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"]});

// ---- the file ----------------------------------------------------------------------------------
const model = path.join(shared, "models/refcode-32m");
const planPath = path.join(work, "mixed.plan.json");
const out = path.join(work, "mixed.gguf");
run(["-q", "plan", model, "--policy", "preset:Q4_K_M", "--keep", "attn_q=q2_K", "--keep", "attn_k=q8_0",
     "--keep", "ffn_up=iq4_xs", "--keep", "ffn_gate=q5_K", "--keep", "attn_output=q3_K", "-o", planPath]);
run(["-q", "quantize", model, planPath, "-o", out, "--imatrix", path.join(shared, "golden/anchors/refcode-32m-imatrix.gguf")]);
const plan = JSON.parse(fs.readFileSync(planPath, "utf8"));
const types = new Set(plan.tensors.map((t) => t.type));
if (types.size < 7) fail(`expected at least 7 types in the mixed file, got ${[...types]}`);
if (fs.statSync(out).size !== plan.totals.file_bytes) fail(`file is ${fs.statSync(out).size} bytes, plan says ${plan.totals.file_bytes}`);
const base = path.join(work, "refcode-32m-bf16.gguf");
run(["-q", "convert", model, "-o", base, "--type", "bf16"]);

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const mixed = await llama.loadModel({modelPath: out});
console.log(`ok: llama.cpp loads ${path.basename(out)} (${[...types].sort().join(", ")})`);

// ---- 1. greedy continuations -------------------------------------------------------------------
const PROMPTS = ["def fibonacci(n):\n", "import os\nimport sys\n\n\nclass Config:\n    def __init__(self",
                 "for (int i = 0; i < n; ++i) {\n"];
{
  const ctx = await mixed.createContext({contextSize: 256, threads: 2});
  const seq = ctx.getSequence();
  for (const prompt of PROMPTS) {
    await seq.clearHistory();
    const ids = [mixed.tokens.bos, ...mixed.tokenize(prompt, false)];
    const steps = [];
    for await (const o of seq.evaluateWithMetadata(ids, {probabilities: true}, {temperature: 0})) {
      const top = [...o.probabilities.values()];
      steps.push({token: o.token, margin: top[0] - (top[1] ?? 0)});
      if (steps.length >= N_GEN) break;
    }
    const samqText = run(["-q", "generate", out, "-p", prompt, "-n", String(N_GEN), "--temp", "0", "--ignore-eos"]).slice(prompt.length).replace(/\n$/, "");
    let i = 0;
    while (i < steps.length && samqText.startsWith(mixed.detokenize(steps.slice(0, i + 1).map((s) => s.token)))) i++;
    if (i === steps.length) console.log(`ok: greedy continuation of ${JSON.stringify(prompt)} identical for ${i} tokens`);
    else if (steps[i].margin < MARGIN) console.log(`ok: continuations agree for ${i} tokens, then a near tie (gap ${steps[i].margin.toFixed(4)})`);
    else fail(`greedy continuation of ${JSON.stringify(prompt)} differs at token ${i} (llama.cpp gap ${steps[i].margin.toFixed(4)}):\n  llama.cpp: ${JSON.stringify(mixed.detokenize(steps.map((s) => s.token)))}\n  samq:      ${JSON.stringify(samqText)}`);
  }
  await ctx.dispose();
}

// ---- 2. same-top-1 agreement against the base ---------------------------------------------------
const evalText = fs.readFileSync(path.join(shared, "data/eval.txt"), "utf8").slice(0, 20000);
const evalFile = path.join(work, "eval-head.txt");
fs.writeFileSync(evalFile, evalText);
const greedyPerPosition = async (m, chunks) => {
  const ctx = await m.createContext({contextSize: CTX, batchSize: CTX, threads: 2});
  const seq = ctx.getSequence();
  const res = [];
  for (const chunk of chunks) {
    await seq.clearHistory();
    const input = chunk.map((t, j) => (j >= CTX / 2 && j < CTX - 1 ? [t, {generateNext: {token: true, options: {temperature: 0}}}] : t));
    const outs = await seq.controlledEvaluate(input);
    for (let j = CTX / 2; j < CTX - 1; j++) res.push(outs[j]?.next?.token);
  }
  await ctx.dispose();
  return res;
};
const baseModel = await llama.loadModel({modelPath: base});
const toks = [baseModel.tokens.bos, ...baseModel.tokenize(evalText, false)];
const chunks = [];
for (let c = 0; c < CHUNKS && (c + 1) * CTX <= toks.length; c++) {
  const ch = toks.slice(c * CTX, (c + 1) * CTX);
  ch[0] = baseModel.tokens.bos;
  chunks.push(ch);
}
const a = await greedyPerPosition(baseModel, chunks);
const b = await greedyPerPosition(mixed, chunks);
let same = 0;
for (let i = 0; i < a.length; i++) same += a[i] === b[i] ? 1 : 0;
const llamaTop1 = (100 * same) / a.length;
const ev = path.join(work, "mixed.eval.json");
run(["-q", "eval", out, "--text", evalFile, "--ctx", String(CTX), "--chunks", String(chunks.length), "--base", model, "--json", ev]);
const samqTop1 = JSON.parse(fs.readFileSync(ev, "utf8")).same_top1_pct;
const msg = `same top-1 vs BF16 over ${a.length} positions: llama.cpp ${llamaTop1.toFixed(2)} %, samq eval ${samqTop1.toFixed(2)} %`;
if (Math.abs(llamaTop1 - samqTop1) > TOL_TOP1) fail(msg);
else console.log("ok: " + msg);

await mixed.dispose();
await baseModel.dispose();
checks.finish();
console.log("export interop: all checks passed");
