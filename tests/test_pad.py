"""ONNX Pad: zero constant padding of the spatial axes folded into the convolution that reads it
(`fold-pad`), other Pads run as their own kernel; 8-bit tensors pad their stored integers; checked
against ONNX Runtime. Every mode / axis / rank: tests/test_pad_expand_tile.py."""

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


def test_pad_modes_stay_out_of_the_conv(tmp_path):
    """Only a zero constant Pad of H and W folds: reflect, non-zero, N / C and cropping Pads stay kernels."""
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3)).astype(np.float32)
    pads = {"reflect": [0, 0, 1, 1, 0, 0, 1, 1], "channels": [0, 1, 0, 0, 0, 0, 0, 0], "crop": [0, 0, -1, 1, 0, 0, 1, 1]}
    for name, p in pads.items():
        mode = "reflect" if name == "reflect" else "constant"
        wc = w if name != "channels" else np.concatenate([w, w[:, :1]], 1)
        nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode=mode), helper.make_node("Conv", ["p", "w"], ["y"])]
        model = _model(nodes, {"w": wc, "pads": np.array(p, np.int64)})
        so = inferon.compile(model, tmp_path / f"{name}.so", dump_ir=tmp_path / name)
        assert "graph.pad" in sorted((tmp_path / name).glob("*fold-pad.mlir"))[0].read_text(), name
        x = np.random.default_rng(3).standard_normal((1, 3, 9, 11)).astype(np.float32)
        got, want = inferon.load(so)(x), run_onnxruntime(model, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def _int_model(nodes, x_type, y_types, inits, opset=19):  # noqa: ANN001, ANN202
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", x_type, [1, 3, 5, 6])],
        [helper.make_tensor_value_info(n, t, None) for n, t in y_types.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_pad_of_8bit_input_pads_the_stored_integers(tmp_path, dtype):
    """Pad of a uint8 / int8 graph input: the constant is a stored integer, every mode copies integers."""
    onnx_type = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    p = np.array([0, 1, 2, 1, 0, 0, 1, 3], np.int64)
    nodes = [helper.make_node("Pad", ["x", "p", "v"], ["a"]),
             helper.make_node("Pad", ["x", "p"], ["b"], mode="reflect"),
             helper.make_node("Pad", ["x", "q"], ["c"], mode="wrap")]  # fmt: skip
    inits = {"p": p, "v": np.array(7, dtype), "q": np.array([0, 0, -1, 2, 0, 0, 1, -1], np.int64)}
    model = _int_model(nodes, onnx_type, dict.fromkeys("abc", onnx_type), inits)
    info = np.iinfo(dtype)
    x = np.random.default_rng(4).integers(info.min, info.max + 1, (1, 3, 5, 6)).astype(dtype)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    for g, w in zip(got, run_onnxruntime(model, {"x": x})):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w)


def test_pad_between_quantize_and_dequantize(tmp_path):
    """QuantizeLinear -> Pad (constant 3, a stored integer, not the zero point; reflect) -> DequantizeLinear,
    and DequantizeLinear -> Pad (float 0.3) -> QuantizeLinear, which fold-qdq runs on the integers with
    the quantized constant."""
    inits = {"s": np.array(0.05, np.float32), "z": np.array(128, np.uint8), "v": np.array(3, np.uint8),
             "f": np.array(0.3, np.float32), "p": np.array([0, 0, 1, 2, 0, 1, 2, 1], np.int64)}  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("Pad", ["q", "p", "v"], ["qa"]),
        helper.make_node("DequantizeLinear", ["qa", "s", "z"], ["a"]),
        helper.make_node("Pad", ["q", "p"], ["qb"], mode="reflect"),
        helper.make_node("DequantizeLinear", ["qb", "s", "z"], ["b"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Pad", ["d", "p", "f"], ["dp"]),
        helper.make_node("QuantizeLinear", ["dp", "s", "z"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["c"]),
    ]
    model = _int_model(nodes, TensorProto.FLOAT, dict.fromkeys("abc", TensorProto.FLOAT), inits, opset=13)
    so = inferon.compile(model, tmp_path / "m.so", dump_ir=tmp_path / "dump")
    folded = sorted((tmp_path / "dump").glob("*fold-qdq.mlir"))[0].read_text()
    assert folded.count('"graph.pad"') == 3 and "value = 1.340000e+02 : f32" in folded  # 128 + round(0.3 / 0.05)
    x = np.random.default_rng(5).standard_normal((1, 3, 5, 6)).astype(np.float32) * 3
    for g, w in zip(inferon.load(so)(x), run_onnxruntime(model, {"x": x})):
        np.testing.assert_array_equal(g, w)


def test_bad_pads_are_clear_errors(tmp_path):
    wrap = helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="pad_wrap")
    with pytest.raises(InferonError, match="pad_wrap.*unknown Pad mode 'wrap' at opset 13"):
        inferon.compile(_model([wrap], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}), tmp_path / "a.so")
    length = helper.make_node("Pad", ["x", "pads"], ["y"], name="pad_length")
    with pytest.raises(InferonError, match="pad_length.*do not match the rank-4 input"):
        inferon.compile(_model([length], {"pads": np.array([0, 1, 0, 1], np.int64)}), tmp_path / "b.so")
