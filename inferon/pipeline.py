"""The compilation pipeline: named passes in order, grouped by the IR level they work on.

    graph:  remove-identities → fold-pad → fold-qdq → fold-batchnorm → decompose-batchnorm → fold-constants
            → [prune, opt-in, with --quantize] → [quantize, opt-in] → fold-quantized-elementwise → fuse-epilogue
            → [prune, opt-in] → sparsify
    loop:   convert-graph-to-loop → elide-copies → convert-sparse-to-spmm → fuse-residual-qadd
            → conv-to-depthwise → conv-to-grouped → conv-to-winograd → conv-to-im2col → select-tiles
    vec:    convert-loop-to-vec → pack-weights → assign-layout → plan-memory
    cpp:    the C++ emitter prints the module, g++ builds model.so

fold-batchnorm must precede fuse-epilogue (a conv with an activation no longer folds); fold-constants
runs after decompose-batchnorm so that unfused BatchNorm parameters fold to two weights; memory is
planned last, when every buffer (im2col scratch included) exists. fold-qdq runs first so that the
quantized weights it does not fold are plain float weights for the passes after it.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.printer import Printer

from inferon.ir.context import InferonContext
from inferon.passes import get_pass, user_passes

DEFAULT_PASSES: tuple[tuple[str, str], ...] = (
    ("graph", "remove-identities"),
    ("graph", "fold-pad"),
    ("graph", "fold-qdq"),
    ("graph", "fold-batchnorm"),
    ("graph", "decompose-batchnorm"),
    ("graph", "fold-constants"),
    ("graph", "fold-quantized-elementwise"),
    ("graph", "fuse-epilogue"),
    ("graph", "sparsify"),
    ("loop", "convert-graph-to-loop"),
    ("loop", "elide-copies"),
    ("loop", "convert-sparse-to-spmm"),
    ("loop", "fuse-residual-qadd"),
    ("loop", "conv-to-depthwise"),
    ("loop", "conv-to-grouped"),
    ("loop", "conv-to-winograd"),
    ("loop", "conv-to-im2col"),
    ("loop", "select-tiles"),
    ("vec", "convert-loop-to-vec"),
    ("vec", "pack-weights"),
    ("vec", "assign-layout"),
    ("vec", "plan-memory"),
)


# the opt-in `quantize` (and `prune` with it) run just before this pass
QUANTIZE_BEFORE = "fold-quantized-elementwise"


def print_module(module: ModuleOp) -> str:
    stream = io.StringIO()
    Printer(stream=stream).print_op(module)
    stream.write("\n")
    return stream.getvalue()


@dataclass
class Pipeline:
    """An ordered list of (stage, pass) with IR dumping between passes."""

    passes: list[tuple[str, ModulePass]]
    dump_dir: Path | None = None
    print_ir_after: frozenset[str] = frozenset()
    verbose: bool = False
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))

    @staticmethod
    def default(
        *, prune: str | None = None, quantization: object | None = None,
        pass_options: dict[str, dict[str, object]] | None = None, **kwargs: object,
    ) -> Pipeline:  # fmt: skip
        """The default pipeline, with registered user passes inserted after their anchor.

        `prune` (e.g. "unstructured:0.9", "block1x4:0.9", "2:4") inserts the opt-in `prune` pass before `sparsify`
        (before `quantize` when that runs too, so that sparse int8 weights come from pruned floats);
        `quantization` (a `passes.graph.quantize.Quantization`) inserts `quantize` before
        `fold-quantized-elementwise`;
        `pass_options` maps a pass name to its constructor arguments (e.g. {"sparsify": {"mode": "off"}}).
        """
        entries: list[tuple[str, ModulePass]] = []
        users = user_passes()
        options = pass_options or {}
        for stage, name in DEFAULT_PASSES:
            # prune before quantize when both run: the int8 weights are then quantized from the pruned ones
            # quantize before fold-quantized-elementwise: the float ops it leaves between its quantize /
            # dequantize pairs (an unfolded BatchNorm + ReLU) become tables too
            prune_here = QUANTIZE_BEFORE if quantization is not None else "sparsify"
            if name == prune_here and prune:
                entries.append((stage, get_pass("prune")(spec=prune)))  # type: ignore[call-arg]
            if name == QUANTIZE_BEFORE and quantization is not None:
                entries.append((stage, get_pass("quantize")(quantization=quantization)))  # type: ignore[call-arg]
            entries.append((stage, get_pass(name)(**options.get(name, {}))))
            pending = [name]
            while pending:
                anchor = pending.pop(0)
                for user_name, (cls, after) in users.items():
                    if after == anchor:
                        entries.append((stage, cls()))
                        pending.append(user_name)
        return Pipeline(entries, **kwargs)  # type: ignore[arg-type]

    def names(self) -> list[str]:
        return [p.name for _, p in self.passes]

    def run(self, ctx: InferonContext, module: ModuleOp, input_ir: str | None = None) -> None:
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            self._dump(0, "import", "graph", module)
        for index, (stage, p) in enumerate(self.passes, start=1):
            start = time.perf_counter()
            p.apply(ctx, module)
            module.verify()
            if self.verbose:
                self.log(f"  [{stage}] {p.name}: {1000 * (time.perf_counter() - start):.1f} ms")
            if self.dump_dir is not None:
                self._dump(index, p.name, stage, module)
            if p.name in self.print_ir_after:
                self.log(f"// ----- IR after {p.name} -----\n{print_module(module)}")

    def _dump(self, index: int, name: str, stage: str, module: ModuleOp) -> None:
        assert self.dump_dir is not None
        path = self.dump_dir / f"{index:03d}_{name}.mlir"
        path.write_text(f"// inferon IR ({stage} level) after {name}\n" + print_module(module))


def run_passes(ctx: InferonContext, module: ModuleOp, names: Sequence[str]) -> None:
    """Run the named passes on `module` (for tests and `inferon opt`)."""
    Pipeline([("", get_pass(n)()) for n in names]).run(ctx, module)
