"""The `graph` dialect: ONNX-like tensor operations with static shapes.

Every value is a ranked, statically shaped `tensor<...xf32>`, or a quantized tensor whose element type
`!graph.quant<storage, scales, zero_points, axis>` says how its integers map to reals. Weights are not stored in the IR: a
`graph.weight` op names a handle into the compiler's `WeightStore`. Op names follow the ONNX operator
they model (`graph.conv2d` ↔ ONNX Conv, https://onnx.ai/onnx/operators/); fused ops carry their
epilogue (bias and residual as optional operands, the activation as an `#graph.epilogue` property).
Ops whose names do not exist in ONNX (`graph.weight`, `graph.reshape`) are Inferon's own.
Quantized compute (`graph.qconv2d`, `graph.qmatmul`) follows ONNX QLinearConv / QLinearMatMul with
the quantization parameters in the operand and result types; `fold-qdq` builds them from
DequantizeLinear -> op -> QuantizeLinear chains.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import (
    BoolAttr,
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from inferon.ir.attrs import (
    NO_EPILOGUE,
    ActivationKind,
    ActivationKindAttr,
    CoordinateModeAttr,
    ElementwiseKind,
    ElementwiseKindAttr,
    EpilogueAttr,
    NearestModeAttr,
    PadModeAttr,
    QuantType,
    ReduceKind,
    ReduceKindAttr,
    ResizeModeAttr,
    SparseAttr,
    SparseFormatAttr,
)
from inferon.ir.resize import ResizeParams

F32Attr = FloatAttr[Float32Type]


def shape_of(value: SSAValue) -> tuple[int, ...]:
    """Static shape of a tensor (or memref) value."""
    typ = value.type
    assert isinstance(typ, TensorType), f"expected a tensor, got {typ}"
    return tuple(typ.get_shape())


def tensor_type(shape: tuple[int, ...] | list[int], element: Attribute | None = None) -> TensorType:
    """A tensor type of the given static shape (f32 unless `element` says otherwise)."""
    from xdsl.dialects.builtin import f32

    return TensorType(element or f32, list(shape))


def quant_of(value: SSAValue) -> QuantType | None:
    """The `!graph.quant` element type of a tensor value, or None for a float tensor."""
    typ = value.type
    element = typ.element_type if isinstance(typ, TensorType) else None
    return element if isinstance(element, QuantType) else None


def is_float(value: SSAValue) -> bool:
    typ = value.type
    return isinstance(typ, TensorType) and isinstance(typ.element_type, Float32Type)


def is_index(value: SSAValue) -> bool:
    """Whether a tensor value holds int64 indices (`tensor<...xi64>`: ArgMax / ArgMin results)."""
    typ = value.type
    return isinstance(typ, TensorType) and typ.element_type == i64


def element_dtype(value: SSAValue) -> np.dtype:
    """The numpy dtype of a tensor's elements: float32, a quantized tensor's storage, or int64."""
    q = quant_of(value)
    return q.dtype if q is not None else np.dtype(np.int64) if is_index(value) else np.dtype(np.float32)


def i64_array(values: list[int] | tuple[int, ...]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def ints(attr: DenseArrayBase) -> tuple[int, ...]:
    """The values of an i64 dense array property."""
    return tuple(int(v) for v in attr.get_values())


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A constant tensor held in the weight store under `handle`."""

    name = "graph.weight"
    handle = prop_def(StringAttr)
    sparse = opt_prop_def(SparseAttr)  # storage chosen by `sparsify` (conv/matmul weights)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, handle: str, shape: tuple[int, ...], element: Attribute | None = None) -> None:
        super().__init__(properties={"handle": StringAttr(handle)}, result_types=[tensor_type(shape, element)])


def verify_conv_shapes(name: str, x: tuple[int, ...], w: tuple[int, ...], y: tuple[int, ...], g: int) -> None:
    """Rank and channel checks shared by graph.conv2d and graph.qconv2d."""
    if len(x) != 4 or len(w) != 4 or len(y) != 4:
        raise VerifyException(f"{name} expects rank-4 input, weight and output")
    if x[1] != w[1] * g or w[0] % g != 0 or y[1] != w[0]:
        raise VerifyException(f"{name} channel mismatch: input {x}, weight {w}, group {g}")


class FusableOp(IRDLOperation):
    """Base of ops that carry a fused epilogue: optional bias, residual and activation.

    Subclasses declare `bias`, `residual` and `epilogue` after their main operands.
    """

    def has_epilogue(self) -> bool:
        return len(self.operands) > 2 or self.properties.get("epilogue", NO_EPILOGUE) != NO_EPILOGUE

    def fused_parts(self) -> tuple[SSAValue | None, SSAValue | None, EpilogueAttr]:
        """(bias, residual, epilogue) of this op."""
        epilogue = self.properties.get("epilogue", NO_EPILOGUE)
        assert isinstance(epilogue, EpilogueAttr)
        return self.bias, self.residual, epilogue

    def rebuilt(
        self,
        *,
        main: tuple[SSAValue, SSAValue] | None = None,
        bias: SSAValue | None,
        residual: SSAValue | None,
        epilogue: EpilogueAttr,
    ) -> FusableOp:
        """A copy of this op with other main operands and/or another epilogue."""
        a, b = main or (self.operands[0], self.operands[1])
        props = {k: v for k, v in self.properties.items() if k != "operandSegmentSizes"}
        props["epilogue"] = epilogue
        segments = DenseArrayBase.from_list(i32, [1, 1, int(bias is not None), int(residual is not None)])
        props["operandSegmentSizes"] = segments
        operands = [a, b, *([bias] if bias else []), *([residual] if residual else [])]
        return type(self).create(operands=operands, properties=props, result_types=[self.results[0].type])


