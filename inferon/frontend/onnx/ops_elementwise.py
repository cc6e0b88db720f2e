"""Converters for element-wise ops: arithmetic with broadcasting and activations."""

from __future__ import annotations

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
}


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


@converter(*UNARY)
def convert_unary(ctx: ImportContext, node: NodeProto) -> list[Value]:
    cls, attrs = UNARY[node.op_type]
    params = {prop: float(ctx.attr(name, default)) for name, (prop, default) in attrs.items()}
    x = ctx.value(node.input[0])
    return [ctx.emit(cls(x, params.get("alpha", 0.0), params.get("beta", 0.0))).results[0]]


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
