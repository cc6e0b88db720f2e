"""Typed attributes shared by Inferon's dialects.

`#graph.epilogue<kind, alpha, beta>` describes the element-wise activation a fused op applies before its
store (ReLU, LeakyReLU(alpha), Clip(alpha, beta), Sigmoid, HardSwish). Sparse and quantized encodings will live
here too, as further typed attributes on weights: `#graph.sparse<format, density, index_bits>` says
how a weight matrix is stored (dense, CSR or 2:4) and how dense it is. `!graph.quant<storage, scales,
zero_points, axis>` is the element type of quantized tensors (like MLIR's `!quant.uniform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
    f32,
    i64,
)
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import ParametrizedAttribute, SpacedOpaqueSyntaxAttribute, TypeAttribute
from xdsl.irdl import irdl_attr_definition, param_def
from xdsl.utils.str_enum import StrEnum


class ActivationKind(StrEnum):
    """Activations a fused epilogue can apply (numbers match `inferon::Act` in the kernels)."""

    NONE = "none"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    CLIP = "clip"
    SIGMOID = "sigmoid"
    HARD_SWISH = "hard_swish"
    SWISH = "swish"  # x * sigmoid(alpha * x) (SiLU at alpha 1)
    GELU = "gelu"
    GELU_TANH = "gelu_tanh"


@irdl_attr_definition
class ActivationKindAttr(EnumAttribute[ActivationKind], SpacedOpaqueSyntaxAttribute):
    """The kind of an activation, e.g. `#graph<act relu>`."""

    name = "graph.act"


@irdl_attr_definition
class EpilogueAttr(ParametrizedAttribute):
    """Activation applied in registers after bias and residual: kind, alpha and beta.

    LeakyReLU uses alpha as slope; Clip clamps to [alpha, beta]; the others (Sigmoid, HardSwish) ignore both.
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
    PRELU = "prelu"  # lhs if lhs >= 0 else lhs * rhs (rhs: the slope)
    # comparisons and logical ops: 1.0 or 0.0 (an ONNX bool tensor as float32; nonzero reads as true)
    GREATER = "greater"
    LESS = "less"
    GREATER_EQUAL = "greater_equal"
    LESS_EQUAL = "less_equal"
    EQUAL = "equal"
    AND = "and"
    OR = "or"
    XOR = "xor"
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
    HARD_SWISH = "hard_swish"
    SWISH = "swish"
    SELU = "selu"
    CELU = "celu"
    THRESHOLDED_RELU = "thresholded_relu"
    SOFTSIGN = "softsign"
    MISH = "mish"
    ERF = "erf"
    GELU = "gelu"
    GELU_TANH = "gelu_tanh"
    SIGN = "sign"
    ROUND = "round"
    SIN = "sin"
    COS = "cos"
    NOT = "not"


@irdl_attr_definition
class ElementwiseKindAttr(EnumAttribute[ElementwiseKind], SpacedOpaqueSyntaxAttribute):
    """Which element-wise function a `loop.binary` / `loop.unary` computes, e.g. `#graph<ew add>`."""

    name = "graph.ew"


class ReduceKind(StrEnum):
    """What a `graph.reduce` / `loop.reduce` computes over its axes (ONNX Reduce*; numbers match
    `inferon::ReduceKind` in the kernels)."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    PROD = "prod"
    L1 = "l1"
    L2 = "l2"
    SUM_SQUARE = "sum_square"
    LOG_SUM = "log_sum"
    LOG_SUM_EXP = "log_sum_exp"


@irdl_attr_definition
class ReduceKindAttr(EnumAttribute[ReduceKind], SpacedOpaqueSyntaxAttribute):
    """The reduction of a `graph.reduce` / `loop.reduce`, e.g. `#graph<reduce mean>`."""

    name = "graph.reduce"


class PadMode(StrEnum):
    """How a `graph.pad` / `loop.pad` fills its border (ONNX Pad modes; numbers match
    `inferon::PadMode` in the kernels)."""

    CONSTANT = "constant"
    REFLECT = "reflect"
    EDGE = "edge"
    WRAP = "wrap"


@irdl_attr_definition
class PadModeAttr(EnumAttribute[PadMode], SpacedOpaqueSyntaxAttribute):
    """The border of a `graph.pad` / `loop.pad`, e.g. `#graph<pad reflect>`."""

    name = "graph.pad"


class SparseFormat(StrEnum):
    """Storage of a weight matrix (numbers match `inferon::SparseFormat` for the sparse ones)."""

    DENSE = "dense"
    CSR = "csr"
    NM24 = "nm2_4"
    BLOCK4 = "block1x4"  # int8 weights: CSR of 1x4 blocks along K (the 4-byte groups vpdpbusd multiplies)


@irdl_attr_definition
class SparseFormatAttr(EnumAttribute[SparseFormat], SpacedOpaqueSyntaxAttribute):
    """A weight storage format, e.g. `#graph<format csr>`."""

    name = "graph.format"


@irdl_attr_definition
class SparseAttr(ParametrizedAttribute):
    """How a conv/matmul weight is stored: format, density (nonzeros / size) and index width in bits.

    Set on `graph.weight` (and carried to `loop.weight`) by `sparsify`. index_bits is the CSR
    column index width (16 or 32), 2 for 2:4 (two-bit positions), the block index width (16 or
    32) for block1x4 and 0 for dense.
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


class ResizeMode(StrEnum):
    """Interpolation of ONNX Resize / Upsample (`mode`)."""

    NEAREST = "nearest"
    LINEAR = "linear"
    CUBIC = "cubic"


