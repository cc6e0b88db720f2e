"""The compilation context: xDSL's Context with Inferon's dialects loaded and the weight store."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func

from inferon.ir.weights import WeightStore


@dataclass
class InferonContext(Context):
    """A Context that also owns the weights that `graph.weight` / `loop.weight` handles name."""

    weights: WeightStore = field(default_factory=WeightStore)


def make_context(weights: WeightStore | None = None) -> InferonContext:
    """A context with builtin, func, graph, loop and vec loaded."""
    from inferon.ir.dialects.graph import Graph
    from inferon.ir.dialects.loop import Loop
    from inferon.ir.dialects.vec import Vec

    ctx = InferonContext(weights=weights or WeightStore())
    for dialect in (Builtin, Func, Graph, Loop, Vec):
        ctx.load_dialect(dialect)
    return ctx
