// Inferon kernels: ISA dispatch state, shared enums and AVX2 math helpers.
//
// Header-only; the generated model.cpp is the only translation unit that includes it, so
// the non-inline definitions below (the extern "C" ISA accessors) appear exactly once.
// model.cpp is compiled WITHOUT -mavx2: AVX2/FMA code lives in functions marked
// INFERON_AVX2 and is only called when isa() >= INFERON_ISA_AVX2.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "inferon/model_abi.h"

#define INFERON_AVX2 __attribute__((target("avx2,fma")))
#define INFERON_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline
#define INFERON_RESTRICT __restrict__

// Kernel families (one per header: GEMM, SPARSE, QGEMM, DEPTHWISE, ...; up to ~20 s of g++ each)
// declare their entry points, then define them under `#if INFERON_DEFINE_KERNELS(FAMILY)`. Header-only use
// (kernels.hpp: tests, tools) defines everything inline. Generated models include inferon/model.hpp,
// which sets INFERON_PREBUILT_KERNELS: their translation unit only declares those entry points, and
// the build links one object per family used, compiled once per runtime, compiler and flags (the
// object's source defines INFERON_BUILD_<FAMILY> and INFERON_KERNEL_OBJECT; inferon/backend/toolchain.py).
#ifdef INFERON_PREBUILT_KERNELS
#define INFERON_DEFINE_KERNELS(FAMILY) defined(INFERON_BUILD_##FAMILY)
#define INFERON_ENTRY
#else
#define INFERON_DEFINE_KERNELS(FAMILY) 1
#define INFERON_ENTRY inline
#endif

namespace inferon {

// Process-wide ISA level (INFERON_ISA_* from model_abi.h), set by runtime.c at context creation.
inline std::atomic<int> g_isa{INFERON_ISA_SCALAR};

inline int isa() { return g_isa.load(std::memory_order_relaxed); }

// Whether the FP32 row-panel GEMM runs zmm tiles: with AVX-512F on Intel CPUs (two 512-bit FMA
// units on the server cores; Zen 4 splits 512-bit operations, its ymm tiles stay), or as
// INFERON_GEMM_ROWS=ymm|zmm says (mirrored by inferon.cpu.zmm_row_panels for the compiler).
inline bool zmm_rows() {
  if (isa() < INFERON_ISA_AVX512) return false;
  const char* env = std::getenv("INFERON_GEMM_ROWS");
  if (env && std::strcmp(env, "ymm") == 0) return false;
  if (env && std::strcmp(env, "zmm") == 0) return true;
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return intel;
}
inline bool use_avx2() { return isa() >= INFERON_ISA_AVX2; }

// Wall-clock seconds (profiling).
inline double now_seconds() { return omp_get_wtime(); }

enum Act : int { ACT_NONE = 0, ACT_RELU = 1, ACT_LEAKY_RELU = 2, ACT_CLIP = 3, ACT_SIGMOID = 4, ACT_HARD_SWISH = 5,
                 ACT_SWISH = 6 /* x * sigmoid(alpha * x) */, ACT_GELU = 7, ACT_GELU_TANH = 8 };

// HardSwish: x * HardSigmoid(x) with alpha = 1/6, beta = 1/2.
inline float hard_swish(float v) { return v * std::min(std::max(v * (1.f / 6.f) + 0.5f, 0.f), 1.f); }

constexpr float kSqrtHalf = 0.70710678118654752f, kSqrt2OverPi = 0.79788456080286536f;

// Scalar activation (shared by the scalar paths and edge handling).
inline float apply_act(float v, int act, float alpha, float beta) {
  switch (act) {
    case ACT_RELU: return v > 0.f ? v : 0.f;
    case ACT_LEAKY_RELU: return v < 0.f ? v * alpha : v;
    case ACT_CLIP: return std::min(std::max(v, alpha), beta);
    case ACT_SIGMOID: return 1.f / (1.f + std::exp(-v));
    case ACT_HARD_SWISH: return hard_swish(v);
    case ACT_SWISH: return v / (1.f + std::exp(-alpha * v));
    case ACT_GELU: return 0.5f * v * std::erfc(-v * kSqrtHalf);  // erfc: no cancellation for v << 0
    case ACT_GELU_TANH: return v / (1.f + std::exp(-2.f * kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    default: return v;
  }
}

// Number of threads worth using for `work` elementary operations.
inline int threads_for(int num_threads, double work, double min_work_per_thread = 32768.0) {
  if (num_threads <= 1) return 1;
  double t = work / min_work_per_thread;
  if (t < 2.0) return 1;
  return t < num_threads ? static_cast<int>(t) : num_threads;
}

// ---------------------------------------------------------------------------------------------
// AVX2 helpers
// ---------------------------------------------------------------------------------------------

// Lane mask with the first n (0..8) lanes set.
INFERON_AVX2_INLINE __m256i mask_first(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// exp(x), Cephes-style (relative error ~2 ulp); x clamped to [-87.3, 88.38], NaN kept (max/min
// return their second operand when one is NaN). Written for a short dependency chain, since the
// activations built on it (sigmoid, swish, softmax) run in GEMM epilogues where latency, not
// throughput, limits them: n = round(x log2 e) by adding 1.5 * 2^23 + 127 (the sum's low mantissa
// bits are then n + 127, shifted into the exponent field for 2^n: no round / convert), two-step
// reduction x - n ln 2, the degree-5 polynomial by Estrin's scheme (3 levels instead of 6).
INFERON_AVX2_INLINE __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-88.3762626647949f);  // n = -127 there: 2^n -> 0, exp -> 0
  const __m256 magic = _mm256_set1_ps(12583039.f);       // 1.5 * 2^23 + 127
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(1.6666665459E-1f), r, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(8.3334519073E-3f), r, _mm256_set1_ps(4.1665795894E-2f));
  const __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), r, _mm256_set1_ps(1.3981999507E-3f));
  const __m256 q = _mm256_fmadd_ps(_mm256_fmadd_ps(c, r2, b), r2, a);
  const __m256 y = _mm256_fmadd_ps(q, r2, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
  return _mm256_mul_ps(y, scale);
}

