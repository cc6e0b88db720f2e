"""A user pass: drop a ReLU applied to the output of another ReLU.

Use it from the command line:

    inferon compile model.onnx -o model.so --pass-plugin examples/custom_pass.py --dump-ir ir/

or from Python (run this file: `python examples/custom_pass.py`). Passes are xDSL ModulePasses working
on Inferon's `graph` dialect; `register_pass(after=...)` puts one into the default pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

import inferon
from inferon.ir.dialects import graph


class DropRedundantRelu(RewritePattern):
    """relu(relu(x)) -> relu(x)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ReluOp, rewriter: PatternRewriter) -> None:
        if isinstance(op.input.owner, graph.ReluOp):
            rewriter.replace(op, [], [op.input])


@inferon.register_pass(after="remove-identities")
@dataclass(frozen=True)
class DropRedundantReluPass(ModulePass):
    """Remove a ReLU applied to the output of another ReLU."""

    name = "drop-redundant-relu"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(DropRedundantRelu()).rewrite_module(op)


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    import numpy as np
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]),
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        lib = inferon.compile(model, Path(tmp) / "m.so", dump_ir=Path(tmp) / "ir")
        dumps = sorted(p.name for p in (Path(tmp) / "ir").glob("*.mlir"))
        print("passes run:", ", ".join(d[4:-5] for d in dumps))
        ir = (Path(tmp) / "ir" / "002_drop-redundant-relu.mlir").read_text()
        print("relu ops after the custom pass:", ir.count("graph.relu"))
        print("output:", inferon.load(lib)(np.array([-1, 0, 1, 2], np.float32)))
