"""`inferon.compile`: ONNX model → model.so, through the pass pipeline and the C++ backend."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import onnx
from xdsl.dialects.builtin import ModuleOp

from inferon.backend.emitter import EmittedModel, emit_cpp
from inferon.backend.toolchain import build_shared_library
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.pipeline import Pipeline
from inferon.version import __version__


def lower(
    model: onnx.ModelProto | str | Path | bytes,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dump_ir: str | Path | None = None,
    print_ir_after: Iterable[str] = (),
    verbose: bool = False,
    target: str = "native",
    prune: str | None = None,
    sparse: str = "auto",
) -> tuple[ModuleOp, EmittedModel]:
    """Import and run the pipeline; return the lowest-level module and the emitted C++."""
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    start = time.perf_counter()
    module, weights = import_model(model, input_shapes)
    log(f"inferon: imported {sum(1 for _ in module.walk())} ops, {len(weights.arrays)} weights "
        f"in {time.perf_counter() - start:.2f} s")  # fmt: skip
    ctx = make_context(weights)
    pipeline = Pipeline.default(
        prune=prune,
        pass_options={"sparsify": {"mode": sparse}},
        dump_dir=Path(dump_ir) if dump_ir else None,
        print_ir_after=frozenset(print_ir_after),
        verbose=verbose,
    )
    start = time.perf_counter()
    pipeline.run(ctx, module)
    log(f"inferon: {len(pipeline.passes)} passes in {time.perf_counter() - start:.2f} s")
    source = Path(model).name if isinstance(model, (str, Path)) else "model"
    emitted = emit_cpp(module, weights, source=source, version=__version__, target=target)
    if dump_ir:
        (Path(dump_ir) / "model.cpp").write_text(emitted.source)
    return module, emitted


def compile(  # noqa: A001 - the public name users expect
    model: onnx.ModelProto | str | Path | bytes,
    output: str | Path,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dump_ir: str | Path | None = None,
    print_ir_after: Iterable[str] = (),
    verbose: bool = False,
    target: str = "native",
    prune: str | None = None,
    sparse: str = "auto",
) -> Path:
    """Compile an ONNX model (path, bytes or ModelProto) into the shared library `output`.

    `target` (native, avx2, avx512, scalar) caps the instruction set the kernels may use; the
    model.so always carries the scalar fallback and picks the best allowed level on the CPU it
    is loaded on. `sparse` picks weight storage: auto (dense, CSR or 2:4 per layer from the zeros in
    the weights and a cost model), off, csr or 2:4. `prune` ("unstructured:0.9", "2:4") magnitude-prunes
    the conv/FC weights first, for experiments, and prints the output deviation it causes.
    """
    _, emitted = lower(
        model, input_shapes=input_shapes, dump_ir=dump_ir, print_ir_after=print_ir_after, verbose=verbose,
        target=target, prune=prune, sparse=sparse,
    )
    start = time.perf_counter()
    out = build_shared_library(emitted.source, emitted.weights, Path(output), verbose=verbose)
    if verbose:
        print(f"inferon: built {out} in {time.perf_counter() - start:.2f} s "
              f"(weights {len(emitted.weights) / 1e6:.1f} MB, arena {emitted.arena_bytes / 1e6:.1f} MB)",
              file=sys.stderr)  # fmt: skip
    return out
