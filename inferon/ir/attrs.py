"""Typed attributes shared by Inferon's dialects.

`#graph.epilogue<kind, alpha, beta>` describes the element-wise activation a fused op applies before its
store (ReLU, LeakyReLU(alpha), Clip(alpha, beta), Sigmoid). Sparse and quantized encodings will live
here too, as further typed attributes on weights: `#graph.sparse<format, density, index_bits>` says
how a weight matrix is stored (dense, CSR or 2:4) and how dense it is.
"""

from __future__ import annotations

from xdsl.dialects.builtin import Float32Type, FloatAttr, IntegerAttr, IntegerType, f32, i64
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import ParametrizedAttribute, SpacedOpaqueSyntaxAttribute
from xdsl.irdl import irdl_attr_definition, param_def
from xdsl.utils.str_enum import StrEnum


class ActivationKind(StrEnum):
    """Activations a fused epilogue can apply (numbers match `inferon::Act` in the kernels)."""

    NONE = "none"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    CLIP = "clip"
    SIGMOID = "sigmoid"


@irdl_attr_definition
class ActivationKindAttr(EnumAttribute[ActivationKind], SpacedOpaqueSyntaxAttribute):
    """The kind of an activation, e.g. `#graph<act relu>`."""

    name = "graph.act"


@irdl_attr_definition
class EpilogueAttr(ParametrizedAttribute):
    """Activation applied in registers after bias and residual: kind, alpha and beta.

    LeakyReLU uses alpha as slope; Clip clamps to [alpha, beta]; the others ignore both.
    """

    name = "graph.epilogue"
    kind: ActivationKindAttr = param_def(ActivationKindAttr)
    alpha: FloatAttr[Float32Type] = param_def(FloatAttr[Float32Type])
    beta: FloatAttr[Float32Type] = param_def(FloatAttr[Float32Type])

    @staticmethod
    def make(kind: ActivationKind, alpha: float = 0.0, beta: float = 0.0) -> EpilogueAttr:
        return EpilogueAttr(ActivationKindAttr(kind), FloatAttr(alpha, f32), FloatAttr(beta, f32))

    @property
    def activation(self) -> ActivationKind:
        return self.kind.data


NO_EPILOGUE = EpilogueAttr.make(ActivationKind.NONE)


class ElementwiseKind(StrEnum):
    """Element-wise functions, binary then unary; the backend maps each to its kernel."""

    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MAX = "max"
    MIN = "min"
    POW = "pow"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    CLIP = "clip"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    EXP = "exp"
    LOG = "log"
    ABS = "abs"
    NEG = "neg"
    SQRT = "sqrt"
    RECIPROCAL = "reciprocal"
    FLOOR = "floor"
    CEIL = "ceil"
    ELU = "elu"
    HARD_SIGMOID = "hard_sigmoid"
    SOFTPLUS = "softplus"


@irdl_attr_definition
class ElementwiseKindAttr(EnumAttribute[ElementwiseKind], SpacedOpaqueSyntaxAttribute):
    """Which element-wise function a `loop.binary` / `loop.unary` computes, e.g. `#graph<ew add>`."""

    name = "graph.ew"


class SparseFormat(StrEnum):
    """Storage of a weight matrix (numbers match `inferon::SparseFormat` for the sparse ones)."""

    DENSE = "dense"
    CSR = "csr"
    NM24 = "nm2_4"


@irdl_attr_definition
class SparseFormatAttr(EnumAttribute[SparseFormat], SpacedOpaqueSyntaxAttribute):
    """A weight storage format, e.g. `#graph<format csr>`."""

    name = "graph.format"


@irdl_attr_definition
class SparseAttr(ParametrizedAttribute):
    """How a conv/matmul weight is stored: format, density (nonzeros / size) and index width in bits.

    Set on `graph.weight` (and carried to `loop.weight`) by `sparsify`. index_bits is the CSR
    column index width (16 or 32), 2 for 2:4 (two-bit positions) and 0 for dense.
    """

    name = "graph.sparse"
    format: SparseFormatAttr = param_def(SparseFormatAttr)
    density: FloatAttr[Float32Type] = param_def(FloatAttr[Float32Type])
    index_bits: IntegerAttr[IntegerType] = param_def(IntegerAttr[IntegerType])

    @staticmethod
    def make(fmt: SparseFormat, density: float, index_bits: int = 0) -> SparseAttr:
        return SparseAttr(SparseFormatAttr(fmt), FloatAttr(round(density, 4), f32), IntegerAttr(index_bits, i64))

    @property
    def kind(self) -> SparseFormat:
        return self.format.data

    @property
    def is_sparse(self) -> bool:
        return self.kind != SparseFormat.DENSE
