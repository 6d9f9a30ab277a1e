// Evaluates GGUF models in llama.cpp (node-llama-cpp, CPU, prebuilt binaries
// only) and writes, per model, the greedy continuation of a fixed prompt and
// the full next-token distribution at every step, as JSON.
//
// Usage: node llama_eval.mjs JOBS.json OUT.json
//   JOBS.json: [{"model": "a.gguf", "lora": ["l.gguf"], "prompt": [1, 2, 3], "steps": 16}, ...]
// A job with "forced": [t1, t2, ...] (and no "steps") is teacher-forced instead: the prompt and the
// forced tokens are evaluated as one sequence, and the greedy pick and distribution are those of
// the next token after the prompt and after each forced token, so that every model is compared
// along the same tokens.
// Run with NODE_PATH pointing at the node_modules that holds node-llama-cpp.
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const lib = await import(require.resolve("node-llama-cpp", { paths: (process.env.NODE_PATH || "").split(":") }));
const { getLlama, LlamaLogLevel } = lib;

const [jobsPath, outPath] = process.argv.slice(2);
const jobs = JSON.parse(fs.readFileSync(jobsPath, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const results = [];
for (const job of jobs) {
  const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
  const adapters = (job.lora || []).map((p) => ({ filePath: p, scale: 1 }));
  // An F32 KV cache: the default F16 cache rounds K and V, which hides
  // float32-level agreement between two equivalent models.
  const context = await model.createContext({ contextSize: 128, batchSize: 64, threads: 2,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false,
    ...(adapters.length ? { lora: { adapters } } : {}) });
  const seq = context.getSequence();
  const tokens = [], probs = [];
  const dense = (m) => {
    const p = new Array(model.tokens.vocabularySize ?? 0).fill(0);
    for (const [t, v] of m) p[t] = v;
    return p;
  };
  if (job.forced) {
    const next = { generateNext: { token: true, probabilities: true, options: { temperature: 0 } } };
    const input = [...job.prompt, ...job.forced];
    const from = job.prompt.length - 1;
    const out = await seq.controlledEvaluate(input.map((t, i) => (i < from ? t : [t, next])));
    for (let i = from; i < input.length; i++) {
      tokens.push(out[i].next.token);
      probs.push(dense(out[i].next.probabilities));
    }
  } else {
    for await (const r of seq.evaluateWithMetadata(job.prompt, { probabilities: true }, { temperature: 0 })) {
      tokens.push(r.token);
      probs.push(dense(r.probabilities));
      if (tokens.length >= job.steps) break;
    }
  }
  results.push({ model: job.model, lora: job.lora || [], tokens, probs });
  await context.dispose();
  await model.dispose();
}
fs.writeFileSync(outPath, JSON.stringify(results));