INFERON_AVX2_INLINE __m256 sigmoid256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), 1 - 2/(exp(2|x|)+1) otherwise.
INFERON_AVX2_INLINE __m256 tanh256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 ax = _mm256_andnot_ps(sign, x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  __m256 e = exp256(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.f),
                             _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, _mm256_set1_ps(1.f))));
  big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
  __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm256_blendv_ps(big, small, is_small);
}

// Odd Taylor polynomial of erf for |x| <= 0.5 (truncation error < 1e-9), by Estrin's scheme (the
// GEMM epilogues that apply GELU are latency-bound: see exp256).
INFERON_AVX2_INLINE __m256 erf_small256(__m256 x) {
  const __m256 z = _mm256_mul_ps(x, x), z2 = _mm256_mul_ps(z, z), z4 = _mm256_mul_ps(z2, z2);
  // coefficients of z^k: (-1)^k 2/sqrt(pi) / (k! (2k + 1))
  const __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(-3.7612638903183e-1f), z, _mm256_set1_ps(1.1283791670955e0f));
  const __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(-2.6866170645131e-2f), z, _mm256_set1_ps(1.1283791670955e-1f));
  const __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(-8.5483270234508e-4f), z, _mm256_set1_ps(5.2239776254421e-3f));
  const __m256 p6 = _mm256_set1_ps(1.2055332981789664e-4f);
  const __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(p6, z2, p45), z4, _mm256_fmadd_ps(p23, z2, p01));
  return _mm256_mul_ps(p, x);
}

// erfc(a) for a >= 0.5 (Numerical Recipes' erfcc, Chebyshev fit: relative error < 1.2e-7 for all a >= 0);
// its degree-9 polynomial in t by Estrin's scheme (depth 4 instead of 9).
INFERON_AVX2_INLINE __m256 erfc_large256(__m256 a) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), a, one));
  const __m256 t2 = _mm256_mul_ps(t, t), t4 = _mm256_mul_ps(t2, t2), t8 = _mm256_mul_ps(t4, t4);
  const __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(1.00002368f), t, _mm256_set1_ps(-1.26551223f));
  const __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(0.09678418f), t, _mm256_set1_ps(0.37409196f));
  const __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(0.27886807f), t, _mm256_set1_ps(-0.18628806f));
  const __m256 p67 = _mm256_fmadd_ps(_mm256_set1_ps(1.48851587f), t, _mm256_set1_ps(-1.13520398f));
  const __m256 p89 = _mm256_fmadd_ps(_mm256_set1_ps(0.17087277f), t, _mm256_set1_ps(-0.82215223f));
  const __m256 q03 = _mm256_fmadd_ps(p23, t2, p01), q47 = _mm256_fmadd_ps(p67, t2, p45);
  const __m256 p = _mm256_fmadd_ps(p89, t8, _mm256_fmadd_ps(q47, t4, q03));
  return _mm256_mul_ps(t, exp256(_mm256_fnmadd_ps(a, a, p)));
}

