// Interop test: SentencePiece ("llama" vocab) tokenizers converted by `samq convert`, tokenized
// by an independent llama.cpp (node-llama-cpp 3.22.1) and by `samq tokenize`; the ids must be
// identical. Issue 16 item 1.
//
// Fixtures: tests/data/spm/{bpe,unigram} (made by scripts/make_spm_fixture.py from calib.txt):
// tokenizer.json in the BPE-with-byte_fallback and the Unigram form. Each is paired with a tiny
// random llama checkpoint (`samq synth --like tiny --layers 1 --tokenizer <fixture>`, vocab padded
// to 8448 with UNUSED [PAD<i>] tokens), converted to GGUF, loaded and run by llama.cpp. A third
// variant, bpe with tokenizer_config.json add_prefix_space=false (Gemma-like), checks the
// add_space_prefix=false path.
//
// Texts: ../shared/golden/tokenizer samples (with and without special-token parsing), edge
// cases (spaces, newlines, added tokens next to text), 300 seeded random strings, and 100 random
// byte strings with invalid UTF-8. Node strings cannot carry invalid UTF-8 to llama.cpp (N-API
// turns it into U+FFFD), so for those llama.cpp gets the WHATWG-decoded string and samq the bytes
// of that same string; raw invalid bytes are checked in tests/model/test_tokenizer_spm.cpp.
//
// Environment (set by ctest): SAMQ_BINARY, SAMQ_SHARED_DIR, SAMQ_WORK_DIR. Exit 77 = skipped
// (never under CI=true: a missing fixture or node_modules is a failure there and here).
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import {checks, importGetLlama, repo, samq, shared, workDir} from "./interop-helpers.mjs";

const fail = (msg) => checks.fail(msg);
const fixtureDir = path.join(repo, "tests/data/spm");
for (const form of ["bpe", "unigram"]) {
  if (!fs.existsSync(path.join(fixtureDir, form, "tokenizer.json"))) {
    console.error(`FAIL: fixture ${path.join(fixtureDir, form, "tokenizer.json")} missing (scripts/make_spm_fixture.py)`);
    process.exit(1);
  }
}
if (!fs.existsSync(samq)) {
  console.error(`FAIL: samq binary not found at ${samq}`);
  process.exit(1);
}
const getLlama = await importGetLlama();
const {readGgufFileInfo} = await import("node-llama-cpp");
const work = workDir("spm");

// ---- texts ----------------------------------------------------------------------------------
const tokDir = path.join(shared, "golden/tokenizer");
if (!fs.existsSync(tokDir)) {
  console.error(`FAIL: ${tokDir} missing`);
  process.exit(1);
}
const texts = [];  // {label, text, bytes?}
for (const f of fs.readdirSync(tokDir).filter((f) => f.endsWith(".txt")).sort())
  texts.push({label: f, text: fs.readFileSync(path.join(tokDir, f), "utf8")});
const slice = (file, start, len) => {
  const b = fs.readFileSync(path.join(shared, "data", file));
  let s = start, e = Math.min(b.length, start + len);
  while (s < e && (b[s] & 0xc0) === 0x80) s++;
  while (e > s && e < b.length && (b[e] & 0xc0) === 0x80) e--;
  return b.subarray(s, e).toString("utf8");
};
texts.push({label: "eval.txt[0:20000]", text: slice("eval.txt", 0, 20000)});
texts.push({label: "calib.txt[900000:910000]", text: slice("calib.txt", 900000, 10000)});
const edge = [
  "", " ", "  ", "a", " a", "a ", "\n", " \n ", "\t\tx", "hello world", "  leading and trailing  ",
  "[INST] What is 2+2? [/INST] 4</s><s>[INST]again[/INST]", "<s>x</s>", "<unk> <s> </s>",
  "<tool>call(x)<tool> <tool>", "```python\nprint(1)\n```", "a<sep>b <sep> c<sep>", "x```y",
  "▁already▁escaped ▁", "Ünïcödé — “quotes” • ½ € 𝄞 😀👍🏽 中文字符 日本語 한국어 العربية",
  "def f(self):\n    return self.x  # comment\n\n\nclass A:\n\tpass\r\n",
  "x" + " ".repeat(37) + "y" + "\n".repeat(9) + "z" + "a".repeat(300), "\u00a0\u2003\u3000 \ufeff",
  "[INST]", "[/INST][INST]", " [INST] ", "<s>", "</s></s>", "<0x41><0x0A>", "�", "\u0000nul\u0001",
];
edge.forEach((t, i) => texts.push({label: `edge${i}`, text: t}));

