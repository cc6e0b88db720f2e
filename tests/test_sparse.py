"""Sparse weights: encodings, the sparse kernels (property tests against numpy/scipy), the
sparsify / prune passes, and pruned models end to end against ONNX Runtime."""

from __future__ import annotations

import ctypes
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import inferon
from inferon.backend.toolchain import build_shared_library
from inferon.cpu import model_isa, supports, zmm_row_panels
from inferon.errors import InferonError, PassError
from inferon.ir.attrs import SparseFormat
from inferon.ir.sparse import (
    block4_groups_by_tap,
    csr_decode,
    csr_encode,
    implicit_columns,
    is_nm24,
    nm24_decode,
    nm24_encode,
    prune_block4,
    prune_nm24,
    prune_unstructured,
)
from inferon.passes.graph.prune import parse_prune_spec
from inferon.passes.graph.sparse_layers import SparseLayer
from inferon.passes.graph.sparsify import SparseCostModel, choose_format, sparse_lanes
from inferon.testing import (
    expose_logits,
    light_model_path,
    prune_onnx,
    randomize_weights,
    run_onnxruntime,
)
from tests.conftest import make_model
from tests.test_runtime_kernels import act_ref

HERE = Path(__file__).resolve().parent
P, I64, INT, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float


# scalar, AVX2 (the machines this runs on have AVX2; test_runtime_kernels checks the ISA switch), AVX-512
ISAS = [0, 1, *([2] if supports("avx512") else [])]


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    so = build_shared_library(
        (HERE / "kernel_shim.cpp").read_text(), b"\0" * 64, tmp_path_factory.mktemp("shim") / "shim.so"
    )
    lib = ctypes.CDLL(str(so))
    lib.k_spmm.argtypes = [INT, INT, I64, I64, P, P, P, I64, P, I64, P, I64, I64, P, I64, I64, P, INT, P, INT, F, F,
                           INT, INT, P, I64]  # fmt: skip
    lib.k_spmm.restype = None
    lib.k_set_isa.argtypes = [INT]
    return lib


def ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def run_spmm(lib, a: np.ndarray, b: np.ndarray, *, fmt: str, isa: int, bias=None, residual=None, act=0,
             alpha=0.0, beta=0.0, nr=32, threads=1, kblock=0, bias_axis=0) -> np.ndarray:  # fmt: skip
    """C = act(A @ B + bias + residual) through k_spmm (B [K, N] row-major, scale N); bias per row
    (bias_axis 0) or per column (1); CSR columns in blocks of `kblock` (0: one block)."""
    m, k = a.shape
    n = b.shape[1]
    c = np.full((m, n), np.nan, dtype=np.float32)
    lib.k_set_isa(isa)
    kblocks = 1
    if fmt == "csr":
        e = csr_encode(a, blocks=np.arange(k) // kblock if kblock else None)
        kblocks = e.kblocks
        args = (0, e.indices.dtype.itemsize, m, k, ptr(e.values), ptr(e.indices), ptr(e.row_ptr), n, None)
        keep = e
    else:
        e = nm24_encode(a)
        koff = None
        if e.k != k:  # padded columns: read row 0 with zero weights
            koff = np.zeros(e.k, dtype=np.int32)
            koff[:k] = np.arange(k) * n
        args = (1, 1, m, e.k, ptr(e.values), ptr(e.meta), None, n if koff is None else 1, ptr(koff))
        keep = (e, koff)
    lib.k_spmm(*args, 1, ptr(b), 0, n, ptr(c), n, 0, ptr(bias), bias_axis, ptr(residual), act, alpha, beta, nr, threads, None,
               kblocks)  # fmt: skip
    del keep
    return c


def reference(a, b, bias=None, residual=None, act=0, alpha=0.0, beta=0.0, bias_axis=0) -> np.ndarray:
    y = scipy.sparse.csr_matrix(a.astype(np.float64)) @ b.astype(np.float64)
    if bias is not None:
        y = y + (bias[:, None] if bias_axis == 0 else bias[None, :])
    if residual is not None:
        y = y + residual
    return act_ref(y, act, alpha, beta)


def sparse_matrix(rng: np.random.Generator, m: int, k: int, density: float, edge: str) -> np.ndarray:
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[rng.random((m, k)) >= density] = 0.0
    if edge == "empty_rows":
        a[:: max(1, m // 3)] = 0.0
    elif edge == "dense_row":
        a[m // 2] = rng.standard_normal(k)
    elif edge == "single":
        a[:] = 0.0
        a[rng.integers(m), rng.integers(k)] = 1.5
    return a


# ------------------------------------------------------------------------------------- encodings
@given(m=st.integers(1, 12), k=st.integers(1, 40), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_csr_round_trip(m: int, k: int, density: float, seed: int) -> None:
    a = sparse_matrix(np.random.default_rng(seed), m, k, density, "")
    e = csr_encode(a)
    assert e.indices.dtype == np.uint16 and e.values.size == np.count_nonzero(a)
    assert np.array_equal(csr_decode(e, k), a)
    blocks = np.random.default_rng(seed).integers(0, 3, size=k)
    eb = csr_encode(a, blocks=blocks)
    assert eb.row_ptr.size == eb.kblocks * (m + 1) and np.array_equal(csr_decode(eb, k), a)


def test_csr_index_width_follows_the_largest_index() -> None:
    a = np.eye(3, dtype=np.float32)
    assert csr_encode(a).index_bits == 16
    assert csr_encode(a, columns=np.array([0, 1, 70000])).index_bits == 32


@given(m=st.integers(1, 10), k=st.integers(1, 37), seed=st.integers(0, 2**16))
def test_nm24_round_trip(m: int, k: int, seed: int) -> None:
    a = prune_nm24(np.random.default_rng(seed).standard_normal((m, k)).astype(np.float32))
    assert is_nm24(a)
    e = nm24_encode(a)
    assert e.k % 4 == 0 and e.values.shape == (m, e.k // 2)
    assert np.array_equal(nm24_decode(e)[:, :k], a)
    assert not np.any(nm24_decode(e)[:, k:])


def test_nm24_rejects_three_in_a_group() -> None:
    a = np.array([[1, 1, 1, 0]], dtype=np.float32)
    assert not is_nm24(a)
    with pytest.raises(ValueError):
        nm24_encode(a)


def test_prune_unstructured_keeps_the_largest() -> None:
    a = np.arange(1, 11, dtype=np.float32).reshape(2, 5) * np.array([1, -1] * 5, dtype=np.float32).reshape(2, 5)
    p = prune_unstructured(a, 0.7)
    assert np.count_nonzero(p) == 3
    assert set(np.abs(p[p != 0])) == {8, 9, 10}


@pytest.mark.parametrize("shape", [(6, 10, 3, 3), (5, 8, 1, 1), (4, 7, 2, 3)])
def test_prune_block4_zeroes_whole_channel_groups_at_one_tap(shape) -> None:
    """block1x4 pruning of a conv weight: blocks of four input channels at one tap (the implicit
    order's k-groups; C = 7 and 10 leave ragged last groups), the 75 % smallest in L2 norm zeroed
    whole, the others kept exactly."""
    from inferon.ir import quant

    w = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    m, c, kh, kw = shape
    p = prune_block4(w.reshape(m, -1), 0.75, kh * kw).reshape(shape)
    groups = quant.implicit_weight_order(p).reshape(m, -1, 4)
    orig = quant.implicit_weight_order(w).reshape(m, -1, 4)
    kept = (groups != 0).any(axis=2)
    assert kept.sum() == round(0.25 * kept.size)
    np.testing.assert_array_equal(groups[kept], orig[kept])  # kept blocks whole
    norms = np.square(orig).sum(axis=2)
    assert norms[kept].min() >= norms[~kept].max()
    assert block4_groups_by_tap(p.reshape(m, -1), kh * kw) == kept.sum()
    if kh * kw == 1:  # a 1x1 conv / FC weight: aligned groups along K
        np.testing.assert_array_equal(prune_block4(w.reshape(m, -1), 0.75), p.reshape(m, -1))


# --------------------------------------------------------------------------------------- kernels
KERNEL_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@KERNEL_SETTINGS
@given(
    m=st.integers(1, 40), k=st.integers(1, 80), n=st.integers(1, 150), density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    edge=st.sampled_from(["", "empty_rows", "dense_row", "single"]), isa=st.sampled_from(ISAS),
    nr=st.sampled_from([32, 48, 64]), epi=st.integers(0, 4), threads=st.sampled_from([1, 2]),
    kblock=st.sampled_from([0, 1, 7, 32]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_csr_kernel_matches_scipy(shim, m, k, n, density, edge, isa, nr, epi, threads, kblock, seed) -> None:
    """Every epilogue (bias, residual, ReLU / LeakyReLU / Clip / sigmoid), column blocks, partial
    tiles; B rows not a whole number of cache lines apart are realigned by the kernel."""
    rng = np.random.default_rng(seed)
    a = sparse_matrix(rng, m, k, density, edge)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if epi >= 1 else None
    residual = rng.standard_normal((m, n)).astype(np.float32) if epi >= 2 else None
    act = [0, 1, 2, 3, 4][epi]
    got = run_spmm(shim, a, b, fmt="csr", isa=isa, bias=bias, residual=residual, act=act, alpha=-0.5, beta=0.7,
                   nr=nr, threads=threads, kblock=kblock)  # fmt: skip
    want = reference(a, b, bias, residual, act, -0.5, 0.7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.sqrt(k)))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [49, 196, 64])
def test_csr_kernel_dense_enough_rows_realign_b(shim, isa, n) -> None:
    """ResNet-like shapes where every B row feeds >= 8 nonzeros: B rows 49 / 196 floats apart are
    copied to an aligned padded scratch (64: used in place), in 3 column blocks, 2 threads."""
    rng = np.random.default_rng(n)
    a = sparse_matrix(rng, 70, 40, 0.3, "")
    b = rng.standard_normal((40, n)).astype(np.float32)
    bias = rng.standard_normal(70).astype(np.float32)
    residual = rng.standard_normal((70, n)).astype(np.float32)
    got = run_spmm(shim, a, b, fmt="csr", isa=isa, bias=bias, residual=residual, act=1, nr=64, threads=2, kblock=16)
    np.testing.assert_allclose(got, reference(a, b, bias, residual, 1), rtol=1e-4, atol=1e-4 * np.sqrt(40))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", ["csr", "2:4"])
@pytest.mark.parametrize(("m", "n", "bias_axis"), [(100, 777, 0), (128, 520, 1), (129, 777, 0)])
def test_few_rows_split_columns_over_threads(shim, isa, fmt, m, n, bias_axis) -> None:
    """At most 128 rows and at least 4 column tiles per thread: the 2 threads split the columns (each
    its part of B, bias, residual and C; the second part ends in a partial tile); 129 rows split rows."""
    rng = np.random.default_rng(m + n)
    a = sparse_matrix(rng, m, 44, 0.3, "empty_rows")
    if fmt == "2:4":
        a = prune_nm24(rng.standard_normal((m, 44)).astype(np.float32))
    b = rng.standard_normal((44, n)).astype(np.float32)
    bias = rng.standard_normal(m if bias_axis == 0 else n).astype(np.float32)
    residual = rng.standard_normal((m, n)).astype(np.float32)
    got = run_spmm(shim, a, b, fmt=fmt, isa=isa, bias=bias, residual=residual, act=1, nr=64, threads=2,
                   kblock=16 if fmt == "csr" else 0, bias_axis=bias_axis)  # fmt: skip
    want = reference(a, b, bias, residual, 1, bias_axis=bias_axis)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(44))


@KERNEL_SETTINGS
@given(
    m=st.integers(1, 24), k=st.integers(1, 70), n=st.integers(1, 100), isa=st.sampled_from(ISAS),
    nr=st.sampled_from([32, 64]), relu=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_nm24_kernel_matches_numpy(shim, m, k, n, isa, nr, relu, seed) -> None:
    rng = np.random.default_rng(seed)
    a = prune_nm24(rng.standard_normal((m, k)).astype(np.float32))
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    got = run_spmm(shim, a, b, fmt="2:4", isa=isa, bias=bias, act=int(relu), nr=nr)
    np.testing.assert_allclose(got, reference(a, b, bias, act=int(relu)), rtol=1e-4, atol=1e-4 * np.sqrt(k))


@KERNEL_SETTINGS
@given(m=st.integers(1, 70), k=st.integers(1, 300), density=st.sampled_from([0.02, 0.1, 0.5]),
       isa=st.sampled_from(ISAS), kblock=st.sampled_from([0, 64]), seed=st.integers(0, 2**16))  # fmt: skip
def test_sparse_gemv_matches_numpy(shim, m, k, density, isa, kblock, seed) -> None:
    """N == 1 (fully-connected at batch 1): the gather path, also over column blocks."""
    rng = np.random.default_rng(seed)
    a = sparse_matrix(rng, m, k, density, "")
    x = rng.standard_normal((k, 1)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    got = run_spmm(shim, a, x, fmt="csr", isa=isa, bias=bias, act=1, kblock=kblock)
    np.testing.assert_allclose(got, reference(a, x, bias, act=1), rtol=1e-4, atol=1e-4 * np.sqrt(k))


def conv_ref(x: np.ndarray, w: np.ndarray, pads: tuple[int, int, int, int], strides: tuple[int, int] = (1, 1)) -> np.ndarray:
    """NCHW conv of one image (numpy)."""
    c, h, wd = x.shape
    m, _, kh, kw = w.shape
    sh, sw = strides
    xp = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    cols = np.stack([xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
                     for i in range(kh) for j in range(kw)], axis=1)  # fmt: skip
    return np.einsum("mk,kp->mp", w.reshape(m, -1), cols.reshape(c * kh * kw, ho * wo)).reshape(m, ho, wo)


@KERNEL_SETTINGS
@given(
    c=st.integers(1, 6), m=st.integers(1, 20), h=st.integers(1, 12), w=st.integers(1, 12),
    kh=st.integers(1, 3), kw=st.integers(1, 3), pad=st.integers(0, 2), sh=st.integers(1, 3), sw=st.integers(1, 2),
    fmt=st.sampled_from(["csr", "2:4"]), isa=st.sampled_from(ISAS), threads=st.sampled_from([1, 2]),
    channel_block=st.integers(1, 6), with_residual=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_implicit_conv_matches_numpy(shim, c, m, h, w, kh, kw, pad, sh, sw, fmt, isa, threads, channel_block,
                                     with_residual, seed) -> None:  # fmt: skip
    """Convs read in place from a zero-bordered, stride-phase split copy of the image (column
    indices = frame offsets), CSR also in channel blocks."""
    ho, wo = (h + 2 * pad - kh) // sh + 1, (w + 2 * pad - kw) // sw + 1
    if h + 2 * pad < kh or w + 2 * pad < kw:
        return
    rng = np.random.default_rng(seed)
    filt = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
    a = filt.reshape(m, -1)
    a = prune_nm24(a) if fmt == "2:4" else prune_unstructured(a, 0.6)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    residual = rng.standard_normal((m, ho * wo)).astype(np.float32) if with_residual else None
    columns = implicit_columns(c, kh, kw, ho, wo, sh, sw)
    ch = np.arange(c * kh * kw) // (kh * kw)
    geom = np.array([c, h, w, kh, kw, sh, sw, pad, pad, 1, 1, ho, wo], dtype=np.int64)
    out = np.full((m, ho * wo), np.nan, dtype=np.float32)
    shim.k_set_isa(isa)
    kblocks = 1
    if fmt == "csr":
        e = csr_encode(a, columns, blocks=ch // channel_block)
        kblocks = e.kblocks
        args = (0, e.indices.dtype.itemsize, m, a.shape[1], ptr(e.values), ptr(e.indices), ptr(e.row_ptr), 1, None)
    else:
        e = nm24_encode(a)
        koff = np.zeros(e.k, dtype=np.int32)
        koff[: a.shape[1]] = columns
        args = (1, 1, m, e.k, ptr(e.values), ptr(e.meta), None, 1, ptr(koff))
    shim.k_spmm(*args, 1, ptr(x), 0, ho * wo, ptr(out), ho * wo, 0, ptr(bias), 0, ptr(residual), 1, 0.0, 0.0, 64,
                threads, ptr(geom), kblocks)  # fmt: skip
    conv = conv_ref(x, a.reshape(filt.shape), (pad, pad, pad, pad), (sh, sw)).reshape(m, -1)
    want = np.maximum(conv + bias[:, None] + (residual if with_residual else 0), 0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.sqrt(c * kh * kw))


# ---------------------------------------------------------------------------------------- passes
def conv_model(weights: dict[str, np.ndarray], *, shape=(1, 16, 12, 12)) -> onnx.ModelProto:
    """x -> conv a (1x1) -> relu -> conv b (3x3 pad 1) + residual -> relu -> conv s (3x3 stride 2)
    -> grouped conv g -> GAP -> Gemm fc (bias): every lowering of convert-sparse-to-spmm."""
    rng = np.random.default_rng(5)
    init = dict(weights)
    init["bfc"] = rng.standard_normal(10).astype(np.float32)
    init["bb"] = rng.standard_normal(16).astype(np.float32)
    nodes = [
        helper.make_node("Relu", ["x"], ["x0"], name="pre"),
        helper.make_node("Conv", ["x0", "wa"], ["a"], name="conv_a"),
        helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
        helper.make_node("Conv", ["ar", "wb", "bb"], ["b"], pads=[1, 1, 1, 1], name="conv_b"),
        helper.make_node("Add", ["b", "ar"], ["s"], name="res"),
        helper.make_node("Relu", ["s"], ["sr"], name="relu_b"),
        helper.make_node("Conv", ["sr", "ws"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv_s"),
        helper.make_node("Conv", ["c", "wg"], ["d"], pads=[1, 1, 1, 1], group=4, name="conv_g"),
        helper.make_node("GlobalAveragePool", ["d"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], transB=1, name="fc"),
    ]
    return make_model(nodes, {"x": shape}, ["y", "d"], init)


def conv_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "wa": rng.standard_normal((16, 16, 1, 1)).astype(np.float32) * 0.3,
        "wb": rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1,
        "ws": rng.standard_normal((32, 16, 3, 3)).astype(np.float32) * 0.1,
        "wg": rng.standard_normal((32, 8, 3, 3)).astype(np.float32) * 0.1,
        "wfc": rng.standard_normal((10, 32)).astype(np.float32) * 0.3,
    }


def formats_in(dump: Path) -> dict[str, str]:
    """handle -> chosen format, from the IR dump after sparsify."""
    text = next(dump.glob("*_sparsify.mlir")).read_text()
    found = {}
    for line in text.splitlines():
        if '"graph.weight"' in line and "graph.sparse" in line:
            handle = line.split('handle = "')[1].split('"')[0]
            found[handle.split(".")[0]] = line.split("#graph<format ")[1].split(">")[0]
    return found


def assert_close_to_ort(model: onnx.ModelProto, lib: Path, x: np.ndarray, threads: int = 1) -> None:
    expected = run_onnxruntime(model, {"x": x})
    got = inferon.load(lib, threads=threads)(x)
    got = [got] if isinstance(got, np.ndarray) else list(got)
    for g, e in zip(got, expected):
        scale = float(np.abs(e).max())
        assert float(np.abs(g - e).max()) <= 1e-4 * max(scale, 1.0)


@pytest.mark.parametrize("mode", ["auto", "csr", "2:4", "off"])
def test_pruned_model_matches_onnxruntime(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = conv_model(conv_weights(rng))
    model = prune_onnx(base, "2:4" if mode == "2:4" else "unstructured:0.9")
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    lib = inferon.compile(model, tmp_path / "m.so", sparse=mode, dump_ir=tmp_path / "ir")
    formats = formats_in(tmp_path / "ir")
    if mode == "off":
        assert set(formats.values()) == {"dense"}
    elif mode == "2:4":
        assert formats["wb"] == "nm2_4" and formats["wg"] == "dense"  # grouped convs: CSR only, not 2:4
    else:
        assert formats["wa"] == formats["wb"] == formats["ws"] == "csr"
    cpp = (tmp_path / "ir" / "model.cpp").read_text()
    assert ("inferon::spmm" in cpp) == (mode != "off")
    for threads in (1, 2):
        assert_close_to_ort(model, lib, x, threads)


def test_scalar_target_runs_the_sparse_kernels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = prune_onnx(conv_model(conv_weights(rng)), "unstructured:0.8")
    lib = inferon.compile(model, tmp_path / "m.so", target="scalar", sparse="csr")
    assert_close_to_ort(model, lib, rng.standard_normal((1, 16, 12, 12)).astype(np.float32))


def test_sparsify_keeps_moderate_sparsity_dense(tmp_path: Path) -> None:
    """The cost model: 30 % zeros stay dense, 90 % go CSR, 2:4 weights go to whichever of 2:4 / CSR /
    dense the calibrated model predicts (for a strided 3x3 conv, read from its frame), the stem-like
    first conv (nothing pruned) stays dense."""
    rng = np.random.default_rng(2)
    w = conv_weights(rng)
    w["wa"] = prune_unstructured(w["wa"].reshape(16, -1), 0.3).reshape(w["wa"].shape)
    w["wb"] = prune_unstructured(w["wb"].reshape(16, -1), 0.9).reshape(w["wb"].shape)
    w["ws"] = prune_nm24(w["ws"].reshape(32, -1)).reshape(w["ws"].shape)
    model = conv_model(w, shape=(1, 16, 28, 28))
    inferon.compile(model, tmp_path / "m.so", dump_ir=tmp_path / "ir")
    formats = formats_in(tmp_path / "ir")
    model_costs = SparseCostModel.load()
    m, k, n = 32, 16 * 9, 14 * 14
    nnz = int(np.count_nonzero(w["ws"]))
    cost = {f: model_costs.seconds(f, m, k, n, nnz, frame=True) for f in (SparseFormat.NM24, SparseFormat.CSR, SparseFormat.DENSE)}
    best = min((SparseFormat.NM24, SparseFormat.CSR), key=lambda f: cost[f])
    want = best if cost[best] <= model_costs.margin * cost[SparseFormat.DENSE] else SparseFormat.DENSE
    assert formats["wa"] == "dense" and formats["wb"] == "csr"
    assert formats["ws"] == {SparseFormat.NM24: "nm2_4", SparseFormat.CSR: "csr", SparseFormat.DENSE: "dense"}[want]
    assert formats["wg"] == "dense"
    text = next((tmp_path / "ir").glob("*_sparsify.mlir")).read_text()
    assert "#graph.sparse<#graph<format csr>, 9.980000e-02 : f32, 16 : i64>" in text  # density and index width


def test_choose_format_follows_the_cost_model() -> None:
    layer = SparseLayer(op=None, weight=None, m=64, k=576, n=784, is_fc=False, reads_model_input=False)  # type: ignore[arg-type]
    rng = np.random.default_rng(4)
    w = rng.standard_normal((64, 576)).astype(np.float32)
    fast_nm24 = dataclasses.replace(SparseCostModel.load(), nm24_gflops=1000.0)
    slow_sparse = dataclasses.replace(SparseCostModel.load(), csr_gflops=1.0, nm24_gflops=1.0)
    nm24 = prune_nm24(w)
    assert choose_format(layer, nm24, "auto", fast_nm24).kind == SparseFormat.NM24
    assert choose_format(layer, nm24, "auto", slow_sparse).kind == SparseFormat.DENSE
    assert choose_format(layer, nm24, "2:4", slow_sparse).kind == SparseFormat.NM24  # forced
    # a conv read from its frame (KxK / strided / padded) takes the 2:4 frame rate where there is one
    slow_frame = dataclasses.replace(fast_nm24, nm24_frame_gflops=1.0)
    assert choose_format(layer, nm24, "auto", slow_frame).kind == SparseFormat.NM24  # a 1x1 conv: nm24_gflops
    assert choose_format(dataclasses.replace(layer, frame=True), nm24, "auto", slow_frame).kind != SparseFormat.NM24
    no_frame_figure = dataclasses.replace(fast_nm24, nm24_frame_gflops=0.0)
    assert choose_format(dataclasses.replace(layer, frame=True), nm24, "auto", no_frame_figure).kind == SparseFormat.NM24
    assert choose_format(layer, prune_unstructured(w, 0.95), "auto", SparseCostModel.load()).kind == SparseFormat.CSR
    assert choose_format(layer, prune_unstructured(w, 0.3), "auto", SparseCostModel.load()).kind == SparseFormat.DENSE
    assert choose_format(layer, prune_unstructured(w, 0.95), "off", SparseCostModel.load()).kind == SparseFormat.DENSE
    fc = dataclasses.replace(layer, m=1000, k=2048, n=1, is_fc=True)
    big = rng.standard_normal((1000, 2048)).astype(np.float32)
    assert choose_format(fc, prune_unstructured(big, 0.9), "auto", SparseCostModel.load()).kind == SparseFormat.CSR
    assert choose_format(fc, big, "auto", SparseCostModel.load()).kind == SparseFormat.DENSE


def test_cost_figures_per_instruction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost model takes the figures of the level the model will run with: the CPU's, capped by
    --target, lowered by INFERON_ISA. A 50 %-sparse 1x1 conv goes CSR with the AVX-512 kernels (CSR
    at 0.6x the dense FLOP rate) and with the scalar ones (faster than the scalar GEMM), not with AVX2."""
    avx512, avx2, scalar = (SparseCostModel.load(isa, zmm_rows=False) for isa in ("avx512", "avx2", "scalar"))
    assert (avx512.isa, avx2.isa, scalar.isa) == ("avx512", "avx2", "scalar")
    assert avx2.dense_gflops != avx512.dense_gflops and avx2.csr_gflops < avx512.csr_gflops
    assert SparseCostModel.load() == SparseCostModel.load(model_isa(), zmm_rows=zmm_row_panels())
    assert sparse_lanes(49, "avx512") == 64 and sparse_lanes(49, "avx2") == 56 and sparse_lanes(49, "scalar") == 49
    layer = SparseLayer(op=None, weight=None, m=256, k=64, n=3136, is_fc=False, reads_model_input=False)  # type: ignore[arg-type]
    w = prune_unstructured(np.random.default_rng(3).standard_normal((256, 64)).astype(np.float32), 0.5)
    assert [choose_format(layer, w, "auto", c).kind for c in (avx512, avx2, scalar)] == [
        SparseFormat.CSR, SparseFormat.DENSE, SparseFormat.CSR]  # fmt: skip
    # AVX-512 CPUs whose dense GEMM runs zmm row panels (Intel) have figures of their own: a faster
    # dense GEMM against the same sparse kernels, so 50 % and 2:4 stay dense there, 90 % goes CSR
    zmm = SparseCostModel.load("avx512", zmm_rows=True)
    assert zmm.isa == "avx512" and zmm.dense_gflops > avx512.dense_gflops
    nm24 = prune_nm24(np.random.default_rng(4).standard_normal((256, 64)).astype(np.float32))
    assert choose_format(layer, w, "auto", zmm).kind == SparseFormat.DENSE
    assert choose_format(layer, nm24, "auto", zmm).kind == SparseFormat.DENSE
    assert choose_format(layer, prune_unstructured(w, 0.9), "auto", zmm).kind == SparseFormat.CSR

    zen3, zen4 = frozenset({"avx2", "fma"}), frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl"})
    monkeypatch.delenv("INFERON_ISA", raising=False)
    assert [model_isa(t, zen4) for t in ("native", "avx512", "avx2", "scalar")] == ["avx512", "avx512", "avx2", "scalar"]
    assert [model_isa(t, zen3) for t in ("native", "avx512", "avx2")] == ["avx2", "avx2", "avx2"]
    assert model_isa("native", frozenset({"avx2"})) == "scalar"  # no FMA: the runtime runs scalar kernels
    monkeypatch.setenv("INFERON_ISA", "avx2")
    assert model_isa("native", zen4) == "avx2" and model_isa("scalar", zen4) == "scalar"
    monkeypatch.setenv("INFERON_ISA", "avx512")  # the runtime refuses to load such a model: no effect
    assert model_isa("native", zen3) == "avx2"
    with pytest.raises(InferonError, match="unknown target 'sse'"):
        model_isa("sse")


def test_sparsify_follows_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--target scalar compiles with the scalar figures (50 %-sparse 1x1 convs go CSR), --target avx2
    with the AVX2 ones (they stay dense); the outputs stay right either way."""
    if not supports("avx2"):
        pytest.skip("this CPU has no AVX2/FMA: --target avx2 runs the scalar kernels")
    monkeypatch.delenv("INFERON_ISA", raising=False)
    rng = np.random.default_rng(6)
    w = conv_weights(rng)
    w["wa"] = prune_unstructured(w["wa"].reshape(16, -1), 0.5).reshape(w["wa"].shape)
    model = conv_model(w, shape=(1, 16, 28, 28))
    x = rng.standard_normal((1, 16, 28, 28)).astype(np.float32)
    for target, want in (("scalar", "csr"), ("avx2", "dense")):
        lib = inferon.compile(model, tmp_path / f"{target}.so", dump_ir=tmp_path / target, target=target)
        assert formats_in(tmp_path / target)["wa"] == want
        assert_close_to_ort(model, lib, x)


def test_prune_spec_errors() -> None:
    assert parse_prune_spec("unstructured:0.9") == ("unstructured", 0.9)
    assert parse_prune_spec("2:4") == ("2:4", 0.5)
    assert parse_prune_spec("block1x4:0.8") == ("block1x4", 0.8)
    for bad in ("unstructured", "unstructured:1.5", "3:8", "random:0.5", "block1x4", "block1x4:1"):
        with pytest.raises(PassError, match="--prune"):
            parse_prune_spec(bad)


@pytest.mark.parametrize("spec", ["unstructured:0.9", "block1x4:0.9"])
def test_cli_prune_reports_deviation(tmp_path: Path, spec: str) -> None:
    model = conv_model(conv_weights(np.random.default_rng(3)))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    proc = subprocess.run(
        [sys.executable, "-m", "inferon", "compile", str(path), "-o", str(tmp_path / "m.so"),
         "--prune", spec], capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"pruned {spec}" in proc.stderr and "output deviation" in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "inferon", "compile", str(path), "--prune", "half"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--prune 'half'" in bad.stderr


# ----------------------------------------------------------------------------------- real models
@pytest.mark.parametrize("spec", ["unstructured:0.9", "2:4"])
def test_pruned_resnet50_matches_onnxruntime(spec: str, tmp_path: Path) -> None:
    model = prune_onnx(expose_logits(randomize_weights(onnx.load(str(light_model_path("resnet50"))), seed=0)), spec)
    # 2:4 is forced: the cost model keeps 2:4 layers dense where the 2:4 kernel does not win
    lib = inferon.compile(model, tmp_path / "r.so", dump_ir=tmp_path / "ir", sparse="auto" if spec != "2:4" else "2:4")
    cpp = (tmp_path / "ir" / "model.cpp").read_text()
    assert cpp.count("inferon::spmm") >= 50  # all convs but the stem, and the FC
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    expected = run_onnxruntime(model, {model.graph.input[0].name: x})
    got = inferon.load(lib, threads=2)(x)
    for g, e in zip(got, expected):
        scale = float(np.abs(e).max())
        assert float(np.abs(g - e).max()) <= 1e-3 * scale


def test_sparse_edge_cases_match_onnxruntime(tmp_path: Path) -> None:
    """Batch 2, an all-zero weight, a dilated conv (im2col path), a strided grouped conv and a MatMul
    with a rank-3 left operand (one sparse GEMV per row), at 1 and 2 threads."""
    rng = np.random.default_rng(6)

    def pruned(shape: tuple[int, ...], s: float) -> np.ndarray:
        return prune_unstructured(rng.standard_normal(shape).astype(np.float32), s)

    nodes = [
        helper.make_node("Conv", ["x", "wz"], ["a"], pads=[1, 1, 1, 1], name="zero"),
        helper.make_node("Conv", ["x", "wd"], ["b"], pads=[2, 2, 2, 2], dilations=[2, 2], name="dilated"),
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("Conv", ["c", "wg"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2], group=2, name="grouped"),
        helper.make_node("Reshape", ["d", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "wm"], ["y"], name="matmul"),
    ]
    init = {"wz": np.zeros((8, 8, 3, 3), np.float32), "wd": pruned((8, 8, 3, 3), 0.9),
            "wg": pruned((16, 4, 3, 3), 0.8), "wm": pruned((25, 12), 0.9)}  # fmt: skip
    model = make_model(nodes, {"x": (2, 8, 10, 10)}, ["y", "d"], init)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 16, 25], np.int64), "shape"))
    x = rng.standard_normal((2, 8, 10, 10)).astype(np.float32)
    lib = inferon.compile(model, tmp_path / "m.so", dump_ir=tmp_path / "ir")
    assert set(formats_in(tmp_path / "ir").values()) == {"csr"}
    for threads in (1, 2):
        assert_close_to_ort(model, lib, x, threads)
