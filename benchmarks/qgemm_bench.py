"""Benchmark inferon::qgemm (uint8 x int8 -> requantized uint8) against the measured INT8 peak.

    python benchmarks/qgemm_bench.py [--isa vnni,avx2] [--threads 1] [--runs 20] [--json out.json]

1. **Peak**, measured here: a loop of 12 independent `vpdpbusd` chains (VNNI: 32 multiply-adds per
   ymm instruction, 2 ops each), ~50 ms per thread, best of 5, and the same on zmm (64 per
   instruction); the VNNI peak is the better of the two (zmm doubles it on CPUs with two 512-bit
   units, as Intel's server cores: 714 against 358 GOP/s; Zen 4 splits zmm, so there both measure
   the same). The AVX2 INT8 peak is taken as
   twice the measured FP32 FMA peak (what `vpmaddubsw`, 32 multiply-adds per instruction, allows).
   The exact AVX2 kernel widens to int16 and uses `vpmaddwd` (16 per instruction) because
   `vpmaddubsw` saturates its int16 pair sums (255 * 127 * 2 > 32767); on this Zen 4 both issue once
   per cycle (a loop of either alone measures one per cycle, where FMAs issue two), so the exact
   kernel's own ceiling is the measured `vpmaddwd` + `vpaddd` loop ("madd peak"), about half the
   2x-FP32 figure. Models that run without VNNI now store their weights pair-safe (pack-weights:
   vpmaddubsw cannot saturate, sparse corrections restore the exact sums), so the AVX2 rows run that
   kernel and also report the `vpmaddubsw` + `vpmaddwd` + `vpaddd` loop's ceiling ("of maddubs").
2. **Per shape** (M x N x K as the compiler emits them for ResNet-50: M = Cout, N = Ho*Wo, K =
   Cin*kh*kw; "im2col" rows read a 3x3 (or 7x7) image through the kernel's own uint8 im2col):
   the kernel is the one the compiler picks (`kernel_choice`: 6-row panels or 32-row vector lanes
   by `lanes_pay`, weights in implicit order for stride-1 convs and for strided ones run as lanes,
   read in place from the bordered image), A packed as pack-weights does (`pack_a_int8`); the result
   is first checked bit-exactly against the numpy reference (`inferon.ir.quant`), then timed:
   warm-up, then `--runs` samples, median. GOP/s = 2*M*N*K / median (the true K, not the padded
   implicit one); the fraction of the peak of the same ISA.

Numbers on this shared 2-core machine are noisy: compare fractions measured in the same run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inferon.backend.toolchain import build_shared_library  # noqa: E402
from inferon.ir import quant  # noqa: E402
from inferon.passes.conversion.loop_to_vec import lanes_pay, strided_lanes_pay  # noqa: E402
from inferon.passes.vec.pack_weights import pack_a_int8, pair_safe_if_cheap  # noqa: E402

PEAK_SRC = r"""
SHIM double k_int8_peak(int vnni, int64_t iters, int threads) {
  double best = 0;
#pragma omp parallel num_threads(threads) reduction(+ : best)
  {
    const double t0 = omp_get_wtime();
    int32_t sink = vnni == 1   ? peak_vnni<false>(iters)
                   : vnni == 4 ? peak_vnni<true>(iters)
                   : vnni == 2 ? peak_madd(iters)
                   : vnni == 3 ? peak_maddubs(iters)
                               : peak_avx2(iters);
    const double dt = omp_get_wtime() - t0;
    // VNNI: 12 vpdpbusd x 32 MAC; AVX2: 2 x (12 FMA x 8 lanes), the INT8 peak at 2x FP32;
    // madd: 12 vpmaddwd x 16 MAC (the widening AVX2 kernel); maddubs: 12 x 32 MAC (pair-safe A)
    best += (sink == 12345 ? 1.0 : 0.0) +
            2.0 * (vnni == 1 ? 12 * 32 : vnni == 4 ? 12 * 64 : vnni == 2 ? 12 * 16 : vnni == 3 ? 12 * 32 : 2 * 12 * 8) *
                iters / dt;
  }
  return best;
}
"""

PEAK_KERNELS = r"""
// 12 vpdpbusd chains on ymm, or on zmm (ZMM): twice the ymm peak where the CPU has two 512-bit
// units (Intel server cores), the same where it splits 512-bit operations (Zen 4).
template <bool ZMM>
INFERON_VNNI static int32_t peak_vnni(int64_t iters) {
  using V = std::conditional_t<ZMM, __m512i, __m256i>;
  V a, b, c[12];
  if constexpr (ZMM) a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
  else a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(2);
  for (auto& x : c) x = V{};
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) {
      if constexpr (ZMM) c[j] = _mm512_dpbusd_epi32(c[j], a, b);
      else c[j] = _mm256_dpbusd_epi32(c[j], a, b);
    }
    __asm__ volatile("" : "+v"(a));
  }
  int32_t s = 0;
  for (auto& x : c) {
    if constexpr (ZMM) s += _mm_cvtsi128_si32(_mm512_castsi512_si128(x));
    else s += _mm_cvtsi128_si32(_mm256_castsi256_si128(x));
  }
  return s;
}

