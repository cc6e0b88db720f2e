"""fuse-epilogue: fuse bias Add, residual Add and activations into Conv / ConvTranspose / MatMul /
channel affine.

Preconditions: graph level, after fold-batchnorm. Produces `graph.conv2d` / `graph.conv_transpose2d` /
`graph.matmul` whose `bias`, `residual` and `#graph.epilogue` compute, in this order,
`act(op(x) + bias + residual)`.
Fusion rules (legal because the fused producer has exactly one use, so it can move down to the
consumer's position):

| consumer                         | producer state                       | result                    |
|----------------------------------|--------------------------------------|---------------------------|
| add(y, weight[C] / [1,C,1,1])    | (transposed) conv: no residual / act | bias += weight            |
| add(y, weight[N] / [1,N])        | matmul: no residual/act              | bias += weight            |
| add(y, z) with z of y's shape    | no residual, no act                  | residual = z              |
| relu / leaky_relu / clip / sigm. / (hard_)swish | no act                | epilogue = activation     |
| mul(y, weight[C,1,1])            | channel affine: no residual, no act  | scale, bias *= weight     |
| mul(x, weight[C,1,1]), any x     | (none)                               | channel affine(x, weight) |

Before those, two patterns become one op: the exact GELU as PyTorch (opset < 20) and BERT-style code
export it, x * 0.5 * (1 + erf(x / sqrt 2)) in any grouping of the products (and x * (1 / sqrt 2)),
becomes `graph.gelu(x)`; and mul(x, sigmoid(x)) with the sigmoid used only there (SiLU / Swish as PyTorch and
TensorFlow export it: EfficientNet, YOLO) becomes one `graph.swish(x)`, so that x's producer has one
use left and the activation fuses into it like ReLU (measured: EfficientNet-B0 spent a quarter of its
time in these separate Sigmoid and Mul passes).

The last rule makes a per-channel scale (e.g. the Scale layer of Caffe exports, Mul then Add after
a BatchNorm) a `graph.channel_affine`, so that the Add and activation after it fuse into one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, f32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.attrs import NO_EPILOGUE, ActivationKind, EpilogueAttr
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import shape_of
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context

ACTIVATIONS: dict[type[Operation], ActivationKind] = {
    graph.ReluOp: ActivationKind.RELU,
    graph.LeakyReluOp: ActivationKind.LEAKY_RELU,
    graph.ClipOp: ActivationKind.CLIP,
    graph.SigmoidOp: ActivationKind.SIGMOID,
    graph.HardSwishOp: ActivationKind.HARD_SWISH,
    graph.SwishOp: ActivationKind.SWISH,
    graph.GeluOp: ActivationKind.GELU,
    graph.GeluTanhOp: ActivationKind.GELU_TANH,
}


FUSABLE = (graph.Conv2dOp, graph.ConvTranspose2dOp, graph.MatMulOp, graph.ChannelAffineOp)


def fusable_producer(value: SSAValue) -> graph.FusableOp | None:
    """The Conv/MatMul/channel affine producing `value` if it can take more epilogue (its only use)."""
    owner = value.owner
    if isinstance(owner, FUSABLE) and value.has_one_use():
        return owner
    return None


def per_channel_vector(op: graph.FusableOp, other: SSAValue) -> int | None:
    """Length of the bias vector `other` amounts to for `op`, or None if it is not one."""
    out = shape_of(op.results[0])
    shape = shape_of(other)
    if isinstance(op, (graph.Conv2dOp, graph.ConvTranspose2dOp, graph.ChannelAffineOp)):
        if shape in ((out[1], 1, 1), (1, out[1], 1, 1)):
            return out[1]
    elif shape in ((out[-1],), (1, out[-1])) or (len(shape) == len(out) and shape[:-1] == (1,) * (len(out) - 1) and shape[-1] == out[-1]):
        return out[-1]
    return None


class FuseBiasAdd(RewritePattern):
    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.AddOp, rewriter: PatternRewriter) -> None:
        for y, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            producer = fusable_producer(y)
            w = other.owner
            if producer is None or not isinstance(w, graph.WeightOp) or shape_of(op.output) != shape_of(y):
                continue
            bias, residual, epilogue = producer.fused_parts()
            length = per_channel_vector(producer, other)
            if length is None or residual is not None or epilogue != NO_EPILOGUE:
                continue
            vec = self.weights[w.handle.data].reshape(length)
            if bias is not None:
                old = bias.owner
                if not isinstance(old, graph.WeightOp):
                    continue
                vec = vec + self.weights[old.handle.data]
            new_bias = graph.WeightOp(self.weights.add(vec, "fused_bias"), (length,))
            fused = producer.rebuilt(bias=new_bias.result, residual=None, epilogue=NO_EPILOGUE)
            rewriter.replace(op, [new_bias, fused])
            rewriter.erase(producer)
            return


class FuseChannelMul(RewritePattern):
    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.MulOp, rewriter: PatternRewriter) -> None:
        out = shape_of(op.output)
        for x, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            w = other.owner
            if len(out) != 4 or shape_of(x) != out or not isinstance(w, graph.WeightOp) or x.type != op.output.type or x.type.element_type != f32:  # type: ignore[attr-defined]
                continue
            if shape_of(other) not in ((out[1], 1, 1), (1, out[1], 1, 1)):
                continue
            vec = self.weights[w.handle.data].reshape(out[1])
            producer = x.owner if x.has_one_use() else None
            if isinstance(producer, graph.ChannelAffineOp):
                bias, residual, epilogue = producer.fused_parts()
                parts = [producer.scale.owner, bias.owner if bias is not None else None]
                if residual is None and epilogue == NO_EPILOGUE and all(isinstance(p, graph.WeightOp) for p in parts if p is not None):
                    scale = graph.WeightOp(self.weights.add(self.weights[parts[0].handle.data] * vec, "affine_scale"), (out[1],))  # type: ignore[union-attr]
                    new = [scale]
                    if bias is not None:
                        new.append(graph.WeightOp(self.weights.add(self.weights[parts[1].handle.data] * vec, "affine_bias"), (out[1],)))  # type: ignore[union-attr]
                    fused = producer.rebuilt(main=(producer.input, scale.result), bias=new[-1].result if bias is not None else None,
                                             residual=None, epilogue=NO_EPILOGUE)  # fmt: skip
                    rewriter.replace(op, [*new, fused])
                    rewriter.erase(producer)
                    return
            scale = graph.WeightOp(self.weights.add(vec, "affine_scale"), (out[1],))
            rewriter.replace(op, [scale, graph.ChannelAffineOp(x, scale.result, None, out)])
            return


class FuseResidualAdd(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.AddOp, rewriter: PatternRewriter) -> None:
        if shape_of(op.lhs) != shape_of(op.rhs):
            return
        for y, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            producer = fusable_producer(y)
            if producer is None or other is y or isinstance(other.owner, graph.WeightOp):
                continue
            bias, residual, epilogue = producer.fused_parts()
            if residual is not None or epilogue != NO_EPILOGUE:
                continue
            fused = producer.rebuilt(bias=bias, residual=other, epilogue=NO_EPILOGUE)
            rewriter.replace(op, [fused])
            rewriter.erase(producer)
            return


class FuseSwish(RewritePattern):
    """mul(x, sigmoid(alpha * x)) -> swish(x, alpha) (alpha from the sigmoid's input being x itself: 1)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.MulOp, rewriter: PatternRewriter) -> None:
        for x, gate in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            sig = gate.owner
            if not isinstance(sig, graph.SigmoidOp) or sig.input != x or not gate.has_one_use():
                continue
            if shape_of(x) != shape_of(op.output) or x.type != op.output.type:
                continue
            rewriter.replace(op, [graph.SwishOp(x, 1.0)])
            rewriter.erase(sig)
            return


def only_user(value: SSAValue) -> Operation | None:
    """The one operation reading `value` (once), or None."""
    return next(iter(value.uses)).operation if value.has_one_use() else None


class FuseGelu(RewritePattern):
    """x * 0.5 * (1 + erf(x / sqrt 2)) (erf form, products in any order) -> gelu(x)."""

    SQRT2 = math.sqrt(2.0)

    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    def scalar(self, value: SSAValue) -> float | None:
        w = value.owner
        if isinstance(w, graph.WeightOp):
            array = self.weights[w.handle.data]
            if array.size == 1:
                return float(array.reshape(()))
        return None

    def is_const(self, value: SSAValue, want: float) -> bool:
        got = self.scalar(value)
        return got is not None and abs(got - want) <= 1e-6 * abs(want)

    def other(self, op: graph.BinaryOp, value: SSAValue) -> SSAValue:
        return op.rhs if op.lhs == value else op.lhs

    def half_x(self, value: SSAValue, x: SSAValue) -> bool:
        """value = x * 0.5, used only once."""
        m = value.owner
        return (isinstance(m, graph.MulOp) and value.has_one_use()
                and {m.lhs, m.rhs} >= {x} and self.is_const(self.other(m, x), 0.5))  # fmt: skip

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ErfOp, rewriter: PatternRewriter) -> None:
        scaled = op.input.owner
        if not op.input.has_one_use() or not isinstance(scaled, (graph.DivOp, graph.MulOp)):
            return
        if isinstance(scaled, graph.DivOp):
            x = scaled.lhs if self.is_const(scaled.rhs, self.SQRT2) else None
        else:
            x = next((a for a, c in ((scaled.lhs, scaled.rhs), (scaled.rhs, scaled.lhs)) if self.is_const(c, 1 / self.SQRT2)), None)
        add = only_user(op.output)
        if x is None or not isinstance(add, graph.AddOp) or not self.is_const(self.other(add, op.output), 1.0):
            return
        m1 = only_user(add.output)
        if not isinstance(m1, graph.MulOp) or shape_of(m1.output) != shape_of(x) or x.type != m1.output.type:
            return
        f1 = self.other(m1, add.output)
        final, dead = m1, [m1]
        if self.half_x(f1, x):  # (x * 0.5) * (1 + erf)
            dead.append(f1.owner)
        else:  # (1 + erf) * x, then * 0.5; or (1 + erf) * 0.5, then * x
            m2 = only_user(m1.output)
            if not isinstance(m2, graph.MulOp):
                return
            f2 = self.other(m2, m1.output)
            if not ((f1 == x and self.is_const(f2, 0.5)) or (self.is_const(f1, 0.5) and f2 == x)):
                return
            final, dead = m2, [m2, m1]
        rewriter.replace(final, [graph.GeluOp(x)])
        for dead_op in [*dead[1:], add, op, scaled]:
            rewriter.erase(dead_op)


class FuseActivation(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        kind = ACTIVATIONS.get(type(op))
        if kind is None or not isinstance(op, graph.UnaryOp):
            return
        producer = fusable_producer(op.input)
        if producer is None:
            return
        bias, residual, epilogue = producer.fused_parts()
        if epilogue != NO_EPILOGUE:
            return
        new = EpilogueAttr.make(kind, op.alpha.value.data, op.beta.value.data)
        fused = producer.rebuilt(bias=bias, residual=residual, epilogue=new)
        rewriter.replace(op, [fused])
        rewriter.erase(producer)


@dataclass(frozen=True)
class FuseEpiloguePass(ModulePass):
    """Fuse bias, residual Add and ReLU/LeakyReLU/Clip/Sigmoid/HardSwish/Swish/Gelu into Conv, ConvTranspose, MatMul and channel affine."""

    name = "fuse-epilogue"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        patterns = GreedyRewritePatternApplier(
            [FuseGelu(weights), FuseSwish(), FuseBiasAdd(weights), FuseChannelMul(weights), FuseResidualAdd(), FuseActivation()]
        )
        PatternRewriteWalker(patterns).rewrite_module(op)
