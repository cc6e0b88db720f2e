"""prune: magnitude pruning of conv/FC weights, for experiments (opt-in, never in the default run).

`inferon compile --prune unstructured:0.9` zeroes the 90 % smallest-magnitude entries of every
layer's weight (per layer; the int8 weights of an already quantized model too, where a zero is an
exact zero: their zero point is 0); `--prune 2:4` keeps the two largest of every aligned group of four
along K (the order the 2:4 kernel reads); `--prune block1x4:0.9` zeroes the 90 % of those groups with
the smallest L2 norm, whole, where a KxK conv's groups are four input channels at one tap
(structured sparsity for the block1x4 int8 kernel, whose `vpdpbusd` multiplies four weights of a row
at once: unstructured 90 % leaves about a third of the groups holding a nonzero). Layers reading a model input (the stem conv) and
depthwise convs are left dense. With `report`, the pass runs the numpy reference interpreter
before and after pruning on one seeded random input and prints the output deviation it caused.

Preconditions: graph level, after fold-batchnorm and fold-constants (the weights are final).
Produces: the same graph with pruned weights (new handles); `sparsify` then picks their format.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass

from inferon.errors import PassError
from inferon.ir import interpreter
from inferon.ir.dialects.graph import shape_of
from inferon.ir.sparse import prune_block4, prune_nm24, prune_unstructured
from inferon.passes.graph.fold_constants import weights_context
from inferon.passes.graph.sparse_layers import sparse_layers


def parse_prune_spec(spec: str) -> tuple[str, float]:
    """'unstructured:0.9' -> ('unstructured', 0.9); 'block1x4:0.9' -> ('block1x4', 0.9); '2:4' -> ('2:4', 0.5)."""
    spec = spec.strip().lower()
    if spec in ("2:4", "nm:2:4"):
        return "2:4", 0.5
    kind, _, value = spec.partition(":")
    if kind in ("unstructured", "block1x4"):
        try:
            sparsity = float(value)
        except ValueError:
            sparsity = -1.0
        if 0.0 < sparsity < 1.0:
            return kind, sparsity
    raise PassError(f"--prune '{spec}': expected unstructured:S or block1x4:S with 0 < S < 1 "
                    "(e.g. unstructured:0.9), or 2:4")


def _main(module: ModuleOp) -> func.FuncOp:
    fn = next((op for op in module.ops if isinstance(op, func.FuncOp)), None)
    if fn is None:
        raise PassError("prune: module has no @main")
    return fn


def _random_inputs(fn: func.FuncOp, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape_of(a)).astype(np.float32) for a in fn.body.block.args]


def prune_matrix(a: np.ndarray, spec: str, taps: int = 1) -> np.ndarray:
    """Matrix A [M, K] pruned by `spec` (see parse_prune_spec); 2:4 groups run along K, 1x4 blocks
    too, or for a conv weight [M, C * taps] (taps = kh * kw) over four input channels at one tap."""
    kind, sparsity = parse_prune_spec(spec)
    if kind == "2:4":
        return prune_nm24(a)
    return prune_block4(a, sparsity, taps) if kind == "block1x4" else prune_unstructured(a, sparsity)


@dataclass(frozen=True)
class PrunePass(ModulePass):
    """Magnitude-prune conv/FC weights: spec 'unstructured:S' / 'block1x4:S' (sparsity S per layer) or '2:4'."""

    name = "prune"
    spec: str = "unstructured:0.9"
    report: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        parse_prune_spec(self.spec)  # a bad spec fails before any work
        store = weights_context(ctx, self.name)
        log = (lambda msg: print(msg, file=sys.stderr)) if self.report else (lambda msg: None)
        inputs = _random_inputs(_main(op)) if self.report else []
        before = interpreter.run(op, store, inputs) if self.report else []
        pruned = kept = 0
        for layer in sparse_layers(op, quantized=True):
            if layer.reads_model_input:
                continue
            w = store[layer.weight.handle.data]
            taps = 1 if layer.is_fc else math.prod(w.shape[2:])
            a = prune_matrix(layer.matrix(w), self.spec, taps).astype(w.dtype)  # int8 weights stay int8
            handle = store.add(layer.from_matrix(a), f"{layer.weight.handle.data}.pruned", keep_dtype=True)
            layer.weight.properties["handle"] = StringAttr(handle)
            pruned += w.size
            kept += int(np.count_nonzero(a))
        if not self.report:
            return
        start = time.perf_counter()
        after = interpreter.run(op, store, inputs)
        dev = max((float(np.abs(a - b).max()) for a, b in zip(after, before)), default=0.0)
        scale = max((float(np.abs(b).max()) for b in before), default=0.0) or 1.0
        log(f"inferon: pruned {self.spec}: {pruned} weights -> {kept} nonzeros "
            f"({100 * kept / max(pruned, 1):.1f} % dense); output deviation on a random input: "
            f"max abs {dev:.4g} (relative to the output's max {dev / scale:.3g}) "
            f"[reference interpreter, {time.perf_counter() - start:.1f} s]")  # fmt: skip
