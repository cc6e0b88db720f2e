"""The `inferon` command line: compile, run, inspect and list passes."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inferon.errors import InferonError

EPILOG = """examples:
  inferon compile model.onnx -o model.so -v
  inferon compile model.onnx -o model.so --dump-ir ir/ --print-ir-after fuse-epilogue
  inferon compile model.onnx -o model.so --input-shape data=1,3,224,224
  inferon compile model.onnx -o pruned.so --prune unstructured:0.9   # sparse kernels (experiment)
  inferon run model.so --input x.npy --output y.npy --threads 2
  inferon inspect model.onnx
  inferon passes
"""


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=D1,D2,..., got '{text}'")
    try:
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"dimensions must be integers: '{dims}'") from None
    if any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"dimensions must be positive: '{dims}'")
    return name, shape


def build_parser() -> argparse.ArgumentParser:
    from inferon.version import __version__

    parser = argparse.ArgumentParser(
        prog="inferon",
        description="Compile ONNX models into fast shared libraries (model.so) for x86-64 CPUs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"inferon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile an ONNX model into a shared library",
                       description="Import the ONNX model, run the pass pipeline (see `inferon passes`), "
                       "print C++ and build model.so with the system g++. Compiles are cached ($INFERON_CACHE_DIR, default "
                       "~/.cache/inferon): the same model with the same options and compiler is a copy.")
    c.add_argument("model", type=Path, help="the .onnx file")
    c.add_argument("-o", "--output", type=Path, help="output library (default: MODEL.so next to the model)")
    c.add_argument("--input-shape", action="append", type=_shape_arg, default=[], metavar="NAME=D1,D2,...",
                   help="static shape of an input with dynamic dimensions (repeatable; a dynamic batch dimension alone defaults to 1)")
    c.add_argument("--dump-ir", type=Path, metavar="DIR",
                   help="write the IR after every pass as DIR/NNN_<pass>.mlir, plus model.cpp")
    c.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                   help="print the IR after PASS to stderr (repeatable)")
    c.add_argument("--pass-plugin", action="append", type=Path, default=[], metavar="FILE.py",
                   help="import a Python file that registers passes with inferon.register_pass")
    c.add_argument("--target", choices=["native", "avx2", "avx512", "scalar"], default="native",
                   help="highest instruction set the kernels may use (default native: the best the CPU "
                   "running the model has; at the AVX-512 level INT8 layers use AVX512-VNNI where the CPU has it, "
                   "sparse float layers and few-column GEMMs AVX-512F, other dense float GEMMs 6 x 32 zmm tiles on Intel "
                   "CPUs and the AVX2 tiles elsewhere, which are as fast on Zen 4); a "
                   "scalar fallback is always included")
    c.add_argument("--sparse", choices=["auto", "off", "csr", "2:4"], default="auto",
                   help="weight storage per conv/FC layer: auto (default) finds the zeros already in the "
                   "weights and picks dense, CSR or 2:4 (int8 weights of quantized convs / FC layers: dense, "
                   "CSR (convs, with AVX512-VNNI) or block1x4) by a cost model calibrated on this CPU (layers "
                   "where sparse would be slower stay dense); off: all dense; csr / 2:4: force that format "
                   "wherever it applies (int8 weights: CSR where its kernel runs, else block1x4)")
    c.add_argument("--winograd", choices=["auto", "off", "2", "4"], default="auto",
                   help="float 3x3 stride-1 convolutions: auto (default) uses Winograd F(4x4,3x3) or "
                   "F(2x2,3x3) (2.25-4x fewer multiplications, slightly larger rounding error) where "
                   "measured faster than im2col + GEMM; off: never; 2 / 4: that tile for every such conv")
    c.add_argument("--layout", choices=["auto", "nchw"], default="auto",
                   help="activation layout: auto (default) keeps NCHW but lays out the buffers between "
                   "kernels that hold 8 channels per vector (lanes GEMMs, depthwise convs, squeeze-excite) "
                   "as blocked NCHWc8, which saves their transposes; nchw: NCHW everywhere")
    c.add_argument("--prune", metavar="SPEC",
                   help="experiments only: magnitude-prune every conv/FC weight except the stem first, "
                   "per layer: unstructured:S (e.g. unstructured:0.9 zeroes 90%% of each layer), 2:4, or "
                   "block1x4:S (whole blocks of 4 input channels at one kernel tap, 4 inputs for FC: the unit of the "
                   "INT8 block-sparse kernel); "
                   "prints the output deviation this causes on a random input; with --quantize the float "
                   "weights are pruned before they are quantized (sparse INT8)")
    c.add_argument("--quantize", choices=["int8"], default=None,
                   help="quantize a float model to INT8 (post-training, static): per-channel int8 weights, "
                        "per-tensor uint8 activations from --calibration; prints the deviation from the float "
                        "model. Not needed for models that are already quantized (QDQ / QOperator ONNX)")
    c.add_argument("--calibration", type=Path, metavar="DATA.npz",
                   help="calibration inputs for --quantize: an .npz with one array per model input, samples "
                        "along the first axis (e.g. 16-100 representative inputs; for a batch-1 input the batch axis "
                        "may be left out)")
    c.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="activation ranges from the calibration run: minmax (extremes seen), percentile "
                        "(0.01-99.99 %%) or entropy (KL-optimal clipping). Default: minmax")
    c.add_argument("--keep-float", action="append", default=[], metavar="LAYER",
                   help="leave a layer in float with --quantize: its index among the Conv/MatMul layers "
                        "(0, 1, -1, ...) or first / last; repeatable. The report lists the layers")
    c.add_argument("--weight-rounding", choices=["adaptive", "nearest"], default="adaptive",
                   help="how --quantize rounds the int8 weights: adaptive (each weight up or down, whichever "
                        "gives the layer a smaller output error on the calibration inputs; AdaRound's objective) "
                        "or nearest. Default: adaptive")
    c.add_argument("-v", "--verbose", action="store_true", help="report each stage and its time")

    r = sub.add_parser("run", help="run a compiled model on .npy/.npz inputs",
                       description="Run model.so on inputs from .npy files (positional) or an .npz "
                       "(by name); random inputs if none are given. Prints output shapes and latency.")
    r.add_argument("library", type=Path, help="a model.so built by `inferon compile`")
    r.add_argument("--input", action="append", type=Path, default=[], metavar="FILE",
                   help=".npy (one input, in order) or .npz (inputs by name); repeatable")
    r.add_argument("--output", type=Path, metavar="FILE.npz", help="save the outputs as .npz (or .npy if one)")
    r.add_argument("--threads", type=int, default=1, help="worker threads (default 1; 0 = all cores)")
    r.add_argument("--repeat", type=int, default=1, help="run this many times and report the median latency")
    r.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also time every kernel call over N runs and print the slowest ops")
    r.add_argument("--profile-top", type=int, default=25, metavar="K", help="how many ops the profile lists")

    i = sub.add_parser("inspect", help="list a model's ops, shapes, FLOPs and support status")
    i.add_argument("model", type=Path)
    i.add_argument("--input-shape", action="append", type=_shape_arg, default=[], metavar="NAME=D1,D2,...")

    sub.add_parser("passes", help="list the pass pipeline in order")
    return parser


def _compile(args: argparse.Namespace) -> int:
    import inferon
    from inferon.passes import load_plugin

    for plugin in args.pass_plugin:
        load_plugin(plugin)
    output = args.output or args.model.with_suffix(".so")
    start = time.perf_counter()
    inferon.compile(
        args.model, output, input_shapes=dict(args.input_shape), dump_ir=args.dump_ir,
        print_ir_after=args.print_ir_after, verbose=args.verbose, target=args.target, prune=args.prune,
        sparse=args.sparse, winograd=args.winograd, layout=args.layout, quantize=args.quantize, calibration=args.calibration,
        calibration_method=args.calibration_method, keep_float=[k for item in args.keep_float for k in item.split(",")],
        weight_rounding=args.weight_rounding,
    )  # fmt: skip
    print(f"compiled {args.model} -> {output} in {time.perf_counter() - start:.2f} s")
    if args.dump_ir:
        print(f"IR after every pass in {args.dump_ir}/")
    return 0


def _load_inputs(paths: Sequence[Path], names: list[str]) -> list[np.ndarray] | dict[str, np.ndarray]:
    positional: list[np.ndarray] = []
    named: dict[str, np.ndarray] = {}
    for path in paths:
        if not path.is_file():
            raise InferonError(f"input file '{path}' does not exist")
        data = np.load(path)
        if isinstance(data, np.ndarray):
            positional.append(data)
        else:
            named.update({k: data[k] for k in data.files})
    if named and positional:
        raise InferonError("give inputs either as .npy files (in order) or as one .npz, not both")
    return named or positional


def _run(args: argparse.Namespace) -> int:
    import inferon

    model = inferon.load(args.library, threads=args.threads)
    if args.input:
        inputs = _load_inputs(args.input, model.input_names)
        feeds = inputs if isinstance(inputs, dict) else dict(zip(model.input_names, inputs))
        if not isinstance(inputs, dict) and len(inputs) != len(model.input_names):
            raise InferonError(f"model has {len(model.input_names)} input(s) {model.input_names}, got {len(inputs)} file(s)")
    else:
        rng = np.random.default_rng(0)
        feeds = {t.name: (rng.integers(np.iinfo(t.dtype).min, np.iinfo(t.dtype).max + 1, t.shape, dtype=t.dtype)
                          if t.dtype.kind in "iu" else rng.standard_normal(t.shape).astype(t.dtype))
                 for t in model.inputs}  # fmt: skip
        print("no --input given: using random inputs (normal for float, uniform over the range for integers)")
    times = []
    outputs: dict[str, np.ndarray] = {}
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        outputs = model.run(feeds)
        times.append(time.perf_counter() - start)
    for name, value in outputs.items():
        print(f"output '{name}': shape {list(value.shape)}, mean {value.mean():.6g}, max {value.max():.6g}")
    print(f"latency: median {1000 * float(np.median(times)):.3f} ms over {len(times)} run(s), "
          f"{args.threads} thread(s), isa {model.isa}")  # fmt: skip
    if args.profile > 0:
        rows = model.profile(*(feeds[n] for n in model.input_names), runs=args.profile)
        print(f"profile over {args.profile} run(s): {sum(r.ms for r in rows):.3f} ms in {len(rows)} ops")
        print(f"{'#':>4} {'ms':>9} {'%':>6}  op")
        for r in rows[: args.profile_top]:
            print(f"{r.index:>4} {r.ms:>9.3f} {r.percent:>6.1f}  {r.op}")
    if args.output:
        if args.output.suffix == ".npy" and len(outputs) == 1:
            np.save(args.output, next(iter(outputs.values())))
        else:
            np.savez(args.output, **outputs)
        print(f"saved outputs to {args.output}")
    return 0


def _inspect(args: argparse.Namespace) -> int:

    from inferon.frontend.onnx.importer import import_model, load_proto
    from inferon.frontend.onnx.registry import supported_ops
    from inferon.ir.dialects import graph
    from inferon.ir.dialects.graph import element_dtype, shape_of

    proto = load_proto(args.model)
    supported = set(supported_ops())
    counts = Counter(n.op_type for n in proto.graph.node)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    print(f"model: {args.model}  (opset {opset}, {len(proto.graph.node)} nodes, producer '{proto.producer_name}')")
    print("ops:")
    for op, n in sorted(counts.items()):
        status = "supported" if op in supported else "constant-folded only" if op in _FOLDABLE else "UNSUPPORTED"
        print(f"  {op:<24} x{n:<4} {status}")
    try:
        module, weights = import_model(proto, dict(args.input_shape))
    except InferonError as exc:
        print(f"import: FAILED: {exc}")
        return 1
    fn = next(iter(module.ops))
    block = fn.body.block  # type: ignore[attr-defined]
    def dtype(value: object, attrs: object) -> str:  # as the compiled model's API takes / returns it
        marked = attrs.data.get("inferon.dtype")  # type: ignore[attr-defined]
        return "bool" if marked is not None and marked.data == "bool" else str(element_dtype(value))  # type: ignore[arg-type]

    for arg, attrs in zip(block.args, fn.arg_attrs.data):  # type: ignore[attr-defined]
        print(f"input  {attrs.data['inferon.name'].data}: {list(shape_of(arg))} {dtype(arg, attrs)}")
    ret = block.last_op
    for value, attrs in zip(ret.operands, fn.res_attrs.data):  # type: ignore[attr-defined]
        print(f"output {attrs.data['inferon.name'].data}: {list(shape_of(value))} {dtype(value, attrs)}")
    flops = 0
    for op in block.ops:
        if isinstance(op, graph.Conv2dOp):
            w = shape_of(op.weight)
            flops += 2 * math.prod(shape_of(op.output)) * math.prod(w[1:])
        elif isinstance(op, graph.ConvTranspose2dOp):  # every input pixel x every weight of its group
            flops += 2 * math.prod(shape_of(op.input)) * math.prod(shape_of(op.weight)[1:])
        elif isinstance(op, graph.MatMulOp):
            flops += 2 * math.prod(shape_of(op.output)) * shape_of(op.lhs)[-1]
    n_weights = sum(a.size for a in weights.arrays.values())
    print(f"graph ops after import: {sum(1 for _ in block.ops)}; weights: {n_weights / 1e6:.2f} M floats")
    print(f"compute: {flops / 1e9:.3f} GFLOP (2 x MACs of Conv/Gemm/MatMul)")
    return 0


_FOLDABLE = {"Constant", "ConstantOfShape", "Shape", "Gather", "Slice", "Cast", "Range", "Expand"}


def _passes(args: argparse.Namespace) -> int:
    from inferon.passes import get_pass
    from inferon.pipeline import Pipeline

    for index, (stage, p) in enumerate(Pipeline.default().passes, start=1):
        doc = (type(p).__doc__ or "").strip().splitlines()[0]
        print(f"{index:2d}. [{stage:5}] {p.name:<22} {doc}")
    print("opt-in:")
    for name, how in OPT_IN_PASSES.items():
        doc = (get_pass(name).__doc__ or "").strip().splitlines()[0]
        print(f"    {name:<30} {doc} ({how})")
    return 0


# passes outside the default pipeline and how to switch them on
OPT_IN_PASSES = {
    "quantize": "--quantize int8 --calibration DATA.npz",
    "prune": "--prune SPEC",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"compile": _compile, "run": _run, "inspect": _inspect, "passes": _passes}
    try:
        return handlers[args.command](args)
    except InferonError as exc:
        print(f"inferon {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
