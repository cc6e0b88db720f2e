"""Converters for data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Slice,
Split, Gather / GatherND (constant indices), Expand, Tile (constant shapes), DepthToSpace, SpaceToDepth, and
Shape/Size (which fold to constants because every shape is static)."""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.registry import converter
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i64_array, shape_of, tensor_type
from inferon.ir.dialects.loop import MAX_RANK


def reshape(ctx: ImportContext, x: SSAValue, shape: tuple[int, ...]) -> SSAValue:
    """A `graph.reshape` of x to `shape` (no-op when unchanged)."""
    if shape_of(x) == tuple(shape):
        return x
    if math.prod(shape_of(x)) != math.prod(shape):
        raise ctx.error(f"cannot reshape {list(shape_of(x))} to {list(shape)}")
    op = graph.ReshapeOp.create(operands=[x], result_types=[tensor_type(shape, x.type.element_type)])  # type: ignore[attr-defined]
    return ctx.emit(op).results[0]


def transpose(ctx: ImportContext, x: SSAValue, perm: tuple[int, ...]) -> SSAValue:
    shape = shape_of(x)
    out = tuple(shape[p] for p in perm)
    props = {"perm": i64_array(perm)}
    return ctx.emit(graph.TransposeOp.create(operands=[x], properties=props, result_types=[tensor_type(out)])).results[0]


