"""Single 3x3 convolutions: im2col + GEMM against Winograd F(2x2,3x3) and F(4x4,3x3), and ONNX Runtime.

    python benchmarks/bench_winograd.py [--threads 1,2] [--runs 30] [--json out.json] [--shapes C,M,H;...]

Each shape is a Conv (3x3, stride 1, pad 1, bias) + Relu model of input [1, C, H, H] with M output
channels, compiled three times (`winograd="off"`, `"2"`, `"4"`) and run in one process, interleaved in
rotating order, after a warm-up; reported: the median latency of each variant, the ratio of im2col
to each Winograd variant (> 1: Winograd is faster), ONNX Runtime's median for reference, what
`conv-to-winograd`'s rule (`winograd_tile`) picks, and the largest deviation of each variant from ORT.
The rule in inferon/passes/loop/conv_to_winograd.py is set from this table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import inferon  # noqa: E402
from inferon.passes.loop.conv_to_winograd import winograd_tile  # noqa: E402

# (C, M, H): ResNet-50, VGG, DenseNet-121, SqueezeNet and Inception-like layers
SHAPES = [
    (64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7),
    (64, 64, 112), (128, 128, 56), (256, 256, 28), (512, 512, 14),
    (128, 32, 56), (128, 32, 28), (128, 32, 14), (128, 32, 7),
    (16, 64, 55), (32, 128, 27), (64, 256, 13), (96, 128, 28), (160, 224, 14),
]  # fmt: skip


def conv_model(c: int, m: int, h: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y0"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, h, h])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def time_once(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gap-ms", type=float, default=50.0, help="pause before each multi-threaded run (default 50)")
    ap.add_argument("--shapes", help="C,M,H;C,M,H;... instead of the built-in list")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")] if args.shapes else SHAPES
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for c, m, h in shapes:
            model = conv_model(c, m, h)
            path = Path(tmp) / "conv.onnx"
            onnx.save(model, path)
            x = np.random.default_rng(1).standard_normal((1, c, h, h)).astype(np.float32)
            libs = {mode: inferon.compile(path, Path(tmp) / f"conv_{mode}.so", winograd=mode) for mode in ("off", "2", "4")}
            for threads in (int(t) for t in args.threads.split(",")):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                ref = sess.run(None, {"x": x})[0]
                runners = {"ort": lambda s=sess, x=x: s.run(None, {"x": x})}
                models = {mode: inferon.load(lib, threads=threads) for mode, lib in libs.items()}
                dev = {}
                for mode, mdl in models.items():
                    out = mdl(x)
                    dev[mode] = float(np.abs(out - ref).max() / np.abs(ref).max())
                    runners[mode] = lambda mdl=mdl, x=x: mdl(x)
                names = list(runners)
                for _ in range(args.warmup):
                    for name in names:
                        runners[name]()
                samples: dict[str, list[float]] = {name: [] for name in names}
                for r in range(args.runs):
                    order = names[r % len(names):] + names[: r % len(names)]
                    for name in order:
                        if threads > 1:
                            time.sleep(args.gap_ms / 1e3)  # ORT's worker threads spin after a run
                        samples[name].append(time_once(runners[name]))
                med = {name: 1e3 * float(np.median(v)) for name, v in samples.items()}
                row = {
                    "C": c, "M": m, "H": h, "threads": threads, "median_ms": med,
                    "im2col_over_f2": med["off"] / med["2"], "im2col_over_f4": med["off"] / med["4"],
                    "rule": winograd_tile(m, c, h, h), "max_rel_dev_vs_ort": dev,
                }  # fmt: skip
                results.append(row)
                print(f"C={c:4d} M={m:4d} H={h:4d} thr={threads}  ort {med['ort']:7.3f}  im2col {med['off']:7.3f}  "
                      f"F2 {med['2']:7.3f} ({row['im2col_over_f2']:.2f}x)  F4 {med['4']:7.3f} ({row['im2col_over_f4']:.2f}x)  "
                      f"rule {row['rule']}  dev F2 {dev['2']:.1e} F4 {dev['4']:.1e}", flush=True)  # fmt: skip
                for mdl in models.values():
                    mdl.close()
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "winograd", "runs": args.runs, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
