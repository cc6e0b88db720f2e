"""Typed attributes shared by Inferon's dialects.

`#graph.epilogue<kind, alpha, beta>` describes the element-wise activation a fused op applies before its
store (ReLU, LeakyReLU(alpha), Clip(alpha, beta), Sigmoid). Sparse and quantized encodings will live
here too, as further typed attributes on weights.
"""

from __future__ import annotations

from xdsl.dialects.builtin import Float32Type, FloatAttr, f32
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
