"""Element-wise activations of exported CNNs (Sigmoid, Tanh, Exp, HardSwish, Swish / SiLU, PRelu, Selu, Celu,
ThresholdedRelu, Softsign, Mish, Erf, Gelu, Sign, Round, Sin, Cos) and their epilogue fusion.

Three levels: the kernels themselves (AVX2 and scalar, through ``kernel_shim.cpp``) against float64
numpy over a wide input range (large |x|, +-0, +-inf, NaN); small ONNX models of each op, on sizes
that are and are not multiples of 8, against ONNX Runtime with the AVX2 and the scalar kernels
(INFERON_ISA); a MobileNetV3 block and PRelu after Conv end to end, with the fusions they get.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from inferon.backend.toolchain import build_shared_library
from inferon.cpu import supports
from inferon.errors import ModelImportError
from inferon.frontend.onnx.importer import import_model
from inferon.ir.attrs import ActivationKind
from inferon.ir.context import make_context
from inferon.ir.dialects import graph
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_model

HERE = Path(__file__).resolve().parent
GRAPH_PASSES = ["remove-identities", "fold-batchnorm", "decompose-batchnorm", "fold-constants", "fuse-epilogue"]


AVX2 = pytest.mark.skipif(not supports("avx2"), reason="no AVX2/FMA")
ISAS = ["scalar", pytest.param("avx2", marks=AVX2)]

# ------------------------------------------------------------------------------- kernel level
_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])
SELU_A, SELU_G = 1.67326319217681884765625, 1.05070102214813232421875


def _mish(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return x * np.tanh(np.logaddexp(0, x))


# UnOp number -> (name, float64 reference(x, alpha, beta), alpha, beta, rtol, atol)
UNARY: dict[int, tuple[str, Callable[..., np.ndarray], float, float, float, float]] = {
    4: ("sigmoid", lambda x, a, b: 1 / (1 + np.exp(-x)), 0, 0, 3e-7, 1e-30),
    5: ("tanh", lambda x, a, b: np.tanh(x), 0, 0, 3e-7, 1e-30),
    6: ("exp", lambda x, a, b: np.exp(x).astype(np.float32).astype(np.float64), 0, 0, 3e-7, 1e-30),
    17: ("hard_swish", lambda x, a, b: x * np.clip(x / 6 + 0.5, 0, 1), 0, 0, 1e-6, 1e-7),
    18: ("selu", lambda x, a, b: b * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))), SELU_A, SELU_G, 2e-6, 2e-7),
    19: ("celu", lambda x, a, b: np.maximum(x, 0) + np.minimum(0, a * np.expm1(np.minimum(x, 0) / a)), 0.7, 0,
         2e-6, 2e-7),
    20: ("thresholded_relu", lambda x, a, b: np.where(x > a, x, 0), 0.3, 0, 0, 0),
    21: ("softsign", lambda x, a, b: x / (1 + np.abs(x)), 0, 0, 1e-6, 0),
    22: ("mish", lambda x, a, b: _mish(x), 0, 0, 2e-6, 1e-30),
    23: ("erf", lambda x, a, b: _erf(x), 0, 0, 2e-6, 0),
    # float32 rounding of x / sqrt(2) alone moves erfc by ~2 z^2 * 6e-8 relative, for x << 0
    24: ("gelu", lambda x, a, b: 0.5 * x * _erfc(-x / np.sqrt(2)), 0, 0, 2e-5, 1e-30),
    25: ("gelu_tanh", lambda x, a, b: x / (1 + np.exp(-2 * np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))), 0, 0,
         2e-5, 1e-30),
    26: ("sign", lambda x, a, b: np.sign(x), 0, 0, 0, 0),
    27: ("round", lambda x, a, b: np.round(x), 0, 0, 0, 0),
    28: ("sin", lambda x, a, b: np.sin(x), 0, 0, 2e-6, 2e-7),
    29: ("cos", lambda x, a, b: np.cos(x), 0, 0, 2e-6, 2e-7),
    31: ("swish", lambda x, a, b: x / (1 + np.exp(-a * x)), 1.0, 0, 5e-7, 1e-30),
}
# ops whose value at +-inf is a limit worth checking (the others are NaN or irrelevant there)
AT_INF = {"sigmoid", "tanh", "exp", "hard_swish", "selu", "celu", "thresholded_relu", "erf", "sign", "round", "sin", "cos", "mish", "gelu"}


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    so = build_shared_library(
        (HERE / "kernel_shim.cpp").read_text(), np.arange(16, dtype=np.float32).tobytes(),
        tmp_path_factory.mktemp("shim") / "shim.so",
    )  # fmt: skip
    lib = ctypes.CDLL(str(so))
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    for name, args in {"k_set_isa": [i32], "k_unary": [i32, i64, p, p, f32, f32, i32],
                       "k_binary": [i32, i32, p, p, p, p, p, p, i32]}.items():  # fmt: skip
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = None
    return lib


def _inputs(name: str) -> np.ndarray:
    """A wide range: dense around 0, up to |x| = 1e4 (and 1e30 for sin/cos), signed zeros, tiny values,
    exact halves for round, infinities where meaningful."""
    rng = np.random.default_rng(11)
    parts = [
        np.linspace(-12, 12, 4001), rng.standard_normal(999) * 3, np.geomspace(1e-8, 1e4, 300),
        -np.geomspace(1e-8, 1e4, 300),
        [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-38, -1e-38, 3.0, -3.0, 6.0, 19.9, 20.1],
        np.arange(-40, 41) * 0.5,
    ]  # fmt: skip
    if name in ("sin", "cos"):
        parts += [np.geomspace(8000, 1e30, 200), -np.geomspace(8000, 1e30, 200), np.arange(-64, 65) * np.pi / 4]
    if name in AT_INF:
        parts.append([np.inf, -np.inf])
    return np.concatenate([np.asarray(p, np.float64) for p in parts]).astype(np.float32)


@pytest.mark.parametrize("isa", [0, pytest.param(1, marks=AVX2)], ids=["scalar", "avx2"])
@pytest.mark.parametrize("op", list(UNARY), ids=[v[0] for v in UNARY.values()])
def test_unary_kernel_accuracy(shim: ctypes.CDLL, op: int, isa: int) -> None:
    name, ref, alpha, beta, rtol, atol = UNARY[op]
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))  # what the kernel gets
    shim.k_set_isa(isa)
    x = _inputs(name)
    y = np.full_like(x, 7.0)
    shim.k_unary(op, x.size, x.ctypes.data, y.ctypes.data, alpha, beta, 2)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64), alpha, beta)
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol, err_msg=f"{name} isa={isa}")
    # signed zero and NaN: the sign of 0 kept where the reference keeps it, NaN propagated
    zeros = np.array([0.0, -0.0, np.nan] * 3, np.float32)
    z = np.empty_like(zeros)
    shim.k_unary(op, zeros.size, zeros.ctypes.data, z.ctypes.data, alpha, beta, 1)
    with np.errstate(all="ignore"):
        zw = ref(zeros.astype(np.float64), alpha, beta)
    np.testing.assert_array_equal(z, zw.astype(np.float32), err_msg=f"{name} at 0, -0, NaN, isa={isa}")
    if name in ("sign", "round", "thresholded_relu"):
        np.testing.assert_array_equal(np.signbit(z[~np.isnan(z)]), np.signbit(zw[~np.isnan(zw)]))


@pytest.mark.parametrize("isa", [0, pytest.param(1, marks=AVX2)], ids=["scalar", "avx2"])
def test_prelu_kernel_broadcasts(shim: ctypes.CDLL, isa: int) -> None:
    shim.k_set_isa(isa)
    rng = np.random.default_rng(5)
    for x_shape, s_shape in [((2, 5, 7, 9), (5, 1, 1)), ((1, 3, 4, 17), (17,)), ((37,), (37,)), ((3, 19), (1,)),
                             ((2, 4, 3, 11), (2, 4, 3, 11))]:  # fmt: skip
        x = rng.standard_normal(x_shape).astype(np.float32)
        s = rng.standard_normal(s_shape).astype(np.float32)
        s_full = np.broadcast_to(s, x_shape)
        strides = np.ascontiguousarray(np.array(s_full.strides, np.int64) // 4)
        x_strides = np.ascontiguousarray(np.array(x.strides, np.int64) // 4)
        shape = np.array(x_shape, np.int64)
        y = np.full_like(x, np.nan)
        shim.k_binary(7, len(x_shape), shape.ctypes.data, x.ctypes.data, x_strides.ctypes.data, s.ctypes.data,
                      strides.ctypes.data, y.ctypes.data, 2)  # fmt: skip
        np.testing.assert_array_equal(y, np.where(x < 0, x * s_full, x))


# ------------------------------------------------------------------------- ONNX models vs ORT
SHAPES = [(5,), (1, 3, 7, 5), (2, 16, 9), (1, 8, 24, 24)]
# (op, attributes, input scale)
OPS: list[tuple[str, dict[str, Any], float]] = [
    ("HardSwish", {}, 4.0),
    ("Selu", {}, 2.0),
    ("Selu", {"alpha": 1.5, "gamma": 0.8}, 2.0),
    ("Celu", {}, 2.0),
    ("Celu", {"alpha": 0.4}, 2.0),
    ("ThresholdedRelu", {}, 2.0),
    ("ThresholdedRelu", {"alpha": -0.3}, 2.0),
    ("Softsign", {}, 5.0),
    ("Mish", {}, 6.0),
    ("Sigmoid", {}, 8.0),
    ("Erf", {}, 2.0),
    ("Gelu", {}, 3.0),
    ("Gelu", {"approximate": "tanh"}, 3.0),
    ("Sign", {}, 1.0),
    ("Round", {}, 3.0),
    ("Sin", {}, 10.0),
    ("Cos", {}, 10.0),
]


@pytest.fixture(scope="module")
def ops_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, Path, dict[str, np.ndarray]]:
    """One model holding every (op, attributes) on every shape: one build."""
    nodes, inputs, feeds = [], {}, {}
    rng = np.random.default_rng(2)
    for i, (op, attrs, scale) in enumerate(OPS):
        for j, shape in enumerate(SHAPES):
            name = f"x{i}_{j}"
            inputs[name] = shape
            x = rng.standard_normal(shape) * scale
            if op == "Round":  # exact halves: ties to even
                x.flat[::3] = np.round(x.flat[::3] * 2) / 2
            if op == "Sign":
                x.flat[::5] = 0.0
            feeds[name] = x.astype(np.float32)
            nodes.append(helper.make_node(op, [name], [f"y{i}_{j}"], name=f"{op}_{i}_{j}", **attrs))
    model = make_model(nodes, inputs, [n.output[0] for n in nodes], opset=20)
    return model, inferon.compile(model, tmp_path_factory.mktemp("act") / "act.so"), feeds


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_ops_match_onnxruntime(
    ops_case: tuple[onnx.ModelProto, Path, dict[str, np.ndarray]], isa: str, threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    model, library, feeds = ops_case
    monkeypatch.setenv("INFERON_ISA", isa)
    compiled = inferon.load(library, threads=threads)
    assert compiled.isa == isa
    got = compiled.run(feeds)
    want = run_onnxruntime(model, feeds)
    for node, ref in zip(model.graph.node, want, strict=True):
        out = got[node.output[0]]
        msg = f"{helper.printable_node(node)} {list(ref.shape)} ({isa}, {threads} threads)"
        assert out.shape == ref.shape, msg
        if node.op_type in ("Sign", "Round", "ThresholdedRelu"):
            np.testing.assert_array_equal(out, ref, err_msg=msg)
        else:
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6, err_msg=msg)


# ------------------------------------------------------------------------------------- PRelu
def _graph_after_fusion(model: onnx.ModelProto) -> list[Any]:
    module, weights = import_model(model)
    run_passes(make_context(weights), module, GRAPH_PASSES)
    return list(module.walk())


def _prelu_after_conv(slope: np.ndarray, c: int = 12) -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    init = {"w": rng.standard_normal((c, 3, 3, 3)) * 0.4, "b": rng.standard_normal(c) * 0.1, "slope": slope}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("PRelu", ["c", "slope"], ["y"], name="prelu"),
    ]
    return make_model(nodes, {"x": (1, 3, 13, 11)}, ["y"], init)


SLOPES: dict[str, np.ndarray] = {
    "per_channel": np.linspace(-0.3, 0.5, 12).reshape(12, 1, 1),
    "per_channel_4d": np.linspace(0.05, 0.6, 12).reshape(1, 12, 1, 1),
    "scalar": np.array([0.25]),
    "uniform_channels": np.full((12, 1, 1), 0.1),
    "last_axis": np.linspace(-1, 1, 11),
    "full": np.random.default_rng(1).standard_normal((12, 13, 11)),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("slope", list(SLOPES))
def test_prelu_after_conv(slope: str, isa: str, compile_and_load: Callable[..., inferon.CompiledModel],
                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    model = _prelu_after_conv(SLOPES[slope])
    ops = _graph_after_fusion(model)
    uniform = slope in ("scalar", "uniform_channels")
    # one slope value: a LeakyRelu fused into the conv; else a separate element-wise PRelu
    assert any(isinstance(op, graph.PReluOp) for op in ops) != uniform
    conv = next(op for op in ops if isinstance(op, graph.Conv2dOp))
    assert (conv.epilogue.activation == ActivationKind.LEAKY_RELU) == uniform
    monkeypatch.setenv("INFERON_ISA", isa)
    x = np.random.default_rng(0).standard_normal((1, 3, 13, 11)).astype(np.float32)
    got = compile_and_load(model).run({"x": x})["y"]
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_prelu_runtime_slope(isa: str, compile_and_load: Callable[..., inferon.CompiledModel],
                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A slope computed at run time (here a graph input, broadcast over H and W)."""
    model = make_model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": (2, 6, 5, 9), "s": (6, 1, 1)}, ["y"])
    monkeypatch.setenv("INFERON_ISA", isa)
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in [("x", (2, 6, 5, 9)), ("s", (6, 1, 1))]}
    got = compile_and_load(model).run(feeds)["y"]
    np.testing.assert_array_equal(got, run_onnxruntime(model, feeds)[0])


