"""Slice, Split, Gather (constant indices), DepthToSpace and SpaceToDepth on activations, checked
against ONNX Runtime; contiguous windows read in place (elide-copies); QDQ models; clear errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon
from inferon.errors import ModelImportError, UnsupportedError
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.ir.dialects.graph import quant_of
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_typed_model

RNG = np.random.default_rng(5)
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
Build = Callable[..., inferon.CompiledModel]


def _model(
    nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: Sequence[str],
    inits: dict[str, np.ndarray] | None = None, opset: int = 17,
) -> onnx.ModelProto:
    return make_typed_model(nodes, inputs, list(outputs), inits, opset)


def _check(build: Build, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], **kwargs: object) -> None:
    feeds = {k: RNG.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    compiled = build(model, **kwargs)
    got = compiled(*feeds.values())
    got = got if isinstance(got, (list, tuple)) else [got]
    want = run_onnxruntime(model, feeds)
    assert len(got) == len(want)
    for name, g, w in zip([o.name for o in model.graph.output], got, want):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def _lowered_ops(model: onnx.ModelProto) -> list[str]:
    module, weights = import_model(model)
    passes = ["remove-identities", "fold-constants", "fuse-epilogue", "convert-graph-to-loop", "elide-copies",
              "plan-memory"]  # fmt: skip
    run_passes(make_context(weights), module, passes)
    return [op.name for op in module.walk()]


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# (starts, ends, axes, steps) on x [2, 6, 10, 12]; axes None / steps None: the inputs are absent
SLICES: list[tuple[list[int], list[int], list[int] | None, list[int] | None]] = [
    ([0, 0], [1, 3], [0, 1], None),  # channel block at batch 0 (contiguous)
    ([3], [6], [1], None),  # channel half, both batches (strided rows)
    ([0, 0], [INT64_MAX, INT64_MAX], [2, 3], [2, 2]),  # YOLOv5 Focus x[..., ::2, ::2]
    ([1, 1], [INT64_MAX, INT64_MAX], [-2, -1], [2, 2]),
    ([-1], [INT64_MIN], [3], [-1]),  # x[..., ::-1]
    ([-2, 8], [-100, 1], [1, 2], [-2, -3]),  # negative steps, clamped end
    ([1, -4], [-1, 1000], [3, 2], [3, 1]),  # step 3 along W (gather path), negative start
    ([0, 2, 1, 0], [2, 5, 9, 12], None, [1, 1, 2, 5]),  # default axes
    ([-7], [-2], [-1], None),
]


def test_slice_modes_opset13(compile_and_load: Build) -> None:
    nodes, inits = [], {}
    for i, (starts, ends, axes, steps) in enumerate(SLICES):
        inits |= {f"s{i}": _i64(*starts), f"e{i}": _i64(*ends)}
        ins = ["x", f"s{i}", f"e{i}"]
        if axes is not None:
            inits[f"a{i}"] = _i64(*axes)
        ins.append(f"a{i}" if axes is not None else "")
        if steps is not None:
            inits[f"p{i}"] = _i64(*steps)
            ins.append(f"p{i}")
        nodes.append(helper.make_node("Slice", ins, [f"y{i}"], name=f"slice{i}"))
    model = _model(nodes, {"x": (2, 6, 10, 12)}, [f"y{i}" for i in range(len(SLICES))], inits, opset=13)
    _check(compile_and_load, model, {"x": (2, 6, 10, 12)})


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_strided_rows_vector_and_scalar(compile_and_load: Build, monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    """Inner steps 2 (shuffle), -1 and 5 (gathers) over rows long enough for the vector code."""
    monkeypatch.setenv("INFERON_ISA", isa)
    nodes, inits = [], {}
    for i, (start, end, step) in enumerate([(0, INT64_MAX, 2), (1, INT64_MAX, 2), (-1, INT64_MIN, -1), (2, 70, 5)]):
        inits |= {f"s{i}": _i64(start), f"e{i}": _i64(end), f"a{i}": _i64(-1), f"p{i}": _i64(step)}
        nodes.append(helper.make_node("Slice", ["x", f"s{i}", f"e{i}", f"a{i}", f"p{i}"], [f"y{i}"]))
    model = _model(nodes, {"x": (3, 75)}, [f"y{i}" for i in range(4)], inits)
    compiled = compile_and_load(model)
    if isa == "avx2" and compiled.isa == "scalar":
        pytest.skip("this CPU has no AVX2")
    assert compiled.isa == isa
    x = RNG.standard_normal((3, 75)).astype(np.float32)
    for got, want in zip(compiled(x), run_onnxruntime(model, {"x": x})):
        np.testing.assert_array_equal(got, want)


def test_slice_attributes_opset9(compile_and_load: Build) -> None:
    nodes = [
        helper.make_node("Slice", ["x"], ["y0"], starts=[1, -3], ends=[INT64_MAX, -1], axes=[1, 3]),
        helper.make_node("Slice", ["x"], ["y1"], starts=[0, 2, 0], ends=[1, 4, 5]),
    ]
    model = _model(nodes, {"x": (2, 4, 6, 8)}, ["y0", "y1"], opset=9)
    _check(compile_and_load, model, {"x": (2, 4, 6, 8)})


def test_focus_layer(compile_and_load: Build) -> None:
    """YOLOv5 Focus: the four 2x2 phases of the input concatenated on channels, then a conv."""
    nodes, inits = [], {"end": _i64(INT64_MAX, INT64_MAX), "axes": _i64(2, 3), "two": _i64(2, 2)}
    for i, (r, c) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        inits[f"s{i}"] = _i64(r, c)
        nodes.append(helper.make_node("Slice", ["x", f"s{i}", "end", "axes", "two"], [f"p{i}"]))
    nodes += [
        helper.make_node("Concat", ["p0", "p1", "p2", "p3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits["w"] = (RNG.standard_normal((8, 12, 3, 3)) * 0.2).astype(np.float32)
    model = _model(nodes, {"x": (1, 3, 16, 20)}, ["y"], inits)
    _check(compile_and_load, model, {"x": (1, 3, 16, 20)})


def test_split_forms(compile_and_load: Build) -> None:
    """Default equal parts, the opset-11 attribute, the opset-13 input, opset 18's num_outputs."""
    x = {"x": (2, 7, 6)}
    cases = [
        (11, [helper.make_node("Split", ["x"], ["a", "b"], axis=2)], {}),
        (11, [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, split=[2, 4, 1])], {}),
        (13, [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=-2)], {"sp": _i64(5, 2)}),
        (13, [helper.make_node("Split", ["x"], ["a", "b"], axis=0)], {}),
        (18, [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)], {}),  # 3, 3, 1
        (18, [helper.make_node("Split", ["x"], ["a", "b"], axis=-2, num_outputs=2)], {}),  # 4, 3
    ]
    for opset, nodes, inits in cases:
        outs = list(nodes[0].output)
        _check(compile_and_load, _model(nodes, x, outs, inits, opset=opset), x)


