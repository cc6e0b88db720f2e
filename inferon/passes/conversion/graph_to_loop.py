"""convert-graph-to-loop: tensors become buffers, graph ops become loop kernels.

Preconditions: graph level after the graph passes (no `graph.batch_norm`, `graph.identity` left
unless it feeds a return). Produces `func.func @main(inputs..., outputs...)` over `memref`s: weights are
`loop.weight`, intermediates `loop.alloc` (offsets are assigned later by plan-memory), and each graph op
is one or more destination-passing loop ops. A value returned by `@main` is computed straight into its
output buffer; a returned input or weight is copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    BoolAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from inferon.errors import PassError, UnsupportedError
from inferon.ir import quant
from inferon.ir.attrs import NO_EPILOGUE, ElementwiseKindAttr, PadMode, QuantType
from inferon.ir.context import InferonContext
from inferon.ir.dialects import graph, loop
from inferon.ir.dialects.graph import i64_array, ints, quant_of, shape_of
from inferon.ir.resize import axis_taps
from inferon.ir.weights import WeightStore
from inferon.passes.conversion.loop_to_vec import strided_lanes_pay


def memref(shape: tuple[int, ...], element: Attribute = f32) -> MemRefType:
    return MemRefType(element, list(shape))


def buffer_type(value: SSAValue) -> MemRefType:
    """The memref a tensor value lowers to: quantized tensors keep their storage integers."""
    typ = value.type
    assert isinstance(typ, TensorType)
    element = typ.element_type
    return memref(shape_of(value), element.storage if isinstance(element, QuantType) else element)


def broadcast_strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Element strides reading a row-major `shape` broadcast to `out` (0 on broadcast axes)."""
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides, step = [0] * len(out), 1
    for i in reversed(range(len(out))):
        strides[i] = step if padded[i] != 1 else 0
        step *= padded[i]
    return strides