# ------------------------------------------------------------------------- MobileNetV3 block
def _mobilenet_v3_block() -> onnx.ModelProto:
    """Conv 1x1 expand -> HardSwish -> depthwise 3x3 (stride 2) + BN -> HardSwish -> SE (GlobalAveragePool,
    Conv, Relu, Conv, HardSigmoid, Mul) -> Conv 1x1 project, residual-free; 20 channels (not a multiple of 8)."""
    rng = np.random.default_rng(9)
    c_in, c_exp, c_se, c_out = 12, 20, 6, 16
    init = {
        "w_exp": rng.standard_normal((c_exp, c_in, 1, 1)) * 0.3, "b_exp": rng.standard_normal(c_exp) * 0.1,
        "w_dw": rng.standard_normal((c_exp, 1, 3, 3)) * 0.4,
        "bn_s": rng.random(c_exp) + 0.5, "bn_b": rng.standard_normal(c_exp) * 0.1,
        "bn_m": rng.standard_normal(c_exp) * 0.1, "bn_v": rng.random(c_exp) + 0.5,
        "w_se1": rng.standard_normal((c_se, c_exp, 1, 1)) * 0.3, "b_se1": rng.standard_normal(c_se) * 0.1,
        "w_se2": rng.standard_normal((c_exp, c_se, 1, 1)) * 0.3, "b_se2": rng.standard_normal(c_exp) * 0.1,
        "w_proj": rng.standard_normal((c_out, c_exp, 1, 1)) * 0.3, "b_proj": rng.standard_normal(c_out) * 0.1,
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w_exp", "b_exp"], ["e"], name="expand"),
        helper.make_node("HardSwish", ["e"], ["e_hs"], name="hs1"),
        helper.make_node("Conv", ["e_hs", "w_dw"], ["d"], group=c_exp, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2], name="dw"),
        helper.make_node("BatchNormalization", ["d", "bn_s", "bn_b", "bn_m", "bn_v"], ["d_bn"], name="bn"),
        helper.make_node("HardSwish", ["d_bn"], ["d_hs"], name="hs2"),
        helper.make_node("GlobalAveragePool", ["d_hs"], ["g"], name="se_pool"),
        helper.make_node("Conv", ["g", "w_se1", "b_se1"], ["s1"], name="se_fc1"),
        helper.make_node("Relu", ["s1"], ["s1r"], name="se_relu"),
        helper.make_node("Conv", ["s1r", "w_se2", "b_se2"], ["s2"], name="se_fc2"),
        helper.make_node("HardSigmoid", ["s2"], ["gate"], alpha=1 / 6, beta=0.5, name="se_gate"),
        helper.make_node("Mul", ["d_hs", "gate"], ["scaled"], name="se_mul"),
        helper.make_node("Conv", ["scaled", "w_proj", "b_proj"], ["y"], name="project"),
    ]  # fmt: skip
    return make_model(nodes, {"x": (1, c_in, 15, 17)}, ["y"], init, opset=14)


