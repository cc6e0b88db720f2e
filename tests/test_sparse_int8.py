"""Sparse INT8: block1x4 int8 weights (inferon.ir.sparse) in the quantized GEMM, the sparsify choice
for quantized layers, and pruned models quantized by ONNX Runtime / by Inferon against ONNX Runtime.

The kernels are checked bit-exactly against `inferon.ir.quant` (the same requantization as the
dense quantized GEMM); whole models against ONNX Runtime running the same quantized file.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferon.cpu import cpu_flags
from inferon.ir import quant
from inferon.ir.sparse import block4_chunks, block4_decode, block4_encode, csr_quad_decode, csr_quad_encode
from tests.test_quant import ISAS, SETTINGS, im2col_reference, qgemm_reference, shim  # noqa: F401  (shim: the fixture)

P, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

CONV_GEOMETRIES = [  # C, H, W, kh, kw, sh, sw, pt, pl, dh, dw: the sparse / implicit quantized conv tests
    (3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1),
    (16, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1),
    (10, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1),
    (8, 12, 9, 5, 3, 1, 1, 2, 0, 1, 1),
    (6, 6, 40, 2, 2, 1, 1, 0, 1, 1, 1),
    (5, 7, 22, 3, 3, 1, 1, 1, 1, 1, 1),  # wide rows: AVX2 reads pair-safe weights' frame in place too
    (8, 13, 11, 3, 3, 2, 2, 1, 1, 1, 1),  # strided / dilated: implicit order where lanes pay
    (5, 14, 14, 7, 7, 2, 2, 3, 3, 1, 1),
    (6, 9, 10, 3, 3, 1, 1, 2, 2, 2, 2),
    (16, 9, 9, 1, 1, 2, 2, 0, 0, 1, 1),
    (4, 15, 17, 5, 5, 2, 2, 2, 2, 1, 1),  # block1x4: the stride-phase frame (tap (i, j): phase i % s)
    (7, 11, 13, 3, 3, 3, 3, 1, 1, 1, 1),
    (6, 10, 12, 3, 2, 2, 1, 1, 0, 1, 1),
    (9, 30, 31, 3, 3, 1, 1, 1, 1, 1, 1),  # wide grid across several 128-column tiles
]


def run_sparse_qgemm(lib, a, b, comp, mult, zy, lo, hi, *, isa, b_signed=False, c_signed=False, b_trans=False,
                     geometry=None, pad=0, n=None, threads=1, index32=False, kchunks=None, fmt="block1x4"):  # fmt: skip
    """The quantized GEMM with a sparse A: block1x4 (qsparse.hpp; `kchunks` default block4_chunks(K)) or
    CSR quads (`fmt="csr"`, qcsr.hpp; default one chunk)."""
    argtypes = [I64, I64, I64, P, P, INT, P, I64, P, I64, INT, INT, P, INT, P, P, P, I64, I64, INT, INT, INT, INT, INT]
    run = lib.k_qgemm_csr if fmt == "csr" else lib.k_qgemm_sparse
    run.argtypes, run.restype = argtypes, None
    m, k = a.shape
    n = n if n is not None else (b.shape[0] if b_trans else b.shape[1])
    if fmt == "csr":
        enc = csr_quad_encode(a, kchunks or 1)
        np.testing.assert_array_equal(csr_quad_decode(enc), a)
    else:
        enc = block4_encode(a, block4_chunks(a.shape[1]) if kchunks is None else kchunks)
        np.testing.assert_array_equal(block4_decode(enc), a)
    index = enc.indices.astype(np.int32) if index32 else enc.indices
    c = np.zeros((m, n), np.int8 if c_signed else np.uint8)
    geo = np.asarray([*geometry, *([0] if len(geometry) == 13 else [])], np.int64) if geometry is not None else None
    ldb = k if b_trans else (n if geometry is None else 0)
    table = quant.fixed_point(mult, zy, lo, hi)  # (kept alive for the call)
    lib.k_set_isa(isa)
    run(
        m, n, k, enc.values.ctypes.data, index.ctypes.data, int(index.dtype == np.int32), enc.row_ptr.ctypes.data,
        enc.kchunks, b.ctypes.data, ldb, int(b_trans), int(b_signed), None if geo is None else geo.ctypes.data, pad,
        comp.ctypes.data, table.ctypes.data, c.ctypes.data, n, 1, int(c_signed), zy, lo, hi, threads,
    )  # fmt: skip
    return c


@pytest.mark.parametrize("fmt", ["block1x4", "csr"])
@pytest.mark.parametrize("isa", ISAS)
@given(
    m=st.integers(1, 20), n=st.integers(1, 300), k=st.integers(1, 70), seed=st.integers(0, 10_000),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), b_signed=st.booleans(), c_signed=st.booleans(),
    b_trans=st.booleans(), extreme=st.booleans(), threads=st.sampled_from([1, 2]), index32=st.booleans(),
    kchunks=st.sampled_from([1, 2, 5]),
)  # fmt: skip
@SETTINGS
def test_sparse_qgemm_matches_reference(shim, isa, m, n, k, seed, density, b_signed, c_signed, b_trans,  # noqa: F811
                                        extreme, threads, index32, kchunks, fmt):  # fmt: skip
    """Both sparse int8 kernels (block1x4; CSR quads: single nonzeros, B rows interleaved by unpacks)
    bit-exact with inferon.ir.quant: random densities with empty rows, a fully dense row and a single
    nonzero, rows whose nonzeros are not a multiple of four, shapes off the tile sizes (1-5 column
    tiles, partial panels; CSR: masked loads of B read in place), signed / unsigned activations and
    outputs, transposed B, extreme 255 x -128 values, 16 / 32-bit indices, weights stored in 1-5
    k-chunks (int32 sums kept between them)."""
    rng = np.random.default_rng(seed)
    if extreme:
        a = rng.choice(np.int8([-128, 127]), (m, k))
        b = rng.choice(np.int8([-128, 127]) if b_signed else np.uint8([0, 255]), (k, n))
    else:
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        b = rng.integers(-128, 128, (k, n)).astype(np.int8) if b_signed else rng.integers(0, 256, (k, n)).astype(np.uint8)
    a[rng.random((m, k)) >= density] = 0
    a[rng.integers(m)] = rng.integers(-128, 128, k)  # a fully dense row (may be all nonzero)
    if m > 2:
        a[rng.integers(m)] = 0  # an empty row
        row = rng.integers(m)
        a[row] = 0
        a[row, rng.integers(k)] = 77  # a single nonzero
    zx = int(rng.integers(-128, 128)) if b_signed else int(rng.integers(0, 256))
    zy = int(rng.integers(-128, 128)) if c_signed else int(rng.integers(0, 256))
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    mult = (rng.random(m) * 0.02 + 1e-4).astype(np.float32)
    lo, hi = quant.qrange(np.int8 if c_signed else np.uint8)
    if rng.random() < 0.5:
        lo = max(lo, zy)
    comp, expected = qgemm_reference(a, b, zx, zy, bias, mult, lo, hi, b_signed=b_signed, c_signed=c_signed)
    src = np.ascontiguousarray(b.T) if b_trans else np.ascontiguousarray(b)
    got = run_sparse_qgemm(shim, a, src.view(np.uint8), comp, mult, zy, lo, hi, isa=isa, b_signed=b_signed,
                           c_signed=c_signed, b_trans=b_trans, n=n, threads=threads, index32=index32,
                           kchunks=kchunks, fmt=fmt)  # fmt: skip
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("kchunks", [1, 3])
def test_csr_quantized_conv(shim, isa, geometry, implicit, signed, kchunks):  # noqa: F811
    """Convolutions with a CSR int8 A read from a plain frame (one bordered plane per channel and
    stride phase, the product on the wide grid, its border columns dropped): any stride, weights in
    implicit order or (c, i, j); dilated convs and int8 activations through plain im2col rows; 1 and 2
    threads."""
    c, h, w, kh, kw = geometry[:5]
    rng = np.random.default_rng(c * h + kh + implicit)
    m = 21
    filt = rng.integers(-128, 128, (m, c, kh, kw)).astype(np.int8)
    filt[rng.random(filt.shape) < 0.8] = 0
    x = rng.integers(-128, 128, (c, h, w)).astype(np.int8) if signed else rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    zx, zy = (-7 if signed else 117), 3
    cols, ho, wo = im2col_reference(x, zx, geometry)
    mult = np.full(m, 0.004, np.float32)
    expected = quant.requantize(filt.reshape(m, -1).astype(np.int64) @ cols, mult[:, None], zy, 0, 255, np.uint8)
    a = quant.implicit_weight_order(filt) if implicit else filt.reshape(m, -1)
    comp = quant.compensation(a, zx + (128 if signed else 0), None)
    geo = (*geometry, ho, wo, int(implicit))
    for threads in (1, 2):
        got = run_sparse_qgemm(shim, a, x.view(np.uint8), comp, mult, zy, 0, 255, isa=isa, geometry=geo,
                               pad=zx & 0xFF, n=ho * wo, threads=threads, b_signed=signed, kchunks=kchunks,
                               fmt="csr")  # fmt: skip
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "geometry",
    [
    (3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1),
    (16, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1),
    (8, 9, 9, 3, 3, 1, 1, 2, 2, 2, 2),
    (8, 6, 6, 1, 1, 2, 2, 0, 0, 1, 1),
    ],
)
def test_sparse_qgemm_im2col(shim, isa, geometry):  # noqa: F811
    """Convolutions through im2col: padding reads the zero point, as in the dense kernel."""
    c, h, w, kh, kw = geometry[:5]
    rng = np.random.default_rng(2)
    m, k = 37, c * kh * kw
    x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    a[rng.random((m, k)) < 0.85] = 0
    zx, zy = 117, 3
    cols, ho, wo = im2col_reference(x, zx, geometry)
    mult = np.full(m, 0.01, np.float32)
    expected = quant.requantize(a.astype(np.int64) @ cols, mult[:, None], zy, 0, 255, np.uint8)
    comp = quant.compensation(a, zx, None)
    geo = (*geometry, ho, wo)
    for threads in (1, 2):
        got = run_sparse_qgemm(shim, a, x, comp, mult, zy, 0, 255, isa=isa, geometry=geo, pad=zx, n=ho * wo,
                               threads=threads)  # fmt: skip
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("density", [0.1, 0.6])
@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_qgemm_long_rows_in_chunks(shim, isa, density, threads):  # noqa: F811
    """K = 2310 is stored in block4_chunks(K) = 10 k-group chunks (int32 sums kept between them),
    rows of very different lengths, N across one and a half column tiles."""
    rng = np.random.default_rng(int(100 * density) + threads)
    m, k, n = 11, 2310, 97
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    a[rng.random((m, k)) >= density] = 0
    a[0, :] = 0
    a[1, : k // 2] = 0
    a[2, k // 2 :] = 0
    a[3, -1] = -128
    b = rng.integers(0, 256, (k, n)).astype(np.uint8)
    zx, zy = 131, 9
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    mult = np.full(m, 2e-4, np.float32)
    comp, expected = qgemm_reference(a, b, zx, zy, bias, mult, 0, 255)
    got = run_sparse_qgemm(shim, a, b, comp, mult, zy, 0, 255, isa=isa, threads=threads)
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------------------ whole models
def _pruned(model, sparsity: float, skip: tuple[str, ...] = ("w1",)):
    """`model` with every conv / FC weight but `skip` magnitude-pruned to `sparsity` (per tensor)."""
    import onnx
    from onnx import numpy_helper

    from inferon.ir.sparse import prune_unstructured

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim in (2, 4) and init.name not in skip:
            init.CopyFrom(numpy_helper.from_array(prune_unstructured(arr.astype(np.float32), sparsity), init.name))
    return out


def he_weight(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A conv weight with He-scaled normal values."""
    return rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))


