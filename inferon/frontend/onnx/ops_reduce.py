"""Converters for reductions over axes: the Reduce* family, ArgMax / ArgMin, and the normalisations
built on per-row statistics (LayerNormalization, InstanceNormalization, GroupNormalization)."""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, i64
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.ops_elementwise import binary
from inferon.frontend.onnx.ops_nn import global_pool_value
from inferon.frontend.onnx.ops_shape import reshape, transpose
from inferon.frontend.onnx.registry import converter
from inferon.ir.attrs import ReduceKind, ReduceKindAttr
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i64_array, shape_of, tensor_type

REDUCE_KINDS = {
    "ReduceSum": ReduceKind.SUM, "ReduceMean": ReduceKind.MEAN, "ReduceMax": ReduceKind.MAX,
    "ReduceMin": ReduceKind.MIN, "ReduceProd": ReduceKind.PROD, "ReduceL1": ReduceKind.L1,
    "ReduceL2": ReduceKind.L2, "ReduceSumSquare": ReduceKind.SUM_SQUARE, "ReduceLogSum": ReduceKind.LOG_SUM,
    "ReduceLogSumExp": ReduceKind.LOG_SUM_EXP,
}  # fmt: skip


def _reduce_axes(ctx: ImportContext, node: NodeProto, rank: int) -> list[int] | None:
    """The sorted, non-negative axes to reduce, or None for a no-op (empty axes with
    noop_with_empty_axes). Axes are an input from opset 13 (ReduceSum) / 18 (the others)."""
    as_input = ctx.opset >= (13 if node.op_type == "ReduceSum" else 18)
    if as_input:
        axes = ctx.require_const(node.input[1], "axes").astype(np.int64).ravel().tolist() if ctx.input(1) else []
    else:
        axes = list(ctx.attr("axes", []) or [])
    if not axes:
        return None if as_input and ctx.attr("noop_with_empty_axes", 0) else list(range(rank))
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.error(f"axis {a} is out of range for rank {rank}")
    normalised = sorted({a % rank for a in axes})
    if len(normalised) != len(axes):
        raise ctx.error(f"axes {axes} name an axis twice")
    return normalised


def reduce(ctx: ImportContext, x: SSAValue, kind: ReduceKind, axes: list[int]) -> SSAValue:
    """`kind` over `axes` of x with the reduced axes kept as 1s; axes that are not one consecutive
    run are first transposed to the end."""
    shape = shape_of(x)
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    if axes != list(range(axes[0], axes[-1] + 1)):
        perm = [i for i in range(len(shape)) if i not in axes] + axes
        x = transpose(ctx, x, tuple(perm))
        axes = list(range(len(shape) - len(axes), len(shape)))
    moved = tuple(1 if i in axes else d for i, d in enumerate(shape_of(x)))
    props = {"kind": ReduceKindAttr(kind), "axes": i64_array(axes)}
    y = ctx.emit(graph.ReduceOp.create(operands=[x], properties=props, result_types=[tensor_type(moved)])).results[0]
    return reshape(ctx, y, kept)


