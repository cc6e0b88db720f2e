"""ArgMax / ArgMin (int64 indices) against ONNX Runtime: every axis (negative too), keepdims,
select_last_index, ties and NaNs, with the AVX2 and the scalar kernels; a conv -> argmax
segmentation head, ArgMax -> Cast to float, quantized inputs, and the errors. Each test compiles one
model holding many nodes."""

from __future__ import annotations

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
from inferon.ir.dialects import graph
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import use_isa

X_SHAPE = (2, 5, 7, 19)  # inner 19 / 133 / 665: AVX2 column blocks and scalar tails; rows of 19
ROWS_SHAPE = (3, 70)  # contiguous rows: 8 lanes, combined, then a tail of 6


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[tuple[int, ...], int]], outputs: dict[str, int],
           opset: int, inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:  # fmt: skip
    graph = helper.make_graph(
        nodes, "argmax",
        [helper.make_tensor_value_info(n, t, list(s)) for n, (s, t) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _arg_nodes(opset: int) -> list[onnx.NodeProto]:
    """ArgMax / ArgMin of x over every axis (negative ones from opset 11), keepdims 0 / 1,
    select_last_index 0 / 1 (from opset 12), and over the contiguous rows of r."""
    axes = [0, 1, 2, 3] + ([-1, -3] if opset >= 11 else [])
    lasts = [0, 1] if opset >= 12 else [None]
    nodes = []
    for op in ("ArgMax", "ArgMin"):
        for axis in axes:
            for keep in (0, 1):
                for last in lasts:
                    attrs = {"axis": axis, "keepdims": keep, **({"select_last_index": last} if last is not None else {})}
                    nodes.append(helper.make_node(op, ["x"], [f"{op}_{axis}_{keep}_{last}"], **attrs))
        for last in lasts:
            attrs = {"axis": 1, **({"select_last_index": last} if last is not None else {})}
            nodes.append(helper.make_node(op, ["r"], [f"{op}_rows_{last}"], **attrs))
    return nodes


def _feeds(seed: int, nans: bool) -> dict[str, np.ndarray]:
    """Small integers (ties everywhere), or normals; with NaNs sprinkled in, some first along an axis."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in (("x", X_SHAPE), ("r", ROWS_SHAPE)):
        v = (rng.integers(-3, 4, size=shape) if nans else rng.standard_normal(shape)).astype(np.float32)
        if nans:
            v[rng.random(shape) < 0.1] = np.nan
            v[0] = np.nan  # the first element along axis 0, and whole first rows of r
        feeds[name] = v
    return feeds


def _arg_ops_after_fold_qdq(model: onnx.ModelProto) -> list[graph.ArgReduceOp]:
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["remove-identities", "fold-qdq", "fold-constants"])
    assert not any(isinstance(op, graph.DequantizeOp) for op in module.walk())
    return [op for op in module.walk() if isinstance(op, graph.ArgReduceOp)]


def _check(library: Path, model: onnx.ModelProto, feeds: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch,
           isas: tuple[tuple[str, int], ...] = (("avx2", 1), ("scalar", 1), ("avx2", 2))) -> None:  # fmt: skip
    want = dict(zip([o.name for o in model.graph.output], run_onnxruntime(model, feeds)))
    for isa, threads in isas:
        use_isa(monkeypatch, isa)
        got = inferon.load(library, threads=threads).run(feeds)
        for name, ref in want.items():
            assert got[name].dtype == ref.dtype and got[name].shape == ref.shape, name
            np.testing.assert_array_equal(got[name], ref, err_msg=f"{name} ({isa}, {threads} threads)")


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_arg_reduce_matches_onnxruntime(tmp_path: Path, opset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = _arg_nodes(opset)
    model = _model(nodes, {"x": (X_SHAPE, TensorProto.FLOAT), "r": (ROWS_SHAPE, TensorProto.FLOAT)},
                   {n.output[0]: TensorProto.INT64 for n in nodes}, opset)  # fmt: skip
    library = inferon.compile(model, tmp_path / "m.so")
    for seed, nans in ((opset, False), (opset + 1, True)):
        _check(library, model, _feeds(seed, nans), monkeypatch)


def test_large_inputs_split_across_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs big enough for two threads: channel argmax in column blocks (the last one partial),
    and many long rows; Identity -> Cast to float of one of them."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["c"], axis=1, keepdims=0),
        helper.make_node("ArgMin", ["x"], ["c_last"], axis=1, select_last_index=1),
        helper.make_node("ArgMax", ["r"], ["rows"], axis=-1),
        helper.make_node("Identity", ["rows"], ["rows_id"]),
        helper.make_node("Cast", ["rows_id"], ["rows_f"], to=TensorProto.FLOAT),
    ]
    inputs = {"x": ((1, 21, 64, 100), TensorProto.FLOAT), "r": ((300, 501), TensorProto.FLOAT)}
    outputs = {"c": TensorProto.INT64, "c_last": TensorProto.INT64, "rows": TensorProto.INT64, "rows_f": TensorProto.FLOAT}
    model = _model(nodes, inputs, outputs, 13)
    rng = np.random.default_rng(8)
    feeds = {"x": rng.standard_normal((1, 21, 64, 100)).astype(np.float32),
             "r": rng.integers(-50, 50, size=(300, 501)).astype(np.float32)}  # fmt: skip
    _check(inferon.compile(model, tmp_path / "m.so"), model, feeds, monkeypatch, (("avx2", 2), ("scalar", 2)))


def test_interpreter_matches_onnxruntime() -> None:
    """The graph interpreter (the constant folder's and the tests' oracle) computes the same indices."""
    nodes = _arg_nodes(13)
    model = _model(nodes, {"x": (X_SHAPE, TensorProto.FLOAT), "r": (ROWS_SHAPE, TensorProto.FLOAT)},
                   {n.output[0]: TensorProto.INT64 for n in nodes}, 13)  # fmt: skip
    feeds = _feeds(5, nans=True)
    module, store = import_model(model)
    got = interpreter.run(module, store, [feeds["x"], feeds["r"]])
    for g, ref in zip(got, run_onnxruntime(model, feeds), strict=True):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, ref)


def _segmentation_model(classes: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv 3x3 + ReLU, 1x1 conv to `classes` logits, ArgMax over the channels ([N, H, W] int64),
    the logits as an output too, and the labels cast to float and scaled."""
    rng = np.random.default_rng(3)
    inits = {
        "w1": (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(16) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((classes, 16, 1, 1)) * 0.3).astype(np.float32),
        "b2": (rng.standard_normal(classes) * 0.1).astype(np.float32),
        "half": np.array([0.5], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["logits"], name="classifier"),
        helper.make_node("ArgMax", ["logits"], ["labels"], axis=1, keepdims=0, name="argmax"),
        helper.make_node("Cast", ["labels"], ["labels_f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["labels_f", "half"], ["scaled"], name="scale"),
    ]
    outputs = {"labels": TensorProto.INT64, "logits": TensorProto.FLOAT, "scaled": TensorProto.FLOAT}
    return _model(nodes, {"x": ((2, 3, 24, 20), TensorProto.FLOAT)}, outputs, 13, inits), inits


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_segmentation_head(tmp_path: Path, isa: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """conv -> argmax over channels: the labels are ONNX Runtime's except at near-ties of the logits
    (the two convolutions round differently), and the Cast -> Mul reads them as floats."""
    use_isa(monkeypatch, isa)
    model, _ = _segmentation_model(classes=21)
    x = np.random.default_rng(4).standard_normal((2, 3, 24, 20)).astype(np.float32)
    compiled = inferon.load(inferon.compile(model, tmp_path / "seg.so"))
    got = compiled.run({"x": x})
    labels, logits, scaled = run_onnxruntime(model, {"x": x})
    assert got["labels"].dtype == np.int64 and got["labels"].shape == (2, 24, 20)
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got["labels"][clear], labels[clear])
    np.testing.assert_array_equal(got["labels"], np.argmax(got["logits"], axis=1))  # on its own logits: exact
    assert got["scaled"].dtype == np.float32
    np.testing.assert_array_equal(got["scaled"], got["labels"].astype(np.float32) * 0.5)
    np.testing.assert_allclose(got["scaled"][clear], scaled[clear])


def test_cast_only_is_float_indices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ArgMin -> Cast(FLOAT) alone computes the indices as floats (no int64 buffer is left);
    Cast to INT64 is the indices themselves."""
    nodes = [
        helper.make_node("ArgMin", ["x"], ["i"], axis=-1, select_last_index=1),
        helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ArgMax", ["x"], ["j"], axis=0, keepdims=0),
        helper.make_node("Cast", ["j"], ["k"], to=TensorProto.INT64),
    ]
    model = _model(nodes, {"x": ((6, 40), TensorProto.FLOAT)}, {"f": TensorProto.FLOAT, "k": TensorProto.INT64}, 13)
    x = np.random.default_rng(6).integers(-2, 3, size=(6, 40)).astype(np.float32)
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["remove-identities", "fold-qdq"])
    args = [op for op in module.walk() if isinstance(op, graph.ArgReduceOp)]
    assert [graph.is_index(op.output) for op in args] == [False, True]  # the int64 ArgMin died
    _check(inferon.compile(model, tmp_path / "m.so"), model, {"x": x}, monkeypatch)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantized_inputs(tmp_path: Path, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """ArgMax of a uint8 / int8 graph input compares its integers; ArgMin of DequantizeLinear(x)
    (positive scale) too: fold-qdq drops the dequantize."""
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    zp = np.array(7 if dtype == np.uint8 else -3, dtype)
    nodes = [
        helper.make_node("ArgMax", ["q"], ["a"], axis=1),
        helper.make_node("ArgMax", ["q"], ["b"], axis=-1, keepdims=0, select_last_index=1),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"]),
        helper.make_node("ArgMin", ["d"], ["c"], axis=2),
    ]
    outputs = {"a": TensorProto.INT64, "b": TensorProto.INT64, "c": TensorProto.INT64}
    model = _model(nodes, {"q": ((2, 9, 33), elem)}, outputs, 13, {"s": np.array(0.05, np.float32), "zp": zp})
    args = _arg_ops_after_fold_qdq(model)
    assert len(args) == 3 and all(graph.quant_of(op.input) is not None for op in args)
    info = np.iinfo(dtype)
    q = np.random.default_rng(7).integers(info.min, info.max + 1, size=(2, 9, 33)).astype(dtype)
    library = inferon.compile(model, tmp_path / "m.so")
    _check(library, model, {"q": q}, monkeypatch, (("avx2", 1), ("scalar", 1)))


def test_bad_axis_is_a_clear_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("ArgMax", ["x"], ["y"], axis=4, name="head_argmax")]
    model = _model(nodes, {"x": ((1, 3, 4, 4), TensorProto.FLOAT)}, {"y": TensorProto.INT64}, 13)
    with pytest.raises(ModelImportError, match=r"head_argmax.*axis 4 is out of range for the rank-4 input"):
        inferon.compile(model, tmp_path / "m.so")


def test_int64_consumers_are_unsupported(tmp_path: Path) -> None:
    """Only Cast (to FLOAT / INT64), Identity, Shape / Size and graph outputs read int64 indices; other
    ops name the node."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["y"], axis=1),
        helper.make_node("Relu", ["y"], ["z"], name="relu_of_indices"),
    ]
    model = _model(nodes, {"x": ((1, 3, 4, 4), TensorProto.FLOAT)}, {"z": TensorProto.INT64}, 13)
    with pytest.raises(UnsupportedError, match=r"relu_of_indices.*'y' is an int64 tensor"):
        inferon.compile(model, tmp_path / "m.so")
    nodes[1] = helper.make_node("Cast", ["y"], ["z"], to=TensorProto.INT32, name="cast_i32")
    model = _model(nodes, {"x": ((1, 3, 4, 4), TensorProto.FLOAT)}, {"z": TensorProto.INT32}, 13)
    with pytest.raises(UnsupportedError, match=r"cast_i32.*int64 tensor to INT32"):
        inferon.compile(model, tmp_path / "m.so")


def test_arg_reduce_ir_round_trip_and_verifier() -> None:
    """graph.arg_reduce prints and parses back with its i64 result; the verifier rejects other kinds
    and result shapes."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.ir import Block, Region
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import VerifyException

    from inferon.ir.attrs import ReduceKind
    from inferon.ir.dialects.graph import tensor_type

    block = Block(arg_types=[tensor_type((2, 5, 3))])
    op = graph.ArgReduceOp(block.args[0], ReduceKind.MIN, 1, True, False)
    block.add_ops([op, func.ReturnOp(op.output)])
    module = ModuleOp([func.FuncOp("main", ([tensor_type((2, 5, 3))], [op.output.type]), Region(block))])
    module.verify()
    text = str(module)
    assert "tensor<2x3xi64>" in text and "select_last = true" in text
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert str(parsed) == text
    bad_kind = graph.ArgReduceOp(block.args[0], ReduceKind.SUM, 1, False, True)
    with pytest.raises(VerifyException, match="kind must be max or min"):
        bad_kind.verify()
    bad_shape = graph.ArgReduceOp.create(operands=[block.args[0]], properties=dict(op.properties),
                                         result_types=[tensor_type((2, 5), op.output.type.element_type)])  # fmt: skip
    with pytest.raises(VerifyException, match="is not input"):
        bad_shape.verify()
