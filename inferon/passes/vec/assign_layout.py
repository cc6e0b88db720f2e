"""assign-layout: choose the layout of each activation buffer, NCHW or blocked NCHWc8 (`inferon.ir.layout`).

Preconditions: vec level after `pack-weights` (the lanes GEMMs are known), before `plan-memory`.

NCHW is what every kernel reads and writes. Some kernels hold eight channels of one pixel in a vector
register and pay a transpose per 8 x 8 block to meet NCHW: the lanes GEMM (`vec.gemm` with
`a_lanes`: output channels are its lanes) on its stores, and the channel-blocked depthwise kernel on
its loads and stores. Between such kernels NCHWc8 removes the transposes: a depthwise-separable
block (1x1 expand, depthwise, squeeze-excite, 1x1 project, residual) runs in NCHWc8 end to end, and
the layout changes only where a kernel that reads one layout meets a buffer of the other, inside
that kernel (no conversion ops).

A buffer (a `loop.alloc` of a float [N, C, H, W], C a multiple of 8, H * W > 1) becomes NCHWc8 when
every op touching it can take it that way:

- `vec.gemm` with `a_lanes` and one weight matrix: its B (a plain [K, N] activation, no im2col), its
  C with the residual (both, or neither);
- `loop.depthwise_conv2d` with one output channel per input channel: its input; its output with the
  residual;
- `loop.global_pool` (float): its input (its [N, C, 1, 1] output is the same in both layouts);
- `loop.unary`: input and output together; `loop.binary` over the [N, C, H, W] of its output:
  same-shape operands together with the output, per-channel operands ([N or 1, C, 1, 1]) as they
  are (the op's iteration space becomes the blocked view [N, C / 8, H * W, 8]);

and the group of buffers tied together this way holds a depthwise conv's input or output or a lanes
GEMM's output (elsewhere NCHWc8 gains nothing). Everything else keeps NCHW: graph inputs and outputs,
row-panel GEMMs, pools, concat views, ... `--layout nchw` (option `mode`) keeps NCHW everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from inferon.errors import PassError
from inferon.ir.dialects import loop, vec
from inferon.ir.dialects.graph import i64_array, ints
from inferon.ir.layout import BLOCK, can_block, is_nchwc8, nchwc8

MODES = ("auto", "nchw")


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def _is_full(strides: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether strides address a contiguous array of `shape` (any stride on a size-1 axis)."""
    return all(d == 1 or s == c for s, c, d in zip(strides, _contiguous(shape), shape, strict=True))


def _is_channel_vector(strides: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """A per-channel operand of a rank-4 binary op: strides [s0, 1, 0, 0] (s0: C or 0)."""
    return len(strides) == 4 and strides[1] == 1 and strides[2] == 0 and strides[3] == 0 and strides[0] in (0, shape[1])


@dataclass
class _Roles:
    """How one op can take its buffers in NCHWc8: `free` operands independently, each `tied` group
    only all together; `gain`: operands whose NCHWc8 saves this op transposes."""

    free: list[SSAValue]
    tied: list[list[SSAValue]]
    gain: list[SSAValue]


def _gemm_roles(op: vec.GemmOp) -> _Roles:
    roles = _Roles([], [], [])
    if op.a_lanes is None or ints(op.batch)[1] != 1:
        return roles
    m, n, k = ints(op.dims)
    _, ldb, ldc = ints(op.leading)
    if op.b_im2col is None and op.b_packed is None and ldb == n and _per_item(op.b, k, n, ints(op.b_strides)[0]):
        roles.free.append(op.b)
    if ldc == n and _per_item(op.c, m, n, ints(op.c_strides)[0]):
        group = [op.c] + ([op.residual] if op.residual is not None else [])
        roles.tied.append(group)
        roles.gain.append(op.c)
    return roles


def _per_item(value: SSAValue, channels: int, pixels: int, item_stride: int) -> bool:
    """Whether a GEMM operand is a whole [N, channels, H, W] buffer with H * W = pixels."""
    shape = value.type.get_shape()  # type: ignore[attr-defined]
    outer = shape[0] if len(shape) == 4 else 0
    return len(shape) == 4 and shape[1] == channels and shape[2] * shape[3] == pixels and (
        outer == 1 or item_stride == channels * pixels
    )


def _roles(op: Operation) -> _Roles:
    if isinstance(op, vec.GemmOp):
        return _gemm_roles(op)
    if isinstance(op, loop.DepthwiseConv2dOp):
        c = op.input.type.get_shape()[1]  # type: ignore[attr-defined]
        if op.weight.type.get_shape()[0] != c:  # type: ignore[attr-defined]
            return _Roles([], [], [])
        out = [op.output] + ([op.residual] if op.residual is not None else [])
        return _Roles([op.input], [out], [op.input, op.output])
    if isinstance(op, loop.GlobalPoolOp) and op.quant is None:
        return _Roles([op.input], [], [])
    if isinstance(op, loop.UnaryOp):
        return _Roles([], [[op.input, op.output]], [])
    if isinstance(op, loop.BinaryOp):
        shape = ints(op.shape)
        out_shape = tuple(op.output.type.get_shape())  # type: ignore[attr-defined]
        if len(shape) != 4 or shape != out_shape:
            return _Roles([], [], [])
        group = [op.output]
        for value, strides in ((op.lhs, ints(op.lhs_strides)), (op.rhs, ints(op.rhs_strides))):
            if _is_full(strides, shape) and tuple(value.type.get_shape()) == shape:  # type: ignore[attr-defined]
                group.append(value)
            elif not _is_channel_vector(strides, shape):
                return _Roles([], [], [])
        return _Roles([], [group], [])
    return _Roles([], [], [])


class _Groups:
    """Union-find over buffers."""

    def __init__(self) -> None:
        self.parent: dict[SSAValue, SSAValue] = {}

    def find(self, v: SSAValue) -> SSAValue:
        self.parent.setdefault(v, v)
        while self.parent[v] is not v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: SSAValue, b: SSAValue) -> None:
        self.parent[self.find(a)] = self.find(b)