SPARSE_SEGMENTS = "operandSegmentSizes = array<i32: 0, 1, 1, 1,"  # (no a_fix) a, a_index, a_row_ptr: a block1x4 A


def _qgemm_lines(dump) -> list[str]:
    last = sorted(dump.glob("*plan-memory.mlir"))[-1].read_text()
    return [line for line in last.splitlines() if "vec.qgemm" in line]


@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
def test_pruned_onnxruntime_quantized_cnn_runs_block_sparse(tmp_path, activation_type):
    """A pruned CNN quantized by ONNX Runtime (QDQ, per channel): sparsify finds the zeros in the
    int8 weights, the single-group convs run CSR quads (block1x4 without VNNI), the FC layer block1x4, and the logits equal both the dense INT8
    build and ONNX Runtime's INT8 execution of the same file (within one output step)."""
    import inferon
    from inferon.testing import quantize_onnxruntime, run_onnxruntime
    from tests.test_quant import _calibration, _float_cnn, _output_step, _within_one_step

    rng = np.random.default_rng(3)
    q = quantize_onnxruntime(_pruned(_float_cnn(rng), 0.85), _calibration(rng), activation_type=activation_type)
    dump = tmp_path / "dump"
    sparse = inferon.load(inferon.compile(q, tmp_path / "s.so", sparse="csr", dump_ir=dump))
    lines = _qgemm_lines(dump)
    # forced (sparse="csr"): every single-group conv with a zero (the stem has a few after rounding)
    # as CSR quads (with VNNI), and the fully-connected layer as block1x4 (a sparse GEMV at batch 1)
    assert sum(SPARSE_SEGMENTS in line for line in lines) == 4, lines
    vnni = {"avx512_vnni", "avx512vl", "avx512bw"} <= cpu_flags()
    formats = next(dump.glob("*_sparsify.mlir")).read_text()
    assert formats.count("format block1x4") == (1 if vnni else 4)
    assert formats.count("format csr") == (3 if vnni else 0)
    assert sum("a_csr" in line for line in lines) == (3 if vnni else 0)
    dense = inferon.load(inferon.compile(q, tmp_path / "d.so", sparse="off"))
    step = _output_step(q)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 18, 21)).astype(np.float32)
        out = sparse(x)
        np.testing.assert_array_equal(out, dense(x))
        ref = run_onnxruntime(q, {"x": x}, exact_int8=True)[0]
        assert _within_one_step(out, ref, step) >= 0.999


