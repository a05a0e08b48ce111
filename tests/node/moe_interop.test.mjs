// Interop test for mixture-of-experts files: `samq convert` of ../shared/models/refmoe-31m
// (qwen3moe, 8 experts, top-2) in BF16 and Q8_0, loaded by an independent llama.cpp
// (node-llama-cpp 3.22.1, CPU), and samq's engine against llama.cpp's on the same tokens:
// the greedy (top-1) next token at every scored position of the first chunks of eval.txt (ctx 512,
// second half of each chunk, as llama-perplexity), from `samq eval --save-logits` (the codes of
// llama-perplexity's format; argmax = largest code) and from llama.cpp's own evaluation.
// Required: 100% the same for BF16 at every position that is not a near tie (samq's top-2
// log-prob gap below MARGIN = 2e-2 nats, export_interop's threshold: the two engines sum in other
// orders and llama.cpp's CPU variants differ among themselves by ~1e-2 in log-prob; an expert
// chosen differently at a router near-tie moves later positions by as much), and >= 99% for
// Q8_0 at every position. The same for a mixed file from `samq quantize` (llama.cpp's Q4_K_M
// preset through samq's preset path, with llama.cpp's importance matrix of refmoe-31m: K-quant
// 3-D expert tensors, each expert's rows with its own importance vector): >= 99%.
// Environment (set by ctest): SAMQ_BINARY, SAMQ_SHARED_DIR, SAMQ_WORK_DIR. Exit 77 = skipped.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import {checks, importGetLlama, readSamqLogits, samq, shared, topOneAgreement, workDir} from "./interop-helpers.mjs";

const getLlama = await importGetLlama();
const work = workDir("moe");
const CTX = 512, CHUNKS = Number(process.env.SAMQ_MOE_CHUNKS ?? 4);
const MARGIN = 2e-2;
const REQUIRED = {bf16: 100, q8_0: 99, q4_K_M: 99};
const run = (args) => execFileSync(samq, args, {encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"]});

const model = path.join(shared, "models/refmoe-31m");
const evalFile = path.join(work, "eval-head.txt");
fs.writeFileSync(evalFile, fs.readFileSync(path.join(shared, "data/eval.txt")).subarray(0, 40000));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});

for (const type of ["bf16", "q8_0", "q4_K_M"]) {
  const file = path.join(work, `refmoe-31m-${type}.gguf`);
  if (type === "q4_K_M") {
    const plan = path.join(work, "q4_K_M.plan.json");
    run(["-q", "plan", model, "--policy", "preset:Q4_K_M", "-o", plan]);
    run(["-q", "quantize", model, plan, "-o", file, "--imatrix", path.join(shared, "golden/anchors/refmoe-31m-imatrix.gguf")]);
  } else {
    run(["-q", "convert", model, "-o", file, "--type", type]);
  }
  const logits = path.join(work, `refmoe-31m-${type}.logits`);
  run(["-q", "eval", file, "--text", evalFile, "--ctx", String(CTX), "--chunks", String(CHUNKS), "--save-logits", logits]);
  const ours = readSamqLogits(logits);
  const m = await llama.loadModel({modelPath: file});
  if (m.fileInfo?.metadata?.general?.architecture !== "qwen3moe") checks.fail(`${type}: llama.cpp reads architecture ${m.fileInfo?.metadata?.general?.architecture}`);
  const {same, total, ties, nearSame, near, diffs} = await topOneAgreement(m, ours, CTX, MARGIN);
  await m.dispose();
  // BF16: every position but the near ties; Q8_0: every position.
  const [num, den] = type === "bf16" ? [same, total - near] : [same + nearSame, total];
  const pct = (100 * num) / Math.max(1, den);
  const msg = `${type}: same top-1 as llama.cpp at ${num}/${den} positions (${pct.toFixed(2)} %, required ${REQUIRED[type]} %; ` +
              `all positions ${same + nearSame}/${total}, ${near} near ties (gap < ${MARGIN}), ${ties} tied codes)`;
  if (total < 250 * CHUNKS - 10 || den < 0.9 * total || pct < REQUIRED[type]) checks.fail(msg + (diffs.length ? "\n  " + diffs.join("\n  ") : ""));
  else console.log("ok: " + msg);
}
checks.finish();
console.log("moe interop: all checks passed");
