// ort_run.mjs — runs ONNX models in ONNX Runtime (onnxruntime-node, CPU) on
// exact inputs and reports exact outputs. Used by the Go interop tests.
//
//   node ort_run.mjs MODEL IN.json OUT.json   one model: IN.json maps input
//                                            names to tensors, OUT.json gets
//                                            the outputs the same way
//   node ort_run.mjs --jobs JOBS.json        many models in one process: JOBS
//                                            is [{model, inputs, options?}];
//                                            prints one JSON line per job,
//                                            {i, outputs} or {i, error}, as
//                                            each finishes
//
// A tensor is {dtype, dims, b64} with its elements as little-endian bytes
// in base64 (exact for every type), or {dtype, dims, data} with a JSON array
// (numbers; strings for dtype "string"; decimal strings or numbers for
// int64/uint64). Outputs always use b64, except strings.
// onnxruntime-node is found through NODE_PATH or in node_modules under the
// current folder.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

function loadORT() {
  const tries = [createRequire(import.meta.url), createRequire(path.join(process.cwd(), 'x.js'))];
  let last;
  for (const req of tries) {
    try {
      return req('onnxruntime-node');
    } catch (e) {
      last = e;
    }
  }
  throw last;
}
const ort = loadORT();

const arrays = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

function toTensor(name, v) {
  if (v.dtype === 'string') return new ort.Tensor('string', v.data, v.dims);
  const Arr = arrays[v.dtype];
  if (!Arr) throw new Error(`input ${name}: unsupported dtype ${v.dtype}`);
  let data;
  if (v.b64 !== undefined || v.data === undefined) { // no data at all: an empty tensor
    const buf = Buffer.from(v.b64 || '', 'base64');
    if (buf.length % Arr.BYTES_PER_ELEMENT !== 0) throw new Error(`input ${name}: ${buf.length} bytes is not a whole number of ${v.dtype}`);
    // Copy into a fresh, aligned buffer.
    const ab = new ArrayBuffer(buf.length);
    new Uint8Array(ab).set(buf);
    data = new Arr(ab);
  } else if (Arr === BigInt64Array || Arr === BigUint64Array) {
    data = Arr.from(v.data, (x) => BigInt(x));
  } else {
    data = Arr.from(v.data);
  }
  return new ort.Tensor(v.dtype, data, v.dims);
}

function fromTensor(t) {
  if (t.type === 'string') return { dtype: 'string', dims: t.dims, data: Array.from(t.data) };
  const d = t.data;
  return { dtype: t.type, dims: t.dims, b64: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
}

async function run(model, inputs, options = {}) {
  const sess = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: options.optimization || 'disabled',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  try {
    const feeds = {};
    for (const [k, v] of Object.entries(inputs)) feeds[k] = toTensor(k, v);
    const out = await sess.run(feeds);
    const res = {};
    for (const name of sess.outputNames) res[name] = fromTensor(out[name]);
    return res;
  } finally {
    await sess.release();
  }
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--jobs' && argv.length === 2) {
    const jobs = JSON.parse(fs.readFileSync(argv[1], 'utf8'));
    for (let i = 0; i < jobs.length; i++) {
      let line;
      try {
        line = { i, outputs: await run(jobs[i].model, jobs[i].inputs, jobs[i].options) };
      } catch (e) {
        line = { i, error: String((e && e.message) || e) };
      }
      process.stdout.write(JSON.stringify(line) + '\n');
    }
    return;
  }
  if (argv.length !== 3) {
    console.error('usage: node ort_run.mjs MODEL IN.json OUT.json | node ort_run.mjs --jobs JOBS.json');
    process.exit(2);
  }
  const [model, inFile, outFile] = argv;
  const res = await run(model, JSON.parse(fs.readFileSync(inFile, 'utf8')));
  fs.writeFileSync(outFile, JSON.stringify(res));
}

main().catch((e) => {
  console.error('ort_run:', (e && e.message) || e);
  process.exit(1);
});
