"""Benchmark single non-GEMM ops of CNNs: Inferon vs ONNX Runtime (and an older Inferon tree).

    python benchmarks/bench_ops.py [--ops dw_s1_232x14,maxpool_64x112] [--runs 50] [--warmup 10]
                                   [--baseline DIR] [--threads 1] [--json out.json]

Each op is a one-node (or Reshape-Transpose-Reshape) ONNX model with random weights. Engines:

* ``ort``: ONNX Runtime, CPUExecutionProvider, ORT_ENABLE_ALL, ``intra_op = threads``, run through
  an I/O binding with preallocated outputs;
* ``inferon``: this checkout's compiler, called through ``inferon_model_run`` with prebuilt tensor
  descriptors and preallocated outputs (no Python-side checks or allocation);
* ``base`` (with ``--baseline DIR``): the same model compiled by the Inferon tree at DIR (a copy of
  ``inferon/`` and ``runtime/``) in a subprocess, loaded into this process and run the same way.

Outputs are checked against ORT (max |diff| / max |ort|). Each sample is the wall time of ``inner``
back-to-back calls (chosen so that a sample lasts about 2 ms), divided by ``inner``; samples of the
engines are interleaved in a rotating order so that drift on a shared machine hits all alike.
Reported: the median per engine and ratio = ORT median / engine median (> 1: faster than ORT).
``noop`` (a Relu on 8 floats) shows the fixed per-call cost of each engine.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import inferon  # noqa: E402
from inferon.runtime import _CODES, CompiledModel, _Tensor  # noqa: E402


def _model(nodes: list[onnx.NodeProto], x_shape: tuple[int, ...], init: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def depthwise(c: int, hw: int, stride: int, k: int = 3) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal((c, 1, k, k)) * 0.3, "b": rng.standard_normal(c) * 0.1}
    p = k // 2
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=c, kernel_shape=[k, k], strides=[stride] * 2,
                            pads=[p] * 4)  # fmt: skip
    return _model([node], (1, c, hw, hw), init), (1, c, hw, hw)


def pool(kind: str, c: int, hw: int) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    node = helper.make_node(kind, ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return _model([node], (1, c, hw, hw), {}), (1, c, hw, hw)


def global_avg(c: int, hw: int) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    return _model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], (1, c, hw, hw), {}), (1, c, hw, hw)


def lrn(c: int, hw: int) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    node = helper.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    return _model([node], (1, c, hw, hw), {}), (1, c, hw, hw)


def channel_shuffle(c: int, hw: int, groups: int = 2) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    init = {"s1": np.array([1, groups, c // groups, hw, hw]), "s2": np.array([1, c, hw, hw])}
    nodes = [
        helper.make_node("Reshape", ["x", "s1"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.int64), k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model), (1, c, hw, hw)


def transpose(shape: tuple[int, ...], perm: list[int]) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    return _model([helper.make_node("Transpose", ["x"], ["y"], perm=perm)], shape, {}), shape


def softmax(n: int) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    return _model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], (1, n), {}), (1, n)


def noop() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    return _model([helper.make_node("Relu", ["x"], ["y"])], (1, 8), {}), (1, 8)


OPS: dict[str, Callable[[], tuple[onnx.ModelProto, tuple[int, ...]]]] = {
    "noop": noop,
    "dw3x3_s1_232x14": lambda: depthwise(232, 14, 1),
    "dw3x3_s2_232x14": lambda: depthwise(232, 14, 2),
    "dw3x3_s1_464x7": lambda: depthwise(464, 7, 1),
    "dw3x3_s2_464x14": lambda: depthwise(464, 14, 2),
    "dw3x3_s1_116x28": lambda: depthwise(116, 28, 1),
    "dw5x5_s1_240x28": lambda: depthwise(240, 28, 1, k=5),
    "maxpool3x3s2_64x112": lambda: pool("MaxPool", 64, 112),
    "avgpool3x3s2_240x28": lambda: pool("AveragePool", 240, 28),
    "gap_1024x7": lambda: global_avg(1024, 7),
    "lrn5_64x56": lambda: lrn(64, 56),
    "shuffle_232x14": lambda: channel_shuffle(232, 14),
    "shuffle_464x7": lambda: channel_shuffle(464, 7),
    "transpose_hw_64x56": lambda: transpose((1, 64, 56, 56), [0, 1, 3, 2]),
    "transpose_nhwc_64x56": lambda: transpose((1, 64, 56, 56), [0, 2, 3, 1]),
    "softmax_1000": lambda: softmax(1000),
}


# ---------------------------------------------------------------------------------- engines
class RawInferon:
    """inferon_model_run with prebuilt descriptors: the kernel time plus the C runtime's checks."""

    def __init__(self, path: Path, x: np.ndarray, threads: int) -> None:
        self.model = CompiledModel(path, threads=threads)
        self.x = np.ascontiguousarray(x)
        self.outs = [np.empty(o.shape, o.dtype) for o in self.model.outputs]
        self._keep: list[np.ndarray] = []
        self.c_in = self._pack([(self.model.inputs[0].name, self.x)])
        self.c_out = self._pack([(o.name, a) for o, a in zip(self.model.outputs, self.outs, strict=True)])
        self.lib, self.ctx = self.model._lib, self.model._ctx  # noqa: SLF001
        self.n_out = len(self.outs)

    def _pack(self, items: list[tuple[str, np.ndarray]]) -> ctypes.Array:
        arr = (_Tensor * len(items))()
        for i, (name, a) in enumerate(items):
            shape = np.array(a.shape, dtype=np.int64)
            self._keep.append(shape)
            ptr = shape.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            arr[i] = _Tensor(name.encode(), _CODES[a.dtype], a.ndim, ptr, a.ctypes.data)
        return arr

    def __call__(self) -> None:
        if self.lib.inferon_model_run(self.ctx, self.c_in, 1, self.c_out, self.n_out) != 0:
            raise RuntimeError("inferon_model_run failed")

    def output(self) -> np.ndarray:
        return self.outs[0]


