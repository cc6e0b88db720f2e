"""decompose-batchnorm: rewrite a BatchNormalization that did not fold into a per-channel affine map.

`y = x * s + (bias - mean * s)` with `s = scale / sqrt(var + eps)`: a `graph.channel_affine` (scale s,
bias the shift), into which `fuse-epilogue` later fuses a following activation or residual Add.
Preconditions: graph level, after fold-batchnorm. Produces: no `graph.batch_norm`; fold-constants then
turns s and the shift into weights when the parameters are constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import shape_of
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context


class DecomposeBatchNorm(RewritePattern):
    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.BatchNormOp, rewriter: PatternRewriter) -> None:
        x_shape = shape_of(op.input)
        (c,) = shape_of(op.scale)
        new: list[Operation] = []

        def add(o: Operation) -> SSAValue:
            new.append(o)
            return o.results[0]

        eps = add(graph.WeightOp(self.weights.add(np.float32([op.epsilon.value.data]), "bn_eps"), (1,)))
        std = add(graph.SqrtOp(add(graph.AddOp(op.var, eps, (c,)))))
        s = add(graph.DivOp(op.scale, std, (c,)))
        shift = add(graph.SubOp(op.bias, add(graph.MulOp(op.mean, s, (c,))), (c,)))
        add(graph.ChannelAffineOp(op.input, s, shift, x_shape))
        rewriter.replace(op, new)


@dataclass(frozen=True)
class DecomposeBatchNormPass(ModulePass):
    """Lower every remaining graph.batch_norm to graph.channel_affine."""

    name = "decompose-batchnorm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        PatternRewriteWalker(DecomposeBatchNorm(weights)).rewrite_module(op)