@pytest.mark.parametrize("size", [14, 16])
def test_csr_bottleneck_with_residual_matches_dense_int8(tmp_path, size):
    """A 90 %-pruned bottleneck block quantized by ONNX Runtime (1x1 -> 3x3 -> 1x1 + the block input,
    then a strided 3x3 and a strided 1x1): with `sparse=auto` on a VNNI CPU its convs run the int8 CSR
    kernel where it pays (the block's last 1x1 with the residual Add fused; 14 x 14: B rows copied 64
    bytes apart, 16 x 16: read in place), bit-identical with the dense INT8 build and within one step of ORT's INT8."""
    from onnx import helper

    import inferon
    from inferon.testing import quantize_onnxruntime, run_onnxruntime
    from tests.conftest import make_model
    from tests.test_quant import _output_step, _within_one_step

    rng = np.random.default_rng(size)
    init = {name: he_weight(rng, shape) for name, shape in {"w1": (64, 64, 1, 1), "w2": (64, 64, 3, 3),
            "w3": (64, 64, 1, 1), "w4": (96, 64, 3, 3), "w5": (128, 96, 1, 1)}.items()}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Add", ["c3", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("Conv", ["r4", "w5"], ["y"], strides=[2, 2]),
    ]
    model = make_model(nodes, {"x": (1, 64, size, size)}, ["y"], init, opset=13)
    calib = [{"x": np.abs(rng.standard_normal((1, 64, size, size))).astype(np.float32)} for _ in range(4)]
    q = quantize_onnxruntime(_pruned(model, 0.9, skip=()), calib)
    dump = tmp_path / "dump"
    sparse_lib = inferon.compile(q, tmp_path / "s.so", dump_ir=dump)
    dense_lib = inferon.compile(q, tmp_path / "d.so", sparse="off")
    lines = _qgemm_lines(dump)
    if {"avx512_vnni", "avx512vl", "avx512bw"} <= cpu_flags():
        # (the last conv, 16 output pixels, stays dense: CSR computes whole 64-column blocks)
        assert sum("a_csr" in line for line in lines) >= 4, lines
        assert sum("a_csr" in line and "residual_add" in line for line in lines) == 1, lines
    step = _output_step(q)
    for threads in (1, 2):
        sparse, dense = inferon.load(sparse_lib, threads=threads), inferon.load(dense_lib, threads=threads)
        for _ in range(2):
            x = np.abs(rng.standard_normal((1, 64, size, size))).astype(np.float32)
            out = sparse(x)
            np.testing.assert_array_equal(out, dense(x))
            ref = run_onnxruntime(q, {"x": x}, exact_int8=True)[0]
            assert _within_one_step(out, ref, step) >= 0.999


