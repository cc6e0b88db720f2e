"""The `vec` dialect: microkernel-level ops at SIMD width.

`vec.gemm` is a `loop.matmul` whose register tile (`mr` rows x `nr` columns, `nr` a multiple of the
vector width: 8 floats for AVX2) and instruction set are fixed; the backend instantiates the packed,
register-blocked microkernel of the runtime for it. Operands and properties keep the meaning they have
on `loop.matmul`.
"""

from __future__ import annotations

from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, IntegerType, MemRefType
from xdsl.ir import Dialect
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
)
from xdsl.utils.exceptions import VerifyException

from inferon.ir.attrs import NO_EPILOGUE, EpilogueAttr
from inferon.ir.dialects.loop import TilesAttr

I64Attr = IntegerAttr[IntegerType]
VECTOR_WIDTH_F32 = 8  # floats per ymm register


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
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def verify_(self) -> None:
        mr, nr = self.mr.value.data, self.nr.value.data
        if not 1 <= mr <= 6 or nr % VECTOR_WIDTH_F32 != 0 or not 8 <= nr <= 16:
            raise VerifyException(
                f"vec.gemm microkernel {mr}x{nr} unsupported: mr in 1..6, nr in {{8, 16}}"
            )


Vec = Dialect("vec", [GemmOp], [])
