"""fuse-residual-qadd: add a quantized residual inside the GEMM epilogue that produced one operand.

Preconditions: loop level, ops in execution order, after `elide-copies` and `convert-sparse-to-spmm`.
For every `loop.qadd` with an operand X that is a whole arena buffer written by one `loop.qgemm`
(dense or block-sparse, no residual yet) and read by nothing but this qadd: the qgemm takes the qadd's other operand as its `residual` (read at
the same offsets as C) and writes the qadd's output instead of X; the qadd and X disappear. The
epilogue computes exactly the qadd's float steps on the requantized GEMM value (bit-exact with the
unfused pair; ONNX Runtime's QLinearAdd arithmetic, see `inferon.ir.quant.qadd`). Not fused: a
residual or output buffer that an op between the two touches.

In the default pipeline since it was measured on an Intel Xeon (AVX-512 VNNI): ONNX Runtime-quantized
ResNet-50 1.05x at 1 thread, 1.06x at 2 (interleaved, same process; lanes and implicit GEMMs take the
residual too). On the Zen 4 measured before, the fused and the separate streaming qadd were within
1 % (1 thread 25.93 vs 25.85 ms, 2 threads 1.01-1.02x for the fused one).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, UnitAttr, i32
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from inferon.ir.dialects import loop
from inferon.passes.loop.elide_copies import hoist


def _sole_writer(value: SSAValue, qadd: loop.QAddOp) -> loop.QGemmOp | None:
    """The qgemm writing the arena buffer `value` if its only other user is `qadd`."""
    if not isinstance(value.owner, loop.AllocOp) or len(list(value.uses)) != 2:
        return None
    users = {u.operation for u in value.uses}
    gemm = next((u for u in users if u is not qadd), None)
    if isinstance(gemm, loop.QGemmOp) and gemm.c is value and gemm.residual is None and qadd in users:
        return gemm
    return None


def _touched_between(values: tuple[SSAValue, ...], first: Operation, last: Operation, block: Block) -> bool:
    """Whether an op strictly between `first` and `last` uses any of `values`."""
    ops = list(block.ops)
    between = ops[ops.index(first) + 1 : ops.index(last)]
    return any(v in op.operands for op in between for v in values)


def fuse(qadd: loop.QAddOp, block: Block) -> bool:
    values = qadd.quant.get_values()
    for gemm_side, other, z_gemm, residual_lhs in ((qadd.lhs, qadd.rhs, values[1], False),
                                                  (qadd.rhs, qadd.lhs, values[3], True)):  # fmt: skip
        gemm = _sole_writer(gemm_side, qadd)
        if gemm is None or gemm.requant.get_values()[0] != int(z_gemm) or other is gemm_side:
            continue
        if _touched_between((other, qadd.output), gemm, qadd, block):
            continue
        hoist(other, gemm, block)
        hoist(qadd.output, gemm, block)
        props = dict(gemm.properties)
        props["residual_add"] = qadd.quant
        if residual_lhs:
            props["residual_lhs"] = UnitAttr()
        sparse = [v for v in (gemm.a_index, gemm.a_row_ptr) if v is not None]  # block1x4 / CSR: both
        props["operandSegmentSizes"] = DenseArrayBase.from_list(i32, [1, len(sparse) // 2, len(sparse) // 2, 1, 1, 1, 1, 1])
        fused = loop.QGemmOp.create(
            operands=[gemm.a, *sparse, gemm.b, gemm.comp, gemm.mult, other, qadd.output], properties=props
        )
        Rewriter.insert_op(fused, InsertPoint.before(gemm))
        alloc = gemm_side.owner
        Rewriter.erase_op(qadd)
        Rewriter.erase_op(gemm)
        assert isinstance(alloc, Operation)
        Rewriter.erase_op(alloc)
        return True
    return False


@dataclass(frozen=True)
class FuseResidualQAddPass(ModulePass):
    """Fold loop.qadd into the loop.qgemm producing one of its operands (residual epilogue)."""

    name = "fuse-residual-qadd"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                block = fn.body.block
                for qadd in [o for o in block.ops if isinstance(o, loop.QAddOp)]:
                    fuse(qadd, block)