@pytest.mark.parametrize("spec", ["unstructured:0.9", "block1x4:0.9"])
def test_prune_then_quantize(tmp_path, capsys, spec):
    """`prune` + `quantize` together: the float weights are pruned, then quantized (zeros stay zero)
    and the layers at 90 % that pay run block1x4; the INT8 output stays close to ONNX Runtime's float
    execution of the same pruned model (pruned by `inferon.testing.prune_onnx`)."""
    import onnx
    from onnx import helper, numpy_helper

    import inferon
    from inferon.testing import prune_onnx, run_onnxruntime
    from tests.conftest import make_model

    rng = np.random.default_rng(5)
    init = {name: he_weight(rng, shape) for name, shape in
            {"w1": (32, 3, 3, 3), "w2": (256, 32, 3, 3), "w3": (256, 256, 1, 1), "w4": (64, 256, 3, 3)}.items()}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["y"], pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, {"x": (1, 3, 28, 28)}, ["y"], init, opset=13)
    calib = {"x": rng.standard_normal((8, 3, 28, 28)).astype(np.float32)}
    dump = tmp_path / "dump"
    cm = inferon.load(inferon.compile(model, tmp_path / "m.so", prune=spec, quantize="int8",
                                      calibration=calib, dump_ir=dump))  # fmt: skip
    assert f"pruned {spec}" in capsys.readouterr().err
    names = [p.name for p in sorted(dump.glob("*.mlir"))]
    assert names.index(next(n for n in names if n.endswith("_prune.mlir"))) < names.index(
        next(n for n in names if n.endswith("_quantize.mlir")))  # fmt: skip
    # the pruned convs the cost model puts on a sparse format (block1x4, or with VNNI CSR quads; the 1x1
    # everywhere; the stride-1 3x3s where the CPU's section prices their dense GEMM read in place
    # against the sparse kernel) run it
    formats = next(dump.glob("*_sparsify.mlir")).read_text()
    chosen = formats.count("format block1x4") + formats.count("format csr")
    assert 1 <= chosen <= 3 and sum(SPARSE_SEGMENTS in line for line in _qgemm_lines(dump)) == chosen
    pruned = prune_onnx(model, spec)
    if spec == "unstructured:0.9":  # (the test's own per-tensor pruning, the stem skipped alike)
        np.testing.assert_array_equal(numpy_helper.to_array(pruned.graph.initializer[1]),
                                      numpy_helper.to_array(_pruned(model, 0.9).graph.initializer[1]))  # fmt: skip
    assert isinstance(pruned, onnx.ModelProto)
    x = rng.standard_normal((1, 3, 28, 28)).astype(np.float32)
    ref = run_onnxruntime(pruned, {"x": x})[0]
    out = cm(x)
    assert np.abs(out - ref).max() <= 0.05 * np.abs(ref).max()


