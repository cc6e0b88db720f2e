"""Tests of the C/C++ runtime: every kernel against numpy (scalar and AVX2 paths), the C API's
input checks through the Python loader, ISA selection via INFERON_ISA, and the build cache.

Two libraries are built once per module (and cached across runs by build_shared_library):
``kernel_shim.cpp`` exports each kernel as an ``extern "C"`` function for ctypes, and
``runtime_test_model.cpp`` is a small model in the shape of generated code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inferon.backend.toolchain import build_shared_library
from inferon.cpu import host_isa, supports
from inferon.errors import BuildError, InferonError, RuntimeCallError
from inferon.runtime import CompiledModel, load

HERE = Path(__file__).resolve().parent
WEIGHTS = np.random.default_rng(42).standard_normal(42).astype(np.float32)

P = ctypes.c_void_p
I64 = ctypes.c_int64
INT = ctypes.c_int
F = ctypes.c_float


ISAS = [0, pytest.param(1, marks=pytest.mark.skipif(not supports("avx2"), reason="no AVX2/FMA"))]


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    so = build_shared_library(
        (HERE / "kernel_shim.cpp").read_text(),
        np.arange(16, dtype=np.float32).tobytes(),
        tmp_path_factory.mktemp("shim") / "shim.so",
    )
    lib = ctypes.CDLL(str(so))
    sigs = {
        "k_set_isa": [INT],
        "k_gemm": [I64, I64, I64, I64, P, I64, I64, P, I64, I64, P, I64, I64, P, I64, INT, P, INT, F, F, P, INT],
        "k_gemm_lanes": [I64, I64, I64, I64, P, I64, P, I64, I64, P, I64, I64, P, I64, INT, P, INT, F, F, P, INT],
        "k_im2col": [P, I64, I64, I64, INT, INT, INT, INT, INT, INT, INT, INT, I64, I64, P, INT],
        "k_col2im": [P, P, P, P, I64, I64, I64, I64, INT, INT, INT, INT, INT, INT, INT, INT, I64, I64, INT, INT],
        "k_pool2d": [P, P, I64, I64, I64, I64, I64] + [INT] * 12 + [INT],
        "k_global_pool": [P, P, I64, I64, INT, INT],
        "k_binary": [INT, INT, P, P, P, P, P, P, INT],
        "k_unary": [INT, I64, P, P, F, F, INT],
        "k_copy_rows": [P, P, I64, I64, I64],
        "k_transpose": [INT, P, P, P, P, INT],
        "k_strided_copy": [INT, P, P, P, P, INT],
        "k_pad": [INT, P, P, P, INT, P, P, F, INT],
        "k_pad_u8": [INT, P, P, P, INT, P, P, F, INT],
        "k_softmax": [P, P, I64, I64, I64, INT, INT],
        "k_lrn": [P, P, I64, I64, I64, INT, F, F, F, INT],
        "k_channel_affine": [P, P, I64, I64, I64, P, P, P, INT, INT],
    }
    for name, args in sigs.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = None
    lib.k_get_isa.restype = INT
    lib.k_weights.restype = ctypes.POINTER(ctypes.c_float)
    return lib


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return build_shared_library(
        (HERE / "runtime_test_model.cpp").read_text(),
        WEIGHTS.tobytes(),
        tmp_path_factory.mktemp("model") / "model.so",
    )


@pytest.fixture
def isa_env(monkeypatch):
    """Set INFERON_ISA for contexts created in the test (read by inferon_model_create)."""

    def set_isa(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("INFERON_ISA", raising=False)
        else:
            monkeypatch.setenv("INFERON_ISA", value)

    return set_isa


def ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def i64(values) -> np.ndarray:
    return np.ascontiguousarray(np.array(values, dtype=np.int64))


def randn(rng, *shape) -> np.ndarray:
    return np.array(rng.standard_normal(shape), dtype=np.float32)


# --------------------------------------------------------------------------------------- GEMM
def act_ref(x, act, alpha, beta):
    if act == 1:
        return np.maximum(x, 0)
    if act == 2:
        return np.where(x < 0, x * alpha, x)
    if act == 3:
        return np.clip(x, alpha, beta)
    if act == 4:
        return 1 / (1 + np.exp(-x))
    if act == 5:  # hard swish
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if act == 6:  # swish: x * sigmoid(alpha * x)
        return x / (1 + np.exp(-alpha * x))
    if act in (7, 8):  # GELU (erf), GELU (tanh)
        if act == 7:
            return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return x


def run_gemm(
    lib,
    isa,
    A,
    B,
    *,
    batch=1,
    M,
    N,
    K,
    sA,
    sB,
    bias=None,
    bias_bs=0,
    axis=0,
    residual=None,
    act=0,
    alpha=0.1,
    beta=0.6,
    tiles=None,
    threads=1,
    C=None,
    ldc=None,
    sC=None,
):
    lib.k_set_isa(isa)
    ldc = N if ldc is None else ldc
    sC = M * ldc if sC is None else sC
    if C is None:
        C = np.full(batch * sC if batch > 1 else M * ldc, np.nan, dtype=np.float32)
    t = None if tiles is None else i64(tiles)
    lib.k_gemm(
        batch,
        M,
        N,
        K,
        ptr(A),
        K,
        sA,
        ptr(B),
        N,
        sB,
        ptr(C),
        ldc,
        sC,
        ptr(bias),
        bias_bs,
        axis,
        ptr(residual),
        act,
        alpha,
        beta,
        ptr(t),
        threads,
    )
    return C


def gemm_ref(A, B, bias=None, axis=0, residual=None, act=0, alpha=0.1, beta=0.6):
    out = A.astype(np.float64) @ B.astype(np.float64)
    if bias is not None:
        out = out + (bias[..., :, None] if axis == 0 else bias[..., None, :])
    if residual is not None:
        out = out + residual
    return act_ref(out, act, alpha, beta)


def assert_close(got, want, rtol=2e-5, atol=None):
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    atol = 2e-5 * scale if atol is None else atol
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)


SIZES = (1, 5, 7, 17, 65, 130)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_all_sizes(shim, isa):
    rng = np.random.default_rng(0)
    for M, N, K in itertools.product(SIZES, SIZES, SIZES):
        A, B = randn(rng, M, K), randn(rng, K, N)
        C = run_gemm(shim, isa, A, B, M=M, N=N, K=K, sA=0, sB=0).reshape(M, N)
        assert_close(C, gemm_ref(A, B), atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("rows", ["ymm", "zmm"])
def test_gemm_row_panel_tiles(shim, rows, monkeypatch):
    """The row-panel GEMM on 6 x 16 ymm tiles and on 6 x 32 / 12 x 32 zmm tiles (INFERON_GEMM_ROWS; zmm
    is the default on Intel CPUs with AVX-512F): column edges of 1-4, 5-8, 9-16 and 17-31 columns, short
    last row panels, an odd panel left after the pairs, K past one cache block, pre-packed A, batches,
    every epilogue input with the zmm epilogue (ReLU, Clip) and the ymm one (LeakyRelu), 1 and 2 threads."""
    if not supports("avx512"):
        pytest.skip("no AVX-512F on this CPU")
    monkeypatch.setenv("INFERON_GEMM_ROWS", rows)
    rng = np.random.default_rng(21)
    shapes = [(64, 50, 70), (13, 33, 300), (40, 95, 9), (7, 64, 513), (130, 31, 17), (36, 96, 200)]
    for (M, N, K), threads, (act, alpha, beta) in itertools.product(shapes, [1, 2],
                                                                    [(3, -0.5, 0.7), (1, 0, 0), (2, -0.3, 0.4)]):  # fmt: skip
        A, B = randn(rng, M, K), randn(rng, K, N)
        bias, res = randn(rng, M), randn(rng, M, N)
        C = run_gemm(shim, 2, A, B, M=M, N=N, K=K, sA=0, sB=0, bias=bias, axis=0, residual=res, act=act,
                     alpha=alpha, beta=beta, tiles=[6, 16, 24, 128, 64, 0], threads=threads)  # fmt: skip
        assert_close(C.reshape(M, N), gemm_ref(A, B, bias, 0, res, act, alpha, beta), atol=2e-4 * np.sqrt(K))
    A, B = randn(rng, 2, 20, 30), randn(rng, 2, 30, 45)
    C = run_gemm(shim, 2, A, B, batch=2, M=20, N=45, K=30, sA=600, sB=1350, act=1)
    assert_close(C.reshape(2, 20, 45), gemm_ref(A, B, act=1), atol=1e-3)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_short_last_panel(shim, isa):
    """A last 6-row panel holding 1-4 rows runs the 4-row kernel (M = 64: 10 panels + 4 rows), at
    the end of every row block (mc) and of each thread's rows, across K blocks and column edges."""
    rng = np.random.default_rng(11)
    for (M, N, K), mc, threads in itertools.product([(64, 50, 70), (10, 16, 3), (16, 21, 300), (2, 40, 9)],
                                                    [6, 12, 66], [1, 2]):  # fmt: skip
        A, B = randn(rng, M, K), randn(rng, K, N)
        bias, res = randn(rng, M), randn(rng, M, N)
        C = run_gemm(shim, isa, A, B, M=M, N=N, K=K, sA=0, sB=0, bias=bias, axis=0, residual=res, act=1,
                     tiles=[6, 16, mc, 32, 48, 0], threads=threads)  # fmt: skip
        assert_close(C.reshape(M, N), gemm_ref(A, B, bias, 0, res, 1), atol=2e-4 * np.sqrt(K))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("N", [17, 18, 19, 20, 49, 52])
