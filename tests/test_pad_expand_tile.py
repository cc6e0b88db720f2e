"""Pad in every mode on any axes (negative pads crop), Expand, Tile and GatherND with constant
shapes / repeats / indices: checked against ONNX Runtime (ONNX's reference where ORT rejects a valid
case); clear errors for run-time inputs, naming the node."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import inferon
from inferon.errors import ModelImportError, UnsupportedError
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_typed_model

RNG = np.random.default_rng(11)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _model(
    nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: Sequence[str],
    inits: dict[str, np.ndarray] | None = None, opset: int = 19,
) -> onnx.ModelProto:
    return make_typed_model(nodes, inputs, list(outputs), inits, opset)


def _compare(tmp_path, model: onnx.ModelProto, want_fn=None, threads: int = 1) -> None:  # noqa: ANN001
    """Compile, run on random inputs and compare every output exactly (data movement: no rounding)."""
    feeds = {i.name: RNG.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}  # fmt: skip
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"), threads=threads)(*feeds.values())
    got = got if isinstance(got, (list, tuple)) else [got]
    want = (want_fn or run_onnxruntime)(model, feeds)
    assert len(got) == len(want)
    for out, g, w in zip(model.graph.output, got, want):
        assert g.shape == w.shape, out.name
        np.testing.assert_array_equal(g, w, err_msg=out.name)


def _pad_nodes(cases: list[tuple]) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], list[str]]:
    """One opset-11+ Pad node per (input, mode, pads, axes, constant) case."""
    nodes, inits, outs = [], {}, []
    for i, (x, mode, pads, axes, value) in enumerate(cases):
        inits[f"p{i}"] = np.array(pads, np.int64)
        ins = [x, f"p{i}", f"v{i}" if value is not None else ""]
        if value is not None:
            inits[f"v{i}"] = np.array(value, np.float32)
        if axes is not None:
            ins.append(f"a{i}")
            inits[f"a{i}"] = np.array(axes, np.int64)
        nodes.append(helper.make_node("Pad", ins, [f"y{i}"], mode=mode, name=f"pad{i}"))
        outs.append(f"y{i}")
    return nodes, inits, outs


SHAPES = {"x": (2, 3, 5, 7), "r1": (7,), "r2": (4, 6), "r3": (2, 5, 3), "r5": (2, 1, 3, 4, 5)}
# (input, mode, pads [begin..., end...], axes or None, constant or None)
PAD_CASES = [
    ("x", "reflect", [0, 0, 2, 3, 0, 0, 1, 2], None, None),  # ReflectionPad2d
    ("x", "edge", [0, 0, 1, 1, 0, 0, 1, 1], None, None),  # ReplicationPad2d
    ("x", "wrap", [0, 0, 3, 1, 0, 0, 2, 4], None, None),
    ("x", "edge", [1, 2, 1, 0, 0, 1, 2, 3], None, None),  # N and C too
    ("x", "constant", [1, 0, 0, 0, 0, 2, 0, 0], None, 1.5),  # N and C, non-zero constant
    ("x", "constant", [0, 0, 2, 1, 0, 0, 0, 3], None, None),  # H and W: merged to whole rows
    ("x", "constant", [0, -1, -2, 0, 0, 0, -1, -3], None, None),  # cropping only
    ("x", "reflect", [0, 0, -1, 2, 0, 0, 2, -2], None, None),  # crop, then pad the window
    ("x", "wrap", [0, 0, -1, 2, 0, 0, 2, -3], None, None),
    ("x", "edge", [-1, 1, 0, -2, 0, -1, 3, 1], None, None),
    ("x", "constant", [0, 1, -2, 3, 0, -2, 2, -1], None, -2.0),
    ("x", "reflect", [2, 1, 0, 2], [-1, 1], None),  # opset-18 axes, negative ones
    ("x", "wrap", [6, 1, 2, 8], [3, 2], None),  # wrap by more than the axis
    ("x", "reflect", [0, 0, 4, 6, 0, 0, 4, 6], None, None),  # the largest reflect
    ("r1", "reflect", [3, 2], None, None),
    ("r1", "wrap", [-2, 9], None, None),
    ("r1", "constant", [1, -3], None, 0.5),
    ("r2", "edge", [2, -1, 1, 3], None, None),
    ("r3", "constant", [1, -1, 2, 0, 2, -1], None, 0.25),
    ("r5", "reflect", [0, 0, 1, 2, 1, 0, 0, 2, 1, 3], None, None),
    ("r5", "edge", [1, 2, 0, 1, 0, 0, 3, 1, 0, 2], None, None),
    ("r5", "wrap", [0, 0, 0, 0, 2, 0, 0, 0, 0, 3], None, None),
]


def test_pad_every_mode_axis_and_rank(tmp_path) -> None:
    nodes, inits, outs = _pad_nodes(PAD_CASES)
    _compare(tmp_path, _model(nodes, SHAPES, outs, inits))


def test_pad_opset_forms(tmp_path) -> None:
    """Opset 2 attributes (pads, value, mode) and opset 11 inputs without axes."""
    old = _model([helper.make_node("Pad", ["x"], ["a"], mode="reflect", pads=[0, 0, 1, 2, 0, 0, 2, 1]),
                  helper.make_node("Pad", ["x"], ["b"], pads=[0, 1, 0, -1, 1, 0, 2, 0], value=3.0),
                  helper.make_node("Pad", ["x"], ["c"], mode="edge", pads=[0, 0, 2, 0, 0, 0, 0, 2])],
                 {"x": SHAPES["x"]}, ["a", "b", "c"], opset=7)  # fmt: skip
    _compare(tmp_path, old)
    nodes, inits, outs = _pad_nodes([("x", "reflect", [0, 0, 1, 1, 0, 0, 1, 1], None, None),
                                     ("x", "edge", [0, 1, 2, 0, 0, 0, 1, 1], None, None)])  # fmt: skip
    _compare(tmp_path, _model(nodes, {"x": SHAPES["x"]}, outs, inits, opset=11))


def test_reflect_beyond_the_axis_follows_onnx_reference(tmp_path) -> None:
    """ONNX does not bound reflect pads (ORT rejects pads >= the axis length); Inferon reflects
    periodically as ONNX's reference (numpy) does."""
    nodes, inits, outs = _pad_nodes([("x", "reflect", [0, 0, 9, 1, 0, 0, 3, 15], None, None),
                                     ("r1", "reflect", [20, 13], None, None)])  # fmt: skip
    model = _model(nodes, {"x": SHAPES["x"], "r1": SHAPES["r1"]}, outs, inits)
    _compare(tmp_path, model, lambda m, feeds: ReferenceEvaluator(m).run(None, feeds))