INFERON_AVX2 static int32_t peak_madd(int64_t iters) {  // vpmaddwd + vpaddd, as the AVX2 kernel
  __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(5);
  __m256i c[12];
  for (auto& x : c) x = _mm256_setzero_si256();
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) {
      c[j] = _mm256_add_epi32(c[j], _mm256_madd_epi16(a, b));
      __asm__ volatile("" : "+v"(a));
    }
  }
  int32_t s = 0;
  for (auto& x : c) s += _mm256_extract_epi32(x, 0);
  return s;
}

INFERON_AVX2 static int32_t peak_maddubs(int64_t iters) {  // vpmaddubsw + vpmaddwd + vpaddd (pair-safe A)
  __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c[12];
  for (auto& x : c) x = _mm256_setzero_si256();
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) {
      c[j] = _mm256_add_epi32(c[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
      __asm__ volatile("" : "+v"(a));
    }
  }
  int32_t s = 0;
  for (auto& x : c) s += _mm256_extract_epi32(x, 0);
  return s;
}

INFERON_AVX2 static int32_t peak_avx2(int64_t iters) {  // the FP32 FMA peak loop (see the docstring)
  __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.999f);
  __m256 c[12];
  for (auto& x : c) x = _mm256_setzero_ps();
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm256_fmadd_ps(c[j], a, b);
    __asm__ volatile("" : "+x"(a));
  }
  float s = 0;
  for (auto& x : c) s += x[0];
  return static_cast<int32_t>(s);
}
"""

# (M, N, K, geometry or None, label): ResNet-50's conv GEMMs at batch 1
SHAPES = [
    (64, 12544, 147, (3, 224, 224, 7, 7, 2, 2, 3, 3, 1, 1, 112, 112), "conv1 7x7/2 (im2col)"),
    (64, 3136, 64, None, "res2 1x1 64->64"),
    (64, 3136, 576, (64, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 56, 56), "res2 3x3 (im2col)"),
    (256, 3136, 64, None, "res2 1x1 64->256"),
    (64, 3136, 256, None, "res2 1x1 256->64"),
    (128, 784, 1152, (128, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 28, 28), "res3 3x3 (im2col)"),
    (512, 784, 128, None, "res3 1x1 128->512"),
    (256, 196, 2304, (256, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 14, 14), "res4 3x3 (im2col)"),
    (1024, 196, 256, None, "res4 1x1 256->1024"),
    (512, 49, 4608, (512, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 7, 7), "res5 3x3 (im2col)"),
    (2048, 49, 512, None, "res5 1x1 512->2048"),
    (512, 512, 512, None, "512^3"),
    (1024, 1024, 1024, None, "1024^3"),
]

ISAS = {"scalar": 0, "avx2": 1, "vnni": 2}


def build(tmp: Path) -> ctypes.CDLL:
    src = (ROOT / "tests" / "kernel_shim.cpp").read_text()
    src = src.replace('#define SHIM extern "C"', PEAK_KERNELS + '\n#define SHIM extern "C"', 1) + PEAK_SRC
    lib = ctypes.CDLL(str(build_shared_library(src, b"\0" * 64, tmp / "qshim.so")))
    P, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.k_qgemm.argtypes = [I64, I64, I64, P, P, I64, INT, INT, P, INT, P, P, P, I64, I64, INT, INT, INT, INT, INT]
    lib.k_qgemm.restype = None
    lib.k_qgemm_lanes.argtypes = lib.k_qgemm.argtypes
    lib.k_qgemm_lanes.restype = None
    lib.k_qgemm_fix.argtypes = [*lib.k_qgemm.argtypes, P]
    lib.k_qgemm_fix.restype = None
    lib.k_set_isa.argtypes = [INT]
    lib.k_int8_peak.argtypes = [INT, I64, INT]
    lib.k_int8_peak.restype = ctypes.c_double
    return lib


def peak(lib: ctypes.CDLL, kind: int, threads: int) -> float:
    """GOP/s of a peak loop: kind 0 = 2x the FP32 FMA peak, 1 = vpdpbusd (ymm), 4 = vpdpbusd (zmm),
    2 = vpmaddwd + vpaddd, 3 = vpmaddubsw + vpmaddwd + vpaddd."""
    iters = 1 << 20
    while True:
        t0 = time.perf_counter()
        lib.k_int8_peak(kind, iters, threads)
        if time.perf_counter() - t0 > 0.05:
            break
        iters *= 2
    return max(lib.k_int8_peak(kind, iters, threads) for _ in range(5)) / 1e9


def reference(a: np.ndarray, cols: np.ndarray, comp_bias: np.ndarray, mult: np.ndarray) -> np.ndarray:
    acc = a.astype(np.int64) @ cols.astype(np.int64) + comp_bias[:, None]
    return quant.requantize(acc, mult[:, None], 0, 0, 255, np.uint8)


def im2col_ref(x: np.ndarray, geo: tuple[int, ...]) -> np.ndarray:
    c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo = geo
    xp = np.pad(x, ((0, 0), (pt, pt + kh), (pl, pl + kw)))
    rows = [xp[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
            for i in range(kh) for j in range(kw)]  # fmt: skip
    return np.stack(rows, axis=1).reshape(c * kh * kw, ho * wo)


def kernel_choice(m: int, n: int, k: int, geo: tuple[int, ...] | None, vnni: bool) -> tuple[bool, bool]:
    """(implicit, lanes) as the compiler picks them for this GEMM (convert-graph-to-loop: weights in
    implicit order for stride-1 convs and for strided ones run as lanes; convert-loop-to-vec: lanes,
    only for models that run with VNNI)."""
    if geo is None:
        return False, vnni and lanes_pay(m, n, k, n)
    c, _, _, kh, kw, sh, sw, _, _, dh, dw, ho, wo = geo
    if (sh, sw, dh, dw) == (1, 1, 1, 1):  # without VNNI implicit order only where it pads nothing
        return vnni or c % 4 == 0, vnni and lanes_pay(m, n, -(-c // 4) * 4 * kh * kw, ho * (wo + kw - 1))
    lanes = vnni and strided_lanes_pay(m, geo)
    return lanes, lanes


def quantized_normal_weights(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    """int8 [m, k] as a quantizer makes them: normal weights, per-row symmetric scale max|w| / 127."""
    w = rng.standard_normal((m, k))
    return np.round(w / (np.abs(w).max(axis=1, keepdims=True) / 127)).astype(np.int8)


def bench_shape(lib, isa: int, threads: int, runs: int, m: int, n: int, k: int, geo) -> tuple[float, bool, str]:  # noqa: ANN001
    rng = np.random.default_rng(0)
    a = quantized_normal_weights(rng, m, k)
    implicit, lanes = kernel_choice(m, n, k, geo, vnni=isa == 2)
    a_run = quant.implicit_weight_order(a.reshape(m, geo[0], geo[3], geo[4])) if implicit else a
    fix = None
    # as pack-weights stores row panels for models that run without VNNI (with VNNI: plain weights)
    if isa == 1 and not lanes and (split := pair_safe_if_cheap(a_run)):
        a_run, fix = split
    packed = pack_a_int8(a_run, 32 if lanes else 6)
    zx = 0  # zero padding = zero point 0 keeps the reference simple
    if geo is None:
        b = rng.integers(0, 256, (k, n)).astype(np.uint8)
        cols = b
    else:
        b = rng.integers(0, 256, (geo[0], geo[1], geo[2])).astype(np.uint8)
        cols = im2col_ref(b, geo)
    comp = quant.compensation(a, zx, rng.integers(-1000, 1000, m).astype(np.int32))
    mult = np.full(m, 1.0 / (k * 40.0), np.float32)
    table = quant.fixed_point(mult, 0, 0, 255)  # the kernels' fixed-point records
    c = np.zeros((m, n), np.uint8)
    geo_arr = np.asarray([*geo, int(implicit)], np.int64) if geo is not None else None  # (+ implicit flag)
    fn = lib.k_qgemm_lanes if lanes else lib.k_qgemm
    k_run = a_run.shape[1]
    args = [m, n, k_run, packed.ctypes.data, b.ctypes.data, 0 if geo is not None else n, 0, 0,
            None if geo_arr is None else geo_arr.ctypes.data, zx, comp.ctypes.data, table.ctypes.data,
            c.ctypes.data, n, 1, 0, 0, 0, 255, threads]  # fmt: skip

    def call() -> None:
        if fix is not None:
            lib.k_qgemm_fix(*args, fix.ctypes.data)
        else:
            fn(*args)

    kernel = ("lanes" if lanes else "rows") + (" implicit" if implicit else "") + (" safe" if fix is not None else "")
    lib.k_set_isa(isa)
    call()
    ok = bool(np.array_equal(c, reference(a, cols, comp, mult)))
    if not ok:
        return float("nan"), False, kernel
    reps = max(1, int(0.002 / max(1e-9, _once(call))))
    samples = []
    for _ in range(3):
        call()
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        samples.append((time.perf_counter() - t0) / reps)
    return float(np.median(samples)), True, kernel


def _once(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", default="vnni,avx2", help="comma-separated: vnni, avx2, scalar")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--shapes", default="", help="comma-separated label prefixes (default: all)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    args = ap.parse_args()
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(Path(tmp))
        for threads in (int(t) for t in args.threads.split(",")):
            for isa_name in args.isa.split(","):
                isa = ISAS[isa_name]
                # VNNI: the better of the ymm and zmm vpdpbusd loops (zmm: 2x on two 512-bit units)
                pk = (max(peak(lib, 1, threads), peak(lib, 4, threads)) if isa == 2 else peak(lib, 0, threads)
                      if isa > 0 else float("nan"))
                madd = peak(lib, 2, threads) if isa == 1 else float("nan")
                maddubs = peak(lib, 3, threads) if isa == 1 else float("nan")
                print(f"\n{isa_name}, {threads} thread(s): measured INT8 peak {pk:.0f} GOP/s"
                      + (f", vpmaddwd peak {madd:.0f} GOP/s, vpmaddubsw peak {maddubs:.0f} GOP/s" if isa == 1 else ""))
                print(f"{'shape':<24} {'M x N x K':>18} {'kernel':>20} {'ms':>8} {'GOP/s':>8} {'of peak':>8}"
                      + (f" {'of madd':>8} {'of maddubs':>10}" if isa == 1 else ""))
                for m, n, k, geo, label in SHAPES:
                    if args.shapes and not any(label.startswith(s) for s in args.shapes.split(",")):
                        continue
                    sec, ok, kernel = bench_shape(lib, isa, threads, args.runs, m, n, k, geo)
                    failed |= not ok
                    gops = 2 * m * n * k / sec / 1e9 if ok else float("nan")
                    frac = gops / pk if ok else float("nan")
                    print(f"{label:<24} {f'{m}x{n}x{k}':>18} {kernel:>20} {1e3 * sec:8.3f} {gops:8.1f} {frac:8.0%}"
                          + (f" {gops / madd:8.0%} {gops / maddubs:10.0%}" if isa == 1 else "")
                          + ("" if ok else "  FAIL (differs from the reference)"))  # fmt: skip
                    rows.append({"isa": isa_name, "threads": threads, "label": label, "M": m, "N": n, "K": k, "kernel": kernel,
                                 "ms": 1e3 * sec, "gops": gops, "peak_gops": pk, "fraction": frac,
                                 "madd_peak_gops": madd, "fraction_of_madd": gops / madd,
                                 "maddubs_peak_gops": maddubs, "fraction_of_maddubs": gops / maddubs, "ok": ok})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
