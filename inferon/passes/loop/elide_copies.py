"""elide-copies: compute Concat inputs in place and let Reshape share memory (no copies).

Preconditions: loop level, ops in execution order in `@main`'s block, every buffer written by one op
(Concat: one `loop.copy` per input). For each contiguous `loop.copy` (one row, or rows back to back)
from an arena buffer X into a buffer Y that only copies write: X becomes `loop.slice` of Y at the
copy's offset, so whatever produced X writes straight into Y, and the copy is erased. A buffer is
placed into at most one destination; X's users read Y's memory, which nothing else writes. Chains
(DenseNet: each Concat output is the head of the next Concat) become slices of slices. Y's
allocation is moved before the first producer of any of its slices, so plan-memory keeps it live
for all of them. Produces: `loop.slice` ops and fewer `loop.copy`/`loop.alloc`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from inferon.ir.dialects import loop


def _written_only_by_copies(value: SSAValue) -> bool:
    """Every op that has `value` as its destination (last operand) is a loop.copy."""
    return all(
        isinstance(u.operation, loop.CopyOp)
        for u in value.uses
        if u.index == len(u.operation.operands) - 1 and not isinstance(u.operation, loop.SliceOp)
    )


def hoist(value: SSAValue, anchor: Operation, block: Block) -> None:
    """Move the op defining `value` (and the slice chain under it) before `anchor` if it is later."""
    owner = value.owner
    if isinstance(owner, Block):  # a function argument
        return
    index = {op: i for i, op in enumerate(block.ops)}
    if index[owner] > index[anchor]:
        owner.detach()
        Rewriter.insert_op(owner, InsertPoint.before(anchor))
    if isinstance(owner, loop.SliceOp):
        hoist(owner.base, owner, block)


def _elide(copy: loop.CopyOp, block: Block, num_inputs: int) -> bool:
    src, dst = copy.input, copy.output
    rows, row_len, stride = copy.rows.value.data, copy.row_len.value.data, copy.stride.value.data
    if not isinstance(src.owner, loop.AllocOp) or src is dst:
        return False
    if rows != 1 and stride != row_len:  # the slice would not be contiguous
        return False
    if isinstance(dst, BlockArgument) and dst.index < num_inputs:
        return False
    if not _written_only_by_copies(dst):
        return False
    alloc = src.owner
    hoist(dst, alloc, block)
    view = loop.SliceOp.create(
        operands=[dst], properties={"offset": IntegerAttr(copy.offset.value.data, i64)}, result_types=[src.type]
    )
    Rewriter.insert_op(view, InsertPoint.before(alloc))
    src.replace_all_uses_with(view.result)
    Rewriter.erase_op(copy)
    Rewriter.erase_op(alloc)
    return True


@dataclass(frozen=True)
class ElideCopiesPass(ModulePass):
    """Turn contiguous buffer copies (Concat, Reshape) into in-place slices."""

    name = "elide-copies"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if not isinstance(fn, func.FuncOp):
                continue
            attr = fn.attributes.get("inferon.num_inputs")
            num_inputs = attr.value.data if isinstance(attr, IntegerAttr) else len(fn.args)
            block = fn.body.block
            for copy in [o for o in block.ops if isinstance(o, loop.CopyOp)]:
                _elide(copy, block, num_inputs)
