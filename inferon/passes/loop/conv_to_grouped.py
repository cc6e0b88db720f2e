"""conv-to-grouped: compute grouped convolutions with few channels per group directly.

Preconditions: loop level, after `conv-to-depthwise`, before `conv-to-winograd` / `conv-to-im2col`.
Produces, for every `loop.conv2d` with 1 < group < C_in, dilation 1, a kernel of at most 7 x 7 and
few input channels per group (at most `ALWAYS_CHANNELS`, or at most `SMALL_IMAGE_CHANNELS` when the
output has at most `SMALL_IMAGE` pixels), a `loop.grouped_conv2d` with the same operands, strides,
pads, group and epilogue (ResNeXt / RegNet 3x3 convolutions of 32 groups). As GEMMs those are one
product per group with M / group rows and K = C / group * kh * kw through an im2col buffer: 4-8 rows
stream the buffer for a few FMAs per float (ResNeXt-50's 4-channel groups ran at ~12 GFLOP/s), and
small images leave the GEMM few column tiles; the direct kernel reads the group's input planes once,
8 output columns by up to 8 output channels per register tile. Measured (1 thread, single convs,
direct / GEMM time): 4 channels 56x56 0.5, 8 channels 28x28 stride 2 0.6, 32 channels 14x14 0.65,
48-64 channels 14x14 0.8-0.9; but 16 channels at 28x28 1.07 and 64 channels at 28x28 1.35, where the
GEMM's 6 x 16 register tiles fill: those stay on im2col + GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.dialects import loop
from inferon.ir.dialects.graph import ints
from inferon.passes.loop.conv_to_depthwise import direct_conv

ALWAYS_CHANNELS = 8  # input channels per group: direct at any image size
SMALL_IMAGE_CHANNELS = 64  # ... and up to this many when the output has at most SMALL_IMAGE pixels
SMALL_IMAGE = 400


def is_small_grouped(op: loop.Conv2dOp) -> bool:
    """1 < group < C_in, few channels per group (see the module docstring), dilation 1, kernel <= 7 x 7."""
    c = op.input.type.get_shape()[1]  # type: ignore[attr-defined]
    w = op.weight.type.get_shape()  # type: ignore[attr-defined]
    ho, wo = op.output.type.get_shape()[2:]  # type: ignore[attr-defined]
    group = op.group.value.data
    few = w[1] <= ALWAYS_CHANNELS or (w[1] <= SMALL_IMAGE_CHANNELS and ho * wo <= SMALL_IMAGE)
    return 1 < group < c and few and ints(op.dilations) == (1, 1) and max(w[2], w[3]) <= 7


class ConvToGrouped(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.Conv2dOp, rewriter: PatternRewriter) -> None:
        if is_small_grouped(op):
            rewriter.replace(op, direct_conv(op, loop.GroupedConv2dOp, ("strides", "pads", "group", "epilogue")))


@dataclass(frozen=True)
class ConvToGroupedPass(ModulePass):
    """Rewrite grouped loop.conv2d with few channels per group into loop.grouped_conv2d."""

    name = "conv-to-grouped"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ConvToGrouped()).rewrite_module(op)
