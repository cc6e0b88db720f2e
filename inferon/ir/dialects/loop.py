"""The `loop` dialect: kernels over buffers, with their tiling decisions as properties.

Values are `memref<...xf32>` buffers (`ui8` / `si8` for quantized tensors, `si32` for quantized
biases): function arguments (inputs, then outputs), `loop.weight` views of the weight blob, and
`loop.alloc` slices of the per-context arena (their `offset`, in floats, is set by `plan-memory`). Every compute op writes its last operand (destination-passing style) and returns
nothing. Sizes and strides are in elements. Op names say what the kernel does (`loop.im2col`,
`loop.matmul`); the C++ backend maps each to one runtime kernel call.
"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import (
    BoolAttr,
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    UnitAttr,
    f32,
    i64,
)
from xdsl.ir import Dialect, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParametrizedAttribute,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    param_def,
    prop_def,
    result_def,
)
from xdsl.utils.exceptions import VerifyException

from inferon.ir.attrs import (
    NO_EPILOGUE,
    ElementwiseKindAttr,
    EpilogueAttr,
    PadModeAttr,
    ReduceKindAttr,
    SparseAttr,
    SparseFormat,
)
from inferon.ir.dialects.graph import F32Attr
from inferon.ir.winograd import TILES as WINOGRAD_TILES
from inferon.ir.winograd import point_stride

I64Attr = IntegerAttr[IntegerType]
MAX_RANK = 8  # INFERON_MAX_RANK of the runtime kernels


@irdl_attr_definition
class TilesAttr(ParametrizedAttribute):
    """Cache-blocking tile sizes of a GEMM: MC x KC blocks of A, KC x NC panels of B."""

    name = "loop.tiles"
    mc: I64Attr = param_def(I64Attr)
    kc: I64Attr = param_def(I64Attr)
    nc: I64Attr = param_def(I64Attr)

    @staticmethod
    def make(mc: int, kc: int, nc: int) -> TilesAttr:
        return TilesAttr(IntegerAttr(mc, 64), IntegerAttr(kc, 64), IntegerAttr(nc, 64))

    def values(self) -> tuple[int, int, int]:
        return self.mc.value.data, self.kc.value.data, self.nc.value.data


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A read-only view of the weight `handle` inside the model's linked weight blob."""

    name = "loop.weight"
    handle = prop_def(StringAttr)
    sparse = opt_prop_def(SparseAttr)  # the graph.weight's storage (see `sparsify`)
    result = result_def(MemRefType)


@irdl_op_definition
class AllocOp(IRDLOperation):
    """A scratch buffer in the arena; `offset` (floats from the arena base) comes from plan-memory."""

    name = "loop.alloc"
    offset = opt_prop_def(I64Attr)
    result = result_def(MemRefType)


@irdl_op_definition
class SliceOp(IRDLOperation):
    """A contiguous alias of `base` from element `offset` on (no copy), from `elide-copies`.

    Whatever writes the result writes that part of `base`: a Concat input computed in place, or a
    Reshape whose input and output share memory.
    """

    name = "loop.slice"
    base = operand_def(MemRefType)
    offset = prop_def(I64Attr)
    result = result_def(MemRefType)

    def verify_(self) -> None:
        base = math.prod(self.base.type.get_shape())  # type: ignore[attr-defined]
        size = math.prod(self.result.type.get_shape())  # type: ignore[attr-defined]
        off = self.offset.value.data
        if off < 0 or off + size > base:
            raise VerifyException(f"loop.slice [{off}, {off + size}) is outside its base of {base} elements")


def verify_channel_operands(name: str, out: tuple[int, ...], residual: SSAValue | None, **per_channel: SSAValue | None) -> None:
    """Shared check of fused epilogue operands: each `per_channel` buffer (bias, scale) has one value
    per channel out[1]; the residual has the output's shape."""
    for what, v in per_channel.items():
        if v is not None and tuple(v.type.get_shape()) != (out[1],):  # type: ignore[attr-defined]
            raise VerifyException(f"{name}: {what} must have one value per output channel ({out[1]})")
    if residual is not None and tuple(residual.type.get_shape()) != out:  # type: ignore[attr-defined]
        raise VerifyException(f"{name}: residual must have the output's shape {list(out)}")


@irdl_op_definition
class Conv2dOp(IRDLOperation):
    """NCHW convolution on buffers, before `conv-to-im2col` chooses how to compute it."""

    name = "loop.conv2d"
    input = operand_def(MemRefType)
    weight = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    group = prop_def(I64Attr)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)