@pytest.mark.parametrize("opset", [7, 18])
def test_pad_of_a_constant_folds_at_import(tmp_path, opset: int) -> None:
    """A Pad of an initializer is evaluated at import (onnx.reference, with the cropping done first)."""
    c = np.arange(20, dtype=np.float32).reshape(4, 5)
    if opset < 11:
        pad = helper.make_node("Pad", ["c"], ["cp"], mode="reflect", pads=[-1, 2, 0, -1])
        inits = {"c": c}
    else:
        pad = helper.make_node("Pad", ["c", "p", "", "a"], ["cp"], mode="edge")
        inits = {"c": c, "p": _i64(2, -1, -2, 0), "a": _i64(1, 0)}
    model = _model([pad, helper.make_node("Add", ["x", "cp"], ["y"])], {"x": (3, 6) if opset < 11 else (3, 5)}, ["y"],
                   inits, opset)  # fmt: skip
    assert _lowered(model, "remove-identities").count("graph.pad") == 0
    _compare(tmp_path, model)


def test_large_reflect_pad_on_two_threads(tmp_path) -> None:
    nodes, inits, outs = _pad_nodes([("x", "reflect", [0, 0, 3, 3, 0, 0, 3, 3], None, None),
                                     ("x", "constant", [0, 2, 1, 0, 0, 3, 0, 1], None, 0.5)])  # fmt: skip
    _compare(tmp_path, _model(nodes, {"x": (2, 16, 61, 67)}, outs, inits), threads=2)


def _lowered(model: onnx.ModelProto, stop: str) -> list[str]:
    module, weights = import_model(model)
    passes = ["remove-identities", "fold-pad", "fold-constants", "fuse-epilogue", "convert-graph-to-loop", "elide-copies"]
    run_passes(make_context(weights), module, passes[: passes.index(stop) + 1])
    return [op.name for op in module.walk()]