@converter(*REDUCE_KINDS)
def convert_reduce(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    rank = len(shape)
    axes = _reduce_axes(ctx, node, rank)
    if axes is None or rank == 0:
        return [x]
    if any(shape[a] == 0 for a in axes):
        raise ctx.unsupported(f"reducing an empty axis of shape {list(shape)}")
    keep = int(ctx.attr("keepdims", 1))
    kind = REDUCE_KINDS[node.op_type]
    if rank >= 3 and axes == list(range(2, rank)) and kind in (ReduceKind.MEAN, ReduceKind.MAX):
        # over all spatial axes of N, C, ...: a global pooling (also on quantized tensors)
        y = global_pool_value(ctx, x, graph.GlobalAvgPoolOp if kind == ReduceKind.MEAN else graph.GlobalMaxPoolOp)
    else:
        if graph.quant_of(x) is not None:
            raise ctx.unsupported(f"{node.op_type} over axes {axes} of a quantized tensor (only a global average / max pool)")
        y = reduce(ctx, x, kind, axes)
    return [y if keep else reshape(ctx, y, tuple(d for i, d in enumerate(shape) if i not in axes))]


@converter("ArgMax", "ArgMin")
def convert_arg_reduce(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    rank = len(shape)
    if rank == 0:
        raise ctx.error("the input is a scalar; ArgMax / ArgMin need an axis to reduce")
    axis = int(ctx.attr("axis", 0))
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for the rank-{rank} input of shape {list(shape)}")
    axis %= rank
    q = graph.quant_of(x)
    if q is not None and not graph.integers_ordered(q, axis):
        # scales varying along the axis (or int32 storage): compare the real values
        x = ctx.emit(graph.DequantizeOp(x)).results[0]
    kind = ReduceKind.MAX if node.op_type == "ArgMax" else ReduceKind.MIN
    keep, last = bool(ctx.attr("keepdims", 1)), bool(ctx.attr("select_last_index", 0))
    return [ctx.emit(graph.ArgReduceOp(x, kind, axis, last, keep)).results[0]]


def _affine_param(ctx: ImportContext, node: NodeProto, index: int, what: str, shape: tuple[int, ...], fill: float) -> np.ndarray:
    """A constant scale / bias broadcast to `shape` (`fill` where the input is absent)."""
    if not ctx.input(index):
        return np.full(shape, fill, np.float32)
    value = ctx.require_const(node.input[index], what).astype(np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(value, shape))
    except ValueError:
        raise ctx.error(f"{what} of shape {list(value.shape)} does not broadcast to {list(shape)}") from None


@converter("LayerNormalization", since=17)
def convert_layer_norm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    rank = len(shape)
    axis = int(ctx.attr("axis", -1))
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if math.prod(shape[axis:]) == 0:
        raise ctx.unsupported(f"normalising an empty slice of shape {list(shape)}")
    eps = float(ctx.attr("epsilon", 1e-5))
    inner = shape[axis:]
    scale = ctx.weight(_affine_param(ctx, node, 1, "Scale", inner, 1.0), "ln_scale")
    bias = ctx.weight(_affine_param(ctx, node, 2, "B", inner, 0.0), "ln_bias")
    props = {"axis": IntegerAttr(axis, i64), "epsilon": FloatAttr(eps, 32)}
    y = ctx.emit(graph.LayerNormOp.create(operands=[x, scale, bias], properties=props, result_types=[x.type])).results[0]
    results: list[Value] = [y]
    if any(node.output[1:]):  # Mean and InvStdDev, from the same statistics
        axes = list(range(axis, rank))
        mean = reduce(ctx, x, ReduceKind.MEAN, axes)
        centred = binary(ctx, graph.SubOp, x, mean)
        var = reduce(ctx, binary(ctx, graph.MulOp, centred, centred), ReduceKind.MEAN, axes)
        var = binary(ctx, graph.AddOp, var, ctx.weight(np.float32([eps]), "ln_eps"))
        sqrt = ctx.emit(graph.SqrtOp(var, 0.0, 0.0)).results[0]
        results += [mean, ctx.emit(graph.ReciprocalOp(sqrt, 0.0, 0.0)).results[0]]
    return results


def _group_norm(ctx: ImportContext, x: SSAValue, groups: int, scale: np.ndarray, bias: np.ndarray) -> SSAValue:
    props = {"groups": IntegerAttr(groups, i64), "epsilon": FloatAttr(float(ctx.attr("epsilon", 1e-5)), 32)}
    operands = [x, ctx.weight(scale, "gn_scale"), ctx.weight(bias, "gn_bias")]
    return ctx.emit(graph.GroupNormOp.create(operands=operands, properties=props, result_types=[x.type])).results[0]


def _nc_input(ctx: ImportContext, node: NodeProto) -> tuple[SSAValue, tuple[int, ...]]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    if len(shape) < 3:
        raise ctx.error(f"input must be [N, C, D1, ...] (rank >= 3), got {list(shape)}")
    if math.prod(shape[2:]) == 0:
        raise ctx.unsupported(f"normalising empty planes of shape {list(shape)}")
    return x, shape


@converter("InstanceNormalization")
def convert_instance_norm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x, shape = _nc_input(ctx, node)
    c = shape[1]
    scale = _affine_param(ctx, node, 1, "scale", (c,), 1.0)
    bias = _affine_param(ctx, node, 2, "B", (c,), 0.0)
    return [_group_norm(ctx, x, c, scale, bias)]


@converter("GroupNormalization", since=18)
def convert_group_norm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x, shape = _nc_input(ctx, node)
    c = shape[1]
    groups = ctx.attr("num_groups")
    if groups is None:
        raise ctx.error("attribute 'num_groups' is required")
    if groups < 1 or c % groups:
        raise ctx.error(f"num_groups {groups} does not divide the {c} channels")
    if int(ctx.attr("stash_type", 1)) != 1:
        raise ctx.unsupported("stash_type other than 1 (float32 statistics)")
    # opset 18: scale / bias per group; opset 21: per channel
    per = (groups,) if ctx.opset < 21 else (c,)
    scale = _affine_param(ctx, node, 1, "scale", per, 1.0)
    bias = _affine_param(ctx, node, 2, "bias", per, 0.0)
    if ctx.opset < 21:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    return [_group_norm(ctx, x, groups, scale, bias)]


@converter("LpNormalization")
def convert_lp_normalization(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """x / ||x||_p along `axis` (p = 1 or 2), and 0 where the norm is 0, as ONNX's reference."""
    x = ctx.value(node.input[0])
    rank = len(shape_of(x))
    axis, p = int(ctx.attr("axis", -1)), int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.error(f"p must be 1 or 2, got {p}")
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for the rank-{rank} input of shape {list(shape_of(x))}")
    norm = reduce(ctx, x, ReduceKind.L2 if p == 2 else ReduceKind.L1, [axis % rank])
    zero = ctx.weight(np.float32(0), f"{node.name}.zero")
    empty = ctx.emit(graph.EqualOp(norm, zero, shape_of(norm))).results[0]
    ratio = ctx.emit(graph.DivOp(x, norm, shape_of(x))).results[0]
    return [ctx.emit(graph.WhereOp(empty, zero, ratio, shape_of(x))).results[0]]
