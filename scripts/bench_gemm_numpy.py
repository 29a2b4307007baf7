#!/usr/bin/env python3
"""numpy (OpenBLAS) matmul GFLOP/s on the shapes `zerotrain bench gemm` runs, one JSON
object per line with the same keys. Usage: bench_gemm_numpy.py [--threads N] [--seconds S]"""
import argparse
import json
import os
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seconds", type=float, default=0.5)
args = ap.parse_args()
# BLAS thread counts are read when numpy loads; tuning overrides would skew the reference.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import time  # noqa: E402

import numpy as np  # noqa: E402

SHAPES = [
    (256, 256, 256, "square"),
    (512, 512, 512, "square"),
    (1024, 1024, 1024, "square"),
    (768, 384, 128, "gpt c_attn fwd"),
    (768, 128, 128, "gpt attn c_proj fwd"),
    (768, 512, 128, "gpt c_fc fwd"),
    (768, 128, 512, "gpt mlp c_proj fwd"),
    (768, 65, 128, "gpt lm head fwd"),
    (128, 512, 768, "gpt c_fc dW"),
    (65, 128, 768, "gpt wte dW"),
    (64, 64, 32, "gpt attn scores (per head)"),
]

for m, n, k, what in SHAPES:
    a = (np.arange(m * k, dtype=np.float32) % 7 - 3).reshape(m, k) * 0.5
    b = (np.arange(k * n, dtype=np.float32) % 7 - 3).reshape(k, n) * 0.25
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    t0 = time.perf_counter()
    np.matmul(a, b, out=c)
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(args.seconds / 5 / once))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=c)
        best = min(best, (time.perf_counter() - t) / reps)
    gflops = 2.0 * m * n * k / best / 1e9
    print(json.dumps({"impl": "numpy", "m": m, "n": n, "k": k, "threads": args.threads,
                      "gflops": round(gflops, 1), "ms": best * 1e3, "shape": what}))
    sys.stdout.flush()