@irdl_attr_definition
class ResizeModeAttr(EnumAttribute[ResizeMode], SpacedOpaqueSyntaxAttribute):
    """A resize interpolation, e.g. `#graph<interp linear>`."""

    name = "graph.interp"


class CoordinateMode(StrEnum):
    """Resize's `coordinate_transformation_mode`: output coordinate -> input coordinate."""

    HALF_PIXEL = "half_pixel"
    HALF_PIXEL_SYMMETRIC = "half_pixel_symmetric"
    PYTORCH_HALF_PIXEL = "pytorch_half_pixel"
    ALIGN_CORNERS = "align_corners"
    ASYMMETRIC = "asymmetric"
    TF_HALF_PIXEL_FOR_NN = "tf_half_pixel_for_nn"  # Resize-11 (x + 0.5) / scale; not in later specs


@irdl_attr_definition
class CoordinateModeAttr(EnumAttribute[CoordinateMode], SpacedOpaqueSyntaxAttribute):
    """A resize coordinate transformation, e.g. `#graph<coord half_pixel>`."""

    name = "graph.coord"


class NearestMode(StrEnum):
    """How nearest resizing rounds a source coordinate (Resize's `nearest_mode`); SIMPLE is the rule
    of Upsample and Resize-10 (ONNX Runtime): floor when upscaling an axis, ceil when downscaling."""

    ROUND_PREFER_FLOOR = "round_prefer_floor"
    ROUND_PREFER_CEIL = "round_prefer_ceil"
    FLOOR = "floor"
    CEIL = "ceil"
    SIMPLE = "simple"


@irdl_attr_definition
class NearestModeAttr(EnumAttribute[NearestMode], SpacedOpaqueSyntaxAttribute):
    """A nearest rounding rule, e.g. `#graph<nearest round_prefer_floor>`."""

    name = "graph.nearest"


STORAGE_TYPES: dict[np.dtype, IntegerType] = {
    np.dtype(np.uint8): IntegerType(8, Signedness.UNSIGNED),
    np.dtype(np.int8): IntegerType(8, Signedness.SIGNED),
    np.dtype(np.int32): IntegerType(32, Signedness.SIGNED),
}


def storage_dtype(typ: IntegerType) -> np.dtype:
    """The numpy dtype of an integer storage type (ui8, si8, si32)."""
    for dtype, t in STORAGE_TYPES.items():
        if t == typ:
            return dtype
    raise ValueError(f"no numpy dtype for storage type {typ}")


@irdl_attr_definition
class QuantType(ParametrizedAttribute, TypeAttribute):
    """Uniform quantized element type: real = scale * (stored - zero_point).

    `storage` is ui8, si8 or si32; `axis` is -1 for one scale and zero point for the whole tensor,
    else the axis along which `scales` / `zero_points` vary (per-channel weights; a single zero
    point then applies to every channel). Printed as
    `!graph.quant<ui8, array<f32: 0.02>, array<i64: 128>, -1 : i64>`.
    """

    name = "graph.quant"
    storage: IntegerType = param_def(IntegerType)
    scales: DenseArrayBase = param_def(DenseArrayBase)
    zero_points: DenseArrayBase = param_def(DenseArrayBase)
    axis: IntegerAttr[IntegerType] = param_def(IntegerAttr[IntegerType])

    @staticmethod
    def make(dtype: np.dtype | type, scales: Sequence[float], zero_points: Sequence[int], axis: int = -1) -> QuantType:
        dt = np.dtype(dtype)
        if dt not in STORAGE_TYPES:
            raise ValueError(f"quantized storage must be uint8, int8 or int32, not {dt}")
        scales = [float(np.float32(s)) for s in scales]
        zero_points = [int(z) for z in zero_points]
        if len(set(zero_points)) == 1:
            zero_points = zero_points[:1]
        if len(zero_points) not in (1, len(scales)) or not scales or (axis < 0 and len(scales) != 1):
            raise ValueError("one scale and zero point per tensor, or one per channel along `axis`")
        return QuantType(
            STORAGE_TYPES[dt], DenseArrayBase.from_list(f32, scales), DenseArrayBase.from_list(i64, zero_points),
            IntegerAttr(axis, i64),
        )  # fmt: skip

    def verify(self) -> None:
        from xdsl.utils.exceptions import VerifyException

        dt = storage_dtype(self.storage)
        info = np.iinfo(dt)
        if len(self.zero_points.get_values()) not in (1, len(self.scales.get_values())):
            raise VerifyException("!graph.quant needs one zero point, or one per scale")
        if any(not (s > 0 and np.isfinite(s)) for s in self.scales.get_values()):
            raise VerifyException("!graph.quant scales must be positive and finite")
        if any(not info.min <= z <= info.max for z in self.zero_points.get_values()):
            raise VerifyException(f"!graph.quant zero points must fit {dt}")

    @property
    def dtype(self) -> np.dtype:
        return storage_dtype(self.storage)

    @property
    def per_tensor(self) -> bool:
        return self.axis.value.data < 0

    @property
    def scale(self) -> float:
        """The scale of a per-tensor type."""
        assert self.per_tensor, "per-channel type has no single scale"
        return float(self.scales.get_values()[0])

    @property
    def zero_point(self) -> int:
        """The zero point of a per-tensor type."""
        assert self.per_tensor, "per-channel type has no single zero point"
        return int(self.zero_points.get_values()[0])

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scales.get_values(), dtype=np.float32)

    def zero_point_array(self) -> np.ndarray:
        """One zero point per scale."""
        zps = np.asarray(self.zero_points.get_values(), dtype=np.int64)
        return np.broadcast_to(zps, (len(self.scales.get_values()),)).copy()
