"""Sparse kernel micro-benchmark and calibration of `sparsify`'s cost model.

Times, on this CPU and one thread, the runtime's kernels on the GEMM shapes of ResNet-50's convs
(M output channels x K = C*kh*kw x N output pixels): the packed dense GEMM, the CSR kernel at
50/70/90/95 % sparsity and the 2:4 kernel, plus fully-connected GEMVs (N = 1); then the quantized
GEMM (u8 x s8) dense and with block1x4 int8 weights at the same sparsities (and, with AVX512-VNNI,
CSR int8 weights: `int8_csr_gops`). All of it at the
instruction-set level model.so picks here (`inferon.cpu.model_isa`: the CPU's best, or a lower one
named by INFERON_ISA as the runtime honours it). It prints tables of effective rates and speedups
over dense, derives the cost model's figures (median rates over the lanes the kernels compute) and
writes them to that level's section of inferon/passes/graph/sparse_cost.json (`avx512_zmm` on an
AVX-512 CPU whose dense GEMM runs zmm row panels, `cpu.zmm_row_panels`: Intel), leaving the other
sections as they are, and this one's `margin` (a policy, not measured) with its `margin_note` and its
in-model INT8 frame figures (`int8_implicit_speedup`, `int8_im2col_gbps`, `int8_block4_frame_gops`,
see their notes);
`--dry-run` only prints them.

    python benchmarks/calibrate_sparse.py [--runs 15] [--dry-run] [--note "Zen 3"]
    INFERON_ISA=avx2 python benchmarks/calibrate_sparse.py   # the avx2 section on an AVX-512 CPU
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inferon.backend.toolchain import build_shared_library  # noqa: E402
from inferon.cpu import ISA_LEVELS, cpu_flags, cpu_name, model_isa, zmm_row_panels  # noqa: E402
from inferon.ir import quant  # noqa: E402
from inferon.ir.sparse import (  # noqa: E402
    SPMM_TILE,
    block4_chunks,
    block4_encode,
    csr_encode,
    csr_quad_chunks,
    csr_quad_encode,
    implicit_columns,
    nm24_encode,
    prune_nm24,
    prune_unstructured,
)
from inferon.passes.conversion.sparse_to_spmm import column_blocks  # noqa: E402
from inferon.passes.graph.sparsify import COST_FILE, cost_section, qsparse_lanes, sparse_lanes  # noqa: E402
from inferon.passes.loop.select_tiles import choose_tiles  # noqa: E402
from inferon.passes.vec.pack_weights import pack_a, pack_a_int8  # noqa: E402

P, I64, INT, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
SHAPES = [  # ResNet-50 (M, K, N)
    (64, 64, 3136), (64, 576, 3136), (256, 64, 3136), (64, 256, 3136), (128, 1152, 784), (512, 128, 784),
    (128, 512, 784), (256, 2304, 196), (1024, 256, 196), (256, 1024, 196), (512, 4608, 49), (2048, 512, 49),
    (512, 2048, 49),
]  # fmt: skip
# ResNet-50's KxK convs (C, H, kernel, stride, pad), whose B the kernels read from a bordered frame
FRAME_CONVS = [(64, 56, 3, 1, 1), (128, 28, 3, 1, 1), (256, 28, 3, 2, 1), (512, 14, 3, 2, 1)]
SPARSITIES = (0.5, 0.7, 0.9, 0.95)
GEMV = [(1000, 2048), (4096, 9216), (4096, 4096)]  # fully-connected layers (N_out, K)
NR = SPMM_TILE


def aligned(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A 64-byte aligned standard-normal float32 array (activations in the arena are aligned)."""
    n = math.prod(shape)
    buf = np.empty(n + 16, dtype=np.float32)
    start = ((-buf.ctypes.data) % 64) // 4
    out = buf[start : start + n].reshape(shape)
    out[...] = rng.standard_normal(shape)
    return out


