"""`inferon.compile`: ONNX model → model.so, through the pass pipeline and the C++ backend."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from xdsl.dialects.builtin import ModuleOp

from inferon import compile_cache
from inferon.backend.emitter import EmittedModel, emit_cpp
from inferon.backend.toolchain import build_cached
from inferon.calibration import load_calibration
from inferon.cpu import model_isa, vnni_kernels, zmm_row_panels
from inferon.errors import InferonError
from inferon.frontend.onnx.importer import import_model, load_proto
from inferon.ir.context import make_context
from inferon.passes.graph.quantize import ADAPTIVE_MAX_K, Quantization
from inferon.pipeline import Pipeline, user_passes
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
    quantization: Quantization | None = None,
    winograd: str = "auto",
    layout: str = "auto",
) -> tuple[ModuleOp, EmittedModel]:
    """Import and run the pipeline; return the lowest-level module and the emitted C++."""
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    start = time.perf_counter()
    module, weights = import_model(model, input_shapes)
    log(f"inferon: imported {sum(1 for _ in module.walk())} ops, {len(weights.arrays)} weights "
        f"in {time.perf_counter() - start:.2f} s")  # fmt: skip
    ctx = make_context(weights)
    vnni = vnni_kernels(target)  # the quantized layouts are chosen for the kernels the model will run
    pipeline = Pipeline.default(
        prune=prune,
        quantization=quantization,
        pass_options={"sparsify": {"mode": sparse, "winograd": winograd, "target": target},
                      "conv-to-winograd": {"tile": winograd, "zmm_rows": zmm_row_panels(target)},
                      "assign-layout": {"mode": layout},
                      "convert-graph-to-loop": {"int8_lanes": vnni}, "convert-loop-to-vec": {"int8_lanes": vnni},
                      "pack-weights": {"pair_safe": not vnni, "f32_lanes": model_isa(target) == "avx512",
                                       "zmm_rows": zmm_row_panels(target)}},
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
    quantize: str | None = None,
    calibration: str | Path | Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]] | None = None,
    calibration_method: str = "minmax",
    keep_float: Sequence[str] = (),
    weight_rounding: str = "adaptive",
    winograd: str = "auto",
    layout: str = "auto",
) -> Path:
    """Compile an ONNX model (path, bytes or ModelProto) into the shared library `output`.

    `target` (native, avx2, avx512, scalar) caps the instruction set the kernels may use; the
    model.so always carries the scalar fallback and picks the best allowed level on the CPU it
    is loaded on. `layout` is auto (activations between channel-vector kernels in blocked NCHWc8,
    see `assign-layout`) or nchw (NCHW everywhere). `sparse` picks weight storage: auto (dense, CSR or 2:4 per layer from the zeros in
    the weights and a cost model), off, csr or 2:4. `prune` ("unstructured:0.9", "block1x4:0.9", "2:4") magnitude-prunes
    the conv/FC weights first, for experiments, and prints the output deviation it causes.

    `quantize="int8"` quantizes a float model (post-training, static): `calibration` is an .npz
    file (one array per model input, samples along the first axis), a dict of such arrays, or an
    iterable of feed dicts; `calibration_method` is minmax, percentile or entropy; `keep_float`
    lists layers to leave in float (indices into the quantizable Conv/MatMul layers in order, or
    "first" / "last"); `weight_rounding` is adaptive (each weight rounded up or down to minimise
    its layer's output error on the calibration inputs) or nearest. A report of the deviation from
    the float model on the calibration data is printed. Models that are already quantized (QDQ or
    QOperator ONNX) need none of this.
    """
    start = time.perf_counter()
    if quantize is None:
        unused = [flag for flag, given in (("--calibration", calibration is not None), ("--keep-float", bool(keep_float)),
                  ("--calibration-method", calibration_method != "minmax"),
                  ("--weight-rounding", weight_rounding != "adaptive")) if given]  # fmt: skip
        if unused:
            raise InferonError(f"{', '.join(unused)}: only used with --quantize int8 (Python: quantize='int8')")
    key = None
    if compile_cache.cacheable(dump_ir=dump_ir, print_ir_after=tuple(print_ir_after), user_passes=user_passes(),
                               prune=prune, quantize=quantize):  # fmt: skip
        data = compile_cache.model_bytes(model)
        if data is not None:
            options = {
                "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()}, "target": target,
                "sparse": sparse, "winograd": winograd, "layout": layout,
                # sparsify's cost figures and the quantized layouts follow the level the model will
                # run with: a "native" model differs per host
                "isa": model_isa(target), "vnni": vnni_kernels(target), "zmm_rows": zmm_row_panels(target),
            }  # fmt: skip
            key = compile_cache.compile_key(data, options)
            if compile_cache.lookup(key, Path(output)):
                if verbose:
                    print(f"inferon: compile cache hit (same model, options and compiler) in "
                          f"{time.perf_counter() - start:.2f} s", file=sys.stderr)  # fmt: skip
                return Path(output)
    quantization = None
    if quantize is not None:
        if quantize.lower() != "int8":
            raise InferonError(f"--quantize '{quantize}': only int8 is supported")
        if calibration is None:
            raise InferonError("--quantize int8 needs calibration data (--calibration DATA.npz)")
        proto = load_proto(model)
        inits = {i.name for i in proto.graph.initializer}
        shapes = {i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
                  for i in proto.graph.input if i.name not in inits}  # fmt: skip
        shapes.update({k: list(v) for k, v in (input_shapes or {}).items()})
        quantization = Quantization(
            load_calibration(calibration, shapes), method=calibration_method, keep_float=tuple(keep_float),
            rounding=weight_rounding, verbose=verbose,
        )
        model = proto
    _, emitted = lower(
        model, input_shapes=input_shapes, dump_ir=dump_ir, print_ir_after=print_ir_after, verbose=verbose,
        target=target, prune=prune, sparse=sparse, quantization=quantization, winograd=winograd,
        layout=layout,
    )
    start = time.perf_counter()
    out, entry = build_cached(emitted.source, emitted.weights, Path(output), verbose=verbose)
    if key is not None:
        compile_cache.store(key, entry, out)
    if verbose:
        print(f"inferon: built {out} in {time.perf_counter() - start:.2f} s "
              f"(weights {len(emitted.weights) / 1e6:.1f} MB, arena {emitted.arena_bytes / 1e6:.1f} MB)",
              file=sys.stderr)  # fmt: skip
    if quantization is not None:
        print(quantization_report(out, quantization), file=sys.stderr)
    return out


def quantization_report(library: Path, quantization: Quantization) -> str:
    """How far the INT8 model's outputs are from the float model's on the calibration samples."""
    import inferon

    lines = [f"inferon: INT8 quantization ({quantization.method} calibration, {len(quantization.samples)} samples, "
             f"{len(quantization.layers) - len(quantization.kept)}/{len(quantization.layers)} layers quantized)"]  # fmt: skip
    if quantization.kept:
        lines.append(f"  kept in float: {', '.join(quantization.kept)}")
    nearest, adaptive, count = quantization.weight_error
    others = len(quantization.layers) - len(quantization.kept) - count
    if count:
        lines.append(f"  adaptive weight rounding: the int8 weights' RMS output error on the calibration inputs "
                     f"{100 * nearest / count:.2f} % (nearest) -> {100 * adaptive / count:.2f} % of the layer outputs' RMS "
                     f"(mean over {count} layers)")  # fmt: skip
    if quantization.rounding == "adaptive" and others:
        lines.append(f"  {others} layer(s) too large for adaptive rounding (more than {ADAPTIVE_MAX_K} inputs per weight "
                     f"row, or too costly): rounded to nearest")  # fmt: skip
    with inferon.load(library) as m:
        results = [m.run(feed) for feed in quantization.samples]
        names = m.output_names
    for j, name in enumerate(names):
        ref = np.stack([f[j] for f in quantization.float_outputs])
        got = np.stack([r[name] for r in results])
        span = float(ref.max() - ref.min()) or 1.0
        err = np.abs(got.astype(np.float64) - ref)
        line = f"  output '{name}': max |error| {err.max():.4g}, mean {err.mean():.4g} ({100 * err.mean() / span:.2f} % of its range)"
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            agree = np.mean(ref.reshape(len(ref), -1, ref.shape[-1]).argmax(-1) == got.reshape(len(got), -1, got.shape[-1]).argmax(-1))
            line += f", top-1 agreement {100 * agree:.1f} %"
        lines.append(line)
    return "\n".join(lines)
