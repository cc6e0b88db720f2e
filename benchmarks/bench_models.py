"""Benchmark Inferon against ONNX Runtime on the nine real CNN architectures (batch 1).

    python benchmarks/bench_models.py [--models a,b] [--threads 1,2] [--runs 30] [--warmup 5]
                                      [--model-runs vgg19=10,...] [--json out.json] [--csv out.csv]
                                      [--plot out.png] [--onnx FILE ...]

``--onnx`` benchmarks ONNX files as they are (their own weights, e.g. the architectures written by
``benchmarks/export_torch_models.py``) instead of (or, with ``--models``, besides) the nine.

Each model ships with the onnx package (``light_<name>.onnx``, weights as ConstantOfShape
fills); its weights are replaced by seeded random tensors and the pre-softmax logits are
exposed as an extra output so that the numerical check is meaningful. Everything runs in one
process. Per model:

1. Inferon compile time, cold (fresh temporary ``INFERON_CACHE_DIR``: full C++ build) and
   cached (same cache dir again: import + passes + codegen + cache hit, no C++ compiler).
2. For each thread count: an ONNX Runtime session (CPUExecutionProvider, ORT_ENABLE_ALL,
   intra_op = threads, inter_op = 1, sequential) and an Inferon context with the same thread
   count; outputs compared (max abs diff / max abs ORT output, worst output); both warmed up;
   then ``runs`` timed iterations interleaved in an ABBA order (ORT, Inferon, Inferon, ORT, ...)
   so that drift on a noisy machine hits both engines alike; with several threads in rotating
   blocks of 5 back-to-back runs after 0.5 s idle (worker threads spin after a run and would slow
   the other engine: benchmarks/timing.py).

Reported: median and p10/p90 latency per engine, and ratio = ORT median / Inferon median
(> 1: Inferon is faster), plus the geometric mean of the ratios per thread count.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import GAP_S, timed  # noqa: E402

import inferon  # noqa: E402
from inferon.cpu import cpu_name  # noqa: E402
from inferon.testing import LIGHT_MODELS, expose_logits, light_model_path, randomize_weights  # noqa: E402

Feeds = dict[str, np.ndarray]


# ---------------------------------------------------------------------------- records
@dataclass
class Latency:
    """Latency statistics of one engine, in milliseconds."""

    median: float
    p10: float
    p90: float
    mean: float
    samples: list[float] = field(repr=False)


@dataclass
class Result:
    """One (model, thread count) measurement."""

    model: str
    threads: int
    runs: int
    warmup: int
    ort: Latency
    inferon: Latency
    ratio: float  # ORT median / Inferon median; > 1 means Inferon is faster
    max_rel_diff: float  # max |inferon - ort| / max |ort|, worst output
    inferon_isa: str
    loadavg_1min: float  # system load when the timed runs started (the machine may be shared)


@dataclass
class CompileTimes:
    """Inferon compile times of one model, in seconds."""

    model: str
    cold_s: float
    cached_s: float
    library_mb: float


# ---------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_model_runs(text: str) -> dict[str, int]:
    """`vgg19=8,zfnet512=10` → {"vgg19": 8, "zfnet512": 10}."""
    out: dict[str, int] = {}
    for item in parse_list(text):
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--model-runs: expected NAME=N, got {item!r}")
        out[name.strip()] = int(value)
    return out


def prepare_model(name: str, seed: int) -> onnx.ModelProto:
    """The shipped model with random weights and the logits exposed as an extra output."""
    shipped = onnx.load(str(light_model_path(name)))
    return expose_logits(randomize_weights(shipped, seed=seed))


def make_feeds(model: onnx.ModelProto, seed: int) -> Feeds:
    """A seeded uniform [0, 1) input for every graph input that is not an initializer."""
    rng = np.random.default_rng(seed)
    initializers = {init.name for init in model.graph.initializer}
    feeds: Feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        feeds[value.name] = rng.random(shape, dtype=np.float32)
    return feeds


def latency(samples_ns: Sequence[int]) -> Latency:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p10, median, p90 = np.percentile(ms, [10, 50, 90])
    return Latency(float(median), float(p10), float(p90), float(ms.mean()), [round(float(v), 4) for v in ms])


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def max_rel_diff(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """Worst over outputs of max |got - expected| relative to max |expected|."""
    worst = 0.0
    for g, e in zip(got, expected, strict=True):
        scale = max(float(np.abs(e).max()), 1e-30)
        worst = max(worst, float(np.abs(g.astype(np.float64) - e).max()) / scale)
    return worst


# ---------------------------------------------------------------------------- engines
def compile_inferon(model: onnx.ModelProto, name: str, workdir: Path) -> tuple[Path, CompileTimes]:
    """Compile twice with a fresh cache dir: cold (full build), then cached."""
    cache_dir = workdir / f"cache-{name}"
    previous = os.environ.get("INFERON_CACHE_DIR")
    os.environ["INFERON_CACHE_DIR"] = str(cache_dir)  # load_config() reads it on every call
    try:
        start = time.perf_counter()
        inferon.compile(model, workdir / f"{name}-cold.so")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        lib = inferon.compile(model, workdir / f"{name}.so")
        cached = time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop("INFERON_CACHE_DIR", None)
        else:
            os.environ["INFERON_CACHE_DIR"] = previous
    size_mb = lib.stat().st_size / 1e6
    return lib, CompileTimes(name, round(cold, 3), round(cached, 3), round(size_mb, 2))


def ort_session(model: onnx.ModelProto, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def bench_one(
    name: str, model: onnx.ModelProto, lib: Path, feeds: Feeds, threads: int, runs: int, warmup: int,
    gap_ms: float = 1000 * GAP_S,
) -> Result:  # fmt: skip
    """Build both engines at `threads`, check they agree, warm up, time them interleaved."""
    load = os.getloadavg()[0]
    session = ort_session(model, threads)
    compiled = inferon.load(lib, threads=threads)
    try:
        expected = session.run(None, feeds)
        got = compiled.run(feeds)
        diff = max_rel_diff([got[o] for o in compiled.output_names], expected)

        def run_ort() -> object:
            return session.run(None, feeds)

        def run_inferon() -> object:
            return compiled.run(feeds)

        # ABBA at 1 thread, rotating blocks after idle at several (the workers spin: timing.py)
        timed([run_ort, run_inferon], warmup, threads, gap_ms / 1000.0)
        ort_ns, inf_ns = timed([run_ort, run_inferon], runs, threads, gap_ms / 1000.0)
        isa = compiled.isa
    finally:
        compiled.close()
    ort_lat, inf_lat = latency(ort_ns), latency(inf_ns)
    ratio = ort_lat.median / inf_lat.median
    return Result(name, threads, runs, warmup, ort_lat, inf_lat, ratio, diff, isa, load)


# ---------------------------------------------------------------------------- output
HEADER = (
    f"{'model':<14} {'thr':>3} {'ORT ms':>9} {'(p10-p90)':>17} {'Inferon ms':>10} {'(p10-p90)':>17} "
    f"{'ratio':>6} {'rel diff':>9} {'load':>5}"
)


def format_row(r: Result) -> str:
    def spread(lat: Latency) -> str:
        return f"({lat.p10:.2f}-{lat.p90:.2f})"

    return (
        f"{r.model:<14} {r.threads:>3} {r.ort.median:>9.2f} {spread(r.ort):>17} {r.inferon.median:>10.2f} "
        f"{spread(r.inferon):>17} {r.ratio:>6.2f} {r.max_rel_diff:>9.1e} {r.loadavg_1min:>5.1f}"
    )


def geomeans(results: Sequence[Result]) -> dict[int, float]:
    by_threads: dict[int, list[float]] = {}
    for r in results:
        by_threads.setdefault(r.threads, []).append(r.ratio)
    return {t: geomean(v) for t, v in sorted(by_threads.items())}


def git_revision() -> str:
    """`<commit>[+dirty]` of the checkout being benchmarked, or "" outside git."""
    import subprocess

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "inferon", "runtime")
    return f"{head}+dirty" if head and dirty else head


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "inferon": inferon.__version__,
        "git": git_revision(),
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "INFERON_"))},
        "loadavg": os.getloadavg(),
    }


def write_json(
    path: Path, args: argparse.Namespace, results: Sequence[Result], compiles: Sequence[CompileTimes]
) -> None:
    doc = {
        "environment": environment(),
        "settings": {
            "threads": args.threads,
            "runs": args.runs,
            "warmup": args.warmup,
            "seed": args.seed,
            "gap_ms": args.gap_ms,
        },
        "geomean_ratio": {str(t): g for t, g in geomeans(results).items()},
        "compile": [asdict(c) for c in compiles],
        "results": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_csv(path: Path, results: Sequence[Result], compiles: Sequence[CompileTimes]) -> None:
    times = {c.model: c for c in compiles}
    fields = [
        "model", "threads", "runs", "ort_median_ms", "ort_p10_ms", "ort_p90_ms", "inferon_median_ms",
        "inferon_p10_ms", "inferon_p90_ms", "ratio", "max_rel_diff", "loadavg_1min", "compile_cold_s", "compile_cached_s",
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in results:
            c = times.get(r.model)
            writer.writerow([
                r.model, r.threads, r.runs, f"{r.ort.median:.4f}", f"{r.ort.p10:.4f}", f"{r.ort.p90:.4f}",
                f"{r.inferon.median:.4f}", f"{r.inferon.p10:.4f}", f"{r.inferon.p90:.4f}", f"{r.ratio:.4f}",
                f"{r.max_rel_diff:.3e}", f"{r.loadavg_1min:.2f}", c.cold_s if c else "", c.cached_s if c else "",
            ])  # fmt: skip


def write_plot(path: Path, results: Sequence[Any]) -> None:
    """Bar chart of the ratio per model and thread count (`results`: anything with model/threads/ratio)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is not installed: skipping the plot {path} (pip install matplotlib)")
        return
    models = list(dict.fromkeys(r.model for r in results))
    threads = sorted({r.threads for r in results})
    ratio = {(r.model, r.threads): r.ratio for r in results}
    width = 0.8 / len(threads)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(models)), 4.0))
    for k, t in enumerate(threads):
        xs = [i + (k - (len(threads) - 1) / 2) * width for i in range(len(models))]
        ax.bar(xs, [ratio.get((m, t), float("nan")) for m in models], width, label=f"{t} thread(s)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("ORT ms / Inferon ms (median)")
    ax.set_title("Latency ratio, batch 1 (> 1: Inferon faster)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")


# ---------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated (default: all nine, none with --onnx)")
    ap.add_argument("--onnx", nargs="+", type=Path, default=[], metavar="FILE",
                    help="also benchmark these ONNX files as they are (name: the file's stem)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per engine (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up runs per engine (default 5)")
    ap.add_argument("--model-runs", default="", help="per-model timed runs, e.g. vgg19=8,zfnet512=10")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (input: seed + 1)")
    ap.add_argument("--json", type=Path, help="write results as JSON")
    ap.add_argument("--csv", type=Path, help="write results as CSV")
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=1000 * GAP_S,
        help="idle time before each block of runs with >1 thread, so that neither engine's spinning "
        "worker threads slow the other's next run (default 500; see benchmarks/timing.py)",
    )
    ap.add_argument("--plot", type=Path, help="write a bar chart of the ratios (needs matplotlib)")
    ap.add_argument(
        "--replot",
        type=Path,
        metavar="RESULTS.json",
        help="only redraw --plot from a results file written by --json (no benchmark)",
    )
    args = ap.parse_args(argv)
    args.models = parse_list(args.models) if args.models is not None else ([] if args.onnx else list(LIGHT_MODELS))
    missing = [str(p) for p in args.onnx if not p.is_file()]
    if missing:
        ap.error(f"no such ONNX file(s): {', '.join(missing)}")
    args.threads = [int(t) for t in parse_list(args.threads)]
    args.model_runs = parse_model_runs(args.model_runs)
    unknown = [m for m in args.models if m not in LIGHT_MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(LIGHT_MODELS)}")
    return args