def test_prune_an_already_quantized_model(tmp_path, capsys):
    """`--prune` on a model quantized by ONNX Runtime prunes its int8 weights (all single-group convs
    but the stem, and the fully-connected layer) by magnitude; the result equals ONNX Runtime running
    the same QDQ file with those int8 initializers pruned the same way (per layer, |w| order), within
    one output step."""
    import onnx
    from onnx import numpy_helper

    import inferon
    from inferon.ir.sparse import prune_unstructured
    from inferon.testing import quantize_onnxruntime, run_onnxruntime
    from tests.test_quant import _calibration, _float_cnn, _output_step, _within_one_step

    rng = np.random.default_rng(11)
    q = quantize_onnxruntime(_float_cnn(rng), _calibration(rng))
    dump = tmp_path / "dump"
    cm = inferon.load(inferon.compile(q, tmp_path / "m.so", prune="unstructured:0.8", sparse="csr", dump_ir=dump))
    assert "pruned unstructured:0.8" in capsys.readouterr().err
    assert sum(SPARSE_SEGMENTS in line for line in _qgemm_lines(dump)) == 3  # 1x1 stride 2, the 3x3, the FC
    # the same pruning applied to the QDQ file: the int8 weights of the two single-group, non-stem convs
    pruned = onnx.ModelProto()
    pruned.CopyFrom(q)
    inits = {i.name: i for i in pruned.graph.initializer}
    producers = {n.output[0]: n for n in pruned.graph.node}
    convs = [n for n in pruned.graph.node if n.op_type == "Conv"]
    for conv in convs[1:]:
        if any(a.name == "group" and a.i > 1 for a in conv.attribute):
            continue
        init = inits[producers[conv.input[1]].input[0]]  # DequantizeLinear(int8 weight)
        w = numpy_helper.to_array(init)
        a = prune_unstructured(w.reshape(w.shape[0], -1), 0.8).reshape(w.shape)
        init.CopyFrom(numpy_helper.from_array(a.astype(np.int8), init.name))
    gemm = next(n for n in pruned.graph.node if n.op_type == "Gemm")  # transB: W [N_out, K], as pruned
    init = inits[producers[gemm.input[1]].input[0]]
    init.CopyFrom(numpy_helper.from_array(prune_unstructured(numpy_helper.to_array(init), 0.8).astype(np.int8),
                                          init.name))  # fmt: skip
    step = _output_step(q)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 18, 21)).astype(np.float32)
        assert _within_one_step(cm(x), run_onnxruntime(pruned, {"x": x}, exact_int8=True)[0], step) >= 0.999


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("weights", ["dense", "block1x4", "lanes", "pair_safe"])
@pytest.mark.parametrize("signed", [False, True])
def test_implicit_quantized_conv(shim, isa, geometry, weights, signed):  # noqa: F811
    """Convolutions with the weights in implicit order (inferon.ir.quant.implicit_weight_order:
    channel groups of 4, taps, channel in group; C not a multiple of 4 padded): read in place from the
    interleaved bordered frame with VNNI (stride 1: wide grid, border columns dropped; as vector
    lanes, any stride / dilation: each output pixel's groups by offset), through im2col rows in the
    same order otherwise (AVX2 with pair-safe weights: in place on the wide grid where kw - 1 is at most
    a tenth of its width; block1x4 with VNNI: any stride without dilation in place, from a frame split
    into stride phases); dense, block1x4, lanes-packed and pair-safe weights, uint8 / int8
    activations, 1 and 2 threads."""
    sparse = weights == "block1x4"
    c, h, w, kh, kw = geometry[:5]
    rng = np.random.default_rng(c * h + kh)
    m = 37 if weights == "lanes" else 13
    filt = rng.integers(-128, 128, (m, c, kh, kw)).astype(np.int8)
    if sparse:
        filt[rng.random(filt.shape) < 0.8] = 0
    x = rng.integers(-128, 128, (c, h, w)).astype(np.int8) if signed else rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    zx, zy = (-7 if signed else 117), 3
    cols, ho, wo = im2col_reference(x, zx, geometry)
    a = filt.reshape(m, -1)
    mult = np.full(m, 0.004, np.float32)
    expected = quant.requantize(a.astype(np.int64) @ cols, mult[:, None], zy, 0, 255, np.uint8)
    a_impl = quant.implicit_weight_order(filt)
    comp = quant.compensation(a_impl, zx + (128 if signed else 0), None)
    geo = (*geometry, ho, wo, 1)
    for threads in (1, 2):
        if sparse:
            got = run_sparse_qgemm(shim, a_impl, x.view(np.uint8), comp, mult, zy, 0, 255, isa=isa, geometry=geo,
                                   pad=zx & 0xFF, n=ho * wo, threads=threads, b_signed=signed)  # fmt: skip
        else:
            from tests.test_quant import run_qgemm

            got = run_qgemm(shim, a_impl, x.view(np.uint8), comp, mult, zy, 0, 255, isa=isa, geometry=geo,
                            pad=zx & 0xFF, n=ho * wo, threads=threads, b_signed=signed, lanes=weights == "lanes",
                            pair_safe=weights == "pair_safe")  # fmt: skip
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sparse", ["off", "csr"])
def test_quantized_convs_batch_two(tmp_path, sparse):
    """Batch 2 through implicit (stride-1 3x3 / 5x5), strided and 1x1 quantized convs, dense and
    block1x4, against ONNX Runtime on the same QDQ file (within one output step)."""
    from onnx import helper

    import inferon
    from inferon.testing import quantize_onnxruntime, run_onnxruntime
    from tests.conftest import make_model
    from tests.test_quant import _output_step, _within_one_step

    rng = np.random.default_rng(21)
    init = {name: he_weight(rng, shape) for name, shape in
            {"w1": (8, 5, 5, 5), "w2": (12, 8, 3, 3), "w3": (16, 12, 1, 1), "w4": (6, 16, 3, 3)}.items()}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["y"], pads=[1, 1, 1, 1]),
    ]
    model = _pruned(make_model(nodes, {"x": (2, 5, 17, 23)}, ["y"], init, opset=13), 0.8, skip=())
    calib = [{"x": rng.standard_normal((2, 5, 17, 23)).astype(np.float32)} for _ in range(3)]
    q = quantize_onnxruntime(model, calib)
    dump = tmp_path / "dump"
    with pytest.MonkeyPatch.context() as mp:  # the layouts for a VNNI machine, whatever this CPU has
        mp.setattr(inferon.compiler, "vnni_kernels", lambda target="native": True)
        cm = inferon.load(inferon.compile(q, tmp_path / "m.so", sparse=sparse, dump_ir=dump))
    lines = _qgemm_lines(dump)
    # the stride-1 5x5 and 3x3 convs (the strided 3x3 has K = 72: no lanes below K = 128, so dense
    # it is im2col; strided convs as lanes: tests/test_qlanes.py), and block1x4 the strided one too
    # (its blocks in implicit order, read from the stride-phase frame with VNNI)
    assert sum("b_implicit" in line for line in lines) == (3 if sparse == "csr" else 2)
    assert sum(SPARSE_SEGMENTS in line for line in lines) == (4 if sparse == "csr" else 0)
    step = _output_step(q)
    for _ in range(2):
        x = rng.standard_normal((2, 5, 17, 23)).astype(np.float32)
        assert _within_one_step(cm(x), run_onnxruntime(q, {"x": x}, exact_int8=True)[0], step) >= 0.999


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m, k, density", [(1, 5, 1.0), (7, 70, 0.3), (37, 2310, 0.1), (100, 1027, 0.0)])
@pytest.mark.parametrize("b_trans, index32", [(True, False), (False, True)])
def test_sparse_qgemm_single_column(shim, isa, m, k, density, b_trans, index32):  # noqa: F811
    """N = 1 (a GEMV with VNNI: 16 blocks per gather): bit-exact with the reference for row lengths
    off 16 (empty rows too), several k-chunks, both index widths, 1-2 threads."""
    rng = np.random.default_rng(m * k)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    a[rng.random((m, k)) >= density] = 0
    a[0, : min(k, 17)] = 5
    b = rng.integers(0, 256, (k, 1)).astype(np.uint8)
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    mult = np.full(m, 3e-4, np.float32)
    comp = quant.compensation(a, 99, bias)
    expected = quant.requantize(a.astype(np.int64) @ (b.astype(np.int64) - 99) + bias[:, None], mult[:, None], 1,
                                0, 255, np.uint8)  # fmt: skip
    src = np.ascontiguousarray(b.T) if b_trans else b
    for threads in (1, 2):
        got = run_sparse_qgemm(shim, a, src, comp, mult, 1, 0, 255, isa=isa, b_trans=b_trans, n=1, threads=threads,
                               index32=index32)  # fmt: skip
        np.testing.assert_array_equal(got, expected)