@pytest.mark.parametrize("isa", ISAS)
def test_mobilenet_v3_block(isa: str, compile_and_load: Callable[..., inferon.CompiledModel],
                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    model = _mobilenet_v3_block()
    ops = _graph_after_fusion(model)
    convs = [op for op in ops if isinstance(op, graph.Conv2dOp)]
    # both HardSwish fused: into the expand conv and into the depthwise conv (BN folded into it)
    assert [c.epilogue.activation for c in convs].count(ActivationKind.HARD_SWISH) == 2
    assert not any(isinstance(op, graph.HardSwishOp) for op in ops)
    monkeypatch.setenv("INFERON_ISA", isa)
    x = np.random.default_rng(1).standard_normal((1, 12, 15, 17)).astype(np.float32)
    compiled = compile_and_load(model)
    assert compiled.isa == isa
    np.testing.assert_allclose(compiled.run({"x": x})["y"], run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_hard_swish_fused_into_gemm_and_winograd(isa: str, compile_and_load: Callable[..., inferon.CompiledModel],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """HardSwish in the epilogue of a Winograd conv (3x3, 16 -> 16 channels) and of a Gemm."""
    monkeypatch.setenv("INFERON_ISA", isa)
    rng = np.random.default_rng(6)
    init = {"w": rng.standard_normal((16, 16, 3, 3)) * 0.2, "fc": rng.standard_normal((16 * 10 * 12, 10)) * 0.05}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"]),
        helper.make_node("Flatten", ["h"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("HardSwish", ["m"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 16, 10, 12)}, ["y", "h"], init, opset=14)
    assert not any(isinstance(op, graph.HardSwishOp) for op in _graph_after_fusion(model))
    x = rng.standard_normal((1, 16, 10, 12)).astype(np.float32) * 2
    got = compile_and_load(model).run({"x": x})
    for name, want in zip(["y", "h"], run_onnxruntime(model, {"x": x}), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ Swish / SiLU
def _silu_model(producer: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x -> producer -> Sigmoid + Mul (SiLU as PyTorch exports nn.SiLU) -> y; 20 channels / 19 columns."""
    rng = np.random.default_rng(12)
    init: dict[str, np.ndarray] = {}
    if producer == "conv":  # 3x3 conv (Winograd) with bias
        init = {"w": rng.standard_normal((20, 6, 3, 3)) * 0.3, "b": rng.standard_normal(20) * 0.2}
        first = helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])
    elif producer == "conv1x1":
        init = {"w": rng.standard_normal((20, 6, 1, 1)) * 0.5}
        first = helper.make_node("Conv", ["x", "w"], ["c"])
    elif producer == "depthwise":  # 5x5 depthwise, stride 2
        init = {"w": rng.standard_normal((6, 1, 5, 5)) * 0.3}
        first = helper.make_node("Conv", ["x", "w"], ["c"], group=6, pads=[2, 2, 2, 2], strides=[2, 2])
    elif producer == "winograd":  # 3x3 stride 1, 6 -> 6 channels on a 16-channel input: Winograd
        init = {"w": rng.standard_normal((16, 6, 3, 3)) * 0.2, "w2": rng.standard_normal((16, 16, 3, 3)) * 0.1}
        nodes0 = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1])]
        first = helper.make_node("Conv", ["h", "w2"], ["c"], pads=[1, 1, 1, 1])
    elif producer == "residual":  # 3x3 stride 1 read in place (implicit GEMM) + residual Add, then SiLU
        init = {"w": rng.standard_normal((6, 6, 3, 3)) * 0.2}
        nodes0 = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1])]
        first = helper.make_node("Add", ["h", "x"], ["c"])
    elif producer == "gemm":
        init = {"w": rng.standard_normal((6 * 11 * 13, 19)) * 0.05, "b": rng.standard_normal(19) * 0.1}
        flat = helper.make_node("Flatten", ["x"], ["f"])
        first = helper.make_node("Gemm", ["f", "w", "b"], ["c"])
    else:  # an Add of the input with itself: nothing to fuse into, a standalone swish
        first = helper.make_node("Add", ["x", "x"], ["c"])
    nodes = ([flat] if producer == "gemm" else []) + (nodes0 if producer in ("winograd", "residual") else []) + [
        first,
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"] if producer != "conv1x1" else ["s", "c"], ["y"]),
    ]
    x = (rng.standard_normal((1, 6, 11, 13)) * 3).astype(np.float32)
    return make_model(nodes, {"x": (1, 6, 11, 13)}, ["y"], init, opset=17), {"x": x}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("producer", ["conv", "conv1x1", "depthwise", "winograd", "residual", "gemm", "add"])
def test_silu_is_one_swish_fused_into_its_producer(
    producer: str, isa: str, compile_and_load: Callable[..., inferon.CompiledModel], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    model, feeds = _silu_model(producer)
    ops = _graph_after_fusion(model)
    assert not any(isinstance(op, (graph.SigmoidOp, graph.MulOp)) for op in ops)
    fused = [op for op in ops if isinstance(op, (graph.Conv2dOp, graph.MatMulOp))]
    if producer in ("winograd", "residual"):  # the first conv of two carries the swish / the residual
        fused = fused[-1:]
    if producer == "add":  # no producer to fuse into: one element-wise swish pass
        assert [type(op) for op in ops].count(graph.SwishOp) == 1 and not fused
    else:
        assert [op.epilogue.activation for op in fused] == [ActivationKind.SWISH]
        assert not any(isinstance(op, graph.SwishOp) for op in ops)
    monkeypatch.setenv("INFERON_ISA", isa)
    got = compile_and_load(model).run(feeds)["y"]
    np.testing.assert_allclose(got, run_onnxruntime(model, feeds)[0], rtol=1e-5, atol=1e-5)


def test_sigmoid_with_other_uses_is_kept(compile_and_load: Callable[..., inferon.CompiledModel]) -> None:
    """x * sigmoid(x) where the sigmoid is also an output: no swish (the sigmoid must be computed anyway),
    and x * sigmoid(z) of another tensor is the SE gate, not a swish."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"]),
        helper.make_node("Sigmoid", ["z"], ["g"]),
        helper.make_node("Mul", ["x", "g"], ["w"]),
    ]
    model = make_model(nodes, {"x": (2, 3, 9), "z": (2, 3, 9)}, ["y", "s", "w"], opset=17)
    ops = _graph_after_fusion(model)
    assert not any(isinstance(op, graph.SwishOp) for op in ops)
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal((2, 3, 9)).astype(np.float32) * 4 for n in ("x", "z")}
    got = compile_and_load(model).run(feeds)
    for name, want in zip(["y", "s", "w"], run_onnxruntime(model, feeds), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 1.702])
def test_onnx_swish_op(alpha: float, compile_and_load: Callable[..., inferon.CompiledModel]) -> None:
    """ONNX Swish (opset 24), checked against ONNX's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("Swish", ["x"], ["y"], alpha=alpha)
    model = make_model([node], {"x": (3, 37)}, ["y"], opset=24)
    x = (np.random.default_rng(4).standard_normal((3, 37)) * 5).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(compile_and_load(model).run({"x": x})["y"], want, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------ decomposed GELU
def _gelu_model(grouping: str, producer: bool) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x * 0.5 * (1 + erf(x / sqrt 2)) as exporters write it (`grouping` orders the products), after a
    MatMul + bias (fused into its epilogue) or on a graph input (a standalone gelu)."""
    rng = np.random.default_rng(21)
    init: dict[str, np.ndarray] = {
        "half": np.array(0.5), "one": np.array(1.0), "root2": np.array(np.sqrt(2.0)), "inv_root2": np.array(1 / np.sqrt(2.0)),
    }  # fmt: skip
    nodes = []
    x = "x"
    if producer:
        init |= {"w": rng.standard_normal((24, 37)) * 0.3, "b": rng.standard_normal(37) * 0.2}
        nodes += [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["h"])]
        x = "h"
    if grouping == "mul_inv_root2":
        nodes.append(helper.make_node("Mul", [x, "inv_root2"], ["z"]))
    else:
        nodes.append(helper.make_node("Div", [x, "root2"], ["z"]))
    nodes += [helper.make_node("Erf", ["z"], ["e"]), helper.make_node("Add", ["one", "e"], ["a"])]
    if grouping == "half_x_first":  # (x * 0.5) * (1 + erf)
        nodes += [helper.make_node("Mul", [x, "half"], ["hx"]), helper.make_node("Mul", ["hx", "a"], ["y"])]
    elif grouping == "half_last":  # ((1 + erf) * 0.5) * x
        nodes += [helper.make_node("Mul", ["a", "half"], ["ah"]), helper.make_node("Mul", [x, "ah"], ["y"])]
    else:  # (x * (1 + erf)) * 0.5, as torch.nn.GELU exports at opset < 20
        nodes += [helper.make_node("Mul", [x, "a"], ["xa"]), helper.make_node("Mul", ["xa", "half"], ["y"])]
    shape = (5, 24) if producer else (5, 37)
    feeds = {"x": (rng.standard_normal(shape) * 3).astype(np.float32)}
    return make_model(nodes, {"x": shape}, ["y"], init, opset=17), feeds


