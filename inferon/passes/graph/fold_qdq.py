"""fold-qdq: turn DequantizeLinear -> Conv/MatMul -> QuantizeLinear chains into quantized ops.

Preconditions: graph level straight from the importer (QDQ and QOperator models both arrive as
`graph.dequantize` -> float op -> `graph.quantize`), before `fold-batchnorm` and `fuse-epilogue`.
Produces:
- `graph.qconv2d` for quantize(act(conv2d(dequantize(x), dequantize(w), bias))) and `graph.qmatmul`
  for quantize(act(matmul(dequantize(x), w) + bias)) (w possibly transposed, as Gemm's transB
  imports), when x is per-tensor 8-bit, w a symmetric si8 weight (or uint8 with zero point 128, per
  tensor or per output channel)
  and act a ReLU or Clip (or nothing). The bias becomes int32 in units of sx * sw[c] (a float
  bias is rounded to that grid).
- `graph.qadd` for quantize(act(dequantize(a) + dequantize(b))) (residual additions), same shapes.
- MaxPool / GlobalMaxPool / Concat / Reshape / Slice / Pad between a dequantize and a quantize of the
  same parameters run on the integers (a Pad's constant becomes its quantized integer) (the graph op on `!graph.quant` tensors); Concat inputs quantized
  differently are requantized (dequantize + quantize) to the output's parameters first; AveragePool /
  GlobalAveragePool between dequantize and quantize average the integers and requantize.
- `quantize(dequantize(x))` with the same parameters on both sides folds to `x`.
- ArgMax / ArgMin of `dequantize(x)` (8-bit, one positive scale along the axis) compare x's integers.
- Every remaining `dequantize` of a weight becomes a float weight: such layers run in float, between
  the explicit quantize / dequantize of the model (the "boundary").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, ModuleOp
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass

from inferon.ir.attrs import NO_EPILOGUE, ActivationKind, EpilogueAttr, QuantType
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i32_signed, ints, quant_of, shape_of
from inferon.ir.interpreter import evaluate
from inferon.ir.quant import quantize as quantize_array
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context

# ops that only select or move values: on quantized tensors they run on the integers directly (a
# Pad's constant becomes its quantized integer)
PASSTHROUGH_OPS = (graph.MaxPoolOp, graph.GlobalMaxPoolOp, graph.ConcatOp, graph.ReshapeOp, graph.SliceOp, graph.PadOp)
# average pools on quantized tensors: the mean of the dequantized values, quantized with the output's type
AVERAGE_POOLS = (graph.AvgPoolOp, graph.GlobalAvgPoolOp)


def _single_use(value: SSAValue) -> bool:
    return value.has_one_use()


def _producer(value: SSAValue, cls: type[Operation]) -> Operation | None:
    owner = value.owner
    return owner if isinstance(owner, cls) else None


def activation_epilogue(op: Operation) -> EpilogueAttr | None:
    """The epilogue equivalent of a graph.relu / graph.clip op, else None."""
    if isinstance(op, graph.ReluOp):
        return EpilogueAttr.make(ActivationKind.RELU)
    if isinstance(op, graph.ClipOp):
        return EpilogueAttr.make(ActivationKind.CLIP, op.alpha.value.data, op.beta.value.data)
    return None


def _activation_input(x: SSAValue) -> SSAValue:
    """The per-tensor 8-bit integer tensor a dequantize reads, or raise LookupError."""
    dq = _producer(x, graph.DequantizeOp)
    q = quant_of(dq.operands[0]) if dq else None
    if dq is None or q is None or not q.per_tensor or q.dtype.itemsize != 1:
        raise LookupError
    return dq.operands[0]


@dataclass
class _Weight:
    values: np.ndarray  # int8, laid out as the quantized op wants it
    quant: QuantType


def _quantized_weight(store: WeightStore, value: SSAValue, channel_axis: int) -> _Weight:
    """A symmetric si8 weight behind dequantize (and an optional 2-D transpose), or LookupError.

    uint8 weights with zero point 128 (older QOperator models) are the same thing shifted: w - 128."""
    perm = None
    t = _producer(value, graph.TransposeOp)
    if t is not None:
        perm = ints(t.perm)
        if perm != (1, 0) or not _single_use(value):
            raise LookupError
        value = t.operands[0]
    dq = _producer(value, graph.DequantizeOp)
    w = _producer(dq.operands[0], graph.WeightOp) if dq else None
    q = quant_of(w.result) if w else None
    if w is None or q is None:
        raise LookupError
    values = store[w.handle.data]
    if q.dtype == np.uint8 and np.all(q.zero_point_array() == 128):
        values = (values.astype(np.int16) - 128).astype(np.int8)
    elif q.dtype != np.int8 or np.any(q.zero_point_array() != 0):
        raise LookupError
    axis = q.axis.value.data
    if perm is not None:
        values = np.ascontiguousarray(values.T)
        axis = -1 if axis < 0 else 1 - axis
    if axis >= 0 and axis != channel_axis % values.ndim:
        raise LookupError
    return _Weight(values, QuantType.make(np.int8, q.scale_array().tolist(), [0] * len(q.scale_array()), axis))


def _int_bias(store: WeightStore, bias: SSAValue | None, x_scale: float, w: _Weight, channels: int) -> np.ndarray | None:
    """The bias in int32 units of sx * sw[c], or LookupError when it is not a constant."""
    if bias is None:
        return None
    unit = (np.float32(x_scale) * np.broadcast_to(w.quant.scale_array(), (channels,))).astype(np.float64)
    dq = _producer(bias, graph.DequantizeOp)
    src = _producer(dq.operands[0] if dq else bias, graph.WeightOp)
    if src is None or shape_of(bias) != (channels,):
        raise LookupError
    raw = store[src.handle.data]
    qb = quant_of(src.result)
    if dq is not None and qb is not None:
        scales = np.broadcast_to(qb.scale_array(), (channels,)).astype(np.float64)
        if qb.dtype == np.int32 and np.all(qb.zero_point_array() == 0) and np.allclose(scales, unit, rtol=1e-6, atol=0):
            return raw.astype(np.int32)
        real = (raw.astype(np.float64) - np.broadcast_to(qb.zero_point_array(), (channels,))) * scales
    elif quant_of(bias) is None:
        real = raw.astype(np.float64)
    else:
        raise LookupError
    ints_ = np.rint(real / unit)
    if np.any(np.abs(ints_) >= 2**31):
        raise LookupError
    return ints_.astype(np.int32)


class _Folder:
    def __init__(self, store: WeightStore) -> None:
        self.store = store

    def weight(self, values: np.ndarray, quant: QuantType | None, hint: str, before: Operation) -> SSAValue:
        """A new weight (int8 with `quant`, else a plain si32 bias) placed before `before`."""
        return insert_weight(self.store, values, quant or i32_signed(), hint, before)

    def fold(self, q: graph.QuantizeOp) -> bool:
        """Try to fold the chain ending in `q`; True when it did."""
        if self.passthrough(q):
            return True
        value = q.input
        epilogue = NO_EPILOGUE
        act = value.owner
        if isinstance(act, Operation) and activation_epilogue(act) is not None and _single_use(value):
            epilogue = activation_epilogue(act)
            value = act.operands[0]
        if not _single_use(value):
            return False
        op = value.owner
        bias = None
        if isinstance(op, graph.AddOp):
            mm = next((v.owner for v in (op.lhs, op.rhs) if isinstance(v.owner, graph.MatMulOp)), None)
            if mm is None or not _single_use(mm.results[0]):
                return self.add(op, q, epilogue)
            bias = op.rhs if mm.results[0] is op.lhs else op.lhs
            op = mm
        try:
            if isinstance(op, graph.Conv2dOp) and op.residual is None and op.epilogue == NO_EPILOGUE:
                new = self.conv(op, q, epilogue)
            elif isinstance(op, graph.MatMulOp) and op.residual is None and op.epilogue == NO_EPILOGUE and op.bias is None:
                new = self.matmul(op, bias, q, epilogue)
            else:
                return False
        except LookupError:
            return False
        q.parent_block().insert_op_before(new, q)  # type: ignore[union-attr]
        q.results[0].replace_all_uses_with(new.results[0])
        return True

    def passthrough(self, q: graph.QuantizeOp) -> bool:
        """quantize(op(dequantize(x), ...)) for a data-movement op whose inputs and output share one
        quantization: the op runs on the integers (MaxPool / GlobalMaxPool / Concat / Reshape / Slice)."""
        op = q.input.owner
        if isinstance(op, AVERAGE_POOLS) and _single_use(q.input):
            dq = _producer(op.operands[0], graph.DequantizeOp)
            qx = quant_of(dq.operands[0]) if dq else None
            if dq is None or qx is None or not qx.per_tensor:
                return False
            new = type(op).create(operands=[dq.operands[0]], properties=dict(op.properties), result_types=[q.output.type])
            q.parent_block().insert_op_before(new, q)  # type: ignore[union-attr]
            q.results[0].replace_all_uses_with(new.results[0])
            return True
        if not isinstance(op, PASSTHROUGH_OPS) or not _single_use(q.input):
            return False
        sources = []
        target = q.output.type.element_type  # type: ignore[attr-defined]
        for v in op.operands:
            dq = _producer(v, graph.DequantizeOp)
            if dq is None:
                return False
            if dq.operands[0].type.element_type == target:  # type: ignore[attr-defined]
                sources.append(dq.operands[0])
            elif isinstance(op, graph.ConcatOp):  # requantize this input to the output's parameters
                requant = graph.QuantizeOp(v, target)
                q.parent_block().insert_op_before(requant, q)  # type: ignore[union-attr]
                sources.append(requant.output)
            else:
                return False
        props = dict(op.properties)
        if isinstance(op, graph.PadOp):
            if not target.per_tensor:
                return False
            border = quantize_array(np.float32(op.value.value.data), target.scale_array()[0],
                                    int(target.zero_point_array()[0]), target.dtype)  # fmt: skip
            props["value"] = FloatAttr(float(border), 32)
        new = type(op).create(operands=sources, properties=props, result_types=[q.output.type])
        q.parent_block().insert_op_before(new, q)  # type: ignore[union-attr]
        q.results[0].replace_all_uses_with(new.results[0])
        return True

    def add(self, op: graph.AddOp, q: graph.QuantizeOp, epilogue: EpilogueAttr) -> bool:
        """quantize(act(dequantize(a) + dequantize(b))) of equal shapes -> graph.qadd."""
        try:
            a, b = _activation_input(op.lhs), _activation_input(op.rhs)
        except LookupError:
            return False
        if not shape_of(a) == shape_of(b) == shape_of(q.output):
            return False
        new = graph.QAddOp.create(operands=[a, b], properties={"epilogue": epilogue}, result_types=[q.output.type])
        q.parent_block().insert_op_before(new, q)  # type: ignore[union-attr]
        q.results[0].replace_all_uses_with(new.results[0])
        return True

    def conv(self, op: graph.Conv2dOp, q: graph.QuantizeOp, epilogue: EpilogueAttr) -> Operation:
        x = _activation_input(op.input)
        qx = quant_of(x)
        assert qx is not None
        w = _quantized_weight(self.store, op.weight, 0)
        channels = shape_of(op.weight)[0]
        bias = _int_bias(self.store, op.bias, qx.scale, w, channels)
        operands = [x, self.weight(w.values, w.quant, "qconv_w", q)]
        if bias is not None:
            operands.append(self.weight(bias, None, "qconv_b", q))
        props = {k: op.properties[k] for k in ("strides", "pads", "dilations", "group")}
        props["epilogue"] = epilogue
        return graph.QConv2dOp.create(operands=operands, properties=props, result_types=[q.output.type])

    def matmul(self, op: graph.MatMulOp, bias: SSAValue | None, q: graph.QuantizeOp, epilogue: EpilogueAttr) -> Operation:
        x = _activation_input(op.lhs)
        qx = quant_of(x)
        assert qx is not None
        if len(shape_of(op.rhs)) != 2:
            raise LookupError
        w = _quantized_weight(self.store, op.rhs, 1)
        channels = shape_of(op.rhs)[1]
        b = _int_bias(self.store, bias, qx.scale, w, channels)
        operands = [x, self.weight(w.values, w.quant, "qmatmul_w", q)]
        if b is not None:
            operands.append(self.weight(b, None, "qmatmul_b", q))
        props = {"epilogue": epilogue}
        return graph.QMatMulOp.create(operands=operands, properties=props, result_types=[q.output.type])


def insert_weight(store: WeightStore, values: np.ndarray, element: Attribute, hint: str, before: Operation) -> SSAValue:
    """`values` (kept in their dtype) as a new graph.weight of element type `element`, before `before`."""
    op = graph.WeightOp(store.add(values, hint, keep_dtype=True), values.shape, element)
    before.parent_block().insert_op_before(op, before)  # type: ignore[union-attr]
    return op.result


def erase_dead_ops(block: Block) -> None:
    """Erase graph ops whose results are unused (repeatedly: a chain dies from its end)."""
    changed = True
    while changed:
        changed = False
        for o in reversed(list(block.ops)):
            if o.dialect_name() == "graph" and o.results and all(not r.uses for r in o.results):
                block.erase_op(o)
                changed = True


@dataclass(frozen=True)
class FoldQdqPass(ModulePass):
    """Fold DequantizeLinear -> Conv/MatMul -> QuantizeLinear into graph.qconv2d / graph.qmatmul."""

    name = "fold-qdq"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = weights_context(ctx, self.name)
        folder = _Folder(store)
        for fn in op.ops:
            block = fn.regions[0].block
            for q in [o for o in block.ops if isinstance(o, graph.QuantizeOp)]:
                dq = _producer(q.input, graph.DequantizeOp)
                if dq is not None and dq.operands[0].type == q.output.type:
                    q.output.replace_all_uses_with(dq.operands[0])
                else:
                    folder.fold(q)
            for arg in [o for o in block.ops if isinstance(o, graph.ArgReduceOp)]:
                dq = _producer(arg.input, graph.DequantizeOp)
                if dq is not None and (q := graph.quant_of(dq.operands[0])) and graph.integers_ordered(q, arg.axis.value.data):
                    arg.operands[0] = dq.operands[0]  # the integers order like the reals
            erase_dead_ops(block)
            for dq in [o for o in block.ops if isinstance(o, graph.DequantizeOp)]:
                w = _producer(dq.operands[0], graph.WeightOp)
                if w is None:
                    continue
                value = evaluate(dq, [store[w.handle.data]])
                new = graph.WeightOp(store.add(value, f"{w.handle.data}_f32"), value.shape)
                block.insert_op_before(new, dq)
                dq.output.replace_all_uses_with(new.result)
            erase_dead_ops(block)

