// Shared by the *_interop.test.mjs tests (samq's files in an independent llama.cpp through
// node-llama-cpp): repository paths, the samq binary and ../shared from ctest's environment, a
// work folder, the llama.cpp import (exit 77 = ctest SKIP when node-llama-cpp is missing) and a
// failure counter.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../..");
export const samq = process.env.SAMQ_BINARY ?? path.join(repo, "build/samq");
export const shared = process.env.SAMQ_SHARED_DIR ?? path.resolve(repo, "../shared");

// node-llama-cpp's getLlama, or exit 77 when the package is not installed.
export async function importGetLlama() {
  if (!fs.existsSync(path.join(here, "node_modules/node-llama-cpp"))) {
    console.log("SKIP: tests/node/node_modules/node-llama-cpp missing (run scripts/setup.sh)");
    process.exit(77);
  }
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