def _axes(ctx: ImportContext, node: NodeProto, rank: int) -> list[int] | None:
    """Axes from the attribute (opset < 13) or the constant second input (opset >= 13)."""
    if ctx.opset >= 13:
        if not ctx.input(1):
            return None
        axes = ctx.require_const(node.input[1], "axes").astype(np.int64).tolist()
    else:
        axes = ctx.attr("axes")
        if axes is None:
            return None
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.error(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    return out


@converter("Reshape")
def convert_reshape(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    in_shape = shape_of(x)
    target = [int(d) for d in ctx.require_const(node.input[1], "the target shape").reshape(-1)]
    allow_zero = int(ctx.attr("allowzero", 0))
    out = [in_shape[i] if d == 0 and not allow_zero and i < len(in_shape) else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        raise ctx.error(f"target shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or math.prod(in_shape) % known:
            raise ctx.error(f"cannot reshape {list(in_shape)} to {target}")
        out[out.index(-1)] = math.prod(in_shape) // known
    if any(d < 0 for d in out) or math.prod(out) != math.prod(in_shape):
        raise ctx.error(f"cannot reshape {list(in_shape)} to {target}")
    return [reshape(ctx, x, tuple(out))]


@converter("Flatten")
def convert_flatten(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axis = int(ctx.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"axis {axis} out of range for rank {len(shape)}")
    if axis < 0:  # -r <= axis < 0 counts from the back: -1 flattens to [prod(shape[:-1]), shape[-1]]
        axis += len(shape)
    return [reshape(ctx, x, (math.prod(shape[:axis]), math.prod(shape[axis:])))]


@converter("Squeeze")
def convert_squeeze(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axes = _axes(ctx, node, len(shape))
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    for a in axes:
        if shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of size {shape[a]}")
    return [reshape(ctx, x, tuple(d for i, d in enumerate(shape) if i not in axes))]


@converter("Unsqueeze")
def convert_unsqueeze(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = list(shape_of(x))
    axes = _axes(ctx, node, len(shape) + len(ctx.attr("axes", []) or []) if ctx.opset < 13 else
                 len(shape) + ctx.require_const(node.input[1], "axes").size)
    if axes is None:
        raise ctx.error("axes are required")
    for a in sorted(axes):
        shape.insert(a, 1)
    return [reshape(ctx, x, tuple(shape))]


@converter("Transpose")
def convert_transpose(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    rank = len(shape_of(x))
    perm = tuple(int(p) for p in ctx.attr("perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        raise ctx.error(f"perm {list(perm)} is not a permutation of {rank} axes")
    return [transpose(ctx, x, perm)]


@converter("Concat")
def convert_concat(ctx: ImportContext, node: NodeProto) -> list[Value]:
    names = [n for n in node.input if n]
    values = [ctx.value(n) for n in names]
    shapes = [shape_of(v) for v in values]
    rank = len(shapes[0])
    axis = ctx.attr("axis")
    if axis is None:
        raise ctx.error("attribute 'axis' is required")
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} out of range for rank {rank}")
    axis %= rank
    for s in shapes:
        if len(s) != rank or any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            raise ctx.error(f"input shapes {[list(s) for s in shapes]} differ off axis {axis}")
    values = [v for v in values if shape_of(v)[axis] > 0]
    if len(values) == 1:
        return [values[0]]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    op = graph.ConcatOp.create(
        operands=values, properties={"axis": IntegerAttr(axis, i64)}, result_types=[tensor_type(out)]
    )
    return [ctx.emit(op).results[0]]


@converter("Shape")
def convert_shape(ctx: ImportContext, node: NodeProto) -> list[Value]:
    shape = np.array(ctx.shape(node.input[0]), dtype=np.int64)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    return [shape[start : (int(end) if end is not None else None)]]


@converter("Size")
def convert_size(ctx: ImportContext, node: NodeProto) -> list[Value]:
    return [np.array(math.prod(ctx.shape(node.input[0])), dtype=np.int64)]


# ------------------------------------------------------------------- windows: Slice, Split, Gather
def window(
    ctx: ImportContext, x: SSAValue, starts: list[int], steps: list[int], counts: list[int]
) -> SSAValue:
    """A `graph.slice` of x (per axis: `counts[i]` elements from `starts[i]` by `steps[i]`); x itself
    when the window is all of it."""
    shape = shape_of(x)
    if min(counts, default=1) < 1:
        raise ctx.unsupported(f"the result has a zero-sized dimension {counts} (empty tensors are not supported)")
    if all(s == 0 and st == 1 and n == d for s, st, n, d in zip(starts, steps, counts, shape)):
        return x
    props = {"starts": i64_array(starts), "steps": i64_array(steps)}
    op = graph.SliceOp.create(operands=[x], properties=props, result_types=[tensor_type(counts, x.type.element_type)])  # type: ignore[attr-defined]
    return ctx.emit(op).results[0]


def _axis(ctx: ImportContext, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _ints(ctx: ImportContext, name: str, what: str) -> list[int]:
    value = ctx.require_const(name, what)
    if value.dtype.kind not in "iu" or value.ndim > 1:
        raise ctx.error(f"{what} must be a 1-D integer tensor, got {value.dtype} {list(value.shape)}")
    return [int(v) for v in value.reshape(-1)]


@converter("Slice")
def convert_slice(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Slice: opset 1-9 attributes starts / ends / axes; opset >= 10 constant inputs starts, ends,
    axes, steps. Negative indices count from the end; out-of-range ones are clamped (INT64_MAX ends)."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    rank = len(shape)
    if ctx.opset >= 10:
        starts, ends = _ints(ctx, node.input[1], "starts"), _ints(ctx, node.input[2], "ends")
        axes = _ints(ctx, ctx.input(3), "axes") if ctx.input(3) else None
        steps = _ints(ctx, ctx.input(4), "steps") if ctx.input(4) else [1] * len(starts)
    else:
        starts, ends = [int(v) for v in ctx.attr("starts", [])], [int(v) for v in ctx.attr("ends", [])]
        axes = ctx.attr("axes")
        steps = [1] * len(starts)
    axes = list(range(len(starts))) if axes is None else [_axis(ctx, int(a), rank) for a in axes]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    if len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} repeat an axis")
    begin, step_of, counts = [0] * rank, [1] * rank, list(shape)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise ctx.error(f"step along axis {axis} is 0")
        picked = range(*slice(start, end, step).indices(shape[axis]))  # ONNX's clamping is Python's
        begin[axis], step_of[axis], counts[axis] = (picked.start if picked else 0), step, len(picked)
    return [window(ctx, x, begin, step_of, counts)]


def _split_sizes(ctx: ImportContext, node: NodeProto, extent: int, outputs: int) -> list[int]:
    """Split lengths: the `split` attribute (opset < 13) or constant input (opset >= 13; also accepted
    at opset 1), opset 18's `num_outputs` (the last chunk smaller), else equal parts."""
    split: list[int] | None = None
    if ctx.input(1) and (ctx.opset >= 13 or ctx.opset < 2):
        split = _ints(ctx, node.input[1], "split")
    elif ctx.opset < 13 and ctx.attr("split") is not None:
        split = [int(v) for v in ctx.attr("split")]
    num_outputs = ctx.attr("num_outputs") if ctx.opset >= 18 else None
    if split is not None:
        if num_outputs is not None:
            raise ctx.error("both 'split' and 'num_outputs' are given")
    elif num_outputs is not None:
        if num_outputs != outputs or num_outputs < 1:
            raise ctx.error(f"num_outputs = {num_outputs} but the node has {outputs} outputs")
        chunk = -(-extent // num_outputs)
        split = [min(chunk, max(0, extent - i * chunk)) for i in range(num_outputs)]
    else:
        if extent % outputs:
            raise ctx.error(f"cannot split {extent} elements into {outputs} equal parts")
        split = [extent // outputs] * outputs
    if len(split) != outputs or sum(split) != extent or min(split) < 0:
        raise ctx.error(f"split {split} does not cut {extent} elements into the node's {outputs} outputs")
    return split


@converter("Split")
def convert_split(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Split: one `graph.slice` per output along `axis`."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    sizes = _split_sizes(ctx, node, shape[axis], len(node.output))
    results: list[Value] = []
    start = 0
    for size in sizes:
        begin, counts = [0] * len(shape), list(shape)
        begin[axis], counts[axis] = start, size
        results.append(window(ctx, x, begin, [1] * len(shape), counts))
        start += size
    return results


def gather_runs(ctx: ImportContext, x: SSAValue, axis: int, flat: list[int]) -> SSAValue:
    """x's entries `flat` (non-negative, in range) along `axis`: one `graph.slice` per run of indices
    in arithmetic progression, concatenated along `axis`."""
    shape = shape_of(x)
    if not flat:
        raise ctx.unsupported("empty indices give an empty tensor (empty tensors are not supported)")
    parts, i = [], 0
    while i < len(flat):  # greedy runs start, start + step, ... with step != 0
        step = flat[i + 1] - flat[i] if i + 1 < len(flat) else 1
        n = 1
        if step:
            while i + n < len(flat) and flat[i + n] - flat[i + n - 1] == step:
                n += 1
        begin, steps, counts = [0] * len(shape), [1] * len(shape), list(shape)
        begin[axis], steps[axis], counts[axis] = flat[i], step or 1, n
        parts.append(window(ctx, x, begin, steps, counts))
        i += n
    if len(parts) == 1:
        return parts[0]
    out = list(shape)
    out[axis] = len(flat)
    props = {"axis": IntegerAttr(axis, i64)}
    typ = tensor_type(out, x.type.element_type)  # type: ignore[attr-defined]
    return ctx.emit(graph.ConcatOp.create(operands=parts, properties=props, result_types=[typ])).results[0]


def _const_indices(ctx: ImportContext, name: str) -> np.ndarray:
    indices = ctx.require_const(name, "indices")
    if indices.dtype.kind not in "iu":
        raise ctx.error(f"indices must be integers, got {indices.dtype}")
    return indices.astype(np.int64)


@converter("Gather")
def convert_gather(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Gather with constant indices (any shape, negative ones from the end): one `graph.slice` per run
    of indices in arithmetic progression, concatenated, reshaped to data[:axis] + indices + data[axis+1:]."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    indices = _const_indices(ctx, node.input[1])
    flat = [int(i) for i in indices.reshape(-1)]
    extent = shape[axis]
    if any(not -extent <= i < extent for i in flat):
        raise ctx.error(f"indices {flat} are out of range for axis {axis} of size {extent}")
    y = gather_runs(ctx, x, axis, [i % extent for i in flat])
    return [reshape(ctx, y, (*shape[:axis], *indices.shape, *shape[axis + 1 :]))]


@converter("GatherND", since=11)
def convert_gather_nd(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """GatherND (opset 12 `batch_dims`) with constant indices: the data viewed as rows, a row being
    what one index tuple selects (data[b.., i_1.., i_k, :..]), gathered like Gather's rows (runs in
    arithmetic progression, concatenated), reshaped to indices.shape[:-1] + data.shape[b + k:]."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    indices = _const_indices(ctx, node.input[1])
    if not indices.size:
        raise ctx.unsupported("empty indices give an empty tensor (empty tensors are not supported)")
    b = int(ctx.attr("batch_dims", 0))
    k = indices.shape[-1] if indices.ndim else 0
    if not 0 <= b < min(len(shape), indices.ndim) or indices.shape[:b] != shape[:b]:
        raise ctx.error(f"batch_dims {b} does not fit data {list(shape)} and indices {list(indices.shape)}")
    if not 1 <= k <= len(shape) - b:
        raise ctx.error(f"index tuples of length {k} do not fit data {list(shape)} after {b} batch dimension(s)")
    dims = shape[b : b + k]
    tuples = indices.reshape(math.prod(shape[:b]), -1, k)
    if np.any(tuples < -np.array(dims)) or np.any(tuples >= np.array(dims)):
        raise ctx.error(f"indices are out of range for the data dimensions {list(dims)}")
    rows_per_batch = math.prod(dims)
    local = np.ravel_multi_index(tuple((tuples % np.array(dims)).transpose(2, 0, 1)), dims)
    rows = (local + np.arange(tuples.shape[0])[:, None] * rows_per_batch).reshape(-1)
    view = reshape(ctx, x, (math.prod(shape[: b + k]), math.prod(shape[b + k :])))
    y = gather_runs(ctx, view, 0, [int(r) for r in rows])
    return [reshape(ctx, y, (*indices.shape[:-1], *shape[b + k :]))]


def _broadcast_count(counts: list[int]) -> int:
    """How many dimensions a window of these counts keeps (size-1 ones are dropped)."""
    return sum(1 for n in counts if n > 1)


@converter("Expand", since=8)
def convert_expand(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Expand to a constant shape (bidirectional broadcast): a `graph.slice` of x (rank-extended with
    leading 1s) whose broadcast axes have step 0."""
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    target = _ints(ctx, node.input[1], "shape")
    rank = max(len(shape), len(target))
    xs = (1,) * (rank - len(shape)) + tuple(shape)
    ts = (1,) * (rank - len(target)) + tuple(target)
    if any(t < 0 or (d != t and d != 1 and t != 1) for d, t in zip(xs, ts)):
        raise ctx.error(f"shape {target} does not broadcast with the input's {list(shape)}")
    out = [d if t == 1 else t for d, t in zip(xs, ts)]
    if _broadcast_count(out) > MAX_RANK:
        raise ctx.unsupported(f"Expand to {out}: more than {MAX_RANK} dimensions")
    steps = [0 if n > d else 1 for d, n in zip(xs, out)]
    return [window(ctx, reshape(ctx, x, xs), [0] * rank, steps, out)]


@converter("Tile", since=6)
def convert_tile(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Tile with constant repeats: x viewed as [1, d0, 1, d1, ..], a `graph.slice` of counts [r0, d0,
    r1, d1, ..] with step 0 on the repeat axes, reshaped to [r0 d0, r1 d1, ..]; in several such
    steps when one would exceed the kernels' rank."""
    x = ctx.value(node.input[0])
    shape = list(shape_of(x))
    repeats = _ints(ctx, node.input[1], "repeats")
    if len(repeats) != len(shape) or min(repeats, default=1) < 0:
        raise ctx.error(f"repeats {repeats} must be one non-negative count per axis of {shape}")
    if min(repeats, default=1) == 0:
        raise ctx.unsupported(f"repeats {repeats} give an empty tensor (empty tensors are not supported)")
    todo = [a for a, r in enumerate(repeats) if r > 1]
    while todo:
        room = MAX_RANK - _broadcast_count(shape)
        if room < 1:
            raise ctx.unsupported(f"Tile of {shape}: more than {MAX_RANK} dimensions")
        now, todo = todo[:room], todo[room:]
        split, steps, counts = [], [], []
        for a, d in enumerate(shape):
            if a in now:
                split += [1, d]
                steps += [0, 1]
                counts += [repeats[a], d]
            else:
                split.append(d)
                steps.append(1)
                counts.append(d)
        y = window(ctx, reshape(ctx, x, tuple(split)), [0] * len(split), steps, counts)
        shape = [d * repeats[a] if a in now else d for a, d in enumerate(shape)]
        x = reshape(ctx, y, tuple(shape))
    return [x]


# ------------------------------------------------------------------- DepthToSpace, SpaceToDepth
def _blocks(ctx: ImportContext, x: SSAValue) -> tuple[int, int, int, int, int]:
    """(N, C, H, W, blocksize) of a DepthToSpace / SpaceToDepth input."""
    shape = shape_of(x)
    if len(shape) != 4:
        raise ctx.error(f"input must be rank 4 (NCHW), got {list(shape)}")
    b = ctx.attr("blocksize")
    if b is None or int(b) < 1:
        raise ctx.error(f"attribute 'blocksize' must be a positive integer, got {b}")
    return (*shape, int(b))  # type: ignore[return-value]


def _mode(ctx: ImportContext) -> str:
    """The `mode` attribute: DCR (depth-column-row, the default) or CRD."""
    mode = ctx.attr("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"mode '{mode}' is neither DCR nor CRD")
    return mode


@converter("DepthToSpace")
def convert_depth_to_space(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """DepthToSpace (DCR or CRD mode): reshape, transpose, reshape."""
    x = ctx.value(node.input[0])
    n, c, h, w, b = _blocks(ctx, x)
    if c % (b * b):
        raise ctx.error(f"{c} channels are not divisible by blocksize^2 = {b * b}")
    if _mode(ctx) == "DCR":
        split, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
    else:
        split, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    y = transpose(ctx, reshape(ctx, x, split), perm)
    return [reshape(ctx, y, (n, c // (b * b), h * b, w * b))]


@converter("SpaceToDepth")
def convert_space_to_depth(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """SpaceToDepth (DCR, or opset 28's CRD mode): reshape, transpose, reshape."""
    x = ctx.value(node.input[0])
    n, c, h, w, b = _blocks(ctx, x)
    if h % b or w % b:
        raise ctx.error(f"spatial size {h}x{w} is not divisible by blocksize {b}")
    perm = (0, 3, 5, 1, 2, 4) if _mode(ctx) == "DCR" else (0, 1, 3, 5, 2, 4)
    y = transpose(ctx, reshape(ctx, x, (n, c, h // b, b, w // b, b)), perm)
    return [reshape(ctx, y, (n, c * b * b, h // b, w // b))]
