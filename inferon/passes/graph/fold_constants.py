"""fold-constants: evaluate graph ops whose operands are all weights, at compile time.

Preconditions: graph level, the context is an InferonContext (it owns the weight store).
Produces: such ops replaced by a `graph.weight` of their value (computed by the numpy interpreter);
weights no longer used are dropped from the IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from inferon.errors import PassError
from inferon.ir.context import InferonContext
from inferon.ir.dialects import graph
from inferon.ir.interpreter import evaluate
from inferon.ir.weights import WeightStore


def weights_context(ctx: Context, pass_name: str) -> WeightStore:
    if not isinstance(ctx, InferonContext):
        raise PassError(f"{pass_name} needs an InferonContext (it reads the weight store)")
    return ctx.weights


class FoldConstantOp(RewritePattern):
    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.dialect_name() != "graph" or isinstance(op, graph.WeightOp) or len(op.results) != 1:
            return
        if graph.is_index(op.results[0]):
            return  # the weight store holds no int64 tensors: ArgMax / ArgMin of a weight runs at run time
        owners = [v.owner for v in op.operands]
        if not owners or not all(isinstance(o, graph.WeightOp) for o in owners):
            return
        args = [self.weights[o.handle.data] for o in owners if isinstance(o, graph.WeightOp)]
        value = evaluate(op, args)
        handle = self.weights.add(value, f"folded_{op.name.split('.')[1]}")
        rewriter.replace(op, [graph.WeightOp(handle, value.shape)])


class DropDeadWeight(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, graph.WeightOp) and not op.result.uses:
            rewriter.erase(op)


@dataclass(frozen=True)
class FoldConstantsPass(ModulePass):
    """Replace ops computed only from weights by the weight of their result."""

    name = "fold-constants"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        PatternRewriteWalker(FoldConstantOp(weights)).rewrite_module(op)
        PatternRewriteWalker(DropDeadWeight()).rewrite_module(op)

