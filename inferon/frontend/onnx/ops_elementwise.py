"""Converters for element-wise ops: arithmetic with broadcasting and activations."""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.registry import converter
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import shape_of

BINARY: dict[str, type[graph.BinaryOp]] = {
    "Add": graph.AddOp, "Sub": graph.SubOp, "Mul": graph.MulOp, "Div": graph.DivOp,
    "Pow": graph.PowOp, "Max": graph.MaxOp, "Min": graph.MinOp, "Sum": graph.AddOp,
}  # fmt: skip

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875
# ONNX op → (graph op, {onnx attribute: (graph property, default)})
UNARY: dict[str, tuple[type[graph.UnaryOp], dict[str, tuple[str, float]]]] = {
    "Relu": (graph.ReluOp, {}),
    "LeakyRelu": (graph.LeakyReluOp, {"alpha": ("alpha", 0.01)}),
    "Sigmoid": (graph.SigmoidOp, {}),
    "Tanh": (graph.TanhOp, {}),
    "Exp": (graph.ExpOp, {}),
    "Log": (graph.LogOp, {}),
    "Abs": (graph.AbsOp, {}),
    "Neg": (graph.NegOp, {}),
    "Sqrt": (graph.SqrtOp, {}),
    "Reciprocal": (graph.ReciprocalOp, {}),
    "Floor": (graph.FloorOp, {}),
    "Ceil": (graph.CeilOp, {}),
    "Elu": (graph.EluOp, {"alpha": ("alpha", 1.0)}),
    "HardSigmoid": (graph.HardSigmoidOp, {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "Softplus": (graph.SoftplusOp, {}),
    "Selu": (graph.SeluOp, {"alpha": ("alpha", SELU_ALPHA), "gamma": ("beta", SELU_GAMMA)}),
    "Celu": (graph.CeluOp, {"alpha": ("alpha", 1.0)}),
    "ThresholdedRelu": (graph.ThresholdedReluOp, {"alpha": ("alpha", 1.0)}),
    "Softsign": (graph.SoftsignOp, {}),
    "Erf": (graph.ErfOp, {}),
    "Sign": (graph.SignOp, {}),
    "Round": (graph.RoundOp, {}),
    "Sin": (graph.SinOp, {}),
    "Cos": (graph.CosOp, {}),
}
# ops that appeared in later opsets (registered from that version on)
UNARY_SINCE: dict[str, tuple[int, type[graph.UnaryOp]]] = {
    "HardSwish": (14, graph.HardSwishOp), "Mish": (18, graph.MishOp),
}  # fmt: skip
GELU: dict[str, type[graph.UnaryOp]] = {"none": graph.GeluOp, "tanh": graph.GeluTanhOp}


def binary(ctx: ImportContext, cls: type[graph.BinaryOp], a: SSAValue, b: SSAValue) -> SSAValue:
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(shape_of(a), shape_of(b)))
    except ValueError:
        raise ctx.error(f"shapes {list(shape_of(a))} and {list(shape_of(b))} do not broadcast") from None
    return ctx.emit(cls(a, b, shape)).results[0]


@converter(*BINARY)
def convert_binary(ctx: ImportContext, node: NodeProto) -> list[Value]:
    if ctx.attr("broadcast") is not None or ctx.attr("axis") is not None:
        raise ctx.unsupported("legacy broadcast/axis attributes (opset < 7) are not supported")
    names = [n for n in node.input if n]
    if not names:
        raise ctx.error("needs at least one input")
    cls = BINARY[node.op_type]
    acc = ctx.value(names[0])
    if len(names) == 1:
        return [ctx.emit(graph.IdentityOp.create(operands=[acc], result_types=[acc.type])).results[0]]
    if len(names) > 2 and node.op_type not in ("Sum", "Max", "Min"):
        raise ctx.error(f"takes two inputs, got {len(names)}")
    for name in names[1:]:
        acc = binary(ctx, cls, acc, ctx.value(name))
    return [acc]


# Comparisons and logical ops on float32 tensors: the bool result is a float32 tensor of 1.0 / 0.0,
# which Where, Not / And / Or / Xor and Cast to FLOAT read (a bool graph input or output is converted
# from / to bytes by the importer).
COMPARE: dict[str, type[graph.BinaryOp]] = {
    "Greater": graph.GreaterOp, "Less": graph.LessOp, "Equal": graph.EqualOp,
    "GreaterOrEqual": graph.GreaterEqualOp, "LessOrEqual": graph.LessEqualOp,
    "And": graph.AndOp, "Or": graph.OrOp, "Xor": graph.XorOp,
}  # fmt: skip


@converter("Greater", "Less", "Equal", "And", "Or", "Xor", since=7)
@converter("GreaterOrEqual", "LessOrEqual", since=12)
def convert_compare(ctx: ImportContext, node: NodeProto) -> list[Value]:
    a, b = (_bool_or_float(ctx, name) for name in node.input[:2])
    return [binary(ctx, COMPARE[node.op_type], a, b)]


@converter("Not")
def convert_not(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [ctx.emit(graph.NotOp(_bool_or_float(ctx, node.input[0]))).results[0]]


@converter("Where", since=9)
def convert_where(ctx: ImportContext, node: NodeProto) -> list[Value]:
    cond, x, y = (_bool_or_float(ctx, name) for name in node.input[:3])
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(shape_of(cond), shape_of(x), shape_of(y)))
    except ValueError:
        shapes = [list(shape_of(v)) for v in (cond, x, y)]
        raise ctx.error(f"shapes {shapes} of condition, X and Y do not broadcast") from None
    return [ctx.emit(graph.WhereOp(cond, x, y, shape)).results[0]]


def _bool_or_float(ctx: ImportContext, name: str) -> SSAValue:
    """A run-time input of a comparison / logical op / Where; a constant bool tensor becomes 1.0 / 0.0."""
    const = ctx.const(name)
    if const is not None and const.dtype == np.bool_:
        return ctx.weight(const.astype(np.float32), name)
    return ctx.value(name)


@converter("Mean", since=6)
def convert_mean(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Element-wise mean of 1..n broadcast inputs: their sum divided by n."""
    names = [n for n in node.input if n]
    if not names:
        raise ctx.error("needs at least one input")
    acc = ctx.value(names[0])
    for name in names[1:]:
        acc = binary(ctx, graph.AddOp, acc, ctx.value(name))
    if len(names) == 1:
        return [ctx.emit(graph.IdentityOp.create(operands=[acc], result_types=[acc.type])).results[0]]
    return [binary(ctx, graph.DivOp, acc, ctx.weight(np.float32(len(names)), f"{node.name}.count"))]


@converter(*UNARY)
def convert_unary(ctx: ImportContext, node: NodeProto) -> list[Value]:
    cls, attrs = UNARY[node.op_type]
    params = {prop: float(ctx.attr(name, default)) for name, (prop, default) in attrs.items()}
    if cls is graph.CeluOp and params["alpha"] == 0:
        raise ctx.error("alpha must not be 0 (Celu divides by it)")
    x = ctx.value(node.input[0])
    return [ctx.emit(cls(x, params.get("alpha", 0.0), params.get("beta", 0.0))).results[0]]


@converter("HardSwish", since=UNARY_SINCE["HardSwish"][0])
@converter("Mish", since=UNARY_SINCE["Mish"][0])
def convert_unary_since(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [ctx.emit(UNARY_SINCE[node.op_type][1](ctx.value(node.input[0]))).results[0]]


@converter("Swish", since=24)
def convert_swish(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [ctx.emit(graph.SwishOp(ctx.value(node.input[0]), float(ctx.attr("alpha", 1.0)))).results[0]]


@converter("Gelu", since=20)
def convert_gelu(ctx: ImportContext, node: NodeProto) -> list[Value]:
    approximate = ctx.attr("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else str(approximate)
    if approximate not in GELU:
        raise ctx.error(f"approximate must be 'none' or 'tanh', not '{approximate}'")
    return [ctx.emit(GELU[approximate](ctx.value(node.input[0]))).results[0]]


@converter("PRelu")
def convert_prelu(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """A constant slope with one value is a LeakyRelu (fusable into a Conv); else an element-wise
    PRelu with the slope broadcast to x (unidirectional broadcasting, opset >= 7)."""
    x_shape, s_shape = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    slope = ctx.const(node.input[1])
    size = math.prod(s_shape)
    if size == 0:
        raise ctx.error("slope is empty")
    if ctx.opset < 7 and size != 1:
        raise ctx.unsupported("PRelu before opset 7 with a slope of more than one value is not supported")
    try:
        broadcast = tuple(int(d) for d in np.broadcast_shapes(x_shape, s_shape))
    except ValueError:
        broadcast = None
    if broadcast != tuple(x_shape):
        raise ctx.error(f"slope of shape {list(s_shape)} does not broadcast to the input shape {list(x_shape)}")
    x = ctx.value(node.input[0])
    if slope is not None and np.all(slope == slope.flat[0]):
        return [ctx.emit(graph.LeakyReluOp(x, float(slope.flat[0]))).results[0]]
    return [binary(ctx, graph.PReluOp, x, ctx.value(node.input[1]))]


@converter("Clip")
def convert_clip(ctx: ImportContext, node: NodeProto) -> list[Value]:
    lo, hi = -np.inf, np.inf
    if ctx.opset < 11:
        lo, hi = float(ctx.attr("min", lo)), float(ctx.attr("max", hi))
    else:
        if ctx.input(1):
            lo = float(ctx.require_const(node.input[1], "min"))
        if ctx.input(2):
            hi = float(ctx.require_const(node.input[2], "max"))
    lo, hi = max(lo, float(np.finfo(np.float32).min)), min(hi, float(np.finfo(np.float32).max))
    x = ctx.value(node.input[0])
    return [ctx.emit(graph.ClipOp(x, lo, hi)).results[0]]