// Seeded random strings: ASCII, spaces and newline runs, Unicode, and the added tokens' texts.
let seed = 0x5eed1234;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
const pick = (a) => a[Math.floor(rnd() * a.length)];
const pool = ["a", "e", "the", " ", " ", "  ", "\n", "\t", ".", ",", "(", ")", "self", "def", "_", "0", "9", "é", "ß",
              "中", "日本", "😀", "🏳️‍🌈", "\u0301", "Ω", "ﬁ", "▁", "[INST]", "[/INST]", "<s>", "</s>", "<tool>", "```",
              "<sep>", "<unk>", "\r\n", "\u00a0", "ё", "ा", "ą", "`", "'", "\"", "import", "return", "0x"];
for (let i = 0; i < 300; i++) {
  let s = "";
  const n = 1 + Math.floor(rnd() * 40);
  for (let k = 0; k < n; k++) s += rnd() < 0.15 ? String.fromCodePoint(32 + Math.floor(rnd() * 0x3000)) : pick(pool);
  texts.push({label: `random${i}`, text: s});
}
// Random bytes with invalid UTF-8: llama.cpp gets the decoded string (U+FFFD for invalid bytes).
const dec = new TextDecoder("utf-8", {fatal: false});
for (let i = 0; i < 100; i++) {
  const n = 1 + Math.floor(rnd() * 30);
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = rnd() < 0.5 ? 0x20 + Math.floor(rnd() * 0x5f) : Math.floor(rnd() * 256);
  texts.push({label: `bytes${i}`, text: dec.decode(b)});
}

// ---- models ---------------------------------------------------------------------------------
const run = (args) => execFileSync(samq, args, {encoding: "utf8", maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "inherit"]});
const variants = [];
for (const form of ["bpe", "unigram", "bpe-noprefix"]) {
  const tok = path.join(work, `tok-${form}`);
  fs.rmSync(tok, {recursive: true, force: true});
  fs.cpSync(path.join(fixtureDir, form === "bpe-noprefix" ? "bpe" : form), tok, {recursive: true});
  if (form === "bpe-noprefix") {
    const tc = JSON.parse(fs.readFileSync(path.join(tok, "tokenizer_config.json"), "utf8"));
    tc.add_prefix_space = false;
    fs.writeFileSync(path.join(tok, "tokenizer_config.json"), JSON.stringify(tc, null, 1));
  }
  const ckpt = path.join(work, `model-${form}`);
  run(["-q", "synth", "--like", "tiny", "--layers", "1", "--tokenizer", tok, "-o", ckpt]);
  const gguf = path.join(work, `spm-${form}-bf16.gguf`);
  run(["-q", "convert", ckpt, "-o", gguf, "--type", "bf16"]);
  variants.push({form, gguf, prefix: form !== "bpe-noprefix"});
}

// ---- metadata as llama.cpp's converter writes it ------------------------------------------------
for (const v of variants) {
  const info = await readGgufFileInfo(v.gguf, {readTensorInfo: false});
  const md = info.metadata.tokenizer.ggml;
  const want = {model: "llama", pre: "default", bos_token_id: 1, eos_token_id: 2, unknown_token_id: 0,
                add_bos_token: true, add_eos_token: false, add_space_prefix: v.prefix};
  for (const [k, w] of Object.entries(want))
    if (md[k] !== w) fail(`${v.form}: tokenizer.ggml.${k} = ${JSON.stringify(md[k])}, expected ${JSON.stringify(w)}`);
  if (md.tokens.length !== 8448 || md.scores.length !== 8448 || md.token_type.length !== 8448)
    fail(`${v.form}: tokens/scores/token_type lengths ${md.tokens.length}/${md.scores?.length}/${md.token_type?.length}, expected 8448`);
  if (md.merges !== undefined) fail(`${v.form}: a llama vocab has no tokenizer.ggml.merges`);
  const tt = md.token_type;
  const expectType = {0: 2, 1: 3, 2: 3, 3: 6, 258: 6, 3351: 3, 3352: 3, 3353: 4, 3354: 4, 3355: 4, 3356: 5, 8447: 5};
  for (const [id, t] of Object.entries(expectType))
    if (tt[id] !== t) fail(`${v.form}: token ${id} '${md.tokens[id]}' has type ${tt[id]}, expected ${t}`);
}