def build(isa: str) -> ctypes.CDLL:
    with tempfile.TemporaryDirectory(prefix="inferon-sparse-bench-") as tmp:
        so = build_shared_library((ROOT / "tests" / "kernel_shim.cpp").read_text(), b"\0" * 64, Path(tmp) / "s.so")
        lib = ctypes.CDLL(str(so))
    lib.k_spmm.argtypes = [INT, INT, I64, I64, P, P, P, I64, P, I64, P, I64, I64, P, I64, I64, P, INT, P, INT, F, F,
                           INT, INT, P, I64]  # fmt: skip
    lib.k_gemm_ex.argtypes = [I64] * 4 + [P, I64, I64] * 3 + [P, I64, INT, P, INT, F, F, P, INT]
    lib.k_qgemm.argtypes = [I64, I64, I64, P, P, I64, INT, INT, P, INT, P, P, P, I64, I64, INT, INT, INT, INT, INT]
    lib.k_qgemm_sparse.argtypes = [I64, I64, I64, P, P, INT, P, I64, P, I64, INT, INT, P, INT, P, P, P, I64, I64, INT,
                                   INT, INT, INT, INT]  # fmt: skip
    lib.k_qgemm_csr.argtypes = [I64, I64, I64, P, P, INT, P, I64, P, I64, INT, INT, P, INT, P, P, P, I64, I64, INT,
                                INT, INT, INT, INT]  # fmt: skip
    lib.k_set_isa.argtypes = [INT]
    lib.k_set_isa(ISA_LEVELS.index(isa))
    return lib


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return float(np.median(samples))


