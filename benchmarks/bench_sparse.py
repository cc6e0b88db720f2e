"""Sparse weights on real models: Inferon sparse vs ONNX Runtime vs Inferon dense, in one process.

Each of the nine real architectures of the onnx package (random weights, batch 1) is magnitude-pruned
(`inferon.testing.prune_onnx`: every Conv/Gemm weight except the stem and depthwise convs, per
layer) to each sparsity level. The same pruned ONNX file is then run by ONNX Runtime (dense: it
does not exploit zeros), by Inferon with its default `sparse=auto` (sparsify picks dense/CSR/2:4 per
layer) and by Inferon with `sparse=off` (our dense kernels), interleaved round-robin after a warm-up;
medians of `--runs` runs. Outputs are checked against ONNX Runtime first.

    python benchmarks/bench_sparse.py                      # all models, 50/70/90 % and 2:4, 1 and 2 threads
    python benchmarks/bench_sparse.py --models resnet50 --levels unstructured:0.9 --threads 1
    python benchmarks/bench_sparse.py --replot             # plot from benchmarks/results/sparse.json

Writes benchmarks/results/sparse.{json,csv} (speedups, latencies, spread), sparse_layers.csv (per-layer
table of the Inferon sparse models: format, density, ms, effective GFLOP/s) and sparse.png (speedup
over ONNX Runtime and over Inferon dense versus sparsity).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_models import (  # noqa: E402
    environment,
    geomean,
    latency,
    log,
    make_feeds,
    max_rel_diff,
    ort_session,
    parse_list,
    prepare_model,
)
from timing import timed  # noqa: E402

import inferon  # noqa: E402
from inferon.testing import LIGHT_MODELS, prune_onnx  # noqa: E402

RESULTS = HERE / "results"
LEVELS = ("unstructured:0.5", "unstructured:0.7", "unstructured:0.9", "2:4")


@dataclass
class SparseResult:
    model: str
    level: str
    threads: int
    ort_ms: float
    sparse_ms: float
    dense_ms: float
    ort_p10_p90: tuple[float, float]
    sparse_p10_p90: tuple[float, float]
    dense_p10_p90: tuple[float, float]
    speedup_vs_ort: float
    speedup_vs_dense: float
    sparse_layers: int
    max_rel_diff: float


LABEL = re.compile(r"vec\.spmm (\w+) (\d+)% (\d+)x(\d+)x(\d+)(?: x(\d+))?")
GEMM = re.compile(r"vec\.gemm (\d+)x(\d+)x(\d+)(?: x(\d+))?")


def layer_rows(model: str, level: str, lib: Path, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-layer profile of one sparse model (1 thread): format, density, ms, effective GFLOP/s."""
    compiled = inferon.load(lib, threads=1)
    try:
        profile = compiled.profile(*(feeds[n] for n in compiled.input_names), runs=5)
    finally:
        compiled.close()
    rows = []
    for p in profile:
        if (m := LABEL.match(p.op)) is not None:
            fmt, dens, mm, nn, kk, batch = m.groups()
            density = int(dens) / 100
            flops = 2.0 * int(mm) * int(nn) * int(kk) * int(batch or 1) * (0.5 if fmt == "nm2_4" else density)
        elif (g := GEMM.match(p.op)) is not None:
            fmt, density = "dense", 1.0
            mm, nn, kk, batch = g.groups()
            flops = 2.0 * int(mm) * int(nn) * int(kk) * int(batch or 1)
        else:
            continue
        rows.append({
            "model": model, "level": level, "index": p.index, "op": p.op, "format": fmt, "density": density,
            "ms": round(p.ms, 4), "useful_gflops": round(flops / (p.ms * 1e6), 2) if p.ms > 0 else 0.0,
        })  # fmt: skip
    return rows


def bench(name: str, level: str, args: argparse.Namespace, workdir: Path) -> tuple[list[SparseResult], list[dict]]:
    model = prune_onnx(prepare_model(name, args.seed), level)
    feeds = make_feeds(model, args.seed + 1)
    tag = f"{name}-{level.replace(':', '')}"
    sparse_lib = inferon.compile(model, workdir / f"{tag}-sparse.so", dump_ir=workdir / tag)
    dense_lib = inferon.compile(model, workdir / f"{tag}-dense.so", sparse="off")
    layers = (workdir / tag / "model.cpp").read_text().count("inferon::spmm(")
    results = []
    for threads in args.threads:
        session = ort_session(model, threads)
        sparse, dense = inferon.load(sparse_lib, threads=threads), inferon.load(dense_lib, threads=threads)
        try:
            expected = session.run(None, feeds)
            diff = max(
                max_rel_diff([m.run(feeds)[o] for o in m.output_names], expected) for m in (sparse, dense)
            )
            runners = [lambda s=session: s.run(None, feeds), lambda m=sparse: m.run(feeds), lambda m=dense: m.run(feeds)]
            gap = args.gap_ms / 1000.0
            timed(runners, args.warmup, threads, gap)
            o, s, d = (latency(v) for v in timed(runners, args.runs, threads, gap))
        finally:
            sparse.close()
            dense.close()
        r = SparseResult(
            name, level, threads, o.median, s.median, d.median, (o.p10, o.p90), (s.p10, s.p90), (d.p10, d.p90),
            o.median / s.median, d.median / s.median, layers, diff,
        )  # fmt: skip
        log(f"{name:<13} {level:<17} {threads} thr: ORT {o.median:8.2f} ms  sparse {s.median:8.2f} ms  "
            f"dense {d.median:8.2f} ms  ORT/sparse {r.speedup_vs_ort:5.2f}x  dense/sparse {r.speedup_vs_dense:5.2f}x  "
            f"({layers} sparse layers, rel diff {diff:.1e})")  # fmt: skip
        results.append(r)
    return results, layer_rows(name, level, sparse_lib, feeds)


