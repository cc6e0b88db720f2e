"""Benchmark inferon::gemm against the measured FMA peak and numpy's BLAS (OpenBLAS).

    python benchmarks/gemm_bench.py [--threads 1,2] [--runs 30] [--shapes resnet,512x512x512]
                                    [--isa scalar|avx2|avx512] [--json out.json] [--csv out.csv]

One command runs the whole table. Per thread count:

1. **Peak**: a 12-chain `_mm256_fmadd_ps` loop (FMA_PEAK_SRC below, built with the kernel shim),
   run ~50 ms per thread in one OpenMP region, best of several runs: the measured FMA peak (AVX2,
   also with --isa scalar).
2. **Per shape** (M x N x K, row-major float32; the ResNet-50 conv GEMMs are M = Cout,
   N = Ho*Wo, K = Cin*kh*kw): tiles from `select_tiles.choose_tiles(M, N, K)` (mr 6, nr 16, as
   the compiler emits them), then
   * Inferon with A row-major (A packed at run time) and with A pre-packed (`a_packed`, packed
     here with `pack_weights.pack_a(A, 6, kc)`; only where the compiler's pack-weights pass would
     pack: M > 6 and N > 1), and with `--isa avx512` where the compiler would pack A as vector lanes
     instead (`pack_weights.lanes_pay`: few columns, K >= 128; for the KxK convs' im2col GEMMs as
     for a convolution's image, which a model reads in place) the lanes kernel (`gemm_lanes.hpp`,
     A packed with `pack_a_lanes`, B read in place);
   * numpy (`np.matmul(A, B, out=C)`) limited to the same thread count: threadpoolctl when it is
     installed, otherwise a worker process started with OPENBLAS_NUM_THREADS=<threads>.
   Every Inferon variant is first checked against numpy (max |C - ref| / max |ref| < 1e-4, C
   filled with NaN before the call); a failing variant is reported as FAIL, never timed, and the
   script exits with status 1. Then warm-up (>= 2 calls and >= 0.1 s) and `--runs` timed samples
   (each sample >= 1 ms: tiny shapes repeat the call); GFLOP/s = 2*M*N*K / median time.

Timings on a shared machine are noisy: the 1-minute load average is recorded per row, and the FMA
peak is measured again after each thread count's block (a drop means other processes took cores).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_ENV = dict(os.environ)
HAVE_THREADPOOLCTL = importlib.util.find_spec("threadpoolctl") is not None
WORKER_FLAG = "--numpy-worker"
if not HAVE_THREADPOOLCTL and WORKER_FLAG not in sys.argv:
    # numpy in this process only computes references and packs A (it is timed in worker processes):
    # one BLAS thread, so that no idle OpenBLAS thread competes with Inferon's.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

SHAPES = [  # (M, N, K, label); conv GEMMs: M = Cout, N = Ho*Wo, K = Cin*kh*kw
    (512, 512, 512, "square 512"),
    (1024, 1024, 1024, "square 1024"),
    (64, 12544, 147, "resnet50 conv1 7x7/2"),
    (64, 3136, 576, "resnet50 res2 3x3 64"),
    (64, 3136, 64, "resnet50 res2 1x1 64>64"),
    (256, 3136, 64, "resnet50 res2 1x1 64>256"),
    (128, 784, 1152, "resnet50 res3 3x3 128"),
    (256, 196, 2304, "resnet50 res4 3x3 256"),
    (1024, 196, 256, "resnet50 res4 1x1 256>1024"),
    (512, 49, 4608, "resnet50 res5 3x3 512"),
    (2048, 49, 512, "resnet50 res5 1x1 512>2048"),
    (512, 49, 2048, "resnet50 res5 1x1 2048>512"),
    (1, 1000, 2048, "fc batch 1"),
    (16, 1000, 2048, "fc batch 16"),
    (1000, 1, 2048, "gemv N=1"),
]

# Conv GEMMs whose B is the im2col matrix of a KxK kernel: the compiler gives them to the lanes
# kernel more readily (`lanes_pay(..., image=True)`: in a model it reads the image in place from a
# bordered copy; here it reads this B matrix in place).
# kernel positions (kh * kw) of each such conv, by label
IMAGE_TAPS = {label: 49 if " 7x7" in label else 9 for *_, label in SHAPES if " 3x3 " in f"{label} " or " 7x7" in label}

MR, NR = 6, 16  # the register tile the compiler emits (loop_to_vec defaults; packed panels are 6 rows)
MAX_REL_ERR = 1e-4
WARMUP_S = 0.1  # also long enough for the other library's idle-spinning threads to go to sleep
MIN_SAMPLE_S = 1e-3
PEAK_TARGET_S = 0.05
PEAK_RUNS = 5
FMA_CHAINS = 12

# Appended to tests/kernel_shim.cpp (which defines SHIM and includes the kernels: immintrin, omp).
FMA_PEAK_SRC = r"""
// ---- gemm_bench.py: measured FMA peak
#include <chrono>
namespace {
volatile float g_fma_sink = 0.f;
// 12 independent FMA chains (FMA latency 4 x 2 pipes needs 8): 12 * 8 lanes * 2 flops per iteration.
__attribute__((target("avx2,fma"), noinline)) float fma_chains(int64_t iters, float seed) {
  const __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-7f);
  __m256 c[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; j++) c[j] = _mm256_set1_ps(seed + static_cast<float>(j));
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm256_fmadd_ps(c[j], m, a);
  }
  __m256 s = c[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, c[j]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}
