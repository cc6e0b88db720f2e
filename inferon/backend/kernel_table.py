"""Data tables mapping IR enums to the runtime's C++ kernel constants."""

from __future__ import annotations

from inferon.ir.attrs import ActivationKind, ElementwiseKind, ReduceKind, SparseFormat

BINARY_KERNELS: dict[ElementwiseKind, str] = {
    ElementwiseKind.ADD: "inferon::BIN_ADD",
    ElementwiseKind.SUB: "inferon::BIN_SUB",
    ElementwiseKind.MUL: "inferon::BIN_MUL",
    ElementwiseKind.DIV: "inferon::BIN_DIV",
    ElementwiseKind.MAX: "inferon::BIN_MAX",
    ElementwiseKind.MIN: "inferon::BIN_MIN",
    ElementwiseKind.POW: "inferon::BIN_POW",
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
}

REDUCE_KERNELS: dict[ReduceKind, str] = {kind: f"inferon::RED_{kind.name}" for kind in ReduceKind}

ACTIVATIONS: dict[ActivationKind, str] = {
    ActivationKind.NONE: "inferon::ACT_NONE",
    ActivationKind.RELU: "inferon::ACT_RELU",
    ActivationKind.LEAKY_RELU: "inferon::ACT_LEAKY_RELU",
    ActivationKind.CLIP: "inferon::ACT_CLIP",
    ActivationKind.SIGMOID: "inferon::ACT_SIGMOID",
}

SPARSE_FORMATS: dict[SparseFormat, str] = {
    SparseFormat.CSR: "inferon::SPARSE_CSR",
    SparseFormat.NM24: "inferon::SPARSE_NM24",
}