@pytest.mark.parametrize("producer", [True, False], ids=["matmul", "input"])
@pytest.mark.parametrize("grouping", ["torch", "half_x_first", "half_last", "mul_inv_root2"])
def test_decomposed_gelu_is_one_gelu(grouping: str, producer: bool,
                                     compile_and_load: Callable[..., inferon.CompiledModel]) -> None:  # fmt: skip
    model, feeds = _gelu_model(grouping, producer)
    ops = _graph_after_fusion(model)
    assert not any(isinstance(op, (graph.ErfOp, graph.DivOp, graph.MulOp, graph.AddOp)) for op in ops)
    if producer:
        assert [op.epilogue.activation for op in ops if isinstance(op, graph.MatMulOp)] == [ActivationKind.GELU]
    else:
        assert [type(op) for op in ops].count(graph.GeluOp) == 1
    got = compile_and_load(model).run(feeds)["y"]
    np.testing.assert_allclose(got, run_onnxruntime(model, feeds)[0], rtol=1e-5, atol=1e-6)


def test_gelu_lookalikes_are_left_alone(compile_and_load: Callable[..., inferon.CompiledModel]) -> None:
    """Wrong constants (erf(x / 2), + 2) or an intermediate that is also an output: nothing is rewritten."""
    init = {"half": np.array(0.5), "one": np.array(1.0), "two": np.array(2.0), "root2": np.array(np.sqrt(2.0))}
    nodes = [
        helper.make_node("Div", ["x", "two"], ["z1"]), helper.make_node("Erf", ["z1"], ["e1"]),
        helper.make_node("Add", ["e1", "one"], ["a1"]), helper.make_node("Mul", ["x", "a1"], ["m1"]),
        helper.make_node("Mul", ["m1", "half"], ["y1"]),
        helper.make_node("Div", ["x", "root2"], ["z2"]), helper.make_node("Erf", ["z2"], ["e2"]),
        helper.make_node("Add", ["e2", "two"], ["a2"]), helper.make_node("Mul", ["x", "a2"], ["m2"]),
        helper.make_node("Mul", ["m2", "half"], ["y2"]),
        helper.make_node("Div", ["x", "root2"], ["z3"]), helper.make_node("Erf", ["z3"], ["e3"]),
        helper.make_node("Add", ["e3", "one"], ["a3"]), helper.make_node("Mul", ["x", "a3"], ["m3"]),
        helper.make_node("Mul", ["m3", "half"], ["y3"]),
    ]  # fmt: skip
    model = make_model(nodes, {"x": (4, 9)}, ["y1", "y2", "y3", "e3"], init, opset=17)
    assert not any(isinstance(op, graph.GeluOp) for op in _graph_after_fusion(model))
    feeds = {"x": (np.random.default_rng(2).standard_normal((4, 9)) * 2).astype(np.float32)}
    got = compile_and_load(model).run(feeds)
    for name, want in zip(["y1", "y2", "y3", "e3"], run_onnxruntime(model, feeds), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("node", "inputs", "inits", "message"),
    [
        (helper.make_node("Gelu", ["x"], ["y"], approximate="fast", name="g"), {"x": (2, 3)}, {},
         "approximate must be 'none' or 'tanh'"),
        (helper.make_node("Celu", ["x"], ["y"], alpha=0.0, name="g"), {"x": (2, 3)}, {}, "alpha must not be 0"),
        (helper.make_node("PRelu", ["x", "s"], ["y"], name="g"), {"x": (1, 4, 3, 3)}, {"s": np.ones(4)},
         "does not broadcast to the input shape"),
        (helper.make_node("PRelu", ["x", "s"], ["y"], name="g"), {"x": (1, 4, 3, 3)}, {"s": np.ones((2, 4, 3, 3))},
         "does not broadcast to the input shape"),
    ],
)  # fmt: skip
def test_invalid_attributes_are_named(node: onnx.NodeProto, inputs: dict[str, tuple[int, ...]],
                                      inits: dict[str, np.ndarray], message: str) -> None:  # fmt: skip
    model = make_model([node], inputs, ["y"], inits, opset=20)
    with pytest.raises(ModelImportError, match=message) as info:
        import_model(model)
    assert node.op_type in str(info.value) and "g" in str(info.value)
