// Interop test: files written by `samq convert` loaded by an independent llama.cpp
// (node-llama-cpp 3.22.1, prebuilt CPU binaries), and samq's tokenizer against llama.cpp's.
//
// 1. Converts ../shared/models/refcode-32m (bf16) and every ../shared/golden/archs/* (f32).
// 2. Loads every converted file with llama.cpp; checks that llama.cpp tokenizes the golden texts
//    to the golden ids, that `samq tokenize` agrees with llama.cpp on more text (parts of
//    ../shared/data/*.txt and Unicode edge cases), and that each model generates.
// 3. Records llama.cpp's greedy continuation of a few prompts plus top-5 log-probs at every
//    generated position, for the bf16 refcode-32m file and the Q4_K_M anchor, and compares them
//    with the committed fixture tests/data/llamacpp/greedy-fixture.json (tolerances below).
//    With SAMQ_UPDATE_FIXTURES=1 it (re)writes the fixture; a missing fixture is written and the
//    test fails (nothing was compared).
//
// Environment (set by ctest): SAMQ_BINARY, SAMQ_SHARED_DIR, SAMQ_WORK_DIR. Exit 77 = skipped.
import {execFileSync, spawnSync} from "node:child_process";
import {createHash} from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import {checks, fixtureCpuBuild, importGetLlama, llamaBuildCpuFeatures, missingCpuFeatures, repo, samq, shared,
        workDir} from "./interop-helpers.mjs";

const fixturePath = process.env.SAMQ_GREEDY_FIXTURE ?? path.join(repo, "tests/data/llamacpp/greedy-fixture.json");
const tokFixturePath = path.join(repo, "tests/data/llamacpp/tokenizer-fixture.json");

const getLlama = await importGetLlama();
const work = workDir();
if (!fs.existsSync(samq)) {
  console.error(`FAIL: samq binary not found at ${samq}`);
  process.exit(1);
}

const fail = (msg) => checks.fail(msg);
const sameIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const firstDiff = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};
const readIds = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// ---- 1. convert -------------------------------------------------------------------------------
const converted = [];
const convert = (src, out, type) => {
  execFileSync(samq, ["-q", "convert", src, "-o", out, "--type", type], {stdio: ["ignore", "inherit", "inherit"]});
  converted.push(out);
  return out;
};
const refBf16 = convert(path.join(shared, "models/refcode-32m"), path.join(work, "refcode-32m-bf16.gguf"), "bf16");
const archDir = path.join(shared, "golden/archs");
for (const a of fs.readdirSync(archDir).sort()) {
  if (fs.existsSync(path.join(archDir, a, "config.json")))
    convert(path.join(archDir, a), path.join(work, `${a}-f32.gguf`), "f32");
}

// ---- 2. load + tokenize -----------------------------------------------------------------------
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const tokDir = path.join(shared, "golden/tokenizer");
const golden = [];
for (const f of fs.readdirSync(tokDir).filter((f) => f.endsWith(".txt")).sort()) {
  const base = f.slice(0, -4);
  const text = fs.readFileSync(path.join(tokDir, f), "utf8");
  golden.push({name: base, text, special: false, ids: readIds(path.join(tokDir, base + ".ids"))});
  if (fs.existsSync(path.join(tokDir, base + ".special.ids")))
    golden.push({name: base + ".special", text, special: true, ids: readIds(path.join(tokDir, base + ".special.ids"))});
}