def test_split_num_outputs_leaving_an_empty_chunk_is_unsupported(tmp_path) -> None:
    node = helper.make_node("Split", ["x"], ["a", "b", "c", "d"], axis=1, num_outputs=4, name="split_e")
    model = _model([node], {"x": (1, 6)}, ["a", "b", "c", "d"], opset=18)  # chunks of 2: 2, 2, 2, 0
    with pytest.raises(UnsupportedError, match=r"node 'split_e'.*empty tensors"):
        inferon.compile(model, tmp_path / "m.so")


def _shufflenet_block(batch: int) -> onnx.ModelProto:
    """ShuffleNetV2 unit: split channels in halves, 1x1 / depthwise 3x3 / 1x1 on one half, concat
    with the other, channel shuffle (Reshape, Transpose, Reshape), then a torch.chunk-style Split."""
    c, h = 16, 8
    half = c // 2
    inits = {
        "w1": (RNG.standard_normal((half, half, 1, 1)) * 0.3).astype(np.float32),
        "w2": (RNG.standard_normal((half, 1, 3, 3)) * 0.3).astype(np.float32),
        "w3": (RNG.standard_normal((half, half, 1, 1)) * 0.3).astype(np.float32),
        "g": _i64(batch, 2, half, h, h), "flat": _i64(batch, c, h, h), "sp": _i64(half, half),
    }
    nodes = [
        helper.make_node("Split", ["x", "sp"], ["x1", "x2"], axis=1),
        helper.make_node("Conv", ["x2", "w1"], ["b1"]),
        helper.make_node("Relu", ["b1"], ["b1r"]),
        helper.make_node("Conv", ["b1r", "w2"], ["b2"], pads=[1, 1, 1, 1], group=half),
        helper.make_node("Conv", ["b2", "w3"], ["b3"]),
        helper.make_node("Relu", ["b3"], ["b3r"]),
        helper.make_node("Concat", ["x1", "b3r"], ["cat"], axis=1),
        helper.make_node("Reshape", ["cat", "g"], ["g5"]),
        helper.make_node("Transpose", ["g5"], ["t5"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "flat"], ["shuf"]),
        helper.make_node("Split", ["shuf", "sp"], ["y1", "y2"], axis=1),
        helper.make_node("Relu", ["y1"], ["z1"]),
        helper.make_node("Sigmoid", ["y2"], ["z2"]),
    ]
    return _model(nodes, {"x": (batch, c, h, h)}, ["z1", "z2"], inits, opset=13)