class BoundOrt:
    """ONNX Runtime through an I/O binding with a preallocated output."""

    def __init__(self, model: onnx.ModelProto, x: np.ndarray, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        y = self.session.run(None, {"x": x})[0]
        self.x, self.y = x, np.empty_like(y)
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input("x", self.x)
        self.binding.bind_output("y", "cpu", 0, np.float32, list(self.y.shape), self.y.ctypes.data)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def output(self) -> np.ndarray:
        return self.y


# ---------------------------------------------------------------------------------- driver
def compile_baseline(root: Path, model: onnx.ModelProto, out: Path, cache: Path) -> Path:
    """Compile `model` with the Inferon tree at `root`, in a subprocess with its own cache."""
    src = out.with_suffix(".onnx")
    onnx.save(model, str(src))
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import inferon; inferon.compile({str(src)!r}, {str(out)!r})"
    env = dict(os.environ, INFERON_CACHE_DIR=str(cache))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(root))
    return out


def timed(engines: dict[str, Callable[[], None]], runs: int, warmup: int) -> dict[str, list[float]]:
    names = list(engines)
    # calls per sample: about 2 ms of the slowest engine
    for fn in engines.values():
        fn()
    per_call = []
    for fn in engines.values():
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        per_call.append((time.perf_counter() - t0) / 5)
    inner = max(1, min(1000, int(2e-3 / max(per_call))))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + runs):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            fn = engines[n]
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            dt = (time.perf_counter_ns() - t0) / inner / 1e3  # microseconds
            if r >= warmup:
                samples[n].append(dt)
    return samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated op names (default: all)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", type=Path, default=None, help="an older Inferon tree (inferon/ + runtime/)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise SystemExit(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    rows = []
    header = f"{'op':<22} {'ort us':>9} {'inferon us':>11} {'ratio':>7}"
    if args.baseline:
        header += f" {'base us':>9} {'base ratio':>10} {'speedup':>8}"
    print(header + f" {'rel diff':>9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="inferon-bench-ops-") as tmp:
        work = Path(tmp)
        for name in names:
            model, x_shape = OPS[name]()
            x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
            ort_run = BoundOrt(model, x, args.threads)
            engines: dict[str, Callable[[], None]] = {"ort": ort_run}
            cur = RawInferon(inferon.compile(model, work / f"{name}.so"), x, args.threads)
            engines["inferon"] = cur
            base = None
            if args.baseline:
                so = compile_baseline(args.baseline.resolve(), model, work / f"{name}-base.so", work / "base-cache")
                base = RawInferon(so, x, args.threads)
                engines["base"] = base
            diffs = []
            ort_run()
            scale = max(float(np.abs(ort_run.output()).max()), 1e-30)
            for eng in (cur, base):
                if eng is not None:
                    eng()
                    diffs.append(float(np.abs(eng.output() - ort_run.output()).max()) / scale)
            samples = timed(engines, args.runs, args.warmup)
            med = {n: float(np.median(v)) for n, v in samples.items()}
            row = {"op": name, "median_us": med, "ratio": med["ort"] / med["inferon"], "rel_diff": max(diffs)}
            line = f"{name:<22} {med['ort']:>9.2f} {med['inferon']:>11.2f} {row['ratio']:>7.2f}"
            if base is not None:
                row["base_ratio"] = med["ort"] / med["base"]
                row["speedup"] = med["base"] / med["inferon"]
                line += f" {med['base']:>9.2f} {row['base_ratio']:>10.2f} {row['speedup']:>8.2f}"
            print(line + f" {row['rel_diff']:>9.1e}", flush=True)
            rows.append(row)
            for eng in (cur, base):
                if eng is not None:
                    eng.model.close()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "loadavg": os.getloadavg()[0]}
        args.json.write_text(json.dumps({"meta": meta, "ops": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
