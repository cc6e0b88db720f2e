"""conv-to-depthwise: compute depthwise convolutions directly instead of as per-channel GEMMs.

Preconditions: loop level, before `conv-to-im2col`. Produces, for every `loop.conv2d` whose group
equals its input channel count C > 1 (weight [M, 1, kh, kw], channel multiplier M / C >= 1), a
`loop.depthwise_conv2d` with the same operands, strides, pads, dilations and epilogue. As GEMMs
those convolutions are M tiny products (M' = M / C rows, K = kh * kw) through an im2col buffer;
the direct kernel needs no scratch and keeps each output block in registers. Other convolutions
are left to `conv-to-im2col`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.irdl import IRDLOperation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.dialects import graph, loop


def is_depthwise(op: loop.Conv2dOp) -> bool:
    """group == C_in > 1, one input channel per group."""
    c = op.input.type.get_shape()[1]  # type: ignore[attr-defined]
    w = op.weight.type.get_shape()  # type: ignore[attr-defined]
    return c > 1 and op.group.value.data == c and w[1] == 1


def direct_conv(op: loop.Conv2dOp, cls: type[IRDLOperation], keys: tuple[str, ...]) -> IRDLOperation:
    """A direct-convolution op `cls` on `op`'s operands (input, weight, bias?, residual?, output) with
    the properties `keys` copied from it."""
    props = {k: op.properties[k] for k in keys}
    props["operandSegmentSizes"] = graph.DenseArrayBase.from_list(
        graph.i32, [1, 1, int(op.bias is not None), int(op.residual is not None), 1]
    )
    return cls.create(operands=list(op.operands), properties=props)


class ConvToDepthwise(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.Conv2dOp, rewriter: PatternRewriter) -> None:
        if is_depthwise(op):
            keys = ("strides", "pads", "dilations", "epilogue")
            rewriter.replace(op, direct_conv(op, loop.DepthwiseConv2dOp, keys))


@dataclass(frozen=True)
class ConvToDepthwisePass(ModulePass):
    """Rewrite depthwise loop.conv2d (group == C_in) into loop.depthwise_conv2d."""

    name = "conv-to-depthwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ConvToDepthwise()).rewrite_module(op)