// ---- tokenize: llama.cpp vs samq ------------------------------------------------------------
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const sameIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const firstDiff = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};
let matched = 0, total = 0, tokens = 0;
for (const v of variants) {
  const model = await llama.loadModel({modelPath: v.gguf});
  // samq tokenize once per (variant, special) over all texts: one JSON lines file in, ids out.
  // Each text goes in as the UTF-8 bytes Node gives llama.cpp (lone surrogates become U+FFFD).
  const cases = [];
  for (const t of texts) for (const special of [false, true]) cases.push({...t, special});
  const want = cases.map((c) => Array.from(model.tokenize(c.text, c.special)));
  for (const special of [false, true]) {
    const idx = cases.map((c, i) => [c, i]).filter(([c]) => c.special === special);
    const file = path.join(work, `input-${v.form}-${special}.jsonl`);
    fs.writeFileSync(file, idx.map(([c]) => JSON.stringify(Buffer.from(c.text, "utf8").toString("utf8")) + "\n").join(""));
    const lines = run(["tokenize", v.gguf, "--jsonl", file, ...(special ? ["--special"] : [])]).split("\n");
    if (lines.at(-1) === "") lines.pop();
    if (lines.length !== idx.length) fail(`${v.form}: samq tokenize --jsonl printed ${lines.length} lines for ${idx.length} texts`);
    idx.forEach(([c, i], k) => {
      const got = JSON.parse(lines[k] ?? "[]");
      total++;
      tokens += want[i].length;
      if (sameIds(got, want[i])) {
        matched++;
      } else {
        const d = firstDiff(got, want[i]);
        fail(`${v.form}: ${c.label} (special=${special}) differs at token ${d}: samq ${JSON.stringify(got.slice(d, d + 6))} ` +
             `llama.cpp ${JSON.stringify(want[i].slice(d, d + 6))} text ${JSON.stringify(c.text.slice(0, 80))}`);
      }
    });
  }
  // The one-text interface (--file, --text) gives the same ids: a few texts per variant.
  for (const i of cases.map((c, i) => i).filter((i) => ["edge0", "edge20", "random0"].includes(cases[i].label) || i === 0)) {
    const c = cases[i];
    const file = path.join(work, "input.txt");
    fs.writeFileSync(file, Buffer.from(c.text, "utf8"));
    const sp = c.special ? ["--special"] : [];
    const got = JSON.parse(run(["tokenize", v.gguf, "-f", file, ...sp]));
    const got2 = JSON.parse(run(["tokenize", v.gguf, "-p", Buffer.from(c.text, "utf8").toString("utf8"), ...sp]));
    if (!sameIds(got, want[i]) || !sameIds(got2, want[i]))
      fail(`${v.form}: ${c.label} (special=${c.special}): --file/--text ids differ from llama.cpp's`);
  }
  // It loads and runs: a short greedy generation.
  const ctx = await model.createContext({contextSize: 128, threads: 2});
  const seq = ctx.getSequence();
  let n = 0;
  for await (const out of seq.evaluateWithMetadata([model.tokens.bos, ...model.tokenize("def add(a, b):", false)], {}, {temperature: 0})) {
    if (!Number.isInteger(out.token) || out.token < 0 || out.token >= 8448) fail(`${v.form}: generated token ${out.token}`);
    if (++n >= 3) break;
  }
  await ctx.dispose();
  await model.dispose();
  console.log(`ok: ${v.form}: loads and generates in llama.cpp`);
}
console.log(`spm tokenization: ${matched}/${total} texts identical to llama.cpp (${tokens} llama.cpp tokens), ` +
            `${variants.length} vocab variants x ${texts.length} texts x special on/off`);
if (total !== variants.length * texts.length * 2) fail(`only ${total} comparisons ran`);
checks.finish();
console.log("PASS");