def collapse_batch(dims: list[int], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge adjacent batch dimensions whose strides stay linear for every operand."""
    out_dims, out_strides = [], [[] for _ in strides]
    for i, d in enumerate(dims):
        if d == 1:
            continue
        if out_dims and all(s_out[-1] == s[i] * d for s_out, s in zip(out_strides, strides)):
            out_dims[-1] *= d
            for s_out, s in zip(out_strides, strides):
                s_out[-1] = s[i]
            continue
        out_dims.append(d)
        for s_out, s in zip(out_strides, strides):
            s_out.append(s[i])
    return out_dims, out_strides


@dataclass
class Lowering:
    """State of one conversion: where each tensor lives, and the ops emitted so far."""

    block: Block
    buffers: dict[SSAValue, SSAValue]
    weights: WeightStore | None = None
    int8_lanes: bool = True  # the model will run with AVX512-VNNI (see ConvertGraphToLoopPass)

    def emit(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    def buffer(self, value: SSAValue) -> SSAValue:
        return self.buffers[value]

    def constant(self, array: np.ndarray, hint: str, element: Attribute = f32) -> SSAValue:
        """A new weight in the store, as a loop.weight buffer."""
        if self.weights is None:
            raise PassError("convert-graph-to-loop needs the weight store for quantized ops")
        handle = self.weights.add(array, hint, keep_dtype=True)
        props = {"handle": graph.StringAttr(handle)}
        return self.emit(loop.WeightOp.create(properties=props, result_types=[memref(array.shape, element)])).results[0]


Rule = Callable[[Lowering, Operation, SSAValue], None]
RULES: dict[type[Operation], Rule] = {}


def lowers(*classes: type[Operation]) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for cls in classes:
            RULES[cls] = fn
        return fn

    return register


def i64_attr(v: int) -> IntegerAttr:
    return IntegerAttr(v, i64)


def copy_op(src: SSAValue, dst: SSAValue, rows: int, row_len: int, stride: int, offset: int) -> loop.CopyOp:
    props = {"rows": i64_attr(rows), "row_len": i64_attr(row_len), "stride": i64_attr(stride), "offset": i64_attr(offset)}
    return loop.CopyOp.create(operands=[src, dst], properties=props)


@lowers(graph.Conv2dOp)
def _conv(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.Conv2dOp)
    bias, residual, epilogue = op.fused_parts()
    operands = [lw.buffer(op.input), lw.buffer(op.weight)]
    operands += [lw.buffer(v) for v in (bias, residual) if v is not None]
    props = {k: op.properties[k] for k in ("strides", "pads", "dilations", "group")}
    props["epilogue"] = epilogue
    props["operandSegmentSizes"] = graph.DenseArrayBase.from_list(
        graph.i32, [1, 1, int(bias is not None), int(residual is not None), 1]
    )
    lw.emit(loop.Conv2dOp.create(operands=[*operands, out], properties=props))


@lowers(graph.ConvTranspose2dOp)
def _conv_transpose(lw: Lowering, op: Operation, out: SSAValue) -> None:
    """GEMM then col2im: per image and group, col [Cog*kh*kw, H*W] = W_g^T [Cog*kh*kw, Cig] x X_g
    [Cig, H*W] (W_g^T transposed here, at compile time, then packed like any GEMM weight), and
    `loop.col2im` scatter-adds the columns into the output with the epilogue. A 1x1 stride-1
    unpadded one is a plain GEMM straight into the output."""
    assert isinstance(op, graph.ConvTranspose2dOp)
    w_owner = op.weight.owner
    if lw.weights is None or not isinstance(w_owner, graph.WeightOp):
        raise PassError(f"convert-graph-to-loop: {op.name} needs a constant weight (a graph.weight in the store)")
    bias, residual, epilogue = op.fused_parts()
    n, c, h, wd = shape_of(op.input)
    _, mg, kh, kw = shape_of(op.weight)
    _, m, ho, wo = shape_of(op.output)
    g = op.group.value.data
    cg, rows, hw = c // g, mg * kh * kw, h * wd
    (sh, sw), (pt, pl, _, _), (dh, dw) = ints(op.strides), ints(op.pads), ints(op.dilations)
    w = lw.weights[w_owner.handle.data].reshape(g, cg, rows)
    a = lw.constant(np.ascontiguousarray(w.transpose(0, 2, 1)), f"{w_owner.handle.data}.T")
    direct = (kh, kw, sh, sw, pt, pl, ho, wo) == (1, 1, 1, 1, 0, 0, h, wd)
    fused = [lw.buffer(v) for v in (bias, residual) if v is not None] if direct else []
    cols = out if direct else lw.emit(loop.AllocOp.create(result_types=[memref((n, m * kh * kw, hw))])).results[0]
    lw.emit(matmul_op(
        [a, lw.buffer(op.input), *fused, cols], has_bias=direct and bias is not None,
        has_residual=direct and residual is not None, dims=(rows, hw, cg), leading=(cg, hw, hw), batch=[n, g],
        strides=[[0, rows * cg], [c * hw, cg * hw], [m * kh * kw * hw, rows * hw]], bias_axis=0,
        bias_strides=[0, mg], epilogue=epilogue if direct else NO_EPILOGUE,
    ))  # fmt: skip
    if direct:
        return
    props: dict[str, Attribute] = {
        "geometry": i64_array([n, m, h, wd, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo]), "epilogue": epilogue,
        "operandSegmentSizes": DenseArrayBase.from_list(graph.i32, [1, int(bias is not None), int(residual is not None), 1]),
    }  # fmt: skip
    operands = [cols, *(lw.buffer(v) for v in (bias, residual) if v is not None), out]
    lw.emit(loop.Col2ImOp.create(operands=operands, properties=props))


@lowers(graph.ChannelAffineOp)
def _channel_affine(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.ChannelAffineOp)
    bias, residual, epilogue = op.fused_parts()
    operands = [lw.buffer(op.input), lw.buffer(op.scale)] + [lw.buffer(v) for v in (bias, residual) if v is not None]
    props = {"epilogue": epilogue, "operandSegmentSizes": graph.DenseArrayBase.from_list(
        graph.i32, [1, 1, int(bias is not None), int(residual is not None), 1])}  # fmt: skip
    lw.emit(loop.ChannelAffineOp.create(operands=[*operands, out], properties=props))


def matmul_op(
    operands: list[SSAValue], *, has_bias: bool, has_residual: bool, dims: tuple[int, int, int],
    leading: tuple[int, int, int], batch: list[int], strides: list[list[int]], bias_axis: int,
    bias_strides: list[int], epilogue: object,
) -> loop.MatMulOp:  # fmt: skip
    """A loop.matmul; `batch` has at most two entries (padded to [outer, inner])."""
    while len(batch) < 2:
        batch.insert(0, 1)
        for s in strides:
            s.insert(0, 0)
        bias_strides.insert(0, 0)
    props = {
        "dims": i64_array(dims), "leading": i64_array(leading), "batch": i64_array(batch),
        "a_strides": i64_array(strides[0]), "b_strides": i64_array(strides[1]),
        "c_strides": i64_array(strides[2]), "bias_axis": i64_attr(bias_axis),
        "bias_strides": i64_array(bias_strides), "epilogue": epilogue,
        "operandSegmentSizes": graph.DenseArrayBase.from_list(graph.i32, [1, 1, int(has_bias), int(has_residual), 1]),
    }  # fmt: skip
    return loop.MatMulOp.create(operands=operands, properties=props)


@lowers(graph.MatMulOp)
def _matmul(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.MatMulOp)
    bias, residual, epilogue = op.fused_parts()
    a_shape, b_shape, c_shape = shape_of(op.lhs), shape_of(op.rhs), shape_of(op.output)
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    batch_shape = c_shape[:-2]
    if len(b_shape) == 2:  # fold A's batch into M: one big GEMM
        m, batch_shape = m * math.prod(a_shape[:-2]), ()
    strides = [
        [s * m * k for s in broadcast_strides(a_shape[:-2], batch_shape)] if batch_shape else [],
        [s * k * n for s in broadcast_strides(b_shape[:-2], batch_shape)] if batch_shape else [],
        [s * m * n for s in broadcast_strides(batch_shape, batch_shape)] if batch_shape else [],
    ]
    batch, strides = collapse_batch(list(batch_shape), strides)
    if len(batch) > 2:
        raise PassError(f"graph.matmul {list(a_shape)} x {list(b_shape)}: batch broadcast pattern too irregular")
    operands = [lw.buffer(op.lhs), lw.buffer(op.rhs)]
    operands += [lw.buffer(v) for v in (bias, residual) if v is not None]
    lw.emit(matmul_op(
        [*operands, out], has_bias=bias is not None, has_residual=residual is not None,
        dims=(m, n, k), leading=(k, n, n), batch=batch, strides=strides, bias_axis=1,
        bias_strides=[0] * len(batch), epilogue=epilogue,
    ))  # fmt: skip


@lowers(*graph.BINARY_OPS)
def _binary(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.BinaryOp)
    shape = shape_of(op.output) or (1,)
    props = {
        "kind": ElementwiseKindAttr(op.KIND), "shape": i64_array(shape),
        "lhs_strides": i64_array(broadcast_strides(shape_of(op.lhs), shape)),
        "rhs_strides": i64_array(broadcast_strides(shape_of(op.rhs), shape)),
    }  # fmt: skip
    lw.emit(loop.BinaryOp.create(operands=[lw.buffer(op.lhs), lw.buffer(op.rhs), out], properties=props))


@lowers(graph.WhereOp)
def _where(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.WhereOp)
    shape = shape_of(op.output) or (1,)
    props = {"shape": i64_array(shape)} | {
        f"{name}_strides": i64_array(broadcast_strides(shape_of(v), shape))
        for name, v in (("cond", op.cond), ("lhs", op.lhs), ("rhs", op.rhs))
    }  # fmt: skip
    operands = [lw.buffer(op.cond), lw.buffer(op.lhs), lw.buffer(op.rhs), out]
    lw.emit(loop.SelectOp.create(operands=operands, properties=props))


@lowers(*graph.UNARY_OPS)
def _unary(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.UnaryOp)
    props = {
        "kind": ElementwiseKindAttr(op.KIND), "size": i64_attr(math.prod(shape_of(op.output))),
        "alpha": op.alpha, "beta": op.beta,
    }  # fmt: skip
    lw.emit(loop.UnaryOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.MaxPoolOp, graph.AvgPoolOp)
def _pool(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.Pool2dOp)
    n, c, h, w = shape_of(op.input)
    ho, wo = shape_of(op.output)[2:]
    kh, kw = ints(op.kernel_shape)
    sh, sw = ints(op.strides)
    pt, pl, pb, pr = ints(op.pads)
    dh, dw = ints(op.dilations)
    if (ho, wo, kh, kw, dh, dw, pt, pl, pb, pr) == (1, 1, h, w, 1, 1, 0, 0, 0, 0):
        # one window over the whole plane (ResNet's 7x7 AveragePool): the global pool kernels, 5-9x faster
        props = {"planes": i64_attr(n * c), "plane_size": i64_attr(h * w),
                 "is_max": BoolAttr.from_bool(isinstance(op, graph.MaxPoolOp)), **_average_quant(op)}  # fmt: skip
        lw.emit(loop.GlobalPoolOp.create(operands=[lw.buffer(op.input), out], properties=props))
        return
    include = isinstance(op, graph.AvgPoolOp) and op.count_include_pad.value.data
    props = {
        "geometry": i64_array([n * c, h, w, ho, wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw]),
        "is_max": BoolAttr.from_bool(isinstance(op, graph.MaxPoolOp)),
        "count_include_pad": BoolAttr.from_bool(bool(include)),
        **_average_quant(op),
    }
    lw.emit(loop.Pool2dOp.create(operands=[lw.buffer(op.input), out], properties=props))


def _average_quant(op: Operation) -> dict[str, Attribute]:
    """The `quant` property of an average pool over quantized tensors (empty otherwise)."""
    qx, qy = quant_of(op.operands[0]), quant_of(op.results[0])
    if qx is None or qy is None or isinstance(op, (graph.MaxPoolOp, graph.GlobalMaxPoolOp)):
        return {}
    values = [qx.scale, qx.zero_point, qy.scale, qy.zero_point]
    return {"quant": DenseArrayBase.from_list(f64, values)}


@lowers(graph.GlobalAvgPoolOp, graph.GlobalMaxPoolOp)
def _global_pool(lw: Lowering, op: Operation, out: SSAValue) -> None:
    shape = shape_of(op.operands[0])
    props = {
        "planes": i64_attr(shape[0] * shape[1]), "plane_size": i64_attr(math.prod(shape[2:])),
        "is_max": BoolAttr.from_bool(isinstance(op, graph.GlobalMaxPoolOp)), **_average_quant(op),
    }  # fmt: skip
    lw.emit(loop.GlobalPoolOp.create(operands=[lw.buffer(op.operands[0]), out], properties=props))


@lowers(graph.ConcatOp)
def _concat(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.ConcatOp)
    axis = op.axis.value.data
    out_shape = shape_of(op.output)
    inner = math.prod(out_shape[axis + 1 :])
    rows = math.prod(out_shape[:axis])
    offset = 0
    for value in op.inputs:
        extent = shape_of(value)[axis]
        lw.emit(copy_op(lw.buffer(value), out, rows, extent * inner, out_shape[axis] * inner, offset * inner))
        offset += extent


@lowers(graph.ReshapeOp, graph.IdentityOp)
def _reshape(lw: Lowering, op: Operation, out: SSAValue) -> None:
    size = math.prod(shape_of(op.results[0]))
    lw.emit(copy_op(lw.buffer(op.operands[0]), out, 1, size, size, 0))


def strided_view(
    in_shape: tuple[int, ...], starts: tuple[int, ...], steps: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[list[int], list[int], int]:
    """(shape, element strides, offset) reading the window `starts` / `steps` / `out_shape` of a
    row-major `in_shape`, with size-1 dimensions dropped and dimensions that stay linear merged (a
    contiguous window becomes `[n], [1]`)."""
    dense, acc = [0] * len(in_shape), 1
    for d in reversed(range(len(in_shape))):
        dense[d] = acc
        acc *= in_shape[d]
    offset = sum(start * s for start, s in zip(starts, dense))
    shape: list[int] = []
    strides: list[int] = []
    for n, step, s in zip(out_shape, steps, dense):
        if n == 1:
            continue
        if shape and strides[-1] == step * s * n:
            shape[-1] *= n
            strides[-1] = step * s
            continue
        shape.append(n)
        strides.append(step * s)
    return shape or [1], strides or [1], offset


@lowers(graph.SliceOp)
def _slice(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.SliceOp)
    shape, strides, offset = strided_view(shape_of(op.input), ints(op.starts), ints(op.steps), shape_of(op.output))
    if len(shape) > loop.MAX_RANK:
        raise PassError(f"convert-graph-to-loop: {op.name} needs {len(shape)} strided dimensions (at most {loop.MAX_RANK})")
    props = {"shape": i64_array(shape), "strides": i64_array(strides), "offset": i64_attr(offset)}
    lw.emit(loop.StridedCopyOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.TransposeOp)
def _transpose(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.TransposeOp)
    props = {"shape": i64_array(shape_of(op.input) or (1,)), "perm": op.perm if ints(op.perm) else i64_array([0])}
    lw.emit(loop.TransposeOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.SoftmaxOp)
def _softmax(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.SoftmaxOp)
    shape = shape_of(op.input)
    axis = op.axis.value.data
    view = (math.prod(shape[:axis]), shape[axis] if shape else 1, math.prod(shape[axis + 1 :]))
    props = {"view": i64_array(view), "log": op.log}
    lw.emit(loop.SoftmaxOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.LRNOp)
def _lrn(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.LRNOp)
    shape = shape_of(op.input)
    props = {
        "view": i64_array((shape[0], shape[1], math.prod(shape[2:]))), "size": op.size,
        "alpha": op.alpha, "beta": op.beta, "bias": op.bias,
    }  # fmt: skip
    lw.emit(loop.LRNOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.ReduceOp)
def _reduce(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.ReduceOp)
    shape, axes = shape_of(op.input), ints(op.axes)
    view = (math.prod(shape[: axes[0]]), math.prod(shape[axes[0] : axes[-1] + 1]), math.prod(shape[axes[-1] + 1 :]))
    lw.emit(loop.ReduceOp.create(operands=[lw.buffer(op.input), out], properties={"view": i64_array(view), "kind": op.kind}))


@lowers(graph.ArgReduceOp)
def _arg_reduce(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.ArgReduceOp)
    shape, axis = shape_of(op.input), op.axis.value.data
    view = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    props = {"view": i64_array(view), "kind": op.kind, "select_last": op.select_last}
    lw.emit(loop.ArgReduceOp.create(operands=[lw.buffer(op.input), out], properties=props))


@lowers(graph.LayerNormOp, graph.GroupNormOp)
def _row_norm(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.LayerNormOp | graph.GroupNormOp)
    shape = shape_of(op.input)
    if isinstance(op, graph.LayerNormOp):
        axis = op.axis.value.data
        view = (math.prod(shape[:axis]), 1, math.prod(shape[axis:]), 1)
    else:
        g = op.groups.value.data
        view = (shape[0] * g, g, shape[1] // g, math.prod(shape[2:]))
    operands = [lw.buffer(v) for v in (op.input, op.scale, op.bias)]
    props = {"view": i64_array(view), "epsilon": op.epsilon}
    lw.emit(loop.RowNormOp.create(operands=[*operands, out], properties=props))


def pad_view(
    in_shape: tuple[int, ...], starts: list[int], extents: list[int], begin: list[int], end: list[int], constant: bool
) -> tuple[list[int], list[int], int, list[int]]:
    """(shape, element strides, offset, [begin..., end...]) of a loop.pad reading the window
    `starts` / `extents` of a row-major `in_shape`. An axis merges into the (merged) axes inside it
    when those are whole and not padded, and it is not padded either or the mode is constant (its
    pads become runs of whole inner rows)."""
    dense, acc = [0] * len(in_shape), 1
    for d in reversed(range(len(in_shape))):
        dense[d] = acc
        acc *= in_shape[d]
    offset = sum(s * st for s, st in zip(starts, dense))
    shape, strides, pb, pe = [extents[-1]], [dense[-1]], [begin[-1]], [end[-1]]
    for d in reversed(range(len(in_shape) - 1)):
        inner_whole = strides[0] * shape[0] == dense[d] and pb[0] == pe[0] == 0
        if inner_whole and (constant or begin[d] == end[d] == 0):
            n = shape[0]
            shape[0], pb[0], pe[0] = extents[d] * n, begin[d] * n, end[d] * n
            continue
        shape.insert(0, extents[d])
        strides.insert(0, dense[d])
        pb.insert(0, begin[d])
        pe.insert(0, end[d])
    return shape, strides, offset, pb + pe


@lowers(graph.PadOp)
def _pad(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.PadOp)
    starts, extents, begin, end = op.window()
    constant = op.mode.data == PadMode.CONSTANT
    shape, strides, offset, pads = pad_view(shape_of(op.input), starts, extents, begin, end, constant)
    if len(shape) > loop.MAX_RANK:
        raise PassError(f"convert-graph-to-loop: {op.name} needs {len(shape)} dimensions (at most {loop.MAX_RANK})")
    props = {
        "shape": i64_array(shape), "strides": i64_array(strides), "offset": i64_attr(offset),
        "pads": i64_array(pads), "mode": op.mode, "value": op.value,
    }  # fmt: skip
    lw.emit(loop.PadOp.create(operands=[lw.buffer(op.input), out], properties=props))


def _tap_tables(lw: Lowering, index: np.ndarray, weight: np.ndarray, hint: str, tap_major: bool) -> tuple[SSAValue, SSAValue | None]:
    """An axis' [out, taps] tap tables as weights ([taps, out] if `tap_major`): i32 indices, f32
    weights (none for one tap of weight 1)."""
    single = weight.shape[1] == 1 and bool(np.all(weight == 1.0))
    index, weight = (index.T, weight.T) if tap_major else (index, weight)
    index_buf = lw.constant(np.ascontiguousarray(index, dtype=np.int32), f"{hint}.index", graph.i32_signed())
    return index_buf, None if single else lw.constant(np.ascontiguousarray(weight, dtype=np.float32), f"{hint}.weight")


def repeat_factor(index: np.ndarray, in_size: int, weighted: bool) -> int:
    """k when a weightless single-tap axis reads source column o // k at output column o, else 0."""
    out_size = index.shape[-1]
    if weighted or index.shape[0] != 1 or out_size % in_size:
        return 0
    k = out_size // in_size
    return k if np.array_equal(index[0], np.arange(out_size) // k) else 0


@lowers(graph.ResizeOp)
def _resize(lw: Lowering, op: Operation, out: SSAValue) -> None:
    """Tap tables computed here, once (`inferon.ir.resize`); the kernel only gathers and blends."""
    assert isinstance(op, graph.ResizeOp)
    n, c, h, w = shape_of(op.input)
    ho, wo = shape_of(op.output)[2:]
    params, (sh, sw) = op.params(), op.scale_pair()
    y_index, y_weight = axis_taps(params, h, ho, sh)  # [Ho, ty]
    x_index, x_weight = axis_taps(params, w, wo, sw)
    yi, yw = _tap_tables(lw, y_index, y_weight, "resize.y", tap_major=False)
    xi, xw = _tap_tables(lw, x_index, x_weight, "resize.x", tap_major=True)  # 8 columns' taps: one load
    geometry = [n * c, h, w, ho, wo, y_index.shape[1], x_index.shape[1]]
    props = {
        "geometry": i64_array(geometry), "x_repeat": i64_attr(repeat_factor(x_index.T, w, xw is not None)),
        "operandSegmentSizes": DenseArrayBase.from_list(graph.i32, [1, 1, int(yw is not None), 1, int(xw is not None), 1]),
    }  # fmt: skip
    operands = [lw.buffer(op.input), yi, *([yw] if yw is not None else []), xi, *([xw] if xw is not None else []), out]
    lw.emit(loop.ResizeOp.create(operands=operands, properties=props))


@lowers(graph.QuantizeOp, graph.DequantizeOp)
def _quantize(lw: Lowering, op: Operation, out: SSAValue) -> None:
    is_q = isinstance(op, graph.QuantizeOp)
    q = quant_of(op.results[0] if is_q else op.operands[0])
    assert q is not None
    if not q.per_tensor:
        what = "QuantizeLinear" if is_q else "DequantizeLinear"
        raise UnsupportedError(f"per-axis {what} of a run-time tensor that no integer kernel consumes "
                               f"(only per-tensor activations run as quantize / dequantize)", op_type=what)
    props = {
        "scale": FloatAttr(q.scale, 32), "zero_point": i64_attr(q.zero_point),
        "size": i64_attr(math.prod(shape_of(op.operands[0]))),
    }  # fmt: skip
    cls = loop.QuantizeOp if is_q else loop.DequantizeOp
    lw.emit(cls.create(operands=[lw.buffer(op.operands[0]), out], properties=props))


@lowers(graph.DynamicQuantizeOp)
def _dynamic_quantize(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.DynamicQuantizeOp)
    operands = [lw.buffer(op.input), out, lw.buffer(op.scale), lw.buffer(op.zero_point)]
    props = {"size": i64_attr(math.prod(shape_of(op.input)))}
    lw.emit(loop.DynamicQuantizeOp.create(operands=operands, properties=props))


@lowers(graph.QAddOp)
def _qadd(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.QAddOp)
    qa, qb, qy = (quant_of(v) for v in (op.lhs, op.rhs, op.output))
    assert qa is not None and qb is not None and qy is not None
    lo, hi = quant.activation_bounds(op.epilogue)
    values = [qa.scale, qa.zero_point, qb.scale, qb.zero_point, qy.scale, qy.zero_point, lo, hi]
    props = {
        "quant": DenseArrayBase.from_list(f64, values), "size": i64_attr(math.prod(shape_of(op.output))),
    }  # fmt: skip
    lw.emit(loop.QAddOp.create(operands=[lw.buffer(op.lhs), lw.buffer(op.rhs), out], properties=props))


@lowers(graph.QTableOp)
def _qtable(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.QTableOp)
    shape = shape_of(op.input)
    batch, channels = (shape[0], shape[1]) if len(shape) > 1 else (1, 1)
    props = {"batch": i64_attr(batch), "channels": i64_attr(channels),
             "plane": i64_attr(math.prod(shape) // (batch * channels))}  # fmt: skip
    lw.emit(loop.QTableOp.create(operands=[lw.buffer(op.input), lw.buffer(op.table), out], properties=props))


def _qgemm_constants(
    lw: Lowering, op: Operation, w: np.ndarray, bias: np.ndarray | None, channels: int, flip_signed: bool = True
) -> tuple[SSAValue, SSAValue, list[int], int]:
    """comp / mult weights (mult: `quant.fixed_point` records), requant [zy, lo, hi] and the padding
    byte (the stored input zero point). With flip_signed, int8 activations are read flipped to uint8
    (x + 128: the GEMM's packing)."""
    qx, qw, qy = quant_of(op.operands[0]), quant_of(op.operands[1]), quant_of(op.results[0])
    assert qx is not None and qw is not None and qy is not None
    signed = qx.dtype == np.int8
    zx = qx.zero_point + (128 if signed and flip_signed else 0)
    comp = quant.compensation(w, zx, bias)
    lo, hi = quant.clamp_range(op.properties["epilogue"], qy.scale, qy.zero_point, qy.dtype)  # type: ignore[arg-type]
    mult = quant.multipliers(qx.scale, qw.scale_array(), qy.scale, channels)
    try:
        table = quant.fixed_point(mult, qy.zero_point, lo, hi)
    except ValueError as e:
        raise PassError(f"convert-graph-to-loop: {op.name}: {e}") from None
    comp_w = lw.constant(comp, "qcomp", graph.i32_signed())
    mult_w = lw.constant(table, "qmult", graph.i32_signed())
    return comp_w, mult_w, [qy.zero_point, lo, hi], qx.zero_point & 0xFF


# a, (no) a_index, (no) a_row_ptr, b, comp, mult, (no) residual, c
QGEMM_SEGMENTS = graph.DenseArrayBase.from_list(graph.i32, [1, 0, 0, 1, 1, 1, 0, 1])


@lowers(graph.QConv2dOp)
def _qconv(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.QConv2dOp) and lw.weights is not None
    n, c, h, wd = shape_of(op.input)
    m, cg, kh, kw = shape_of(op.weight)
    ho, wo = shape_of(op.output)[2:]
    g = op.group.value.data
    mg, k = m // g, cg * kh * kw
    w_owner, b_owner = op.weight.owner, op.bias.owner if op.bias is not None else None
    assert isinstance(w_owner, graph.WeightOp)
    w = lw.weights[w_owner.handle.data].reshape(m, k)
    bias = lw.weights[b_owner.handle.data] if isinstance(b_owner, graph.WeightOp) else None
    if g > 1 and g == c:  # depthwise: a direct kernel, not one GEMM row per channel
        comp, mult, requant, pad = _qgemm_constants(lw, op, w, bias, m, flip_signed=False)
        props: dict[str, Attribute] = {
            k: op.properties[k] for k in ("strides", "pads", "dilations")
        }  # fmt: skip
        props |= {"requant": i64_array(requant), "pad": i64_attr(pad)}
        operands = [lw.buffer(op.input), lw.buffer(op.weight), comp, mult, out]
        lw.emit(loop.QDepthwiseConv2dOp.create(operands=operands, properties=props))
        return
    comp, mult, requant, pad = _qgemm_constants(lw, op, w, bias, m)
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = ints(op.strides), ints(op.pads), ints(op.dilations)
    direct = (kh, kw, sh, sw, pt, pl, pb, pr) == (1, 1, 1, 1, 0, 0, 0, 0)
    # single-group KxK convs: implicit (weights in implicit order, the kernel reads the image in
    # place): stride 1 always, other strides / dilations where the lanes kernels will run them, and
    # block1x4 KxK ones with VNNI (their blocks: four channels at one tap, as `prune block1x4` leaves them).
    # Without VNNI both become im2col rows, where implicit order only pads K (channels to 4).
    view = (cg, h, wd, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo)
    dense = w_owner.sparse is None or not w_owner.sparse.is_sparse
    implicit = not direct and g == 1 and (
        ((sh, sw, dh, dw) == (1, 1, 1, 1) and (lw.int8_lanes or cg % 4 == 0))
        or (lw.int8_lanes and ((not dense and kh * kw > 1) or (dense and strided_lanes_pay(mg, view))))
    )
    a = lw.buffer(op.weight)
    if implicit:
        a = lw.constant(quant.implicit_weight_order(w.reshape(m, cg, kh, kw)), f"{w_owner.handle.data}.implicit",
                        a.type.element_type)  # type: ignore[attr-defined]  # fmt: skip
        if w_owner.sparse is not None:
            a.owner.properties["sparse"] = w_owner.sparse  # type: ignore[union-attr]
        k = a.type.get_shape()[1]  # type: ignore[attr-defined]
    props: dict[str, Attribute] = {
        "dims": i64_array((mg, ho * wo, k)), "batch": i64_array((n, g)),
        "a_strides": i64_array((0, mg * k)), "b_strides": i64_array((c * h * wd, cg * h * wd)),
        "c_strides": i64_array((m * ho * wo, mg * ho * wo)), "row_strides": i64_array((0, mg)),
        "ldb": i64_attr(h * wd), "c_leading": i64_array((ho * wo, 1)), "requant": i64_array(requant),
        "pad": i64_attr(pad),
    }  # fmt: skip
    if not direct:
        props["b_im2col"] = i64_array(view)
    if implicit:
        props["b_implicit"] = UnitAttr()
    props["operandSegmentSizes"] = QGEMM_SEGMENTS
    lw.emit(loop.QGemmOp.create(operands=[a, lw.buffer(op.input), comp, mult, out], properties=props))


@lowers(graph.QMatMulOp)
def _qmatmul(lw: Lowering, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, graph.QMatMulOp) and lw.weights is not None
    x_shape = shape_of(op.lhs)
    k, n_out = shape_of(op.rhs)
    rows = math.prod(x_shape[:-1])
    w_owner, b_owner = op.rhs.owner, op.bias.owner if op.bias is not None else None
    assert isinstance(w_owner, graph.WeightOp)
    wt = np.ascontiguousarray(lw.weights[w_owner.handle.data].T)  # A = W^T: one row per output column
    bias = lw.weights[b_owner.handle.data] if isinstance(b_owner, graph.WeightOp) else None
    comp, mult, requant, pad = _qgemm_constants(lw, op, wt, bias, n_out)
    a = lw.constant(wt, f"{w_owner.handle.data}.T", lw.buffer(op.rhs).type.element_type)  # type: ignore[attr-defined]
    if w_owner.sparse is not None:  # (sparsify's choice for W is the choice for W^T)
        a.owner.properties["sparse"] = w_owner.sparse  # type: ignore[union-attr]
    props: dict[str, Attribute] = {
        "dims": i64_array((n_out, rows, k)), "batch": i64_array((1, 1)),
        "a_strides": i64_array((0, 0)), "b_strides": i64_array((0, 0)), "c_strides": i64_array((0, 0)),
        "row_strides": i64_array((0, 0)), "ldb": i64_attr(k), "c_leading": i64_array((1, n_out)),
        "requant": i64_array(requant), "pad": i64_attr(pad), "b_trans": UnitAttr(),
    }  # fmt: skip
    props["operandSegmentSizes"] = QGEMM_SEGMENTS
    lw.emit(loop.QGemmOp.create(operands=[a, lw.buffer(op.lhs), comp, mult, out], properties=props))


def lower_function(fn: func.FuncOp, weights: WeightStore | None = None, int8_lanes: bool = True) -> func.FuncOp:
    old = fn.body.block
    ret = old.last_op
    assert isinstance(ret, func.ReturnOp)
    in_types = [buffer_type(a) for a in old.args]
    out_types = [buffer_type(v) for v in ret.operands]
    block = Block(arg_types=[*in_types, *out_types])
    lw = Lowering(block, dict(zip(old.args, block.args[: len(old.args)])), weights, int8_lanes)
    out_args = list(block.args[len(old.args) :])

    # values computed straight into an output buffer (first return position wins)
    destination: dict[SSAValue, SSAValue] = {}
    for value, arg in zip(ret.operands, out_args):
        if value not in destination and not isinstance(value.owner, (Block, graph.WeightOp)):
            destination[value] = arg

    for op in old.ops:
        if op is ret:
            break
        if isinstance(op, graph.WeightOp):
            props = {"handle": op.handle, **({"sparse": op.sparse} if op.sparse is not None else {})}
            w = lw.emit(loop.WeightOp.create(properties=props, result_types=[buffer_type(op.result)]))
            lw.buffers[op.result] = w.results[0]
            continue
        rule = RULES.get(type(op))
        if rule is None:
            raise PassError(f"convert-graph-to-loop: no lowering for {op.name}")
        for result in op.results:  # (a rule finds the buffers of further results in lw.buffers)
            out = destination.get(result)
            if out is None:
                out = lw.emit(loop.AllocOp.create(result_types=[buffer_type(result)])).results[0]
            lw.buffers[result] = out
        rule(lw, op, lw.buffers[op.results[0]])

    for value, arg in zip(ret.operands, out_args):
        if destination.get(value) is not arg:
            size = math.prod(shape_of(value))
            lw.emit(copy_op(lw.buffer(value), arg, 1, size, size, 0))
    block.add_op(func.ReturnOp())
    for unused in [o for o in block.ops if isinstance(o, loop.WeightOp) and not o.result.uses]:
        block.erase_op(unused)  # weights a rule replaced (transposed / reordered copies)

    arg_attrs = list(fn.arg_attrs.data) if fn.arg_attrs else []
    res_attrs = list(fn.res_attrs.data) if fn.res_attrs else []
    names = ArrayAttr([*arg_attrs, *res_attrs])
    new = func.FuncOp("main", ([*in_types, *out_types], []), Region(block), arg_attrs=names)
    new.attributes["inferon.num_inputs"] = IntegerAttr(len(in_types), i64)
    return new


@dataclass(frozen=True)
class ConvertGraphToLoopPass(ModulePass):
    """Lower @main from graph ops on tensors to loop ops on buffers. `int8_lanes`: the model will run
    with AVX512-VNNI, whose lanes / implicit quantized kernels want convolution weights in implicit
    order (see convert-loop-to-vec)."""

    name = "convert-graph-to-loop"
    int8_lanes: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = ctx.weights if isinstance(ctx, InferonContext) else None
        for fn in list(op.ops):
            if isinstance(fn, func.FuncOp):
                fn.detach()
                op.body.block.add_op(lower_function(fn, weights, self.int8_lanes))

