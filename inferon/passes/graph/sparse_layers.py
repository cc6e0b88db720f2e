"""The layers whose weights may be stored sparse, seen as the matrices the sparse kernels multiply.

Shared by `prune` and `sparsify`. A layer is a `graph.conv2d` that is not depthwise, or a
`graph.matmul` whose right operand is a 2-D weight (fully-connected), with its weight as a
`graph.weight`; with `quantized`, also a single-group `graph.qconv2d` or a `graph.qmatmul` (int8 weight). Its matrix A [M, K] is what `inferon.ir.sparse` encodes: the conv filter
[C_out, C_in/group * kh * kw], or W^T [N_out, K] of a fully-connected layer; `n` is the dense
dimension the kernel vectorises over (output pixels of a conv; rows of x for a matmul).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import BlockArgument, Operation

from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import ints, shape_of


@dataclass(frozen=True)
class SparseLayer:
    op: Operation
    weight: graph.WeightOp
    m: int
    k: int
    n: int
    is_fc: bool
    reads_model_input: bool  # the layer's input is a model input, or its quantization (e.g. the stem conv)
    groups: int = 1
    winograd: bool = False  # a float 3x3 stride-1 single-group conv (conv-to-winograd may take it dense)
    out_size: tuple[int, int] = (1, 1)  # conv output Ho, Wo
    quantized: bool = False  # an int8 weight (graph.qconv2d)
    frame: bool = False  # a conv whose B is not the image itself (KxK, strided or padded): a frame (dilated: im2col)
    implicit: bool = False  # a quantized stride-1 KxK conv: dense, its GEMM reads the image in place (VNNI)

    def matrix(self, w: np.ndarray) -> np.ndarray:
        """The weight as A [M, K] (a view where possible)."""
        return np.ascontiguousarray(w.T) if self.is_fc else w.reshape(w.shape[0], -1)

    def from_matrix(self, a: np.ndarray) -> np.ndarray:
        """The weight tensor of matrix A (inverse of `matrix`)."""
        return np.ascontiguousarray(a.T) if self.is_fc else a.reshape(shape_of(self.weight.result))


def sparse_layers(module: ModuleOp, quantized: bool = False) -> Iterator[SparseLayer]:
    """Every conv/FC layer with a constant weight, in program order (with `quantized`, also the
    single-group quantized convs and the quantized fully-connected layers)."""
    for op in module.walk():
        if quantized and isinstance(op, graph.QConv2dOp) and isinstance(op.weight.owner, graph.WeightOp):
            if op.group.value.data != 1:
                continue
            m, c, kh, kw = shape_of(op.weight)
            out = shape_of(op.output)
            x = op.input.owner.input if isinstance(op.input.owner, graph.QuantizeOp) else op.input
            unit = ints(op.strides) == (1, 1) and ints(op.dilations) == (1, 1)
            frame = (kh, kw) != (1, 1) or not unit or any(ints(op.pads))
            yield SparseLayer(op, op.weight.owner, m, c * kh * kw, out[0] * math.prod(out[2:]), False,
                              isinstance(x, BlockArgument), out_size=(out[2], out[3]), quantized=True, frame=frame,
                              implicit=unit and (kh, kw) != (1, 1))  # fmt: skip
            continue
        if quantized and isinstance(op, graph.QMatMulOp) and isinstance(op.rhs.owner, graph.WeightOp):
            k, n_out = shape_of(op.rhs)
            x = op.lhs.owner.input if isinstance(op.lhs.owner, graph.QuantizeOp) else op.lhs
            yield SparseLayer(op, op.rhs.owner, n_out, k, math.prod(shape_of(op.lhs)[:-1]), True,
                              isinstance(x, BlockArgument), quantized=True)  # fmt: skip
            continue
        if isinstance(op, graph.Conv2dOp) and isinstance(op.weight.owner, graph.WeightOp):
            m, cg, kh, kw = shape_of(op.weight)
            n_img, c = shape_of(op.input)[:2]
            if op.group.value.data == c and c > 1:  # depthwise: direct kernel, tiny K
                continue
            out = shape_of(op.output)
            winograd = (kh, kw) == (3, 3) and op.group.value.data == 1 and ints(op.strides) == (1, 1) and ints(op.dilations) == (1, 1)
            frame = (kh, kw) != (1, 1) or ints(op.strides) != (1, 1) or any(ints(op.pads))
            yield SparseLayer(op, op.weight.owner, m, cg * kh * kw, n_img * math.prod(out[2:]), False,
                              isinstance(op.input, BlockArgument), op.group.value.data, winograd, (out[2], out[3]),
                              frame=frame)  # fmt: skip
        elif isinstance(op, graph.MatMulOp) and isinstance(op.rhs.owner, graph.WeightOp):
            w_shape = shape_of(op.rhs)
            if len(w_shape) != 2:
                continue
            rows = math.prod(shape_of(op.lhs)[:-1])
            yield SparseLayer(op, op.rhs.owner, w_shape[1], w_shape[0], rows, True, isinstance(op.lhs, BlockArgument))
