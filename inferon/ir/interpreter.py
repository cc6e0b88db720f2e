"""A numpy reference interpreter for the `graph` dialect: the oracle of tests and constant folding."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue

from inferon.ir import quant
from inferon.ir.attrs import ActivationKind, ElementwiseKind, EpilogueAttr, PadMode, ReduceKind
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import ints, shape_of
from inferon.ir.resize import resize_reference
from inferon.ir.weights import WeightStore

Impl = Callable[[Operation, list[np.ndarray]], np.ndarray]
_IMPLS: dict[type[Operation], Impl] = {}


def impl(*classes: type[Operation]) -> Callable[[Impl], Impl]:
    def register(fn: Impl) -> Impl:
        for cls in classes:
            _IMPLS[cls] = fn
        return fn

    return register


_ERF = np.vectorize(math.erf, otypes=[np.float64])
_ERFC = np.vectorize(math.erfc, otypes=[np.float64])

ELEMENTWISE: dict[ElementwiseKind, Callable[[np.ndarray, np.ndarray | float, float], np.ndarray]] = {
    ElementwiseKind.ADD: lambda a, b, _: a + b,
    ElementwiseKind.SUB: lambda a, b, _: a - b,
    ElementwiseKind.MUL: lambda a, b, _: a * b,
    ElementwiseKind.DIV: lambda a, b, _: a / b,
    ElementwiseKind.MAX: lambda a, b, _: np.maximum(a, b),
    ElementwiseKind.MIN: lambda a, b, _: np.minimum(a, b),
    ElementwiseKind.POW: lambda a, b, _: np.power(a, b),
    ElementwiseKind.PRELU: lambda a, b, _: np.where(a < 0, a * b, a),
    ElementwiseKind.GREATER: lambda a, b, _: (a > b).astype(np.float32),
    ElementwiseKind.LESS: lambda a, b, _: (a < b).astype(np.float32),
    ElementwiseKind.GREATER_EQUAL: lambda a, b, _: (a >= b).astype(np.float32),
    ElementwiseKind.LESS_EQUAL: lambda a, b, _: (a <= b).astype(np.float32),
    ElementwiseKind.EQUAL: lambda a, b, _: (a == b).astype(np.float32),
    ElementwiseKind.AND: lambda a, b, _: ((a != 0) & (b != 0)).astype(np.float32),
    ElementwiseKind.OR: lambda a, b, _: ((a != 0) | (b != 0)).astype(np.float32),
    ElementwiseKind.XOR: lambda a, b, _: ((a != 0) ^ (b != 0)).astype(np.float32),
    ElementwiseKind.RELU: lambda x, a, b: np.maximum(x, 0),
    ElementwiseKind.LEAKY_RELU: lambda x, a, b: np.where(x >= 0, x, a * x),
    ElementwiseKind.CLIP: lambda x, a, b: np.minimum(np.maximum(x, a), b),
    ElementwiseKind.SIGMOID: lambda x, a, b: 1 / (1 + np.exp(-x)),
    ElementwiseKind.TANH: lambda x, a, b: np.tanh(x),
    ElementwiseKind.EXP: lambda x, a, b: np.exp(x),
    ElementwiseKind.LOG: lambda x, a, b: np.log(x),
    ElementwiseKind.ABS: lambda x, a, b: np.abs(x),
    ElementwiseKind.NEG: lambda x, a, b: -x,
    ElementwiseKind.SQRT: lambda x, a, b: np.sqrt(x),
    ElementwiseKind.RECIPROCAL: lambda x, a, b: 1 / x,
    ElementwiseKind.FLOOR: lambda x, a, b: np.floor(x),
    ElementwiseKind.CEIL: lambda x, a, b: np.ceil(x),
    ElementwiseKind.ELU: lambda x, a, b: np.where(x > 0, x, a * (np.exp(x) - 1)),
    ElementwiseKind.HARD_SIGMOID: lambda x, a, b: np.clip(a * x + b, 0, 1),
    ElementwiseKind.SOFTPLUS: lambda x, a, b: np.log1p(np.exp(x)),
    ElementwiseKind.HARD_SWISH: lambda x, a, b: x * np.clip(x / 6 + 0.5, 0, 1),
    ElementwiseKind.SELU: lambda x, a, b: b * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
    ElementwiseKind.CELU: lambda x, a, b: np.maximum(x, 0) + np.minimum(0, a * np.expm1(np.minimum(x, 0) / a)),
    ElementwiseKind.THRESHOLDED_RELU: lambda x, a, b: np.where(x > a, x, 0),
    ElementwiseKind.SOFTSIGN: lambda x, a, b: x / (1 + np.abs(x)),
    ElementwiseKind.MISH: lambda x, a, b: x * np.tanh(np.logaddexp(0, x)),
    ElementwiseKind.SWISH: lambda x, a, b: x * (0.5 + 0.5 * np.tanh(0.5 * a * x)),
    ElementwiseKind.ERF: lambda x, a, b: _ERF(x),
    ElementwiseKind.GELU: lambda x, a, b: 0.5 * x * _ERFC(-x / np.sqrt(2)),
    ElementwiseKind.GELU_TANH: lambda x, a, b: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ElementwiseKind.SIGN: lambda x, a, b: np.sign(x),
    ElementwiseKind.ROUND: lambda x, a, b: np.round(x),
    ElementwiseKind.SIN: lambda x, a, b: np.sin(x),
    ElementwiseKind.COS: lambda x, a, b: np.cos(x),
    ElementwiseKind.NOT: lambda x, a, b: (x == 0).astype(np.float32),
}

ACTIVATION_KIND = {
    ActivationKind.RELU: ElementwiseKind.RELU,
    ActivationKind.LEAKY_RELU: ElementwiseKind.LEAKY_RELU,
    ActivationKind.CLIP: ElementwiseKind.CLIP,
    ActivationKind.SIGMOID: ElementwiseKind.SIGMOID,
    ActivationKind.HARD_SWISH: ElementwiseKind.HARD_SWISH,
    ActivationKind.SWISH: ElementwiseKind.SWISH,
    ActivationKind.GELU: ElementwiseKind.GELU,
    ActivationKind.GELU_TANH: ElementwiseKind.GELU_TANH,
}


def apply_epilogue(y: np.ndarray, epilogue: EpilogueAttr) -> np.ndarray:
    kind = epilogue.activation
    if kind == ActivationKind.NONE:
        return y
    return ELEMENTWISE[ACTIVATION_KIND[kind]](y, epilogue.alpha.value.data, epilogue.beta.value.data)


def _fused(op: graph.FusableOp, y: np.ndarray, bias_shape: tuple[int, ...], args: list[np.ndarray]) -> np.ndarray:
    rest = args[2:]
    if op.bias is not None:
        y = y + rest.pop(0).reshape(bias_shape)
    if op.residual is not None:
        y = y + rest.pop(0)
    return apply_epilogue(y, op.epilogue)


def conv2d(x: np.ndarray, w: np.ndarray, strides: Sequence[int], pads: Sequence[int],
           dilations: Sequence[int], group: int) -> np.ndarray:
    """Direct NCHW convolution in numpy (im2col + einsum)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - (kh - 1) * dh - 1) // sh + 1
    wo = (wd + pads[1] + pads[3] - (kw - 1) * dw - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
    cols = cols.reshape(n, group, cg * kh * kw, ho * wo)
    wg = w.reshape(group, m // group, cg * kh * kw).astype(np.float64)
    y = np.einsum("gmk,ngkp->ngmp", wg, cols)
    return y.reshape(n, m, ho, wo)


@impl(graph.Conv2dOp)
def _conv(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.Conv2dOp)
    y = conv2d(args[0], args[1], ints(op.strides), ints(op.pads), ints(op.dilations), op.group.value.data)
    return _fused(op, y, (1, -1, 1, 1), args)


def conv_transpose2d(x: np.ndarray, w: np.ndarray, strides: Sequence[int], pads: Sequence[int],
                     dilations: Sequence[int], group: int, out_hw: tuple[int, int]) -> np.ndarray:
    """NCHW transposed convolution in numpy: every kernel tap scatters W^T x into a strided view of
    the full (unpadded) output, which is then cropped by the begin pads to `out_hw` (past the
    full output's end, output_padding, it reads zeros)."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    (sh, sw), (dh, dw), (ho, wo) = strides, dilations, out_hw
    full_h = max(sh * (h - 1) + (kh - 1) * dh + 1, pads[0] + ho)
    full_w = max(sw * (wd - 1) + (kw - 1) * dw + 1, pads[1] + wo)
    y = np.zeros((n, group, mg, full_h, full_w), dtype=np.float64)
    xg = x.reshape(n, group, c // group, h, wd).astype(np.float64)
    wg = w.reshape(group, c // group, mg, kh, kw).astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            tap = np.einsum("ngchw,gcm->ngmhw", xg, wg[:, :, :, i, j])
            y[:, :, :, i * dh : i * dh + sh * (h - 1) + 1 : sh, j * dw : j * dw + sw * (wd - 1) + 1 : sw] += tap
    return y.reshape(n, group * mg, full_h, full_w)[:, :, pads[0] : pads[0] + ho, pads[1] : pads[1] + wo]


@impl(graph.ConvTranspose2dOp)
def _conv_transpose(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ConvTranspose2dOp)
    out = shape_of(op.output)
    y = conv_transpose2d(args[0], args[1], ints(op.strides), ints(op.pads), ints(op.dilations), op.group.value.data,
                         (out[2], out[3]))  # fmt: skip
    return _fused(op, y, (1, -1, 1, 1), args)


@impl(graph.ChannelAffineOp)
def _channel_affine(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ChannelAffineOp)
    shape = (1, -1) + (1,) * (args[0].ndim - 2)
    return _fused(op, args[0].astype(np.float64) * args[1].reshape(shape), shape, args)


@impl(graph.MatMulOp)
def _matmul(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.MatMulOp)
    y = np.matmul(args[0].astype(np.float64), args[1])
    return _fused(op, y, (-1,), args)


def _qconv_like(op: Operation, acc: np.ndarray, args: list[np.ndarray], channel_shape: tuple[int, ...], channels: int) -> np.ndarray:
    qx, qw, qy = (graph.quant_of(v) for v in (op.operands[0], op.operands[1], op.results[0]))
    assert qx is not None and qw is not None and qy is not None
    if len(args) > 2:
        acc = acc + args[2].astype(np.int64).reshape(channel_shape)
    mult = quant.multipliers(qx.scale, qw.scale_array(), qy.scale, channels).reshape(channel_shape)
    lo, hi = quant.clamp_range(op.properties["epilogue"], qy.scale, qy.zero_point, qy.dtype)  # type: ignore[arg-type]
    return quant.requantize(acc, mult, qy.zero_point, lo, hi, qy.dtype)


@impl(graph.QConv2dOp)
def _qconv(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.QConv2dOp)
    qx = graph.quant_of(op.input)
    assert qx is not None
    x = args[0].astype(np.float64) - qx.zero_point
    acc = conv2d(x, args[1].astype(np.float64), ints(op.strides), ints(op.pads), ints(op.dilations), op.group.value.data)
    return _qconv_like(op, np.rint(acc).astype(np.int64), args, (1, -1, 1, 1), args[1].shape[0])


@impl(graph.QMatMulOp)
def _qmatmul(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.QMatMulOp)
    qx = graph.quant_of(op.lhs)
    assert qx is not None
    acc = np.matmul(args[0].astype(np.int64) - qx.zero_point, args[1].astype(np.int64))
    return _qconv_like(op, acc, args, (-1,), args[1].shape[1])


@impl(graph.QTableOp)
def _qtable(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    x, table = args[0], np.asarray(args[1], np.uint8)
    index = np.ascontiguousarray(x).view(np.uint8).astype(np.intp)
    rows = np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2)) if table.shape[0] > 1 else 0
    return table[rows, index].view(graph.element_dtype(op.results[0]))


@impl(graph.QAddOp)
def _qadd(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.QAddOp)
    qa, qb, qy = (graph.quant_of(v) for v in (op.lhs, op.rhs, op.output))
    assert qa is not None and qb is not None and qy is not None
    lo, hi = quant.activation_bounds(op.epilogue)
    return quant.qadd(args[0], (qa.scale, qa.zero_point), args[1], (qb.scale, qb.zero_point),
                      (qy.scale, qy.zero_point), qy.dtype, lo, hi)  # fmt: skip


@impl(graph.QuantizeOp)
def _quantize(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    q = graph.quant_of(op.results[0])
    assert q is not None
    return quant.quantize(args[0], q.scale, q.zero_point, q.dtype)


@impl(graph.DequantizeOp)
def _dequantize(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    q = graph.quant_of(op.operands[0])
    assert q is not None
    return quant.dequantize(args[0], q.scale_array(), q.zero_point_array(), q.axis.value.data)


@impl(graph.BatchNormOp)
def _batch_norm(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.BatchNormOp)
    x, scale, bias, mean, var = args
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var.astype(np.float64) + op.epsilon.value.data)
    return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)


@impl(*graph.BINARY_OPS)
def _binary(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.BinaryOp)
    return ELEMENTWISE[op.KIND](args[0], args[1], 0.0)


@impl(graph.WhereOp)
def _where(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    return np.where(args[0] != 0, args[1], args[2])


@impl(*graph.UNARY_OPS)
def _unary(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.UnaryOp)
    return ELEMENTWISE[op.KIND](args[0], op.alpha.value.data, op.beta.value.data)


def pool2d(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
           dilations: Sequence[int], out_hw: tuple[int, int], is_max: bool, count_include_pad: bool) -> np.ndarray:
    n, c, h, w = x.shape
    ho, wo = out_hw
    y = np.empty((n, c, ho, wo), dtype=np.float64)
    for oh in range(ho):
        for ow in range(wo):
            h0, w0 = oh * strides[0] - pads[0], ow * strides[1] - pads[1]
            hs = [h0 + i * dilations[0] for i in range(kernel[0])]
            ws = [w0 + j * dilations[1] for j in range(kernel[1])]
            hv = [i for i in hs if 0 <= i < h]
            wv = [j for j in ws if 0 <= j < w]
            window = x[:, :, hv][:, :, :, wv]
            if is_max:
                y[:, :, oh, ow] = window.max(axis=(2, 3))
                continue
            if count_include_pad:
                hc = len([i for i in hs if -pads[0] <= i < h + pads[2]])
                wc = len([j for j in ws if -pads[1] <= j < w + pads[3]])
                count = hc * wc
            else:
                count = len(hv) * len(wv)
            y[:, :, oh, ow] = window.sum(axis=(2, 3)) / count
    return y


def _on_real_values(op: Operation, x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn on x; on quantized tensors (average pools) fn runs on the dequantized values and the
    result is quantized with the output's type."""
    qx, qy = graph.quant_of(op.operands[0]), graph.quant_of(op.results[0])
    if qx is None or qy is None:
        return fn(x)
    real = quant.dequantize(x, qx.scale_array(), qx.zero_point_array(), -1)
    return quant.quantize(fn(real).astype(np.float32), qy.scale, qy.zero_point, qy.dtype)


@impl(graph.MaxPoolOp, graph.AvgPoolOp)
def _pool(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.Pool2dOp)
    out = shape_of(op.output)
    include = isinstance(op, graph.AvgPoolOp) and op.count_include_pad.value.data
    return _on_real_values(op, args[0], lambda x: pool2d(
        x, ints(op.kernel_shape), ints(op.strides), ints(op.pads), ints(op.dilations), (out[2], out[3]),
        isinstance(op, graph.MaxPoolOp), bool(include)))  # fmt: skip


@impl(graph.GlobalAvgPoolOp, graph.GlobalMaxPoolOp)
def _global_pool(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    axes = tuple(range(2, args[0].ndim))
    reduce = np.max if isinstance(op, graph.GlobalMaxPoolOp) else np.mean
    return _on_real_values(op, args[0], lambda x: reduce(x, axis=axes, keepdims=True))


def reduce(x: np.ndarray, kind: ReduceKind, axes: tuple[int, ...]) -> np.ndarray:
    """ONNX Reduce* of `kind` over `axes` (keepdims), in float64 then rounded to float32."""
    v = np.asarray(x, np.float64)
    if kind == ReduceKind.LOG_SUM_EXP:
        m = np.max(v, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        out = m + np.log(np.sum(np.exp(v - m), axis=axes, keepdims=True))
    else:
        fn = {
            ReduceKind.SUM: lambda: np.sum(v, axis=axes, keepdims=True),
            ReduceKind.MEAN: lambda: np.mean(v, axis=axes, keepdims=True),
            ReduceKind.MAX: lambda: np.max(v, axis=axes, keepdims=True),
            ReduceKind.MIN: lambda: np.min(v, axis=axes, keepdims=True),
            ReduceKind.PROD: lambda: np.prod(v, axis=axes, keepdims=True),
            ReduceKind.L1: lambda: np.sum(np.abs(v), axis=axes, keepdims=True),
            ReduceKind.L2: lambda: np.sqrt(np.sum(v * v, axis=axes, keepdims=True)),
            ReduceKind.SUM_SQUARE: lambda: np.sum(v * v, axis=axes, keepdims=True),
            ReduceKind.LOG_SUM: lambda: np.log(np.sum(v, axis=axes, keepdims=True)),
        }[kind]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = fn()
    return out.astype(np.float32)


@impl(graph.ReduceOp)
def _reduce(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ReduceOp)
    return reduce(args[0], op.kind.data, ints(op.axes))


def arg_reduce(x: np.ndarray, axis: int, is_max: bool, select_last: bool) -> np.ndarray:
    """ArgMax / ArgMin over `axis` (kept as 1) by a sequential scan with strict comparisons, as ONNX
    Runtime does: ties keep the first index (the last with `select_last`), a NaN never wins unless it
    is the first element."""
    v = np.moveaxis(np.asarray(x), axis, 0)
    best, index = v[0].copy(), np.zeros(v.shape[1:], np.int64)
    for a in range(1, v.shape[0]):
        if is_max:
            better = v[a] >= best if select_last else v[a] > best
        else:
            better = v[a] <= best if select_last else v[a] < best
        best, index = np.where(better, v[a], best), np.where(better, a, index)
    return np.expand_dims(index, axis)


@impl(graph.ArgReduceOp)
def _arg_reduce(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ArgReduceOp)
    is_max = op.kind.data == ReduceKind.MAX
    return arg_reduce(args[0], op.axis.value.data, is_max, op.select_last.value.data)


def normalize(x: np.ndarray, axes: tuple[int, ...], epsilon: float) -> np.ndarray:
    """(x - mean) / sqrt(var + epsilon) over `axes`, in float64."""
    v = np.asarray(x, np.float64)
    mean = v.mean(axis=axes, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
    return (v - mean) / np.sqrt(var + epsilon)


@impl(graph.LayerNormOp)
def _layer_norm(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.LayerNormOp)
    x, scale, bias = args
    axes = tuple(range(op.axis.value.data, x.ndim))
    return (normalize(x, axes, op.epsilon.value.data) * scale + bias).astype(np.float32)


@impl(graph.GroupNormOp)
def _group_norm(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.GroupNormOp)
    x, scale, bias = args
    n, c, g = x.shape[0], x.shape[1], op.groups.value.data
    grouped = normalize(x.reshape(n, g, -1), (2,), op.epsilon.value.data).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    return (grouped * scale.reshape(per_channel) + bias.reshape(per_channel)).astype(np.float32)


@impl(graph.PadOp)
def _pad(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.PadOp)
    starts, extents, begin, end = op.window()
    x = args[0][tuple(slice(s, s + n) for s, n in zip(starts, extents))]
    widths = list(zip(begin, end))
    if op.mode.data == PadMode.CONSTANT:
        return np.pad(x, widths, constant_values=op.value.value.data)
    return np.pad(x, widths, mode=op.mode.data.value)


@impl(graph.ResizeOp)
def _resize(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ResizeOp)
    out_hw = shape_of(op.output)[2:]
    return resize_reference(args[0], op.params(), (out_hw[0], out_hw[1]), op.scale_pair())


@impl(graph.ConcatOp)
def _concat(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.ConcatOp)
    return np.concatenate(args, axis=op.axis.value.data)


@impl(graph.ReshapeOp, graph.IdentityOp)
def _reshape(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    return args[0].reshape(shape_of(op.results[0]))


@impl(graph.SliceOp)
def _slice(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.SliceOp)
    index = tuple(
        np.arange(n) * step + start
        for start, step, n in zip(ints(op.starts), ints(op.steps), shape_of(op.output))
    )
    return args[0][np.ix_(*index)] if index else args[0]


@impl(graph.TransposeOp)
def _transpose(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.TransposeOp)
    return np.transpose(args[0], ints(op.perm))


@impl(graph.SoftmaxOp)
def _softmax(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.SoftmaxOp)
    axis = op.axis.value.data
    x = args[0].astype(np.float64)
    e = x - x.max(axis=axis, keepdims=True)
    if op.log.value.data:
        return e - np.log(np.exp(e).sum(axis=axis, keepdims=True))
    e = np.exp(e)
    return e / e.sum(axis=axis, keepdims=True)


@impl(graph.LRNOp)
def _lrn(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(op, graph.LRNOp)
    x = args[0].astype(np.float64)
    size = op.size.value.data
    alpha, beta, bias = (op.alpha.value.data, op.beta.value.data, op.bias.value.data)
    sq = np.zeros_like(x)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for ch in range(c):
        sq[:, ch] = (x[:, max(0, ch - lo) : min(c, ch + hi + 1)] ** 2).sum(axis=1)
    return x / (bias + alpha / size * sq) ** beta


def evaluate(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    """Compute one graph op on numpy operands; the result is float32, the storage type of a
    quantized result, or int64 (indices)."""
    return evaluate_elementwise(op, args).reshape(shape_of(op.results[0]))


def evaluate_elementwise(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    """`evaluate` for an element-wise op on operands of any broadcast-compatible shapes (the result
    keeps the broadcast shape, not the op's)."""
    fn = _IMPLS.get(type(op))
    if fn is None:
        raise NotImplementedError(f"the interpreter has no implementation of {op.name}")
    with np.errstate(all="ignore"):
        out = fn(op, args)
    return np.asarray(out, dtype=graph.element_dtype(op.results[0]))


def run(module: ModuleOp, weights: WeightStore, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Interpret `@main` of a graph-level module on numpy inputs."""
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    env: dict[SSAValue, np.ndarray] = {}
    for arg, value in zip(fn.body.block.args, inputs, strict=True):
        env[arg] = np.asarray(value, dtype=np.float32)
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            return [env[v] for v in op.operands]
        if isinstance(op, graph.WeightOp):
            env[op.result] = weights[op.handle.data]
            continue
        env[op.results[0]] = evaluate(op, [env[v] for v in op.operands])
    raise ValueError("@main has no func.return")
