"""The `loop` dialect: kernels over buffers, with their tiling decisions as properties.

Values are `memref<...xf32>` buffers: function arguments (inputs, then outputs), `loop.weight` views of
the weight blob, and `loop.alloc` slices of the per-context arena (their `offset`, in floats, is set by
`plan-memory`). Every compute op writes its last operand (destination-passing style) and returns
nothing. Sizes and strides are in elements. Op names say what the kernel does (`loop.im2col`,
`loop.matmul`); the C++ backend maps each to one runtime kernel call.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    BoolAttr,
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
)
from xdsl.ir import Dialect
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

from inferon.ir.attrs import NO_EPILOGUE, ElementwiseKindAttr, EpilogueAttr
from inferon.ir.dialects.graph import F32Attr

I64Attr = IntegerAttr[IntegerType]


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
    result = result_def(MemRefType)


@irdl_op_definition
class AllocOp(IRDLOperation):
    """A scratch buffer in the arena; `offset` (floats from the arena base) comes from plan-memory."""

    name = "loop.alloc"
    offset = opt_prop_def(I64Attr)
    result = result_def(MemRefType)


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
class MatMulOp(IRDLOperation):
    """Batched GEMM with a fused epilogue, over a two-level batch (outer x inner).

    For (o, i) in batch: C[o,i] (MxN, ldc) = epilogue(A[o,i] (MxK, lda) * B[o,i] (KxN, ldb)), where
    X[o,i] = X + o * X_strides[0] + i * X_strides[1] (a 0 stride broadcasts). dims = [M, N, K],
    leading = [lda, ldb, ldc]. Bias is per row (bias_axis 0) or per column (1), offset by
    bias_strides; the residual shares C's layout. `tiles` is chosen by `select-tiles`.
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
    irdl_options = (AttrSizedOperandSegments(as_property=True),)


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


@irdl_op_definition
class GlobalPoolOp(IRDLOperation):
    """Mean or max over HW of each of NC planes."""

    name = "loop.global_pool"
    input = operand_def(MemRefType)
    output = operand_def(MemRefType)
    planes = prop_def(I64Attr)
    plane_size = prop_def(I64Attr)
    is_max = prop_def(BoolAttr)


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


COMPUTE_OPS = (
    Conv2dOp, Im2ColOp, MatMulOp, Pool2dOp, GlobalPoolOp, BinaryOp, UnaryOp, CopyOp,
    TransposeOp, SoftmaxOp, LRNOp,
)  # fmt: skip

Loop = Dialect("loop", [WeightOp, AllocOp, *COMPUTE_OPS], [TilesAttr])
