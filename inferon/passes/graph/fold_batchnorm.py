"""fold-batchnorm: fold inference BatchNormalization into the preceding Conv's weights and bias.

Preconditions: graph level, before fuse-epilogue (the conv must not carry a residual or activation);
the conv weight and all BatchNorm parameters are weights. Produces: `graph.conv2d` with scaled weights
and a bias; the `graph.batch_norm` is gone. BatchNorms that cannot fold stay (the lowering computes
them as a per-channel affine op).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.attrs import NO_EPILOGUE
from inferon.ir.dialects import graph
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context


def _weight(value: object) -> graph.WeightOp | None:
    owner = getattr(value, "owner", None)
    return owner if isinstance(owner, graph.WeightOp) else None


class FoldBatchNormIntoConv(RewritePattern):
    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.BatchNormOp, rewriter: PatternRewriter) -> None:
        conv = op.input.owner
        if not isinstance(conv, graph.Conv2dOp) or not conv.output.has_one_use():
            return
        bias, residual, epilogue = conv.fused_parts()
        if residual is not None or epilogue != NO_EPILOGUE:
            return
        params = [_weight(v) for v in (op.scale, op.bias, op.mean, op.var, conv.weight)]
        bias_w = _weight(bias) if bias is not None else None
        if any(p is None for p in params) or (bias is not None and bias_w is None):
            return
        scale, beta, mean, var, w = (self.weights[p.handle.data] for p in params if p is not None)
        s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + op.epsilon.value.data)
        b0 = self.weights[bias_w.handle.data] if bias_w is not None else np.zeros_like(mean)
        new_w = graph.WeightOp(self.weights.add(w * s[:, None, None, None], "bn_folded_w"), w.shape)
        new_b = graph.WeightOp(self.weights.add((b0 - mean) * s + beta, "bn_folded_b"), mean.shape)
        fused = conv.rebuilt(
            main=(conv.input, new_w.result), bias=new_b.result, residual=None, epilogue=NO_EPILOGUE
        )
        rewriter.replace(op, [new_w, new_b, fused])
        rewriter.erase(conv)


@dataclass(frozen=True)
class FoldBatchNormPass(ModulePass):
    """Fold graph.batch_norm into the graph.conv2d that feeds it."""

    name = "fold-batchnorm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        PatternRewriteWalker(FoldBatchNormIntoConv(weights)).rewrite_module(op)
