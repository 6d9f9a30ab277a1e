#!/usr/bin/python3
"""How often a float32 merge would need a float64 fallback.

    /usr/bin/python3 surgery/bench/fallback.py SPLIT_DIR [MODULE] [ROWS]

SPLIT_DIR is the output of `sorsa-convert split` on a safetensors model in
F16 (for example testdata/bench/model7b.sh's <checkpoint>-out/split),
MODULE a targeted module (default model.layers.3.self_attn.q_proj), ROWS
how many of its rows to look at (default 1024). Needs python3-numpy.

Merge computes W' = round16(W_r + c·B·diag(S)·A) with every sum formed in
float64. A float32 product would run twice as fast, and it would give the
same bits wherever the exact sum y and everything within the float32
error bound E of it round to the same binary16 value. The rigorous bound for
a sum of k products accumulated in float32 with FMA is about
(k + 2)·2^-24·sum|a_i·b_i| (the 2 for rounding the coefficients to
float32); sum|a_i·b_i| can be bounded per element by Cauchy-Schwarz,
‖a‖·‖b‖ (cheap: one norm per row and per column), or computed exactly (as
costly as the product itself). Summing in eight interleaved chains instead
of one brings k + 2 down to k/8 + 5 (three more roundings add the chains
up). For each bound and k this prints the
fraction of elements whose interval [y − E, y + E] holds a binary16
rounding boundary: the elements a float32 merge would have to redo in
float64.
"""
import json
import struct
import sys

import numpy as np


def tensors(path, names):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        out = {}
        for name in names:
            meta = header[name]
            start, end = meta["data_offsets"]
            f.seek(8 + n + start)
            dt = {"F16": np.float16, "F32": np.float32}[meta["dtype"]]
            out[name] = np.frombuffer(f.read(end - start), dtype=dt).reshape(meta["shape"])
        return out


def main():
    split = sys.argv[1].rstrip("/")
    module = sys.argv[2] if len(sys.argv) > 2 else "model.layers.3.self_attn.q_proj"
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
    weight = module + ".weight"
    residual = split + "/residual"
    try:
        with open(residual + "/model.safetensors.index.json") as f:
            residual += "/" + json.load(f)["weight_map"][weight]
    except (FileNotFoundError, NotADirectoryError):
        residual += ".safetensors"
    w = tensors(residual, [weight])[weight][:rows].astype(np.float64)
    names = [module + s for s in (".sorsa_A", ".sorsa_B", ".sorsa_S")]
    ad = tensors(split + "/adapter/adapter_model.safetensors", names)
    a = ad[names[0]].astype(np.float64)
    coef = ad[names[1]][:rows].astype(np.float64) * ad[names[2]].astype(np.float64)
    k = coef.shape[1]
    y = w + coef @ a

    def half(x):  # round to binary16 through float32: enough to find boundaries
        return x.astype(np.float32).astype(np.float16)

    bounds = {
        "Cauchy-Schwarz": np.outer(np.sqrt((coef ** 2).sum(1)), np.sqrt((a ** 2).sum(0))),
        "exact sum|a·b|": np.abs(coef) @ np.abs(a),
    }
    print(f"{module}: {rows} rows × {a.shape[1]}, rank {k}")
    print("| bound | one chain (k + 2) | eight chains (k/8 + 5) |")
    print("|---|---|---|")
    for name, s in bounds.items():
        cells = []
        for terms in (k + 2, k // 8 + 5):
            e = terms * 2.0 ** -24 * s * (1 + 1e-6) + 2.0 ** -50 * np.abs(y)
            cells.append(f"{(half(y - e) != half(y + e)).mean():.1%}")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
