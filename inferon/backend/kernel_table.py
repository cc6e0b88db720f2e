"""Data tables mapping IR enums to the runtime's C++ kernel constants."""

from __future__ import annotations

from inferon.ir.attrs import ActivationKind, ElementwiseKind, PadMode, ReduceKind, SparseFormat

BINARY_KERNELS: dict[ElementwiseKind, str] = {
    ElementwiseKind.ADD: "inferon::BIN_ADD",
    ElementwiseKind.SUB: "inferon::BIN_SUB",
    ElementwiseKind.MUL: "inferon::BIN_MUL",
    ElementwiseKind.DIV: "inferon::BIN_DIV",
    ElementwiseKind.MAX: "inferon::BIN_MAX",
    ElementwiseKind.MIN: "inferon::BIN_MIN",
    ElementwiseKind.POW: "inferon::BIN_POW",
    ElementwiseKind.PRELU: "inferon::BIN_PRELU",
    ElementwiseKind.GREATER: "inferon::BIN_GREATER",
    ElementwiseKind.LESS: "inferon::BIN_LESS",
    ElementwiseKind.GREATER_EQUAL: "inferon::BIN_GREATER_EQUAL",
    ElementwiseKind.LESS_EQUAL: "inferon::BIN_LESS_EQUAL",
    ElementwiseKind.EQUAL: "inferon::BIN_EQUAL",
    ElementwiseKind.AND: "inferon::BIN_AND",
    ElementwiseKind.OR: "inferon::BIN_OR",
    ElementwiseKind.XOR: "inferon::BIN_XOR",
}

UNARY_KERNELS: dict[ElementwiseKind, str] = {
    ElementwiseKind.RELU: "inferon::UN_RELU",
    ElementwiseKind.LEAKY_RELU: "inferon::UN_LEAKY_RELU",
    ElementwiseKind.CLIP: "inferon::UN_CLIP",
    ElementwiseKind.SIGMOID: "inferon::UN_SIGMOID",
    ElementwiseKind.TANH: "inferon::UN_TANH",
    ElementwiseKind.EXP: "inferon::UN_EXP",
    ElementwiseKind.LOG: "inferon::UN_LOG",
    ElementwiseKind.ABS: "inferon::UN_ABS",
    ElementwiseKind.NEG: "inferon::UN_NEG",
    ElementwiseKind.SQRT: "inferon::UN_SQRT",
    ElementwiseKind.RECIPROCAL: "inferon::UN_RECIPROCAL",
    ElementwiseKind.FLOOR: "inferon::UN_FLOOR",
    ElementwiseKind.CEIL: "inferon::UN_CEIL",
    ElementwiseKind.ELU: "inferon::UN_ELU",
    ElementwiseKind.HARD_SIGMOID: "inferon::UN_HARD_SIGMOID",
    ElementwiseKind.SOFTPLUS: "inferon::UN_SOFTPLUS",
    ElementwiseKind.HARD_SWISH: "inferon::UN_HARD_SWISH",
    ElementwiseKind.SELU: "inferon::UN_SELU",
    ElementwiseKind.CELU: "inferon::UN_CELU",
    ElementwiseKind.THRESHOLDED_RELU: "inferon::UN_THRESHOLDED_RELU",
    ElementwiseKind.SOFTSIGN: "inferon::UN_SOFTSIGN",
    ElementwiseKind.MISH: "inferon::UN_MISH",
    ElementwiseKind.SWISH: "inferon::UN_SWISH",
    ElementwiseKind.ERF: "inferon::UN_ERF",
    ElementwiseKind.GELU: "inferon::UN_GELU",
    ElementwiseKind.GELU_TANH: "inferon::UN_GELU_TANH",
    ElementwiseKind.SIGN: "inferon::UN_SIGN",
    ElementwiseKind.ROUND: "inferon::UN_ROUND",
    ElementwiseKind.SIN: "inferon::UN_SIN",
    ElementwiseKind.COS: "inferon::UN_COS",
    ElementwiseKind.NOT: "inferon::UN_NOT",
}

REDUCE_KERNELS: dict[ReduceKind, str] = {kind: f"inferon::RED_{kind.name}" for kind in ReduceKind}

PAD_MODES: dict[PadMode, str] = {mode: f"inferon::PAD_{mode.name}" for mode in PadMode}

ACTIVATIONS: dict[ActivationKind, str] = {
    ActivationKind.NONE: "inferon::ACT_NONE",
    ActivationKind.RELU: "inferon::ACT_RELU",
    ActivationKind.LEAKY_RELU: "inferon::ACT_LEAKY_RELU",
    ActivationKind.CLIP: "inferon::ACT_CLIP",
    ActivationKind.SIGMOID: "inferon::ACT_SIGMOID",
    ActivationKind.HARD_SWISH: "inferon::ACT_HARD_SWISH",
    ActivationKind.SWISH: "inferon::ACT_SWISH",
    ActivationKind.GELU: "inferon::ACT_GELU",
    ActivationKind.GELU_TANH: "inferon::ACT_GELU_TANH",
}

SPARSE_FORMATS: dict[SparseFormat, str] = {
    SparseFormat.CSR: "inferon::SPARSE_CSR",
    SparseFormat.NM24: "inferon::SPARSE_NM24",
}