// Extra texts where samq must agree with llama.cpp (no golden ids exist for them).
const slice = (file, start, len) => {
  const b = fs.readFileSync(path.join(shared, "data", file));
  // cut on a UTF-8 boundary so the JS string is exactly these bytes
  let s = start, e = Math.min(b.length, start + len);
  while (s < e && (b[s] & 0xc0) === 0x80) s++;
  while (e > s && e < b.length && (b[e] & 0xc0) === 0x80) e--;
  return b.subarray(s, e).toString("utf8");
};
const extra = [
  ["eval.txt[0:20000]", slice("eval.txt", 0, 20000)],
  ["eval.txt[200000:215000]", slice("eval.txt", 200000, 15000)],
  ["calib.txt[0:20000]", slice("calib.txt", 0, 20000)],
  ["calib.txt[500000:515000]", slice("calib.txt", 500000, 15000)],
  ["combining", "e\u0301 a\u0308 n\u0303o Z\u0351\u0352\u0353 \u200d\u200c zw\u200bsp \ufeffbom \u00ad"],
  ["emoji-seq", "👨‍👩‍👧‍👦 🏳️‍🌈 👍🏿 🇩🇪🇯🇵 ❤️ ©️ 1️⃣"],
  ["cjk-punct", "你好，世界！「引用」『二重』。、〜 ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３"],
  ["long-runs", "x" + " ".repeat(37) + "y" + "\n".repeat(9) + "z" + "\t".repeat(5) + "w\r\r\n\r\n" + "-".repeat(50) + "a".repeat(300)],
  ["mixed-digits", "abc123def4567ghi ٣٤٥ ६७८ 〇一二 ½¼ ⑴⑵ 𝟙𝟚𝟛"],
  ["unicode", "Ünïcödé — “quotes” • ½ € 𝄞 😀👍🏽 中文字符 日本語 한국어 العربية עברית Ελληνικά ẞ ǅ ﬁ"],
  ["spaces", "  a  \n\n\n  b\t\t\r\n c   \u00a0\u2003 d\u3000e \u0085 f\u2028g   "],
  ["digits", "1 12 123 1234 12345 3.14159 ١٢٣٤ ⅣⅫ ²³ 0x1F 1e-10 -42"],
  ["contractions", "'s 'S 'll 'LL 're 'Re 've 'd 'm 't don't WON'T I'M you'RE 'x '"],
  ["punct", "a!!b??c...d;;;e---f___g=>h<=i!=j(){}[]<>@#$%^&*~`|\\/\"'"],
  ["special-text", "x<|end_of_text|>y<|begin_of_text|>z <|eot_id|>"],
];
const samqTokenize = (model, text, special) => {
  const tmp = path.join(work, "tok-input.txt");
  fs.writeFileSync(tmp, text);
  const args = ["tokenize", model, "-f", tmp];
  if (special) args.push("--special");
  return JSON.parse(execFileSync(samq, args, {encoding: "utf8", maxBuffer: 64 << 20}));
};

const tokCases = [];  // llama.cpp's ids for the extra texts (refcode-32m vocab), for the C++ tests
for (const file of converted) {
  const name = path.basename(file);
  const model = await llama.loadModel({modelPath: file});
  for (const g of golden) {
    const ids = Array.from(model.tokenize(g.text, g.special));
    if (!sameIds(ids, g.ids))
      fail(`${name}: llama.cpp tokenizes ${g.name} differently from the golden ids (first difference at ${firstDiff(ids, g.ids)})`);
  }
  if (file === refBf16) {
    for (const [label, text] of extra) {
      for (const special of text.includes("<|") ? [false, true] : [false]) {
        const want = Array.from(model.tokenize(text, special));
        tokCases.push({label, special, text, ids: want});
        const got = samqTokenize(file, text, special);
        if (!sameIds(got, want))
          fail(`samq tokenize differs from llama.cpp on ${label} (special=${special}) at token ${firstDiff(got, want)}: ` +
               `samq ${JSON.stringify(got.slice(firstDiff(got, want), firstDiff(got, want) + 5))} ` +
               `llama.cpp ${JSON.stringify(want.slice(firstDiff(got, want), firstDiff(got, want) + 5))}`);
      }
    }
  }
  if (file === refBf16) {
    // Speed of llama.cpp's tokenizer on the evaluation text (information; compare `samq tokenize --stats`).
    const evalText = slice("eval.txt", 0, 400000);
    const t0 = process.hrtime.bigint();
    const n = model.tokenize(evalText, false).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const tmp = path.join(work, "eval400k.txt");
    fs.writeFileSync(tmp, evalText);
    const r = spawnSync(samq, ["tokenize", file, "-f", tmp, "--stats"], {encoding: "utf8", maxBuffer: 64 << 20});
    console.log(`info: llama.cpp tokenizes eval.txt[0:400000] into ${n} tokens in ${s.toFixed(3)} s (${(n / s).toFixed(0)} tokens/s); samq (with BOS off): ${r.stderr.trim()}`);
  }
  // It runs: a short greedy generation from BOS + a prompt.
  const ctx = await model.createContext({contextSize: 256, threads: 2});
  const seq = ctx.getSequence();
  let n = 0;
  for await (const out of seq.evaluateWithMetadata([model.tokens.bos, ...model.tokenize("def add(a, b):", false)], {}, {temperature: 0})) {
    if (!Number.isInteger(out.token) || out.token < 0) fail(`${name}: generated token ${out.token} is not a token id`);
    if (++n >= 4) break;
  }
  await ctx.dispose();
  await model.dispose();
  console.log(`ok: ${name} loads in llama.cpp, golden tokenization matches, generates`);
}

