"""Quantized GEMMs with A's rows as vector lanes (few columns: qlanes.hpp, `vec.qgemm a_lanes`).

The kernels themselves are checked bit-exactly against the numpy reference by test_quant's
`test_qgemm_matches_reference` / `test_qgemm_im2col_pads_with_the_zero_point` and test_sparse_int8's
`test_implicit_quantized_conv` (all with `lanes`); here: the compiler's choice and whole models
against ONNX Runtime with every kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from inferon.passes.conversion.loop_to_vec import lanes_pay
from tests.conftest import use_isa


@pytest.mark.parametrize(
    "m, n, k, wide, frame, expected",
    [
        (512, 49, 4608, 63, 0, True),  # ResNet-50 res5 3x3 (implicit, 7 x 9 wide grid): measured 0.77x
        (2048, 49, 512, 49, 0, True),  # res5 1x1 (56 columns computed for 49): 0.94x
        (128, 784, 1152, 840, 0, True),  # res3 3x3 (implicit, 28 x 30): 0.90x
        (64, 3136, 576, 3248, 0, True),  # res2 3x3 (implicit, 56 x 58): 0.97x
        (128, 784, 288, 840, 0, True),  # a 28x28 3x3 with 32 input channels: 0.92x
        (256, 3136, 64, 3136, 0, False),  # res2 1x1, K = 64: 1.25x as lanes
        (512, 784, 128, 784, 0, False),  # res3 1x1, K = 128: 1.15x
        (1024, 196, 256, 196, 0, False),  # 196 = 6 x 32 + 4 columns waste little: 1.05x as lanes
        (48, 3136, 432, 3136, 0, False),  # 48 rows fill 1.5 lane panels
        (1000, 1, 2048, 1, 0, False),  # N = 1: the GEMV
        (128, 784, 1152, 784, 128 * 57 * 57, True),  # res3's strided 3x3: no im2col as lanes
        (1024, 196, 512, 196, 512 * 27 * 27, False),  # a stride-2 1x1: the frame holds 4x the pixels used
    ],
)
def test_lanes_pay_follows_the_measured_shapes(m, n, k, wide, frame, expected):
    assert lanes_pay(m, n, k, wide, im2col=frame > 0, frame=frame) is expected


def _small_deep_cnn() -> tuple:
    """A QDQ CNN (ONNX Runtime's quantizer) whose deep layers have few columns: a strided 3x3 from
    14x14 to 7x7, a stride-1 3x3 at 7x7 (implicit), 1x1 convs at 7x7 with K = 64 and two with K = 1024
    (250 rows: a partial lane panel) whose sum is a residual Add, and a Gemm head."""
    from inferon.testing import quantize_onnxruntime
    from tests.conftest import make_model

    rng = np.random.default_rng(5)
    init = {
        "w1": rng.standard_normal((64, 16, 3, 3)) * 0.12, "w2": rng.standard_normal((64, 64, 3, 3)) * 0.06,
        "w3": rng.standard_normal((1024, 64, 1, 1)) * 0.15, "w4": rng.standard_normal((250, 1024, 1, 1)) * 0.04,
        "w5": rng.standard_normal((250, 1024, 1, 1)) * 0.04,
        "g": rng.standard_normal((10, 250)) * 0.2,
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"]),
        helper.make_node("Conv", ["r3", "w5"], ["c5"]),
        helper.make_node("Add", ["c4", "c5"], ["s"]),
        helper.make_node("Relu", ["s"], ["r4"]),
        helper.make_node("GlobalAveragePool", ["r4"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"], transB=1),
    ]
    shape = (2, 16, 14, 14)
    model = make_model(nodes, {"x": shape}, ["y"], {k: v.astype(np.float32) for k, v in init.items()}, opset=13)
    calib = [{"x": rng.random(shape).astype(np.float32)} for _ in range(3)]
    return quantize_onnxruntime(model, calib), shape


@pytest.fixture(scope="module")
def deep_cnn(tmp_path_factory):
    import inferon

    q, shape = _small_deep_cnn()
    tmp = tmp_path_factory.mktemp("lanes")
    dump = tmp / "dump"
    with pytest.MonkeyPatch.context() as mp:  # the layouts for a VNNI machine, whatever this CPU has
        mp.setattr(inferon.compiler, "vnni_kernels", lambda target="native": True)
        lib = inferon.compile(q, tmp / "m.so", dump_ir=dump)
    last = sorted(dump.glob("*plan-memory.mlir"))[-1].read_text()
    return q, shape, lib, [line for line in last.splitlines() if "vec.qgemm" in line]


def test_few_column_layers_run_as_lanes(deep_cnn):
    _, _, _, lines = deep_cnn
    lanes = [line for line in lines if "a_lanes" in line]
    # the stride-1 3x3 (K = 576, wide grid 63 columns), the strided 3x3 (no im2col as lanes), the 1x1s
    # with K = 1024 (the second with the first's output as its fused residual) and the Gemm (10 rows x
    # the 2 batch columns, written transposed: C strided); the K = 64 1x1 stays on row panels (lanes_pay)
    assert len(lanes) == 5, lines
    assert sum("residual_add" in line for line in lanes) == 1
    assert all("mr = 32" in line for line in lanes)
    # both 3x3 convs read the bordered frame in place, the strided one with K in implicit order too
    assert sum("b_implicit" in line for line in lanes) == 2


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_lanes_model_matches_onnxruntime(deep_cnn, monkeypatch, isa):
    """Batch 2 through lanes-packed layers (implicit 3x3, 1x1 with 250 rows) with each kernel: within
    one output step of ONNX Runtime on the same QDQ file, and equal across kernels."""
    import inferon
    from inferon.testing import run_onnxruntime
    from tests.test_quant import _output_step, _within_one_step

    q, shape, lib, _ = deep_cnn
    use_isa(monkeypatch, isa)
    step = _output_step(q)
    rng = np.random.default_rng(11)
    with inferon.load(lib, threads=2) as cm:
        for _ in range(2):
            x = rng.random(shape).astype(np.float32)
            assert _within_one_step(cm(x), run_onnxruntime(q, {"x": x}, exact_int8=True)[0], step) >= 0.999


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_without_vnni_layers_run_pair_safe_row_panels(tmp_path, monkeypatch, isa):
    """For a machine without VNNI the compiler keeps every dense quantized GEMM on row panels with
    pair-safe weights and corrections (`a_fix`: vpmaddubsw on AVX2), convolutions in plain im2col
    order where implicit order would pad K; every kernel stays within one step of ONNX Runtime."""
    import inferon
    from inferon.testing import run_onnxruntime
    from tests.test_quant import _output_step, _within_one_step

    q, shape = _small_deep_cnn()
    monkeypatch.setattr(inferon.compiler, "vnni_kernels", lambda target="native": False)
    dump = tmp_path / "dump"
    lib = inferon.compile(q, tmp_path / "m.so", dump_ir=dump)
    last = sorted(dump.glob("*plan-memory.mlir"))[-1].read_text()
    lines = [line for line in last.splitlines() if "vec.qgemm" in line]
    assert lines and not any("a_lanes" in line for line in lines)
    assert sum("operandSegmentSizes = array<i32: 1," in line for line in lines) == len(lines), lines  # all a_fix
    use_isa(monkeypatch, isa)
    step = _output_step(q)
    rng = np.random.default_rng(12)
    with inferon.load(lib, threads=2) as cm:
        x = rng.random(shape).astype(np.float32)
        assert _within_one_step(cm(x), run_onnxruntime(q, {"x": x}, exact_int8=True)[0], step) >= 0.999


def test_vnni_kernels_follow_the_cpu_and_target(monkeypatch):
    """The quantized layouts are chosen for VNNI only where the runtime will use it: avx512 level and
    the VNNI / VL / BW flags (a Zen 4 with --target native or avx512; not with avx2, not on a Zen 3)."""
    from inferon.cpu import vnni_kernels

    monkeypatch.delenv("INFERON_ISA", raising=False)
    zen3 = frozenset({"avx2", "fma"})
    zen4 = zen3 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    assert [vnni_kernels(t, zen4) for t in ("native", "avx512", "avx2", "scalar")] == [True, True, False, False]
    assert not vnni_kernels("native", zen3)
    assert not vnni_kernels("native", zen4 - {"avx512_vnni"})
    monkeypatch.setenv("INFERON_ISA", "avx2")
    assert not vnni_kernels("native", zen4)