@irdl_op_definition
class Conv2dOp(FusableOp):
    """ONNX Conv on NCHW (https://onnx.ai/onnx/operators/onnx__Conv.html).

    pads are [top, left, bottom, right]; bias is [C_out]; residual has the output's shape.
    """

    name = "graph.conv2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    residual = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    group = prop_def(IntegerAttr[IntegerType])
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        weight: SSAValue | Operation,
        bias: SSAValue | Operation | None,
        *,
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        dilations: tuple[int, int],
        group: int,
        shape: tuple[int, ...],
        residual: SSAValue | Operation | None = None,
        epilogue: EpilogueAttr = NO_EPILOGUE,
    ) -> None:
        super().__init__(
            operands=[input, weight, [bias] if bias else [], [residual] if residual else []],
            properties={
                "strides": i64_array(strides),
                "pads": i64_array(pads),
                "dilations": i64_array(dilations),
                "group": IntegerAttr(group, i64),
                "epilogue": epilogue,
            },
            result_types=[tensor_type(shape)],
        )

    def verify_(self) -> None:
        x, w, y = shape_of(self.input), shape_of(self.weight), shape_of(self.output)
        verify_conv_shapes(self.name, x, w, y, self.group.value.data)
        if len(ints(self.pads)) != 4:
            raise VerifyException("graph.conv2d pads must be [top, left, bottom, right]")
        if self.bias is not None and shape_of(self.bias) != (w[0],):
            raise VerifyException("graph.conv2d bias must have one value per output channel")
        if self.residual is not None and shape_of(self.residual) != y:
            raise VerifyException("graph.conv2d residual must have the output's shape")


@irdl_op_definition
class ConvTranspose2dOp(FusableOp):
    """ONNX ConvTranspose on NCHW (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html).

    weight is [C_in, C_out / group, kh, kw]; pads are [top, left, bottom, right] and
    output_padding [h, w] (auto_pad and output_shape are resolved into them at import): each output
    extent is stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end.
    bias is [C_out]; residual has the output's shape.
    """

    name = "graph.conv_transpose2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    residual = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    output_padding = prop_def(DenseArrayBase)
    group = prop_def(IntegerAttr[IntegerType])
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        weight: SSAValue | Operation,
        bias: SSAValue | Operation | None,
        *,
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        dilations: tuple[int, int],
        output_padding: tuple[int, int],
        group: int,
        shape: tuple[int, ...],
    ) -> None:
        super().__init__(
            operands=[input, weight, [bias] if bias else [], []],
            properties={
                "strides": i64_array(strides), "pads": i64_array(pads), "dilations": i64_array(dilations),
                "output_padding": i64_array(output_padding), "group": IntegerAttr(group, i64),
                "epilogue": NO_EPILOGUE,
            },
            result_types=[tensor_type(shape)],
        )  # fmt: skip

    def verify_(self) -> None:
        x, w, y = shape_of(self.input), shape_of(self.weight), shape_of(self.output)
        g = self.group.value.data
        if len(x) != 4 or len(w) != 4 or len(y) != 4:
            raise VerifyException(f"{self.name} expects rank-4 input, weight and output")
        if g < 1 or x[1] != w[0] or w[0] % g or y[:2] != (x[0], w[1] * g):
            raise VerifyException(f"{self.name} channel mismatch: input {x}, weight {w}, group {g}, output {y}")
        s, p, d, a = (ints(v) for v in (self.strides, self.pads, self.dilations, self.output_padding))
        if len(s) != 2 or len(p) != 4 or len(d) != 2 or len(a) != 2:
            raise VerifyException(f"{self.name}: strides, dilations and output_padding have 2 entries, pads 4")
        if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(a) < 0:
            raise VerifyException(f"{self.name}: strides and dilations must be >= 1, pads and output_padding >= 0")
        for axis in (0, 1):
            extent = conv_transpose_extent(x[2 + axis], w[2 + axis], s[axis], d[axis], p[axis], p[2 + axis], a[axis])
            if y[2 + axis] != extent:
                raise VerifyException(f"{self.name}: output {y} does not match the geometry of input {x} (axis {axis}: {extent})")
        if self.bias is not None and shape_of(self.bias) != (y[1],):
            raise VerifyException(f"{self.name} bias must have one value per output channel")
        if self.residual is not None and shape_of(self.residual) != y:
            raise VerifyException(f"{self.name} residual must have the output's shape")


def conv_transpose_extent(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, output_padding: int) -> int:
    """Output extent of a transposed convolution along one axis (the ONNX formula)."""
    return s * (size - 1) + output_padding + (k - 1) * d + 1 - pad_begin - pad_end


@irdl_op_definition
class ChannelAffineOp(FusableOp):
    """Per-channel affine map of an [N, C, ...] tensor: y = act(x * scale[c] + bias[c] + residual).

    What a BatchNormalization that did not fold into a Conv becomes (`decompose-batchnorm`); the
    epilogue fuses like a convolution's (`fuse-epilogue`), so BatchNorm + ReLU is one pass.
    """

    name = "graph.channel_affine"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    residual = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, scale: SSAValue | Operation, bias: SSAValue | Operation | None,
                 shape: tuple[int, ...]) -> None:  # fmt: skip
        super().__init__(operands=[input, scale, [bias] if bias else [], []], properties={"epilogue": NO_EPILOGUE},
                         result_types=[tensor_type(shape)])  # fmt: skip

    def verify_(self) -> None:
        x, y = shape_of(self.input), shape_of(self.output)
        if len(x) < 2 or x != y:
            raise VerifyException(f"graph.channel_affine: input {list(x)} and output {list(y)} must be equal, rank >= 2")
        for name, v in (("scale", self.scale), ("bias", self.bias)):
            if v is not None and shape_of(v) != (x[1],):
                raise VerifyException(f"graph.channel_affine {name} must have one value per channel ({x[1]})")
        if self.residual is not None and shape_of(self.residual) != y:
            raise VerifyException("graph.channel_affine residual must have the output's shape")