def verify_direct_conv(
    name: str, x_value: SSAValue, w_value: SSAValue, y_value: SSAValue, strides_attr: DenseArrayBase,
    pads_attr: DenseArrayBase, dilations: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:  # fmt: skip
    """Shapes (input, weight, output) of a direct NCHW convolution, checked: rank 4, 2 strides and
    dilations >= 1, 4 pads >= 0 ([top, left, bottom, right]), output extent from the geometry."""
    x, w, y = (tuple(v.type.get_shape()) for v in (x_value, w_value, y_value))  # type: ignore[attr-defined]
    if len(x) != 4 or len(w) != 4 or len(y) != 4:
        raise VerifyException(f"{name} expects rank-4 input, weight and output")
    strides, pads = strides_attr.get_values(), pads_attr.get_values()
    if len(strides) != 2 or len(pads) != 4 or len(dilations) != 2:
        raise VerifyException(f"{name}: strides and dilations have 2 entries, pads 4")
    if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0:
        raise VerifyException(f"{name}: strides and dilations must be >= 1, pads >= 0")
    for axis in (0, 1):
        extent = x[2 + axis] + pads[axis] + pads[2 + axis] - (w[2 + axis] - 1) * dilations[axis] - 1
        if extent < 0 or y[2 + axis] != extent // strides[axis] + 1:
            raise VerifyException(f"{name} output {y} does not match the geometry of input {x}")
    return x, w, y


@irdl_op_definition
class DepthwiseConv2dOp(IRDLOperation):
    """Direct depthwise NCHW convolution (ONNX Conv with group == C_in), from `conv-to-depthwise`.

    input [N, C, H, W], weight [M, 1, kh, kw] with M a multiple of C (output channel m reads input
    channel m // (M // C)), output [N, M, Ho, Wo]; bias [M] and residual (the output's shape) are
    fused with the epilogue's activation. pads are [top, left, bottom, right].
    """

    name = "loop.depthwise_conv2d"
    input = operand_def(MemRefType)
    weight = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        x, w, y = verify_direct_conv(self.name, self.input, self.weight, self.output, self.strides, self.pads,
                                     tuple(self.dilations.get_values()))  # fmt: skip
        if w[1] != 1 or w[0] % x[1] != 0 or y[:2] != (x[0], w[0]):
            raise VerifyException(f"loop.depthwise_conv2d channel mismatch: input {x}, weight {w}, output {y}")
        verify_channel_operands(self.name, y, self.residual, bias=self.bias)


@irdl_op_definition
class GroupedConv2dOp(IRDLOperation):
    """Direct grouped NCHW convolution with few channels per group (ONNX Conv with 1 < group < C_in), from
    `conv-to-grouped`.

    input [N, C, H, W], weight [M, C / group, kh, kw] (output channel m reads the input channels of group
    m // (M // group)), output [N, M, Ho, Wo]; bias [M] and residual fused with the epilogue's activation.
    pads are [top, left, bottom, right]; dilation 1.
    """

    name = "loop.grouped_conv2d"
    input = operand_def(MemRefType)
    weight = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    group = prop_def(I64Attr)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        x, w, y = verify_direct_conv(self.name, self.input, self.weight, self.output, self.strides, self.pads, (1, 1))
        group = self.group.value.data
        if group < 1 or x[1] % group or w[0] % group or w[1] * group != x[1] or y[:2] != (x[0], w[0]):
            raise VerifyException(f"loop.grouped_conv2d channel mismatch: input {x}, weight {w}, group {group}, output {y}")
        verify_channel_operands(self.name, y, self.residual, bias=self.bias)


@irdl_op_definition
class ChannelAffineOp(IRDLOperation):
    """y[n][c][i] = act(x[n][c][i] * scale[c] + bias[c] + residual[n][c][i]) over [N, C, ...] buffers
    (a `graph.channel_affine`: an unfolded BatchNormalization with its fused epilogue)."""

    name = "loop.channel_affine"
    input = operand_def(MemRefType)
    scale = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        x = tuple(self.input.type.get_shape())  # type: ignore[attr-defined]
        if len(x) < 2 or tuple(self.output.type.get_shape()) != x:  # type: ignore[attr-defined]
            raise VerifyException(f"{self.name}: input and output must have one shape of rank >= 2")
        verify_channel_operands(self.name, x, self.residual, scale=self.scale, bias=self.bias)


@irdl_op_definition
class Im2ColOp(IRDLOperation):
    """col[n][(c*kh+i)*kw+j][ho*Wo+wo] = x[n][c][ho*sh-pt+i*dh][wo*sw-pl+j*dw] (0 in the padding).

    geometry = [N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo].
    """

    name = "loop.im2col"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    geometry = prop_def(DenseArrayBase)

    def verify_(self) -> None:
        if len(self.geometry.get_values()) != 14:
            raise VerifyException("loop.im2col geometry has 14 entries")


@irdl_op_definition
class Col2ImOp(IRDLOperation):
    """The scatter half of a transposed convolution (ONNX ConvTranspose), after the GEMM that forms
    its columns: y[n][c][oh][ow] = act(bias[c] + residual[n][c][oh][ow] + sum over the taps (i, j) and
    input pixels (ih, iw) with oh = ih*sh - pt + i*dh, ow = iw*sw - pl + j*dw of
    col[n][(c*kh+i)*kw+j][ih*W+iw]).

    geometry = [N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo] (C output channels, H x W the
    transposed conv's input); output pixels no tap reaches (output_padding) get bias (+ residual).
    """

    name = "loop.col2im"
    input = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    geometry = prop_def(DenseArrayBase)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        g = self.geometry.get_values()
        if len(g) != 14:
            raise VerifyException(f"{self.name} geometry has 14 entries [N,C,H,W,kh,kw,sh,sw,pt,pl,dh,dw,Ho,Wo]")
        n, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo = g
        if min(n, c, h, w, kh, kw, sh, sw, dh, dw, ho, wo) < 1 or min(pt, pl) < 0:
            raise VerifyException(f"{self.name} geometry {list(g)}: sizes must be positive and pads non-negative")
        col = tuple(self.input.type.get_shape())  # type: ignore[attr-defined]
        y = tuple(self.output.type.get_shape())  # type: ignore[attr-defined]
        if col != (n, c * kh * kw, h * w) or y != (n, c, ho, wo):
            raise VerifyException(f"{self.name}: columns {list(col)} / output {list(y)} do not match geometry {list(g)}")
        verify_channel_operands(self.name, y, self.residual, bias=self.bias)


def _verify_winograd(name: str, tile: int, image: tuple[int, ...], points: tuple[int, ...], size: tuple[int, int]) -> None:
    """Shared shape check of the Winograd transforms: image [N, C, *] <-> points [N, alpha^2, S]."""
    if tile not in WINOGRAD_TILES:
        raise VerifyException(f"{name}: tile {tile} not implemented (choose one of {WINOGRAD_TILES})")
    alpha = tile + 2
    stride = point_stride(image[1], -(-size[0] // tile) * -(-size[1] // tile))
    expected = (image[0], alpha * alpha, stride)
    if len(image) != 4 or points != expected:
        raise VerifyException(f"{name}: transformed buffer {list(points)} does not match image {list(image)} "
                              f"with tile {tile} (expected {list(expected)})")  # fmt: skip


@irdl_op_definition
class WinogradInputOp(IRDLOperation):
    """Input transform of a Winograd F(m x m, 3 x 3) convolution (m = `tile`, alpha = m + 2).

    input [N, C, H, W] -> output [N, alpha^2, S]: output[n][a * alpha + b][c * Tp + ty * TW + tx] =
    (B^T d B)[a][b] of the alpha x alpha input tile d whose top-left corner is input row ty * m - pads[0],
    column tx * m - pads[1] (zero outside the image); TH x TW tiles cover the convolution's output of
    `out_size` = [Ho, Wo]. Each of the alpha^2 matrices is [C, Tp] with rows padded to
    Tp = `padded_tiles(TH * TW)` (the kernel stores whole vectors), S = `point_stride(C, TH * TW)`
    floats apart (see inferon/ir/winograd.py). The alpha^2 GEMMs with the transformed weights follow as a `loop.matmul`.
    """

    name = "loop.winograd_input"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    tile = prop_def(I64Attr)
    pads = prop_def(DenseArrayBase)  # [top, left]
    out_size = prop_def(DenseArrayBase)  # [Ho, Wo]

    def verify_(self) -> None:
        ho, wo = self.out_size.get_values()
        image = tuple(self.input.type.get_shape())  # type: ignore[attr-defined]
        _verify_winograd(self.name, self.tile.value.data, image, tuple(self.output.type.get_shape()), (ho, wo))  # type: ignore[attr-defined]
        if len(self.pads.get_values()) != 2 or min(self.pads.get_values()) < 0:
            raise VerifyException(f"{self.name}: pads are [top, left], non-negative")


@irdl_op_definition
class WinogradOutputOp(IRDLOperation):
    """Output transform of a Winograd F(m x m, 3 x 3) convolution, with the conv's epilogue.

    input [N, alpha^2, S] (the GEMM products: alpha^2 matrices [M, Tp] laid out as the output of
    `loop.winograd_input`, S = `point_stride(M, TH * TW)`) -> output [N, M, Ho, Wo]: each m x m tile is
    A^T Z A, cropped at the output's edge; then + bias[m], + residual (the output's layout), and the
    epilogue's activation.
    """

    name = "loop.winograd_output"
    input = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    tile = prop_def(I64Attr)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        y = tuple(self.output.type.get_shape())  # type: ignore[attr-defined]
        _verify_winograd(self.name, self.tile.value.data, y, tuple(self.input.type.get_shape()), y[2:4])  # type: ignore[attr-defined]
        verify_channel_operands(self.name, y, self.residual, bias=self.bias)


IM2COL_VIEW_LEN = 13  # [C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo]


def verify_im2col_view(view: DenseArrayBase | None, implicit: bool = False) -> None:
    """Check a `b_im2col` property (of loop.matmul / vec.gemm) and its `b_implicit` flag."""
    if view is None:
        if implicit:
            raise VerifyException("b_implicit needs a b_im2col view")
        return
    values = view.get_values()
    if len(values) != IM2COL_VIEW_LEN:
        raise VerifyException(f"b_im2col has {IM2COL_VIEW_LEN} entries [C,H,W,kh,kw,sh,sw,pt,pl,dh,dw,Ho,Wo], got {len(values)}")
    c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo = values
    if min(c, h, w, kh, kw, sh, sw, dh, dw, ho, wo) < 1 or min(pt, pl) < 0:
        raise VerifyException(f"b_im2col {list(values)}: sizes must be positive and pads non-negative")
    if implicit and (sh, sw, dh, dw) != (1, 1, 1, 1):
        raise VerifyException("b_implicit needs stride 1 and dilation 1")


@irdl_op_definition
class MatMulOp(IRDLOperation):
    """Batched GEMM with a fused epilogue, over a two-level batch (outer x inner).

    For (o, i) in batch: C[o,i] (MxN, ldc) = epilogue(A[o,i] (MxK, lda) * B[o,i] (KxN, ldb)), where
    X[o,i] = X + o * X_strides[0] + i * X_strides[1] (a 0 stride broadcasts). dims = [M, N, K],
    leading = [lda, ldb, ldc]. Bias is per row (bias_axis 0) or per column (1), offset by
    bias_strides; the residual shares C's layout. `tiles` is chosen by `select-tiles`. With
    `b_im2col` = [C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo], B[o,i] is an image [C, H, W]
    read as its im2col matrix (K = C*kh*kw, N = Ho*Wo; ldb unused): the kernel builds B's packed
    panels straight from the image, one cache block at a time, with no im2col buffer. `b_implicit`
    (stride 1, dilation 1) lets it skip packing B altogether: it reads B in place from a
    zero-bordered copy of the image (see `conv-to-im2col`).
    """

    name = "loop.matmul"
    a = operand_def(MemRefType)
    b = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    c = operand_def(MemRefType)
    dims = prop_def(DenseArrayBase)
    leading = prop_def(DenseArrayBase)
    batch = prop_def(DenseArrayBase)
    a_strides = prop_def(DenseArrayBase)
    b_strides = prop_def(DenseArrayBase)
    c_strides = prop_def(DenseArrayBase)
    bias_axis = prop_def(I64Attr)
    bias_strides = prop_def(DenseArrayBase)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    tiles = opt_prop_def(TilesAttr)
    b_im2col = opt_prop_def(DenseArrayBase)
    b_implicit = opt_prop_def(UnitAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        verify_im2col_view(self.b_im2col, self.b_implicit is not None)


@irdl_op_definition
class Pool2dOp(IRDLOperation):
    """Max or average pooling of NC planes.

    geometry = [NC, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw].
    """

    name = "loop.pool2d"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    geometry = prop_def(DenseArrayBase)
    is_max = prop_def(BoolAttr)
    count_include_pad = prop_def(BoolAttr)
    quant = opt_prop_def(DenseArrayBase)  # average of quantized planes: [x scale, x zp, y scale, y zp]


@irdl_op_definition
class GlobalPoolOp(IRDLOperation):
    """Mean or max over HW of each of NC planes."""

    name = "loop.global_pool"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    planes = prop_def(I64Attr)
    plane_size = prop_def(I64Attr)
    is_max = prop_def(BoolAttr)
    quant = opt_prop_def(DenseArrayBase)  # average of quantized planes: [x scale, x zp, y scale, y zp]


@irdl_op_definition
class BinaryOp(IRDLOperation):
    """y = lhs (kind) rhs over `shape`, operands read with broadcast strides (0 = broadcast)."""

    name = "loop.binary"
    lhs = operand_def(MemRefType)
    rhs = operand_def(MemRefType)
    output = operand_def(MemRefType)
    kind = prop_def(ElementwiseKindAttr)
    shape = prop_def(DenseArrayBase)
    lhs_strides = prop_def(DenseArrayBase)
    rhs_strides = prop_def(DenseArrayBase)


@irdl_op_definition
class SelectOp(IRDLOperation):
    """ONNX Where: y = cond != 0 ? lhs : rhs over `shape`, operands read with broadcast strides."""

    name = "loop.select"
    cond = operand_def(MemRefType)
    lhs = operand_def(MemRefType)
    rhs = operand_def(MemRefType)
    output = operand_def(MemRefType)
    shape = prop_def(DenseArrayBase)
    cond_strides = prop_def(DenseArrayBase)
    lhs_strides = prop_def(DenseArrayBase)
    rhs_strides = prop_def(DenseArrayBase)


@irdl_op_definition
class UnaryOp(IRDLOperation):
    """y = kind(x; alpha, beta) over `size` contiguous elements."""

    name = "loop.unary"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    kind = prop_def(ElementwiseKindAttr)
    size = prop_def(I64Attr)
    alpha = prop_def(F32Attr)
    beta = prop_def(F32Attr)


@irdl_op_definition
class CopyOp(IRDLOperation):
    """Copy `rows` rows of `row_len` contiguous elements into output rows `stride` apart, from `offset`.

    A plain copy is one row; Concat writes each input into its slice of the output this way.
    """

    name = "loop.copy"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    rows = prop_def(I64Attr)
    row_len = prop_def(I64Attr)
    stride = prop_def(I64Attr)
    offset = prop_def(I64Attr)


@irdl_op_definition
class StridedCopyOp(IRDLOperation):
    """y[i0, .., ik] = x[offset + sum_d i_d * strides[d]] for y dense of `shape` (a Slice / Split /
    Gather window; strides in elements, possibly negative). `convert-graph-to-loop` merges dimensions
    that stay linear and drops size-1 ones, so a contiguous window is `shape = [n], strides = [1]`
    (which `elide-copies` turns into a `loop.slice`)."""

    name = "loop.strided_copy"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    offset = prop_def(I64Attr)

    def verify_(self) -> None:
        shape, strides = self.shape.get_values(), self.strides.get_values()
        size = math.prod(self.input.type.get_shape())  # type: ignore[attr-defined]
        if len(shape) != len(strides) or len(shape) > MAX_RANK or min(shape, default=1) < 1:
            raise VerifyException(f"loop.strided_copy: bad shape {list(shape)} / strides {list(strides)}")
        if math.prod(shape) != math.prod(self.output.type.get_shape()):  # type: ignore[attr-defined]
            raise VerifyException("loop.strided_copy: shape does not match the output's size")
        off = self.offset.value.data
        lo = off + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))  # type: ignore[operator]
        hi = off + sum(max(0, (n - 1) * s) for n, s in zip(shape, strides))  # type: ignore[operator]
        if lo < 0 or hi >= size:
            raise VerifyException(f"loop.strided_copy reads [{lo}, {hi}], outside its input of {size} elements")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """y = x.transpose(perm) for x of `shape`."""

    name = "loop.transpose"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    shape = prop_def(DenseArrayBase)
    perm = prop_def(DenseArrayBase)


@irdl_op_definition
class SoftmaxOp(IRDLOperation):
    """(Log)softmax over the middle axis of an [outer, axis, inner] view."""

    name = "loop.softmax"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    view = prop_def(DenseArrayBase)
    log = prop_def(BoolAttr)


@irdl_op_definition
class LRNOp(IRDLOperation):
    """ONNX LRN across the C channels of an [N, C, HW] view."""

    name = "loop.lrn"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    view = prop_def(DenseArrayBase)
    size = prop_def(I64Attr)
    alpha = prop_def(F32Attr)
    beta = prop_def(F32Attr)
    bias = prop_def(F32Attr)


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """y[o][i] = reduce(kind) over r of x[o][r][i], for x viewed as [outer, r, inner]."""

    name = "loop.reduce"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    view = prop_def(DenseArrayBase)
    kind = prop_def(ReduceKindAttr)


@irdl_op_definition
class ArgReduceOp(IRDLOperation):
    """y[o][i] = the index a of the max / min (`kind`) of x[o][a][i] (first, or last with
    `select_last`), for x viewed as [outer, r, inner]; x is f32 or ui8 / si8 (stored integers), y i64
    indices or f32 (indices as floats)."""

    name = "loop.arg_reduce"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    view = prop_def(DenseArrayBase)
    kind = prop_def(ReduceKindAttr)
    select_last = prop_def(BoolAttr)

    def verify_(self) -> None:
        outer, r, inner = (int(v) for v in self.view.get_values())
        x, y = self.input.type, self.output.type
        assert isinstance(x, MemRefType) and isinstance(y, MemRefType)
        if math.prod(x.get_shape()) != outer * r * inner or math.prod(y.get_shape()) != outer * inner:
            raise VerifyException(f"loop.arg_reduce: view {[outer, r, inner]} does not match input {list(x.get_shape())} "
                                  f"and output {list(y.get_shape())}")  # fmt: skip
        if y.element_type not in (i64, f32):
            raise VerifyException("loop.arg_reduce: the output must be i64 or f32")


@irdl_op_definition
class RowNormOp(IRDLOperation):
    """Normalise each row of x viewed as [rows, channels_per_row * hw] to zero mean and unit variance
    (epsilon added to the variance), then y = x_hat * scale[c] + bias[c] with c = (row % groups) *
    channels_per_row + column / hw. view = [rows, groups, channels_per_row, hw]: a layer norm is
    [outer, 1, len, 1] (an affine per column), a group norm [N * G, G, C / G, HW] (an instance norm:
    G = C)."""

    name = "loop.row_norm"
    input = operand_def(MemRefType)
    scale = operand_def(MemRefType)
    bias = operand_def(MemRefType)
    output = operand_def(MemRefType)
    view = prop_def(DenseArrayBase)
    epsilon = prop_def(F32Attr)


class SpMMBase(IRDLOperation):
    """Fields shared by `loop.spmm` and `vec.spmm` (see loop.spmm)."""

    values = operand_def(MemRefType)
    index = operand_def(MemRefType)
    row_ptr = opt_operand_def(MemRefType)
    koff = opt_operand_def(MemRefType)
    b = operand_def(MemRefType)
    bias = opt_operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    c = operand_def(MemRefType)
    format = prop_def(SparseAttr)
    dims = prop_def(DenseArrayBase)
    b_scale = prop_def(I64Attr)
    batch = prop_def(I64Attr)
    b_stride = prop_def(I64Attr)
    c_strides = prop_def(DenseArrayBase)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    b_implicit = opt_prop_def(DenseArrayBase)
    kblocks = opt_prop_def(I64Attr)  # CSR column blocks (see convert-sparse-to-spmm); default 1
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        fmt = self.format.kind
        if self.kblocks is not None and self.kblocks.value.data > 1 and fmt != SparseFormat.CSR:
            raise VerifyException(f"{self.name}: kblocks > 1 is for CSR weights only")
        if not self.format.is_sparse:
            raise VerifyException(f"{self.name} needs a sparse format, got {fmt}")
        if (self.row_ptr is not None) != (fmt == SparseFormat.CSR):
            raise VerifyException(f"{self.name}: row_ptr is required for csr and only for csr")
        if self.koff is not None and fmt != SparseFormat.NM24:
            raise VerifyException(f"{self.name}: koff (column offsets) is for 2:4 weights only")
        if len(self.dims.get_values()) != 3 or len(self.c_strides.get_values()) != 2:
            raise VerifyException(f"{self.name}: dims is [M, N, K] and c_strides [ldc, batch stride]")
        verify_im2col_view(self.b_implicit)
        if self.b_implicit is not None:
            view = self.b_implicit.get_values()
            if (view[9], view[10]) != (1, 1):
                raise VerifyException(f"{self.name}: b_implicit needs dilation 1")


@irdl_op_definition
class SpMMOp(SpMMBase):
    """Sparse-weight GEMM with a fused epilogue, from `convert-sparse-to-spmm`.

    For b in [0, batch): C_b[M, N] = epilogue(A * B_b), dims = [M, N, K]. A is the sparse weight in
    `format`: CSR (`values`, `index` with the column indices, `row_ptr`) or 2:4 (`values` [M, K/2],
    `index` = 2-bit positions, two groups per byte, optional `koff` column offsets); see
    `inferon.ir.sparse`. Row k of B_b starts at b + b*b_stride + index(k)*b_scale, so the index
    already encodes how B is read (input image of a 1x1 conv, im2col buffer, or, with `b_implicit`
    = [C, H, W, kh, kw, sh, sw, pt, pl, 1, 1, Ho, Wo], offsets in the zero-bordered, stride-phase
    split image of a conv with dilation 1). C_b[m, n] is at c + b*c_strides[1] + m*c_strides[0] + n; bias is per row m;
    the residual shares C's layout. `kblocks` > 1 (CSR): the columns come in that many
    blocks, each with its own row pointers (`row_ptr` holds kblocks x (M + 1)).
    """

    name = "loop.spmm"


@irdl_op_definition
class PadOp(IRDLOperation):
    """y = a window of x padded (from graph.pad): per axis d, `shape[d]` elements of x (element
    stride `strides[d]`, from element `offset`) get pads[d] in front and pads[rank + d] behind
    (non-negative), filled by `mode` (`value` in constant mode, stored integers for 8-bit buffers);
    y is dense. `convert-graph-to-loop` merges axes where it can (see its `pad_view`)."""

    name = "loop.pad"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    offset = prop_def(I64Attr)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(PadModeAttr)
    value = prop_def(F32Attr)

    def verify_(self) -> None:
        shape, strides, pads = self.shape.get_values(), self.strides.get_values(), self.pads.get_values()
        r = len(shape)
        if not 0 < r <= MAX_RANK or len(strides) != r or len(pads) != 2 * r or min(shape) < 1 or min(pads) < 0:
            raise VerifyException(f"loop.pad: bad shape {list(shape)} / strides {list(strides)} / pads {list(pads)}")
        out = math.prod(n + b + e for n, b, e in zip(shape, pads[:r], pads[r:]))  # type: ignore[operator]
        if out != math.prod(self.output.type.get_shape()):  # type: ignore[attr-defined]
            raise VerifyException("loop.pad: shape and pads do not match the output's size")
        size = math.prod(self.input.type.get_shape())  # type: ignore[attr-defined]
        off = self.offset.value.data
        hi = off + sum((n - 1) * st for n, st in zip(shape, strides))  # type: ignore[operator]
        if off < 0 or min(strides) < 0 or hi >= size:
            raise VerifyException(f"loop.pad reads [{off}, {hi}], outside its input of {size} elements")
        if self.input.type.element_type != self.output.type.element_type:  # type: ignore[attr-defined]
            raise VerifyException("loop.pad must keep the element type")


@irdl_op_definition
class ResizeOp(IRDLOperation):
    """Separable resize of [P, H, W] planes to [P, Ho, Wo] through tap tables (from graph.resize,
    `inferon.ir.resize.axis_taps`): y[p, oy, ox] = sum_i sum_j y_weight[oy, i] * x_weight[j, ox] *
    x[p, y_index[oy, i], x_index[j, ox]]. y_index / y_weight are [Ho, ty] (rows), x_index / x_weight
    [tx, Wo] (tap-major, so 8 output columns' indices are one vector load); the indices are i32 and
    clamped. A missing weight table means one tap of weight 1 (nearest, or an axis not resized).
    geometry = [P, H, W, Ho, Wo, ty, tx]; x_repeat = k > 0 when x_index[0, ox] = ox / k (nearest
    upsampling of W by an integer factor: the kernel's copy path), else 0."""

    name = "loop.resize"
    input = operand_def(MemRefType)
    y_index = operand_def(MemRefType)
    y_weight = opt_operand_def(MemRefType)
    x_index = operand_def(MemRefType)
    x_weight = opt_operand_def(MemRefType)
    output = operand_def(MemRefType)
    geometry = prop_def(DenseArrayBase)
    x_repeat = prop_def(I64Attr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        geometry = self.geometry.get_values()
        if len(geometry) != 7 or min(geometry) < 1:
            raise VerifyException(f"loop.resize: geometry is [P, H, W, Ho, Wo, ty, tx], got {list(geometry)}")
        p, h, w, ho, wo, ty, tx = geometry
        tables = [(self.y_index, (ho, ty)), (self.y_weight, (ho, ty)), (self.x_index, (tx, wo)), (self.x_weight, (tx, wo))]
        for table, shape in tables:
            if table is not None and tuple(table.type.get_shape()) != shape:  # type: ignore[attr-defined]
                raise VerifyException(f"loop.resize: a tap table is {table.type}, expected shape {list(shape)}")
        if (self.y_weight is None and ty != 1) or (self.x_weight is None and tx != 1):
            raise VerifyException("loop.resize: an axis without weights has one tap")
        if math.prod(self.input.type.get_shape()) != p * h * w:  # type: ignore[attr-defined]
            raise VerifyException("loop.resize: input does not hold P x H x W elements")
        if math.prod(self.output.type.get_shape()) != p * ho * wo:  # type: ignore[attr-defined]
            raise VerifyException("loop.resize: output does not hold P x Ho x Wo elements")
        k = self.x_repeat.value.data
        if k < 0 or (k > 0 and (self.x_weight is not None or wo != w * k)):
            raise VerifyException(f"loop.resize: x_repeat {k} needs a weightless W axis with Wo = W x k")


class QuantCastBase(IRDLOperation):
    """Fields shared by `loop.quantize` and `loop.dequantize`: per-tensor scale and zero point."""

    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    scale = prop_def(F32Attr)
    zero_point = prop_def(I64Attr)
    size = prop_def(I64Attr)


@irdl_op_definition
class QuantizeOp(QuantCastBase):
    """y = saturate(round_half_even(x / scale) + zero_point) over `size` elements (f32 -> ui8/si8)."""

    name = "loop.quantize"


@irdl_op_definition
class DequantizeOp(QuantCastBase):
    """y = (x - zero_point) * scale over `size` elements (ui8/si8/si32 -> f32)."""

    name = "loop.dequantize"


@irdl_op_definition
class DynamicQuantizeOp(IRDLOperation):
    """ONNX DynamicQuantizeLinear over `size` elements: scale and zero point (one f32 each) from the
    input's range, `values` = the stored uint8 integers minus the zero point, as f32."""

    name = "loop.dynamic_quantize"
    input = operand_def(MemRefType)
    values = operand_def(MemRefType)
    scale = operand_def(MemRefType)
    zero_point = operand_def(MemRefType)
    size = prop_def(I64Attr)


@irdl_op_definition
class QAddOp(IRDLOperation):
    """Quantized Add (+ ReLU / Clip) over `size` elements in ONNX Runtime's QLinearAdd arithmetic
    (`inferon.ir.quant.qadd`: float scale ratios and FMAs, within one step of the QDQ chain).

    quant = [a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point, lo, hi] (lo / hi:
    the real bounds of a fused ReLU / Clip, infinite when none)."""

    name = "loop.qadd"
    lhs = operand_def(MemRefType)
    rhs = operand_def(MemRefType)
    output = operand_def(MemRefType)
    quant = prop_def(DenseArrayBase)
    size = prop_def(I64Attr)

    def verify_(self) -> None:
        if len(self.quant.get_values()) != 8:
            raise VerifyException("loop.qadd: quant has 8 entries (a, b, y scale / zero point, lo, hi)")


@irdl_op_definition
class QTableOp(IRDLOperation):
    """y = table[c][x] on 8-bit storage (see graph.qtable): input and output [batch, channels,
    plane] bytes, table [rows, 256] with rows 1 (one table) or channels."""

    name = "loop.qtable"
    input = operand_def(MemRefType)
    table = operand_def(MemRefType)
    output = operand_def(MemRefType)
    batch = prop_def(I64Attr)
    channels = prop_def(I64Attr)
    plane = prop_def(I64Attr)

    def verify_(self) -> None:
        rows = self.table.type.get_shape()  # type: ignore[attr-defined]
        if len(rows) != 2 or rows[1] != 256 or rows[0] not in (1, self.channels.value.data):
            raise VerifyException(f"loop.qtable: the table is [1 or channels, 256], got {list(rows)}")


@irdl_op_definition
class QDepthwiseConv2dOp(IRDLOperation):
    """Quantized direct depthwise convolution (QLinearConv with group == C_in) on NCHW.

    input [N, C, H, W] (ui8 / si8), weight [M, 1, kh, kw] si8 (M a multiple of C: output channel m
    reads input channel m // (M // C)), comp [M] si32 (bias - zx * sum of the channel's weights) and
    mult [M, 4] si32 as in loop.qgemm, output [N, M, Ho, Wo]; requant = [zy, lo, hi]; `pad` is the
    stored input zero point (what the padding reads). pads are [top, left, bottom, right]."""

    name = "loop.qdepthwise_conv2d"
    input = operand_def(MemRefType)
    weight = operand_def(MemRefType)
    comp = operand_def(MemRefType)
    mult = operand_def(MemRefType)
    output = operand_def(MemRefType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    requant = prop_def(DenseArrayBase)
    pad = prop_def(I64Attr)

    def verify_(self) -> None:
        x = tuple(self.input.type.get_shape())  # type: ignore[attr-defined]
        w = tuple(self.weight.type.get_shape())  # type: ignore[attr-defined]
        y = tuple(self.output.type.get_shape())  # type: ignore[attr-defined]
        if len(x) != 4 or len(w) != 4 or len(y) != 4 or w[1] != 1 or w[0] % x[1] or y[:2] != (x[0], w[0]):
            raise VerifyException(f"loop.qdepthwise_conv2d shapes do not match: input {x}, weight {w}, output {y}")
        if len(self.requant.get_values()) != 3:
            raise VerifyException("loop.qdepthwise_conv2d: requant is [output zero point, lo, hi]")


class QGemmBase(IRDLOperation):
    """Fields shared by `loop.qgemm` and `vec.qgemm` (see loop.qgemm)."""

    a = operand_def(MemRefType)
    a_index = opt_operand_def(MemRefType)  # sparse A: block group numbers (block1x4) or columns (a_csr)
    a_row_ptr = opt_operand_def(MemRefType)  # sparse A: row pointers (blocks or quads)
    b = operand_def(MemRefType)
    comp = operand_def(MemRefType)
    mult = operand_def(MemRefType)
    residual = opt_operand_def(MemRefType)
    c = operand_def(MemRefType)
    dims = prop_def(DenseArrayBase)
    batch = prop_def(DenseArrayBase)
    a_strides = prop_def(DenseArrayBase)
    b_strides = prop_def(DenseArrayBase)
    c_strides = prop_def(DenseArrayBase)
    row_strides = prop_def(DenseArrayBase)
    ldb = prop_def(I64Attr)
    c_leading = prop_def(DenseArrayBase)
    requant = prop_def(DenseArrayBase)
    pad = prop_def(I64Attr)
    b_trans = opt_prop_def(UnitAttr)
    b_im2col = opt_prop_def(DenseArrayBase)
    # K in implicit_weight_order; read in place (stride 1 by the row panels, any stride as lanes)
    b_implicit = opt_prop_def(UnitAttr)
    residual_add = opt_prop_def(DenseArrayBase)
    residual_lhs = opt_prop_def(UnitAttr)
    a_csr = opt_prop_def(UnitAttr)  # the sparse A is CSR quads (csr_quad_encode), not block1x4
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        if (self.residual is None) != (self.residual_add is None):
            raise VerifyException(f"{self.name}: a residual operand comes with its residual_add parameters")
        if self.residual_add is not None and len(self.residual_add.get_values()) != 8:
            raise VerifyException(f"{self.name}: residual_add is loop.qadd's quant (8 values)")
        if len(self.dims.get_values()) != 3 or len(self.batch.get_values()) != 2:
            raise VerifyException(f"{self.name}: dims is [M, N, K], batch [outer, inner]")
        for field in (self.a_strides, self.b_strides, self.c_strides, self.row_strides, self.c_leading):
            if len(field.get_values()) != 2:
                raise VerifyException(f"{self.name}: strides and c_leading have two entries")
        if len(self.requant.get_values()) != 3:
            raise VerifyException(f"{self.name}: requant is [output zero point, lo, hi]")
        verify_im2col_view(self.b_im2col)
        if self.b_implicit is not None and self.b_im2col is None:
            raise VerifyException(f"{self.name}: b_implicit needs a b_im2col view")
        if self.b_implicit is not None and self.b_im2col is not None:
            c, kh, kw = (self.b_im2col.get_values()[i] for i in (0, 3, 4))
            if self.dims.get_values()[2] != -(-c // 4) * 4 * kh * kw:
                raise VerifyException(f"{self.name}: an implicit conv has K = ceil(C/4)*4*kh*kw (implicit_weight_order)")
        if self.b_trans is not None and self.b_im2col is not None:
            raise VerifyException(f"{self.name}: b_trans and b_im2col exclude each other")
        if (self.a_index is None) != (self.a_row_ptr is None):
            raise VerifyException(f"{self.name}: a block-sparse A has both a_index and a_row_ptr")
        if self.a_row_ptr is not None:
            m = self.dims.get_values()[0]
            rows = self.a_row_ptr.type.get_shape()  # type: ignore[attr-defined]
            if len(rows) != 1 or rows[0] % (m + 1):
                raise VerifyException(f"{self.name}: a_row_ptr has k-chunks x (M + 1 = {m + 1}) entries, got {rows}")
            if self.batch.get_values()[1] != 1 or self.a_strides.get_values()[0] != 0:
                raise VerifyException(f"{self.name}: a block-sparse A is one matrix (no groups, a_strides[0] 0)")
        if self.a_csr is not None and self.a_row_ptr is None:
            raise VerifyException(f"{self.name}: a_csr marks a sparse A (a_index, a_row_ptr)")


@irdl_op_definition
class QGemmOp(QGemmBase):
    """Quantized GEMM: C = requantize(A x B), A int8 weights, B 8-bit activations.

    A is either dense int8 [M, K] rows or (with `a_index` and `a_row_ptr`, from
    convert-sparse-to-spmm) the block1x4 encoding of a `#graph.sparse<block1x4>` weight
    (`inferon.ir.sparse.block4_encode`: int8 values of the 4-column groups holding a nonzero), or
    with `a_csr` the CSR quads of a `#graph.sparse<csr>` one (`inferon.ir.sparse.csr_quad_encode`).
    For (o, i) in batch: C[o,i][m, n] = clamp(round_half_even((sum_k A[m, k] B[k, n] + comp[m]) *
    M[m]) + zy, lo, hi) with requant = [zy, lo, hi], dims = [M, N, K], the product exact. X[o,i] = X
    + o * X_strides[0] + i * X_strides[1] for A (rows of K), B, C; comp (from the bias and the zero
    points) and mult (M[m] in fixed point: `inferon.ir.quant.fixed_point` records [M, 4] si32) have
    one row per output row and are offset by row_strides. B is [K, N] with
    row stride ldb, or (b_trans) [N, K] with row stride ldb, or (b_im2col) an image read as its
    im2col matrix with `pad` (the input zero point) in the padding. C[m, n] is at m * c_leading[0]
    + n * c_leading[1]. Signedness of B and C follows their element types (ui8 / si8).

    With a `residual` (laid out like C; from fuse-residual-qadd) the requantized value y is added to
    it before the store exactly like `loop.qadd` (C = qadd(y, residual), or qadd(residual, y) when
    `residual_lhs`), residual_add being that qadd's quant.

    `b_implicit`: K runs over (channel group of 4, tap, channel in group), A in
    `inferon.ir.quant.implicit_weight_order`; the kernel reads B in place from an interleaved
    bordered copy of the image (no im2col, no packing): for stride-1 convs the VNNI row panels
    (qgemm.hpp `run_implicit`), for any stride the lanes kernels (qlanes.hpp); elsewhere im2col rows
    in the same K order.
    """

    name = "loop.qgemm"


COMPUTE_OPS = (
    Conv2dOp, DepthwiseConv2dOp, GroupedConv2dOp, ChannelAffineOp, Im2ColOp, Col2ImOp, WinogradInputOp, WinogradOutputOp, MatMulOp, Pool2dOp, GlobalPoolOp, BinaryOp, SelectOp, UnaryOp, CopyOp,
    StridedCopyOp, TransposeOp, SoftmaxOp, LRNOp, ReduceOp, ArgReduceOp, RowNormOp, SpMMOp, QuantizeOp, DequantizeOp, DynamicQuantizeOp, QGemmOp, QAddOp, QTableOp, QDepthwiseConv2dOp, PadOp,
    ResizeOp,
)  # fmt: skip

Loop = Dialect("loop", [WeightOp, AllocOp, SliceOp, *COMPUTE_OPS], [TilesAttr])
