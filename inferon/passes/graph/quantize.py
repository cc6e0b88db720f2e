"""quantize: post-training static INT8 quantization of a float graph (`--quantize int8`).

Preconditions: graph level after fold-batchnorm / fold-constants (weights final, BatchNorm folded),
before fuse-epilogue; an `InferonContext`. The pass calibrates first (`inferon.calibration`: the
float graph is compiled with the tensors to calibrate as extra outputs and run on the samples).
Produces, for every Conv / MatMul (Gemm) with a constant weight, except the layers kept in float:
- `graph.qconv2d` / `graph.qmatmul`: weights per-channel symmetric int8 (scale max|w| / 127 per
  output channel; each weight rounded up or down to minimise the layer's output error on the
  calibration inputs, `inferon.weight_rounding`, unless `rounding="nearest"`), activations
  per-tensor asymmetric uint8 (the calibrated range, widened to include 0), bias int32 in units of
  sx * sw[c]; a following ReLU / Clip is fused (its output is the range calibrated);
- `graph.qadd` for an Add of two quantized tensors (residual connections), ReLU fused;
- Concat / MaxPool / GlobalMaxPool / AveragePool / GlobalAveragePool / Reshape (Flatten) of quantized
  tensors on the integers (as `fold-qdq` runs them in QDQ models): max pools and reshapes keep their
  input's parameters, a Concat and the average pools get their own calibrated ones (one range along a
  chain of Concats; inputs quantized differently are requantized, a byte table after
  `fold-quantized-elementwise`), so that a chain such as DenseNet's Concat -> BatchNorm -> ReLU ->
  Conv stays uint8 (the element-wise ops become tables);
- `graph.quantize` where a float tensor enters a quantized layer and `graph.dequantize` where a
  quantized result feeds a float op: activations stay uint8 from one quantized layer to the next.
`Quantization.layers` lists the layers in order (the indices `keep_float` refers to);
`Quantization.float_outputs` keeps the float model's outputs on the samples for the report.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from inferon.calibration import ConvPatches, InputMoments, TensorStats, collect_stats
from inferon.errors import PassError
from inferon.ir.attrs import NO_EPILOGUE, EpilogueAttr, QuantType
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i32_signed, ints, shape_of
from inferon.ir.weights import WeightStore
from inferon.passes.graph.fold_constants import weights_context
from inferon.passes.graph.fold_qdq import activation_epilogue, erase_dead_ops, insert_weight
from inferon.passes.graph.fold_quantized_elementwise import chain_link
from inferon.weight_rounding import adaptive_round, output_error, regularised

ROUNDINGS = ("adaptive", "nearest")
PER_ROW_MAX_K = 64  # grouped convs with at most this many weights per row: one E[x x^T] per row at once
# adaptive rounding's limits per layer: K (inputs per weight row; E[x x^T] is K x K, 21 MB at 2304 =
# 256 channels x 3 x 3, and well determined only with many more input rows than K: ResNet-50's 7x7
# layers with K = 4608 see 49 per sample) and rows x K^2 (its cost); larger layers (512-channel 3x3
# convs, VGG's 25088-input FC) round to nearest
ADAPTIVE_MAX_K = 2304
ADAPTIVE_MAX_WORK = 3e10


@dataclass
class Quantization:
    """What `--quantize int8` was asked for, and what it found (filled in by the pass)."""

    samples: list[dict[str, np.ndarray]]
    method: str = "minmax"
    keep_float: tuple[str, ...] = ()  # layer indices ("0", "-1") or "first" / "last"
    rounding: str = "adaptive"  # of the weights: adaptive (inferon.weight_rounding) or nearest
    verbose: bool = False
    layers: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    float_outputs: list[list[np.ndarray]] = field(default_factory=list)
    # adaptive rounding: the RMS output error the int8 weights cause on the calibration inputs
    # (relative to each layer's output RMS) with nearest and adaptive rounding, summed over the
    # layers rounded adaptively, and their count
    weight_error: tuple[float, float, int] = (0.0, 0.0, 0)


@dataclass
class _Layer:
    op: Operation  # conv2d / matmul
    bias: SSAValue | None  # matmul: the 1-D weight of a following Add
    epilogue: EpilogueAttr
    out: SSAValue  # the value the layer's uint8 output stands for (after bias / activation)
    last: Operation  # the last float op the layer replaces


def _single_user(value: SSAValue) -> Operation | None:
    return value.get_user_of_unique_use() if value.has_one_use() else None


def _float_weight(value: SSAValue) -> graph.WeightOp | None:
    owner = value.owner
    return owner if isinstance(owner, graph.WeightOp) and graph.is_float(owner.result) else None


def _layers(block: Block) -> list[_Layer]:
    found = []
    for op in block.ops:
        if isinstance(op, graph.Conv2dOp):
            if _float_weight(op.weight) is None or op.residual is not None or op.epilogue != NO_EPILOGUE:
                continue
            if op.bias is not None and _float_weight(op.bias) is None:
                continue
            bias, last = op.bias, op
        elif isinstance(op, graph.MatMulOp):
            if _float_weight(op.rhs) is None or len(shape_of(op.rhs)) != 2 or op.bias is not None or op.residual is not None:
                continue
            bias, last = None, op
            user = _single_user(op.output)
            if isinstance(user, graph.AddOp):
                other = user.rhs if user.lhs is op.output else user.lhs
                w = _float_weight(other)
                if w is not None and shape_of(other) == (shape_of(op.rhs)[1],):
                    bias, last = other, user
        else:
            continue
        epilogue = NO_EPILOGUE
        user = _single_user(last.results[0])
        if user is not None and activation_epilogue(user) is not None:
            epilogue, last = activation_epilogue(user), user  # type: ignore[assignment]
        found.append(_Layer(op, bias, epilogue, last.results[0], last))
    return found


def _kept(spec: tuple[str, ...], count: int) -> set[int]:
    kept = set()
    for item in spec:
        token = item.strip().lower()
        if token == "first":
            kept.add(0)
        elif token == "last":
            kept.add(count - 1)
        else:
            try:
                index = int(token)
            except ValueError:
                raise PassError(f"--keep-float '{item}': expected a layer index (0, 1, -1...), first or last") from None
            if not -count <= index < count:
                raise PassError(f"--keep-float {index}: the model has {count} quantizable layers (0..{count - 1})")
            kept.add(index % count)
    return kept


def activation_type(lo: float, hi: float) -> QuantType:
    """Per-tensor asymmetric uint8 covering [lo, hi] and 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise PassError(f"calibration saw a non-finite value range [{lo}, {hi}]")
    scale = max((hi - lo) / 255.0, 1e-8)
    zp = int(np.clip(np.rint(-lo / np.float32(scale)), 0, 255))
    return QuantType.make(np.uint8, [scale], [zp])