@irdl_op_definition
class MatMulOp(FusableOp):
    """numpy-style batched matmul (ONNX MatMul, and Gemm after import).

    bias, when fused, is [N] (one value per output column); residual has the output's shape.
    """

    name = "graph.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    residual = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        lhs: SSAValue | Operation,
        rhs: SSAValue | Operation,
        shape: tuple[int, ...],
        bias: SSAValue | Operation | None = None,
        residual: SSAValue | Operation | None = None,
        epilogue: EpilogueAttr = NO_EPILOGUE,
    ) -> None:
        super().__init__(
            operands=[lhs, rhs, [bias] if bias else [], [residual] if residual else []],
            properties={"epilogue": epilogue},
            result_types=[tensor_type(shape)],
        )

    def verify_(self) -> None:
        a, b, y = shape_of(self.lhs), shape_of(self.rhs), shape_of(self.output)
        if len(a) < 2 or len(b) < 2:
            raise VerifyException("graph.matmul operands must have rank >= 2 (import promotes vectors)")
        if a[-1] != b[-2]:
            raise VerifyException(f"graph.matmul inner dimensions differ: {a} x {b}")
        if self.bias is not None and shape_of(self.bias) != (y[-1],):
            raise VerifyException("graph.matmul bias must have one value per output column")


@irdl_op_definition
class BatchNormOp(IRDLOperation):
    """ONNX BatchNormalization in inference mode on [N, C, ...] tensors."""

    name = "graph.batch_norm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    mean = operand_def(TensorType)
    var = operand_def(TensorType)
    epsilon = prop_def(F32Attr)
    output = result_def(TensorType)
    traits = traits_def(Pure())


class BinaryOp(IRDLOperation):
    """Element-wise binary op with numpy (ONNX multidirectional) broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    KIND: ClassVar[ElementwiseKind]

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation, shape: tuple[int, ...]):
        super().__init__(operands=[lhs, rhs], result_types=[tensor_type(shape)])


@irdl_op_definition
class AddOp(BinaryOp):
    name = "graph.add"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.ADD

@irdl_op_definition
class SubOp(BinaryOp):
    name = "graph.sub"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SUB

@irdl_op_definition
class MulOp(BinaryOp):
    name = "graph.mul"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.MUL

@irdl_op_definition
class DivOp(BinaryOp):
    name = "graph.div"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.DIV

@irdl_op_definition
class MaxOp(BinaryOp):
    name = "graph.max"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.MAX

@irdl_op_definition
class MinOp(BinaryOp):
    name = "graph.min"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.MIN

@irdl_op_definition
class PowOp(BinaryOp):
    name = "graph.pow"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.POW

@irdl_op_definition
class PReluOp(BinaryOp):
    """lhs if lhs >= 0 else lhs * rhs: ONNX PRelu with a slope that is not one constant."""

    name = "graph.prelu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.PRELU

class UnaryOp(IRDLOperation):
    """Element-wise unary op; KIND names its function, alpha/beta its parameters."""

    input = operand_def(TensorType)
    alpha = prop_def(F32Attr, default_value=FloatAttr(0.0, 32))
    beta = prop_def(F32Attr, default_value=FloatAttr(0.0, 32))
    output = result_def(TensorType)
    traits = traits_def(Pure())
    KIND: ClassVar[ElementwiseKind]

    def __init__(self, input: SSAValue | Operation, alpha: float = 0.0, beta: float = 0.0) -> None:
        super().__init__(
            operands=[input],
            properties={"alpha": FloatAttr(alpha, 32), "beta": FloatAttr(beta, 32)},
            result_types=[SSAValue.get(input).type],
        )


@irdl_op_definition
class ReluOp(UnaryOp):
    """max(x, 0)"""

    name = "graph.relu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.RELU


@irdl_op_definition
class LeakyReluOp(UnaryOp):
    """x if x >= 0 else alpha * x"""

    name = "graph.leaky_relu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.LEAKY_RELU


@irdl_op_definition
class ClipOp(UnaryOp):
    """min(max(x, alpha), beta)"""

    name = "graph.clip"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.CLIP


@irdl_op_definition
class SigmoidOp(UnaryOp):
    """1 / (1 + exp(-x))"""

    name = "graph.sigmoid"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SIGMOID


@irdl_op_definition
class TanhOp(UnaryOp):
    """tanh(x)"""

    name = "graph.tanh"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.TANH


@irdl_op_definition
class ExpOp(UnaryOp):
    """exp(x)"""

    name = "graph.exp"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.EXP


@irdl_op_definition
class LogOp(UnaryOp):
    """log(x)"""

    name = "graph.log"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.LOG


@irdl_op_definition
class AbsOp(UnaryOp):
    """|x|"""

    name = "graph.abs"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.ABS


@irdl_op_definition
class NegOp(UnaryOp):
    """-x"""

    name = "graph.neg"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.NEG


@irdl_op_definition
class SqrtOp(UnaryOp):
    """sqrt(x)"""

    name = "graph.sqrt"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SQRT


@irdl_op_definition
class ReciprocalOp(UnaryOp):
    """1 / x"""

    name = "graph.reciprocal"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.RECIPROCAL


@irdl_op_definition
class FloorOp(UnaryOp):
    """floor(x)"""

    name = "graph.floor"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.FLOOR


@irdl_op_definition
class CeilOp(UnaryOp):
    """ceil(x)"""

    name = "graph.ceil"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.CEIL


@irdl_op_definition
class EluOp(UnaryOp):
    """x if x > 0 else alpha * (exp(x) - 1)"""

    name = "graph.elu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.ELU


@irdl_op_definition
class HardSigmoidOp(UnaryOp):
    """max(0, min(1, alpha * x + beta))"""

    name = "graph.hard_sigmoid"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.HARD_SIGMOID


@irdl_op_definition
class SoftplusOp(UnaryOp):
    """log(1 + exp(x))"""

    name = "graph.softplus"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SOFTPLUS


@irdl_op_definition
class SwishOp(UnaryOp):
    """x * sigmoid(alpha * x): ONNX Swish, and Sigmoid + Mul (SiLU) after fuse-epilogue"""

    name = "graph.swish"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SWISH


@irdl_op_definition
class HardSwishOp(UnaryOp):
    """x * max(0, min(1, x / 6 + 1 / 2))"""

    name = "graph.hard_swish"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.HARD_SWISH


@irdl_op_definition
class SeluOp(UnaryOp):
    """beta * (x if x > 0 else alpha * (exp(x) - 1)): alpha, gamma of ONNX Selu"""

    name = "graph.selu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SELU


@irdl_op_definition
class CeluOp(UnaryOp):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))"""

    name = "graph.celu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.CELU


