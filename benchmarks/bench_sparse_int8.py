"""Sparse INT8 benchmark: a pruned network quantized by ONNX Runtime, run by ONNX Runtime (dense INT8)
and by Inferon with sparse int8 weights (CSR or block1x4 per layer), against Inferon dense INT8 and Inferon
sparse FP32, in one run.

    python benchmarks/bench_sparse_int8.py [--models resnet50] [--levels unstructured:0.9,block1x4:0.9]
                                           [--threads 1,2] [--runs 20] [--warmup 3] [--calib 8]

Per model and sparsity level (the onnx package's light_<name>.onnx with seeded random weights, batch 1):

1. the float model is magnitude-pruned like `inferon compile --prune` (`inferon.testing.prune_onnx`:
   every conv / FC weight but the stem's, per layer);
2. ONNX Runtime's `quant_pre_process` + `quantize_static` (QDQ, per-channel int8 weights, uint8
   activations, min/max on `--calib` random inputs) quantize that pruned model;
3. timed in rotating order: ORT FP32 (pruned float model), ORT INT8 (the QDQ file: ORT runs it
   densely), Inferon on the QDQ file with `sparse=auto` (sparsify finds the zeros of the int8 weights
   and picks dense / CSR / block1x4 per layer), Inferon on the QDQ file with `sparse=off` (our dense INT8),
   Inferon on the pruned float model (sparse FP32, `sparse=auto`); medians of `--runs`.

Checked first: Inferon sparse INT8 equals Inferon dense INT8 exactly (same integer arithmetic) and is
within one output quantization step of ORT INT8 on >= 99.9 % of the logits. Ratios > 1 mean the
Inferon sparse INT8 build is faster. Results: benchmarks/results/sparse_int8.json and .csv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_int8 import add_timing_arguments, float_model, logits_step, write_results  # noqa: E402
from bench_models import latency, log, ort_session, parse_list  # noqa: E402
from timing import timed  # noqa: E402

import inferon  # noqa: E402
from inferon.testing import prune_onnx, quantize_onnxruntime  # noqa: E402

RESULTS = HERE / "results"


def sparse_layers_in(lib_dir: Path) -> tuple[int, int, int]:
    """(block1x4 layers, CSR layers, quantized GEMM layers) in the IR dump of a compile."""
    last = sorted(lib_dir.glob("*plan-memory.mlir"))[-1].read_text()
    lines = [line for line in last.splitlines() if '"vec.qgemm"' in line]
    # (vec.qgemm's segments: a_fix, a, a_index, a_row_ptr, ...: a sparse A has the index and row pointers,
    # a CSR one the a_csr property too)
    sparse = [line for line in lines if "operandSegmentSizes = array<i32: 0, 1, 1, 1," in line]
    csr = sum("a_csr" in line for line in sparse)
    return len(sparse) - csr, csr, len(lines)


def bench(name: str, level: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    fmodel, input_name, shape = float_model(name, args.seed)
    pruned = prune_onnx(fmodel, level)
    rng = np.random.default_rng(args.seed)
    calib = rng.standard_normal((args.calib, *shape)).astype(np.float32)
    log(f"{name} {level}: quantizing with ONNX Runtime ...")
    qmodel = quantize_onnxruntime(pruned, [{input_name: c} for c in calib])
    dump = workdir / f"{name}-dump"
    tag = level.replace(":", "")
    sparse_lib = inferon.compile(qmodel, workdir / f"{name}-{tag}-i8s.so", dump_ir=dump)
    blocks, csr, layers = sparse_layers_in(dump)
    dense_lib = inferon.compile(qmodel, workdir / f"{name}-{tag}-i8d.so", sparse="off")
    f32_lib = inferon.compile(pruned, workdir / f"{name}-{tag}-f32s.so")
    logits = fmodel.graph.output[-1].name
    feeds = {input_name: rng.standard_normal(shape).astype(np.float32)}
    results = []
    for threads in args.threads:
        ort_f32, ort_i8 = ort_session(pruned, threads), ort_session(qmodel, threads)
        i8s, i8d, f32s = (inferon.load(p, threads=threads) for p in (sparse_lib, dense_lib, f32_lib))
        try:
            ref = dict(zip([o.name for o in qmodel.graph.output], ort_i8.run(None, feeds), strict=True))[logits]
            got = i8s.run(feeds)[logits]
            if not np.array_equal(got, i8d.run(feeds)[logits]):
                raise SystemExit(f"{name} {level}: sparse INT8 differs from dense INT8")
            step = logits_step(qmodel, logits) or float(np.abs(ref).max()) / 255
            within = float(np.mean(np.abs(got.astype(np.float64) - ref) <= step * 1.001))
            runners = [lambda s=ort_f32: s.run(None, feeds), lambda s=ort_i8: s.run(None, feeds),
                       lambda m=i8s: m.run(feeds), lambda m=i8d: m.run(feeds), lambda m=f32s: m.run(feeds)]  # fmt: skip
            gap = args.gap_ms / 1000.0
            timed(runners, args.warmup, threads, gap)
            f32, i8, s8, d8, sf = (latency(v) for v in timed(runners, args.runs, threads, gap))
        finally:
            for m in (i8s, i8d, f32s):
                m.close()
        row = {
            "model": name, "level": level, "threads": threads, "block1x4_layers": blocks, "csr_layers": csr,
            "int8_layers": layers,
            "ort_fp32_ms": f32.median, "ort_int8_ms": i8.median, "inferon_sparse_int8_ms": s8.median,
            "inferon_dense_int8_ms": d8.median, "inferon_sparse_fp32_ms": sf.median,
            "vs_ort_int8": i8.median / s8.median, "vs_ort_fp32": f32.median / s8.median,
            "vs_inferon_dense_int8": d8.median / s8.median, "vs_inferon_sparse_fp32": sf.median / s8.median,
            "within_one_step_of_ort_int8": within,
        }  # fmt: skip
        log(f"{name:<10} {level} {threads} thr: ORT fp32 {f32.median:6.2f}  ORT int8 {i8.median:6.2f}  Inferon "
            f"sparse int8 {s8.median:6.2f}  dense int8 {d8.median:6.2f}  sparse fp32 {sf.median:6.2f} ms | sparse "
            f"int8 vs ORT int8 {row['vs_ort_int8']:.2f}x, vs dense int8 {row['vs_inferon_dense_int8']:.2f}x, vs "
            f"sparse fp32 {row['vs_inferon_sparse_fp32']:.2f}x | of {layers} layers {csr} CSR, {blocks} block1x4, within "
            f"1 step "
            f"{100 * within:.2f} %")  # fmt: skip
        results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50")
    ap.add_argument("--levels", default="unstructured:0.9", help="comma-separated --prune specs")
    add_timing_arguments(ap, RESULTS / "sparse_int8")
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in parse_list(args.threads)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in parse_list(args.models):
            for level in parse_list(args.levels):
                rows += bench(name, level, args, Path(tmp))
    write_results(args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