// erfc(|x|): relative error ~1e-6 for every x (no cancellation in 1 - erf for small |x|).
INFERON_AVX2_INLINE __m256 erfc_abs256(__m256 ax) {
  const __m256 small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ);
  return _mm256_blendv_ps(erfc_large256(ax), _mm256_sub_ps(_mm256_set1_ps(1.f), erf_small256(ax)), small);
}

INFERON_AVX2_INLINE __m256 erf256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 big = _mm256_or_ps(_mm256_sub_ps(_mm256_set1_ps(1.f), erfc_large256(ax)), _mm256_and_ps(x, sign));
  return _mm256_blendv_ps(big, erf_small256(x), _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

// x/2 * (1 + erf(x/sqrt2)) = x/2 * erfc(-x/sqrt2): erfc(|z|) for x < 0, 2 - erfc(|z|) for x >= 0.
INFERON_AVX2_INLINE __m256 gelu256(__m256 x) {
  const __m256 c = erfc_abs256(_mm256_andnot_ps(_mm256_set1_ps(-0.f), _mm256_mul_ps(x, _mm256_set1_ps(kSqrtHalf))));
  const __m256 f = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.f), c), c,
                                    _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), f);
}

// x/2 * (1 + tanh(z)) = x / (1 + exp(-2z)), z = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for x << 0.
INFERON_AVX2_INLINE __m256 gelu_tanh256(__m256 x) {
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 z = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.f * kSqrt2OverPi), x),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x2, _mm256_set1_ps(1.f)));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.f), exp256(z)));
}

INFERON_AVX2_INLINE __m256 hard_swish256(__m256 v) {
  const __m256 t = _mm256_fmadd_ps(v, _mm256_set1_ps(1.f / 6.f), _mm256_set1_ps(0.5f));
  return _mm256_mul_ps(v, _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(1.f)));
}

// Fused activation on a vector (alpha/beta as in Epilogue).
INFERON_AVX2_INLINE __m256 act256(__m256 v, int act, __m256 alpha, __m256 beta) {
  switch (act) {
    case ACT_RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
    case ACT_LEAKY_RELU:
      return _mm256_blendv_ps(v, _mm256_mul_ps(v, alpha),
                              _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    case ACT_CLIP: return _mm256_min_ps(_mm256_max_ps(v, alpha), beta);
    case ACT_SIGMOID: return sigmoid256(v);
    case ACT_HARD_SWISH: return hard_swish256(v);
    case ACT_SWISH: return _mm256_mul_ps(v, sigmoid256(_mm256_mul_ps(alpha, v)));
    case ACT_GELU: return gelu256(v);
    case ACT_GELU_TANH: return gelu_tanh256(v);
    default: return v;
  }
}

// d[k] = s[k * 2], k < n: two 8-float loads, even lanes picked by a shuffle (YOLOv5's Focus x[..., ::2], stride-2
// im2col rows). Returns how many were copied (the rest: scalar).
// The last vector block must not read past s[2 * (n - 1)], hence k + 9 <= n.
INFERON_AVX2 inline int64_t stride2_avx2(const float* s, float* d, int64_t n) {
  int64_t k = 0;
  for (; k + 9 <= n; k += 8) {
    const __m256 a = _mm256_loadu_ps(s + 2 * k), b = _mm256_loadu_ps(s + 2 * k + 8);
    const __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
    _mm256_storeu_ps(d + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8)));
  }
  return k;
}

// The same, 16 at a time with AVX-512F (strided sparse-conv frames): the second load is masked to
// 15 lanes, so the last block may end at s[2 * (n - 1)].
__attribute__((target("avx2,fma,avx512f"))) inline int64_t stride2_avx512(const float* s, float* d, int64_t n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512 a = _mm512_loadu_ps(s + 2 * k), b = _mm512_maskz_loadu_ps(0x7fff, s + 2 * k + 16);
    _mm512_storeu_ps(d + k, _mm512_permutex2var_ps(a, even, b));
  }
  return k;
}