@irdl_op_definition
class ThresholdedReluOp(UnaryOp):
    """x if x > alpha else 0"""

    name = "graph.thresholded_relu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.THRESHOLDED_RELU


@irdl_op_definition
class SoftsignOp(UnaryOp):
    """x / (1 + |x|)"""

    name = "graph.softsign"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SOFTSIGN


@irdl_op_definition
class MishOp(UnaryOp):
    """x * tanh(log(1 + exp(x)))"""

    name = "graph.mish"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.MISH


@irdl_op_definition
class ErfOp(UnaryOp):
    """erf(x)"""

    name = "graph.erf"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.ERF


@irdl_op_definition
class GeluOp(UnaryOp):
    """x / 2 * (1 + erf(x / sqrt(2)))"""

    name = "graph.gelu"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.GELU


@irdl_op_definition
class GeluTanhOp(UnaryOp):
    """x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))"""

    name = "graph.gelu_tanh"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.GELU_TANH


@irdl_op_definition
class SignOp(UnaryOp):
    """1 if x > 0, -1 if x < 0, 0 if x is +-0, NaN if NaN"""

    name = "graph.sign"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SIGN


@irdl_op_definition
class RoundOp(UnaryOp):
    """x rounded to the nearest integer, halves to even"""

    name = "graph.round"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.ROUND


@irdl_op_definition
class SinOp(UnaryOp):
    """sin(x)"""

    name = "graph.sin"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.SIN


@irdl_op_definition
class CosOp(UnaryOp):
    """cos(x)"""

    name = "graph.cos"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.COS


# Comparisons and logical ops (ONNX bool tensors are float32 tensors of 1.0 / 0.0 here; nonzero is true).
@irdl_op_definition
class GreaterOp(BinaryOp):
    name = "graph.greater"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.GREATER

@irdl_op_definition
class LessOp(BinaryOp):
    name = "graph.less"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.LESS

@irdl_op_definition
class GreaterEqualOp(BinaryOp):
    name = "graph.greater_equal"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.GREATER_EQUAL

@irdl_op_definition
class LessEqualOp(BinaryOp):
    name = "graph.less_equal"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.LESS_EQUAL

@irdl_op_definition
class EqualOp(BinaryOp):
    name = "graph.equal"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.EQUAL

@irdl_op_definition
class AndOp(BinaryOp):
    name = "graph.and"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.AND

@irdl_op_definition
class OrOp(BinaryOp):
    name = "graph.or"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.OR

@irdl_op_definition
class XorOp(BinaryOp):
    name = "graph.xor"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.XOR


@irdl_op_definition
class NotOp(UnaryOp):
    """1 if x == 0 else 0 (ONNX Not on a bool tensor as 1.0 / 0.0)"""

    name = "graph.not"
    KIND: ClassVar[ElementwiseKind] = ElementwiseKind.NOT


@irdl_op_definition
class WhereOp(IRDLOperation):
    """ONNX Where: lhs where cond is nonzero, else rhs, with numpy broadcasting of all three (cond: a
    bool tensor as 1.0 / 0.0)."""

    name = "graph.where"
    cond = operand_def(TensorType)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, cond: SSAValue, lhs: SSAValue, rhs: SSAValue, shape: tuple[int, ...]):
        super().__init__(operands=[cond, lhs, rhs], result_types=[tensor_type(shape)])

    def verify_(self) -> None:
        try:
            shape = np.broadcast_shapes(shape_of(self.cond), shape_of(self.lhs), shape_of(self.rhs))
        except ValueError:
            raise VerifyException(f"graph.where: operand shapes {[shape_of(v) for v in self.operands]} do not broadcast") from None
        if tuple(shape) != shape_of(self.output):
            raise VerifyException(f"graph.where: result shape {shape_of(self.output)} is not the broadcast {tuple(shape)}")


COMPARISON_OPS: tuple[type[BinaryOp], ...] = (
    GreaterOp, LessOp, GreaterEqualOp, LessEqualOp, EqualOp, AndOp, OrOp, XorOp,
)  # fmt: skip
BINARY_OPS: tuple[type[BinaryOp], ...] = (AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp, PReluOp, *COMPARISON_OPS)
UNARY_OPS: tuple[type[UnaryOp], ...] = (
    ReluOp, LeakyReluOp, ClipOp, SigmoidOp, TanhOp, ExpOp, LogOp, AbsOp, NegOp, SqrtOp,
    ReciprocalOp, FloorOp, CeilOp, EluOp, HardSigmoidOp, SoftplusOp, HardSwishOp, SeluOp, CeluOp,
    ThresholdedReluOp, SoftsignOp, MishOp, SwishOp, ErfOp, GeluOp, GeluTanhOp, SignOp, RoundOp, SinOp, CosOp, NotOp,
)  # fmt: skip