@pytest.mark.parametrize("batch", [1, 2])
def test_shufflenet_block(compile_and_load: Build, batch: int) -> None:
    model = _shufflenet_block(batch)
    _check(compile_and_load, model, {"x": (batch, 16, 8, 8)})
    ops = _lowered_ops(model)
    if batch == 1:  # channel halves are contiguous: read in place (only x1, an input, is copied into the concat)
        assert ops.count("loop.strided_copy") == 0 and ops.count("loop.copy") == 1, ops
    else:
        assert ops.count("loop.strided_copy") >= 2, ops


def test_depth_to_space_and_space_to_depth(compile_and_load: Build) -> None:
    nodes = [
        helper.make_node("DepthToSpace", ["x"], ["dcr"], blocksize=2),
        helper.make_node("DepthToSpace", ["x"], ["crd"], blocksize=2, mode="CRD"),
        helper.make_node("SpaceToDepth", ["x"], ["s2d"], blocksize=3),
        helper.make_node("DepthToSpace", ["s2d"], ["back"], blocksize=3, mode="CRD"),
        helper.make_node("SpaceToDepth", ["x"], ["s2d_crd"], blocksize=3, mode="CRD"),  # opset 28
    ]
    model = _model(nodes, {"x": (2, 8, 6, 9)}, ["dcr", "crd", "s2d", "back", "s2d_crd"], opset=28)
    _check(compile_and_load, model, {"x": (2, 8, 6, 9)})


def test_gather_constant_indices(compile_and_load: Build) -> None:
    nodes = [
        helper.make_node("Gather", ["x", "i0"], ["y0"], axis=1),  # x[:, 0]
        helper.make_node("Gather", ["x", "ineg"], ["y1"], axis=-1),  # x[..., -1]
        helper.make_node("Gather", ["x", "ivec"], ["y2"], axis=2),  # runs 0..2, 5, 4 and a repeat
        helper.make_node("Gather", ["x", "i2d"], ["y3"], axis=0),
        helper.make_node("Gather", ["x", "istep"], ["y4"], axis=3),  # one run with step -2
    ]
    inits = {
        "i0": np.array(0, np.int64), "ineg": np.array(-1, np.int32), "ivec": _i64(0, 1, 2, 5, 4, 4, -1),
        "i2d": np.array([[1, 0], [1, 1]], np.int64), "istep": _i64(6, 4, 2, 0),
    }  # fmt: skip
    model = _model(nodes, {"x": (2, 3, 6, 7)}, [f"y{i}" for i in range(5)], inits)
    _check(compile_and_load, model, {"x": (2, 3, 6, 7)})