// The same chains on zmm registers (AVX-512F): 16 lanes per FMA.
__attribute__((target("avx2,fma,avx512f"), noinline)) float fma_chains512(int64_t iters, float seed) {
  const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  __m512 c[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; j++) c[j] = _mm512_set1_ps(seed + static_cast<float>(j));
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm512_fmadd_ps(c[j], m, a);
  }
  __m512 s = c[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, c[j]);
  return _mm512_reduce_add_ps(s);
}
}  // namespace

// Wall seconds of one OpenMP region in which each of `threads` threads runs fma_chains(iters)
// (fma_chains512 with `wide`); *threads_run = the team size actually obtained.
SHIM double k_bench_fma_peak(int64_t iters, int threads, int* threads_run, int wide) {
  int team = 1;
  float total = 0.f;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
#pragma omp single nowait
    team = omp_get_num_threads();
    const float seed = 1.f + static_cast<float>(omp_get_thread_num());
    total += wide ? fma_chains512(iters, seed) : fma_chains(iters, seed);
  }
  const auto t1 = std::chrono::steady_clock::now();
  g_fma_sink = total;
  *threads_run = team;
  return std::chrono::duration<double>(t1 - t0).count();
}
"""


# ----------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous float32 copy of `a` whose data is `align`-byte aligned."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    buf = np.empty(a.nbytes + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off : off + a.nbytes].view(np.float32).reshape(a.shape)
    out[...] = a
    return out


def operands(m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, m, n, k])
    a = rng.standard_normal((m, k), dtype=np.float32)
    return aligned(a), aligned(rng.standard_normal((k, n), dtype=np.float32))


def sample_times(fn: Callable[[], object], runs: int) -> tuple[list[float], int]:
    """Warm up (>= 2 calls and >= WARMUP_S), then `runs` samples of seconds per call (each sample
    times `reps` consecutive calls, reps chosen so that a sample lasts >= MIN_SAMPLE_S)."""
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < WARMUP_S:
        fn()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    reps = max(1, math.ceil(MIN_SAMPLE_S / per_call))
    out = []
    for _ in range(runs):
        s = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - s) / reps)
    return out, reps


def rel_err(c: np.ndarray, ref: np.ndarray) -> float:
    """max |c - ref| / max |ref| (inf if c has non-finite values)."""
    if not np.all(np.isfinite(c)):
        return math.inf
    return float(np.abs(c - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def openblas_threads() -> int | None:
    """The thread count of the OpenBLAS loaded by numpy in this process (None if unknown)."""
    try:
        path = next(line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower())
        lib = ctypes.CDLL(path)
    except (OSError, StopIteration):
        return None
    for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
        try:
            fn = getattr(lib, sym)
        except AttributeError:
            continue
        fn.restype = ctypes.c_int
        return int(fn())
    return None


def numpy_samples(m: int, n: int, k: int, seed: int, runs: int) -> dict[str, Any]:
    a, b = operands(m, n, k, seed)
    c = aligned(np.empty((m, n), np.float32))
    times, reps = sample_times(lambda: np.matmul(a, b, out=c), runs)
    return {"times": times, "reps": reps}


# ------------------------------------------------------------------ numpy at a thread count
class NumpyTimer:
    """Times numpy GEMMs with the BLAS limited to `threads` threads."""

    mode = ""
    blas_threads: int | None = None

    def time(self, m: int, n: int, k: int, seed: int, runs: int) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessNumpy(NumpyTimer):
    mode = "threadpoolctl"

    def __init__(self, threads: int) -> None:
        from threadpoolctl import threadpool_info, threadpool_limits

        self.limits = threadpool_limits(limits=threads, user_api="blas")
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        self.blas_threads = blas[0]["num_threads"] if blas else None

    def time(self, m: int, n: int, k: int, seed: int, runs: int) -> dict[str, Any]:
        return numpy_samples(m, n, k, seed, runs)

    def close(self) -> None:
        self.limits.restore_original_limits()


class WorkerNumpy(NumpyTimer):
    """A `gemm_bench.py --numpy-worker` process started with OPENBLAS_NUM_THREADS=threads
    (one JSON request / reply per line on stdin / stdout)."""

    mode = "subprocess"

    def __init__(self, threads: int) -> None:
        env = dict(ORIGINAL_ENV)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.blas_threads = self._read()["blas_threads"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"numpy worker exited (status {self.proc.wait()})")
        return json.loads(line)

    def time(self, m: int, n: int, k: int, seed: int, runs: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"m": m, "n": n, "k": k, "seed": seed, "runs": runs}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def numpy_worker() -> None:
    print(json.dumps({"blas_threads": openblas_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        print(json.dumps(numpy_samples(req["m"], req["n"], req["k"], req["seed"], req["runs"])), flush=True)


# ------------------------------------------------------------------------------- Inferon side
def build_library() -> ctypes.CDLL:
    sys.path.insert(0, str(ROOT))
    from inferon.backend.toolchain import build_shared_library

    source = (ROOT / "tests" / "kernel_shim.cpp").read_text() + FMA_PEAK_SRC
    with tempfile.TemporaryDirectory(prefix="inferon-gemm-bench-") as tmp:
        so = build_shared_library(source, b"\0" * 64, Path(tmp) / "gemm_bench.so")
        lib = ctypes.CDLL(str(so))
    P, I64, INT, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    # batch, M, N, K, A, lda, sA, B, ldb, sB, C, ldc, sC, bias, bias_bs, bias_axis, residual, act, alpha,
    # beta, tiles, threads
    lib.k_gemm_ex.argtypes = [I64] * 4 + [P, I64, I64] * 3 + [P, I64, INT, P, INT, F, F, P, INT]
    lib.k_gemm_ex.restype = None
    # batch, M, N, K, A, sA, B, ldb, sB, C, ldc, sC, bias, bias_bs, bias_axis, residual, act, alpha, beta,
    # geometry, threads
    lib.k_gemm_lanes.argtypes = [I64] * 4 + [P, I64, P, I64, I64, P, I64, I64, P, I64, INT, P, INT, F, F, P, INT]
    lib.k_gemm_lanes.restype = None
    lib.k_set_isa.argtypes = [INT]
    lib.k_get_isa.restype = INT
    lib.k_bench_fma_peak.argtypes = [I64, INT, ctypes.POINTER(INT), INT]
    lib.k_bench_fma_peak.restype = ctypes.c_double
    return lib


def measure_peak(lib: ctypes.CDLL, threads: int, wide: bool = False) -> dict[str, Any]:
    """Best-of-PEAK_RUNS FMA throughput of `threads` threads, GFLOP/s (all threads together): ymm
    (AVX2) FMAs, or zmm (AVX-512F) ones with `wide`."""
    team = ctypes.c_int(0)
    calib = 1 << 20
    lib.k_bench_fma_peak(calib, threads, ctypes.byref(team), int(wide))  # starts the OpenMP threads
    t = min(lib.k_bench_fma_peak(calib, threads, ctypes.byref(team), int(wide)) for _ in range(2))
    iters = max(calib, int(calib * PEAK_TARGET_S / t))
    samples = [lib.k_bench_fma_peak(iters, threads, ctypes.byref(team), int(wide)) for _ in range(PEAK_RUNS)]
    flops = team.value * iters * FMA_CHAINS * (16 if wide else 8) * 2
    return {
        "gflops": flops / min(samples) / 1e9,
        "median_gflops": flops / float(np.median(samples)) / 1e9,
        "threads_run": team.value,
        "iters_per_thread": iters,
        "samples_s": samples,
    }


def gemm_call(lib: ctypes.CDLL, a: np.ndarray, b: np.ndarray, c: np.ndarray, m: int, n: int, k: int,
              tiles: np.ndarray | None, threads: int) -> Callable[[], object]:  # fmt: skip
    """k_gemm_ex with these tiles, or the lanes kernel (k_gemm_lanes) when tiles is None."""
    if tiles is None:
        args: tuple = (1, m, n, k, a.ctypes.data, 0, b.ctypes.data, n, 0, c.ctypes.data, n, 0,
                       None, 0, 0, None, 0, 0.0, 0.0, None, threads)  # fmt: skip
        fn = lib.k_gemm_lanes
    else:
        args = (1, m, n, k, a.ctypes.data, k, 0, b.ctypes.data, n, 0, c.ctypes.data, n, 0,
                None, 0, 0, None, 0, 0.0, 0.0, tiles.ctypes.data, threads)  # fmt: skip
        fn = lib.k_gemm_ex

    def call() -> object:
        return fn(*args)

    call.keep_alive = (a, b, c, tiles)  # type: ignore[attr-defined]
    return call


def stats(times: list[float], flops: float, peak: float) -> dict[str, Any]:
    med = float(np.median(times))
    gflops = flops / med / 1e9
    return {
        "gflops": gflops,
        "pct_peak": 100.0 * gflops / peak,
        "median_ms": med * 1e3,
        "p10_ms": float(np.percentile(times, 10)) * 1e3,
        "p90_ms": float(np.percentile(times, 90)) * 1e3,
        "samples_ms": [t * 1e3 for t in times],
    }


def bench_shape(lib: ctypes.CDLL, numpy_timer: NumpyTimer, shape: tuple[int, int, int, str], threads: int,
                runs: int, seed: int, peak: float, lanes: bool = False) -> dict[str, Any]:  # fmt: skip
    """One shape's row; `lanes`: also the lanes kernel where the compiler would use it (AVX-512)."""
    from inferon.cpu import zmm_row_panels
    from inferon.passes.loop.select_tiles import choose_tiles
    from inferon.passes.vec.pack_weights import lanes_pay, pack_a, pack_a_lanes

    m, n, k, label = shape
    flops = 2.0 * m * n * k
    mc, kc, nc = choose_tiles(m, n, k, MR, NR)
    a, b = operands(m, n, k, seed)
    ref = np.matmul(a, b)
    c = aligned(np.empty((m, n), np.float32))
    row = {"label": label, "M": m, "N": n, "K": k, "threads": threads, "flops": flops,
           "tiles": {"mr": MR, "nr": NR, "mc": mc, "kc": kc, "nc": nc}, "load1": os.getloadavg()[0],
           "peak_gflops": peak}  # fmt: skip
    variants: dict[str, tuple[np.ndarray, int]] = {"rowmajor": (a, 0)}
    if m > MR and n > 1:  # where pack-weights packs A (vec.PACKED_MR rows per panel)
        variants["packed"] = (aligned(pack_a(a, MR, kc)), 1)
    else:
        row["packed"] = None
    if lanes and n > 1 and lanes_pay(m, n, k, label in IMAGE_TAPS, zmm_row_panels(), IMAGE_TAPS.get(label, 1)):
        variants["lanes"] = (aligned(pack_a_lanes(a)), -1)
    else:
        row["lanes"] = None
    for name, (a_arg, packed) in variants.items():
        tiles = None if packed < 0 else np.array([MR, NR, mc, kc, nc, packed], dtype=np.int64)
        call = gemm_call(lib, a_arg, b, c, m, n, k, tiles, threads)
        c.fill(np.nan)
        call()
        err = rel_err(c, ref)
        if not err < MAX_REL_ERR:
            row[name] = {"error": f"rel err {err:.2e} vs numpy (limit {MAX_REL_ERR:.0e})", "rel_err": err}
            continue
        times, reps = sample_times(call, runs)
        row[name] = {**stats(times, flops, peak), "reps": reps, "rel_err": err}
    res = numpy_timer.time(m, n, k, seed, runs)
    row["numpy"] = {**stats(res["times"], flops, peak), "reps": res["reps"]}
    for name in ("rowmajor", "packed", "lanes"):
        v = row.get(name)
        row[f"{name}_vs_numpy"] = v["gflops"] / row["numpy"]["gflops"] if v and "gflops" in v else None
    # what a compiled model runs: lanes where chosen, else pre-packed A where packed, else row-major
    row["compiled_vs_numpy"] = next(
        (row[f"{n}_vs_numpy"] for n in ("lanes", "packed", "rowmajor") if row.get(n) is not None), None
    )
    return row


