"""Bad input gets a clear error naming the node, op and problem: import, compile and run time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import inferon
from inferon.errors import ModelImportError, RuntimeCallError, UnsupportedError
from tests.conftest import make_model


def test_malformed_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf\xff\xff\xff")
    with pytest.raises(ModelImportError, match="not a valid ONNX model"):
        inferon.compile(path, tmp_path / "m.so")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="does not exist"):
        inferon.compile(tmp_path / "nope.onnx", tmp_path / "m.so")


def test_missing_initializer(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv_a")], {"x": (1, 3, 8, 8)}, ["y"])
    with pytest.raises(ModelImportError, match=r"node 'conv_a', op Conv.*input 'w'.*missing initializer"):
        inferon.compile(model, tmp_path / "m.so")


def test_wrong_rank(tmp_path: Path) -> None:
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_b")],
        {"x": (1, 3, 8, 8)}, ["y"], {"w": np.ones((4, 3, 3), np.float32)},
    )  # fmt: skip
    with pytest.raises(ModelImportError, match=r"node 'conv_b', op Conv \(opset 17\): weight rank 3 differs"):
        inferon.compile(model, tmp_path / "m.so")


def test_unsupported_op(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Hardmax", ["x"], ["y"], axis=-1, name="hm")], {"x": (2, 2)}, ["y"])
    with pytest.raises(UnsupportedError, match=r"node 'hm', op Hardmax \(opset 17\): operator is not supported"):
        inferon.compile(model, tmp_path / "m.so")


def test_unsupported_attribute(tmp_path: Path) -> None:
    model = make_model([helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], name="mp")],
                       {"x": (1, 1, 4, 4)}, ["y"])  # fmt: skip
    with pytest.raises(UnsupportedError, match="node 'mp', op MaxPool.*Indices"):
        inferon.compile(model, tmp_path / "m.so")


def test_non_float_input(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT32, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match="input 'x' has dtype INT32"):
        inferon.compile(model, tmp_path / "m.so")


def test_dynamic_shape_needs_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dynamic batch (dimension 0) defaults to 1 with a notice; any other dynamic dimension needs
    --input-shape."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ("N", 3)}, ["y"])  # type: ignore[dict-item]
    # (an IR dump bypasses the compile cache, so the importer runs and prints its notice)
    cm = inferon.load(inferon.compile(model, tmp_path / "b.so", dump_ir=tmp_path / "ir"))
    assert cm.inputs[0].shape == (1, 3)
    assert "dynamic batch dimension ('N'): compiling for batch 1" in capsys.readouterr().err
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    np.testing.assert_array_equal(cm(x), np.maximum(x, 0))
    spatial = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, "C")}, ["y"])  # type: ignore[dict-item]
    with pytest.raises(ModelImportError, match=r"input 'x' has a dynamic dimension 1 \('C'\).*--input-shape"):
        inferon.compile(spatial, tmp_path / "m.so")
    lib = inferon.compile(model, tmp_path / "m.so", input_shapes={"x": (4, 3)})
    assert inferon.load(lib).inputs[0].shape == (4, 3)
    with pytest.raises(ModelImportError, match="conflicts with the model's dimension 1 = 3"):
        inferon.compile(model, tmp_path / "m.so", input_shapes={"x": (4, 5)})
    with pytest.raises(ModelImportError, match="unknown input"):
        inferon.compile(model, tmp_path / "m.so", input_shapes={"z": (4, 3)})


def test_shape_mismatch_in_graph(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Add", ["x", "z"], ["y"], name="add_bad")],
                       {"x": (2, 3), "z": (4, 3)}, ["y"])  # fmt: skip
    with pytest.raises(ModelImportError, match=r"node 'add_bad', op Add.*do not broadcast"):
        inferon.compile(model, tmp_path / "m.so")


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> inferon.CompiledModel:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)}, ["y"])
    return inferon.load(inferon.compile(model, tmp_path_factory.mktemp("relu") / "m.so"))


def test_run_wrong_shape(relu_model: inferon.CompiledModel) -> None:
    with pytest.raises(RuntimeCallError, match=r"'x'.*\[2, ?3\].*\[3, ?2\]"):
        relu_model(np.zeros((3, 2), np.float32))


def test_run_wrong_dtype(relu_model: inferon.CompiledModel) -> None:
    with pytest.raises(RuntimeCallError, match=r"'x'.*float32.*float64"):
        relu_model(np.zeros((2, 3), np.float64))


def test_run_wrong_count_and_name(relu_model: inferon.CompiledModel) -> None:
    with pytest.raises(RuntimeCallError, match="1 input"):
        relu_model(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeCallError, match="'nope'"):
        relu_model.run({"nope": np.zeros((2, 3), np.float32)})


def test_run_correct(relu_model: inferon.CompiledModel) -> None:
    x = np.array([[-1, 0, 1], [2, -3, 4]], np.float32)
    np.testing.assert_array_equal(relu_model(x), np.maximum(x, 0))


def test_load_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not an elf file")
    with pytest.raises(inferon.InferonError):
        inferon.load(bogus)
    with pytest.raises(inferon.InferonError):
        inferon.load(tmp_path / "missing.so")


def test_opset_too_old(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2,)}, ["y"], opset=6)
    with pytest.raises(UnsupportedError, match="opset 6 is too old"):
        inferon.compile(model, tmp_path / "m.so")


def test_unknown_domain(tmp_path: Path) -> None:
    node = helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft", name="fc")
    model = make_model([node], {"x": (2,)}, ["y"])
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedError, match="node 'fc', op FusedConv.*domain 'com.microsoft'"):
        inferon.compile(model, tmp_path / "m.so")


def test_opset_newer_than_onnx_knows(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2,)}, ["y"], opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(UnsupportedError, match="newer than the installed onnx package knows"):
        inferon.compile(model, tmp_path / "m.so")


def test_graph_output_listed_twice(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["a"])], {"x": (2, 3)}, ["a", "a"])
    with pytest.raises(UnsupportedError, match="graph output 'a' is listed twice"):
        inferon.compile(model, tmp_path / "m.so")


def test_quantization_options_without_quantize(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)}, ["y"])
    with pytest.raises(inferon.InferonError, match="--calibration, --keep-float: only used with --quantize int8"):
        inferon.compile(model, tmp_path / "m.so", calibration={"x": np.zeros((1, 2, 3))}, keep_float=["0"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_calibration_data(tmp_path: Path, bad: float) -> None:
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": (1, 2, 4, 4)}, ["y"],
                       {"w": np.ones((3, 2, 1, 1), np.float32)})  # fmt: skip
    data = np.zeros((3, 1, 2, 4, 4), np.float32)
    data[1, 0, 1, 2, 2] = bad
    word = "NaN" if np.isnan(bad) else "infinite"
    with pytest.raises(inferon.InferonError, match=f"calibration sample 1 of input 'x' holds {word} values"):
        inferon.compile(model, tmp_path / "m.so", quantize="int8", calibration={"x": data})


def test_maxpool_storage_order_without_indices(tmp_path: Path) -> None:
    """storage_order only orders MaxPool's Indices output: without it the pool runs as usual."""
    from inferon.testing import run_onnxruntime

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], storage_order=1)
    model = make_model([node], {"x": (1, 2, 4, 6)}, ["y"])
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(inferon.load(inferon.compile(model, tmp_path / "m.so"))(x),
                                  run_onnxruntime(model, {"x": x})[0])  # fmt: skip


@pytest.mark.parametrize("name", ['x"1', "x\\n1", "C:\\data\\in", "x\n1", "größe"])
def test_tensor_names_are_kept_as_given(tmp_path: Path, name: str) -> None:
    """Input / output names reach the C runtime as C string literals, escaped."""
    model = make_model([helper.make_node("Relu", [name], [name + "_out"])], {name: (2, 3)}, [name + "_out"])
    cm = inferon.load(inferon.compile(model, tmp_path / "m.so"))
    assert cm.input_names == [name] and cm.output_names == [name + "_out"]
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(cm.run({name: x})[name + "_out"], np.maximum(x, 0))


def test_run_time_zero_point_of_quantize_linear(tmp_path: Path) -> None:
    """A zero point fed as a graph input (exported models carry it as an initializer) is named as
    needing to be a compile-time constant, not as an unsupported quantized-tensor op."""
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], name="q")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("zp", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])],
        [onnx.numpy_helper.from_array(np.array(0.5, np.float32), "s")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match=r"node 'q', op QuantizeLinear.*zero point \('zp'\) must be a compile-time"):
        inferon.compile(model, tmp_path / "m.so")