def test_gather_row_at_batch_one_reads_in_place() -> None:
    """x[:, 0] of a conv output at batch 1 is a contiguous window: no copy at all."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Gather", ["c", "i"], ["g"], axis=1),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    inits = {"w": np.ones((4, 3, 1, 1), np.float32), "i": np.array(2, np.int64)}
    ops = _lowered_ops(_model(nodes, {"x": (1, 3, 5, 5)}, ["y"], inits))
    assert "loop.strided_copy" not in ops and "loop.copy" not in ops, ops


def _qdq_slice_model() -> onnx.ModelProto:
    """QuantizeLinear -> Slice -> DequantizeLinear, and a quantized Split read by two DequantizeLinears."""
    inits = {
        "s": np.array(0.05, np.float32), "z": np.array(128, np.uint8),
        "st": _i64(1, -1), "en": _i64(INT64_MAX, INT64_MIN), "ax": _i64(2, 3), "pp": _i64(2, -1),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("Slice", ["q", "st", "en", "ax", "pp"], ["qs"]),
        helper.make_node("DequantizeLinear", ["qs", "s", "z"], ["y"]),
        helper.make_node("Split", ["q"], ["qa", "qb"], axis=1),
        helper.make_node("DequantizeLinear", ["qa", "s", "z"], ["ya"]),
        helper.make_node("DequantizeLinear", ["qb", "s", "z"], ["yb"]),
    ]
    return _model(nodes, {"x": (1, 4, 6, 6)}, ["y", "ya", "yb"], inits, opset=13)


def _graph_ops(model: onnx.ModelProto, passes: list[str]) -> list[tuple[str, bool]]:
    """(op name, result is quantized) after `passes`."""
    module, weights = import_model(model)
    run_passes(make_context(weights), module, passes)
    return [(op.name, quant_of(op.results[0]) is not None) for op in module.walk() if op.name.startswith("graph.")]


def test_qdq_slice_and_split_match_onnxruntime(compile_and_load: Build) -> None:
    """QuantizeLinear -> Slice / Split -> DequantizeLinear: the windows copy the uint8 integers."""
    model = _qdq_slice_model()
    _check(compile_and_load, model, {"x": (1, 4, 6, 6)})
    ops = _graph_ops(model, [])
    assert ops.count(("graph.slice", True)) == 3 and ("graph.slice", False) not in ops, ops


def test_dequantize_slice_quantize_folds_to_integer_slice(compile_and_load: Build) -> None:
    """ORT-quantizer style DQ -> Slice -> Q (equal parameters): fold-qdq runs the window on the integers."""
    inits = {"s": np.array(0.02, np.float32), "z": np.array(-3, np.int8), "st": _i64(1), "en": _i64(INT64_MAX),
             "ax": _i64(-1), "pp": _i64(2)}  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Slice", ["d", "st", "en", "ax", "pp"], ["f"]),
        helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["y"]),
    ]
    model = _model(nodes, {"x": (2, 3, 5, 40)}, ["y"], inits, opset=13)
    _check(compile_and_load, model, {"x": (2, 3, 5, 40)})
    ops = _graph_ops(model, ["fold-qdq"])
    assert ("graph.slice", True) in ops and ("graph.slice", False) not in ops, ops


def test_int8_input_windows(compile_and_load: Build) -> None:
    """Slice / Gather / Split straight on an int8 graph input, int8 outputs (integer strided copies)."""
    inits = [numpy_helper.from_array(v, k) for k, v in
             {"st": _i64(0, -1), "en": _i64(INT64_MAX, INT64_MIN), "ax": _i64(1, 2), "pp": _i64(2, -3),
              "i": np.array(1, np.int64)}.items()]  # fmt: skip
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax", "pp"], ["a"]),
        helper.make_node("Gather", ["x", "i"], ["b"], axis=0),
        helper.make_node("Split", ["x"], ["c", "d"], axis=1),
    ]
    outs = ["a", "b", "c", "d"]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.INT8, [2, 6, 9])],
        [helper.make_tensor_value_info(n, TensorProto.INT8, None) for n in outs], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = RNG.integers(-128, 128, (2, 6, 9)).astype(np.int8)
    for got, want in zip(compile_and_load(model)(x), run_onnxruntime(model, {"x": x})):
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------- errors
def _compile_error(tmp_path, model: onnx.ModelProto) -> Exception:
    with pytest.raises((ModelImportError, UnsupportedError)) as info:
        inferon.compile(model, tmp_path / "m.so")
    return info.value


def test_runtime_starts_are_unsupported(tmp_path) -> None:
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"], name="slice_rt")
    model = _model([node], {"x": (2, 4), "s": (1,)}, ["y"], {"e": _i64(3)})
    err = _compile_error(tmp_path, model)
    assert isinstance(err, UnsupportedError)
    assert "node 'slice_rt', op Slice" in str(err) and "starts ('s') must be a compile-time constant" in str(err)


def test_runtime_gather_indices_and_split_are_unsupported(tmp_path) -> None:
    gather = helper.make_node("Gather", ["x", "i"], ["y"], name="gather_rt")
    err = _compile_error(tmp_path, _model([gather], {"x": (2, 4), "i": (1,)}, ["y"]))
    assert isinstance(err, UnsupportedError) and "node 'gather_rt'" in str(err) and "indices" in str(err)
    split = helper.make_node("Split", ["x", "p"], ["a", "b"], name="split_rt")
    err = _compile_error(tmp_path, _model([split], {"x": (2, 4), "p": (2,)}, ["a", "b"], opset=13))
    assert isinstance(err, UnsupportedError) and "node 'split_rt'" in str(err) and "split" in str(err)


@pytest.mark.parametrize(
    ("node", "inits", "opset", "message"),
    [
        (helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"], name="n"),
         {"s": _i64(0), "e": _i64(2), "a": _i64(1), "p": _i64(0)}, 13, "step along axis 1 is 0"),
        (helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="n"),
         {"s": _i64(0, 0), "e": _i64(1, 1), "a": _i64(1, -3)}, 13, "repeat an axis"),
        (helper.make_node("Slice", ["x", "s", "e"], ["y"], name="n"),
         {"s": _i64(3), "e": _i64(1)}, 13, "empty tensors"),
        (helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 2], name="n"), {}, 11, "does not cut 4"),
        (helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, name="n"), {}, 11, "3 equal parts"),
        (helper.make_node("Gather", ["x", "i"], ["y"], axis=1, name="n"), {"i": _i64(4)}, 13, "out of range"),
        (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3, name="n"), {}, 13, "not divisible"),
        (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=0, name="n"), {}, 13, "blocksize"),
    ],
)
def test_bad_windows_name_the_node(tmp_path, node: onnx.NodeProto, inits: dict, opset: int, message: str) -> None:
    outs = list(node.output)
    err = _compile_error(tmp_path, _model([node], {"x": (2, 4, 2, 2)}, outs, inits, opset=opset))
    assert f"node 'n', op {node.op_type}" in str(err) and message in str(err), str(err)
