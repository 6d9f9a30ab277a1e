#!/usr/bin/python3
"""Oracle for the gguf package's tests: runs llama.cpp's gguf-py on inputs the
Go test wrote and writes gguf-py's results for the test to compare.

Usage: PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 ggufpy_oracle.py MANIFEST

Each MANIFEST line is one job:
  dequant-file MODEL OUT   every tensor of MODEL dequantized, float32 LE, file order;
                           OUT.names gets "name count" per tensor
  dequant TYPE IN OUT      IN holds raw blocks of TYPE; OUT their float32 values
  quant TYPE IN OUT        IN holds float32 values; OUT the bytes gguf-py quantizes to
  header MODEL OUT         GGUFReader's view of MODEL's metadata and tensor infos, as JSON
"""
import json
import sys

import numpy as np
import gguf
from gguf import quants


def main():
    with open(sys.argv[1]) as f:
        jobs = [line.split() for line in f if line.strip()]
    for job in jobs:
        op = job[0]
        if op == "dequant-file":
            model, out = job[1], job[2]
            reader = gguf.GGUFReader(model)
            with open(out, "wb") as fo, open(out + ".names", "w") as fn:
                for t in reader.tensors:
                    vals = quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
                    fo.write(np.ascontiguousarray(vals).tobytes())
                    fn.write("%s %d\n" % (t.name, vals.size))
        elif op == "dequant":
            qtype = gguf.GGMLQuantizationType[job[1]]
            data = np.fromfile(job[2], dtype=np.uint8)
            vals = quants.dequantize(data, qtype).astype(np.float32, copy=False)
            np.ascontiguousarray(vals).tofile(job[3])
        elif op == "quant":
            qtype = gguf.GGMLQuantizationType[job[1]]
            data = np.fromfile(job[2], dtype=np.float32)
            q = quants.quantize(data, qtype)
            np.ascontiguousarray(q).tofile(job[3])
        elif op == "header":
            reader = gguf.GGUFReader(job[1])
            kv = []
            for name, field in reader.fields.items():
                if name.startswith("GGUF."):
                    continue
                kv.append({"key": name, "types": [t.name for t in field.types], "value": field.contents()})
            tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape],
                        "data_offset": int(t.data_offset), "n_bytes": int(t.n_bytes)} for t in reader.tensors]
            with open(job[2], "w") as fo:
                json.dump({"kv": kv, "tensors": tensors, "alignment": int(reader.alignment)}, fo)
        else:
            raise SystemExit("unknown job " + op)


if __name__ == "__main__":
    main()