// Transpose the 8 x 8 floats held in r (row i in r[i][0]) in place.
INFERON_AVX2_INLINE void transpose8(__m256 (&r)[8][1]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0][0], r[1][0]), t1 = _mm256_unpackhi_ps(r[0][0], r[1][0]),
               t2 = _mm256_unpacklo_ps(r[2][0], r[3][0]), t3 = _mm256_unpackhi_ps(r[2][0], r[3][0]),
               t4 = _mm256_unpacklo_ps(r[4][0], r[5][0]), t5 = _mm256_unpackhi_ps(r[4][0], r[5][0]),
               t6 = _mm256_unpacklo_ps(r[6][0], r[7][0]), t7 = _mm256_unpackhi_ps(r[6][0], r[7][0]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0][0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1][0] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2][0] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3][0] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4][0] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5][0] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6][0] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7][0] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// The activation on N vectors, the switch outside the loop: straight-line code per activation, so
// that the out-of-order core overlaps the long sigmoid / swish chains of a whole register tile (a
// switch per vector left them serialised: a swish epilogue tripled a K = 16 GEMM's time).
template <int N>
INFERON_AVX2_INLINE void act256_n(__m256* v, int act, __m256 alpha, __m256 beta) {
  switch (act) {
    case ACT_NONE: return;
    case ACT_RELU:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = _mm256_max_ps(v[i], _mm256_setzero_ps());
      return;
    case ACT_CLIP:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = _mm256_min_ps(_mm256_max_ps(v[i], alpha), beta);
      return;
    case ACT_SIGMOID:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = sigmoid256(v[i]);
      return;
    case ACT_SWISH:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = _mm256_mul_ps(v[i], sigmoid256(_mm256_mul_ps(alpha, v[i])));
      return;
    case ACT_GELU:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = gelu256(v[i]);
      return;
    default:
#pragma GCC unroll 16
      for (int i = 0; i < N; i++) v[i] = act256(v[i], act, alpha, beta);
  }
}

// dst[t] = act(src[t] + bias + res[t]) for t < n (res may be null; dst may be src): the copy-out of
// kernels that add a residual after their product, and the activation of vector-extension code that
// cannot inline act256 (winograd.hpp). Callable from code not compiled for AVX2, on an AVX2 CPU.
INFERON_AVX2 inline void act_row_avx2(float* dst, const float* src, const float* res, float bias, int64_t n, int act,
                                      float alpha, float beta) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), vbias = _mm256_set1_ps(bias);
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) {
    __m256 v = _mm256_add_ps(_mm256_loadu_ps(src + t), vbias);
    if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + t));
    _mm256_storeu_ps(dst + t, act256(v, act, va, vb));
  }
  for (; t < n; t++) dst[t] = apply_act(src[t] + bias + (res ? res[t] : 0.f), act, alpha, beta);
}

INFERON_AVX2_INLINE float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

INFERON_AVX2_INLINE float hmax256(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Thread-local, 64-byte aligned scratch that only grows (used for GEMM packing).
struct Scratch {
  float* ptr = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      size_t bytes = ((n * sizeof(float)) + 63) & ~size_t(63);
      ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap = ptr ? n : 0;
      if (!ptr) std::abort();
    }
    return ptr;
  }
  ~Scratch() { std::free(ptr); }
};

// The blocked activation layout NCHWc8 (pass assign-layout): channel c of pixel p of image n at
// ((n * C + c / 8 * 8) * HW + p * 8 + c % 8), C a multiple of 8; with HW = 1 it is NCHW itself.
// Plain conversions for the kernels' scalar fallbacks and tests (the fast paths read the layout).
inline void nchw_to_nchwc8(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < HW; p++) y[(n * C + c / 8 * 8) * HW + p * 8 + c % 8] = x[(n * C + c) * HW + p];
}

inline void nchwc8_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < HW; p++) y[(n * C + c) * HW + p] = x[(n * C + c / 8 * 8) * HW + p * 8 + c % 8];
}

}  // namespace inferon

#ifndef INFERON_KERNEL_OBJECT  // defined once, in the model's translation unit
extern "C" {
void inferon_kernels_set_isa(int isa) { inferon::g_isa.store(isa, std::memory_order_relaxed); }
int inferon_kernels_get_isa(void) { return inferon::g_isa.load(std::memory_order_relaxed); }
int inferon_kernels_max_isa(void) { return INFERON_ISA_AVX512; }
}
#endif
