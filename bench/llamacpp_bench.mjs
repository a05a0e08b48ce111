// llama.cpp side of bench/bench_engine: prompt processing (PP tokens in one batch) and greedy
// generation (TG tokens) with node-llama-cpp (CPU build, no GPU) on a GGUF file.
// usage: node bench/llamacpp_bench.mjs MODEL.gguf THREADS [PP=512] [TG=128] [REPS=3]
// prints one JSON line: {"pp_tps": ..., "tg_tps": ..., "version": ...}; best of REPS runs.
import path from "node:path";
import fs from "node:fs";
import {fileURLToPath} from "node:url";
import {createRequire} from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = path.resolve(here, "../tests/node");
if (!fs.existsSync(path.join(nodeDir, "node_modules/node-llama-cpp"))) {
  console.log(JSON.stringify({error: "tests/node/node_modules/node-llama-cpp missing (run scripts/setup.sh)"}));
  process.exit(77);
}
const require = createRequire(path.join(nodeDir, "package.json"));
const {getLlama} = await import(require.resolve("node-llama-cpp"));

const [modelPath, threadsArg, ppArg, tgArg, repsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 2), PP = Number(ppArg ?? 512), TG = Number(tgArg ?? 128);
const REPS = Number(repsArg ?? 3);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
const ctx = await model.createContext({contextSize: PP + TG + 16, batchSize: PP, threads});
const seq = ctx.getSequence();
// a fixed pseudo-random prompt of PP ids (BOS first); same ids as bench_engine.cpp
const ids = [model.tokens.bos ?? 0];
let s = 12345;
while (ids.length < PP) {
  s = (s * 1103515245 + 12345) % 2147483648;
  ids.push(2 + (s % 8000));
}
let pp = 0, tg = 0;
for (let r = 0; r < REPS; ++r) {
  await seq.clearHistory();
  let t0 = process.hrtime.bigint();
  await seq.evaluateWithoutGeneratingNewTokens(ids);
  let t1 = process.hrtime.bigint();
  pp = Math.max(pp, PP / (Number(t1 - t0) / 1e9));
  await seq.clearHistory();
  await seq.evaluateWithoutGeneratingNewTokens([ids[0]]);
  let n = 0;
  t0 = process.hrtime.bigint();
  for await (const tok of seq.evaluate([ids[1]], {temperature: 0})) {
    if (++n >= TG) break;
  }
  t1 = process.hrtime.bigint();
  tg = Math.max(tg, n / (Number(t1 - t0) / 1e9));
}
console.log(JSON.stringify({pp_tps: pp, tg_tps: tg, threads, pp_tokens: PP, tg_tokens: TG}));
await ctx.dispose();
await model.dispose();
