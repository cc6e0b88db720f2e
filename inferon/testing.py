"""Helpers for tests and benchmarks: the real models shipped in the onnx package, with random weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
from onnx import numpy_helper

from inferon.cpu import cpu_flags

LIGHT_MODELS = (
    "resnet50", "squeezenet", "shufflenet", "inception_v1", "inception_v2",
    "densenet121", "bvlc_alexnet", "vgg19", "zfnet512",
)  # fmt: skip


def light_model_path(name: str) -> Path:
    """Path of `light_<name>.onnx` inside the installed onnx package."""
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in this onnx installation")
    return path


def light_reference_output(name: str) -> np.ndarray:
    """The output the onnx package ships for `light_<name>.onnx` on an all-ones input."""
    path = light_model_path(name).with_name(f"light_{name}_output_0.pb")
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _const_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def randomize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Replace every ConstantOfShape fill by a seeded random initializer of the same shape.

    Tensors of rank >= 2 (conv/FC weights) get He-scaled normals; vectors (biases, BatchNorm
    parameters) get values in [0.5, 1) so that variances stay positive and activations stay O(1).
    """
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape_value = _const_value(graph, node.input[0])
        if shape_value is None:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in shape_value)
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            array = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        else:
            array = rng.random(shape) * 0.5 + 0.5
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return out


def onnxruntime_int8_is_exact() -> bool:
    """Whether ONNX Runtime's u8 x s8 kernels (QLinearConv, QGemm, MatMulInteger, fused QDQ) compute
    exact integer sums on this CPU. With AVX-512 VNNI or AVX-VNNI they do; with AVX2 alone MLAS multiplies
    byte pairs with vpmaddubsw, whose 16-bit pair sums saturate for full-range int8 weights (seen up to
    70 output steps off the exact result)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def run_onnxruntime(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int = 1, *, exact_int8: bool = False
) -> list[np.ndarray]:
    """Run a model with ONNX Runtime's CPU provider (all graph optimizations).

    `exact_int8`: the model is QDQ and the result must follow ONNX's definition exactly; where ORT's
    int8 kernels are not exact on this CPU (`onnxruntime_int8_is_exact`), graph optimizations are turned
    off so that ORT does not fuse QDQ groups into them and runs DequantizeLinear -> float op ->
    QuantizeLinear as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if exact_int8 and not onnxruntime_int8_is_exact():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def expose_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the input of the final Softmax as a graph output (a softmax of random weights saturates)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    softmax = [n for n in out.graph.node if n.op_type == "Softmax"]
    if softmax:
        name = softmax[-1].input[0]
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def prune_onnx(model: onnx.ModelProto, spec: str) -> onnx.ModelProto:
    """A copy of `model` with its Conv/Gemm/MatMul weight initializers magnitude-pruned like
    `inferon compile --prune SPEC` does ('unstructured:0.9', 'block1x4:0.9' or '2:4', per layer), so that ONNX Runtime
    and Inferon run the same pruned model. Skipped like the prune pass: layers reading a graph input
    (the stem) and depthwise convs; 2:4 and 1x4 groups run along the reduction axis K."""
    from inferon.passes.graph.prune import parse_prune_spec, prune_matrix

    parse_prune_spec(spec)  # a bad spec fails before any work
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.input[0] in inputs or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None:
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            if attrs.get("group", 1) > 1 and w.shape[1] == 1:
                continue  # depthwise
            a = w.reshape(w.shape[0], -1)
        elif w.ndim != 2:
            continue
        else:  # A [N_out, K]
            a = w if (node.op_type == "Gemm" and attrs.get("transB", 0)) else w.T
        a = prune_matrix(a, spec, math.prod(w.shape[2:]) if node.op_type == "Conv" else 1)
        if node.op_type == "Conv":
            pruned = a.reshape(w.shape)
        else:
            pruned = a if (node.op_type == "Gemm" and attrs.get("transB", 0)) else a.T
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned, dtype=np.float32), init.name))
    return out


def _modernized(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy ONNX Runtime's quantizer takes: old models (IR < 7, opset < 13, initializers listed as
    inputs) upgraded to IR 8 / opset 13, initializers dropped from the inputs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    if m.ir_version < 7 or opset < 13:
        m.ir_version = max(m.ir_version, 8)
        m = onnx.version_converter.convert_version(m, 13)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]  # constants, not overridable inputs
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    return m


def quantize_onnxruntime_dynamic(model: onnx.ModelProto, weight_type: str = "int8", per_channel: bool = False,
                                 reduce_range: bool = False) -> onnx.ModelProto:  # fmt: skip
    """`model` quantized by ONNX Runtime's `quantize_dynamic` (DynamicQuantizeLinear, then
    ConvInteger / MatMulInteger on int8 or uint8 weights; 7-bit weights with `reduce_range`)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = str(Path(tmp) / "f32.onnx"), str(Path(tmp) / "dyn.onnx")
        onnx.save(_modernized(model), src)
        quantize_dynamic(src, dst, per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8)  # fmt: skip
        return onnx.load(dst)


def quantize_onnxruntime(
    model: onnx.ModelProto,
    calibration: list[dict[str, np.ndarray]],
    *,
    per_channel: bool = True,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    fmt: str = "qdq",
    extra_options: dict[str, object] | None = None,
    reduce_range: bool = False,
) -> onnx.ModelProto:
    """`model` statically quantized by ONNX Runtime's own tools (quant_pre_process, then
    quantize_static with min/max calibration on `calibration`): QDQ (or QOperator, `fmt`) with
    int8 (or uint8) weights, per channel or not, and uint8 or int8 activations; `extra_options` go
    to quantize_static (e.g. {"WeightSymmetric": True}); `reduce_range` asks for 7-bit weights. Old models (IR < 4, initializers
    listed as inputs) are upgraded to IR 8 / opset 13 first."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (str(Path(tmp) / n) for n in ("f32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(_modernized(model), src)
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(
            pre, dst, Reader(),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
            extra_options=extra_options or {}, reduce_range=reduce_range,
        )  # fmt: skip
        return onnx.load(dst)