def test_conv_reflect_pad_conv(tmp_path) -> None:
    """ReflectionPad2d between convolutions (a style-transfer / pix2pix block): the reflect Pad is a
    kernel of its own (fold-pad only takes zero constant pads)."""
    w1 = (RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (RNG.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Pad", ["r1", "p"], ["p1"], mode="reflect"),
        helper.make_node("Conv", ["p1", "w2"], ["c2"]),
        helper.make_node("Pad", ["c2", "z"], ["y"]),  # zero constant: folds into nothing (no conv after)
    ]
    inits = {"w1": w1, "w2": w2, "p": _i64(0, 0, 1, 1, 0, 0, 1, 1), "z": _i64(0, 0, 0, 1, 0, 0, 0, 1)}
    model = _model(nodes, {"x": (1, 3, 12, 13)}, ["y"], inits, opset=13)
    assert _lowered(model, "fold-pad").count("graph.pad") == 2
    assert _lowered(model, "convert-graph-to-loop").count("loop.pad") == 2
    feeds = {"x": RNG.standard_normal((1, 3, 12, 13)).astype(np.float32)}
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(feeds["x"])
    np.testing.assert_allclose(got, run_onnxruntime(model, feeds)[0], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------- Expand, Tile, GatherND
def _op_nodes(specs: list[tuple]) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], list[str]]:
    """One node per (op, input, constant second input, attributes) spec."""
    nodes, inits, outs = [], {}, []
    for i, (op, x, const, attrs) in enumerate(specs):
        inits[f"k{i}"] = const
        nodes.append(helper.make_node(op, [x, f"k{i}"], [f"y{i}"], name=f"n{i}", **attrs))
        outs.append(f"y{i}")
    return nodes, inits, outs


MOVE_SHAPES = {"a": (3, 1, 5), "b": (1, 4), "c": (2, 3, 4), "d": (2, 1, 3, 1, 2), "e": (4, 5, 6), "f": (2, 3, 4, 5),
               "g": (1, 8, 7, 7)}  # fmt: skip
ADAPTIVE_ROWS = _i64(0, 1, 2, 1, 2, 3, 3, 4, 5, 4, 5, 6)  # AdaptiveAvgPool 7 -> 4 windows, flattened
MOVE_CASES = [
    ("Expand", "a", _i64(2, 3, 4, 5), {}),  # new leading axes, broadcast of a middle axis
    ("Expand", "a", _i64(3, 1), {}),  # bidirectional: the target is smaller
    ("Expand", "b", _i64(3, 1, 1), {}),
    ("Expand", "b", _i64(2, 1, 4), {}),
    ("Expand", "d", _i64(2, 4, 3, 5, 2), {}),
    ("Expand", "c", _i64(2, 3, 4), {}),  # no-op
    ("Tile", "c", _i64(2, 1, 3), {}),
    ("Tile", "b", _i64(3, 2), {}),
    ("Tile", "d", _i64(2, 2, 2, 2, 2), {}),  # 5 repeat axes + 4 data axes: two steps of <= 8 dimensions
    ("Tile", "c", _i64(1, 1, 1), {}),
    ("GatherND", "e", _i64(0, 1, 3, 2, 1, 0).reshape(3, 2), {}),
    ("GatherND", "e", np.array([[[0, 1, 2], [3, 4, 5]], [[1, 1, 1], [-1, -2, -3]]], np.int64), {}),  # scalars
    ("GatherND", "e", _i64(2, 0, -1).reshape(3, 1), {}),
    ("GatherND", "f", np.array([[[1], [0], [2]], [[2], [2], [0]]], np.int64), {"batch_dims": 1}),
    ("GatherND", "f", np.array([[[1, 3], [0, 0]], [[2, 3], [1, -1]]], np.int64), {"batch_dims": 1}),
    ("GatherND", "f", RNG.integers(0, 4, (2, 3, 5, 1)).astype(np.int64), {"batch_dims": 2}),
    ("GatherND", "g", np.stack([np.zeros(12, np.int64), ADAPTIVE_ROWS], 1).reshape(1, 12, 2), {"batch_dims": 1}),
]


def test_expand_tile_gathernd(tmp_path) -> None:
    nodes, inits, outs = _op_nodes(MOVE_CASES)
    _compare(tmp_path, _model(nodes, MOVE_SHAPES, outs, inits, opset=13))


def test_expand_and_tile_are_broadcast_windows() -> None:
    """Expand and Tile lower to `loop.strided_copy` (stride-0 axes), no new kernel."""
    nodes, inits, outs = _op_nodes([("Expand", "a", _i64(2, 3, 4, 5), {}), ("Tile", "c", _i64(2, 1, 3), {})])
    ops = _lowered(_model(nodes, MOVE_SHAPES, outs, inits, opset=13), "convert-graph-to-loop")
    assert ops.count("loop.strided_copy") == 2 and "loop.pad" not in ops


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_8bit_tensors_copy_their_integers(tmp_path, dtype) -> None:
    """Expand / Tile / GatherND of a uint8 / int8 graph input and outputs: integer strided copies."""
    onnx_type = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    nodes, inits, outs = _op_nodes([("Expand", "x", _i64(2, 3, 4), {}), ("Tile", "x", _i64(2, 3, 1), {}),
                                    ("GatherND", "x", _i64(1, 0, 0, 0).reshape(2, 2), {})])  # fmt: skip
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", onnx_type, [2, 1, 4])],
        [helper.make_tensor_value_info(n, onnx_type, None) for n in outs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max + 1, (2, 1, 4)).astype(dtype)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    for g, w in zip(got, run_onnxruntime(model, {"x": x})):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w)


