"""convert-loop-to-vec: turn each tiled `loop.matmul` into a `vec.gemm` microkernel op.

Preconditions: loop level after select-tiles (every matmul has `tiles`). Produces `vec.gemm` with
the register tile for the target: 6x16 (12 ymm accumulators) for AVX2/AVX-512, the same shape for the
scalar fallback (the runtime picks the instruction set when the model is loaded); and `vec.spmm`
(from `loop.spmm`) with its column tile; `vec.qgemm` (from `loop.qgemm`) with its row panel height:
6-row panels against 32-column B panels, or, where few columns make those waste work, 32-row panels
as vector lanes (`a_lanes`, see `lanes_pay`; only for models that will run with AVX512-VNNI:
`int8_lanes`, set by the compiler from the host and `--target`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, ModuleOp, UnitAttr, i32, i64
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
from inferon.ir.dialects.graph import ints
from inferon.ir.sparse import SPMM_TILE


def lanes_pay(m: int, n: int, k: int, wide: int, im2col: bool = False, frame: int = 0) -> bool:
    """Whether a dense quantized GEMM runs faster with A's rows as the vector lanes (qlanes.hpp).

    Costs in multiply-add units. The row-panel kernels compute ceil(M/6)*6 rows x `wide` columns (N,
    or Ho x (Wo + kw - 1) for stride-1 implicit convolutions) rounded to 32-column panels, the last
    to 8, and with `im2col` (strided implicit convolutions) first write and pack the K x N im2col
    matrix (~60 per element), which the lanes kernels read in place from a bordered image of `frame`
    bytes instead (~30 per byte). The lanes kernels compute ceil(M/32)*32 rows x exactly N columns,
    plus a per-output cost (epilogue transpose, B interleaving) of ~16/K of the work. Fitted on a
    Zen 4, 1 thread, ResNet-50's layers with the requantization constants built once per row panel
    (lanes time / rows time, measured vs this model): 7x7 3x3 0.77 / 0.76, N = 49 1x1 0.94 / 0.90,
    14x14 / 28x28 3x3 0.89-0.92 / 0.87-0.93, 56x56 3x3 0.97 / 0.96; K = 64-256 1x1 layers 1.01-1.25
    / 1.03-1.24 (row panels). Below K = 128 the per-output costs dominate beyond this model
    (SqueezeNet's 3x3 stride-2 stem, K = 36: 1.10x as lanes), so no lanes there. Picked with a 3 %
    margin.
    """
    if n < 2 or k < 128:
        return False
    rows_cols = wide // 32 * 32 + -(-(wide % 32) // 8) * 8
    rows = -(-m // vec.QGEMM_MR) * vec.QGEMM_MR * rows_cols * k + (60 * k * n if im2col else 0)
    lanes = -(-m // vec.QGEMM_LANES) * vec.QGEMM_LANES * n * (k + 16) + 30 * frame
    return lanes < 0.97 * rows


def implicit_frame_bytes(view: tuple[int, ...]) -> int:
    """Bytes of the bordered, channel-interleaved image an implicit conv reads (qgemm.hpp's
    implicit_frame) for an im2col view [C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo]."""
    c, _, _, kh, kw, sh, sw, _, _, dh, dw, ho, wo = view
    return -(-c // 4) * 4 * ((ho - 1) * sh + (kh - 1) * dh + 1) * ((wo - 1) * sw + (kw - 1) * dw + 1)


def strided_lanes_pay(m: int, view: tuple[int, ...]) -> bool:
    """lanes_pay for a strided / dilated conv of `m` output channels (im2col view [C, H, W, kh, kw,
    sh, sw, pt, pl, dh, dw, Ho, Wo]) with K in implicit order, read in place as lanes, against im2col
    rows on row panels. convert-graph-to-loop gives such convs the implicit order where this holds."""
    c, kh, kw, n = view[0], view[3], view[4], view[11] * view[12]
    return lanes_pay(m, n, -(-c // 4) * 4 * kh * kw, n, im2col=True, frame=implicit_frame_bytes(view))


def _lanes_pay_for(op: loop.QGemmOp) -> bool:
    """lanes_pay for a loop.qgemm: stride-1 implicit convs compute the wide grid on row panels;
    strided implicit ones go through im2col there and read the frame in place as lanes (other
    convolutions take im2col either way)."""
    m, n, k = ints(op.dims)
    if op.b_im2col is None or op.b_implicit is None:
        return lanes_pay(m, n, k, n)
    view = tuple(ints(op.b_im2col))  # C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo
    if (view[5], view[6], view[9], view[10]) != (1, 1, 1, 1):
        return strided_lanes_pay(m, view)
    return lanes_pay(m, n, k, view[11] * (view[12] + view[4] - 1))


class SpMMToVec(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.SpMMOp, rewriter: PatternRewriter) -> None:
        props = dict(op.properties)
        props["nr"] = IntegerAttr(SPMM_TILE, i64)
        rewriter.replace(op, [vec.SpMMOp.create(operands=list(op.operands), properties=props)])


class QGemmToVec(RewritePattern):
    def __init__(self, lanes: bool) -> None:
        self.lanes = lanes

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.QGemmOp, rewriter: PatternRewriter) -> None:
        props = dict(op.properties)
        lanes = self.lanes and op.a_index is None and _lanes_pay_for(op)
        props["mr"] = IntegerAttr(vec.QGEMM_LANES if lanes else vec.QGEMM_MR, i64)
        if lanes:
            props["a_lanes"] = UnitAttr()
        # vec.qgemm's first operand segment is a_fix (absent until pack-weights)
        props["operandSegmentSizes"] = DenseArrayBase.from_list(i32, [0, *op.properties["operandSegmentSizes"].get_values()])  # type: ignore[union-attr]
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
    """Lower loop.matmul to vec.gemm with an mr x nr register tile, loop.spmm / loop.qgemm to their
    vec ops. `int8_lanes`: let `lanes_pay` pick the lanes kernels for quantized GEMMs with few
    columns; off for models that will run without AVX512-VNNI, where the lanes kernels widen to int16
    (vpmaddwd) while the row panels multiply pair-safe weights with vpmaddubsw at twice the rate."""

    name = "convert-loop-to-vec"
    mr: int = 6
    nr: int = 16
    int8_lanes: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        patterns = [MatMulToGemm(self.mr, self.nr), SpMMToVec(), QGemmToVec(self.int8_lanes)]
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns)).rewrite_module(op)