def bench_model(name: str, args: argparse.Namespace, path: Path | None = None) -> tuple[CompileTimes, list[Result]]:
    """Compile one model (a light model by name, or the ONNX file `path`), then benchmark it at every
    thread count (its files are removed after)."""
    with tempfile.TemporaryDirectory(prefix=f"inferon-bench-{name}-") as tmp:
        return _bench_model_in(name, args, Path(tmp), path)


def _bench_model_in(name: str, args: argparse.Namespace, workdir: Path, path: Path | None) -> tuple[CompileTimes, list[Result]]:
    start = time.perf_counter()
    model = prepare_model(name, args.seed) if path is None else onnx.load(str(path))
    feeds = make_feeds(model, args.seed + 1)
    log(f"[{name}] compiling (cold, then cached) ...")
    lib, times = compile_inferon(model, name, workdir)
    log(f"[{name}] compile cold {times.cold_s:.1f} s, cached {times.cached_s:.1f} s, {times.library_mb:.1f} MB")
    runs = args.model_runs.get(name, args.runs)
    results = []
    for threads in args.threads:
        log(f"[{name}] threads={threads}: check, {args.warmup} warm-up + {runs} timed runs each ...")
        result = bench_one(name, model, lib, feeds, threads, runs, args.warmup, args.gap_ms)
        print(format_row(result), flush=True)
        results.append(result)
        gc.collect()
    log(f"[{name}] done in {time.perf_counter() - start:.1f} s")
    return times, results