class Pool2dOp(IRDLOperation):
    """Base of 2-D window pooling on NCHW; pads are [top, left, bottom, right].

    On quantized tensors, max pooling keeps the input's type; average pooling computes on the
    dequantized values and quantizes the mean with the result's type (QLinearAveragePool).
    """

    input = operand_def(TensorType)
    kernel_shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class MaxPoolOp(Pool2dOp):
    """ONNX MaxPool (https://onnx.ai/onnx/operators/onnx__MaxPool.html); ceil_mode is in the shape."""

    name = "graph.max_pool"


@irdl_op_definition
class AvgPoolOp(Pool2dOp):
    """ONNX AveragePool (https://onnx.ai/onnx/operators/onnx__AveragePool.html)."""

    name = "graph.avg_pool"
    count_include_pad = prop_def(BoolAttr)


@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation):
    """ONNX GlobalAveragePool: mean over all spatial positions."""

    name = "graph.global_avg_pool"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class GlobalMaxPoolOp(IRDLOperation):
    """ONNX GlobalMaxPool: max over all spatial positions."""

    name = "graph.global_max_pool"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """ONNX Concat along a non-negative axis."""

    name = "graph.concat"
    inputs = var_operand_def(TensorType)
    axis = prop_def(IntegerAttr[IntegerType])
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        axis = self.axis.value.data
        out = shape_of(self.output)
        if sum(shape_of(v)[axis] for v in self.inputs) != out[axis]:
            raise VerifyException("graph.concat: input extents along axis do not add up to the output")


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Reinterpret the row-major data under the result's static shape (Reshape, Flatten, Squeeze...);
    on a quantized tensor the result may also relabel the stored integers with another scale / zero
    point of the same storage type (a DequantizeLinear or MatMulInteger reading them its own way)."""

    name = "graph.reshape"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        from math import prod

        if prod(shape_of(self.input)) != prod(shape_of(self.output)):
            raise VerifyException("graph.reshape must keep the number of elements")
        qi, qo = quant_of(self.input), quant_of(self.output)
        if (qi is None) != (qo is None) or (qi is not None and qo is not None and qi.dtype != qo.dtype):
            raise VerifyException("graph.reshape must keep the element type (a quantized tensor: its storage type)")


@irdl_op_definition
class SliceOp(IRDLOperation):
    """A strided window of the input (ONNX Slice, Split, Gather with constant indices, Expand, Tile):
    along axis i, output[.., k, ..] = input[.., starts[i] + k * steps[i], ..] for k <
    output.shape[i]; steps may be negative, or 0 to repeat one element (a broadcast); every index
    read is inside the input."""

    name = "graph.slice"
    input = operand_def(TensorType)
    starts = prop_def(DenseArrayBase)
    steps = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, y = shape_of(self.input), shape_of(self.output)
        starts, steps = ints(self.starts), ints(self.steps)
        if not len(x) == len(y) == len(starts) == len(steps):
            raise VerifyException("graph.slice: input, output, starts and steps must have the same rank")
        for axis, (d, n, start, step) in enumerate(zip(x, y, starts, steps)):
            last = start + (n - 1) * step
            if n < 1 or not (0 <= start < d and 0 <= last < d):
                raise VerifyException(
                    f"graph.slice: axis {axis} reads {n} elements from {start} by {step}, outside [0, {d})"
                )
        if quant_of(self.input) != quant_of(self.output):
            raise VerifyException("graph.slice must keep the element type")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """ONNX Transpose with an explicit permutation."""

    name = "graph.transpose"
    input = operand_def(TensorType)
    perm = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class SoftmaxOp(IRDLOperation):
    """Softmax (or LogSoftmax when `log`) over one axis (ONNX opset-13 semantics)."""

    name = "graph.softmax"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr[IntegerType])
    log = prop_def(BoolAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class LRNOp(IRDLOperation):
    """ONNX LRN across channels (https://onnx.ai/onnx/operators/onnx__LRN.html)."""

    name = "graph.lrn"
    input = operand_def(TensorType)
    size = prop_def(IntegerAttr[IntegerType])
    alpha = prop_def(F32Attr)
    beta = prop_def(F32Attr)
    bias = prop_def(F32Attr)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """ONNX Reduce* (`kind`) over `axes`, a run of consecutive axes (the importer transposes others
    together); the result keeps the reduced axes as 1s (keepdims=0 is a reshape after it)."""

    name = "graph.reduce"
    input = operand_def(TensorType)
    kind = prop_def(ReduceKindAttr)
    axes = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, y, axes = shape_of(self.input), shape_of(self.output), ints(self.axes)
        if not axes or list(axes) != list(range(axes[0], axes[0] + len(axes))) or axes[0] < 0 or axes[-1] >= len(x):
            raise VerifyException(f"graph.reduce: axes {list(axes)} must be consecutive axes of the rank-{len(x)} input")
        if y != tuple(1 if i in axes else d for i, d in enumerate(x)):
            raise VerifyException(f"graph.reduce: result shape {list(y)} does not keep input {list(x)} over axes {list(axes)}")


def integers_ordered(q: QuantType, axis: int) -> bool:
    """Whether the stored 8-bit integers of a `q` tensor order like its real values along `axis`
    (one positive scale there), so ArgMax / ArgMin can compare the integers."""
    return q.dtype.itemsize == 1 and (q.per_tensor or q.axis.value.data != axis)


@irdl_op_definition
class ArgReduceOp(IRDLOperation):
    """ONNX ArgMax / ArgMin (`kind` max or min) over `axis`: the index of the first extreme value, or
    of the last with `select_last`. Comparisons are strict as in ONNX Runtime, so a NaN is never
    chosen unless it is the first element (then nothing compares against it and index 0 stays).
    The input is f32 or a quantized tensor whose scale along `axis` is one positive value (order of
    the integers = order of the reals); the result is `tensor<...xi64>` (ONNX's int64), or f32 when
    a Cast to float reads it, with `axis` kept as 1 or (keepdims=0) dropped."""

    name = "graph.arg_reduce"
    input = operand_def(TensorType)
    kind = prop_def(ReduceKindAttr)
    axis = prop_def(IntegerAttr[IntegerType])
    select_last = prop_def(BoolAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue, kind: ReduceKind, axis: int, select_last: bool, keepdims: bool,
                 element: Attribute = i64) -> None:  # fmt: skip
        x = shape_of(input)
        y = [1 if i == axis else d for i, d in enumerate(x)] if keepdims else [d for i, d in enumerate(x) if i != axis]
        props = {"kind": ReduceKindAttr(kind), "axis": IntegerAttr(axis, i64), "select_last": BoolAttr.from_bool(select_last)}
        super().__init__(operands=[input], properties=props, result_types=[tensor_type(y, element)])

    def verify_(self) -> None:
        x, y, axis = shape_of(self.input), shape_of(self.output), self.axis.value.data
        if self.kind.data not in (ReduceKind.MAX, ReduceKind.MIN):
            raise VerifyException(f"graph.arg_reduce: kind must be max or min, got {self.kind.data}")
        if not 0 <= axis < len(x):
            raise VerifyException(f"graph.arg_reduce: axis {axis} is out of range for the rank-{len(x)} input")
        kept = tuple(1 if i == axis else d for i, d in enumerate(x))
        if y != kept and y != kept[:axis] + kept[axis + 1 :]:
            raise VerifyException(f"graph.arg_reduce: result shape {list(y)} is not input {list(x)} reduced over axis {axis}")
        if not (is_index(self.output) or is_float(self.output)):
            raise VerifyException("graph.arg_reduce: the result must be an i64 (or f32) tensor")
        q = quant_of(self.input)
        if q is not None and not integers_ordered(q, axis):
            raise VerifyException("graph.arg_reduce: a quantized input must be ui8 / si8 with one scale along the axis")
        if q is None and not is_float(self.input):
            raise VerifyException("graph.arg_reduce: the input must be f32 or a quantized ui8 / si8 tensor")


@irdl_op_definition
class LayerNormOp(IRDLOperation):
    """ONNX LayerNormalization: each slice x[i..., :] over the axes from `axis` on is normalised
    ((x - mean) / sqrt(var + epsilon)) and scaled / shifted element-wise by `scale` and `bias`, both of
    the normalised shape x.shape[axis:]."""

    name = "graph.layer_norm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    axis = prop_def(IntegerAttr[IntegerType])
    epsilon = prop_def(F32Attr)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, axis = shape_of(self.input), self.axis.value.data
        if not 0 <= axis < len(x) or shape_of(self.output) != x:
            raise VerifyException(f"graph.layer_norm: axis {axis} / result shape do not fit input {list(x)}")
        for v in (self.scale, self.bias):
            if shape_of(v) != x[axis:]:
                raise VerifyException(f"graph.layer_norm: scale and bias must have the normalised shape {list(x[axis:])}")


@irdl_op_definition
class GroupNormOp(IRDLOperation):
    """ONNX GroupNormalization (InstanceNormalization when `groups` == C) of an [N, C, ...] tensor:
    the channels of each group, with all their spatial positions, are normalised together, then
    scaled and shifted per channel (`scale`, `bias`: [C])."""

    name = "graph.group_norm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    groups = prop_def(IntegerAttr[IntegerType])
    epsilon = prop_def(F32Attr)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, g = shape_of(self.input), self.groups.value.data
        if len(x) < 2 or g < 1 or x[1] % g or shape_of(self.output) != x:
            raise VerifyException(f"graph.group_norm: {g} groups do not divide the channels of {list(x)}")
        for v in (self.scale, self.bias):
            if shape_of(v) != (x[1],):
                raise VerifyException(f"graph.group_norm: scale and bias must be per channel [{x[1]}]")


@irdl_op_definition
class PadOp(IRDLOperation):
    """ONNX Pad of any axes: pads = [begin..., end...] per axis. Negative amounts crop first; the
    cropped window is then padded by the positive ones, its border filled by `mode` (`value` in
    constant mode; reflect / edge / wrap read the window). Quantized tensors pad their stored
    integers (`value` is one). `fold-pad` merges a zero constant Pad into the Conv reading it."""

    name = "graph.pad"
    input = operand_def(TensorType)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(PadModeAttr)
    value = prop_def(F32Attr)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def window(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(starts, extents) of the cropped window of the input, then the non-negative begin / end pads."""
        x, p = shape_of(self.input), ints(self.pads)
        r = len(x)
        starts = [max(0, -b) for b in p[:r]]
        extents = [d + min(0, b) + min(0, e) for d, b, e in zip(x, p[:r], p[r:])]
        return starts, extents, [max(0, b) for b in p[:r]], [max(0, e) for e in p[r:]]

    def verify_(self) -> None:
        x, y, p = shape_of(self.input), shape_of(self.output), ints(self.pads)
        if not x or len(p) != 2 * len(x):
            raise VerifyException(f"graph.pad needs [begin..., end...] pads for each axis of {list(x)}, got {p}")
        _, extents, begin, end = self.window()
        if min(extents) < 1:
            raise VerifyException(f"graph.pad: pads {p} crop all of an axis of {list(x)}")
        if y != tuple(n + b + e for n, b, e in zip(extents, begin, end)):
            raise VerifyException(f"graph.pad output {list(y)} does not match input {list(x)} and pads {p}")
        if quant_of(self.input) != quant_of(self.output):
            raise VerifyException("graph.pad must keep the element type")


@irdl_op_definition
class ResizeOp(IRDLOperation):
    """ONNX Resize / Upsample of the two spatial axes of an NCHW tensor to the result's H x W.

    `scales` = [sh, sw] (f64) are the factors the coordinate transformation divides by (the given
    scales, or output / input length for sizes); the taps follow `inferon.ir.resize.axis_taps`.
    tf_crop_and_resize is not represented (rejected at import)."""

    name = "graph.resize"
    input = operand_def(TensorType)
    mode = prop_def(ResizeModeAttr)
    coordinate = prop_def(CoordinateModeAttr)
    nearest = prop_def(NearestModeAttr)
    scales = prop_def(DenseArrayBase)
    cubic_a = prop_def(F32Attr)
    exclude_outside = prop_def(BoolAttr)
    antialias = prop_def(BoolAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, y = shape_of(self.input), shape_of(self.output)
        scales = self.scales.get_values()
        if len(x) != 4 or len(y) != 4 or x[:2] != y[:2] or min(y) < 1:
            raise VerifyException(f"graph.resize maps [N, C, H, W] to [N, C, Ho, Wo], got {x} -> {y}")
        if len(scales) != 2 or min(scales) <= 0:
            raise VerifyException(f"graph.resize needs two positive scales, got {list(scales)}")

    def params(self) -> ResizeParams:
        return ResizeParams(
            self.mode.data, self.coordinate.data, self.nearest.data, float(self.cubic_a.value.data),
            bool(self.exclude_outside.value.data), bool(self.antialias.value.data),
        )  # fmt: skip

    def scale_pair(self) -> tuple[float, float]:
        sh, sw = self.scales.get_values()
        return float(sh), float(sw)


@irdl_op_definition
class IdentityOp(IRDLOperation):
    """ONNX Identity, and Dropout in inference mode; removed by `remove-identities`."""

    name = "graph.identity"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """ONNX QuantizeLinear, per tensor: y = saturate(round_half_even(x / scale) + zero_point).

    Scale and zero point are those of the result's `!graph.quant` type (ui8 or si8 storage).
    """

    name = "graph.quantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, quant: QuantType) -> None:
        x = SSAValue.get(input)
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x), quant)])

    def verify_(self) -> None:
        q = quant_of(self.output)
        if not is_float(self.input) or q is None or not q.per_tensor or q.dtype.itemsize != 1:
            raise VerifyException("graph.quantize maps an f32 tensor to a per-tensor ui8/si8 quantized tensor")
        if shape_of(self.input) != shape_of(self.output):
            raise VerifyException("graph.quantize keeps the shape")


@irdl_op_definition
class DynamicQuantizeOp(IRDLOperation):
    """ONNX DynamicQuantizeLinear (uint8): scale and zero point computed from the input's range at
    run time. Results: `values`, the stored integers minus the zero point as exact f32 integers
    (what MatMulInteger / ConvInteger multiply), and the scale and zero point as f32 scalars."""

    name = "graph.dynamic_quantize"
    input = operand_def(TensorType)
    values = result_def(TensorType)
    scale = result_def(TensorType)
    zero_point = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation) -> None:
        x = SSAValue.get(input)
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x)), tensor_type(()), tensor_type(())])

    def verify_(self) -> None:
        if not all(is_float(v) for v in (self.input, self.values, self.scale, self.zero_point)):
            raise VerifyException("graph.dynamic_quantize maps an f32 tensor to f32 values, scale and zero point")
        if shape_of(self.values) != shape_of(self.input) or shape_of(self.scale) or shape_of(self.zero_point):
            raise VerifyException("graph.dynamic_quantize keeps the shape; scale and zero point are scalars")


@irdl_op_definition
class DequantizeOp(IRDLOperation):
    """ONNX DequantizeLinear: y = (x - zero_point) * scale, per tensor or per channel along the
    type's axis."""

    name = "graph.dequantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation) -> None:
        x = SSAValue.get(input)
        super().__init__(operands=[x], result_types=[tensor_type(shape_of(x))])

    def verify_(self) -> None:
        q = quant_of(self.input)
        if q is None or not is_float(self.output) or shape_of(self.input) != shape_of(self.output):
            raise VerifyException("graph.dequantize maps a quantized tensor to an f32 tensor of its shape")
        if not q.per_tensor:
            axis, shape = q.axis.value.data, shape_of(self.input)
            if axis >= len(shape) or shape[axis] != len(q.scales.get_values()):
                raise VerifyException(f"graph.dequantize: {len(q.scales.get_values())} scales along axis {axis} of {shape}")


QUANT_ACTIVATIONS = (ActivationKind.NONE, ActivationKind.RELU, ActivationKind.CLIP)


def verify_quantized_product(op: IRDLOperation, x: SSAValue, w: SSAValue, y: SSAValue, channel_axis: int) -> None:
    """Shared checks of qconv2d / qmatmul: per-tensor 8-bit activations, symmetric si8 weights
    (per tensor or per output channel), a clamp-like activation."""
    qx, qw, qy = quant_of(x), quant_of(w), quant_of(y)
    if qx is None or qw is None or qy is None:
        raise VerifyException(f"{op.name}: input, weight and output must be quantized tensors")
    if not (qx.per_tensor and qy.per_tensor) or qx.dtype.itemsize != 1 or qy.dtype.itemsize != 1:
        raise VerifyException(f"{op.name}: input and output must be per-tensor ui8/si8")
    if qw.dtype != np.int8 or any(z != 0 for z in qw.zero_points.get_values()):
        raise VerifyException(f"{op.name}: the weight must be si8 with zero points 0 (symmetric)")
    if not qw.per_tensor and qw.axis.value.data != channel_axis % len(shape_of(w)):
        raise VerifyException(f"{op.name}: per-channel weight scales must run along axis {channel_axis}")
    epilogue = op.properties["epilogue"]
    assert isinstance(epilogue, EpilogueAttr)
    if epilogue.activation not in QUANT_ACTIVATIONS:
        raise VerifyException(f"{op.name}: only relu and clip can be fused into a quantized op")


def verify_int_bias(op: IRDLOperation, bias: SSAValue | None, channels: int) -> None:
    if bias is None:
        return
    typ = bias.type
    if not isinstance(typ, TensorType) or typ.element_type != i32_signed() or shape_of(bias) != (channels,):
        raise VerifyException(f"{op.name}: bias must be tensor<{channels}xsi32> (scale: input scale x weight scale)")


def i32_signed() -> IntegerType:
    from xdsl.dialects.builtin import Signedness

    return IntegerType(32, Signedness.SIGNED)


@irdl_op_definition
class QConv2dOp(IRDLOperation):
    """ONNX QLinearConv on NCHW, with a fused clamp-like activation.

    y = quantize(act((x - zx) conv w * sx * sw[c] + bias[c] * sx * sw[c])): x per-tensor ui8/si8,
    w si8 symmetric (per tensor or per output channel), bias si32 in units of sx * sw[c], y per
    tensor. The activation (ReLU / Clip, in real units) is a clamp of the quantized result.
    """

    name = "graph.qconv2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    group = prop_def(IntegerAttr[IntegerType])
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        x, w, y = shape_of(self.input), shape_of(self.weight), shape_of(self.output)
        verify_conv_shapes(self.name, x, w, y, self.group.value.data)
        verify_quantized_product(self, self.input, self.weight, self.output, 0)
        verify_int_bias(self, self.bias, w[0])


@irdl_op_definition
class QMatMulOp(IRDLOperation):
    """ONNX QLinearMatMul (plus bias and a clamp-like activation) with a constant [K, N] weight.

    y = quantize(act((x - zx) @ w * sx * sw[n] + bias[n] * sx * sw[n])); x per-tensor [..., M, K],
    w si8 symmetric per tensor or per column n, bias si32 [N], y per tensor.
    """

    name = "graph.qmatmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        a, b, y = shape_of(self.lhs), shape_of(self.rhs), shape_of(self.output)
        if len(a) < 2 or len(b) != 2 or a[-1] != b[0] or y != (*a[:-1], b[1]):
            raise VerifyException(f"graph.qmatmul shapes do not chain: {a} x {b} -> {y}")
        verify_quantized_product(self, self.lhs, self.rhs, self.output, 1)
        verify_int_bias(self, self.bias, b[1])


@irdl_op_definition
class QAddOp(IRDLOperation):
    """Quantized element-wise Add with a fused ReLU / Clip, standing for quantize(act(dequantize(lhs) +
    dequantize(rhs))) (all per-tensor 8-bit, same shape), computed in ONNX Runtime's QLinearAdd
    arithmetic (`inferon.ir.quant.qadd`, within one step of that chain)."""

    name = "graph.qadd"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    epilogue = prop_def(EpilogueAttr, default_value=NO_EPILOGUE)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        types = [quant_of(v) for v in (self.lhs, self.rhs, self.output)]
        if any(q is None or not q.per_tensor or q.dtype.itemsize != 1 for q in types):
            raise VerifyException("graph.qadd: operands and result must be per-tensor ui8/si8 tensors")
        if not shape_of(self.lhs) == shape_of(self.rhs) == shape_of(self.output):
            raise VerifyException("graph.qadd: operands and result must have the same shape")
        if self.epilogue.activation not in QUANT_ACTIVATIONS:
            raise VerifyException("graph.qadd: only relu and clip can be fused")


@irdl_op_definition
class QTableOp(IRDLOperation):
    """A quantized element-wise function by table: y = table[c][x] for the stored byte x of channel c
    (axis 1; one row for every channel where the table has one). Stands for a chain quantize(f(
    dequantize(x))) of element-wise ops with per-channel or scalar constants (fold-quantized-
    elementwise builds the table by evaluating the chain on all 256 inputs). Input and result are
    per-tensor ui8/si8 of one shape; table is tensor<C x 256 x ui8>."""

    name = "graph.qtable"
    input = operand_def(TensorType)
    table = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        qx, qy = quant_of(self.input), quant_of(self.output)
        if any(q is None or not q.per_tensor or q.dtype.itemsize != 1 for q in (qx, qy)):
            raise VerifyException("graph.qtable: input and result must be per-tensor ui8/si8 tensors")
        shape, table = shape_of(self.input), shape_of(self.table)
        if shape != shape_of(self.output):
            raise VerifyException("graph.qtable keeps the shape")
        channels = shape[1] if len(shape) > 1 else 1
        if len(table) != 2 or table[1] != 256 or table[0] not in (1, channels):
            raise VerifyException(f"graph.qtable: the table is [1 or {channels}, 256], got {list(table)}")


def prop_attr(op: Operation, name: str) -> Attribute:
    return op.properties[name]


Graph = Dialect(
    "graph",
    [
        WeightOp, Conv2dOp, ConvTranspose2dOp, MatMulOp, ChannelAffineOp, BatchNormOp,
        *BINARY_OPS, *UNARY_OPS, WhereOp,
        MaxPoolOp, AvgPoolOp, GlobalAvgPoolOp, GlobalMaxPoolOp,
        ConcatOp, ReshapeOp, SliceOp, TransposeOp, SoftmaxOp, LRNOp, IdentityOp, PadOp, ResizeOp,
        ReduceOp, ArgReduceOp, LayerNormOp, GroupNormOp,
        QuantizeOp, DequantizeOp, DynamicQuantizeOp, QConv2dOp, QMatMulOp, QAddOp, QTableOp,
    ],
    [
        ActivationKindAttr, EpilogueAttr, ElementwiseKindAttr, ReduceKindAttr, SparseFormatAttr, SparseAttr, QuantType,
        ResizeModeAttr, CoordinateModeAttr, NearestModeAttr, PadModeAttr,
    ],
)  # fmt: skip
