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

Before those, mul(x, sigmoid(x)) with the sigmoid used only there (SiLU / Swish as PyTorch and
TensorFlow export it: EfficientNet, YOLO) becomes one `graph.swish(x)`, so that x's producer has one
use left and the activation fuses into it like ReLU (measured: EfficientNet-B0 spent a quarter of its
time in these separate Sigmoid and Mul passes).

The last rule makes a per-channel scale (e.g. the Scale layer of Caffe exports, Mul then Add after
a BatchNorm) a `graph.channel_affine`, so that the Add and activation after it fuse into one pass.
"""

from __future__ import annotations

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
    """Fuse bias, residual Add and ReLU/LeakyReLU/Clip/Sigmoid/HardSwish/Swish into Conv, ConvTranspose, MatMul and channel affine."""

    name = "fuse-epilogue"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        patterns = GreedyRewritePatternApplier(
            [FuseSwish(), FuseBiasAdd(weights), FuseChannelMul(weights), FuseResidualAdd(), FuseActivation()]
        )
        PatternRewriteWalker(patterns).rewrite_module(op)
