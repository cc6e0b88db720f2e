"""fold-pad: a zero-valued Pad feeding convolutions becomes part of their own padding.

Preconditions: graph level. Produces: each `graph.conv2d` reading a float constant-mode `graph.pad`
of value 0 that only grows H and W reads the Pad's input instead, with the Pad's amounts added to
its pads ("same" padding exported as an explicit Pad, e.g. EfficientNet's static padding); the Pad
disappears when nothing else reads it. Other Pads (reflect / edge / wrap, cropping, N / C) stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from inferon.ir.attrs import PadMode
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import i64_array, ints, quant_of


def _foldable(pad: graph.PadOp) -> bool:
    """A float zero constant Pad of only the spatial axes of NCHW, no cropping: what a conv's pads say."""
    p = ints(pad.pads)
    return (
        pad.mode.data == PadMode.CONSTANT and pad.value.value.data == 0.0 and quant_of(pad.input) is None
        and len(p) == 8 and min(p) >= 0 and not any(p[0:2]) and not any(p[4:6])
    )  # fmt: skip


@dataclass(frozen=True)
class FoldPadPass(ModulePass):
    """Merge zero Pads into the convolutions that read them."""

    name = "fold-pad"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for pad in [o for o in op.walk() if isinstance(o, graph.PadOp)]:
            if not _foldable(pad):
                continue
            _, _, t, left, _, _, b, r = ints(pad.pads)
            for use in list(pad.output.uses):
                conv = use.operation
                if not isinstance(conv, graph.Conv2dOp) or use.index != 0:
                    continue
                ct, cl, cb, cr = ints(conv.pads)
                conv.properties["pads"] = i64_array([ct + t, cl + left, cb + b, cr + r])
                conv.operands[0] = pad.input
            if not pad.output.uses:
                pad.detach()
                pad.erase()