# -------------------------------------------------------------------------------- reporting
HEADER = (
    f"{'shape':<27} {'M':>5} {'N':>6} {'K':>5} | {'row-major':>9} {'%pk':>4} | {'packed':>7} {'%pk':>4} |"
    f" {'lanes':>7} {'%pk':>4} | {'numpy':>7} {'%pk':>4} | {'rm/np':>5} {'pk/np':>5} {'cc/np':>5} | {'load':>4}"
)


def format_row(r: dict[str, Any]) -> str:
    def var(v: dict[str, Any] | None, w: int) -> str:
        if v is None:
            return f"{'n/a':>{w}} {'':>4}"
        if "gflops" not in v:
            return f"{'FAIL':>{w}} {'':>4}"
        return f"{v['gflops']:>{w}.1f} {v['pct_peak']:>3.0f}%"

    def ratio(x: float | None) -> str:
        return f"{x:>5.2f}" if x is not None else f"{'-':>5}"

    return (
        f"{r['label']:<27} {r['M']:>5} {r['N']:>6} {r['K']:>5} | {var(r['rowmajor'], 9)} | {var(r['packed'], 7)} |"
        f" {var(r['lanes'], 7)} | {var(r['numpy'], 7)} | {ratio(r['rowmajor_vs_numpy'])} {ratio(r['packed_vs_numpy'])}"
        f" {ratio(r['compiled_vs_numpy'])} | {r['load1']:>4.2f}"
    )


