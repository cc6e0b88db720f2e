"""Converters for data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, and
Shape/Size (which fold to constants because every shape is static)."""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.registry import converter
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i64_array, shape_of, tensor_type


def reshape(ctx: ImportContext, x: SSAValue, shape: tuple[int, ...]) -> SSAValue:
    """A `graph.reshape` of x to `shape` (no-op when unchanged)."""
    if shape_of(x) == tuple(shape):
        return x
    if math.prod(shape_of(x)) != math.prod(shape):
        raise ctx.error(f"cannot reshape {list(shape_of(x))} to {list(shape)}")
    op = graph.ReshapeOp.create(operands=[x], result_types=[tensor_type(shape)])
    return ctx.emit(op).results[0]


def transpose(ctx: ImportContext, x: SSAValue, perm: tuple[int, ...]) -> SSAValue:
    shape = shape_of(x)
    out = tuple(shape[p] for p in perm)
    props = {"perm": i64_array(perm)}
    return ctx.emit(graph.TransposeOp.create(operands=[x], properties=props, result_types=[tensor_type(out)])).results[0]


def _axes(ctx: ImportContext, node: NodeProto, rank: int) -> list[int] | None:
    """Axes from the attribute (opset < 13) or the constant second input (opset >= 13)."""
    if ctx.opset >= 13:
        if not ctx.input(1):
            return None
        axes = ctx.require_const(node.input[1], "axes").astype(np.int64).tolist()
    else:
        axes = ctx.attr("axes")
        if axes is None:
            return None
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.error(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    return out


@converter("Reshape")
def convert_reshape(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    in_shape = shape_of(x)
    target = [int(d) for d in ctx.require_const(node.input[1], "the target shape").reshape(-1)]
    allow_zero = int(ctx.attr("allowzero", 0))
    out = [in_shape[i] if d == 0 and not allow_zero and i < len(in_shape) else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        raise ctx.error(f"target shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or math.prod(in_shape) % known:
            raise ctx.error(f"cannot reshape {list(in_shape)} to {target}")
        out[out.index(-1)] = math.prod(in_shape) // known
    if any(d < 0 for d in out) or math.prod(out) != math.prod(in_shape):
        raise ctx.error(f"cannot reshape {list(in_shape)} to {target}")
    return [reshape(ctx, x, tuple(out))]


@converter("Flatten")
def convert_flatten(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axis = int(ctx.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"axis {axis} out of range for rank {len(shape)}")
    if axis < 0:  # -r <= axis < 0 counts from the back: -1 flattens to [prod(shape[:-1]), shape[-1]]
        axis += len(shape)
    return [reshape(ctx, x, (math.prod(shape[:axis]), math.prod(shape[axis:])))]


@converter("Squeeze")
def convert_squeeze(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axes = _axes(ctx, node, len(shape))
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    for a in axes:
        if shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of size {shape[a]}")
    return [reshape(ctx, x, tuple(d for i, d in enumerate(shape) if i not in axes))]


@converter("Unsqueeze")
def convert_unsqueeze(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = list(shape_of(x))
    axes = _axes(ctx, node, len(shape) + len(ctx.attr("axes", []) or []) if ctx.opset < 13 else
                 len(shape) + ctx.require_const(node.input[1], "axes").size)
    if axes is None:
        raise ctx.error("axes are required")
    for a in sorted(axes):
        shape.insert(a, 1)
    return [reshape(ctx, x, tuple(shape))]


@converter("Transpose")
def convert_transpose(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    rank = len(shape_of(x))
    perm = tuple(int(p) for p in ctx.attr("perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        raise ctx.error(f"perm {list(perm)} is not a permutation of {rank} axes")
    return [transpose(ctx, x, perm)]


@converter("Concat")
def convert_concat(ctx: ImportContext, node: NodeProto) -> list[Value]:
    names = [n for n in node.input if n]
    values = [ctx.value(n) for n in names]
    shapes = [shape_of(v) for v in values]
    rank = len(shapes[0])
    axis = ctx.attr("axis")
    if axis is None:
        raise ctx.error("attribute 'axis' is required")
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} out of range for rank {rank}")
    axis %= rank
    for s in shapes:
        if len(s) != rank or any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            raise ctx.error(f"input shapes {[list(s) for s in shapes]} differ off axis {axis}")
    values = [v for v in values if shape_of(v)[axis] > 0]
    if len(values) == 1:
        return [values[0]]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    op = graph.ConcatOp.create(
        operands=values, properties={"axis": IntegerAttr(axis, i64)}, result_types=[tensor_type(out)]
    )
    return [ctx.emit(op).results[0]]


@converter("Shape")
def convert_shape(ctx: ImportContext, node: NodeProto) -> list[Value]:
    shape = np.array(ctx.shape(node.input[0]), dtype=np.int64)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    return [shape[start : (int(end) if end is not None else None)]]


@converter("Size")
def convert_size(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [np.array(math.prod(ctx.shape(node.input[0])), dtype=np.int64)]
