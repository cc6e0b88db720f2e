"""elide-copies: compute Concat inputs in place, let Reshape share memory and read contiguous Slice /
Split windows in place (no copies).

Preconditions: loop level, ops in execution order in `@main`'s block, every buffer written by one op
(Concat: one `loop.copy` per input). For each contiguous `loop.copy` (one row, or rows back to back)
from an arena buffer X into a buffer Y that only copies write: X becomes `loop.slice` of Y at the
copy's offset, so whatever produced X writes straight into Y, and the copy is erased. A buffer is
placed into at most one destination; X's users read Y's memory, which nothing else writes. Chains
(DenseNet: each Concat output is the head of the next Concat) become slices of slices. Y's
allocation is moved before the first producer of any of its slices, so plan-memory keeps it live
for all of them.

Reads in place: a `loop.strided_copy` of a contiguous window (`shape = [n], strides = [1]`: a channel
Split or Slice of an NCHW tensor at batch 1) into an arena buffer Y that nothing else writes makes Y
`loop.slice` of its source at the window's offset, so Y's readers read the source (which nothing
writes after its producer; plan-memory keeps it live through the alias). The same holds for a full
`loop.copy` (a Reshape) whose source could not be placed into its destination because the source is
itself such a view. Produces: `loop.slice` ops and fewer `loop.copy`/`loop.strided_copy`/`loop.alloc`.
"""

from __future__ import annotations

import math
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


def _only_writer(value: SSAValue, writer: Operation) -> bool:
    """`writer` is the only op having `value` as its destination (last operand)."""
    return all(u.operation is writer for u in value.uses if u.index == len(u.operation.operands) - 1)


def _read_in_place(copy: loop.StridedCopyOp | loop.CopyOp, block: Block) -> bool:
    """Make the destination of a contiguous copy a view of its source at `offset` (see the module doc)."""
    src, dst = copy.input, copy.output
    if isinstance(copy, loop.StridedCopyOp):
        if copy.shape.get_values() != (math.prod(dst.type.get_shape()),) or copy.strides.get_values() != (1,):  # type: ignore[attr-defined]
            return False
        offset = copy.offset.value.data
    else:
        size = math.prod(dst.type.get_shape())  # type: ignore[attr-defined]
        if (copy.rows.value.data, copy.row_len.value.data, copy.offset.value.data) != (1, size, 0):
            return False
        if size != math.prod(src.type.get_shape()) or not isinstance(src.owner, loop.SliceOp):  # type: ignore[attr-defined]
            return False
        offset = 0
    alloc = dst.owner
    if not isinstance(alloc, loop.AllocOp) or src is dst or not _only_writer(dst, copy):
        return False
    hoist(src, alloc, block)
    view = loop.SliceOp.create(operands=[src], properties={"offset": IntegerAttr(offset, i64)}, result_types=[dst.type])
    Rewriter.insert_op(view, InsertPoint.before(alloc))
    dst.replace_all_uses_with(view.result)
    Rewriter.erase_op(copy)
    Rewriter.erase_op(alloc)
    return True


@dataclass(frozen=True)
class ElideCopiesPass(ModulePass):
    """Turn contiguous buffer copies (Concat, Reshape, Slice / Split windows) into in-place slices."""

    name = "elide-copies"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if not isinstance(fn, func.FuncOp):
                continue
            attr = fn.attributes.get("inferon.num_inputs")
            num_inputs = attr.value.data if isinstance(attr, IntegerAttr) else len(fn.args)
            block = fn.body.block
            # windows first (a Slice / Gather result then Reshaped is read in place twice, not
            # placed into the Reshape's buffer), then Concat / Reshape placement, then Reshapes of
            # the views; each in execution order, so views of views are made base first
            for window in [o for o in block.ops if isinstance(o, loop.StridedCopyOp)]:
                _read_in_place(window, block)
            for copy in [o for o in block.ops if isinstance(o, loop.CopyOp)]:
                _elide(copy, block, num_inputs)
            for copy in [o for o in block.ops if isinstance(o, loop.CopyOp)]:
                _read_in_place(copy, block)