def test_gemm_column_edges(shim, isa, N):
    """The last 1-4 columns of a packed GEMM (N = 49: one) go through the column-edge kernel: K of 1
    (only its masked last step), odd K, K past one cache block (C accumulated), with every epilogue
    input, rows not a multiple of the panel height."""
    rng = np.random.default_rng(N)
    for M, K in [(64, 1), (13, 7), (20, 130), (512, 9), (11, 1000)]:
        A, B = randn(rng, M, K), randn(rng, K, N)
        bias, res = randn(rng, N), randn(rng, M, N)
        C = run_gemm(shim, isa, A, B, M=M, N=N, K=K, sA=0, sB=0, bias=bias, axis=1, residual=res, act=1)
        assert_close(C.reshape(M, N), gemm_ref(A, B, bias, 1, res, 1), atol=2e-4 * np.sqrt(K))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", [0, 1, 2, 3, 4, 5, 6, 7, 8])
def test_gemm_epilogues(shim, isa, act):
    rng = np.random.default_rng(act)
    for (M, N, K), axis, with_res in itertools.product(
        [
            (1, 33, 20),
            (5, 7, 9),
            (6, 16, 300),
            (17, 65, 130),
            (65, 17, 513),
            (13, 1, 40),
            (2, 300, 262),
            (3, 1100, 70),
        ],  # the last two: small M streaming B
        [0, 1],
        [False, True],
    ):
        A, B = randn(rng, M, K), randn(rng, K, N)
        bias = randn(rng, M if axis == 0 else N)
        res = randn(rng, M, N) if with_res else None
        C = run_gemm(shim, isa, A, B, M=M, N=N, K=K, sA=0, sB=0, bias=bias, axis=axis, residual=res, act=act).reshape(
            M, N
        )
        assert_close(C, gemm_ref(A, B, bias, axis, res, act), atol=2e-4 * np.sqrt(K))


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_batch_broadcast_strides_threads_and_tiles(shim, isa):
    rng = np.random.default_rng(1)
    tiles_list = [None, (6, 8, 12, 16, 32), (4, 16, 7, 5, 17), (6, 12, 72, 256, 1024)]
    for (M, N, K), bcast, tiles, threads in itertools.product(
        [(7, 130, 65), (65, 17, 130), (3, 40, 17), (1, 70, 33), (30, 1, 20), (1, 1500, 150)],
        ["none", "A", "B"],
        tiles_list,
        [1, 3],
    ):
        batch = 3
        A = randn(rng, 1 if bcast == "A" else batch, M, K)
        B = randn(rng, 1 if bcast == "B" else batch, K, N)
        bias = randn(rng, batch, M)
        res = randn(rng, batch, M, N)
        C = run_gemm(
            shim,
            isa,
            A,
            B,
            batch=batch,
            M=M,
            N=N,
            K=K,
            sA=0 if bcast == "A" else M * K,
            sB=0 if bcast == "B" else K * N,
            bias=bias,
            bias_bs=M,
            axis=0,
            residual=res,
            act=1,
            tiles=tiles,
            threads=threads,
        ).reshape(batch, M, N)
        want = gemm_ref(np.broadcast_to(A, (batch, M, K)), np.broadcast_to(B, (batch, K, N)), bias, 0, res, 1)
        assert_close(C, want, atol=2e-4 * np.sqrt(K))


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_prepacked_b(shim, isa):
    """B pre-packed as pack-weights does for constant MatMul weights (nr-column panels over all K; tiles[5]
    bit 1), also with A pre-packed (bit 0), across K blocks, column edges, batches and threads."""
    from inferon.passes.vec.pack_weights import pack_a, pack_b

    lib = shim
    lib.k_gemm_ex.argtypes = lib.k_gemm.argtypes
    lib.k_gemm_ex.restype = None
    rng = np.random.default_rng(7)
    for (M, N, K), nr, kc, threads, a_packed in itertools.product(
        [(7, 17, 5), (13, 40, 300), (65, 33, 130), (30, 130, 65), (197, 49, 24), (64, 50, 70), (8, 19, 9)],
        [8, 16], [16, 256], [1, 2, 3], [0, 1],
    ):
        batch = 2
        A, B = randn(rng, batch, M, K), randn(rng, batch, K, N)
        bias, res = randn(rng, batch, N), randn(rng, batch, M, N)
        # the weight blob starts every array 64-byte aligned; the kernel loads B panels aligned
        packed = np.concatenate([pack_b(B[i], nr) for i in range(batch)])
        buf = np.empty(packed.size + 16, dtype=np.float32)
        start = (-buf.ctypes.data % 64) // 4
        Bp = buf[start : start + packed.size]
        Bp[:] = packed
        Ap = np.concatenate([pack_a(A[i], 6, kc) for i in range(batch)]) if a_packed else A
        C = np.full(batch * M * N, np.nan, dtype=np.float32)
        tiles = i64([6, nr, 12, kc, 32, 2 | a_packed])
        lib.k_set_isa(isa)
        lib.k_gemm_ex(batch, M, N, K, ptr(Ap), K, Ap.size // batch, ptr(Bp), N, Bp.size // batch, ptr(C), N, M * N,
                      ptr(bias), N, 1, ptr(res), 3, 0.0, 1.5, ptr(tiles), threads)  # fmt: skip
        want = gemm_ref(A, B, bias, 1, res, 3, 0.0, 1.5)
        assert_close(C.reshape(batch, M, N), want, atol=2e-4 * np.sqrt(K))


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_strided_c_and_residual_aliasing_c(shim, isa):
    rng = np.random.default_rng(2)
    for M, N, K in [(17, 65, 300), (5, 33, 600), (9, 1, 700), (70, 40, 1000)]:
        A, B = randn(rng, M, K), randn(rng, K, N)
        # C is a column block of a wider matrix (ldc > N); untouched columns stay NaN
        ldc = N + 3
        C = run_gemm(shim, isa, A, B, M=M, N=N, K=K, sA=0, sB=0, ldc=ldc).reshape(M, ldc)
        assert_close(C[:, :N], gemm_ref(A, B), atol=1e-4 * np.sqrt(K))
        assert np.isnan(C[:, N:]).all()
        # residual == C (in-place residual add), K spans several k-blocks
        res = randn(rng, M, N)
        C = res.copy().reshape(-1)
        bias = randn(rng, N)
        run_gemm(
            shim,
            isa,
            A,
            B,
            M=M,
            N=N,
            K=K,
            sA=0,
            sB=0,
            bias=bias,
            axis=1,
            residual=C,
            act=2,
            C=C,
            tiles=(6, 16, 72, 128, 1024),
        )
        assert_close(C.reshape(M, N), gemm_ref(A, B, bias, 1, res, 2), atol=1e-4 * np.sqrt(K))


