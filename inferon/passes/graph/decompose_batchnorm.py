"""decompose-batchnorm: rewrite a BatchNormalization that did not fold into element-wise ops.

`y = x * s + (bias - mean * s)` with `s = scale / sqrt(var + eps)`, the parameters reshaped to
`[C, 1, ...]`. Preconditions: graph level, after fold-batchnorm. Produces: no `graph.batch_norm`;
fold-constants then turns s and the shift into weights when the parameters are constants.
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
from inferon.ir.dialects.graph import shape_of, tensor_type
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
        bshape = (c,) + (1,) * (len(x_shape) - 2)
        s_b = add(graph.ReshapeOp.create(operands=[s], result_types=[tensor_type(bshape)]))
        shift_b = add(graph.ReshapeOp.create(operands=[shift], result_types=[tensor_type(bshape)]))
        scaled = add(graph.MulOp(op.input, s_b, x_shape))
        add(graph.AddOp(scaled, shift_b, x_shape))
        rewriter.replace(op, new)


@dataclass(frozen=True)
class DecomposeBatchNormPass(ModulePass):
    """Lower every remaining graph.batch_norm to mul/add with per-channel parameters."""

    name = "decompose-batchnorm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        PatternRewriteWalker(DecomposeBatchNorm(weights)).rewrite_module(op)