def geomean(xs: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    return {
        key: geomean([r[key] for r in rows if r[key] is not None])
        for key in ("rowmajor_vs_numpy", "packed_vs_numpy", "compiled_vs_numpy")
    }


def environment(lib: ctypes.CDLL) -> dict[str, Any]:
    from inferon.config import load_config
    from inferon.cpu import cpu_name

    cpu = cpu_name()
    cxx = load_config().cxx
    try:
        cxx_version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        cxx_version = cxx
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]  # type: ignore[attr-defined]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except (AttributeError, KeyError, TypeError):
        blas = "unknown"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    # The checkout may carry uncommitted kernel / tiling changes: fingerprint what was measured.
    sources = {
        rel: hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()[:16]
        for rel in (
            "runtime/kernels/gemm.hpp",
            "runtime/kernels/gemm_lanes.hpp",
            "runtime/kernels/common.hpp",
            "inferon/passes/loop/select_tiles.py",
            "inferon/passes/vec/pack_weights.py",
            "tests/kernel_shim.cpp",
        )
        if (ROOT / rel).is_file()
    }
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "cxx": cxx_version,
        "git": head.stdout.strip(),
        "git_dirty": bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "inferon", "runtime"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),
        "sources_sha256": sources,
        "isa": {0: "scalar", 1: "avx2"}.get(lib.k_get_isa(), "avx512"),
        "env": {
            k: v for k, v in ORIGINAL_ENV.items() if k.startswith(("OMP_", "GOMP_", "INFERON_", "OPENBLAS_", "MKL_"))
        },
        "loadavg_start": os.getloadavg(),
    }


