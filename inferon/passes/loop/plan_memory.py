"""plan-memory: give every `loop.alloc` an offset in one arena, reusing memory by liveness.

Preconditions: loop/vec level, ops in execution order in `@main`'s single block. A buffer is live from
the op that allocates it to its last use (uses through `loop.slice` aliases included); buffers whose lifetimes do not overlap share memory
(greedy best-fit, largest buffers first, 64-byte aligned). Produces: `offset` on every `loop.alloc` and
`inferon.arena_floats` on `@main`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, IntegerType, MemRefType, ModuleOp, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from inferon.ir.dialects import loop

ALIGN_FLOATS = 16  # 64 bytes


def _round(n: int) -> int:
    return -(-n // ALIGN_FLOATS) * ALIGN_FLOATS


def plan(intervals: list[tuple[int, int, int]]) -> tuple[list[int], int]:
    """Offsets for buffers given as (size, first, last) op indices; returns offsets and total size."""
    order = sorted(range(len(intervals)), key=lambda i: (-intervals[i][0], intervals[i][1]))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets = [0] * len(intervals)
    total = 0
    for i in order:
        size, first, last = intervals[i]
        size = _round(size)
        busy = sorted((o, s) for o, s, f, l_ in placed if not (l_ < first or last < f))
        best, cursor = None, 0
        for o, s in busy:
            if o - cursor >= size and (best is None or o - cursor < best[1]):
                best = (cursor, o - cursor)
            cursor = max(cursor, o + s)
        offset = best[0] if best is not None else cursor
        offsets[i] = offset
        placed.append((offset, size, first, last))
        total = max(total, offset + size)
    return offsets, total


def floats_of(typ: MemRefType) -> int:
    """Size of a buffer in arena units (floats): integer buffers take ceil(bytes / 4)."""
    element = typ.element_type
    bits = element.bitwidth if isinstance(element, IntegerType) else 32
    return -(-math.prod(typ.get_shape()) * bits // 32)


def _last_use(value: SSAValue, index: dict[Operation, int], default: int) -> int:
    """Index of the last op using `value` directly or through `loop.slice` aliases of it."""
    last = default
    for use in value.uses:
        op = use.operation
        last = max(last, _last_use(op.result, index, index[op]) if isinstance(op, loop.SliceOp) else index[op])
    return last


@dataclass(frozen=True)
class PlanMemoryPass(ModulePass):
    """Assign arena offsets to loop.alloc buffers by liveness."""

    name = "plan-memory"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if not isinstance(fn, func.FuncOp):
                continue
            ops = list(fn.body.block.ops)
            index = {o: i for i, o in enumerate(ops)}
            allocs = [o for o in ops if isinstance(o, loop.AllocOp)]
            intervals = []
            for a in allocs:
                last = _last_use(a.result, index, index[a])
                intervals.append((floats_of(a.result.type), index[a], last))
            offsets, total = plan(intervals)
            for a, off in zip(allocs, offsets):
                a.properties["offset"] = IntegerAttr(off, i64)
            fn.attributes["inferon.arena_floats"] = IntegerAttr(total, i64)
