"""convert-loop-to-vec: turn each tiled `loop.matmul` into a `vec.gemm` microkernel op.

Preconditions: loop level after select-tiles (every matmul has `tiles`). Produces `vec.gemm` with
the register tile for the target: 6x16 (12 ymm accumulators) for AVX2/AVX-512, the same shape for the
scalar fallback (the runtime picks the instruction set when the model is loaded); and `vec.spmm`
(from `loop.spmm`) with its column tile; `vec.qgemm` (from `loop.qgemm`) with its row panel height.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.errors import PassError
from inferon.ir.dialects import loop, vec
from inferon.ir.sparse import SPMM_TILE


class SpMMToVec(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.SpMMOp, rewriter: PatternRewriter) -> None:
        props = dict(op.properties)
        props["nr"] = IntegerAttr(SPMM_TILE, i64)
        rewriter.replace(op, [vec.SpMMOp.create(operands=list(op.operands), properties=props)])


class QGemmToVec(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.QGemmOp, rewriter: PatternRewriter) -> None:
        props = dict(op.properties)
        props["mr"] = IntegerAttr(vec.QGEMM_MR, i64)
        rewriter.replace(op, [vec.QGemmOp.create(operands=list(op.operands), properties=props)])


class MatMulToGemm(RewritePattern):
    def __init__(self, mr: int, nr: int) -> None:
        self.mr, self.nr = mr, nr

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.MatMulOp, rewriter: PatternRewriter) -> None:
        if op.tiles is None:
            raise PassError("convert-loop-to-vec: loop.matmul without tiles (run select-tiles first)")
        props = dict(op.properties)
        props["mr"] = IntegerAttr(self.mr, i64)
        props["nr"] = IntegerAttr(self.nr, i64)
        rewriter.replace(op, [vec.GemmOp.create(operands=list(op.operands), properties=props)])


@dataclass(frozen=True)
class ConvertLoopToVecPass(ModulePass):
    """Lower loop.matmul to vec.gemm with an mr x nr register tile."""

    name = "convert-loop-to-vec"
    mr: int = 6
    nr: int = 16

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([MatMulToGemm(self.mr, self.nr), SpMMToVec(), QGemmToVec()])).rewrite_module(op)
