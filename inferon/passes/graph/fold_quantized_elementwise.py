"""fold-quantized-elementwise: a quantized tensor through float element-wise ops back to 8 bits is a table.

Preconditions: graph level, after `fold-qdq`, `decompose-batchnorm` and `fold-constants` (constant
operands are `graph.weight`s); the context owns the weight store. For every `graph.quantize` Q
whose input is a chain of element-wise ops — unary ops, binary ops with one per-channel or scalar
constant operand, `graph.channel_affine` (a BatchNorm that did not fold: DenseNet's pre-activation
BN, Mul, Add) and dequantize / quantize pairs in between — starting at the `graph.dequantize` of a
per-tensor 8-bit tensor X, each output byte is a function of the input byte and its channel alone:
Q becomes `graph.qtable(X, table)`, the table [C or 1, 256] computed here by running the chain
(`inferon.ir.interpreter`) on all 256 stored values of every channel. The chain's float ops go
unless something else reads them. Such chains are what QDQ models keep in float around ops without
an INT8 kernel; one byte lookup replaces a float round trip per op (dequantize, op, quantize). A
bare quantize(dequantize(X)) with other parameters (a requantization, e.g. to a Concat's scale) is
such a chain too.

The table evaluates the chain as the interpreter does (in float64 where it does), so an output
within a rounding boundary's float error can differ by one step from a float32 run of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerType, ModuleOp, Signedness
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import quant_of, shape_of
from inferon.ir.interpreter import evaluate_elementwise
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context

# binary ops whose result is a float function of the operands (not comparisons / logic)
_BINARY = (graph.AddOp, graph.SubOp, graph.MulOp, graph.DivOp, graph.MaxOp, graph.MinOp, graph.PowOp, graph.PReluOp)
_UNARY = tuple(c for c in graph.UNARY_OPS if c is not graph.NotOp)


def _per_channel(value: SSAValue, rank: int) -> bool:
    """Whether constant `value` broadcasts against a rank-`rank` tensor along axis 1 only (or is a scalar)."""
    shape = shape_of(value)
    if len(shape) > rank:
        return False
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    return all(d == 1 for i, d in enumerate(padded) if i != 1)


@dataclass
class Chain:
    start: graph.DequantizeOp  # the dequantize of the 8-bit tensor the table reads
    ops: list[Operation]  # from the start (excluded) to the final quantize (included), in order


def _chain(q: graph.QuantizeOp) -> Chain | None:
    """The element-wise chain ending at quantize `q`, back to the earliest dequantize it can reach."""
    shape = shape_of(q.output)
    ops: list[Operation] = [q]  # from q backwards
    value, start, cut = q.input, None, 0
    while True:
        op = value.owner
        if isinstance(op, graph.DequantizeOp):
            qx = quant_of(op.input)
            if qx is None or not qx.per_tensor or qx.dtype.itemsize != 1 or shape_of(op.input) != shape:
                break
            start, cut = op, len(ops)
            inner = op.input.owner
            # an intermediate requantization: the chain may go on before it
            if isinstance(inner, graph.QuantizeOp) and (
                chain_link(inner.input, shape) is not None or isinstance(inner.input.owner, graph.DequantizeOp)
            ):
                ops += [op, inner]
                value = inner.input
                continue
            break
        nxt = chain_link(value, shape)
        if nxt is None:
            break
        ops.append(op)  # type: ignore[arg-type]
        value = nxt
    if start is None:
        return None
    return Chain(start, list(reversed(ops[:cut])))


def chain_link(value: SSAValue, shape: tuple[int, ...]) -> SSAValue | None:
    """The chain operand of the element-wise op producing `value` (shape `shape`), or None if it is not one."""
    op = value.owner
    if not isinstance(op, Operation) or shape_of(value) != shape or not graph.is_float(value):
        return None
    if isinstance(op, _UNARY):
        return op.input
    if isinstance(op, graph.ChannelAffineOp):
        if op.residual is not None or not all(isinstance(v.owner, graph.WeightOp) for v in (op.scale, op.bias) if v):
            return None
        return op.input
    if isinstance(op, _BINARY):
        for x, c in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            if isinstance(c.owner, graph.WeightOp) and shape_of(x) == shape and _per_channel(c, len(shape)):
                return x
    return None


def table_of(chain: Chain, weights: WeightStore) -> np.ndarray:
    """[rows, 256] uint8: the chain's output byte for every stored input byte (rows: 1 or C)."""
    shape = shape_of(chain.start.input)
    rank = len(shape)
    consts = [v for op in chain.ops for v in op.operands if isinstance(v.owner, graph.WeightOp)]
    channels = shape[1] if rank > 1 and any(int(np.prod(shape_of(v))) > 1 for v in consts) else 1
    qx = quant_of(chain.start.input)
    assert qx is not None
    levels = np.arange(256, dtype=np.uint8).view(qx.dtype)
    # the 256 levels along axis 0, the channels along axis 1
    x = np.broadcast_to(levels.reshape((256,) + (1,) * (rank - 1)), (256, channels) + (1,) * (rank - 2)) if rank > 1 \
        else levels  # fmt: skip
    env: dict[SSAValue, np.ndarray] = {chain.start.input: np.ascontiguousarray(x)}
    for op in [chain.start, *chain.ops]:
        args = [env[v] if v in env else weights[v.owner.handle.data] for v in op.operands]  # type: ignore[union-attr]
        env[op.results[0]] = evaluate_elementwise(op, args)
    out = np.ascontiguousarray(env[chain.ops[-1].results[0]]).view(np.uint8)
    return np.ascontiguousarray(out.reshape(256, channels).T if rank > 1 else out.reshape(1, 256))


@dataclass(frozen=True)
class FoldQuantizedElementwisePass(ModulePass):
    """Quantize(element-wise chain(dequantize(x))) -> graph.qtable: one byte lookup per element."""

    name = "fold-quantized-elementwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        weights = weights_context(ctx, self.name)
        # last first: a chain through intermediate requantizations becomes one table, and the
        # quantizes it passes die with it
        for q in reversed([o for o in op.walk() if isinstance(o, graph.QuantizeOp)]):
            if q.parent is None:
                continue  # erased with a later chain
            chain = _chain(q)
            if chain is None:
                continue
            table = table_of(chain, weights)
            handle = weights.add(table, "qtable", keep_dtype=True)
            w = graph.WeightOp(handle, table.shape, IntegerType(8, Signedness.UNSIGNED))
            new = graph.QTableOp.create(operands=[chain.start.input, w.result], result_types=[q.output.type])
            Rewriter.insert_op(w, InsertPoint.before(q))
            Rewriter.insert_op(new, InsertPoint.before(q))
            q.output.replace_all_uses_with(new.output)
            _drop_dead([chain.start, *chain.ops])


def _drop_dead(ops: list[Operation]) -> None:
    """Erase the ops of a replaced chain (in program order) that nothing reads any more, and their
    constants, consumers first."""
    for o in reversed(ops):
        if all(not r.uses for r in o.results):
            consts = [v.owner for v in o.operands if isinstance(v.owner, graph.WeightOp)]
            Rewriter.erase_op(o)
            for w in consts:
                if not w.result.uses:
                    Rewriter.erase_op(w)