def test_block4_chunks_leave_enough_blocks_per_row():
    """k-group chunks of about 64 groups, but none that leave fewer than 24 blocks per row."""
    assert block4_chunks(4608) == 18 and block4_chunks(256) == 1
    assert block4_chunks(4608, 1000.0) == 18
    assert block4_chunks(4608, 115.2) == 4
    assert block4_chunks(4608, 3.0) == 1


def test_block_pruned_model_runs_in_place(tmp_path):
    """`prune_onnx(..., "block1x4:0.9")` (as `--prune block1x4:0.9`) zeroes whole blocks of four input
    channels at one tap; quantized by ONNX Runtime, its stride-1 and strided 3x3 / 5x5 convs run
    block1x4 in implicit order (read in place with VNNI) and the 1x1 one with a fused residual on
    packed panels: the output equals the dense INT8 build and ONNX Runtime's (within one step)."""
    from onnx import helper, numpy_helper

    import inferon
    from inferon.ir.sparse import block4_groups_by_tap
    from inferon.testing import prune_onnx, quantize_onnxruntime, run_onnxruntime
    from tests.conftest import make_model
    from tests.test_quant import _output_step, _within_one_step

    rng = np.random.default_rng(31)
    shapes = {"w1": (32, 8, 3, 3), "w2": (48, 32, 3, 3), "w3": (48, 48, 3, 3), "w4": (48, 48, 1, 1),
              "w5": (16, 48, 5, 5)}  # fmt: skip
    init = {name: he_weight(rng, shape) for name, shape in shapes.items()}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"]),
        helper.make_node("Add", ["c4", "r3"], ["s"]),
        helper.make_node("Relu", ["s"], ["r4"]),
        helper.make_node("Conv", ["r4", "w5"], ["y"], pads=[2, 2, 2, 2], strides=[2, 2]),
    ]
    model = prune_onnx(make_model(nodes, {"x": (1, 8, 20, 22)}, ["y"], init, opset=13), "block1x4:0.9")
    for init_ in model.graph.initializer:
        w = numpy_helper.to_array(init_)
        taps = w.shape[2] * w.shape[3]
        blocks = w.shape[0] * taps * -(-w.shape[1] // 4)
        kept = block4_groups_by_tap(w.reshape(w.shape[0], -1), taps)
        assert kept == (blocks if init_.name == "w1" else round(0.1 * blocks)), init_.name  # the stem stays dense
    q = quantize_onnxruntime(model, [{"x": rng.standard_normal((1, 8, 20, 22)).astype(np.float32)} for _ in range(3)])
    dump = tmp_path / "dump"
    with pytest.MonkeyPatch.context() as mp:  # the layouts for a VNNI machine, whatever this CPU has
        mp.setattr(inferon.compiler, "vnni_kernels", lambda target="native": True)
        sparse = inferon.load(inferon.compile(q, tmp_path / "s.so", sparse="csr", dump_ir=dump))
        dense = inferon.load(inferon.compile(q, tmp_path / "d.so", sparse="off"))
    lines = _qgemm_lines(dump)
    # forced: the four pruned convs (and the stem where int8 rounding left a zero), the KxK ones in place
    assert sum(SPARSE_SEGMENTS in line for line in lines) >= 4, lines
    assert sum("b_implicit" in line for line in lines) == 4, lines
    step = _output_step(q)
    for _ in range(2):
        x = rng.standard_normal((1, 8, 20, 22)).astype(np.float32)
        out = sparse(x)
        np.testing.assert_array_equal(out, dense(x))
        assert _within_one_step(out, run_onnxruntime(q, {"x": x}, exact_int8=True)[0], step) >= 0.999
