"""Comparisons, logical ops and Where on run-time float tensors (torch.where / masked_fill exports).

ONNX bool tensors are float32 tensors of 1.0 / 0.0 inside Inferon: Greater / Less / Equal /
GreaterOrEqual / LessOrEqual, And / Or / Xor / Not, Cast to and from BOOL and Where read and write
them; bool graph inputs and outputs are numpy bool arrays. Checked against ONNX Runtime with the AVX2
and the scalar kernels, on shapes that are not multiples of 8, with broadcasting, NaN and infinities.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon
from inferon.errors import RuntimeCallError, UnsupportedError
from inferon.testing import run_onnxruntime
from tests.conftest import make_typed_model, use_isa


def _masked_model(opset: int) -> onnx.ModelProto:
    n = helper.make_node
    nodes = [
        n("Greater", ["x", "y"], ["gt"]), n("LessOrEqual", ["x", "half"], ["le"]),
        n("Round", ["x"], ["r"]), n("Equal", ["r", "y"], ["eq"]),
        n("Not", ["le"], ["nle"]), n("And", ["gt", "nle"], ["a"]), n("Or", ["a", "eq"], ["o"]),
        n("Xor", ["o", "mask"], ["xo"]), n("Less", ["x", "y"], ["lt"]), n("GreaterOrEqual", ["y", "x"], ["ge"]),
        # masked_fill(-inf) before a softmax, as attention masks are exported
        n("Where", ["xo", "x", "ninf"], ["w"]), n("Softmax", ["w"], ["sm"], axis=-1),
        n("Cast", ["o"], ["of"], to=TensorProto.FLOAT), n("Cast", ["lt"], ["ltf"], to=TensorProto.FLOAT),
        n("Cast", ["ge"], ["gef"], to=TensorProto.FLOAT),
        # Cast to BOOL is x != 0; Where with a broadcast condition and scalar branch
        n("Cast", ["x"], ["xb"], to=TensorProto.BOOL), n("Where", ["xb", "half", "y"], ["w2"]),
    ]  # fmt: skip
    inits = {
        "half": np.float32(0.5), "ninf": np.float32(-np.inf),
        "mask": np.random.default_rng(1).random((1, 1, 5, 7)) < 0.3,
    }  # fmt: skip
    return make_typed_model(nodes, {"x": (2, 3, 5, 7), "y": (1, 3, 1, 1)}, ["sm", "of", "ltf", "gef", "w2"], inits, opset)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
@pytest.mark.parametrize("opset", [12, 17])
def test_comparisons_and_where_match_onnxruntime(tmp_path, monkeypatch, isa, opset):
    use_isa(monkeypatch, isa)
    model = _masked_model(opset)
    rng = np.random.default_rng(opset)
    x = np.round(rng.standard_normal((2, 3, 5, 7)) * 2, 1).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, 0.0]  # NaN compares false; 0 casts to false
    y = np.float32([[[[0.0]], [[1.0]], [[np.nan]]]])
    x[1, 1, 2, :] = 1.0  # ties for Equal / GreaterOrEqual
    feeds = {"x": x, "y": y}
    inferon.compile(model, tmp_path / "m.so")
    got = inferon.load(tmp_path / "m.so").run(feeds)
    ref = run_onnxruntime(model, feeds)
    for name, r in zip(["sm", "of", "ltf", "gef", "w2"], ref):
        np.testing.assert_allclose(got[name], r, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=name)
    assert set(np.unique(got["of"])) <= {0.0, 1.0}


def test_constant_bool_condition_and_interpreter(tmp_path):
    """A constant bool condition becomes a 1.0 / 0.0 weight; the graph-level interpreter (constant
    folding) computes the same as the kernels."""
    mask = np.array([[True, False, True], [False, False, True]])
    n = helper.make_node
    nodes = [n("Where", ["mask", "x", "zero"], ["w"]), n("Greater", ["w", "zero"], ["g"]),
             n("Cast", ["g"], ["gf"], to=TensorProto.FLOAT), n("Add", ["w", "gf"], ["out"])]  # fmt: skip
    model = make_typed_model(nodes, {"x": (4, 2, 3)}, ["out"], {"mask": mask, "zero": np.float32(0)})
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    inferon.compile(model, tmp_path / "m.so")
    np.testing.assert_array_equal(inferon.load(tmp_path / "m.so").run({"x": x})["out"],
                                  run_onnxruntime(model, {"x": x})[0])  # fmt: skip


def test_bool_inputs_and_outputs(tmp_path):
    """Bool graph inputs and outputs are numpy bool arrays (bytes 0 / 1 in the C API, INFERON_BOOL);
    a wrong dtype is rejected like any other."""
    n = helper.make_node
    nodes = [n("Greater", ["x", "zero"], ["pos"]), n("And", ["a", "pos"], ["both"]), n("Not", ["both"], ["neither"]),
             n("Where", ["a", "x", "zero"], ["w"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info("a", TensorProto.BOOL, [2, 5]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("neither", TensorProto.BOOL, [2, 5]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 5])],
        [numpy_helper.from_array(np.float32(0), "zero")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(3)
    feeds = {"a": rng.random((2, 5)) < 0.5, "x": rng.standard_normal((2, 5)).astype(np.float32)}
    inferon.compile(model, tmp_path / "m.so")
    cm = inferon.load(tmp_path / "m.so")
    assert [i.dtype for i in cm.inputs] == [np.dtype(bool), np.dtype(np.float32)]
    got = cm.run(feeds)
    ref = run_onnxruntime(model, feeds)
    assert got["neither"].dtype == np.bool_
    np.testing.assert_array_equal(got["neither"], ref[0])
    np.testing.assert_array_equal(got["w"], ref[1])
    with pytest.raises(RuntimeCallError, match="expected dtype bool"):
        cm.run({"a": feeds["a"].astype(np.uint8), "x": feeds["x"]})


def test_bool_constant_output_is_reported(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("m", TensorProto.BOOL, [3])],
        [numpy_helper.from_array(np.array([True, False, True]), "m")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match="graph output 'm' is a bool constant"):
        inferon.compile(model, tmp_path / "m.so")