// ---- 2b. the qwen2 pre-tokenizer --------------------------------------------------------------
// A vocab-only GGUF written here from tokenizer.json alone (independent of samq's converter), with
// tokenizer.ggml.pre = "qwen2": llama.cpp (std::regex path for this pattern) against samq.
const writeVocabGguf = (file, pre) => {
  const tj = JSON.parse(fs.readFileSync(path.join(shared, "models/refcode-32m/tokenizer.json"), "utf8"));
  const tokens = [];
  for (const [t, id] of Object.entries(tj.model.vocab)) tokens[id] = t;
  const types = tokens.map(() => 1);
  for (const a of tj.added_tokens) { tokens[a.id] = a.content; types[a.id] = 3; }
  const merges = tj.model.merges.map((m) => (Array.isArray(m) ? m.join(" ") : m));
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const i32 = (v) => { const b = Buffer.alloc(4); b.writeInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, "utf8"); u64(b.length); parts.push(b); };
  const kvs = [
    ["general.architecture", () => { i32(8); str("llama"); }],
    ["llama.block_count", () => { i32(4); u32(1); }],
    ["llama.context_length", () => { i32(4); u32(512); }],
    ["llama.embedding_length", () => { i32(4); u32(64); }],
    ["llama.feed_forward_length", () => { i32(4); u32(128); }],
    ["llama.attention.head_count", () => { i32(4); u32(1); }],
    ["llama.attention.layer_norm_rms_epsilon", () => { i32(6); const b = Buffer.alloc(4); b.writeFloatLE(1e-5); parts.push(b); }],
    ["tokenizer.ggml.model", () => { i32(8); str("gpt2"); }],
    ["tokenizer.ggml.pre", () => { i32(8); str(pre); }],
    ["tokenizer.ggml.tokens", () => { i32(9); i32(8); u64(tokens.length); tokens.forEach(str); }],
    ["tokenizer.ggml.token_type", () => { i32(9); i32(5); u64(types.length); types.forEach(i32); }],
    ["tokenizer.ggml.merges", () => { i32(9); i32(8); u64(merges.length); merges.forEach(str); }],
    ["tokenizer.ggml.bos_token_id", () => { i32(4); u32(0); }],
    ["tokenizer.ggml.eos_token_id", () => { i32(4); u32(1); }],
  ];
  parts.push(Buffer.from("GGUF"));
  u32(3); u64(0); u64(kvs.length);
  for (const [k, w] of kvs) { str(k); w(); }
  fs.writeFileSync(file, Buffer.concat(parts));
};
const qwenVocab = path.join(work, "vocab-qwen2.gguf");
writeVocabGguf(qwenVocab, "qwen2");
{
  // This file has no tensors. node-llama-cpp's loadModel first estimates memory by loading the
  // file fully (no-alloc, without vocab_only), which fails and logs "[node-llama-cpp]
  // llama_model_load: error loading model: missing tensor 'token_embd.weight'"; it then falls
  // back to its static estimate and the vocab-only load itself succeeds. Expected, not a failure.
  console.log("info: the next \"missing tensor 'token_embd.weight'\" lines (if any) are node-llama-cpp's memory " +
              "estimate of the tensor-less vocab-only file, expected");
  const model = await llama.loadModel({modelPath: qwenVocab, vocabOnly: true});
  for (const [label, text] of extra) {
    const want = Array.from(model.tokenize(text, false));
    tokCases.push({label, special: false, pre: "qwen2", text, ids: want});
    const got = samqTokenize(qwenVocab, text, false);
    if (!sameIds(got, want))
      fail(`qwen2 pre-tokenizer: samq differs from llama.cpp on ${label} at token ${firstDiff(got, want)}: ` +
           `samq ${JSON.stringify(got.slice(firstDiff(got, want), firstDiff(got, want) + 5))} ` +
           `llama.cpp ${JSON.stringify(want.slice(firstDiff(got, want), firstDiff(got, want) + 5))}`);
  }
  await model.dispose();
  console.log("ok: qwen2 pre-tokenizer compared with llama.cpp");
}

