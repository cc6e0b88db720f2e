"""select-tiles: choose cache-blocking tile sizes (MC, KC, NC) for every `loop.matmul`.

Preconditions: loop level. Produces: a `#loop.tiles` property on each matmul that lacks one (an
explicit choice, e.g. edited into a dump, is kept). The heuristic keeps a KC x NR panel of B in L1, an
MC x KC block of A in L2 and a KC x NC panel of B in L3, sized for Zen 4 (32 KiB L1d, 1 MiB L2).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from inferon.ir.dialects import loop
from inferon.ir.dialects.graph import ints


def choose_tiles(m: int, n: int, k: int, mr: int = 6, nr: int = 16) -> tuple[int, int, int]:
    kc = min(k, 384)
    mc = min(-(-m // mr) * mr, 120)
    nc = min(-(-n // nr) * nr, 4096)
    return mc, kc, nc


@dataclass(frozen=True)
class SelectTilesPass(ModulePass):
    """Annotate each loop.matmul with its cache-blocking tile sizes."""

    name = "select-tiles"
    mr: int = 6
    nr: int = 16

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for mm in op.walk():
            if isinstance(mm, loop.MatMulOp) and mm.tiles is None:
                m, n, k = ints(mm.dims)
                mm.properties["tiles"] = loop.TilesAttr.make(*choose_tiles(m, n, k, self.mr, self.nr))