def print_summary(results: Sequence[Result], compiles: Sequence[CompileTimes]) -> None:
    print()
    for threads, g in geomeans(results).items():
        print(f"geomean ratio (ORT / Inferon), threads={threads}: {g:.3f}")
    print()
    print(f"{'model':<14} {'cold compile s':>14} {'cached s':>9} {'.so MB':>8}")
    for c in compiles:
        print(f"{c.model:<14} {c.cold_s:>14.2f} {c.cached_s:>9.2f} {c.library_mb:>8.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        if not args.plot:
            raise SystemExit("--replot needs --plot OUT.png")
        rows = json.loads(args.replot.read_text())["results"]
        write_plot(args.plot, [SimpleNamespace(**r) for r in rows])
        return 0
    env = environment()
    print(f"# {env['cpu']} ({env['cores']} cores), onnxruntime {env['onnxruntime']}, inferon {env['inferon']}")
    print(
        f"# batch 1, runs={args.runs} warmup={args.warmup}; ratio = ORT median / Inferon median (> 1: Inferon faster)"
    )
    print(HEADER, flush=True)
    results: list[Result] = []
    compiles: list[CompileTimes] = []
    jobs: list[tuple[str, Path | None]] = [(name, None) for name in args.models]
    jobs += [(path.stem, path) for path in args.onnx]
    for name, path in jobs:
        times, rows = bench_model(name, args, path)
        compiles.append(times)
        results.extend(rows)
        gc.collect()
    print_summary(results, compiles)
    if args.json:
        write_json(args.json, args, results, compiles)
        log(f"wrote {args.json}")
    if args.csv:
        write_csv(args.csv, results, compiles)
        log(f"wrote {args.csv}")
    if args.plot:
        write_plot(args.plot, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
