"""The `vec` dialect: microkernel-level ops at SIMD width.

`vec.gemm` is a `loop.matmul` whose register tile (`mr` rows x `nr` columns, `nr` a multiple of the
vector width: 8 floats for AVX2) and instruction set are fixed (`a_packed`: A is a weight stored in
the kernel's panel layout by `pack-weights`, with `a_strides` in that layout); the backend instantiates the packed,
register-blocked microkernel of the runtime for it. Operands and properties keep the meaning they have
on `loop.matmul`.
"""

from __future__ import annotations

from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, IntegerType, MemRefType, UnitAttr
from xdsl.ir import Dialect
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
)
from xdsl.utils.exceptions import VerifyException

from inferon.ir.attrs import NO_EPILOGUE, EpilogueAttr
from inferon.ir.dialects.loop import QGemmBase, SpMMBase, TilesAttr, verify_im2col_view

I64Attr = IntegerAttr[IntegerType]
VECTOR_WIDTH_F32 = 8  # floats per ymm register
PACKED_MR = 6  # rows of the runtime's packed-A panels (the only MR its kernel is built for)
QGEMM_MR = 6  # rows of the quantized GEMM's packed panels (QMR in qgemm.hpp)
QGEMM_LANES = 32  # rows of a panel packed as vector lanes (a_lanes; QLANES in qlanes.hpp)
GEMM_LANES = 32  # rows of an FP32 panel packed as vector lanes (a_lanes; kLanes in gemm_lanes.hpp)


@irdl_op_definition
class GemmOp(IRDLOperation):
    """Register-blocked GEMM: packed A/B panels, an mr x nr FMA microkernel, epilogue in registers."""

    name = "vec.gemm"
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
    tiles = prop_def(TilesAttr)
    mr = prop_def(I64Attr)
    nr = prop_def(I64Attr)
    a_packed = opt_prop_def(UnitAttr)  # A is a weight already in packed panels (pack-weights)
    # A is a weight packed as vector lanes, [ceil(M / 32)][K][32] (pack-weights; gemm_lanes.hpp):
    # the kernel vectorises along A's rows and broadcasts B, for few columns (N = 49, 196, ...)
    a_lanes = opt_prop_def(UnitAttr)
    b_packed = opt_prop_def(UnitAttr)  # B is a weight already in nr-column panels (pack-weights)
    b_im2col = opt_prop_def(DenseArrayBase)  # B is an image read through im2col (see loop.matmul)
    b_implicit = opt_prop_def(UnitAttr)  # ... and read in place, without packing (see loop.matmul)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        mr, nr = self.mr.value.data, self.nr.value.data
        if not 1 <= mr <= 6 or nr % VECTOR_WIDTH_F32 != 0 or not 8 <= nr <= 16:
            raise VerifyException(
                f"vec.gemm microkernel {mr}x{nr} unsupported: mr in 1..6, nr in {{8, 16}}"
            )
        verify_im2col_view(self.b_im2col, self.b_implicit is not None)
        if self.b_packed is not None and (self.b_im2col is not None or self.b_implicit is not None):
            raise VerifyException("vec.gemm: b_packed excludes b_im2col / b_implicit")
        if self.a_lanes is not None and (
            self.a_packed is not None or self.b_packed is not None or self.b_implicit is not None
        ):
            raise VerifyException("vec.gemm: a_lanes excludes a_packed, b_packed and b_implicit")
        if self.a_packed is not None and mr != PACKED_MR:
            raise VerifyException(f"vec.gemm with a_packed needs mr = {PACKED_MR} (the packed panel height), got {mr}")


@irdl_op_definition
class SpMMOp(SpMMBase):
    """`loop.spmm` with its column tile fixed: `nr` floats (32, 48 or 64: 2-4 zmm with AVX-512F, 4-8
    ymm with AVX2) of one output row per register tile; the backend calls the runtime's sparse
    kernel (sparse.hpp)."""

    name = "vec.spmm"
    nr = prop_def(I64Attr)

    def verify_(self) -> None:
        super().verify_()
        if self.nr.value.data not in (32, 48, 64):
            raise VerifyException(f"vec.spmm column tile {self.nr.value.data} unsupported: 32, 48 or 64")


@irdl_op_definition
class QGemmOp(QGemmBase):
    """`loop.qgemm` with A in the packed panels of `mr` rows (`a_packed`, from pack-weights: per
    panel [ceil(K/4)][mr][4] int8, the 4-byte groups vpdpbusd multiplies). The column tile follows
    the instruction set chosen when the model is loaded (32 columns with AVX512-VNNI, 8 with AVX2 or
    scalar code): the runtime packs B for it (qgemm.hpp). With `a_lanes` (few columns) the panels
    hold mr = 32 rows that are the vector lanes: the kernel broadcasts each column's k-group against
    them, computing exactly N columns (qlanes.hpp). A block-sparse A (`a_index`, see loop.qgemm) is
    not packed: the kernel reads its blocks against the same B panels.

    With `a_fix` (pack-weights, row panels only) the packed A is *pair-safe*: in every pair of
    consecutive k (2j, 2j + 1) whose weights have the same sign, |a0| + |a1| <= 128, so that AVX2's
    vpmaddubsw (u8 x s8 pair sums in int16) cannot saturate against any uint8 activations; the true
    weights are the packed ones plus the sparse corrections in `a_fix` (int32: M + 1 row starts, then
    one entry per corrected weight, k << 8 | (r & 0xff) with r the int8 correction; see
    `pack_weights.pair_safe_split`), which every kernel adds to its int32 sums before requantizing."""

    name = "vec.qgemm"
    a_fix = opt_operand_def(MemRefType)
    mr = prop_def(I64Attr)
    a_packed = opt_prop_def(UnitAttr)
    a_lanes = opt_prop_def(UnitAttr)

    def verify_(self) -> None:
        super().verify_()
        if self.a_index is not None and (self.a_packed is not None or self.a_lanes is not None):
            raise VerifyException("vec.qgemm: a block-sparse A is not packed")
        if self.a_fix is not None and (self.a_lanes is not None or self.a_index is not None or self.a_packed is None):
            raise VerifyException("vec.qgemm: a_fix belongs to a dense A packed in row panels")
        if self.a_fix is not None and self.batch.get_values()[1] > 1 and self.a_strides.get_values()[1] != 0:
            raise VerifyException("vec.qgemm: a_fix covers one weight matrix (no groups with their own weights)")
        expected = QGEMM_LANES if self.a_lanes is not None else QGEMM_MR
        if self.mr.value.data != expected:
            raise VerifyException(
                f"vec.qgemm: the runtime's quantized kernels use mr = {expected}"
                + (" with a_lanes" if self.a_lanes is not None else "")
            )


Vec = Dialect("vec", [GemmOp, SpMMOp, QGemmOp], [])