// ---- 3. greedy fixture ------------------------------------------------------------------------
const PROMPTS = [
  "def fibonacci(n):\n",
  "import os\nimport sys\n\n\nclass Config:\n    def __init__(self",
  "# Copyright 2020 The Authors. All rights reserved.\n#\n# Licensed under the",
];
const N_GEN = 16;
const TOP_K = 5;
const fixtureModels = {
  "refcode-32m-bf16": {file: refBf16, made_by: "samq convert ../shared/models/refcode-32m --type bf16 (tensors identical to llama.cpp's converter)"},
  "refcode-32m-Q4_K_M-imatrix": {file: path.join(shared, "golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"), made_by: "../shared/golden/anchors (llama-quantize)"},
};
const sha256File = (p) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");

const recorded = {};
for (const [key, m] of Object.entries(fixtureModels)) {
  const model = await llama.loadModel({modelPath: m.file});
  const ctx = await model.createContext({contextSize: 512, threads: 2});
  const seq = ctx.getSequence();
  const cases = [];
  for (const prompt of PROMPTS) {
    await seq.clearHistory();
    const promptIds = [model.tokens.bos, ...model.tokenize(prompt, false)];
    const steps = [];
    for await (const out of seq.evaluateWithMetadata(promptIds, {probabilities: true}, {temperature: 0})) {
      const top = [];
      for (const [tok, p] of out.probabilities) {
        top.push([tok, Math.log(p)]);
        if (top.length >= TOP_K) break;
      }
      steps.push({token: out.token, top5: top});
      if (steps.length >= N_GEN) break;
    }
    cases.push({prompt, prompt_ids: promptIds, generated_ids: steps.map((s) => s.token), steps});
  }
  await ctx.dispose();
  await model.dispose();
  recorded[key] = {made_by: m.made_by, sha256: sha256File(m.file), cases};
  console.log(`ok: recorded ${key}: ${cases.map((c) => c.generated_ids.length).join("+")} greedy steps`);
}

const fixture = {
  format:
    "llama.cpp (node-llama-cpp 3.22.1, CPU) greedy continuations, written by tests/node/convert_interop.test.mjs. " +
    "models.<name>: {made_by, sha256 of the GGUF file, cases[]}. Each case: prompt (text), prompt_ids (BOS + " +
    "llama.cpp's tokenization, no special-token parsing), generated_ids (greedy, temperature 0), steps[i] = " +
    "{token: generated id at position i, top5: [[id, natural-log probability], ...] of llama.cpp's full softmax " +
    "distribution for that position, highest first}. Position i predicts the token after prompt_ids + " +
    "generated_ids[0..i-1]. Compare with tolerances: log-probs agree to ~1e-3 between CPU builds; greedy ids may " +
    "legitimately diverge after a position whose top-2 log-probs are within ~1e-2.",
  // Which CPU build of llama.cpp computed the log-probs (its numerics are ISA-specific): the
  // comparison below skips them on a machine lacking any of cpu_features (/proc/cpuinfo flags).
  llama_cpp: {binding: "node-llama-cpp", version: "3.22.1", gpu: false, cpu: os.cpus()[0]?.model ?? "?",
              system_info: llama.systemInfo, cpu_features: llamaBuildCpuFeatures(llama.systemInfo)},
  n_gen: N_GEN,
  top_k: TOP_K,
  models: recorded,
};

