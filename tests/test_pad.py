"""ONNX Pad: constant padding of the spatial axes, folded into the convolution that reads it
(`fold-pad`) or run as its own kernel; checked against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon
from inferon.errors import InferonError
from inferon.testing import run_onnxruntime


def _model(nodes, inits, opset=13, shape=(1, 3, 9, 11)):  # noqa: ANN001, ANN202
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [7, 13])
def test_zero_pad_folds_into_the_conv(tmp_path, opset):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    pads = [0, 0, 0, 1, 0, 0, 1, 2]  # "same" padding of a stride-2 conv, exported as a Pad
    if opset >= 11:
        pad = helper.make_node("Pad", ["x", "pads"], ["p"])
        inits = {"w": w, "pads": np.array(pads, np.int64)}
    else:
        pad = helper.make_node("Pad", ["x"], ["p"], pads=pads)
        inits = {"w": w}
    model = _model([pad, helper.make_node("Conv", ["p", "w"], ["y"], strides=[2, 2])], inits, opset)
    so = inferon.compile(model, tmp_path / "m.so", dump_ir=tmp_path / "dump")
    assert "graph.pad" not in sorted((tmp_path / "dump").glob("*fold-pad.mlir"))[0].read_text()
    x = rng.standard_normal((1, 3, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(inferon.load(so)(x), run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_nonzero_pad_runs_as_a_kernel(tmp_path):
    nodes = [helper.make_node("Pad", ["x", "pads", "v"], ["p"]), helper.make_node("Relu", ["p"], ["y"])]
    model = _model(nodes, {"pads": np.array([0, 0, 2, 1, 0, 0, 0, 3], np.int64), "v": np.array(1.5, np.float32)})
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 11)).astype(np.float32)
    out = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    np.testing.assert_array_equal(out, run_onnxruntime(model, {"x": x})[0])


def test_unsupported_pads_are_clear_errors(tmp_path):
    reflect = helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect", name="pad_reflect")
    with pytest.raises(InferonError, match="pad_reflect.*Pad mode 'reflect'"):
        inferon.compile(_model([reflect], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}), tmp_path / "a.so")
    channels = helper.make_node("Pad", ["x", "pads"], ["y"], name="pad_channels")
    with pytest.raises(InferonError, match="pad_channels.*only non-negative pads of the two spatial axes"):
        inferon.compile(_model([channels], {"pads": np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64)}), tmp_path / "b.so")
