"""Converters for the neural-network ops: Conv, ConvTranspose, Gemm, MatMul, BatchNormalization, pooling, LRN,
Softmax, Dropout and Identity."""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.dialects.builtin import BoolAttr, FloatAttr, IntegerAttr, i64
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.ops_shape import reshape, transpose
from inferon.frontend.onnx.registry import converter
from inferon.ir.attrs import PadMode, PadModeAttr
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i64_array, quant_of, shape_of, tensor_type
from inferon.ir.dialects.loop import MAX_RANK as MAX_PAD_RANK


def _spatial_attrs(
    ctx: ImportContext, in_hw: tuple[int, ...], kernel: tuple[int, ...]
) -> tuple[list[int], list[int], list[int]]:
    """strides, dilations and [begin..., end...] pads of a 1-D/2-D window op, auto_pad resolved."""
    rank = len(in_hw)
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    pads = list(ctx.attr("pads", [0] * (2 * rank)))
    auto_pad = ctx.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if len(strides) != rank or len(dilations) != rank or len(pads) != 2 * rank:
        raise ctx.error(f"strides/dilations/pads do not match the {rank} spatial dimension(s)")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(rank):
            out = -(-in_hw[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_hw[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + rank] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    elif auto_pad != "NOTSET":
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0:
        raise ctx.error(f"invalid strides {strides}, dilations {dilations} or pads {pads}")
    return strides, dilations, pads


def _to_2d(ctx: ImportContext, x: SSAValue, what: str) -> SSAValue:
    """Treat a 1-D spatial op ([N, C, W]) as 2-D ([N, C, 1, W]); reject 3-D and more."""
    shape = shape_of(x)
    if len(shape) == 4:
        return x
    if len(shape) == 3:
        return reshape(ctx, x, (shape[0], shape[1], 1, shape[2]))
    raise ctx.unsupported(f"{what} with {len(shape) - 2} spatial dimensions (only 1-D and 2-D)")


def _as_2d(values: list[int], rank: int, fill: int) -> list[int]:
    """Lift per-dimension attrs of a 1-D op to 2-D by prepending `fill` for the new H axis."""
    if rank == 2:
        return values
    half = len(values) // 2
    if len(values) == 2 * rank:  # pads: [begin..., end...]
        return [fill, *values[:half], fill, *values[half:]]
    return [fill, *values]


@converter("Conv")
def convert_conv(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x_in, w_in = ctx.value(node.input[0]), ctx.value(node.input[1])
    x_shape, w_shape = shape_of(x_in), shape_of(w_in)
    rank = len(x_shape) - 2
    if len(w_shape) != len(x_shape):
        raise ctx.error(f"weight rank {len(w_shape)} differs from input rank {len(x_shape)}")
    kernel = tuple(ctx.attr("kernel_shape", w_shape[2:]))
    if tuple(kernel) != tuple(w_shape[2:]):
        raise ctx.error(f"kernel_shape {list(kernel)} does not match the weight shape {list(w_shape)}")
    group = int(ctx.attr("group", 1))
    if group < 1 or x_shape[1] != w_shape[1] * group or w_shape[0] % group:
        raise ctx.error(
            f"input channels {x_shape[1]}, weight {list(w_shape)} and group {group} are inconsistent"
        )
    strides, dilations, pads = _spatial_attrs(ctx, x_shape[2:], kernel)
    x, w = _to_2d(ctx, x_in, "Conv"), _to_2d(ctx, w_in, "Conv")
    strides, dilations, pads = _as_2d(strides, rank, 1), _as_2d(dilations, rank, 1), _as_2d(pads, rank, 0)
    (h, wd), (kh, kw) = shape_of(x)[2:], shape_of(w)[2:]
    ho = (h + pads[0] + pads[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    if ho < 1 or wo < 1:
        raise ctx.error(f"output would be empty ({ho}x{wo}) for input {list(x_shape)}")
    bias = None
    if ctx.has(ctx.input(2)):
        bias = ctx.value(node.input[2])
        if shape_of(bias) != (w_shape[0],):
            raise ctx.error(f"bias shape {list(shape_of(bias))} is not [{w_shape[0]}]")
    out = (x_shape[0], w_shape[0], ho, wo)
    op = ctx.emit(
        graph.Conv2dOp(
            x, w, bias, strides=(strides[0], strides[1]),
            pads=(pads[0], pads[1], pads[2], pads[3]),
            dilations=(dilations[0], dilations[1]), group=group, shape=out,
        )
    )  # fmt: skip
    y = op.results[0]
    if rank == 1:
        y = reshape(ctx, y, (out[0], out[1], out[3]))
    return [y]


def _transpose_pads(
    ctx: ImportContext, in_hw: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int],
    output_padding: list[int],
) -> tuple[list[int], list[int]]:
    """[begin..., end...] pads and output_padding of a ConvTranspose, auto_pad / output_shape resolved
    as ONNX Runtime does: with output_shape, total = full - output_shape per axis goes to the end for
    SAME_UPPER and to the beginning otherwise (the larger half); an output_shape up to stride - 1
    beyond the full output extends it at the end (as output_padding). SAME_UPPER / SAME_LOWER alone
    aim at output = input * stride, with the total padding clamped at 0."""
    rank = len(in_hw)
    auto_pad = ctx.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    pads = list(ctx.attr("pads", [0] * (2 * rank)))
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads {pads} do not match the {rank} spatial dimension(s)")
    if auto_pad == "VALID":
        pads = [0] * (2 * rank)
    output_shape = ctx.attr("output_shape")
    if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return pads, output_padding
    if output_shape is not None and len(output_shape) != rank:
        raise ctx.error(f"output_shape {list(output_shape)} must have {rank} entries (the spatial dimensions)")
    adj = list(output_padding)
    for i in range(rank):
        full = strides[i] * (in_hw[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1
        target = in_hw[i] * strides[i] if output_shape is None else int(output_shape[i])
        total = full - target
        if output_shape is None:
            total = max(total, 0)
        elif target < 1 or total <= -strides[i]:
            raise ctx.error(
                f"output_shape {list(output_shape)} is inconsistent with the input {list(in_hw)} (axis {i}: the "
                f"full output is {full}; output_shape may exceed it by at most stride - 1 = {strides[i] - 1})"
            )
        if total < 0:  # the output extends past the full one: more output_padding
            pads[i], pads[i + rank], adj[i] = 0, 0, output_padding[i] - total
            continue
        small, big = total // 2, total - total // 2
        pads[i], pads[i + rank] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    return pads, adj


@converter("ConvTranspose")
def convert_conv_transpose(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """ConvTranspose with a constant weight (an initializer, or a DequantizeLinear of one), 1-D and 2-D."""
    x_in = ctx.value(node.input[0])
    x_shape = shape_of(x_in)
    rank = len(x_shape) - 2
    if rank not in (1, 2):
        raise ctx.unsupported(f"ConvTranspose with {rank} spatial dimensions (only 1-D and 2-D)")
    w_const = ctx.const(node.input[1])
    if w_const is None:
        w_value = ctx.value(node.input[1])
        dq = w_value.owner
        if not (isinstance(dq, graph.DequantizeOp) and isinstance(dq.input.owner, graph.WeightOp)):
            raise ctx.unsupported(f"the weight ('{node.input[1]}') must be a compile-time constant")
    w_shape = tuple(w_const.shape) if w_const is not None else shape_of(w_value)
    if len(w_shape) != len(x_shape):
        raise ctx.error(f"weight rank {len(w_shape)} differs from input rank {len(x_shape)}")
    kernel = tuple(ctx.attr("kernel_shape", w_shape[2:]))
    if kernel != tuple(w_shape[2:]):
        raise ctx.error(f"kernel_shape {list(kernel)} does not match the weight shape {list(w_shape)}")
    group = int(ctx.attr("group", 1))
    if group < 1 or x_shape[1] != w_shape[0] or w_shape[0] % group:
        raise ctx.error(
            f"weight {list(w_shape)} must be [C_in = {x_shape[1]}, C_out / group, *kernel] with C_in divisible by "
            f"group {group}"
        )
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    output_padding = list(ctx.attr("output_padding", [0] * rank))
    if len(strides) != rank or len(dilations) != rank or len(output_padding) != rank:
        raise ctx.error(f"strides/dilations/output_padding do not match the {rank} spatial dimension(s)")
    if min(strides) < 1 or min(dilations) < 1 or min(output_padding) < 0:
        raise ctx.error(f"invalid strides {strides}, dilations {dilations} or output_padding {output_padding}")
    for i in range(rank):
        if output_padding[i] >= max(strides[i], dilations[i]):
            raise ctx.error(f"output_padding {output_padding} must be less than max(stride, dilation) on each axis")
    pads, adj = _transpose_pads(ctx, x_shape[2:], kernel, strides, dilations, output_padding)
    if min(pads) < 0:
        raise ctx.error(f"invalid pads {pads}")
    out_hw = [
        graph.conv_transpose_extent(x_shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[i + rank], adj[i])
        for i in range(rank)
    ]  # fmt: skip
    if min(out_hw) < 1:
        raise ctx.error(f"output would be empty ({'x'.join(map(str, out_hw))}) for input {list(x_shape)}")
    c_out = w_shape[1] * group
    bias = None
    if ctx.has(ctx.input(2)):
        bias = ctx.value(node.input[2])
        if shape_of(bias) != (c_out,):
            raise ctx.error(f"bias shape {list(shape_of(bias))} is not [{c_out}]")
    x = _to_2d(ctx, x_in, "ConvTranspose")
    if w_const is not None:
        w = ctx.weight(w_const.reshape(w_shape[:2] + (1,) * (2 - rank) + w_shape[2:]), node.input[1])
    else:
        w = _to_2d(ctx, w_value, "ConvTranspose")
    strides, dilations, pads = _as_2d(strides, rank, 1), _as_2d(dilations, rank, 1), _as_2d(pads, rank, 0)
    adj, out_hw = _as_2d(adj, rank, 0), _as_2d(out_hw, rank, 1)
    out = (x_shape[0], c_out, out_hw[0], out_hw[1])
    op = ctx.emit(
        graph.ConvTranspose2dOp(
            x, w, bias, strides=(strides[0], strides[1]), pads=(pads[0], pads[1], pads[2], pads[3]),
            dilations=(dilations[0], dilations[1]), output_padding=(adj[0], adj[1]), group=group, shape=out,
        )
    )  # fmt: skip
    y = op.results[0]
    if rank == 1:
        y = reshape(ctx, y, (out[0], out[1], out[3]))
    return [y]


def matmul(ctx: ImportContext, a: SSAValue, b: SSAValue) -> SSAValue:
    """numpy matmul semantics, promoting 1-D operands as numpy does."""
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) == 1:
        a = reshape(ctx, a, (1, sa[0]))
    if len(sb) == 1:
        b = reshape(ctx, b, (sb[0], 1))
    pa, pb = shape_of(a), shape_of(b)
    if pa[-1] != pb[-2]:
        raise ctx.error(f"inner dimensions differ: {list(sa)} x {list(sb)}")
    try:
        batch = np.broadcast_shapes(pa[:-2], pb[:-2])
    except ValueError:
        raise ctx.error(f"batch dimensions do not broadcast: {list(sa)} x {list(sb)}") from None
    out = (*batch, pa[-2], pb[-1])
    y = ctx.emit(graph.MatMulOp(a, b, out)).results[0]
    final = (*batch, *([pa[-2]] if len(sa) > 1 else []), *([pb[-1]] if len(sb) > 1 else []))
    return reshape(ctx, y, final) if final != out else y


@converter("MatMul")
def convert_matmul(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [matmul(ctx, ctx.value(node.input[0]), ctx.value(node.input[1]))]


@converter("Gemm")
def convert_gemm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    for index in (0, 1):
        if len(ctx.shape(node.input[index])) != 2:
            raise ctx.error(f"input {index} must be 2-D, got {list(ctx.shape(node.input[index]))}")
    a = ctx.value(node.input[0])
    if trans_a:
        a = transpose(ctx, a, (1, 0))
    b_const = ctx.const(node.input[1])
    if b_const is not None:  # fold the transpose and alpha into the weight
        b_arr = b_const.T if trans_b else b_const
        b = ctx.weight(np.ascontiguousarray(b_arr * np.float32(alpha)), node.input[1])
        alpha = 1.0
    else:
        b = ctx.value(node.input[1])
        if trans_b:
            b = transpose(ctx, b, (1, 0))
    y = matmul(ctx, a, b)
    if alpha != 1.0:
        y = ctx.emit(graph.MulOp(y, ctx.weight(np.float32([alpha]), "alpha"), shape_of(y))).results[0]
    if ctx.has(ctx.input(2)) and beta != 0.0:
        c_const = ctx.const(node.input[2])
        if c_const is not None:
            c = ctx.weight(c_const.astype(np.float32) * np.float32(beta), node.input[2])
        else:
            c = ctx.value(node.input[2])
            if beta != 1.0:
                beta_w = ctx.weight(np.float32([beta]), "beta")
                c = ctx.emit(graph.MulOp(c, beta_w, shape_of(c))).results[0]
        try:
            out = tuple(np.broadcast_shapes(shape_of(y), shape_of(c)))
        except ValueError:
            raise ctx.error(f"C of shape {list(shape_of(c))} does not broadcast to {list(shape_of(y))}") from None
        if out != shape_of(y):
            raise ctx.error(f"C of shape {list(shape_of(c))} does not broadcast to {list(shape_of(y))}")
        y = ctx.emit(graph.AddOp(y, c, out)).results[0]
    return [y]


@converter("BatchNormalization")
def convert_batch_norm(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if int(ctx.attr("training_mode", 0)) or any(node.output[1:]):
        raise ctx.unsupported("training mode (extra outputs) is not supported; inference only")
    if not int(ctx.attr("spatial", 1)):
        raise ctx.unsupported("spatial=0 is not supported")
    x = ctx.value(node.input[0])
    channels = shape_of(x)[1] if len(shape_of(x)) > 1 else 0
    params = [ctx.value(node.input[i]) for i in range(1, 5)]
    for p in params:
        if shape_of(p) != (channels,):
            raise ctx.error(f"scale/bias/mean/var must be [{channels}], got {list(shape_of(p))}")
    eps = float(ctx.attr("epsilon", 1e-5))
    op = graph.BatchNormOp.create(
        operands=[x, *params],
        properties={"epsilon": FloatAttr(eps, 32)},
        result_types=[x.type],
    )
    return [ctx.emit(op).results[0]]


def _pool_output(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, ceil: bool) -> int:
    span = size + pad_begin + pad_end - ((k - 1) * d + 1)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + pad_begin:  # last window would start in the end padding
        out -= 1
    return out


def _pool2d(ctx: ImportContext, x: SSAValue, kernel: list[int], strides: list[int], pads: list[int],
            dilations: list[int], is_max: bool, out: tuple[int, ...]) -> SSAValue:  # fmt: skip
    """A graph.max_pool / avg_pool (count_include_pad from the node) of 2-D `x` with output shape `out`."""
    props = {
        "kernel_shape": i64_array(kernel), "strides": i64_array(strides),
        "pads": i64_array(pads), "dilations": i64_array(dilations),
    }  # fmt: skip
    cls: type[graph.Pool2dOp] = graph.MaxPoolOp if is_max else graph.AvgPoolOp
    if not is_max:
        props["count_include_pad"] = BoolAttr.from_bool(bool(ctx.attr("count_include_pad", 0)))
    return ctx.emit(cls.create(operands=[x], properties=props, result_types=[tensor_type(out)])).results[0]


def _pool(ctx: ImportContext, node: NodeProto, is_max: bool) -> list[Value]:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the Indices output of MaxPool is not supported")
    x_in = ctx.value(node.input[0])
    shape = shape_of(x_in)
    rank = len(shape) - 2
    kernel = list(ctx.attr("kernel_shape", []))
    if len(kernel) != rank:
        raise ctx.error(f"kernel_shape {kernel} must have {rank} entries")
    strides, dilations, pads = _spatial_attrs(ctx, shape[2:], tuple(kernel))
    ceil = bool(ctx.attr("ceil_mode", 0))
    if rank >= 3:
        return [_pool_separable(ctx, x_in, kernel, strides, dilations, pads, ceil, is_max)]
    x = _to_2d(ctx, x_in, node.op_type)
    kernel, strides = _as_2d(kernel, rank, 1), _as_2d(strides, rank, 1)
    dilations, pads = _as_2d(dilations, rank, 1), _as_2d(pads, rank, 0)
    n, c, h, w = shape_of(x)
    ho = _pool_output(h, kernel[0], strides[0], dilations[0], pads[0], pads[2], ceil)
    wo = _pool_output(w, kernel[1], strides[1], dilations[1], pads[1], pads[3], ceil)
    if ho < 1 or wo < 1:
        raise ctx.error(f"output would be empty ({ho}x{wo}) for input {list(shape)}")
    y = _pool2d(ctx, x, kernel, strides, pads, dilations, is_max, (n, c, ho, wo))
    if rank == 1:
        y = reshape(ctx, y, (n, c, wo))
    return [y]


def _pool_separable(ctx: ImportContext, x: SSAValue, kernel: list[int], strides: list[int], dilations: list[int],
                    pads: list[int], ceil: bool, is_max: bool) -> SSAValue:  # fmt: skip
    """A pool over 3 or more spatial dimensions as one 1-D pool per axis, each a 2-D pool of kernel
    (k, 1) on the view [1, outer, axis, inner]. Exact for max (the max over a box is the max of the
    per-axis maxima) and for average: a window is a box, so its element count, with or without the
    padding, is the product of the per-axis counts (float rounding aside: ~1 ulp per axis)."""
    rank = len(kernel)
    sizes = list(shape_of(x))
    outs = [_pool_output(sizes[2 + a], kernel[a], strides[a], dilations[a], pads[a], pads[rank + a], ceil)
            for a in range(rank)]  # fmt: skip
    if min(outs) < 1:
        raise ctx.error(f"output would be empty ({'x'.join(map(str, outs))}) for input {sizes}")
    for a in range(rank):
        if kernel[a] == 1 and strides[a] == 1 and pads[a] == pads[rank + a] == 0:
            continue  # nothing to do along this axis
        outer, inner = math.prod(sizes[: 2 + a]), math.prod(sizes[3 + a :])
        view = reshape(ctx, x, (1, outer, sizes[2 + a], inner))
        y = _pool2d(ctx, view, [kernel[a], 1], [strides[a], 1], [pads[a], 0, pads[rank + a], 0], [dilations[a], 1],
                    is_max, (1, outer, outs[a], inner))  # fmt: skip
        sizes[2 + a] = outs[a]
        x = reshape(ctx, y, tuple(sizes))
    return x


@converter("MaxPool")
def convert_max_pool(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _pool(ctx, node, is_max=True)


@converter("AveragePool")
def convert_avg_pool(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _pool(ctx, node, is_max=False)


def _global_pool(ctx: ImportContext, node: NodeProto, cls: type) -> list[Value]:
    return [global_pool_value(ctx, ctx.value(node.input[0]), cls)]


def global_pool_value(ctx: ImportContext, x: SSAValue, cls: type) -> SSAValue:
    shape = shape_of(x)
    if len(shape) < 3:
        raise ctx.error(f"input must have spatial dimensions, got {list(shape)}")
    out = (shape[0], shape[1], *([1] * (len(shape) - 2)))
    return ctx.emit(cls.create(operands=[x], result_types=[tensor_type(out)])).results[0]


@converter("GlobalAveragePool")
def convert_global_avg_pool(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _global_pool(ctx, node, graph.GlobalAvgPoolOp)


@converter("GlobalMaxPool")
def convert_global_max_pool(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _global_pool(ctx, node, graph.GlobalMaxPoolOp)


PAD_MODES = {"constant": 2, "reflect": 2, "edge": 2, "wrap": 19}  # mode -> first opset defining it


def _pad_amounts(ctx: ImportContext, node: NodeProto, rank: int) -> tuple[list[int], float]:
    """[begin..., end...] pads of every axis (opset 18's `axes` spread out) and the constant."""
    if ctx.opset < 11:
        pads = ctx.attr("pads")
        if pads is None:
            raise ctx.error("attribute 'pads' is required")
        return [int(p) for p in pads], float(ctx.attr("value", 0.0))
    raw = ctx.require_const(node.input[1], "pads")
    if raw.dtype.kind not in "iu":
        raise ctx.error(f"pads must be integers, got {raw.dtype}")
    pads = [int(p) for p in raw.reshape(-1)]
    value = 0.0
    if ctx.input(2):
        const = ctx.require_const(node.input[2], "constant_value")
        if const.size != 1:
            raise ctx.error(f"constant_value must be one value, got shape {list(const.shape)}")
        value = float(const.reshape(-1)[0])
    if not ctx.input(3):
        return pads, value
    axes = [int(a) for a in ctx.require_const(node.input[3], "axes").reshape(-1)]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ctx.error(f"axes {axes} are out of range or repeat an axis of the rank-{rank} input")
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} do not give [begin..., end...] for the {len(axes)} axes {axes}")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a % rank], full[a % rank + rank] = pads[i], pads[i + len(axes)]
    return full, value


@converter("Pad", since=2)
def convert_pad(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Pad of any axes (opset 18 `axes`) in constant, reflect, edge or (opset 19) wrap mode; negative
    pads crop first. Pads, constant and axes must be constants (exported "same" padding's pads
    usually come from a Shape subgraph that folds at import). A per-tensor quantized input pads its
    stored integers (the constant is one)."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    rank = len(shape)
    mode = ctx.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if PAD_MODES.get(mode, ctx.opset + 1) > ctx.opset:
        raise ctx.error(f"unknown Pad mode '{mode}' at opset {ctx.opset}")
    pads, value = _pad_amounts(ctx, node, rank)
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads {pads} do not match the rank-{rank} input")
    if not any(pads):
        return [x]
    if rank > MAX_PAD_RANK:
        raise ctx.unsupported(f"Pad of a rank-{rank} tensor (at most {MAX_PAD_RANK})")
    kept = [d + min(0, b) + min(0, e) for d, b, e in zip(shape, pads[:rank], pads[rank:])]
    out = [d + b + e for d, b, e in zip(shape, pads[:rank], pads[rank:])]
    if min(kept) < 1 or min(out) < 1:
        raise ctx.unsupported(f"pads {pads} crop away all of an axis of {list(shape)} (empty tensors are not supported)")
    q = quant_of(x)
    if q is not None and mode == "constant":
        info = np.iinfo(q.dtype)
        if value != int(value) or not info.min <= value <= info.max:
            raise ctx.error(f"constant_value {value} is not a {q.dtype.name} value")
    props = {"pads": i64_array(pads), "mode": PadModeAttr(PadMode(mode)), "value": FloatAttr(value, 32)}
    typ = tensor_type(out, x.type.element_type)  # type: ignore[attr-defined]
    return [ctx.emit(graph.PadOp.create(operands=[x], properties=props, result_types=[typ])).results[0]]


@converter("LRN")
def convert_lrn(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    if len(shape_of(x)) < 3:
        raise ctx.error("LRN input must be [N, C, ...]")
    size = int(ctx.attr("size", 0))
    if size < 1:
        raise ctx.error("attribute 'size' is required and must be positive")
    props = {
        "size": IntegerAttr(size, i64),
        "alpha": FloatAttr(float(ctx.attr("alpha", 1e-4)), 32),
        "beta": FloatAttr(float(ctx.attr("beta", 0.75)), 32),
        "bias": FloatAttr(float(ctx.attr("bias", 1.0)), 32),
    }
    return [ctx.emit(graph.LRNOp.create(operands=[x], properties=props, result_types=[x.type])).results[0]]


def _softmax(ctx: ImportContext, node: NodeProto, log: bool) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    legacy = ctx.opset < 13
    axis = int(ctx.attr("axis", 1 if legacy else -1))
    if not -len(shape) <= axis < max(len(shape), 1):
        raise ctx.error(f"axis {axis} out of range for rank {len(shape)}")
    axis %= max(len(shape), 1)
    props = {"log": BoolAttr.from_bool(log)}
    if legacy:  # softmax over the flattened trailing block
        flat = (math.prod(shape[:axis]), math.prod(shape[axis:]))
        x2 = reshape(ctx, x, flat)
        props["axis"] = IntegerAttr(1, i64)
        op = graph.SoftmaxOp.create(operands=[x2], properties=props, result_types=[x2.type])
        return [reshape(ctx, ctx.emit(op).results[0], shape)]
    props["axis"] = IntegerAttr(axis, i64)
    return [ctx.emit(graph.SoftmaxOp.create(operands=[x], properties=props, result_types=[x.type])).results[0]]


@converter("Softmax")
def convert_softmax(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _softmax(ctx, node, log=False)


@converter("LogSoftmax")
def convert_log_softmax(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return _softmax(ctx, node, log=True)


@converter("Dropout")
def convert_dropout(ctx: ImportContext, node: NodeProto) -> list[Value]:
    training = ctx.const(ctx.input(2)) if ctx.input(2) else None
    if ctx.input(2) and training is None:
        raise ctx.unsupported("training_mode must be a compile-time constant (False: inference only)")
    if training is not None and bool(training):
        raise ctx.unsupported("training_mode=True is not supported (inference only)")
    x = ctx.value(node.input[0])
    mask = np.ones(shape_of(x), dtype=bool)  # inference: nothing is dropped
    return [ctx.emit(graph.IdentityOp.create(operands=[x], result_types=[x.type])).results[0], mask]


@converter("Identity")
def convert_identity(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    return [ctx.emit(graph.IdentityOp.create(operands=[x], result_types=[x.type])).results[0]]