def dense_call(lib: ctypes.CDLL, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Callable[[], object]:
    m, k = a.shape
    n = b.shape[1]
    kc = min(384, k)
    packed = pack_a(a, 6, kc) if m > 6 else a
    tiles = np.array([6, 16, 120, kc, 256, int(m > 6)], dtype=np.int64)
    args = (1, m, n, k, packed.ctypes.data, k, 0, b.ctypes.data, n, 0, c.ctypes.data, n, 0, None, 0, 0, None, 0,
            0.0, 0.0, tiles.ctypes.data, 1)  # fmt: skip

    def call() -> object:
        return lib.k_gemm_ex(*args)

    call.keep = (packed, tiles)  # type: ignore[attr-defined]
    return call


def dense_fc_call(lib: ctypes.CDLL, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> Callable[[], object]:
    """A fully-connected layer at batch 1 the way the compiler lowers it: x [1, K] times the weight
    W^T [K, N_out] (the GEMM's streaming path for M <= 4), not packed."""
    n_out, k = w.shape
    wt = np.ascontiguousarray(w.T)
    tiles = np.array([6, 16, *choose_tiles(1, n_out, k), 0], dtype=np.int64)
    args = (1, 1, n_out, k, x.ctypes.data, k, 0, wt.ctypes.data, n_out, 0, y.ctypes.data, n_out, 0, None, 0, 0, None,
            0, 0.0, 0.0, tiles.ctypes.data, 1)  # fmt: skip

    def call() -> object:
        return lib.k_gemm_ex(*args)

    call.keep = (wt, tiles)  # type: ignore[attr-defined]
    return call


def sparse_call(lib: ctypes.CDLL, a: np.ndarray, b: np.ndarray, c: np.ndarray, fmt: str) -> Callable[[], object]:
    m, k = a.shape
    n = b.shape[1]
    kblocks = 1
    if fmt == "csr":
        e = csr_encode(a, blocks=column_blocks(k) if n > 1 else None)  # as convert-sparse-to-spmm stores them
        kblocks = e.kblocks
        head = (0, e.indices.dtype.itemsize, m, k, e.values.ctypes.data, e.indices.ctypes.data, e.row_ptr.ctypes.data,
                n, None)  # fmt: skip
    else:
        e = nm24_encode(a)
        head = (1, 1, m, e.k, e.values.ctypes.data, e.meta.ctypes.data, None, n, None)
    args = (*head, 1, b.ctypes.data, 0, n, c.ctypes.data, n, 0, None, 0, None, 0, 0.0, 0.0, NR, 1, None, kblocks)

    def call() -> object:
        return lib.k_spmm(*args)

    call.keep = e  # type: ignore[attr-defined]
    return call


def qgemm_call(lib: ctypes.CDLL, a: np.ndarray, b: np.ndarray, c: np.ndarray, sparse: bool | str) -> Callable[[], object]:
    """The quantized GEMM on uint8 B [K, N] as the compiler emits it: A packed (dense), block1x4
    (sparse True) or CSR quads (sparse "csr")."""
    m, k = a.shape
    n = b.shape[1]
    comp = quant.compensation(a, 128, None)
    mult = np.full(m, 1e-3, np.float32)
    tail = (b.ctypes.data, n, 0, 0, None, 128, comp.ctypes.data, mult.ctypes.data, c.ctypes.data, n, 1, 0, 128, 0,
            255, 1)  # fmt: skip
    if sparse == "csr":
        q = csr_quad_encode(a, csr_quad_chunks(k * 128, float(np.count_nonzero(a)) / m))  # as the compiler stores it
        args = (m, n, k, q.values.ctypes.data, q.indices.ctypes.data, int(q.index_bits == 32), q.row_ptr.ctypes.data,
                q.kchunks, *tail)  # fmt: skip
        keep: object = q

        def call() -> object:
            return lib.k_qgemm_csr(*args)
    elif sparse:
        e = block4_encode(a, block4_chunks(k))  # as convert-sparse-to-spmm stores it
        args = (m, n, k, e.values.ctypes.data, e.indices.ctypes.data, int(e.index_bits == 32), e.row_ptr.ctypes.data,
                e.kchunks, *tail)  # fmt: skip
        keep = e

        def call() -> object:
            return lib.k_qgemm_sparse(*args)
    else:
        packed = pack_a_int8(a, 6)
        args = (m, n, k, packed.ctypes.data, *tail)
        keep = packed

        def call() -> object:
            return lib.k_qgemm(*args)

    call.keep = (keep, comp, mult)  # type: ignore[attr-defined]
    return call


def calibrate_int8(lib: ctypes.CDLL, rng: np.random.Generator, runs: int, isa: str) -> dict[str, float]:
    """Dense quantized GEMM vs block1x4 and (with AVX512-VNNI) CSR int8 weights on the same shapes: rates
    over the lanes computed (CSR: 2 * 4 * quads * N in whole 64-column blocks)."""
    csr = isa == "avx512" and {"avx512_vnni", "avx512bw"} <= cpu_flags()
    kinds = ["b1x4", *(["csr"] if csr else [])]
    print(f"\nINT8 (u8 x s8){'':>4} {'dense GOP/s':>11} "
          + " ".join(f"{f'{kind} {int(100 * s)}%':>10}" for s in SPARSITIES for kind in kinds)
          + "   (speedup over dense)")  # fmt: skip
    dense_rates, sparse_rates, csr_rates = [], [], []
    for m, k, n in SHAPES:
        w = np.clip(np.rint(rng.standard_normal((m, k)) * 40), -127, 127).astype(np.int8)
        b = rng.integers(0, 256, (k, n), dtype=np.uint8)
        c = np.zeros((m, n), np.uint8)
        t_dense = median_time(qgemm_call(lib, w, b, c, False), runs)
        dense_rates.append(2.0 * m * k * n / t_dense / 1e9)
        cells = []
        for s in SPARSITIES:
            a = np.where(prune_unstructured(w.astype(np.float32), s) != 0, w, 0).astype(np.int8)
            t = median_time(qgemm_call(lib, a, b, c, True), runs)
            blocks = int(block4_encode(a).row_ptr[-1])
            sparse_rates.append(2.0 * 4 * blocks * qsparse_lanes(n, isa) / t / 1e9)
            cells.append(f"{t_dense / t:9.2f}x")
            if csr:
                t = median_time(qgemm_call(lib, a, b, c, "csr"), runs)
                csr_rates.append(2.0 * 4 * int(csr_quad_encode(a).row_ptr[-1]) * -(-n // 64) * 64 / t / 1e9)
                cells.append(f"{t_dense / t:9.2f}x")
        print(f"{f'{m}x{k}x{n}':>18} {dense_rates[-1]:11.1f} " + " ".join(cells), flush=True)
    rates = {"int8_dense_gops": float(np.median(dense_rates)), "int8_block4_gops": float(np.median(sparse_rates))}
    if csr:
        rates["int8_csr_gops"] = float(np.median(csr_rates))
    return rates


def frame_call(lib: ctypes.CDLL, a: np.ndarray, x: np.ndarray, c: np.ndarray, conv: tuple[int, int, int, int, int]
               ) -> Callable[[], object]:  # fmt: skip
    """The 2:4 kernel on a conv read in place from its frame (as convert-sparse-to-spmm lowers it)."""
    ch, h, kk, st, pad = conv
    ho = (h + 2 * pad - kk) // st + 1
    e = nm24_encode(a)
    koff = np.zeros(e.k, dtype=np.int32)
    koff[: a.shape[1]] = implicit_columns(ch, kk, kk, ho, ho, st, st)
    geom = np.array([ch, h, h, kk, kk, st, st, pad, pad, 1, 1, ho, ho], dtype=np.int64)
    args = (1, 1, a.shape[0], e.k, e.values.ctypes.data, e.meta.ctypes.data, None, 1, koff.ctypes.data, 1,
            x.ctypes.data, 0, ho * ho, c.ctypes.data, ho * ho, 0, None, 0, None, 0, 0.0, 0.0, NR, 1, geom.ctypes.data, 1)  # fmt: skip

    def call() -> object:
        return lib.k_spmm(*args)

    call.keep = (e, koff, geom)  # type: ignore[attr-defined]
    return call


def calibrate_frame(lib: ctypes.CDLL, rng: np.random.Generator, runs: int, isa: str) -> float:
    """The 2:4 rate (GFLOP/s over the lanes, as `nm24_gflops`) of convs read from a frame."""
    rates = []
    for conv in FRAME_CONVS:
        ch, h, kk, st, pad = conv
        ho = (h + 2 * pad - kk) // st + 1
        m, k, n = ch, ch * kk * kk, ho * ho  # ResNet-50's bottleneck 3x3s: as many outputs as inputs
        w = prune_nm24(rng.standard_normal((m, k)).astype(np.float32))
        x = aligned((ch, h * h), rng)
        c = aligned((m, n), rng)
        t = median_time(frame_call(lib, w, x, c, conv), runs)
        rates.append(1.0 * m * k * sparse_lanes(n, isa) / t / 1e9)
        print(f"2:4 read from the frame, {m}x{k}x{n} ({kk}x{kk}/{st}): {rates[-1]:.1f} GFLOP/s", flush=True)
    return float(np.median(rates))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="timed runs per kernel (median)")
    ap.add_argument("--dry-run", action="store_true", help="print the fitted figures, do not write them")
    ap.add_argument("--note", default=cpu_name(), help="where measured, for the section's source note "
                    "(default: the CPU's model name)")  # fmt: skip
    args = ap.parse_args(argv)
    isa = model_isa()
    if os.environ.get("INFERON_ISA", isa) != isa:
        raise SystemExit(f"INFERON_ISA={os.environ['INFERON_ISA']}: this CPU runs at most {isa}")
    section = cost_section(isa, zmm_row_panels(isa))  # avx512_zmm: an AVX-512 CPU with zmm row panels
    print(f"instruction set: {isa} (section {section})")
    lib = build(isa)
    rng = np.random.default_rng(0)
    dense_rates, csr_rows, nm_rows = [], [], []
    print(f"{'M x K x N':>18} {'dense GF/s':>10} " + " ".join(f"{f'csr {int(100 * s)}%':>9}" for s in SPARSITIES)
          + f" {'2:4':>9}   (speedup over dense)")  # fmt: skip
    for m, k, n in SHAPES:
        w = rng.standard_normal((m, k)).astype(np.float32)
        b = aligned((k, n), rng)
        c = aligned((m, n), rng)
        t_dense = median_time(dense_call(lib, w, b, c), args.runs)
        dense_rates.append(2.0 * m * k * n / t_dense / 1e9)
        cells = []
        tiles = m * math.ceil(n / NR)
        for s in SPARSITIES:
            a = prune_unstructured(w, s)
            t = median_time(sparse_call(lib, a, b, c, "csr"), args.runs)
            csr_rows.append((2.0 * np.count_nonzero(a) * sparse_lanes(n, isa), tiles, t))
            cells.append(f"{t_dense / t:8.2f}x")
        t = median_time(sparse_call(lib, prune_nm24(w), b, c, "nm24"), args.runs)
        nm_rows.append((1.0 * m * k * sparse_lanes(n, isa), tiles, t))
        print(f"{f'{m}x{k}x{n}':>18} {dense_rates[-1]:10.1f} " + " ".join(cells) + f" {t_dense / t:8.2f}x", flush=True)

    # FLOP rates only: a least-squares split into rate + per-tile cost was unstable from run to run
    # (0-8.9 ns per tile, CSR 56-65 GFLOP/s) and flipped decisions at the margin
    flops, _, secs = (np.array(v, dtype=np.float64) for v in zip(*csr_rows))
    csr_gflops = float(np.median(flops / secs)) / 1e9
    nflops, _, nsecs = (np.array(v, dtype=np.float64) for v in zip(*nm_rows))
    nm24_gflops = float(np.median(nflops / nsecs)) / 1e9
    tile_s = 0.0
    nm24_frame_gflops = calibrate_frame(lib, rng, args.runs, isa)

    gemv_dense, gemv_sparse = [], []
    for n_out, k in GEMV:
        w = rng.standard_normal((n_out, k)).astype(np.float32)
        x = aligned((k, 1), rng)
        y = aligned((n_out, 1), rng)
        t_dense = median_time(dense_fc_call(lib, w, x, y), args.runs)
        gemv_dense.append(n_out * k * 4 / t_dense / 1e9)
        a = prune_unstructured(w, 0.9)
        t_sparse = median_time(sparse_call(lib, a, x, y, "csr"), args.runs)
        gemv_sparse.append(np.count_nonzero(a) * 6 / t_sparse / 1e9)
        print(f"GEMV {n_out}x{k}: dense {gemv_dense[-1]:.1f} GB/s, CSR 90 % {gemv_sparse[-1]:.1f} GB/s, "
              f"speedup {t_dense / t_sparse:.2f}x")  # fmt: skip

    data = json.loads(COST_FILE.read_text())
    previous = data["isa"].get(section, data["isa"].get(isa, {}))
    figures = {
        "source": f"benchmarks/calibrate_sparse.py --runs {args.runs} on {args.note}, {datetime.date.today()} "
                  f"({isa} kernels, 1 thread, medians; ResNet-50 conv shapes)",
        "dense_gflops": round(float(np.median(dense_rates)), 1),
        "csr_gflops": round(csr_gflops, 1),
        "nm24_gflops": round(nm24_gflops, 1),
        "nm24_frame_gflops": round(nm24_frame_gflops, 1),
        "tile_ns": round(tile_s * 1e9, 2),
        "gemv_dense_gbps": round(float(np.median(gemv_dense)), 1),
        "gemv_sparse_gbps": round(float(np.median(gemv_sparse)), 1),
        **{key: round(v, 1) for key, v in calibrate_int8(lib, rng, args.runs, isa).items()},
        "margin": previous.get("margin", 0.85),  # a policy, not measured: kept, with its note
        **({"margin_note": previous["margin_note"]} if "margin_note" in previous else {}),
        # measured in a model's per-layer profile, not here: kept, with their note
        **{key: previous[key] for key in ("int8_implicit_speedup", "int8_im2col_gbps", "int8_frame_note",
                                             "int8_block4_frame_gops", "int8_block4_frame_note") if key in previous},
    }
    print(json.dumps(figures, indent=2))
    if not args.dry_run:
        data["isa"][section] = figures
        rank = {k: (ISA_LEVELS.index(k.split("_")[0]), "_" in k) for k in data["isa"]}  # avx512_zmm first
        data["isa"] = {k: data["isa"][k] for k in sorted(data["isa"], key=rank.__getitem__, reverse=True)}
        COST_FILE.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote the {section} section of {COST_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
