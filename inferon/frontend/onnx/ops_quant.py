"""Converters for quantized ONNX: QuantizeLinear / DequantizeLinear (QDQ form), the QOperator ops
QLinearConv / QLinearMatMul (and ONNX Runtime's com.microsoft QLinear* ops), MatMulInteger /
ConvInteger and Cast of integer tensors (and of ArgMax / ArgMin's int64 indices).

Everything is imported as QDQ: `graph.quantize` / `graph.dequantize` around float ops, quantized
weights as `graph.weight`s of a `!graph.quant` type followed by `graph.dequantize`. QLinearConv and
QLinearMatMul expand into that same form (dequantize inputs, float op, quantize the result), so one
pass, `fold-qdq`, turns both forms into the quantized ops the kernels run; whatever it cannot fold
stays float between explicit quantize / dequantize.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import NodeProto
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.registry import MICROSOFT, converter, lookup
from inferon.ir.attrs import QuantType
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import quant_of, shape_of, tensor_type

STORAGE = (np.uint8, np.int8, np.int32)


def _params(
    ctx: ImportContext, scale_name: str, zp_name: str, *, rank: int, default_dtype: type, what: str
) -> tuple[np.ndarray, np.ndarray, int, np.dtype]:
    """(scales, zero_points, axis or -1, storage dtype) of a Q/DQ node's parameters."""
    scale = ctx.require_const(scale_name, f"{what} scale").astype(np.float32)
    if zp_name:
        zp_arr = ctx.require_const(zp_name, f"{what} zero point")
        dtype = zp_arr.dtype
    else:
        dtype = np.dtype(default_dtype)
        zp_arr = np.zeros(scale.shape, dtype)
    if dtype not in [np.dtype(t) for t in STORAGE]:
        raise ctx.unsupported(f"{what} type {dtype} (only uint8, int8 and int32 are supported)")
    if ctx.attr("block_size", 0):
        raise ctx.unsupported("blocked quantization (block_size) is not supported")
    if scale.size != zp_arr.size or scale.ndim > 1:
        raise ctx.error(f"{what} scale {list(scale.shape)} and zero point {list(zp_arr.shape)} do not match")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ctx.error(f"{what} scale must be positive and finite, got {scale.ravel()[:4].tolist()}")
    axis = -1
    if scale.ndim == 1 and scale.size > 1:
        axis = int(ctx.attr("axis", 1))
        if not -rank <= axis < rank:
            raise ctx.error(f"axis {axis} is out of range for rank {rank}")
        axis %= rank
    return scale.ravel(), zp_arr.astype(np.int64).ravel(), axis, dtype


def quant_type(ctx: ImportContext, node: NodeProto, rank: int, default_dtype: type, what: str) -> QuantType:
    scales, zps, axis, dtype = _params(
        ctx, node.input[1], ctx.input(2), rank=rank, default_dtype=default_dtype, what=what
    )
    return QuantType.make(dtype, scales.tolist(), zps.tolist(), axis)


