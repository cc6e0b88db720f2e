"""ConvTranspose (1-D and 2-D): import (auto_pad, output_shape, output_padding), the GEMM + `loop.col2im`
lowering and its kernel, and the numpy reference, against ONNX Runtime.

Every configuration is one ConvTranspose (plus a fused Add / activation) on its own input inside a
single ONNX model, so the module costs one C++ build. The model runs with the AVX2 kernels and with
INFERON_ISA=scalar, with 1 and 2 threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon
from inferon.errors import ModelImportError, UnsupportedError
from inferon.frontend.onnx.importer import import_model
from inferon.ir import interpreter
from inferon.ir.context import make_context
from inferon.ir.dialects import loop
from inferon.ir.dialects.graph import ints
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_model, random_feeds


@dataclass(frozen=True)
class Case:
    c_in: int
    c_out: int
    size: tuple[int, ...]  # spatial input size: (H, W), or (L,) for 1-D
    k: tuple[int, ...] = (3, 3)
    strides: tuple[int, ...] | None = None
    pads: tuple[int, ...] | None = None
    output_padding: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    group: int = 1
    bias: bool = True
    auto_pad: str | None = None
    output_shape: tuple[int, ...] | None = None
    kernel_shape_attr: bool = False
    act: str | None = None  # Relu, LeakyRelu, Sigmoid, Clip
    residual: bool = False
    n: int = 1


CASES = [
    # stride 1, 2, 3 with kernels 2, 3, 4 and pads
    Case(3, 5, (6, 7), pads=(1, 1, 1, 1)),
    Case(16, 8, (8, 8), k=(2, 2), strides=(2, 2), kernel_shape_attr=True),  # U-Net up-sampling
    Case(12, 20, (7, 9), k=(2, 2), strides=(2, 2), act="Relu"),  # channels not multiples of 8
    Case(8, 4, (5, 5), k=(4, 4), strides=(2, 2), pads=(1, 1, 1, 1), act="Relu"),  # DCGAN generator block
    Case(6, 3, (8, 8), k=(4, 4), strides=(2, 2), pads=(1, 1, 1, 1), act="Sigmoid", bias=False),
    Case(3, 2, (4, 5), strides=(3, 3)),
    Case(5, 3, (4, 6), k=(2, 2), strides=(3, 3), output_padding=(2, 1)),
    Case(10, 6, (7, 7), strides=(2, 2), pads=(1, 1, 1, 1), output_padding=(1, 1), act="LeakyRelu"),
    Case(4, 9, (12, 20), k=(2, 2), strides=(2, 2), residual=True, act="Relu"),  # 40 columns: 16-wide AVX2 path
    Case(3, 4, (5, 19), strides=(1, 1), pads=(0, 2, 1, 0), act="Clip"),
    Case(4, 3, (5, 6), k=(2, 3), strides=(1, 2), pads=(1, 0, 0, 2)),
    # dilation 2
    Case(4, 3, (6, 6), dilations=(2, 2)),
    Case(3, 5, (5, 7), strides=(2, 2), dilations=(2, 2), pads=(1, 2, 2, 1), output_padding=(1, 1)),
    # groups, depthwise (group == C_in), channel multiplier
    Case(4, 6, (5, 5), group=2),
    Case(6, 9, (4, 5), strides=(2, 2), pads=(1, 1, 0, 0), group=3, bias=False),
    Case(8, 8, (6, 6), k=(4, 4), strides=(2, 2), pads=(1, 1, 1, 1), group=8),
    Case(4, 8, (5, 7), k=(2, 2), strides=(2, 2), group=4, act="Relu"),
    # output_shape (pads follow from it) and every auto_pad
    Case(3, 4, (5, 5), strides=(2, 2), output_shape=(10, 9)),
    Case(3, 4, (5, 5), strides=(2, 2), output_shape=(12, 11)),  # beyond the full output (up to stride - 1)
    Case(3, 4, (5, 5), strides=(2, 2), output_shape=(10, 10), auto_pad="SAME_UPPER"),
    Case(3, 4, (5, 5), strides=(2, 2), output_shape=(10, 10), auto_pad="SAME_LOWER"),
    Case(3, 4, (5, 5), strides=(3, 2), output_shape=(12, 8), pads=(1, 1, 1, 1)),  # pads ignored
    Case(3, 4, (5, 6), strides=(2, 2), auto_pad="SAME_UPPER"),
    Case(3, 4, (5, 6), strides=(2, 2), auto_pad="SAME_LOWER"),
    Case(3, 4, (5, 6), k=(2, 2), auto_pad="SAME_UPPER"),
    Case(3, 4, (5, 6), k=(4, 4), auto_pad="SAME_LOWER", act="Relu"),
    Case(3, 4, (5, 6), k=(1, 1), strides=(3, 3), auto_pad="SAME_UPPER"),  # total padding < 0: clamped to 0
    Case(3, 4, (5, 6), strides=(2, 2), auto_pad="VALID"),
    # 1x1 (stride 1: a GEMM straight into the output; stride 2: outputs no tap reaches get the bias)
    Case(6, 10, (5, 5), k=(1, 1), residual=True, act="Relu"),
    Case(6, 10, (5, 5), k=(1, 1), strides=(2, 2), output_padding=(1, 1)),
    # batch 2
    Case(5, 7, (4, 6), k=(2, 2), strides=(2, 2), n=2, residual=True),
    Case(4, 6, (3, 4), strides=(2, 2), pads=(1, 1, 1, 1), group=2, n=2, act="Relu"),
    # 1-D
    Case(3, 5, (9,), k=(4,), strides=(2,), pads=(1, 1)),
    Case(4, 6, (7,), k=(3,), strides=(3,), output_padding=(2,), group=2, act="Relu"),
    Case(4, 4, (10,), k=(3,), strides=(2,), auto_pad="SAME_UPPER", residual=True),
    Case(2, 3, (8,), k=(5,), dilations=(2,), pads=(2, 3), bias=False),
]


def _attrs(c: Case) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for name in ("strides", "pads", "output_padding", "dilations", "output_shape"):
        value = getattr(c, name)
        if value is not None:
            attrs[name] = list(value)
    if c.group != 1:
        attrs["group"] = c.group
    if c.auto_pad:
        attrs["auto_pad"] = c.auto_pad
    if c.kernel_shape_attr:
        attrs["kernel_shape"] = list(c.k)
    return attrs


def output_shape(c: Case) -> tuple[int, ...]:
    """The ConvTranspose's output shape, from ONNX shape inference."""
    model = make_model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], **_attrs(c))], {"x": (c.n, c.c_in, *c.size)}, ["y"],
        {"w": np.zeros((c.c_in, c.c_out // c.group, *c.k))},
    )  # fmt: skip
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return tuple(d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim)


def build_model(cases: list[Case]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, init = [], {}, [], {}
    for i, c in enumerate(cases):
        inputs[f"x{i}"] = (c.n, c.c_in, *c.size)
        init[f"w{i}"] = rng.standard_normal((c.c_in, c.c_out // c.group, *c.k)) * 0.5
        ins = [f"x{i}", f"w{i}"]
        if c.bias:
            init[f"b{i}"] = rng.standard_normal(c.c_out) * 0.5
            ins.append(f"b{i}")
        nodes.append(helper.make_node("ConvTranspose", ins, [f"c{i}"], name=f"convt{i}", **_attrs(c)))
        last = f"c{i}"
        if c.residual:
            inputs[f"r{i}"] = output_shape(c)
            nodes.append(helper.make_node("Add", [last, f"r{i}"], [f"a{i}"]))
            last = f"a{i}"
        if c.act == "Clip":
            init[f"lo{i}"], init[f"hi{i}"] = np.float32(-0.5), np.float32(1.0)
            nodes.append(helper.make_node("Clip", [last, f"lo{i}", f"hi{i}"], [f"y{i}"]))
        elif c.act == "LeakyRelu":
            nodes.append(helper.make_node("LeakyRelu", [last], [f"y{i}"], alpha=0.2))
        elif c.act:
            nodes.append(helper.make_node(c.act, [last], [f"y{i}"]))
        else:
            nodes.append(helper.make_node("Identity", [last], [f"y{i}"]))
        outputs.append(f"y{i}")
    return make_model(nodes, inputs, outputs, init)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_model(CASES)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_transpose_matches_onnxruntime(
    library: Path,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    isa: str,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERON_ISA", isa)
    compiled = inferon.load(library, threads=threads)
    if isa == "avx2" and compiled.isa == "scalar":
        pytest.skip("no AVX2/FMA on this machine")
    assert compiled.isa == isa
    got = compiled.run(feeds)
    for i, (case, want) in enumerate(zip(CASES, expected, strict=True)):
        assert got[f"y{i}"].shape == want.shape, case
        np.testing.assert_allclose(got[f"y{i}"], want, rtol=1e-4, atol=1e-5, err_msg=f"{case} ({isa})")


def test_reference_interpreter_matches_onnxruntime(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], expected: list[np.ndarray]
) -> None:
    module, weights = import_model(model)
    names = [v.name for v in model.graph.input]
    got = interpreter.run(module, weights, [feeds[name] for name in names])
    for case, g, want in zip(CASES, got, expected, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5, err_msg=str(case))


def test_lowering_is_gemm_then_col2im(model: onnx.ModelProto) -> None:
    """Each transposed conv is one GEMM over (image, group) with M = C_out/g * kh * kw, N = H * W,
    K = C_in/g -- a 2x2 stride-2 one computes no product with a zero -- then a col2im with the
    fused epilogue; a 1x1 stride-1 one is only the GEMM, straight into the output."""
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["fold-constants", "fuse-epilogue", "convert-graph-to-loop"])
    gemms = [op for op in module.walk() if isinstance(op, loop.MatMulOp)]
    col2ims = [op for op in module.walk() if isinstance(op, loop.Col2ImOp)]
    assert len(gemms) == len(CASES)
    assert len(col2ims) == len(CASES) - 1
    unet = CASES[1]
    assert ints(gemms[1].dims) == (unet.c_out * 4, unet.size[0] * unet.size[1], unet.c_in)
    assert ints(gemms[1].batch) == (1, 1)
    depthwise = CASES[15]  # group == C_in = 8: eight GEMMs of 16 x 36 x 1
    assert depthwise.group == depthwise.c_in and ints(gemms[15].batch) == (1, 8)
    assert ints(gemms[15].dims) == (16, 36, 1)
    fused = [op for op in col2ims if op.residual is not None]
    # the 1x1 one fuses into its GEMM; a 1-D one's Add follows the reshape back to [N, C, L]
    assert len(fused) == sum(c.residual and len(c.size) == 2 for c in CASES) - 1
    relu = CASES.index(Case(6, 10, (5, 5), k=(1, 1), residual=True, act="Relu"))
    assert gemms[relu].residual is not None and gemms[relu].bias is not None


def test_unet_decoder_block(compile_and_load: object) -> None:
    """ConvTranspose 2x2 s2 -> Concat with the skip connection -> Conv 3x3 -> ReLU."""
    rng = np.random.default_rng(3)
    init = {
        "wt": rng.standard_normal((32, 16, 2, 2)) * 0.3, "bt": rng.standard_normal(16) * 0.1,
        "wc": rng.standard_normal((16, 28, 3, 3)) * 0.2, "bc": rng.standard_normal(16) * 0.1,
    }  # fmt: skip
    nodes = [
        helper.make_node("ConvTranspose", ["x", "wt", "bt"], ["up"], kernel_shape=[2, 2], strides=[2, 2], name="up"),
        helper.make_node("Concat", ["up", "skip"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wc", "bc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 32, 9, 11), "skip": (1, 12, 18, 22)}, ["y"], init)
    feeds = random_feeds(model, seed=4)
    got = compile_and_load(model).run(feeds)["y"]  # type: ignore[operator]
    want = run_onnxruntime(model, feeds)[0]
    # the 3x3 conv runs as Winograd F(4x4), which rounds more (test_winograd: <= 2e-5 of the scale)
    assert float(np.abs(got - want).max()) <= 2e-5 * float(np.abs(want).max())


def test_dequantized_weight(compile_and_load: object) -> None:
    """A QDQ model's weight (DequantizeLinear of int8 constants) is a compile-time constant too."""
    rng = np.random.default_rng(5)
    wq = rng.integers(-100, 100, (6, 4, 2, 2)).astype(np.int8)
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
            helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2]),
        ],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array((rng.random(6) * 0.02).astype(np.float32), "ws")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = random_feeds(model, seed=6)
    got = compile_and_load(model).run(feeds)["y"]  # type: ignore[operator]
    np.testing.assert_allclose(got, run_onnxruntime(model, feeds)[0], rtol=1e-4, atol=1e-5)


def _single(attrs: dict[str, object], x: tuple[int, ...], w: tuple[int, ...] | None, bias: int | None = None) -> onnx.ModelProto:
    init = {} if w is None else {"w": np.ones(w, np.float32)}
    inputs = {"x": x} if w is not None else {"x": x, "w": (x[1], 2, 3, 3)}
    ins = ["x", "w"]
    if bias is not None:
        init["b"] = np.ones(bias, np.float32)
        ins.append("b")
    return make_model([helper.make_node("ConvTranspose", ins, ["y"], name="ct", **attrs)], inputs, ["y"], init)


@pytest.mark.parametrize(
    ("model", "error", "pattern"),
    [
        (_single({}, (1, 4, 5, 5), (3, 2, 3, 3)), ModelImportError,
         r"node 'ct', op ConvTranspose.*weight \[3, 2, 3, 3\] must be \[C_in = 4"),
        (_single({"group": 3}, (1, 4, 5, 5), (4, 2, 3, 3)), ModelImportError, r"node 'ct'.*divisible by group 3"),
        (_single({"kernel_shape": [2, 2]}, (1, 4, 5, 5), (4, 2, 3, 3)), ModelImportError,
         r"node 'ct'.*kernel_shape \[2, 2\] does not match the weight shape"),
        (_single({}, (1, 4, 5, 5), (4, 2, 3)), ModelImportError, r"node 'ct'.*weight rank 3 differs"),
        (_single({}, (1, 4, 5, 5), (4, 2, 3, 3), bias=3), ModelImportError, r"node 'ct'.*bias shape \[3\] is not \[2\]"),
        (_single({}, (1, 4, 5, 5), None), UnsupportedError,
         r"node 'ct', op ConvTranspose.*weight \('w'\) must be a compile-time constant"),
        (_single({}, (1, 4, 5, 5, 5), (4, 2, 3, 3, 3)), UnsupportedError, r"node 'ct'.*3 spatial dimensions"),
        (_single({"strides": [2, 2], "output_shape": [13, 13]}, (1, 4, 5, 5), (4, 2, 3, 3)), ModelImportError,
         r"node 'ct'.*output_shape \[13, 13\] is inconsistent.*full output is 11"),
        (_single({"strides": [2, 2], "output_padding": [2, 0]}, (1, 4, 5, 5), (4, 2, 3, 3)), ModelImportError,
         r"node 'ct'.*output_padding \[2, 0\] must be less than max\(stride, dilation\)"),
        (_single({"pads": [3, 3, 3, 3]}, (1, 4, 2, 2), (4, 2, 3, 3)), ModelImportError, r"node 'ct'.*output would be empty"),
        (_single({"auto_pad": "SAME"}, (1, 4, 5, 5), (4, 2, 3, 3)), ModelImportError, r"node 'ct'.*unknown auto_pad 'SAME'"),
    ],
)  # fmt: skip
def test_errors_name_the_node(model: onnx.ModelProto, error: type[Exception], pattern: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=pattern):
        inferon.compile(model, tmp_path / "m.so")


def _onnx_backend_cases(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """ONNX's ConvTranspose node test cases, generated alone (collect_testcases would build all ~1900)."""
    import onnx.backend.test.case.node as node_cases
    from onnx.backend.test.case.node.convtranspose import ConvTranspose

    monkeypatch.setattr(node_cases, "_NodeTestCases", [])  # `expect` appends each case here,
    monkeypatch.setattr(node_cases, "_existing_names", {})  # and refuses names it has seen
    for name in dir(ConvTranspose):
        if name.startswith("export"):
            getattr(ConvTranspose, name)()
    return list(node_cases._NodeTestCases)


def test_onnx_backend_cases_with_constant_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX's own ConvTranspose node test cases (test_conformance.py runs them as they are, with the
    weight a graph input, which is unsupported), here with the weight made an initializer, against
    their reference outputs at the backend runner's tolerances."""
    cases = [c for c in _onnx_backend_cases(monkeypatch) if "3d" not in c.name]  # type: ignore[attr-defined]
    assert len(cases) >= 10
    nodes, inputs, init, feeds, expected = [], {}, {}, {}, []
    for i, case in enumerate(cases):
        node = case.model.graph.node[0]
        for k, (ins, outs) in enumerate(case.data_sets):
            tag = f"{i}_{k}"
            names = [f"x{tag}", f"w{tag}"]
            inputs[names[0]], feeds[names[0]], init[names[1]] = ins[0].shape, ins[0], ins[1]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append(helper.make_node("ConvTranspose", names, [f"y{tag}"], **attrs))
            expected.append((case, f"y{tag}", outs[0]))
    model = make_model(nodes, inputs, [name for _, name, _ in expected], init)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so")).run(feeds)
    for case, name, want in expected:
        np.testing.assert_allclose(got[name], want, rtol=case.rtol, atol=case.atol, err_msg=case.name)