def test_gathernd_opset11(tmp_path) -> None:
    nodes, inits, outs = _op_nodes([("GatherND", "e", _i64(3, 4, 0, 0).reshape(2, 2), {})])
    _compare(tmp_path, _model(nodes, {"e": MOVE_SHAPES["e"]}, outs, inits, opset=11))


# ------------------------------------------------------------------------------------- errors
def _error(tmp_path, node: onnx.NodeProto, inputs: dict[str, tuple[int, ...]], inits: dict, opset: int = 19) -> Exception:
    with pytest.raises((ModelImportError, UnsupportedError)) as info:
        inferon.compile(_model([node], inputs, list(node.output), inits, opset), tmp_path / "m.so")
    return info.value


@pytest.mark.parametrize(
    ("op", "inputs", "what"),
    [
        ("Pad", ["x", "rt"], "pads ('rt')"),
        ("Pad", ["x", "p", "rt"], "constant_value ('rt')"),
        ("Pad", ["x", "p", "", "rt"], "axes ('rt')"),
        ("Expand", ["x", "rt"], "shape ('rt')"),
        ("Tile", ["x", "rt"], "repeats ('rt')"),
        ("GatherND", ["x", "rt"], "indices ('rt')"),
    ],
)
def test_run_time_inputs_are_unsupported(tmp_path, op: str, inputs: list[str], what: str) -> None:
    node = helper.make_node(op, inputs, ["y"], name="rt_node")
    err = _error(tmp_path, node, {"x": (2, 3, 4, 4), "rt": (1,)}, {"p": _i64(0, 0, 1, 1, 0, 0, 1, 1)})
    assert isinstance(err, UnsupportedError)
    assert "node 'rt_node', op " + op in str(err) and f"{what} must be a compile-time constant" in str(err), str(err)


@pytest.mark.parametrize(
    ("node", "inits", "opset", "error", "message"),
    [
        (helper.make_node("Pad", ["x", "p"], ["y"], mode="wrap", name="n"), {"p": _i64(0, 0, 1, 1, 0, 0, 1, 1)}, 18,
         ModelImportError, "unknown Pad mode 'wrap' at opset 18"),
        (helper.make_node("Pad", ["x", "p"], ["y"], mode="mirror", name="n"), {"p": _i64(0, 0, 1, 1, 0, 0, 1, 1)}, 19,
         ModelImportError, "unknown Pad mode 'mirror'"),
        (helper.make_node("Pad", ["x", "p"], ["y"], name="n"), {"p": _i64(1, 1)}, 19, ModelImportError,
         "do not match the rank-4 input"),
        (helper.make_node("Pad", ["x", "p", "", "a"], ["y"], name="n"), {"p": _i64(1, 1), "a": _i64(1, -3)}, 19,
         ModelImportError, "repeat an axis"),
        (helper.make_node("Pad", ["x", "p"], ["y"], name="n"), {"p": _i64(0, 0, -2, 0, 0, 0, -2, 0)}, 19,
         UnsupportedError, "crop away all of an axis"),
        (helper.make_node("Expand", ["x", "s"], ["y"], name="n"), {"s": _i64(4, 2)}, 13, ModelImportError,
         "does not broadcast"),
        (helper.make_node("Tile", ["x", "r"], ["y"], name="n"), {"r": _i64(2, 2)}, 13, ModelImportError,
         "one non-negative count per axis"),
        (helper.make_node("Tile", ["x", "r"], ["y"], name="n"), {"r": _i64(1, 0, 1, 1)}, 13, UnsupportedError,
         "empty tensor"),
        (helper.make_node("GatherND", ["x", "i"], ["y"], name="n"), {"i": _i64(0, 3)}, 13, ModelImportError,
         "out of range"),
        (helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1, name="n"), {"i": _i64(0, 1).reshape(1, 2)}, 13,
         ModelImportError, "batch_dims 1 does not fit"),
        (helper.make_node("GatherND", ["x", "i"], ["y"], name="n"), {"i": np.zeros((2, 5), np.int64)}, 13,
         ModelImportError, "index tuples of length 5"),
        (helper.make_node("GatherND", ["x", "i"], ["y"], name="n"), {"i": np.zeros((2, 1), np.float32)}, 13,
         ModelImportError, "indices must be integers"),
    ],
)  # fmt: skip
def test_bad_nodes_are_named(tmp_path, node: onnx.NodeProto, inits: dict, opset: int, error: type, message: str) -> None:
    err = _error(tmp_path, node, {"x": (2, 3, 2, 2)}, inits, opset)
    assert isinstance(err, error) and f"node 'n', op {node.op_type}" in str(err) and message in str(err), str(err)