CSV_FIELDS = [
    "label", "M", "N", "K", "threads", "mc", "kc", "nc", "peak_gflops",
    "rowmajor_gflops", "rowmajor_pct_peak", "rowmajor_median_ms", "rowmajor_p10_ms", "rowmajor_p90_ms",
    "packed_gflops", "packed_pct_peak", "packed_median_ms", "packed_p10_ms", "packed_p90_ms",
    "lanes_gflops", "lanes_pct_peak", "lanes_median_ms", "lanes_p10_ms", "lanes_p90_ms",
    "numpy_gflops", "numpy_pct_peak", "numpy_median_ms", "numpy_p10_ms", "numpy_p90_ms",
    "rowmajor_vs_numpy", "packed_vs_numpy", "lanes_vs_numpy", "compiled_vs_numpy", "rowmajor_rel_err",
    "packed_rel_err", "lanes_rel_err", "load1",
]  # fmt: skip


def csv_row(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: r[k] for k in ("label", "M", "N", "K", "threads", "peak_gflops", "load1")}
    out.update({k: r["tiles"][k] for k in ("mc", "kc", "nc")})
    for name in ("rowmajor", "packed", "lanes", "numpy"):
        v = r.get(name) or {}
        for f in ("gflops", "pct_peak", "median_ms", "p10_ms", "p90_ms", "rel_err"):
            if f"{name}_{f}" in CSV_FIELDS:
                x = v.get(f)
                out[f"{name}_{f}"] = "FAIL" if x is None and "error" in v and f == "gflops" else x
    for key in ("rowmajor_vs_numpy", "packed_vs_numpy", "lanes_vs_numpy", "compiled_vs_numpy"):
        out[key] = r[key]
    return {k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in out.items()}


