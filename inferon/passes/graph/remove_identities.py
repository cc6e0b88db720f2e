"""remove-identities: drop `graph.identity` (ONNX Identity and inference-mode Dropout).

Preconditions: graph level. Produces: no `graph.identity` whose removal is legal; an identity that
feeds a function return directly is kept only when its input is also a function argument or weight
(the lowering then copies).
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

from inferon.ir.dialects import graph


class RemoveIdentity(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.IdentityOp, rewriter: PatternRewriter) -> None:
        rewriter.replace(op, [], [op.input])


@dataclass(frozen=True)
class RemoveIdentitiesPass(ModulePass):
    """Forward the input of every graph.identity to its users."""

    name = "remove-identities"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(RemoveIdentity()).rewrite_module(op)
