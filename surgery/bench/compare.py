#!/usr/bin/python3
"""Compare surgery.Decompose with torch.svd_lowrank on the same matrices.

Run with Debian's interpreter from anywhere in the repository:

    /usr/bin/python3 surgery/bench/compare.py [--sizes 1024x1024,4096x4096,11008x4096]
        [--rank 128] [--niter 4] [--reps 3] [--threads 2] [--tags openblas]

It needs python3-torch (apt-get install -y python3-torch) and Go. For each
size it makes (once, cached in --cache, default $TMPDIR/sorsa-svd-bench) a
float32 matrix W = U·diag(s)·Vᵀ with random orthonormal U, V and the
power-law spectrum s_i = (1 + i)^(-1/2), and the reference singular values
of that float32 matrix from a full float64 SVD. Then, --reps times,
alternating so that both sides see the same machine load, it times

  * ours: the Go program surgery/bench/svdbench (surgery.Decompose, method
    randomized with oversampling 16 and --niter power iterations, and method
    exact), in a fresh process each time, second of two runs (warm);
  * torch: torch.svd_lowrank(W, q=rank, niter=niter), what PEFT's
    init_lora_weights="pissa_niter_<niter>" runs, after one warm-up call;

and prints the medians with the accuracy of the last repetition: the largest
relative error of the top-r singular values against the reference, and by
how much ‖W − W_r‖_F exceeds the optimum √(Σ_{i>r} σ_i²) (Eckart–Young).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover - environment check
    sys.exit("compare.py: torch is missing; apt-get install -y python3-torch")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # the folder holding go.mod


def make_matrix(cache, m, n, seed=1234):
    """Returns the path of the cached m×n matrix and its reference σ."""
    path = os.path.join(cache, f"w_{m}x{n}.f32")
    ref = os.path.join(cache, f"w_{m}x{n}.sigma.npy")
    if os.path.exists(path) and os.path.exists(ref):
        return path, np.load(ref)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    s = (1.0 + torch.arange(k, dtype=torch.float32)) ** -0.5
    w = ((u * s) @ v.T).contiguous()
    w.numpy().astype("<f4").tofile(path + ".tmp")
    sigma = torch.linalg.svdvals(w.double()).numpy()
    np.save(ref + ".tmp.npy", sigma)
    os.replace(ref + ".tmp.npy", ref)
    os.replace(path + ".tmp", path)
    print(f"# made {m}x{n} and its reference SVD in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path, sigma


def load(path, m, n):
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(m, n))


def accuracy(w64, sigma, r, b, s, a):
    """Max relative σ error and excess of ‖W − B·diag(S)·A‖_F over optimal."""
    ref = sigma[:r]
    got = np.asarray(s, dtype=np.float64)[:r]
    err = float(np.max(np.abs(got - ref) / ref))
    opt = float(np.sqrt(np.sum(sigma[r:] ** 2)))
    approx = (b.double() * torch.as_tensor(got)) @ a.double()
    res = float(torch.linalg.norm(w64 - approx))
    return err, res / opt - 1


def run_go(binary, path, m, n, args, method, outdir, threads):
    env = dict(os.environ, GOMAXPROCS=str(threads))
    cmd = [binary, "-in", path, "-rows", str(m), "-cols", str(n), "-rank", str(args.rank),
           "-method", method, "-reps", "2", "-out", outdir]
    if method == "randomized":
        cmd += ["-niter", str(args.niter)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    return last["seconds"], last["cpu_seconds"]


def read_factors(outdir, m, n, r):
    def f32(name, shape):
        return torch.from_numpy(np.fromfile(os.path.join(outdir, name), dtype="<f4").reshape(shape))
    return f32("B.f32", (m, r)), f32("S.f32", (r,)), f32("A.f32", (r, n))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1024x1024,4096x4096,11008x4096")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--niter", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tags", default="", help="Go build tags for svdbench, e.g. openblas")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sorsa-svd-bench"))
    args = p.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    torch.set_num_threads(args.threads)

    binary = os.path.join(args.cache, "svdbench" + ("-" + args.tags.replace(",", "-") if args.tags else ""))
    build = ["go", "build", "-o", binary]
    if args.tags:
        build += ["-tags", args.tags]
    subprocess.run(build + ["./surgery/bench/svdbench"], cwd=ROOT, check=True)

    # The BLAS torch runs on, for scale: the product shape of a power
    # iteration (our kernels: go test -run '^$' -bench 'Gemm/.*/4096x144x4096/tA=false/f32$' ./surgery/).
    a, b = torch.randn(4096, 4096), torch.randn(4096, 144)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(5):
        torch.mm(a, b)
    gf = 2 * 4096 * 4096 * 144 * 5 / (time.perf_counter() - t0) / 1e9
    print(f"# torch.mm 4096x4096 by 4096x144, float32, {args.threads} threads: {gf:.1f} GFLOP/s", file=sys.stderr)

    r, q = args.rank, args.niter
    rows = []
    for size in args.sizes.split(","):
        m, n = (int(x) for x in size.split("x"))
        path, sigma = make_matrix(args.cache, m, n)
        w = load(path, m, n)
        w64 = w.double()
        torch.svd_lowrank(w, q=r, niter=q)  # warm-up
        t_rand, t_exact, t_torch = [], [], []
        c_rand, c_exact, c_torch = [], [], []
        with tempfile.TemporaryDirectory(dir=args.cache) as d_rand, \
                tempfile.TemporaryDirectory(dir=args.cache) as d_exact:
            for _ in range(args.reps):
                # torch's BLAS threads keep spinning for a while after a
                # call; let them go idle before the Go side runs.
                time.sleep(1.0)
                s, c = run_go(binary, path, m, n, args, "randomized", d_rand, args.threads)
                t_rand.append(s)
                c_rand.append(c)
                s, c = run_go(binary, path, m, n, args, "exact", d_exact, args.threads)
                t_exact.append(s)
                c_exact.append(c)
                c0, t0 = time.process_time(), time.perf_counter()
                tu, ts, tv = torch.svd_lowrank(w, q=r, niter=q)
                t_torch.append(time.perf_counter() - t0)
                c_torch.append(time.process_time() - c0)
            acc_rand = accuracy(w64, sigma, r, *read_factors(d_rand, m, n, r))
            acc_exact = accuracy(w64, sigma, r, *read_factors(d_exact, m, n, r))
        acc_torch = accuracy(w64, sigma, r, tu[:, :r], ts[:r], tv[:, :r].T)
        med = statistics.median
        rows.append((f"{m}x{n}", med(t_rand), med(t_exact), med(t_torch),
                     med(c_rand), med(c_exact), med(c_torch), acc_rand, acc_exact, acc_torch))
        print(f"# {m}x{n}: randomized {['%.3f' % x for x in t_rand]} exact {['%.3f' % x for x in t_exact]} "
              f"torch {['%.3f' % x for x in t_torch]}", file=sys.stderr)

    print(f"r={r}, niter={q}, {args.threads} threads, median of {args.reps}; "
          f"ours = surgery.Decompose (oversample 16; exact tol 1e-6){' [tags ' + args.tags + ']' if args.tags else ''}, "
          f"torch = torch.svd_lowrank(q={r}, niter={q}) {torch.__version__}")
    print("| matrix | ours rand s | ours exact s | torch s | torch/rand | exact/rand | cpu-s rand/exact/torch "
          "| σ err rand | σ err exact | σ err torch | excess rand | excess exact | excess torch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, tr, te, tt, cr, ce, ct, ar, ae, at) in rows:
        print(f"| {name} | {tr:.3f} | {te:.3f} | {tt:.3f} | {tt / tr:.2f} | {te / tr:.2f} | "
              f"{cr:.2f}/{ce:.2f}/{ct:.2f} | {ar[0]:.1e} | {ae[0]:.1e} | {at[0]:.1e} | "
              f"{100 * ar[1]:.3f}% | {100 * ae[1]:.2e}% | {100 * at[1]:.3f}% |")


if __name__ == "__main__":
    main()