# ------------------------------------------------------------------------------------ main
def select_shapes(spec: str) -> list[tuple[int, int, int, str]]:
    """Comma-separated terms: a substring of a label (case-insensitive), or MxNxK (a table shape
    or a custom one). Empty / 'all': every shape."""
    if not spec or spec == "all":
        return list(SHAPES)
    chosen: list[tuple[int, int, int, str]] = []
    for term in (t.strip() for t in spec.split(",")):
        dims = re.fullmatch(r"(\d+)x(\d+)x(\d+)", term)
        hits = [s for s in SHAPES if term.lower() in s[3].lower() or (dims and s[:3] == tuple(map(int, dims.groups())))]
        if not hits and dims:
            m, n, k = map(int, dims.groups())
            hits = [(m, n, k, f"custom {term}")]
        if not hits:
            raise SystemExit(f"--shapes: {term!r} matches no shape (labels: {', '.join(s[3] for s in SHAPES)})")
        chosen += [s for s in hits if s not in chosen]
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=30, help="timed samples per variant, median reported (default 30)")
    ap.add_argument("--repeat", dest="runs", type=int, help=argparse.SUPPRESS)  # old name
    ap.add_argument("--shapes", default="all", help="comma-separated label substrings or MxNxK (default: all)")
    ap.add_argument("--isa", choices=["scalar", "avx2", "avx512"], default=None,
                    help="kernels to run (default: avx512 where the CPU has it, else avx2); avx512 adds the lanes "
                    "kernel on the shapes the compiler would give it (the row-panel kernel is AVX2 either way)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every result (raw samples included) here")
    ap.add_argument("--csv", type=Path, help="write one row per (shape, threads) here")
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not args.threads or min(args.threads) < 1 or args.runs < 1:
        ap.error("--threads needs positive integers and --runs >= 1")
    args.shape_list = select_shapes(args.shapes)
    if args.isa is None:
        from inferon.cpu import supports

        args.isa = "avx512" if supports("avx512") else "avx2"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    lib = build_library()
    lib.k_set_isa({"scalar": 0, "avx2": 1, "avx512": 2}[args.isa])
    env = environment(lib)
    cores = os.cpu_count() or 1
    if max(args.threads) > cores:
        log(f"warning: {max(args.threads)} threads on {cores} cores")
    print(f"inferon::gemm  isa={env['isa']}  cpu={env['cpu']}  cores={cores}  blas={env['blas']}  runs={args.runs}")
    print("GFLOP/s = 2MNK / median time; %pk = share of the measured FMA peak at that thread count;")
    print("rm/np, pk/np = Inferon (A row-major / A pre-packed) GFLOP/s over numpy's at the same thread count;")
    print("cc/np = what a compiled model runs (lanes where chosen, else pre-packed, else row-major) over numpy's.")
    rows: list[dict[str, Any]] = []
    peaks: dict[str, Any] = {}
    geo: dict[str, Any] = {}
    failed = False
    for threads in args.threads:
        peak = measure_peak(lib, threads)
        if args.isa == "avx512":  # the zmm FMA peak too: twice the ymm one on CPUs with two 512-bit FMA units
            peak["avx512_gflops"] = measure_peak(lib, threads, wide=True)["gflops"]
        peaks[str(threads)] = peak
        timer: NumpyTimer = InProcessNumpy(threads) if HAVE_THREADPOOLCTL else WorkerNumpy(threads)
        try:
            print(
                f"\n== threads {threads}: measured FMA peak {peak['gflops']:.1f} GFLOP/s"
                f" ({peak['gflops'] / peak['threads_run']:.1f} per thread; {peak['threads_run']} thread(s) x"
                f" {FMA_CHAINS} chains, best of {PEAK_RUNS} x ~{PEAK_TARGET_S * 1e3:.0f} ms)"
                f"  numpy: {timer.mode}, BLAS threads {timer.blas_threads}  load {os.getloadavg()[0]:.2f}"
                + (f"\n   AVX-512 (zmm) FMA peak {peak['avx512_gflops']:.1f} GFLOP/s: %pk below is of the AVX2 peak"
                   if "avx512_gflops" in peak else "")
            )
            print(HEADER)
            print("-" * len(HEADER))
            block = []
            for shape in args.shape_list:
                r = bench_shape(lib, timer, shape, threads, args.runs, args.seed, peak["gflops"], args.isa == "avx512")
                r["numpy"]["blas_threads"] = timer.blas_threads
                for name in ("rowmajor", "packed", "lanes"):
                    if r[name] is not None and "error" in r[name]:
                        failed = True
                        log(f"FAIL {r['label']} threads={threads} {name}: {r[name]['error']}")
                print(format_row(r), flush=True)
                block.append(r)
        finally:
            timer.close()
        geo[str(threads)] = summary(block)
        g = geo[str(threads)]
        fmt = {k: f"{v:.2f}" if v is not None else "-" for k, v in g.items()}
        print(f"geomean Inferon/numpy: row-major {fmt['rowmajor_vs_numpy']}, pre-packed {fmt['packed_vs_numpy']}, "
              f"as compiled {fmt['compiled_vs_numpy']}")
        # Re-measured after the block: well below the first value means other processes took the cores.
        peak["gflops_after"] = measure_peak(lib, threads)["gflops"]
        print(f"FMA peak after the block: {peak['gflops_after']:.1f} GFLOP/s (before: {peak['gflops']:.1f})")
        rows += block
    if args.json:
        doc = {
            "benchmark": "gemm",
            "environment": env,
            "settings": {
                "threads": args.threads,
                "runs": args.runs,
                "shapes": args.shapes,
                "isa": args.isa,
                "seed": args.seed,
                "warmup_s": WARMUP_S,
                "min_sample_s": MIN_SAMPLE_S,
                "max_rel_err": MAX_REL_ERR,
                "numpy_threads": "threadpoolctl" if HAVE_THREADPOOLCTL else "subprocess OPENBLAS_NUM_THREADS",
            },
            "peak": peaks,
            "geomean": geo,
            "loadavg_end": os.getloadavg(),
            "results": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(csv_row(r) for r in rows)
    if failed:
        log("some Inferon results did not match numpy: see FAIL above")
    return 1 if failed else 0


if __name__ == "__main__":
    if WORKER_FLAG in sys.argv[1:]:
        numpy_worker()
    else:
        sys.exit(main())
