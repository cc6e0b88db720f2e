"""INT8 benchmark: ONNX Runtime's own quantized models vs Inferon on the same file, and Inferon's own
quantization, against ONNX Runtime FP32 and INT8, in one run.

    python benchmarks/bench_int8.py [--models resnet50,squeezenet,inception_v2] [--threads 1,2]
                                    [--runs 20] [--warmup 3] [--calib 8]

Per model (the onnx package's light_<name>.onnx with seeded random weights, batch 1):

1. **ORT-quantized**: `onnxruntime.quantization.quant_pre_process`, then `quantize_static` (QDQ,
   per-channel int8 weights, uint8 activations, min/max calibration on `--calib` random inputs).
   Inferon compiles that same file (fold-qdq turns its QDQ chains into INT8 kernels).
2. **Inferon-quantized**: `inferon.compile(float model, quantize="int8", calibration=...)` on the
   same calibration inputs.
3. Timed per thread count, in rotating order: ORT FP32 (float model), ORT INT8 (the QDQ file),
   Inferon on the QDQ file, Inferon on its own quantization; `--runs` samples after warm-up, medians.

Checked first: Inferon on the QDQ file vs ORT INT8 on it (fraction of logits within one output
quantization step, >= 99.9 % expected), and Inferon's own INT8 vs the float model (top-1 agreement on
fresh random inputs, relative error of the logits). Ratios > 1 mean Inferon is faster.
Results: benchmarks/results/int8.json and int8.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_models import environment, geomean, latency, log, ort_session, parse_list  # noqa: E402
from timing import timed  # noqa: E402

import inferon  # noqa: E402
from inferon.testing import expose_logits, light_model_path, quantize_onnxruntime, randomize_weights  # noqa: E402

RESULTS = HERE / "results"


def float_model(name: str, seed: int) -> tuple[onnx.ModelProto, str, tuple[int, ...]]:
    model = expose_logits(randomize_weights(onnx.load(light_model_path(name)), seed))
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    return model, inp.name, tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)


def logits_step(q: onnx.ModelProto, output: str) -> float:
    """The quantization step of `output` in the QDQ model (scale of the DequantizeLinear making it)."""
    inits = {i.name: i for i in q.graph.initializer}
    for node in q.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] == output and node.input[1] in inits:
            return float(numpy_helper.to_array(inits[node.input[1]]))
    return 0.0


def bench(name: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    fmodel, input_name, shape = float_model(name, args.seed)
    rng = np.random.default_rng(args.seed)
    calib = rng.standard_normal((args.calib, *shape)).astype(np.float32)
    qmodel = quantize_onnxruntime(fmodel, [{input_name: c} for c in calib])
    qdq_lib = inferon.compile(qmodel, workdir / f"{name}-qdq.so")
    own_lib = inferon.compile(fmodel, workdir / f"{name}-own.so", quantize="int8", calibration={input_name: calib})
    logits = fmodel.graph.output[-1].name
    feeds = {input_name: rng.standard_normal(shape).astype(np.float32)}
    results = []
    for threads in args.threads:
        ort_f32, ort_i8 = ort_session(fmodel, threads), ort_session(qmodel, threads)
        qdq, own = inferon.load(qdq_lib, threads=threads), inferon.load(own_lib, threads=threads)
        try:
            out_names = [o.name for o in qmodel.graph.output]
            ref = dict(zip(out_names, ort_i8.run(None, feeds), strict=True))[logits]
            got = qdq.run(feeds)[logits]
            step = logits_step(qmodel, logits) or float(np.abs(ref).max()) / 255
            within = float(np.mean(np.abs(got.astype(np.float64) - ref) <= step * 1.001))
            agree, errs = [], []
            for i in range(8):
                x = {input_name: np.random.default_rng(1000 + i).standard_normal(shape).astype(np.float32)}
                f = dict(zip([o.name for o in fmodel.graph.output], ort_f32.run(None, x), strict=True))[logits]
                o = own.run(x)[logits]
                agree.append(float(f.argmax() == o.argmax()))
                errs.append(float(np.abs(o - f).mean() / (np.abs(f).mean() or 1.0)))
            runners = [lambda s=ort_f32: s.run(None, feeds), lambda s=ort_i8: s.run(None, feeds),
                       lambda m=qdq: m.run(feeds), lambda m=own: m.run(feeds)]  # fmt: skip
            gap = args.gap_ms / 1000.0  # multi-thread blocks: let the other engines' workers go idle
            timed(runners, args.warmup, threads, gap)
            f32, i8, iq, io = (latency(v) for v in timed(runners, args.runs, threads, gap))
        finally:
            qdq.close()
            own.close()
        row = {
            "model": name, "threads": threads, "ort_fp32_ms": f32.median, "ort_int8_ms": i8.median,
            "inferon_qdq_ms": iq.median, "inferon_own_ms": io.median,
            "qdq_vs_ort_int8": i8.median / iq.median, "own_vs_ort_int8": i8.median / io.median,
            "qdq_vs_ort_fp32": f32.median / iq.median, "own_vs_ort_fp32": f32.median / io.median,
            "qdq_within_one_step": within, "own_top1_agreement": float(np.mean(agree)),
            "own_rel_error": float(np.mean(errs)),
        }  # fmt: skip
        log(f"{name:<13} {threads} thr: ORT fp32 {f32.median:7.2f}  ORT int8 {i8.median:7.2f}  Inferon(QDQ file) "
            f"{iq.median:7.2f}  Inferon(own) {io.median:7.2f} ms | ORT int8 / Inferon {row['qdq_vs_ort_int8']:.2f}x, "
            f"ORT fp32 / Inferon {row['qdq_vs_ort_fp32']:.2f}x | QDQ within 1 step {100 * within:.2f} %, own top-1 "
            f"{100 * row['own_top1_agreement']:.0f} %, rel err {100 * row['own_rel_error']:.1f} %")  # fmt: skip
        results.append(row)
    return results


def add_timing_arguments(ap: argparse.ArgumentParser, out: Path) -> None:
    """The options shared by the INT8 benchmarks: threads, runs, calibration, output prefix."""
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calib", type=int, default=8, help="calibration samples (random normal inputs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap-ms", type=float, default=500.0,
                    help="idle before each block of multi-threaded runs (ms): the engines' workers spin after a "
                         "run (benchmarks/timing.py)")
    ap.add_argument("--out", type=Path, default=out, help="output prefix (.json, .csv)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,squeezenet,inception_v2")
    add_timing_arguments(ap, RESULTS / "int8")
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in parse_list(args.threads)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in parse_list(args.models):
            rows += bench(name, args, Path(tmp))
    summary = {}
    for t in args.threads:
        sel = [r for r in rows if r["threads"] == t]
        summary[f"{t}thr"] = {k: round(geomean([r[k] for r in sel]), 3)
                              for k in ("qdq_vs_ort_int8", "own_vs_ort_int8", "qdq_vs_ort_fp32", "own_vs_ort_fp32")}  # fmt: skip
        log(f"geomean {t} thr: " + ", ".join(f"{k} {v:.2f}x" for k, v in summary[f'{t}thr'].items()))
    write_results(args, rows, summary)
    return 0


def write_results(args: argparse.Namespace, rows: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> None:
    """`args.out`.json (environment, arguments, summary, rows) and .csv (one line per row)."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"environment": environment(), "args": {k: str(v) for k, v in vars(args).items()},
           **({"summary": summary} if summary is not None else {}), "results": rows}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)


if __name__ == "__main__":
    raise SystemExit(main())
