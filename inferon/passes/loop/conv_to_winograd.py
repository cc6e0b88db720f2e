"""conv-to-winograd: compute 3x3 stride-1 convolutions with Winograd's F(m x m, 3 x 3) algorithm.

Preconditions: loop level, after `convert-sparse-to-spmm` and `conv-to-depthwise`, before
`conv-to-im2col` (which takes the convolutions left over). Produces, for each float `loop.conv2d` with
a constant 3x3 weight, stride 1, dilation 1, one group and a shape where it pays (`winograd_tile`):

    loop.winograd_input  (input -> V [N, alpha^2, C x T'])        B^T d B per tile (T tiles, rows padded to T')
    loop.matmul          (U [alpha^2, M, C] x V -> Z [N, alpha^2, M x T'])   alpha^2 GEMMs per image
    loop.winograd_output (Z -> output, + bias, + residual, activation)    A^T Z A per tile

with U = G g G^T computed here into the weight store (`inferon/ir/winograd.py`). F(2x2) does 16
instead of 36 multiplications per 4 outputs (2.25x fewer), F(4x4) 36 instead of 144 (4x), at the cost
of the transforms, of alpha^2 / 9 times the weight bytes and of a little accuracy (F(4x4) error is
about 10x that of direct convolution in float32, still ~1e-6 relative on real models).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, f32
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from inferon.errors import InferonError
from inferon.ir.attrs import NO_EPILOGUE
from inferon.ir.dialects import graph, loop
from inferon.ir.dialects.graph import i64_array, ints
from inferon.ir.weights import WeightStore
from inferon.ir.winograd import alpha, padded_tiles, point_stride, tile_grid, transform_weights
from inferon.passes.conversion.graph_to_loop import i64_attr, matmul_op, memref
from inferon.passes.graph.fold_constants import weights_context

# When Winograd pays, measured on this CPU (Zen 4; benchmarks/bench_winograd.py: single 3x3 convs,
# interleaved runs against im2col + GEMM, 1 thread): F(4x4) was the fastest wherever its grid has at
# least 4 x 4 tiles (1.2-2.8x faster than im2col from 16 to 512 channels and 13x13 to 112x112
# outputs; F(2x2) 1.0-2.2x); on 7x7 outputs F(4x4) (2 x 2 tiles) lost (0.78x) and F(2x2) won (1.45-1.8x).
CHOICES = ("auto", "off", "2", "4")
MIN_CHANNELS = 16  # input and output channels
# the median gain over im2col + GEMM in that table, by tile (the sparsify pass's cost model uses it)
WINOGRAD_SPEEDUP = {4: 1.9, 2: 1.5}
MIN_TILES = 16  # tiles per image (GEMM columns)
# Where the GEMM runs zmm row panels (Intel with AVX-512F, `inferon.cpu.zmm_row_panels`), F(4x4) only
# from 5 x 5 tiles: on 13 x 13 / 14 x 14 outputs (4 x 4 tiles) F(2x2) instead, whose transformed
# weights are 16 / 36 of F(4x4)'s (each of those GEMMs reuses a weight for only 16 tiles, and
# ResNet-50's six 256-channel 14 x 14 layers streamed 9.4 MB of them each): ResNet-50 1.035x / 1.04x,
# SqueezeNet 1.007x / 1.006x at 1 / 2 threads (whole models, interleaved, a 2-core Intel Xeon; F(4x4)
# from 7 x 7 tiles, 28 x 28 outputs on F(2x2) too: 0.996x / 0.991x of that; 7 x 7 outputs by im2col
# instead of F(2x2): 0.991x / 0.979x).
MIN_TILES_F4_ZMM = 25


def winograd_tile(m: int, c: int, ho: int, wo: int, zmm_rows: bool = False) -> int | None:
    """The Winograd output tile (4 or 2) for a 3x3 conv with m outputs, c inputs and an Ho x Wo
    output, or None when im2col + GEMM is expected to be faster; `zmm_rows`: for a model whose GEMMs
    run zmm row panels."""
    if min(m, c) < MIN_CHANNELS:
        return None
    for tile in (4, 2):
        th, tw = tile_grid(ho, wo, tile)
        if th * tw >= (MIN_TILES_F4_ZMM if zmm_rows and tile == 4 else MIN_TILES):
            return tile
    return None


def eligible(op: loop.Conv2dOp) -> bool:
    """A float 3x3, stride-1, dilation-1, single-group convolution with a constant weight."""
    shape = tuple(op.weight.type.get_shape())  # type: ignore[attr-defined]
    return (
        isinstance(op.weight.owner, loop.WeightOp)
        and op.weight.type.element_type == f32  # type: ignore[attr-defined]
        and op.input.type.element_type == f32  # type: ignore[attr-defined]
        and shape[2:] == (3, 3)
        and op.group.value.data == 1
        and ints(op.strides) == (1, 1)
        and ints(op.dilations) == (1, 1)
    )


@dataclass
class ConvToWinograd(RewritePattern):
    store: WeightStore
    force: int | None = None  # tile for every eligible conv (tests); None: winograd_tile decides
    zmm_rows: bool = False  # see winograd_tile

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: loop.Conv2dOp, rewriter: PatternRewriter) -> None:
        if not eligible(op):
            return
        n, c, _, _ = op.input.type.get_shape()  # type: ignore[attr-defined]
        m = op.weight.type.get_shape()[0]  # type: ignore[attr-defined]
        ho, wo = op.output.type.get_shape()[2:]  # type: ignore[attr-defined]
        tile = self.force if self.force is not None else winograd_tile(m, c, ho, wo, self.zmm_rows)
        if tile is None:
            return
        weight = op.weight.owner
        assert isinstance(weight, loop.WeightOp)
        a2 = alpha(tile) ** 2
        th, tw = tile_grid(ho, wo, tile)
        t, tp = th * tw, padded_tiles(th * tw)
        sv, sz = point_stride(c, t), point_stride(m, t)
        u = transform_weights(self.store[weight.handle.data].reshape(m, c, 3, 3), tile)
        handle = self.store.add(u, f"{weight.handle.data}.winograd{tile}")
        u_op = loop.WeightOp.create(properties={"handle": StringAttr(handle)}, result_types=[memref((a2, m, c))])
        v = loop.AllocOp.create(result_types=[memref((n, a2, sv))])
        z = loop.AllocOp.create(result_types=[memref((n, a2, sz))])
        pt, pl, _, _ = ints(op.pads)
        transform_in = loop.WinogradInputOp.create(
            operands=[op.input, v.results[0]],
            properties={"tile": i64_attr(tile), "pads": i64_array([pt, pl]), "out_size": i64_array([ho, wo])},
        )
        gemms = matmul_op(
            [u_op.results[0], v.results[0], z.results[0]], has_bias=False, has_residual=False,
            dims=(m, t, c), leading=(c, tp, tp), batch=[n, a2],
            strides=[[0, m * c], [a2 * sv, sv], [a2 * sz, sz]],
            bias_axis=0, bias_strides=[0, 0], epilogue=NO_EPILOGUE,
        )  # fmt: skip
        extra = [v for v in (op.bias, op.residual) if v is not None]
        transform_out = loop.WinogradOutputOp.create(
            operands=[z.results[0], *extra, op.output],
            properties={
                "tile": i64_attr(tile), "epilogue": op.epilogue,
                "operandSegmentSizes": graph.DenseArrayBase.from_list(
                    graph.i32, [1, int(op.bias is not None), int(op.residual is not None), 1]
                ),
            },
        )  # fmt: skip
        rewriter.replace(op, [u_op, v, transform_in, z, gemms, transform_out], [])
        if not weight.result.uses:
            rewriter.erase(weight)


@dataclass(frozen=True)
class ConvToWinogradPass(ModulePass):
    """Rewrite 3x3 stride-1 loop.conv2d into Winograd transforms around batched GEMMs where it pays.

    `tile` = "auto" (the measured rule in `winograd_tile`), "off", "2" or "4" (every eligible conv);
    `zmm_rows`: the model's GEMMs will run zmm row panels (`inferon.cpu.zmm_row_panels`)."""

    name = "conv-to-winograd"
    tile: str = "auto"
    zmm_rows: bool = False

    def __post_init__(self) -> None:
        if str(self.tile) not in CHOICES:
            raise InferonError(f"winograd '{self.tile}': choose one of {', '.join(CHOICES)}")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.tile == "off":
            return
        force = None if self.tile == "auto" else int(self.tile)  # type: ignore[arg-type]
        rewrite = ConvToWinograd(weights_context(ctx, self.name), force, self.zmm_rows)
        PatternRewriteWalker(rewrite).rewrite_module(op)
