"""FP32 GEMMs with few columns on the lanes kernel (pack-weights `f32_lanes`, gemm_lanes.hpp): which
layers the compiler packs as vector lanes, and a model through them on every instruction set against
ONNX Runtime. The kernel itself: tests/test_runtime_kernels.py::test_gemm_lanes*."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from inferon.passes.vec.pack_weights import lanes_pay, pack_a_lanes
from tests.conftest import make_model, use_isa


def test_pack_a_lanes_layout() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 5)).astype(np.float32)
    packed = pack_a_lanes(a).reshape(2, 5, 32)  # [panel][k][lane]
    for i in range(64):
        want = a[i] if i < 40 else np.zeros(5, np.float32)
        np.testing.assert_array_equal(packed[i // 32, :, i % 32], want)


def test_lanes_pay() -> None:
    assert lanes_pay(512, 49, 4608) and lanes_pay(2048, 49, 512) and lanes_pay(512, 16, 512)
    assert lanes_pay(256, 196, 1024) and lanes_pay(1000, 169, 512)
    assert not lanes_pay(64, 3136, 64)  # many columns, small K: the row-panel kernel
    assert lanes_pay(64, 3136, 576) and lanes_pay(32, 3136, 128)  # few rows: B read in place
    assert not lanes_pay(128, 3136, 576) and not lanes_pay(64, 3136, 128)
    assert not lanes_pay(64, 12544, 576)  # B of 7M floats: streamed once per 32-row panel
    assert lanes_pay(64, 12544, 147, image=True)  # a 7x7 stem: its image (one bordered copy) is small
    assert not lanes_pay(64, 12544, 147) and not lanes_pay(128, 3136, 576, image=True)
    assert lanes_pay(96, 196, 96) and lanes_pay(480, 196, 80) and lanes_pay(80, 196, 480)  # up to 800 columns
    assert not lanes_pay(96, 196, 16)  # K < 32
    assert lanes_pay(40, 49, 512)  # 64 padded rows for 40: within 7/4
    assert not lanes_pay(36, 49, 512)  # 64 padded rows for 36
    assert not lanes_pay(16, 49, 512)
    # with zmm row panels (Intel AVX-512F): lanes up to 100 columns, or an image of a KxK kernel
    assert lanes_pay(512, 49, 4608, zmm_rows=True) and not lanes_pay(256, 196, 1024, zmm_rows=True)
    assert lanes_pay(64, 12544, 147, image=True, zmm_rows=True, taps=49)
    assert not lanes_pay(512, 784, 256, image=True, zmm_rows=True, taps=1)  # a strided 1x1 conv
    assert lanes_pay(2048, 49, 1024, image=True, zmm_rows=True, taps=1)


def _small_net() -> tuple:
    """A 7x7-stage CNN: a strided 3x3 (im2col B), 1x1 convs with K = 128 (one with a residual Add and
    ReLU, one with bias and LeakyRelu), a 1x1 with K = 64 and a residual, global pool and FC (row
    panels)."""
    rng = np.random.default_rng(5)

    def w(*s: int) -> np.ndarray:
        return (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)

    init = {"w1": w(128, 32, 3, 3), "b1": w(128), "w2": w(64, 128, 1, 1), "w3": w(128, 64, 1, 1),
            "w4": w(128, 128, 1, 1), "w5": w(256, 128, 1, 1), "b5": w(256), "g": w(10, 256)}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["a3"]),
        helper.make_node("Relu", ["a3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"]),
        helper.make_node("Add", ["r3", "c4"], ["a4"]),
        helper.make_node("Relu", ["a4"], ["r4"]),
        helper.make_node("Conv", ["r4", "w5", "b5"], ["c5"]),
        helper.make_node("LeakyRelu", ["c5"], ["r5"], alpha=0.1),
        helper.make_node("GlobalAveragePool", ["r5"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"], transB=1),
    ]
    shape = (1, 32, 14, 14)
    return make_model(nodes, {"x": shape}, ["y", "r4"], init, opset=11), shape


@pytest.fixture(scope="module")
def lanes_net(tmp_path_factory):
    import inferon

    model, shape = _small_net()
    tmp = tmp_path_factory.mktemp("f32lanes")
    dump = tmp / "dump"
    with pytest.MonkeyPatch.context() as mp:  # the layouts for an AVX-512 machine, whatever this CPU has
        mp.setattr(inferon.compiler, "model_isa", lambda target="native", flags=None: "avx512")
        mp.setattr(inferon.compiler, "zmm_row_panels", lambda target="native", flags=None: False)  # the host may be Intel
        lib = inferon.compile(model, tmp / "m.so", dump_ir=dump)
    last = sorted(dump.glob("*plan-memory.mlir"))[-1].read_text()
    return model, shape, lib, [line for line in last.splitlines() if "vec.gemm" in line]


def test_few_column_layers_are_packed_as_lanes(lanes_net):
    _, _, _, lines = lanes_net
    lanes = [line for line in lines if "a_lanes" in line]
    # the strided 3x3 (K = 288, im2col), the three 1x1s with K = 128 and the K = 64 one; not the FC
    assert len(lanes) == 5, lines
    # operands a, b, bias, residual, c: the residual Adds of the K = 64 and a K = 128 layer
    assert sum("operandSegmentSizes = array<i32: 1, 1, 0, 1, 1>" in line for line in lanes) == 2
    assert sum("b_im2col" in line for line in lanes) == 1
    assert not any("a_packed" in line for line in lanes)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_lanes_model_matches_onnxruntime(lanes_net, monkeypatch, isa):
    import inferon
    from inferon.testing import run_onnxruntime

    model, shape, lib, _ = lanes_net
    use_isa(monkeypatch, isa)
    rng = np.random.default_rng(6)
    for threads in (1, 2):
        x = rng.standard_normal(shape).astype(np.float32)
        with inferon.load(lib, threads=threads) as cm:
            got = cm.run({"x": x})
        for name, want in zip(("y", "r4"), run_onnxruntime(model, {"x": x})):
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_lanes_grouped_conv_batch_2(tmp_path, monkeypatch, isa):
    """A grouped conv (2 groups of 64 rows, K = 128 each: one lanes-packed weight per group) and a
    strided 3x3 at batch 2 against ONNX Runtime."""
    import inferon
    from inferon.testing import run_onnxruntime

    rng = np.random.default_rng(8)
    init = {"w1": (rng.standard_normal((128, 128, 1, 1)) / 11).astype(np.float32),
            "w2": (rng.standard_normal((64, 128, 3, 3)) / 34).astype(np.float32), "b2": rng.standard_normal(64)}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], group=2),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    shape = (2, 256, 13, 13)
    model = make_model(nodes, {"x": shape}, ["y", "r1"], {k: np.asarray(v, np.float32) for k, v in init.items()})
    dump = tmp_path / "dump"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inferon.compiler, "model_isa", lambda target="native", flags=None: "avx512")
        mp.setattr(inferon.compiler, "zmm_row_panels", lambda target="native", flags=None: False)  # the host may be Intel
        lib = inferon.compile(model, tmp_path / "m.so", dump_ir=dump)
    last = sorted(dump.glob("*plan-memory.mlir"))[-1].read_text()
    assert sum("a_lanes" in line for line in last.splitlines() if "vec.gemm" in line) == 2
    use_isa(monkeypatch, isa)
    x = rng.standard_normal(shape).astype(np.float32)
    with inferon.load(lib, threads=2) as cm:
        got = cm.run({"x": x})
    for name, want in zip(("y", "r1"), run_onnxruntime(model, {"x": x})):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