const LP_TOL = 2e-2;      // log-prob tolerance between llama.cpp CPU builds/machines
const MARGIN = 2e-2;      // below this top-1/top-2 gap a different greedy choice is not a failure
const compareFixture = (want, got) => {
  // Log-probs and greedy choices are only comparable with the same llama.cpp CPU build: on a
  // machine lacking a CPU feature of the fixture's build, node-llama-cpp loads another variant
  // (e.g. AVX2 instead of AVX-512/AMX) whose sums run in another order (log-probs off by a few
  // 1e-2, near-tie choices flipped), so those sub-checks are skipped; model hashes and prompt ids
  // are still compared.
  const build = fixtureCpuBuild(want);
  const missing = missingCpuFeatures(build.features);
  const numerics = missing.length === 0;
  if (!numerics)
    console.log(`skip: greedy-fixture log-prob and greedy-token comparisons: this CPU lacks ${missing.join(", ")} ` +
                `of the llama.cpp build that recorded the fixture (${build.source}; this machine's llama.cpp: ` +
                `${String(llama.systemInfo).trim()})`);
  for (const [key, wm] of Object.entries(want.models)) {
    const gm = got.models[key];
    if (!gm) { fail(`fixture model ${key} was not recorded`); continue; }
    if (wm.sha256 !== gm.sha256) fail(`${key}: the model file changed (sha256 ${gm.sha256} vs fixture ${wm.sha256})`);
    wm.cases.forEach((wc, ci) => {
      const gc = gm.cases[ci];
      if (!gc || !sameIds(wc.prompt_ids, gc.prompt_ids)) { fail(`${key} case ${ci}: prompt ids differ`); return; }
      if (!numerics) return;
      for (let i = 0; i < wc.steps.length && i < gc.steps.length; i++) {
        const ws = wc.steps[i], gs = gc.steps[i];
        const gLp = new Map(gs.top5);
        for (const [tok, lp] of ws.top5) {
          if (gLp.has(tok) && Math.abs(gLp.get(tok) - lp) > LP_TOL)
            fail(`${key} case ${ci} step ${i}: log p(${tok}) ${gLp.get(tok).toFixed(5)} vs fixture ${lp.toFixed(5)}`);
        }
        if (ws.token !== gs.token) {
          const margin = ws.top5.length > 1 ? ws.top5[0][1] - ws.top5[1][1] : Infinity;
          if (margin > MARGIN) fail(`${key} case ${ci} step ${i}: greedy token ${gs.token} vs fixture ${ws.token} (margin ${margin.toFixed(4)})`);
          break;  // the continuations diverged legitimately; later steps are not comparable
        }
      }
    });
  }
};

const tokFixture = {
  format: "llama.cpp (node-llama-cpp 3.22.1) token ids for texts tokenized with the refcode-32m vocab, no BOS; " +
    "cases[]: {label, special (special-token parsing on), pre (absent: llama-bpe; \"qwen2\": the same vocab " +
    "with tokenizer.ggml.pre = qwen2), text, ids}. Written by " +
    "tests/node/convert_interop.test.mjs; read by tests/model/test_tokenizer_llamacpp.cpp.",
  cases: tokCases,
};
if (process.env.SAMQ_UPDATE_FIXTURES === "1" || !fs.existsSync(tokFixturePath)) {
  // A missing fixture is recorded, but the run fails: nothing was compared.
  if (process.env.SAMQ_UPDATE_FIXTURES !== "1") fail(`${tokFixturePath} is missing (written now; commit it)`);
  fs.writeFileSync(tokFixturePath, JSON.stringify(tokFixture) + "\n");
  console.log(`wrote ${tokFixturePath}`);
} else {
  const old = JSON.parse(fs.readFileSync(tokFixturePath, "utf8"));
  for (const c of old.cases) {
    const now = tokCases.find((x) => x.label === c.label && x.special === c.special && x.pre === c.pre);
    if (now && now.text === c.text && !sameIds(now.ids, c.ids)) fail(`llama.cpp's ids for ${c.label} changed since the tokenizer fixture was recorded`);
  }
}

if (process.env.SAMQ_UPDATE_FIXTURES === "1" || !fs.existsSync(fixturePath)) {
  if (process.env.SAMQ_UPDATE_FIXTURES !== "1") fail(`${fixturePath} is missing (written now; commit it)`);
  fs.mkdirSync(path.dirname(fixturePath), {recursive: true});
  fs.writeFileSync(fixturePath, JSON.stringify(fixture, null, 1) + "\n");
  console.log(`wrote ${fixturePath}`);
} else {
  compareFixture(JSON.parse(fs.readFileSync(fixturePath, "utf8")), fixture);
  console.log("compared with the committed greedy fixture");
}

checks.finish();
console.log("PASS");
process.exit(0);