# ------------------------------------------------------------------------- lanes GEMM (gemm_lanes.hpp)
LANE_ISAS = [*ISAS, pytest.param(2, marks=pytest.mark.skipif(not supports("avx512"), reason="no AVX-512F"))]


@pytest.mark.parametrize("isa", LANE_ISAS)
def test_gemm_lanes(shim, isa):
    """A packed as 32-row vector lanes (pack_a_lanes): rows past whole panels, column groups of every
    width (N = 1 .. 17, 49; 16 and 24 in 8-column tiles; 500 in several column chunks), K blocks (K > 256), bias per row or column, residual, activations,
    batches (split over threads or not) and C with ldc > N (columns past N untouched)."""
    from inferon.passes.vec.pack_weights import pack_a_lanes

    rng = np.random.default_rng(11)
    shim.k_set_isa(isa)
    cases = [(32, 7, 5, 1, 0, 1), (33, 1, 9, 1, 1, 2), (70, 17, 300, 2, 0, 1), (64, 49, 260, 3, 1, 2),
             (100, 13, 40, 2, 0, 3), (5, 9, 3, 1, 1, 1), (96, 50, 517, 1, 0, 2),
             (64, 16, 300, 2, 1, 2), (40, 24, 20, 1, 0, 1),
             (48, 500, 130, 1, 1, 2)]  # fmt: skip (N = 16, 24: 8-column tiles; 500: column chunks 224, 224, 52)
    for M, N, K, batch, axis, threads in cases:
        act = (M + N) % 4  # none, relu, leaky, clip
        A, B = randn(rng, batch, M, K), randn(rng, batch, K, N)
        bias = randn(rng, batch, M if axis == 0 else N)
        ldc = N + 2
        res = randn(rng, batch, M, ldc)
        Ap = np.concatenate([pack_a_lanes(A[i]) for i in range(batch)])
        C = np.full((batch, M, ldc), np.nan, np.float32)
        shim.k_gemm_lanes(batch, M, N, K, ptr(Ap), Ap.size // batch, ptr(B), N, K * N, ptr(C), ldc, M * ldc,
                          ptr(bias), bias.shape[1], axis, ptr(res), act, 0.1, 0.6, None, threads)  # fmt: skip
        want = gemm_ref(A, B, bias, axis, res[..., :N], act, 0.1, 0.6)
        assert_close(C[..., :N], want, atol=2e-4 * np.sqrt(K))
        assert np.isnan(C[..., N:]).all()


