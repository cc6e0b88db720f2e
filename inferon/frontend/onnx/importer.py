"""ONNX ModelProto → `graph` dialect.

The importer owns naming, constants and shapes; op semantics live in the converter modules
(`registry.CONVERTER_MODULES`). Every ONNX value becomes either a statically shaped SSA
value or a numpy constant: nodes whose inputs are all constants (Shape arithmetic, ConstantOfShape,
Constant, ...) are evaluated at import time with ONNX's reference implementation, so Shape-driven
reshapes fold away. Constants used as tensors become `graph.weight` handles into the weight store.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from inferon.errors import ModelImportError, UnsupportedError
from inferon.frontend.onnx.registry import load_converters, lookup
from inferon.ir.attrs import QuantType
from inferon.ir.dialects.graph import DequantizeOp, QuantizeOp, WeightOp, is_index, quant_of, shape_of, tensor_type
from inferon.ir.quant import dequantize
from inferon.ir.weights import WeightStore

Value = SSAValue | np.ndarray
MIN_OPSET = 7
FLOAT = onnx.TensorProto.FLOAT
# graph input dtypes -> element type (None: f32); integer inputs hold their stored integers
INPUT_TYPES = {
    FLOAT: None,
    onnx.TensorProto.UINT8: QuantType.make(np.uint8, [1.0], [0]),
    onnx.TensorProto.INT8: QuantType.make(np.int8, [1.0], [0]),
    onnx.TensorProto.BOOL: QuantType.make(np.uint8, [1.0], [0]),  # bytes 0 / 1, read as float 1.0 / 0.0
}
BOOL = onnx.TensorProto.BOOL
# ops imported even when all their inputs are constants: DequantizeLinear of a weight keeps the
# integers (and their scales) for fold-qdq instead of becoming a float constant
NO_FOLD = frozenset({"DequantizeLinear"})
# ops whose converters accept quantized (uint8/int8) tensors (data-movement ops go through
# ops_quant.convert_on_dequantized); any other op on one is an error
QUANT_AWARE = frozenset({
    "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
    "QLinearAveragePool", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax", "QLinearConcat", "QGemm",
    "MatMulInteger", "ConvInteger", "Cast", "ArgMax", "ArgMin",
})  # fmt: skip
# ops that accept int64 tensors (ArgMax / ArgMin results; those may also be graph outputs): Shape and
# Size read only the static shape
INDEX_AWARE = frozenset({"Cast", "Identity", "Shape", "Size"})

DYNAMIC_AWARE = frozenset({"MatMulInteger", "ConvInteger", "DequantizeLinear"})


@dataclass
class ImportContext:
    """State of one import: the block being built, the value environment and the weight store."""

    opset: int
    weights: WeightStore
    block: Block
    env: dict[str, Value] = field(default_factory=dict)
    node: onnx.NodeProto | None = None
    # DynamicQuantizeLinear's integer results (float tensors of integers with a run-time zero point):
    # only the integer ops and DequantizeLinear may read them
    dynamic: set[SSAValue] = field(default_factory=set)
    # DequantizeLinear(constant) results (those stay quantized weights for fold-qdq): their integers
    # and quantization, dequantized only where a parameter must be a compile-time constant
    dequantized: dict[str, tuple[np.ndarray, QuantType]] = field(default_factory=dict)

    # -- errors -------------------------------------------------------------------------------
    def error(self, message: str, cls: type[ModelImportError] = ModelImportError) -> ModelImportError:
        node = self.node
        return cls(
            message,
            node=(node.name or f"#{node.output[0] if node.output else '?'}") if node else None,
            op_type=node.op_type if node else None,
            opset=self.opset,
        )

    def unsupported(self, message: str) -> UnsupportedError:
        err = self.error(message, UnsupportedError)
        assert isinstance(err, UnsupportedError)
        return err

    # -- values -------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and name in self.env

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of `name`, or None if it is computed at run time."""
        value = self.env.get(name)
        return value if isinstance(value, np.ndarray) else None

    def require_const(self, name: str, what: str) -> np.ndarray:
        value = self.const(name)
        if value is None and name in self.dequantized:
            q, quant = self.dequantized[name]
            value = dequantize(q, quant.scale_array(), quant.zero_point_array(), quant.axis.value.data)
        if value is None:
            raise self.unsupported(f"{what} ('{name}') must be a compile-time constant")
        return value

    def shape(self, name: str) -> tuple[int, ...]:
        value = self.env[name]
        return tuple(value.shape) if isinstance(value, np.ndarray) else shape_of(value)

    def value(self, name: str) -> SSAValue:
        """`name` as an SSA tensor, materialising a constant as a `graph.weight`."""
        value = self.env[name]
        if isinstance(value, np.ndarray):
            return self.weight(value, name)
        return value

    def weight(self, array: np.ndarray, hint: str = "w") -> SSAValue:
        if array.dtype.kind not in "fiub":
            raise self.unsupported(f"constant of dtype {array.dtype} cannot be used as a tensor")
        if array.dtype.kind != "f":
            raise self.unsupported(
                f"constant of dtype {array.dtype} used as a run-time tensor (only float32 tensors are supported)"
            )
        handle = self.weights.add(array.astype(np.float32), hint)
        return self.emit(WeightOp(handle, tuple(array.shape))).results[0]

    def qweight(self, array: np.ndarray, quant: QuantType, hint: str = "w") -> SSAValue:
        """A quantized weight: its integers in the store, its scales in the `!graph.quant` type."""
        handle = self.weights.add(array.astype(quant.dtype), hint, keep_dtype=True)
        return self.emit(WeightOp(handle, tuple(array.shape), quant)).results[0]

    def emit(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    # -- attributes ---------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        assert self.node is not None
        for a in self.node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def input(self, index: int) -> str:
        """Name of the node's input `index`, or '' when absent."""
        assert self.node is not None
        return self.node.input[index] if index < len(self.node.input) else ""


def load_proto(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    """Parse a model from a path, bytes or ModelProto, with a clear error for malformed files."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelImportError(f"model file '{path}' does not exist")
        try:
            return onnx.load(str(path))
        except Exception as exc:  # protobuf raises DecodeError, onnx raises others
            raise ModelImportError(f"'{path}' is not a valid ONNX model: {exc}") from exc
    try:
        return onnx.load_model_from_string(bytes(model))
    except Exception as exc:
        raise ModelImportError(f"bytes are not a valid ONNX model: {exc}") from exc


def _opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ModelImportError("model imports no version of the default ONNX opset")


def _input_shape(
    vi: onnx.ValueInfoProto, given: Mapping[str, Sequence[int]]
) -> tuple[int, ...]:
    ttype = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedError(f"input '{vi.name}' is not a tensor")
    if ttype.elem_type not in INPUT_TYPES:
        dtype = onnx.TensorProto.DataType.Name(ttype.elem_type)
        raise UnsupportedError(f"input '{vi.name}' has dtype {dtype}; only FLOAT, UINT8, INT8 and BOOL inputs are "
                               "supported")  # fmt: skip
    if vi.name in given:
        shape = tuple(int(d) for d in given[vi.name])
        if ttype.HasField("shape"):
            declared = ttype.shape.dim
            if len(declared) != len(shape):
                raise ModelImportError(
                    f"input '{vi.name}': given shape {list(shape)} has rank {len(shape)}, "
                    f"the model declares rank {len(declared)}"
                )
            for i, d in enumerate(declared):
                if d.HasField("dim_value") and d.dim_value != shape[i]:
                    raise ModelImportError(
                        f"input '{vi.name}': given shape {list(shape)} conflicts with the model's "
                        f"dimension {i} = {d.dim_value}"
                    )
        return shape
    if not ttype.HasField("shape"):
        raise ModelImportError(
            f"input '{vi.name}' has no shape; give one with --input-shape {vi.name}=1,3,224,224"
        )
    dims = []
    for i, d in enumerate(ttype.shape.dim):
        if d.HasField("dim_value") and d.dim_value == 0:
            raise UnsupportedError(
                f"input '{vi.name}' has a zero-sized dimension {i}; empty tensors are not supported"
            )
        if not d.HasField("dim_value") or d.dim_value < 0:
            label = d.dim_param or "?"
            if i == 0 and len(ttype.shape.dim) >= 2:  # a dynamic batch: batch 1, as most deployments run
                print(f"inferon: input '{vi.name}' has a dynamic batch dimension ('{label}'): compiling for "
                      f"batch 1 (choose another with --input-shape {vi.name}=...)", file=sys.stderr)  # fmt: skip
                dims.append(1)
                continue
            raise ModelImportError(
                f"input '{vi.name}' has a dynamic dimension {i} ('{label}'); give a static shape "
                f"with --input-shape {vi.name}=... (Python: input_shapes={{'{vi.name}': (...)}})"
            )
        dims.append(d.dim_value)
    return tuple(dims)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _fold_softmax(ctx: ImportContext, node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    """Softmax / LogSoftmax; before opset 13 over the input coerced to 2-D at `axis` (default 1)."""
    axis = int(_attr(node, "axis", 1 if ctx.opset < 13 else -1))
    axis = axis + x.ndim if axis < 0 else axis
    v = x.astype(np.float64)
    flat = v.reshape(int(np.prod(x.shape[:axis])), -1) if ctx.opset < 13 else v
    over = 1 if ctx.opset < 13 else axis
    shifted = flat - flat.max(axis=over, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=over, keepdims=True))
    out = shifted - log_sum if node.op_type == "LogSoftmax" else np.exp(shifted - log_sum)
    return out.reshape(x.shape).astype(x.dtype)


def _fold_lrn(ctx: ImportContext, node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    """LRN across channels: x / (bias + alpha / size * sum of squares over the window) ** beta."""
    size = int(_attr(node, "size", 1))
    alpha, beta, bias = (float(_attr(node, k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    v = x.astype(np.float64)
    sq = np.zeros_like(v)
    lo, hi = (size - 1) // 2, (size - 1) - (size - 1) // 2  # floor / ceil of (size - 1) / 2
    for c in range(x.shape[1]):
        sq[:, c] = (v[:, max(0, c - lo) : c + hi + 1] ** 2).sum(axis=1)
    return (v / (bias + alpha / size * sq) ** beta).astype(x.dtype)


# Folded with numpy where onnx.reference gets the op wrong (LRN; Softmax / LogSoftmax before opset 13).
_NUMPY_FOLDS = {"Softmax": _fold_softmax, "LogSoftmax": _fold_softmax, "LRN": _fold_lrn}


def _crop_for_pad(ctx: ImportContext, node: onnx.NodeProto, feeds: dict[str, np.ndarray]) -> None:
    """Apply a constant Pad's negative pads (crops) to its data in `feeds` and zero them (in the
    input or, before opset 11, the node's attribute): onnx.reference's np.pad rejects them."""
    rank = feeds["i0"].ndim
    if ctx.opset < 11:
        attr = next((a for a in node.attribute if a.name == "pads"), None)
        pads = [int(p) for p in attr.ints] if attr is not None else []
        axes = list(range(rank))
    else:
        pads = [int(p) for p in np.asarray(feeds.get("i1", [])).reshape(-1)]
        axes = [int(a) % rank for a in feeds["i3"].reshape(-1)] if "i3" in feeds else list(range(rank))
    if len(pads) != 2 * len(axes) or min(pads, default=0) >= 0:
        return  # malformed (the reference says so) or nothing to crop
    window = [slice(None)] * rank
    for i, a in enumerate(axes):
        b, e = pads[i], pads[i + len(axes)]
        window[a] = slice(max(0, -b), feeds["i0"].shape[a] + min(0, e))
    feeds["i0"] = feeds["i0"][tuple(window)]
    kept = [max(0, p) for p in pads]
    if ctx.opset < 11:
        del attr.ints[:]  # type: ignore[union-attr]
        attr.ints.extend(kept)  # type: ignore[union-attr]
    else:
        feeds["i1"] = np.array(kept, dtype=np.int64)


def _fold(ctx: ImportContext, node: onnx.NodeProto) -> list[Value]:
    """Evaluate a node whose inputs are all constants (onnx.reference, or numpy for _NUMPY_FOLDS)."""
    from onnx.reference import ReferenceEvaluator

    if node.op_type in _NUMPY_FOLDS and node.domain in ("", "ai.onnx") and len(node.input) == 1:
        x = ctx.env[node.input[0]]
        assert isinstance(x, np.ndarray)
        return [_NUMPY_FOLDS[node.op_type](ctx, node, x)]

    names = [f"i{i}" for i in range(len(node.input))]
    clone = onnx.NodeProto()
    clone.CopyFrom(node)
    del clone.input[:]
    clone.input.extend([n if node.input[i] else "" for i, n in enumerate(names)])
    feeds = {names[i]: ctx.env[name] for i, name in enumerate(node.input) if name}
    if node.op_type == "Pad" and node.domain in ("", "ai.onnx"):
        _crop_for_pad(ctx, clone, feeds)
    graph = onnx.helper.make_graph(
        [clone],
        "fold",
        [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in feeds],
        [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in clone.output],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", ctx.opset)])
    try:
        evaluator = ReferenceEvaluator(model)
        outputs = evaluator.run(None, feeds)
    except Exception as exc:
        raise ctx.error(f"constant folding failed: {exc}") from exc
    return [np.asarray(o) for o in outputs]


def _import_nodes(ctx: ImportContext, nodes: Sequence[onnx.NodeProto], opset: int) -> None:
    """Convert `nodes` (a graph's, or a branch inlined into it) in order, binding their outputs in ctx.env."""
    from inferon.frontend.onnx import ops_quant

    for index, node in enumerate(nodes):
        ctx.node = node
        if not node.name:
            node.name = f"{node.op_type}_{index}"
        for name in node.input:
            if name and name not in ctx.env:
                raise ctx.error(
                    f"input '{name}' is neither a graph input, an initializer nor the output of an "
                    "earlier node (missing initializer, or nodes not in topological order)"
                )
        if node.op_type == "If" and node.domain in ("", "ai.onnx"):
            _inline_if(ctx, node, opset)
            continue
        for g in node.attribute:
            if g.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ctx.unsupported("control flow (subgraph attributes) is not supported")
        dynamic = [n for n in node.input if n and not isinstance(ctx.env[n], np.ndarray) and ctx.env[n] in ctx.dynamic]
        if dynamic and node.op_type not in DYNAMIC_AWARE:
            raise ctx.unsupported(
                f"input '{dynamic[0]}' is a DynamicQuantizeLinear integer result; only MatMulInteger, ConvInteger "
                "and DequantizeLinear may read it"
            )
        indices = [n for n in node.input if n and not isinstance(ctx.env[n], np.ndarray) and is_index(ctx.env[n])]
        if indices and node.op_type not in INDEX_AWARE:
            raise ctx.unsupported(
                f"input '{indices[0]}' is an int64 tensor (an ArgMax / ArgMin result); {node.op_type} on int64 "
                "tensors is not supported (a Cast to FLOAT or a graph output reads it)"
            )
        quantized = [n for n in node.input if n and not isinstance(ctx.env[n], np.ndarray) and quant_of(ctx.env[n])]
        if quantized and node.op_type not in QUANT_AWARE:
            if node.op_type in ops_quant.PASSTHROUGH and node.domain in ("", "ai.onnx"):
                results = ops_quant.convert_on_dequantized(ctx, node)
                for name, value in zip(node.output, results):
                    if name:
                        ctx.env[name] = value
                continue
            if node.op_type == "QuantizeLinear" and node.input[0] not in quantized:  # a run-time zero point
                raise ctx.unsupported(f"the zero point ('{quantized[0]}') must be a compile-time constant")
            raise ctx.unsupported(
                f"input '{quantized[0]}' is a quantized (integer) tensor; {node.op_type} on quantized tensors "
                "is not supported (the QLinear* ops, DequantizeLinear and data-movement ops read them)"
            )
        if node.op_type not in NO_FOLD and all(not n or isinstance(ctx.env[n], np.ndarray) for n in node.input):
            if node.domain not in ("", "ai.onnx"):
                lookup(node, opset)  # raises the unsupported-domain error
            results: list[Value] = _fold(ctx, node)
        else:
            results = lookup(node, opset)(ctx, node)
        for name, value in zip(node.output, results):
            if name:
                ctx.env[name] = value


def _inline_if(ctx: ImportContext, node: onnx.NodeProto, opset: int) -> None:
    """An If whose condition is a compile-time constant (PyTorch exports shape tests as If: their
    Shape / Gather / Equal fold at import) is replaced by the nodes of the branch it takes."""
    cond = ctx.const(node.input[0]) if node.input and node.input[0] in ctx.env else None
    if cond is None:
        raise ctx.unsupported("control flow: If with a run-time condition is not supported (only a condition "
                              "known at compile time, whose branch is inlined)")  # fmt: skip
    if cond.size != 1:
        raise ctx.error(f"the condition must hold one element, got shape {list(cond.shape)}")
    key = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
    branch = next((a.g for a in node.attribute if a.name == key), None)
    if branch is None:
        raise ctx.error(f"missing attribute {key}")
    if len(branch.output) != len(node.output):
        raise ctx.error(f"{key} has {len(branch.output)} outputs, the node {len(node.output)}")
    for init in branch.initializer:
        ctx.env[init.name] = numpy_helper.to_array(init)
    outer = ctx.node
    for i, sub in enumerate(branch.node):  # error messages name a branch node after its If
        sub.name = f"{node.name}/{key}/{sub.name or f'{sub.op_type}_{i}'}"
    _import_nodes(ctx, list(branch.node), opset)
    ctx.node = outer
    for name, out in zip(node.output, branch.output, strict=True):
        if name:
            if out.name not in ctx.env:
                raise ctx.error(f"{key} output '{out.name}' is not produced by any of its nodes")
            ctx.env[name] = ctx.env[out.name]


def import_model(
    model: onnx.ModelProto | str | Path | bytes,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    weights: WeightStore | None = None,
) -> tuple[ModuleOp, WeightStore]:
    """Import an ONNX model into a `builtin.module` holding `func.func @main` of graph ops."""
    load_converters()

    proto = load_proto(model)
    graph = proto.graph
    opset = _opset(proto)
    if opset < MIN_OPSET:
        raise UnsupportedError(f"opset {opset} is too old; Inferon supports opset {MIN_OPSET} and later")
    if opset > onnx.defs.onnx_opset_version():
        raise UnsupportedError(
            f"the model imports opset {opset}, newer than the installed onnx package knows "
            f"({onnx.defs.onnx_opset_version()}); upgrade onnx or export the model at an older opset"
        )
    given = dict(input_shapes or {})
    store = weights or WeightStore()

    initializers: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        try:
            initializers[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise ModelImportError(f"initializer '{init.name}' cannot be read: {exc}") from exc

    runtime_inputs = [vi for vi in graph.input if vi.name not in initializers]
    unknown = set(given) - {vi.name for vi in runtime_inputs}
    if unknown:
        raise ModelImportError(
            f"--input-shape names unknown input(s) {sorted(unknown)}; the model's inputs are "
            f"{[vi.name for vi in runtime_inputs]}"
        )
    shapes = [_input_shape(vi, given) for vi in runtime_inputs]
    # uint8 / int8 inputs: their stored integers (scale 1, zero point 0); the DequantizeLinear,
    # QLinear* or Cast reading them relabels them with their own parameters
    block = Block(arg_types=[tensor_type(s, INPUT_TYPES[vi.type.tensor_type.elem_type])
                             for s, vi in zip(shapes, runtime_inputs, strict=True)])  # fmt: skip
    ctx = ImportContext(opset=opset, weights=store, block=block)
    ctx.env.update(initializers)
    for vi, arg in zip(runtime_inputs, block.args):
        ctx.env[vi.name] = arg
        if vi.type.tensor_type.elem_type == BOOL:  # a bool tensor is float 1.0 / 0.0 inside the model
            ctx.env[vi.name] = ctx.emit(DequantizeOp(arg)).results[0]

    _import_nodes(ctx, graph.node, opset)
    ctx.node = None

    returns: list[SSAValue] = []
    out_types = []
    out_names = [vo.name for vo in graph.output]
    for i, vo in enumerate(graph.output):
        if vo.name in out_names[:i]:
            raise UnsupportedError(
                f"graph output '{vo.name}' is listed twice (outputs {out_names.index(vo.name)} and {i}); the compiled "
                "model's outputs are named, so each must be distinct (add an Identity node for the copy)"
            )
        if vo.name not in ctx.env:
            raise ModelImportError(f"graph output '{vo.name}' is not produced by any node")
        value = ctx.env[vo.name]
        if isinstance(value, np.ndarray) and value.dtype.kind != "f":
            raise UnsupportedError(
                f"graph output '{vo.name}' is a {value.dtype} constant; only float32 outputs are supported"
            )
        ssa = ctx.value(vo.name)
        q = quant_of(ssa)
        declared = vo.type.tensor_type.elem_type if vo.type.HasField("tensor_type") else 0
        if ssa in ctx.dynamic:
            raise UnsupportedError(f"graph output '{vo.name}' is a DynamicQuantizeLinear integer result (a run-time "
                                   "zero point); only float32 tensors and statically quantized uint8 / int8 tensors "
                                   "can be graph outputs")  # fmt: skip
        if declared == BOOL and q is None and not is_index(ssa):  # 1.0 / 0.0 back to bytes
            ssa = ctx.emit(QuantizeOp(ssa, INPUT_TYPES[BOOL])).results[0]
        elif is_index(ssa):
            if declared not in (0, onnx.TensorProto.INT64):
                raise ModelImportError(f"graph output '{vo.name}' is declared "
                                       f"{onnx.TensorProto.DataType.Name(declared)} but is int64 (ArgMax / ArgMin)")  # fmt: skip
        elif (q is not None and q.dtype.itemsize != 1) or (q is None and declared not in (0, FLOAT)):
            dtype = onnx.TensorProto.DataType.Name(declared) if declared else str(q.dtype if q else "?")
            raise UnsupportedError(
                f"graph output '{vo.name}' is {dtype} (integer results like MatMulInteger's are computed as float32 "
                "until a Cast); only float32, uint8, int8 and int64 (ArgMax / ArgMin) outputs are supported"
            )
        returns.append(ssa)
        out_types.append(ssa.type)
    block.add_op(func.ReturnOp(*returns))

    def names_attr(values: list[onnx.ValueInfoProto]) -> ArrayAttr[DictionaryAttr]:
        """Each tensor's name, and `inferon.dtype = "bool"` on bool ones (bytes in the model's ABI)."""
        attrs = []
        for vi in values:
            entries: dict[str, Attribute] = {"inferon.name": StringAttr(vi.name)}
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == BOOL:
                entries["inferon.dtype"] = StringAttr("bool")
            attrs.append(DictionaryAttr(entries))
        return ArrayAttr(attrs)

    fn = func.FuncOp(
        "main",
        ([a.type for a in block.args], out_types),
        Region(block),
        arg_attrs=names_attr(runtime_inputs),
        res_attrs=names_attr(list(graph.output)),
    )
    module = ModuleOp([fn])
    try:
        module.verify()
    except Exception as exc:
        raise ModelImportError(f"imported IR does not verify: {exc}") from exc
    return module, store
