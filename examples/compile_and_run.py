"""Compile a real CNN with Inferon, run it, compare with ONNX Runtime and time both.

    python examples/compile_and_run.py                 # ResNet-50 (from the onnx package), random weights
    python examples/compile_and_run.py --model squeezenet --threads 2

The model is one of the real architectures shipped inside the `onnx` pip package; its constant
weights are replaced by seeded random tensors so that the numbers mean something.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import inferon
from inferon.testing import LIGHT_MODELS, expose_logits, light_model_path, randomize_weights


def _median_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", choices=LIGHT_MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    # random weights make the final softmax saturate: also compare the logits before it
    model = expose_logits(randomize_weights(onnx.load(str(light_model_path(args.model))), seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / f"{args.model}.so"
        start = time.perf_counter()
        inferon.compile(model, lib, verbose=True)
        print(f"compiled {args.model} in {time.perf_counter() - start:.1f} s -> {lib.name}")
        compiled = inferon.load(lib, threads=args.threads)
        (info,) = compiled.inputs
        x = np.random.default_rng(1).random(info.shape, dtype=np.float32)

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ok = True
        got_all = compiled.run({info.name: x})
        for (name, got), expected in zip(got_all.items(), session.run(None, {info.name: x})):
            scale = max(float(np.abs(expected).max()), 1e-6)
            diff = float(np.abs(got - expected).max())
            ok = ok and diff <= 1e-3 * scale
            print(f"output '{name}' {list(got.shape)}: max |inferon - onnxruntime| = {diff:.3g} (scale {scale:.3g})")

        compiled(x)
        session.run(None, {info.name: x})
        t_inferon = _median_ms(lambda: compiled(x), args.runs)
        t_ort = _median_ms(lambda: session.run(None, {info.name: x}), args.runs)
        print(f"latency ({args.threads} thread(s), median of {args.runs}): inferon {t_inferon:.2f} ms, "
              f"onnxruntime {t_ort:.2f} ms, ratio ORT/inferon {t_ort / t_inferon:.2f}")  # fmt: skip
        print("outputs match" if ok else "OUTPUTS DIFFER")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