@pytest.mark.parametrize("isa", LANE_ISAS)
def test_gemm_lanes_im2col_and_residual_aliasing_c(shim, isa):
    """B as the im2col view of an image, read from a zero-bordered copy (strides, dilation, asymmetric
    pads, output rows not a multiple of the column group, several rows per column chunk and rows
    wider than a chunk) or, unpadded, from the image itself, and the residual already in C
    (accumulated into)."""
    from inferon.passes.vec.pack_weights import pack_a_lanes

    rng = np.random.default_rng(12)
    shim.k_set_isa(isa)
    configs = [  # C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, M
        (5, 13, 14, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 40),
        (3, 30, 31, 7, 7, 2, 2, 3, 3, 3, 2, 1, 1, 64),
        (4, 11, 12, 3, 3, 1, 1, 2, 0, 1, 2, 2, 2, 33),
        (2, 6, 250, 1, 3, 1, 1, 0, 1, 0, 1, 1, 1, 32),
        (6, 13, 15, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 40),  # unpadded: the image read in place, no copy
        (3, 12, 17, 3, 3, 2, 2, 0, 0, 0, 0, 1, 2, 36),  # unpadded, last image row and columns unused
    ]
    for C_in, H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, M in configs:
        Ho = (H + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
        Wo = (W + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
        N, K = Ho * Wo, C_in * kh * kw
        x, A = randn(rng, C_in, H, W), randn(rng, M, K)
        geometry = i64([C_in, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo])
        bias = randn(rng, M)
        Ap = pack_a_lanes(A)
        C = randn(rng, M, N)
        want = gemm_ref(A, im2col_ref(x, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo), bias, 0, C, 1)
        shim.k_gemm_lanes(1, M, N, K, ptr(Ap), 0, ptr(x), 0, 0, ptr(C), N, 0, ptr(bias), 0, 0, ptr(C), 1, 0.0, 0.0,
                          ptr(geometry), 2)  # fmt: skip
        assert_close(C, want, atol=2e-4 * np.sqrt(K))


# -------------------------------------------------------------------------------------- im2col
def im2col_ref(x, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo):
    C, H, W = x.shape
    col = np.zeros((C, kh, kw, Ho, Wo), np.float32)
    for i, j in itertools.product(range(kh), range(kw)):
        for ho, wo in itertools.product(range(Ho), range(Wo)):
            h, w = ho * sh - pt + i * dh, wo * sw - pl + j * dw
            if 0 <= h < H and 0 <= w < W:
                col[:, i, j, ho, wo] = x[:, h, w]
    return col.reshape(C * kh * kw, Ho * Wo)


@pytest.mark.parametrize("isa", ISAS)
def test_im2col(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(3)
    configs = [  # C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw
        (3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
        (2, 8, 8, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1),
        (4, 10, 11, 5, 3, 2, 3, 2, 0, 2, 1, 1, 1),
        (2, 9, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),
        (1, 5, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1),
        (2, 4, 4, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1),
    ]
    for C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw in configs:
        x = randn(rng, C, H, W)
        Ho = (H + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
        Wo = (W + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
        col = np.full((C * kh * kw, Ho * Wo), np.nan, np.float32)
        shim.k_im2col(ptr(x), C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, ptr(col), 2)
        np.testing.assert_array_equal(col, im2col_ref(x, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo))


# -------------------------------------------------------------------------------------- col2im
def col2im_ref(col, bias, residual, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, relu):
    N = col.shape[0]
    cols = col.reshape(N, C, kh, kw, H, W).astype(np.float64)
    y = np.zeros((N, C, Ho, Wo)) + bias.reshape(1, C, 1, 1) + residual
    for i, j, ih, iw in itertools.product(range(kh), range(kw), range(H), range(W)):
        oh, ow = ih * sh - pt + i * dh, iw * sw - pl + j * dw
        if 0 <= oh < Ho and 0 <= ow < Wo:
            y[:, :, oh, ow] += cols[:, :, i, j, ih, iw]
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize("isa", ISAS)
def test_col2im(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(4)
    configs = [  # N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, extra rows / columns (output_padding)
        (1, 3, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1, 0),
        (2, 2, 6, 13, 2, 2, 2, 2, 0, 0, 1, 1, 0),  # Wo = 26: one 16-wide interleave + tail
        (1, 2, 4, 9, 4, 4, 2, 2, 1, 1, 1, 1, 1),
        (1, 3, 3, 5, 3, 2, 3, 3, 0, 1, 1, 1, 2),
        (1, 2, 5, 6, 3, 3, 2, 1, 2, 0, 2, 2, 1),
        (1, 4, 7, 11, 1, 1, 2, 2, 0, 0, 1, 1, 1),  # half the outputs get no tap
        (1, 1, 2, 3, 5, 5, 1, 1, 2, 2, 1, 1, 0),  # pads as large as the input
    ]
    for (N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, extra), relu in itertools.product(configs, (0, 1)):
        Ho = sh * (H - 1) + (kh - 1) * dh + 1 - 2 * pt + extra
        Wo = sw * (W - 1) + (kw - 1) * dw + 1 - 2 * pl + extra
        col, bias = randn(rng, N, C * kh * kw, H * W), randn(rng, C)
        residual = randn(rng, N, C, Ho, Wo)
        y = np.full((N, C, Ho, Wo), np.nan, np.float32)
        shim.k_col2im(ptr(col), ptr(bias), ptr(residual), ptr(y), N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo,
                      relu, 2)  # fmt: skip
        want = col2im_ref(col, bias, residual, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, relu)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------- pooling
def pool_ref(x, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, cip):
    NC, H, W = x.shape
    y = np.zeros((NC, Ho, Wo), np.float64)
    for ho, wo in itertools.product(range(Ho), range(Wo)):
        hs = [ho * sh - pt + i * dh for i in range(kh)]
        ws = [wo * sw - pl + j * dw for j in range(kw)]
        hin = [h for h in hs if 0 <= h < H]
        win = [w for w in ws if 0 <= w < W]
        vals = x[:, hin][:, :, win].reshape(NC, -1).astype(np.float64)
        if is_max:
            y[:, ho, wo] = vals.max(axis=1) if vals.shape[1] else -np.finfo(np.float32).max
        else:
            if cip:
                cnt = sum(-pt <= h < H + pb for h in hs) * sum(-pl <= w < W + pr for w in ws)
            else:
                cnt = len(hin) * len(win)
            y[:, ho, wo] = vals.sum(axis=1) / cnt if cnt else 0.0
    return y


def pool_out(n, k, s, p0, p1, d, ceil):
    eff = (k - 1) * d + 1
    if ceil:
        out = -(-(n + p0 + p1 - eff) // s) + 1
        if (out - 1) * s >= n + p0:  # last window must start inside the image or left padding
            out -= 1
        return out
    return (n + p0 + p1 - eff) // s + 1


@pytest.mark.parametrize("isa", LANE_ISAS)  # AVX-512F: the separable max pool
def test_pool2d(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(4)
    configs = [  # H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, ceil
        (8, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, False),
        (7, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, False),
        (7, 7, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, True),
        (6, 9, 3, 2, 2, 3, 1, 0, 0, 1, 1, 1, True),
        (9, 9, 3, 3, 1, 1, 2, 1, 0, 2, 2, 2, False),
        (5, 5, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, False),
        (11, 10, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, True),
        (13, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, True),  # several 16-column vectors, stride 2
        (9, 37, 3, 2, 1, 1, 0, 1, 0, 0, 2, 1, False),  # row dilation, stride 1, partial last vector
    ]
    for (H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, ceil), is_max, cip in itertools.product(configs, [1, 0], [0, 1]):
        if is_max and cip:
            continue
        x = randn(rng, 3, H, W)
        Ho, Wo = pool_out(H, kh, sh, pt, pb, dh, ceil), pool_out(W, kw, sw, pl, pr, dw, ceil)
        y = np.full((3, Ho, Wo), np.nan, np.float32)
        shim.k_pool2d(ptr(x), ptr(y), 3, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, cip, 2)
        assert_close(y, pool_ref(x, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, cip))


@pytest.mark.parametrize("isa", ISAS)
def test_global_pool(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(5)
    for NC, HW in [(1, 1), (3, 7), (5, 49), (64, 196), (2, 1000)]:
        x = randn(rng, NC, HW)
        for is_max in (0, 1):
            y = np.full(NC, np.nan, np.float32)
            shim.k_global_pool(ptr(x), ptr(y), NC, HW, is_max, 2)
            assert_close(y, x.max(axis=1) if is_max else x.astype(np.float64).mean(axis=1))


# ---------------------------------------------------------------------------------- elementwise
BIN_REFS = [np.add, np.subtract, np.multiply, np.divide, np.maximum, np.minimum, np.power]


def bcast_strides(shape, out_shape):
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, acc = [], 1
    for d in reversed(range(len(shape))):
        strides.append(0 if shape[d] == 1 and out_shape[d] != 1 else acc)
        acc *= shape[d]
    return i64(strides[::-1])


@pytest.mark.parametrize("isa", ISAS)
def test_binary_broadcast(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(6)
    shape_pairs = [
        ((37,), (37,)),
        ((2, 3, 4, 5), (2, 3, 4, 5)),
        ((2, 3, 4, 5), ()),
        ((), (2, 3, 4, 5)),
        ((2, 16, 7, 7), (1, 16, 1, 1)),
        ((2, 16, 7, 7), (16, 1, 1)),
        ((4, 9, 33), (33,)),
        ((4, 1, 33), (1, 9, 1)),
        ((3, 1), (1, 70)),
        ((2, 1, 3, 1, 5), (1, 4, 1, 6, 1)),
        ((1, 1, 1), (1, 1, 1)),
        ((5, 1), (5, 300)),
    ]
    for (sa, sb), op in itertools.product(shape_pairs, range(7)):
        a, b = randn(rng, *sa), randn(rng, *sb)
        if op == 6:
            a = np.asarray(np.abs(a) + 0.5, dtype=np.float32)
        if op == 3:
            b = np.asarray(np.where(np.abs(b) < 0.1, 0.5, b), dtype=np.float32)
        out_shape = np.broadcast_shapes(a.shape, b.shape)
        y = np.full(out_shape, np.nan, np.float32)
        # keep the index arrays alive across the call
        shp = i64(out_shape or (1,))
        a_st, b_st = bcast_strides(a.shape, out_shape), bcast_strides(b.shape, out_shape)
        shim.k_binary(op, len(out_shape), ptr(shp), ptr(a), ptr(a_st), ptr(b), ptr(b_st), ptr(y), 2)
        with np.errstate(all="ignore"):
            want = BIN_REFS[op](a.astype(np.float64), b.astype(np.float64))
        assert_close(y, want, rtol=1e-5)


def softplus(x):
    return np.log1p(np.exp(x))


UN_REFS = {
    1: lambda x, a, b: np.maximum(x, 0),
    2: lambda x, a, b: np.where(x < 0, a * x, x),
    3: lambda x, a, b: np.clip(x, a, b),
    4: lambda x, a, b: 1 / (1 + np.exp(-x)),
    5: lambda x, a, b: np.tanh(x),
    6: lambda x, a, b: np.exp(x),
    7: lambda x, a, b: np.log(np.abs(x) + 0.1),
    8: lambda x, a, b: np.abs(x),
    9: lambda x, a, b: -x,
    10: lambda x, a, b: np.sqrt(np.abs(x)),
    11: lambda x, a, b: 1 / x,
    12: lambda x, a, b: np.floor(x),
    13: lambda x, a, b: np.ceil(x),
    14: lambda x, a, b: np.where(x > 0, x, a * (np.exp(x) - 1)),
    15: lambda x, a, b: np.clip(a * x + b, 0, 1),
    16: lambda x, a, b: softplus(x),
}


@pytest.mark.parametrize("isa", ISAS)
def test_unary(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(7)
    for op, n in itertools.product(UN_REFS, [1, 7, 8, 67, 5000]):
        x = (randn(rng, n) * 4).astype(np.float32)
        x[0] = 0.0 if n > 1 else x[0]
        if op == 7:
            x = (np.abs(x) + 0.1).astype(np.float32)
        if op == 10:
            x = np.abs(x)
        if op == 11:
            x = np.where(np.abs(x) < 0.1, 0.5, x).astype(np.float32)
        alpha, beta = (-0.5, 0.7) if op == 3 else (0.2, 0.5)
        y = np.full(n, np.nan, np.float32)
        shim.k_unary(op, n, ptr(x), ptr(y), alpha, beta, 2)
        ref = UN_REFS[op]
        arg = x.astype(np.float64)
        want = ref(arg, alpha, beta) if op not in (7, 10) else (np.log(arg) if op == 7 else np.sqrt(arg))
        assert_close(y, want, rtol=2e-6 if op in (1, 2, 3, 8, 9, 12, 13, 15) else 2e-5, atol=1e-6)
        # in place
        z = x.copy()
        shim.k_unary(op, n, ptr(z), ptr(z), alpha, beta, 1)
        np.testing.assert_array_equal(z, y)


@pytest.mark.parametrize("isa", ISAS)
def test_tanh_sigmoid_extremes(shim, isa):
    shim.k_set_isa(isa)
    x = np.array([-100, -30, -10, -1e-3, -1e-7, 0, 1e-7, 1e-3, 0.6, 0.65, 10, 30, 100] * 3, np.float32)
    for op in (4, 5):
        y = np.empty_like(x)
        shim.k_unary(op, x.size, ptr(x), ptr(y), 0, 0, 1)
        want = UN_REFS[op](x.astype(np.float64), 0, 0)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7)
        assert np.isfinite(y).all()


def test_copy_rows_and_channel_affine(shim):
    rng = np.random.default_rng(8)
    x = randn(rng, 6, 5)
    y = np.full((6, 9), np.nan, np.float32)
    shim.k_copy_rows(ptr(x), ptr(y[:, 2:]), 6, 5, 9)
    np.testing.assert_array_equal(y[:, 2:7], x)
    assert np.isnan(y[:, :2]).all() and np.isnan(y[:, 7:]).all()
    for isa in (0, 1) if supports("avx2") else (0,):
        shim.k_set_isa(isa)
        x = randn(rng, 2, 5, 37)
        scale, shift = randn(rng, 5), randn(rng, 5)
        y = np.empty_like(x)
        shim.k_channel_affine(ptr(x), ptr(y), 2, 5, 37, ptr(scale), ptr(shift), None, 0, 2)
        assert_close(y, x * scale[:, None] + shift[:, None])
        r = randn(rng, 2, 5, 37)
        shim.k_channel_affine(ptr(x), ptr(y), 2, 5, 37, ptr(scale), ptr(shift), ptr(r), 3, 2)  # + residual, Clip [0, 6]
        assert_close(y, np.clip(x * scale[:, None] + shift[:, None] + r, 0, 6))


# ------------------------------------------------------------------------------- layout / norm
@pytest.mark.parametrize("isa", ISAS)
def test_transpose(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(9)
    shapes = [(7,), (3, 5), (2, 3, 4), (2, 3, 4, 5), (1, 3, 1, 4, 2), (2, 1, 3, 2, 2, 3)]
    for shape in shapes:
        x = randn(rng, *shape)
        for perm in itertools.islice(itertools.permutations(range(len(shape))), 30):
            y = np.full(x.size, np.nan, np.float32)
            shp, prm = i64(shape), i64(perm)
            shim.k_transpose(len(shape), ptr(shp), ptr(prm), ptr(x), ptr(y), 2)
            np.testing.assert_array_equal(y, x.transpose(perm).reshape(-1))


@pytest.mark.parametrize("isa", ISAS)
def test_strided_copy_broadcast_axes(shim, isa):
    """Stride-0 axes (Expand / Tile) next to strided and contiguous ones."""
    shim.k_set_isa(isa)
    x = randn(np.random.default_rng(12), 3, 20)
    for shape, strides in [([4, 3, 20], [0, 20, 1]), ([3, 5, 20], [20, 0, 1]), ([3, 17], [20, 0]), ([2, 3, 9], [0, 20, 2])]:
        y = np.full(int(np.prod(shape)), np.nan, np.float32)
        shp, st = i64(shape), i64(strides)  # kept alive across the call
        shim.k_strided_copy(len(shape), ptr(shp), ptr(st), ptr(x), ptr(y), 2)
        want = np.lib.stride_tricks.as_strided(x, shape, [s * 4 for s in strides])
        np.testing.assert_array_equal(y, want.reshape(-1))


PAD_MODES = ["constant", "reflect", "edge", "wrap"]  # inferon::PadMode order


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_pad(shim, dtype):
    """Every mode on a cropped window of random rank-1..5 tensors, 1 or 2 threads, against np.pad."""
    rng = np.random.default_rng(13)
    for trial in range(60):
        rank = 1 + trial % 5
        full = tuple(int(n) for n in rng.integers(1, 7, rank))
        x = rng.integers(0, 250, full).astype(dtype)
        starts = [int(rng.integers(0, n)) for n in full]
        extents = [int(rng.integers(1, n - s + 1)) for n, s in zip(full, starts)]
        pads = [int(p) for p in rng.integers(0, 4, 2 * rank)]
        mode = PAD_MODES[trial % 4]
        window = x[tuple(slice(s, s + n) for s, n in zip(starts, extents))]
        kwargs = {"constant_values": 7} if mode == "constant" else {}
        want = np.pad(window, list(zip(pads[:rank], pads[rank:])), mode=mode, **kwargs)
        dense = [int(np.prod(full[d + 1 :])) for d in range(rank)]
        offset = sum(s * d for s, d in zip(starts, dense)) * x.itemsize
        y = np.zeros(want.size, dtype)
        kernel = shim.k_pad if dtype == np.float32 else shim.k_pad_u8
        shp, st, pd = i64(extents), i64(dense), i64(pads)  # kept alive across the call
        kernel(rank, ptr(shp), ptr(st), ptr(pd), PAD_MODES.index(mode), ptr(x) + offset, ptr(y), 7.0, 1 + trial % 2)
        np.testing.assert_array_equal(y, want.reshape(-1), err_msg=f"{mode} {full} {starts} {extents} {pads}")


@pytest.mark.parametrize("isa", ISAS)
def test_softmax(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(10)
    for outer, axis, inner in [(1, 1, 1), (3, 10, 1), (2, 1000, 1), (4, 7, 5), (2, 3, 33), (1, 17, 1)]:
        x = (randn(rng, outer, axis, inner) * 5).astype(np.float32)
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        for log in (0, 1):
            y = np.full_like(x, np.nan)
            shim.k_softmax(ptr(x), ptr(y), outer, axis, inner, log, 2)
            want = e / e.sum(axis=1, keepdims=True)
            assert_close(y, np.log(want) if log else want, rtol=1e-5, atol=1e-6)


def lrn_ref(x, size, alpha, beta, bias):
    N, C, H, W = x.shape
    sq = x.astype(np.float64) ** 2
    out = np.empty_like(sq)
    for c in range(C):
        lo, hi = max(0, c - (size - 1) // 2), min(C - 1, c + -(-(size - 1) // 2))
        s = sq[:, lo : hi + 1].sum(axis=1)
        out[:, c] = x[:, c] / (bias + alpha / size * s) ** beta
    return out


@pytest.mark.parametrize("isa", ISAS)
def test_lrn(shim, isa):
    shim.k_set_isa(isa)
    rng = np.random.default_rng(11)
    for size in (1, 2, 3, 5):
        x = randn(rng, 2, 7, 3, 4)
        y = np.empty_like(x)
        shim.k_lrn(ptr(x), ptr(y), 2, 7, 12, size, 1e-2, 0.75, 2.0, 2)
        assert_close(y, lrn_ref(x, size, 1e-2, 0.75, 2.0))


def test_weights_symbol_is_aligned_and_holds_the_blob(shim):
    w = shim.k_weights()
    assert ctypes.cast(w, ctypes.c_void_p).value % 64 == 0
    np.testing.assert_array_equal(np.ctypeslib.as_array(w, (16,)), np.arange(16, dtype=np.float32))


# ------------------------------------------------------------------------- runtime C API + loader
def model_ref(data, bias):
    t = data + bias
    mm = t.reshape(24, 5).astype(np.float64) @ WEIGHTS[:35].reshape(5, 7) + WEIGHTS[35:42]
    return np.maximum(t, 0), mm


def feeds(rng=None):
    rng = rng or np.random.default_rng(12)
    return randn(rng, 2, 3, 4, 5), randn(rng, 5)


def test_model_infos_and_run(model_path):
    with load(model_path, threads=2) as m:
        assert [i.name for i in m.inputs] == ["data", "bias"]
        assert m.inputs[0].shape == (2, 3, 4, 5) and m.inputs[0].dtype == np.float32
        assert [(o.name, o.shape) for o in m.outputs] == [("sum", (2, 3, 4, 5)), ("mm", (24, 7)), ("isa", (1,))]
        data, bias = feeds()
        s, mm, _ = m(data, bias)
        ref_s, ref_mm = model_ref(data, bias)
        np.testing.assert_allclose(s, ref_s, rtol=1e-6)
        assert_close(mm, ref_mm)
        out = m.run({"bias": bias, "data": data})
        assert list(out) == ["sum", "mm", "isa"]
        np.testing.assert_array_equal(out["mm"], mm)
        s2, _, _ = m(data, bias=bias)
        np.testing.assert_array_equal(s2, s)
        # non-contiguous input is made contiguous
        big = np.zeros((2, 3, 4, 10), np.float32)
        big[..., ::2] = data
        np.testing.assert_array_equal(m(big[..., ::2], bias)[0], s)
        assert "data[2,3,4,5]" in repr(m)
    with pytest.raises(InferonError, match="closed"):
        m(data, bias)


@pytest.mark.parametrize(("env", "expected"), [("scalar", "scalar"), ("avx2", "avx2")])
def test_isa_env_var(model_path, isa_env, env, expected):
    if env == "avx2" and not supports("avx2"):
        pytest.skip("no AVX2/FMA")
    isa_env(env)
    data, bias = feeds()
    with load(model_path) as m:
        assert m.isa == expected
        s, mm, isa = m(data, bias)
        assert int(isa[0]) == {"scalar": 0, "avx2": 1}[expected]  # what the kernels saw
        ref_s, ref_mm = model_ref(data, bias)
        np.testing.assert_allclose(s, ref_s, rtol=1e-6)
        assert_close(mm, ref_mm)


def test_isa_default_and_invalid(model_path, isa_env):
    isa_env(None)
    with load(model_path) as m:
        # AVX-512 level where the CPU has AVX-512F (the quantized GEMM's VNNI kernel lives there): the
        # level inferon.cpu predicts for the compiler (sparsify's cost figures are chosen by it)
        assert m.isa == host_isa()
    isa_env("sse9")
    with pytest.raises(RuntimeCallError, match="INFERON_ISA='sse9'") as exc:
        load(model_path)
    assert exc.value.status == -8


def test_python_side_input_checks(model_path):
    data, bias = feeds()
    with load(model_path) as m:
        with pytest.raises(
            RuntimeCallError,
            match=r"input 'data' \(index 0\): expected shape "
            r"\[2,3,4,5\], got \[2,3,4,6\]",
        ):
            m(np.zeros((2, 3, 4, 6), np.float32), bias)
        with pytest.raises(RuntimeCallError, match=r"expected rank 4 .*got rank 3"):
            m(np.zeros((2, 3, 4), np.float32), bias)
        with pytest.raises(RuntimeCallError, match=r"input 'bias' \(index 1\): expected dtype float32, got float64"):
            m(data, bias.astype(np.float64))
        with pytest.raises(RuntimeCallError, match="expected 2 inputs, got 1"):
            m(data)
        with pytest.raises(RuntimeCallError, match="expected 2 inputs, got 3"):
            m(data, bias, bias)
        with pytest.raises(RuntimeCallError, match="unknown input name 'dat'"):
            m.run({"dat": data, "bias": bias})
        with pytest.raises(RuntimeCallError, match="missing 'bias'"):
            m.run({"data": data})
        with pytest.raises(RuntimeCallError, match="both by position and by name"):
            m(data, data=data)


def test_c_side_input_checks(model_path):
    data, bias = feeds()
    outs = [
        ("sum", np.empty((2, 3, 4, 5), np.float32)),
        ("mm", np.empty((24, 7), np.float32)),
        ("isa", np.empty(1, np.float32)),
    ]
    with load(model_path) as m:
        m.run_raw([(None, data), (None, bias)], outs)  # positional: fine
        m.run_raw([("bias", bias), ("data", data)], outs)  # by name, any order
        np.testing.assert_allclose(outs[0][1], model_ref(data, bias)[0], rtol=1e-6)
        cases = [
            (
                [("data", np.zeros((2, 3, 4, 6), np.float32)), ("bias", bias)],
                outs,
                -5,
                r"input 'data' \(index 0\): expected shape \[2,3,4,5\], got \[2,3,4,6\]",
            ),
            (
                [("data", data), ("bias", np.zeros((1, 5), np.float32))],
                outs,
                -5,
                r"input 'bias' \(index 1\): expected rank 1 \(shape \[5\]\), got rank 2",
            ),
            (
                [("data", data), ("bias", bias.astype(np.int64))],
                outs,
                -4,
                r"input 'bias' \(index 1\): expected dtype float32, got int64",
            ),
            ([("data", data)], outs, -2, "expected 2 inputs, got 1"),
            ([("data", data), ("bias", bias)], outs[:2], -2, "expected 3 outputs, got 2"),
            (
                [("data", data), ("biass", bias)],
                outs,
                -3,
                r"input 1: unknown name 'biass' \(model inputs: 'data', 'bias'\)",
            ),
            ([("data", data), ("data", data)], outs, -3, "given twice"),
            (
                [("data", data), ("bias", bias)],
                [outs[0], ("mm", np.empty((7, 24), np.float32)), outs[2]],
                -5,
                r"output 'mm' \(index 1\): expected shape \[24,7\], got \[7,24\]",
            ),
        ]
        for ins, o, status, msg in cases:
            with pytest.raises(RuntimeCallError, match=msg) as exc:
                m.run_raw(ins, o)
            assert exc.value.status == status
        # the context still works after errors
        np.testing.assert_allclose(m(data, bias)[0], model_ref(data, bias)[0], rtol=1e-6)


def test_concurrent_contexts(model_path):
    results: dict[int, bool] = {}

    def worker(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        with load(model_path, threads=1) as m:
            ok = True
            for _ in range(50):
                data, bias = feeds(rng)
                s, mm, _ = m(data, bias)
                ref_s, ref_mm = model_ref(data, bias)
                ok &= bool(np.allclose(s, ref_s) and np.allclose(mm, ref_mm, atol=1e-4))
            results[k] = ok

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: True for k in range(4)}


def test_load_errors(tmp_path):
    with pytest.raises(InferonError, match="does not exist"):
        load(tmp_path / "nope.so")
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(InferonError, match="cannot load"):
        load(bogus)
    libm = ctypes.util.find_library("m")
    if libm:
        import glob

        candidates = glob.glob(f"/usr/lib/*/{libm}") + glob.glob(f"/lib/*/{libm}")
        if candidates:
            with pytest.raises(InferonError, match="not an Inferon model"):
                CompiledModel(candidates[0])


# ------------------------------------------------------------------------------ toolchain/cache
def test_build_cache_hit_and_rebuilt_path_reload(model_path, tmp_path):
    src = (HERE / "runtime_test_model.cpp").read_text()
    t0 = time.perf_counter()
    out = build_shared_library(src, WEIGHTS.tobytes(), tmp_path / "again.so")
    assert time.perf_counter() - t0 < 1.0  # cached by the module fixture
    assert out.read_bytes() == model_path.read_bytes()
    # different weights → different library; reloading the same path picks the new file up
    target = tmp_path / "m.so"
    build_shared_library(src, WEIGHTS.tobytes(), target)
    data, bias = feeds()
    with load(target) as m:
        mm1 = m(data, bias)[1]
    w2 = (WEIGHTS * 2).astype(np.float32)
    build_shared_library(src, w2.tobytes(), target)
    with load(target) as m:
        mm2 = m(data, bias)[1]
    assert_close(mm2, 2 * mm1)  # W and b both doubled


def test_build_error_reports_command_and_stderr(tmp_path):
    with pytest.raises(BuildError) as exc:
        build_shared_library("this is not C++;\n", b"", tmp_path / "bad.so")
    msg = str(exc.value)
    assert "command: " in msg and "model.cpp" in msg and "-fvisibility=hidden" in msg
    assert "error" in msg


def test_only_the_api_is_exported(model_path):
    import subprocess

    try:
        proc = subprocess.run(
            ["nm", "-D", "--defined-only", str(model_path)], capture_output=True, text=True, check=True
        )
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("nm not available")
    names = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
    api = {n for n in names if n.startswith("inferon_")}
    assert "inferon_model_run" in api and "inferon_abi_version" in api
    assert "inferon_weights" not in names and "inferon_model_descriptor" not in names
    assert "inferon_kernels_set_isa" not in names
    assert not [n for n in names if n.startswith("_Z")]  # no C++ symbols leak


def test_env_isa_visible_in_subprocess(model_path):
    # INFERON_ISA set in a fresh process before any context exists
    import subprocess
    import sys

    code = f"import sys; from inferon.runtime import load; m = load({str(model_path)!r}); print(m.isa)"
    env = dict(
        os.environ, INFERON_ISA="scalar", PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "scalar"