def _adaptive(op: Operation) -> bool:
    """Whether adaptive rounding is affordable for this layer (ADAPTIVE_MAX_K / _WORK)."""
    w = shape_of(op.operands[1])
    rows, k = (w[0], int(np.prod(w[1:]))) if isinstance(op, graph.Conv2dOp) else (w[1], w[0])
    return k <= ADAPTIVE_MAX_K and rows * k * k <= ADAPTIVE_MAX_WORK


def _patches(op: Operation) -> ConvPatches | None:
    """The input patch geometry of a conv layer (None: a MatMul's input rows)."""
    if not isinstance(op, graph.Conv2dOp):
        return None
    kh, kw = shape_of(op.weight)[2:]
    return ConvPatches((kh, kw), ints(op.strides), ints(op.pads), ints(op.dilations), op.group.value.data)  # type: ignore[arg-type]


def round_weights(scaled: np.ndarray, axis: int, moments: InputMoments | None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """int8 weights for float weights already divided by their channel's scale (channels along
    `axis`): nearest rounding without `moments`, else adaptive rounding on the layer's input
    moments. Also returns the RMS output error of nearest and of the chosen rounding on the
    calibration inputs, each relative to the output's RMS (None without moments)."""
    if moments is None or moments.total is None:
        return np.clip(np.rint(scaled), -127, 127).astype(np.int8), None
    channels_first = np.moveaxis(scaled, axis, 0)
    rows = channels_first.reshape(len(channels_first), -1).astype(np.float64)
    moment = regularised(moments.moment(), moments.rows_seen)  # [groups, K, K]
    groups, k = moment.shape[0], moment.shape[-1]
    per_group = rows.shape[0] // groups
    parts = [(rows, moment[0])] if groups == 1 else (
        [(rows, np.repeat(moment, per_group, axis=0))] if k <= PER_ROW_MAX_K else
        [(rows[g * per_group:(g + 1) * per_group], moment[g]) for g in range(groups)])  # fmt: skip
    done = [adaptive_round(r, m) for r, m in parts]
    q = np.concatenate([d.q for d in done])
    signal = sum(output_error(np.zeros_like(r), r, m) for r, m in parts) or 1.0
    before = float(np.sqrt(sum(d.nearest_error for d in done) / signal))
    after = float(np.sqrt(sum(d.error for d in done) / signal))
    return np.moveaxis(q.reshape(channels_first.shape), 0, axis).astype(np.int8), (before, after)


class _Rewriter:
    def __init__(self, block: Block, store: WeightStore, types: dict[SSAValue, QuantType],
                 moments: dict[Operation, InputMoments], quantization: Quantization) -> None:  # fmt: skip
        self.block, self.store, self.types = block, store, types
        self.moments, self.quantization = moments, quantization
        self.quantized: dict[SSAValue, SSAValue] = {}

    def as_quantized(self, x: SSAValue, before: Operation) -> SSAValue:
        """The uint8 version of float tensor x: the source of a dequantize, or a new quantize."""
        if x in self.quantized:
            return self.quantized[x]
        if isinstance(x.owner, graph.DequantizeOp) and graph.quant_of(x.owner.input) is not None:
            return x.owner.input
        q = graph.QuantizeOp(x, self.types[x])
        if isinstance(x.owner, Operation):
            self.block.insert_op_after(q, x.owner)
        else:
            self.block.insert_op_before(q, before)
        self.quantized[x] = q.output
        return q.output

    def replace(self, old: SSAValue, new_op: Operation, after: Operation) -> None:
        """Put `new_op` after `after`; float users of `old` read its dequantized result."""
        self.block.insert_op_after(new_op, after)
        dq = graph.DequantizeOp(new_op.results[0])
        self.block.insert_op_after(dq, new_op)
        old.replace_all_uses_with(dq.output)

    def layer(self, layer: _Layer) -> None:
        op, qy = layer.op, self.types[layer.out]
        xq = self.as_quantized(op.operands[0], op)
        qx = graph.quant_of(xq)
        assert qx is not None
        w = self.store[op.operands[1].owner.handle.data]  # type: ignore[union-attr]
        axis = 0 if isinstance(op, graph.Conv2dOp) else 1
        channels = w.shape[axis]
        reduce_axes = tuple(a for a in range(w.ndim) if a != axis)
        scales = (np.abs(w).max(axis=reduce_axes) / 127.0).astype(np.float32)
        scales = np.where(scales > 0, scales, np.float32(1.0))
        b = None
        if layer.bias is not None:
            b = self.store[layer.bias.owner.handle.data].astype(np.float64)  # type: ignore[union-attr]
            # a large bias over tiny weights (folded BatchNorm) must still fit int32 in units of
            # sx * sw: widen that channel's weight scale where needed (ONNX Runtime does the same)
            scales = np.maximum(scales, (np.abs(b) / (np.float64(qx.scale) * 2.0**30)).astype(np.float32))
        shape = [1] * w.ndim
        shape[axis] = channels
        wq, errors = round_weights(w / scales.reshape(shape), axis, self.moments.get(op))
        if errors is not None:
            total = self.quantization.weight_error
            self.quantization.weight_error = (total[0] + errors[0], total[1] + errors[1], total[2] + 1)
            if self.quantization.verbose:
                end = "\n" if total[2] + 1 == len(self.moments) else ""
                print(f"\rinferon: adaptive weight rounding {total[2] + 1}/{len(self.moments)} layers", end=end,
                      file=sys.stderr, flush=True)  # fmt: skip
        wtype = QuantType.make(np.int8, scales.tolist(), [0], axis)
        operands = [xq, insert_weight(self.store, wq, wtype, "q_w", op)]
        if b is not None:
            unit = np.float32(qx.scale) * scales.astype(np.float64)
            bq = np.rint(b / unit)
            if np.any(np.abs(bq) >= 2**31):
                raise PassError(f"{op.name}: the quantized bias overflows int32")
            operands.append(insert_weight(self.store, bq.astype(np.int32), i32_signed(), "q_b", op))
        if isinstance(op, graph.Conv2dOp):
            props = {k: op.properties[k] for k in ("strides", "pads", "dilations", "group")}
            props["epilogue"] = layer.epilogue
            new = graph.QConv2dOp.create(operands=operands, properties=props, result_types=[graph.tensor_type(shape_of(layer.out), qy)])
        else:
            new = graph.QMatMulOp.create(operands=operands, properties={"epilogue": layer.epilogue},
                                         result_types=[graph.tensor_type(shape_of(layer.out), qy)])  # fmt: skip
        self.replace(layer.out, new, layer.last)

    def movement(self, op: Operation) -> None:
        """A Concat / pool of quantized tensors on the integers (SAME_TYPE_OPS, CALIBRATED_OPS)."""
        sources = [self.as_quantized(v, op) for v in op.operands]
        if isinstance(op, SAME_TYPE_OPS):
            target = graph.quant_of(sources[0])
        else:
            target = self.types[op.results[0]]
        if isinstance(op, graph.ConcatOp):  # inputs quantized differently: requantized to the output's
            sources = [v if graph.quant_of(v) == target else self._requantized(v, target, op) for v in sources]
        new = type(op).create(operands=sources, properties=dict(op.properties),
                              result_types=[graph.tensor_type(shape_of(op.results[0]), target)])  # fmt: skip
        self.replace(op.results[0], new, op)

    def _requantized(self, v: SSAValue, target: QuantType, before: Operation) -> SSAValue:
        dq = graph.DequantizeOp(v)
        q = graph.QuantizeOp(dq.output, target)
        self.block.insert_ops_before([dq, q], before)
        return q.output

    def add(self, op: graph.AddOp, out: SSAValue, last: Operation, epilogue: EpilogueAttr) -> None:
        a, b = (self.as_quantized(v, op) for v in (op.lhs, op.rhs))
        new = graph.QAddOp.create(operands=[a, b], properties={"epilogue": epilogue},
                                  result_types=[graph.tensor_type(shape_of(out), self.types[out])])  # fmt: skip
        self.replace(out, new, last)


def _is_dequantized(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.DequantizeOp)


# data-movement ops that run on quantized tensors (the integers): max pools and reshapes keep their
# input's parameters; a Concat and the average pools take those calibrated for their output
SAME_TYPE_OPS = (graph.MaxPoolOp, graph.GlobalMaxPoolOp, graph.ReshapeOp)
CALIBRATED_OPS = (graph.ConcatOp, graph.AvgPoolOp, graph.GlobalAvgPoolOp)


@dataclass(frozen=True)
class QuantizePass(ModulePass):
    """Calibrate, then quantize conv / matmul layers (and residual adds) to INT8."""

    name = "quantize"
    quantization: Quantization | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.quantization is None:
            raise PassError("quantize: needs calibration data (inferon compile --quantize int8 --calibration DATA)")
        q = self.quantization
        store = weights_context(ctx, self.name)
        fn = next((o for o in op.ops if isinstance(o, func.FuncOp)), None)
        if fn is None:
            raise PassError("quantize: module has no @main")
        block = fn.body.block
        layers = _layers(block)
        if not layers:
            raise PassError("quantize: the model has no Conv / MatMul / Gemm layer with constant weights to quantize")
        kept = _kept(q.keep_float, len(layers))
        q.layers = [f"{i}: {lay.op.name} {list(shape_of(lay.op.operands[1]))}" for i, lay in enumerate(layers)]
        q.kept = [q.layers[i] for i in sorted(kept)]
        chosen = [lay for i, lay in enumerate(layers) if i not in kept]
        adds = self._adds(block, chosen)
        movements, derived = self._movements(block, chosen, adds)
        values = list(dict.fromkeys(
            [v for lay in chosen for v in (lay.op.operands[0], lay.out)] + [v for _, v, _, _ in adds]
            + [o.results[0] for o in movements if isinstance(o, CALIBRATED_OPS)] + derived
        ))  # fmt: skip
        if q.rounding not in ROUNDINGS:
            raise PassError(f"unknown weight rounding '{q.rounding}'; choose one of {', '.join(ROUNDINGS)}")
        adaptive = [lay.op for lay in chosen if q.rounding == "adaptive" and _adaptive(lay.op)]
        moments = {o: InputMoments(_patches(o)) for o in adaptive}
        index = {v: i for i, v in enumerate(values)}
        stats, q.float_outputs = collect_stats(op, store, values, q.samples, method=q.method, verbose=q.verbose,
                                               moments=[(index[o.operands[0]], m) for o, m in moments.items()])  # fmt: skip
        ranges = {v: s.range(q.method) for v, s in zip(values, stats, strict=True)}
        for group in _concat_chains(movements):  # one range for a chain of Concats: no requantization between them
            lo, hi = min(ranges[v][0] for v in group), max(ranges[v][1] for v in group)
            ranges.update({v: (lo, hi) for v in group})
        types = {v: activation_type(*r) for v, r in ranges.items()}
        _warn_empty(stats, q.verbose)
        rewriter = _Rewriter(block, store, types, moments, q)
        pending = {lay.op: lay for lay in chosen}
        add_at = {add: (out, last, epi) for add, out, last, epi in adds}
        for o in list(block.ops):
            if o in pending:
                rewriter.layer(pending[o])
            elif o in add_at and all(_is_dequantized(v) for v in (o.lhs, o.rhs)):  # type: ignore[attr-defined]
                out, last, epi = add_at[o]
                rewriter.add(o, out, last, epi)  # type: ignore[arg-type]
            elif o in movements and all(_is_dequantized(v) or v in types for v in o.operands):
                rewriter.movement(o)
        erase_dead_ops(block)

    @staticmethod
    def _movements(block: Block, chosen: list[_Layer], adds: list[tuple[graph.AddOp, SSAValue, Operation, EpilogueAttr]]
                   ) -> tuple[set[Operation], list[SSAValue]]:  # fmt: skip
        """Concats / pools (SAME_TYPE_OPS, CALIBRATED_OPS) whose every input is quantized (a layer's or
        an Add's output, or another such op's) or an element-wise chain of one (DenseNet's stem:
        Conv -> BatchNorm -> ReLU -> MaxPool; quantized there, the chain becomes a table); and those
        chains' ends (calibrated too)."""
        produced = {lay.out for lay in chosen} | {out for _, out, _, _ in adds}

        def reaches(v: SSAValue) -> bool:
            shape = shape_of(v)
            while v not in produced:
                v = chain_link(v, shape)  # type: ignore[assignment]
                if v is None:
                    return False
            return True

        found: set[Operation] = set()
        derived: list[SSAValue] = []
        for o in block.ops:
            if isinstance(o, SAME_TYPE_OPS + CALIBRATED_OPS) and o.operands and all(reaches(v) for v in o.operands):
                found.add(o)
                derived += [v for v in o.operands if v not in produced]
                produced.add(o.results[0])
        return found, derived

    @staticmethod
    def _adds(block: Block, chosen: list[_Layer]) -> list[tuple[graph.AddOp, SSAValue, Operation, EpilogueAttr]]:
        """Adds of two same-shaped layer outputs (or of earlier such adds): residual connections."""
        produced = {lay.out for lay in chosen}
        found = []
        for o in block.ops:
            if not isinstance(o, graph.AddOp) or not all(v in produced for v in (o.lhs, o.rhs)):
                continue
            if not shape_of(o.lhs) == shape_of(o.rhs) == shape_of(o.output):
                continue
            out, last, epi = o.output, o, NO_EPILOGUE
            user = _single_user(o.output)
            if user is not None and activation_epilogue(user) is not None:
                out, last, epi = user.results[0], user, activation_epilogue(user)  # type: ignore[assignment]
            produced.add(out)
            found.append((o, out, last, epi))
        return found


def _concat_chains(movements: set[Operation]) -> list[list[SSAValue]]:
    """The outputs of Concats that feed one another (DenseNet's growing feature maps), grouped."""
    parent: dict[Operation, Operation] = {}

    def root(o: Operation) -> Operation:
        while parent.get(o, o) is not o:
            o = parent[o]
        return o

    concats = [o for o in movements if isinstance(o, graph.ConcatOp)]
    for o in concats:
        for v in o.operands:
            if isinstance(v.owner, graph.ConcatOp) and v.owner in movements:
                parent[root(o)] = root(v.owner)
    groups: dict[Operation, list[SSAValue]] = {}
    for o in concats:
        groups.setdefault(root(o), []).append(o.results[0])
    return [g for g in groups.values() if len(g) > 1]


def _warn_empty(stats: list[TensorStats], verbose: bool) -> None:
    flat = [s for s in stats if s.hi - s.lo == 0]
    if flat and verbose:
        print(f"inferon: {len(flat)} calibrated tensor(s) were constant on every sample", file=sys.stderr)
