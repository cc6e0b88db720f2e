"""Benchmark inferon::gemm (AVX2 and scalar paths) on a few shapes.

    python benchmarks/gemm_bench.py [--threads N] [--isa scalar|avx2]

Builds tests/kernel_shim.cpp with the normal toolchain (cached) and reports GFLOP/s
(best of several runs) next to numpy's BLAS for reference.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inferon.backend.toolchain import build_shared_library  # noqa: E402

SHAPES = [  # (M, N, K, label)
    (512, 512, 512, "square 512"),
    (1024, 1024, 1024, "square 1024"),
    (64, 3136, 576, "conv 3x3 64ch 56x56"),
    (256, 196, 2304, "conv 3x3 256ch 14x14"),
    (512, 49, 4608, "conv 3x3 512ch 7x7"),
    (1, 1000, 2048, "fc batch 1"),
    (16, 1000, 2048, "fc batch 16"),
    (1000, 1, 2048, "gemv N=1"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", choices=["scalar", "avx2"], default="avx2")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    so = build_shared_library(
        (ROOT / "tests" / "kernel_shim.cpp").read_text(), b"\0" * 64, Path("/tmp/inferon_gemm_bench.so")
    )
    lib = ctypes.CDLL(str(so))
    P, I64, INT, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.k_gemm.argtypes = [I64, I64, I64, I64, P, I64, I64, P, I64, I64, P, I64, I64, P, I64, INT, P, INT, F, F, P, INT]
    lib.k_set_isa.argtypes = [INT]
    lib.k_set_isa(0 if args.isa == "scalar" else 1)
    rng = np.random.default_rng(0)
    print(f"isa={args.isa} threads={args.threads}")
    print(f"{'shape':>24} {'M':>5} {'N':>5} {'K':>5} {'GFLOP/s':>9} {'numpy':>9}")
    for M, N, K, label in SHAPES:
        A = rng.standard_normal((M, K), dtype=np.float32)
        B = rng.standard_normal((K, N), dtype=np.float32)
        C = np.empty((M, N), np.float32)

        def run(A=A, B=B, C=C, M=M, N=N, K=K) -> None:
            lib.k_gemm(
                1,
                M,
                N,
                K,
                A.ctypes.data,
                K,
                0,
                B.ctypes.data,
                N,
                0,
                C.ctypes.data,
                N,
                0,
                None,
                0,
                0,
                None,
                0,
                0.0,
                0.0,
                None,
                args.threads,
            )

        def best(fn, flops=2.0 * M * N * K) -> float:
            fn()
            t = float("inf")
            for _ in range(args.repeat):
                s = time.perf_counter()
                fn()
                t = min(t, time.perf_counter() - s)
            return flops / t / 1e9

        ours = best(run)
        ref = best(lambda A=A, B=B: A @ B)
        err = np.abs(C - A @ B).max() / max(1.0, np.abs(C).max())
        assert err < 1e-4, (label, err)
        print(f"{label:>24} {M:>5} {N:>5} {K:>5} {ours:>9.1f} {ref:>9.1f}")


if __name__ == "__main__":
    main()