def choose_nchwc8(module: ModuleOp) -> set[SSAValue]:
    """The buffers to lay out as NCHWc8 (see the module docstring)."""
    candidates = {
        o.result for o in module.walk() if isinstance(o, loop.AllocOp) and can_block(o.result.type)
    }
    groups = _Groups()
    bad: set[SSAValue] = set()
    gain: set[SSAValue] = set()
    for op in module.walk():
        if isinstance(op, loop.AllocOp):
            continue
        roles = _roles(op)
        capable = set(roles.free)
        for group in roles.tied:
            capable.update(group)
            for v in group[1:]:
                groups.union(group[0], v)
        gain.update(roles.gain)
        for v in op.operands:
            if v in candidates and v not in capable:
                bad.add(v)
    members: dict[SSAValue, list[SSAValue]] = {}
    for v in set(groups.parent) | candidates:
        members.setdefault(groups.find(v), []).append(v)
    chosen: set[SSAValue] = set()
    for group in members.values():
        if all(v in candidates and v not in bad for v in group) and any(v in gain for v in group):
            chosen.update(group)
    return chosen


def _rewrite_binary(op: loop.BinaryOp) -> None:
    """The blocked view [N, C / 8, H * W, 8] of a binary op with an NCHWc8 output and a per-channel operand."""
    n, c, h, w = ints(op.shape)
    if _is_full(ints(op.lhs_strides), (n, c, h, w)) and _is_full(ints(op.rhs_strides), (n, c, h, w)):
        return  # same shape: element-wise over the same memory order
    full = (c * h * w, h * w * BLOCK, BLOCK, 1)

    def blocked(strides: tuple[int, ...]) -> tuple[int, ...]:
        return (strides[0], BLOCK, 0, 1) if _is_channel_vector(strides, (n, c, h, w)) else full

    op.shape = i64_array((n, c // BLOCK, h * w, BLOCK))
    op.lhs_strides = i64_array(blocked(ints(op.lhs_strides)))
    op.rhs_strides = i64_array(blocked(ints(op.rhs_strides)))


@dataclass(frozen=True)
class AssignLayoutPass(ModulePass):
    """Lay out buffers between channel-vector kernels as NCHWc8 (`mode` "auto"), or keep NCHW ("nchw")."""

    name = "assign-layout"
    mode: str = "auto"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.mode not in MODES:
            raise PassError(f"assign-layout: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "nchw":
            return
        chosen = choose_nchwc8(op)
        for alloc in [o for o in op.walk() if isinstance(o, loop.AllocOp) and o.result in chosen]:
            new = loop.AllocOp.create(result_types=[nchwc8(alloc.result.type)], properties=dict(alloc.properties))
            Rewriter.replace_op(alloc, new)
        for binary in [o for o in op.walk() if isinstance(o, loop.BinaryOp)]:
            if is_nchwc8(binary.output.type):
                _rewrite_binary(binary)