def write_outputs(results: list[SparseResult], layers: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, float]] = {}
    for level in dict.fromkeys(r.level for r in results):
        for t in sorted({r.threads for r in results}):
            sel = [r for r in results if r.level == level and r.threads == t]
            summary[f"{level} {t}thr"] = {
                "geomean_vs_ort": round(geomean([r.speedup_vs_ort for r in sel]), 3),
                "geomean_vs_dense": round(geomean([r.speedup_vs_dense for r in sel]), 3),
            }
    doc = {
        "environment": environment(),
        "settings": {"runs": args.runs, "warmup": args.warmup, "seed": args.seed, "gap_ms": args.gap_ms},
        "summary": summary,
        "results": [asdict(r) for r in results],
    }
    (RESULTS / "sparse.json").write_text(json.dumps(doc, indent=2) + "\n")
    with (RESULTS / "sparse.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "level", "threads", "ort_ms", "sparse_ms", "dense_ms", "speedup_vs_ort",
                    "speedup_vs_dense", "sparse_layers", "max_rel_diff"])  # fmt: skip
        for r in results:
            w.writerow([r.model, r.level, r.threads, f"{r.ort_ms:.3f}", f"{r.sparse_ms:.3f}", f"{r.dense_ms:.3f}",
                        f"{r.speedup_vs_ort:.3f}", f"{r.speedup_vs_dense:.3f}", r.sparse_layers, f"{r.max_rel_diff:.2e}"])  # fmt: skip
    if layers:
        with (RESULTS / "sparse_layers.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(layers[0]))
            w.writeheader()
            w.writerows(layers)
    write_plot(RESULTS / "sparse.png", [asdict(r) for r in results])
    for key, value in summary.items():
        log(f"geomean {key}: vs ORT {value['geomean_vs_ort']:.2f}x, vs Inferon dense {value['geomean_vs_dense']:.2f}x")


def write_plot(path: Path, results: list[dict[str, Any]]) -> None:
    """Speedup over ORT and over Inferon dense versus sparsity, one line per model (1 thread)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is not installed: skipping {path}")
        return
    threads = min(r["threads"] for r in results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    x_of = {"unstructured:0.5": 50, "unstructured:0.7": 70, "unstructured:0.9": 90}
    for model in dict.fromkeys(r["model"] for r in results):
        sel = sorted((r for r in results if r["model"] == model and r["threads"] == threads and r["level"] in x_of),
                     key=lambda r: x_of[r["level"]])  # fmt: skip
        nm = [r for r in results if r["model"] == model and r["threads"] == threads and r["level"] == "2:4"]
        for ax, key in zip(axes, ("speedup_vs_ort", "speedup_vs_dense")):
            (line,) = ax.plot([x_of[r["level"]] for r in sel], [r[key] for r in sel], marker="o", label=model)
            if nm:
                ax.plot([50], [nm[0][key]], marker="s", color=line.get_color(), linestyle="none")
    for ax, title in zip(axes, ("vs ONNX Runtime (same pruned model, dense)", "vs Inferon dense (sparse=off)")):
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("unstructured weight sparsity, % (squares: 2:4)")
        ax.set_ylabel("speedup (median latency ratio)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Inferon sparse kernels, batch 1, {threads} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(LIGHT_MODELS), help="comma-separated (default: all nine)")
    ap.add_argument("--levels", default=",".join(LEVELS), help="prune specs (default: 50/70/90 %% and 2:4)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per engine (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap-ms", type=float, default=500.0,
                    help="idle before each block of multi-thread runs (see benchmarks/timing.py)")
    ap.add_argument("--replot", action="store_true", help="only redraw sparse.png from sparse.json")
    args = ap.parse_args(argv)
    if args.replot:
        write_plot(RESULTS / "sparse.png", json.loads((RESULTS / "sparse.json").read_text())["results"])
        return 0
    args.threads = [int(t) for t in parse_list(args.threads)]
    results: list[SparseResult] = []
    layers: list[dict] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="inferon-sparse-") as tmp:
        os.environ.setdefault("INFERON_CACHE_DIR", str(Path(tmp) / "cache"))
        for name in parse_list(args.models):
            for level in parse_list(args.levels):
                try:
                    r, rows = bench(name, level, args, Path(tmp))
                except Exception as exc:  # report and go on with the other models
                    log(f"{name} {level}: FAILED: {type(exc).__name__}: {exc}")
                    failures.append(f"{name} {level}: {exc}")
                    continue
                results.extend(r)
                layers.extend(rows)
    write_outputs(results, layers, args)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
