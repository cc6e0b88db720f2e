"""conv-to-im2col: compute each `loop.conv2d` as GEMMs over its im2col matrix.

Preconditions: loop level. Produces, per convolution with output [N, M, Ho, Wo], G groups and
K = C/G*kh*kw: a `loop.matmul` over the batch (N, G) with A = weights [G, M/G, K], C = the output,
bias per row, and B chosen by shape:
- 1x1, stride 1, no padding: B = the input itself, viewed as [N, C, H*W];
- otherwise, when the GEMM goes through packed panels (more than one register tile of rows,
  M/G > 6, and N > 1): B = the input with a `b_im2col` view, so that the kernel packs im2col
  panels straight from the image one cache block at a time (no im2col buffer); stride-1 convs
  with few output channels also get `b_implicit` (see `implicit_gemm_pays`);
- otherwise (tiny GEMMs that read B in place): an im2col buffer [N, C*kh*kw, Ho*Wo] (a `loop.alloc`
  filled by `loop.im2col`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.ir.dialects import loop
from inferon.ir.dialects.graph import i64_array, ints
from inferon.ir.dialects.vec import PACKED_MR
from inferon.passes.conversion.graph_to_loop import matmul_op, memref


def memref_shape(value: object) -> tuple[int, ...]:
    return tuple(value.type.get_shape())  # type: ignore[attr-defined]


# Implicit GEMM (B read in place from a zero-bordered image, no packing) pays where packing B costs
# most relative to the GEMM: few output channels to reuse each packed element. Measured on this CPU
# (whole models, interleaved A/B): DenseNet-121 +11 % (32-channel growth convs), ResNet-50's
# 64-channel 3x3 convs +10 %; with 128-512 channels, or 224x224 planes (TLB), it was 4-20 % slower.
IMPLICIT_MAX_ROWS = 64  # output channels per group
IMPLICIT_MAX_PLANE = 16384  # floats in one zero-bordered input plane
IMPLICIT_MAX_WASTE = 0.1  # share of computed-then-dropped columns: kw - 1 of every Wo + kw - 1


def implicit_gemm_pays(rows: int, geometry: tuple[int, ...]) -> bool:
    """Whether a conv GEMM with `rows` output channels per group and this b_im2col geometry
    [C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo] should read B in place."""
    _, _, _, kh, kw, sh, sw, _, _, dh, dw, ho, wo = geometry
    plane = (ho + kh - 1) * (wo + kw - 1)
    return (
        (sh, sw, dh, dw) == (1, 1, 1, 1)
        and rows <= IMPLICIT_MAX_ROWS
        and plane <= IMPLICIT_MAX_PLANE
        and (kw - 1) / (wo + kw - 1) <= IMPLICIT_MAX_WASTE
    )


class Conv2dToMatMul(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.Conv2dOp, rewriter: PatternRewriter) -> None:
        n, c, h, w = memref_shape(op.input)
        m, cg, kh, kw = memref_shape(op.weight)
        _, _, ho, wo = memref_shape(op.output)
        g = op.group.value.data
        (sh, sw), (pt, pl, pb, pr), (dh, dw) = ints(op.strides), ints(op.pads), ints(op.dilations)
        k = cg * kh * kw
        new = []
        mg = m // g
        direct = kh == kw == sh == sw == 1 and pt == pl == pb == pr == 0
        fused = not direct and mg > PACKED_MR and ho * wo > 1
        view = None
        if direct:
            b, ldb = op.input, h * w
        elif fused:
            b, ldb = op.input, ho * wo
            view = [c // g, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo]
        else:
            col = loop.AllocOp.create(result_types=[memref((n, c * kh * kw, ho * wo))])
            geometry = [n, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo]
            im2col = loop.Im2ColOp.create(operands=[op.input, col.results[0]], properties={"geometry": i64_array(geometry)})
            new += [col, im2col]
            b, ldb = col.results[0], ho * wo
        hw = ho * wo
        operands = [op.weight, b, *([op.bias] if op.bias else []), *([op.residual] if op.residual else []), op.output]
        new.append(matmul_op(
            operands, has_bias=op.bias is not None, has_residual=op.residual is not None,
            dims=(mg, hw, k), leading=(k, ldb, hw), batch=[n, g],
            strides=[[0, mg * k], [c * h * w, cg * h * w] if direct or fused else [c * kh * kw * hw, k * hw],
                     [m * hw, mg * hw]],
            bias_axis=0, bias_strides=[0, mg], epilogue=op.epilogue,
        ))  # fmt: skip
        if view is not None:
            new[-1].properties["b_im2col"] = i64_array(view)
            if implicit_gemm_pays(mg, tuple(view)):
                new[-1].properties["b_implicit"] = UnitAttr()
        rewriter.replace(op, new)


@dataclass(frozen=True)
class ConvToIm2ColPass(ModulePass):
    """Rewrite loop.conv2d into (im2col +) batched GEMM."""

    name = "conv-to-im2col"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(Conv2dToMatMul()).rewrite_module(op)