@converter("QuantizeLinear", since=10)
def convert_quantize(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    if quant_of(x) is not None:
        raise ctx.unsupported("QuantizeLinear of an already quantized tensor")
    out_dtype = ctx.attr("output_dtype", 0)
    default = np.uint8
    if out_dtype:
        default = onnx.helper.tensor_dtype_to_np_dtype(out_dtype)
    q = quant_type(ctx, node, len(shape_of(x)), default, "QuantizeLinear")
    if not q.per_tensor:
        raise ctx.unsupported("per-axis QuantizeLinear of a run-time tensor (only per-tensor activations)")
    if q.dtype.itemsize != 1:
        raise ctx.unsupported(f"QuantizeLinear to {q.dtype} (only uint8 and int8)")
    return [ctx.emit(graph.QuantizeOp(x, q)).results[0]]


@converter("DequantizeLinear", since=10)
def convert_dequantize(ctx: ImportContext, node: NodeProto) -> list[Value]:
    const = ctx.const(node.input[0])
    rank = len(ctx.shape(node.input[0]))
    if const is not None:  # a quantized weight: keep its integers for fold-qdq
        if const.dtype not in [np.dtype(t) for t in STORAGE]:
            raise ctx.unsupported(f"DequantizeLinear of a {const.dtype} constant (only uint8, int8, int32)")
        q = quant_type(ctx, node, rank, const.dtype.type, "DequantizeLinear")
        if q.dtype != const.dtype:
            raise ctx.error(f"zero point type {q.dtype} differs from the input type {const.dtype}")
        w = ctx.qweight(const, q, node.input[0])
        ctx.dequantized[node.output[0]] = (const, q)
        return [ctx.emit(graph.DequantizeOp(w)).results[0]]
    x = ctx.value(node.input[0])
    if x in ctx.dynamic:  # (y - y_zero_point) * y_scale of DynamicQuantizeLinear's results
        owner = _dynamic_owner(ctx, x, ctx.input(2), "DequantizeLinear")
        if ctx.value(node.input[1]) is not owner.scale:
            raise ctx.unsupported("DequantizeLinear of a DynamicQuantizeLinear result with another scale")
        return _run_expanded(ctx, node, "Mul", {"a": x, "b": owner.scale}, drop=("axis", "block_size"))
    qx = quant_of(x)
    if qx is None:
        raise ctx.error("DequantizeLinear input is not a quantized tensor (expected uint8/int8/int32)")
    q = quant_type(ctx, node, rank, qx.dtype.type, "DequantizeLinear")
    return [ctx.emit(graph.DequantizeOp(relabel(ctx, x, q, "DequantizeLinear"))).results[0]]


def relabel(ctx: ImportContext, x: SSAValue, q: QuantType, what: str) -> SSAValue:
    """`x` (a quantized run-time tensor) read with the parameters `q`: the same stored integers under
    another scale / zero point (a DequantizeLinear whose parameters differ from the QuantizeLinear's,
    an integer graph input, MatMulInteger's zero points) -- a `graph.reshape` to the relabelled type."""
    qx = quant_of(x)
    if qx == q:
        return x
    if qx is None or qx.dtype != q.dtype:
        raise ctx.error(f"{what}: the input holds {qx.dtype if qx else 'float32'} values, the node reads {q.dtype}")
    if not q.per_tensor and shape_of(x)[q.axis.value.data] != len(q.scale_array()):
        raise ctx.error(f"{what}: {len(q.scale_array())} scales for {shape_of(x)[q.axis.value.data]} channels")
    return ctx.emit(graph.ReshapeOp.create(operands=[x], result_types=[tensor_type(shape_of(x), q)])).results[0]


def _dequantized(ctx: ImportContext, names: tuple[str, str, str], what: str, channels_axis: int) -> SSAValue:
    """DequantizeLinear of (value, scale, zero point) given by name, for QLinear* expansion."""
    value, scale, zp = names
    const = ctx.const(value)
    rank = len(ctx.shape(value))
    # QLinear ops have no axis attribute: per-channel scales run along `channels_axis`
    scales, zps, axis, dtype = _params(ctx, scale, zp, rank=rank, default_dtype=np.uint8, what=what)
    if axis >= 0:
        axis = channels_axis % rank
        if ctx.shape(value)[axis] != scales.size:
            raise ctx.error(f"{what}: {scales.size} scales for {ctx.shape(value)[axis]} channels")
    q = QuantType.make(dtype, scales.tolist(), zps.tolist(), axis)
    if const is not None:
        if const.dtype != dtype:
            raise ctx.error(f"{what}: zero point type {dtype} differs from the tensor type {const.dtype}")
        return ctx.emit(graph.DequantizeOp(ctx.qweight(const, q, value))).results[0]
    return ctx.emit(graph.DequantizeOp(relabel(ctx, ctx.value(value), q, what))).results[0]


def _requantized(ctx: ImportContext, y: SSAValue, scale: str, zp: str, what: str) -> SSAValue:
    scales, zps, axis, dtype = _params(ctx, scale, zp, rank=len(shape_of(y)), default_dtype=np.uint8, what=what)
    if axis >= 0 or dtype.itemsize != 1:
        raise ctx.unsupported(f"{what} must be a per-tensor uint8/int8 quantization")
    return ctx.emit(graph.QuantizeOp(y, QuantType.make(dtype, scales.tolist(), zps.tolist()))).results[0]


def _bias(ctx: ImportContext, name: str, x_scale: str, w_scale: str, channels: int) -> SSAValue:
    """The int32 bias of QLinearConv, dequantized with scale x_scale * w_scale."""
    b = ctx.require_const(name, "QLinearConv bias")
    if b.dtype != np.int32 or b.shape != (channels,):
        raise ctx.error(f"QLinearConv bias must be int32 [{channels}], got {b.dtype} {list(b.shape)}")
    sx = ctx.require_const(x_scale, "x_scale").astype(np.float32).ravel()
    sw = ctx.require_const(w_scale, "w_scale").astype(np.float32).ravel()
    scales = np.broadcast_to(sx * sw, (channels,))
    q = QuantType.make(np.int32, scales.tolist(), [0] * channels, 0 if channels > 1 else -1)
    return ctx.emit(graph.DequantizeOp(ctx.qweight(b, q, name))).results[0]


def _run_expanded(
    ctx: ImportContext, node: NodeProto, op_type: str, inputs: dict[str, SSAValue | str | None],
    drop: tuple[str, ...] = (), opset: int | None = None,
) -> list[Value]:
    """Run the default-domain converter of `op_type` (of `opset`, default the model's) on SSA values
    (or existing value names), with `node`'s attributes (but those in `drop`); None inputs are absent."""
    names, temporary = [], []
    for key, value in inputs.items():
        if value is None or isinstance(value, str):
            names.append(value or "")
            continue
        name = f"{node.name}::{key}"
        ctx.env[name] = value
        names.append(name)
        temporary.append(name)
    clone = onnx.helper.make_node(op_type, names, [f"{node.name}::y{i}" for i in range(len(node.output))], name=node.name)
    clone.attribute.extend(a for a in node.attribute if a.name not in drop)
    saved, saved_opset = ctx.node, ctx.opset
    ctx.node, ctx.opset = clone, opset or ctx.opset
    try:
        return lookup(clone, ctx.opset)(ctx, clone)
    finally:
        ctx.node, ctx.opset = saved, saved_opset
        for name in temporary:
            del ctx.env[name]


@converter("QLinearConv", since=10)
def convert_qlinear_conv(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if len(node.input) < 8:
        raise ctx.error("QLinearConv needs 8 inputs (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point)")
    x = _dequantized(ctx, (node.input[0], node.input[1], node.input[2]), "QLinearConv x", 1)
    w = _dequantized(ctx, (node.input[3], node.input[4], node.input[5]), "QLinearConv w", 0)
    inputs = {"x": x, "w": w}
    if ctx.input(8):
        inputs["b"] = _bias(ctx, node.input[8], node.input[1], node.input[4], shape_of(w)[0])
    y = _run_expanded(ctx, node, "Conv", {**inputs})[0]
    assert isinstance(y, SSAValue)
    return [_requantized(ctx, y, node.input[6], node.input[7], "QLinearConv y")]


@converter("QLinearMatMul", since=10)
def convert_qlinear_matmul(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if len(node.input) != 8:
        raise ctx.error("QLinearMatMul needs 8 inputs (a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point)")
    a = _dequantized(ctx, (node.input[0], node.input[1], node.input[2]), "QLinearMatMul a", -2)
    b = _dequantized(ctx, (node.input[3], node.input[4], node.input[5]), "QLinearMatMul b", -1)
    y = _run_expanded(ctx, node, "MatMul", {"a": a, "b": b})[0]
    assert isinstance(y, SSAValue)
    return [_requantized(ctx, y, node.input[6], node.input[7], "QLinearMatMul y")]


# ------------------------------------------------------------------------- QOperator contrib ops
# ONNX Runtime's QOperator models use com.microsoft ops besides QLinearConv / QLinearMatMul; each
# expands to dequantize -> the float op -> quantize, like the QDQ form.


@converter("QLinearAdd", "QLinearMul", domain=MICROSOFT)
def convert_qlinear_binary(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if len(node.input) < 7:
        raise ctx.error(f"{node.op_type} needs 7 or 8 inputs (A, A_scale, A_zp, B, B_scale, B_zp, C_scale[, C_zp])")
    a = _dequantized(ctx, (node.input[0], node.input[1], node.input[2]), f"{node.op_type} A", 1)
    b = _dequantized(ctx, (node.input[3], node.input[4], node.input[5]), f"{node.op_type} B", 1)
    y = _run_expanded(ctx, node, node.op_type[len("QLinear"):], {"a": a, "b": b})[0]
    assert isinstance(y, SSAValue)
    return [_requantized(ctx, y, node.input[6], ctx.input(7), f"{node.op_type} C")]


@converter("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax",
           domain=MICROSOFT)
def convert_qlinear_unary(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if len(node.input) < 4:
        raise ctx.error(f"{node.op_type} needs X, X_scale, X_zero_point, Y_scale[, Y_zero_point]")
    if ctx.attr("channels_last", 0):
        raise ctx.unsupported(f"{node.op_type} with channels_last=1")
    x = _dequantized(ctx, (node.input[0], node.input[1], node.input[2]), f"{node.op_type} X", 1)
    # QLinearSoftmax's `opset` attribute: the Softmax semantics it follows (before 13: 2-D coercion)
    opset = int(ctx.attr("opset", 0)) or None
    y = _run_expanded(ctx, node, node.op_type[len("QLinear"):], {"x": x}, drop=("channels_last", "opset"),
                      opset=opset)[0]
    assert isinstance(y, SSAValue)
    return [_requantized(ctx, y, node.input[3], ctx.input(4), f"{node.op_type} Y")]


@converter("QLinearConcat", domain=MICROSOFT)
def convert_qlinear_concat(ctx: ImportContext, node: NodeProto) -> list[Value]:
    rest = list(node.input[2:])
    if len(rest) % 3 or not rest:
        raise ctx.error("QLinearConcat needs Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples")
    parts: dict[str, SSAValue | str | None] = {}
    for i in range(0, len(rest), 3):
        parts[f"x{i // 3}"] = _dequantized(ctx, (rest[i], rest[i + 1], rest[i + 2]), "QLinearConcat input", 1)
    y = _run_expanded(ctx, node, "Concat", parts)[0]
    assert isinstance(y, SSAValue)
    return [_requantized(ctx, y, node.input[0], node.input[1], "QLinearConcat Y")]


@converter("QGemm", domain=MICROSOFT)
def convert_qgemm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if len(node.input) < 6:
        raise ctx.error("QGemm needs A, a_scale, a_zero_point, B, b_scale, b_zero_point[, C, y_scale, y_zero_point]")
    a = _dequantized(ctx, (node.input[0], node.input[1], node.input[2]), "QGemm A", 1)
    trans_b = int(ctx.attr("transB", 0))
    b = _dequantized(ctx, (node.input[3], node.input[4], node.input[5]), "QGemm B", 0 if trans_b else 1)
    c = None
    if ctx.input(6):
        n_out = shape_of(b)[0 if trans_b else 1]
        c = _bias(ctx, node.input[6], node.input[1], node.input[4], n_out)
    y = _run_expanded(ctx, node, "Gemm", {"a": a, "b": b, "c": c})[0]
    assert isinstance(y, SSAValue)
    if not ctx.input(7):
        return [y]  # float output
    return [_requantized(ctx, y, node.input[7], ctx.input(8), "QGemm y")]


# ops that only move or select values: run in float on the dequantized input, quantized back with
# the input's own parameters (exact: no value changes)
PASSTHROUGH = frozenset({
    "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout",
    "GlobalMaxPool", "Slice", "Split", "Pad", "Resize", "DepthToSpace", "SpaceToDepth", "Gather",
    "GatherND", "Expand", "Tile",
})  # fmt: skip


# of those, the ones whose converters only emit `graph.slice` / concat / reshape / pad of the tensor:
# they run on the per-tensor quantized integers directly (Pad's constant is a stored integer, as in
# ONNX: on the dequantized values it would not be)
STORED_WINDOWS = frozenset({"Slice", "Split", "Gather", "GatherND", "Expand", "Tile", "Pad"})


def convert_on_dequantized(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """A data-movement op on a quantized tensor (QOperator models keep MaxPool, Reshape... on
    uint8): dequantize, run the float converter, quantize the result with the same parameters
    (Slice / Split / Gather / GatherND / Expand / Tile / Pad of a per-tensor quantized tensor copy its
    integers instead)."""
    x = ctx.env[node.input[0]]
    qx = quant_of(x) if isinstance(x, SSAValue) else None
    others = [n for n in node.input[1:] if n and isinstance(ctx.env[n], SSAValue) and quant_of(ctx.env[n])]
    if qx is None or others or not qx.per_tensor:
        raise ctx.unsupported(f"{node.op_type} on quantized tensors (only its first input may be quantized)")
    if node.op_type in STORED_WINDOWS:  # graph.slice copies the stored integers (same parameters)
        return lookup(node, ctx.opset)(ctx, node)
    inputs: dict[str, SSAValue | str | None] = {"x": ctx.emit(graph.DequantizeOp(x)).results[0]}
    for i, name in enumerate(node.input[1:], start=1):
        inputs[f"i{i}"] = name
    results = []
    for y in _run_expanded(ctx, node, node.op_type, inputs):
        assert isinstance(y, SSAValue)
        results.append(ctx.emit(graph.QuantizeOp(y, qx)).results[0])
    return results


# ----------------------------------------------------------------- integer ops (exact in float32)
# MatMulInteger / ConvInteger: the integer product of (a - a_zero_point) and (b - b_zero_point),
# imported as the float op on those exact integer values (dequantized with scale 1). The int32
# result is a float32 tensor of the same integers -- exact while every partial sum stays below
# 2^24 (e.g. K <= 258 for uint8 x uint8); beyond that the float accumulation rounds (relative
# 1e-7-ish), where ONNX Runtime rounds once, in the Cast to float that follows in practice. Cast to
# float of a uint8 / int8 tensor reads its stored integers.


def _dynamic_owner(ctx: ImportContext, y: SSAValue, zp_name: str, what: str) -> graph.DynamicQuantizeOp:
    """The DynamicQuantizeLinear whose integers `y` are, checking `zp_name` is its zero point."""
    owner = y.owner
    assert isinstance(owner, graph.DynamicQuantizeOp)
    if not zp_name or ctx.value(zp_name) is not owner.zero_point:
        raise ctx.unsupported(f"{what} of a DynamicQuantizeLinear result must use its zero point output")
    return owner


@converter("DynamicQuantizeLinear", since=11)
def convert_dynamic_quantize(ctx: ImportContext, node: NodeProto) -> list[Value]:
    op = ctx.emit(graph.DynamicQuantizeOp(ctx.value(node.input[0])))
    assert isinstance(op, graph.DynamicQuantizeOp)
    ctx.dynamic.update((op.values, op.zero_point))
    return [op.values, op.scale, op.zero_point]


def _integers(ctx: ImportContext, name: str, zp_name: str, channels_axis: int, what: str) -> SSAValue:
    """The float32 tensor of (integer input `name` - its zero point `zp_name`) (a scalar, or one
    per channel along `channels_axis` for a constant input)."""
    if ctx.has(name) and not isinstance(ctx.env[name], np.ndarray) and ctx.env[name] in ctx.dynamic:
        y = ctx.value(name)
        _dynamic_owner(ctx, y, zp_name, what)
        return y  # already the integers minus the zero point
    const = ctx.const(name)
    zp = ctx.require_const(zp_name, f"{what} zero point") if zp_name else None
    if const is not None:
        dtype = const.dtype
    elif (qx := quant_of(ctx.value(name))) is not None:
        dtype = qx.dtype
    else:
        raise ctx.error(f"{what} must be a uint8 / int8 tensor, got float32")
    if dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ctx.unsupported(f"{what} of type {dtype} (only uint8 and int8)")
    zps = np.zeros(1, dtype) if zp is None else zp.ravel()
    if zps.dtype != dtype:
        raise ctx.error(f"{what}: zero point type {zps.dtype} differs from the tensor type {dtype}")
    rank = len(ctx.shape(name))
    axis = -1
    if zps.size > 1:
        axis = channels_axis % rank
        if const is None or ctx.shape(name)[axis] != zps.size:
            raise ctx.unsupported(f"{what}: {zps.size} zero points (per-channel zero points only for a constant "
                                  f"with {zps.size} channels along axis {axis})")  # fmt: skip
    q = QuantType.make(dtype, [1.0] * zps.size, zps.astype(np.int64).tolist(), axis)
    if const is not None:
        return ctx.emit(graph.DequantizeOp(ctx.qweight(const, q, name))).results[0]
    return ctx.emit(graph.DequantizeOp(relabel(ctx, ctx.value(name), q, what))).results[0]


@converter("MatMulInteger", since=10)
def convert_matmul_integer(ctx: ImportContext, node: NodeProto) -> list[Value]:
    a = _integers(ctx, node.input[0], ctx.input(2), -2, "MatMulInteger A")
    b = _integers(ctx, node.input[1], ctx.input(3), -1, "MatMulInteger B")
    return _run_expanded(ctx, node, "MatMul", {"a": a, "b": b})


@converter("ConvInteger", since=10)
def convert_conv_integer(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = _integers(ctx, node.input[0], ctx.input(2), 1, "ConvInteger x")
    w = _integers(ctx, node.input[1], ctx.input(3), 0, "ConvInteger w")
    return _run_expanded(ctx, node, "Conv", {"x": x, "w": w})


@converter("Cast", since=6)
def convert_cast(ctx: ImportContext, node: NodeProto) -> list[Value]:
    to = int(ctx.attr("to", 0))
    x = ctx.value(node.input[0])
    if graph.is_index(x):
        return [_cast_indices(ctx, x, to)]
    q = quant_of(x)
    if to == onnx.TensorProto.BOOL and q is None:  # x != 0 as 1.0 / 0.0 (Or of x with itself)
        return [ctx.emit(graph.OrOp(x, x, shape_of(x))).results[0]]
    if to == onnx.TensorProto.FLOAT:
        if q is None:
            return [x]  # float -> float (or an integer-valued float: MatMulInteger's result)
        return [ctx.emit(graph.DequantizeOp(relabel(ctx, x, QuantType.make(q.dtype, [1.0], [0]), "Cast"))).results[0]]
    target = onnx.TensorProto.DataType.Name(to) if to in onnx.TensorProto.DataType.values() else str(to)
    if q is not None and to == {np.dtype(np.uint8): onnx.TensorProto.UINT8, np.dtype(np.int8): onnx.TensorProto.INT8}.get(q.dtype):
        return [x]
    raise ctx.unsupported(f"Cast of a run-time {q.dtype if q else 'float32'} tensor to {target} (only to FLOAT, "
                          "or of a uint8 / int8 tensor to its own type)")  # fmt: skip


def _cast_indices(ctx: ImportContext, x: SSAValue, to: int) -> SSAValue:
    """Cast of an int64 tensor (an ArgMax / ArgMin result): to INT64 it is itself; to FLOAT the
    arg-reduction is emitted again with f32 indices (the int64 one dies unless something else reads it)."""
    if to == onnx.TensorProto.INT64:
        return x
    owner = x.owner
    while isinstance(owner, graph.IdentityOp):
        owner = owner.operands[0].owner
    if to != onnx.TensorProto.FLOAT or not isinstance(owner, graph.ArgReduceOp):
        target = onnx.TensorProto.DataType.Name(to) if to in onnx.TensorProto.DataType.values() else str(to)
        raise ctx.unsupported(f"Cast of a run-time int64 tensor to {target} (only to FLOAT or INT64)")
    props = dict(owner.properties)
    return ctx.emit(graph.ArgReduceOp.create(operands=[owner.input], properties=props,
                                             result_types=[tensor_type(shape_of(x))])).results[0]  # fmt: skip
