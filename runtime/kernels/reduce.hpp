// Inferon reduction kernels: ONNX Reduce* and ArgMax / ArgMin over the middle axis of an
// [outer, r, inner] view, and row normalisation (LayerNormalization, GroupNormalization, InstanceNormalization).
//
// One template per loop nest over a lane type (`reduce_detail::F8`: 8 floats in a ymm, AVX2;
// `reduce_detail::F1`: one float, the scalar path), instantiated by an AVX2-targeted and a plain
// entry point. Contiguous rows (inner == 1) are reduced with vector accumulators and one horizontal
// step; otherwise the output row is the accumulator, vectorised along inner.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace inferon {

enum ReduceKind {
  RED_SUM = 0,
  RED_MEAN = 1,
  RED_MAX = 2,
  RED_MIN = 3,
  RED_PROD = 4,
  RED_L1 = 5,
  RED_L2 = 6,
  RED_SUM_SQUARE = 7,
  RED_LOG_SUM = 8,
  RED_LOG_SUM_EXP = 9,
};

namespace reduce_detail {

#define INFERON_RLANE(isa) __attribute__((target(isa))) static inline

struct F1 {
  using V = float;
  static constexpr int W = 1;
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V set1(float x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V max(V a, V b) { return a > b || std::isnan(a) ? a : b; }
  static V min(V a, V b) { return a < b || std::isnan(a) ? a : b; }
  static V abs(V a) { return std::fabs(a); }
  static V exp(V a) { return std::exp(a); }
  static float hadd(V v) { return v; }
  static float hmul(V v) { return v; }
  static float hmax(V v) { return v; }
  static float hmin(V v) { return v; }
};

struct F8 {
  using V = __m256;
  static constexpr int W = 8;
  INFERON_RLANE("avx2,fma") V load(const float* p) { return _mm256_loadu_ps(p); }
  INFERON_RLANE("avx2,fma") void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  INFERON_RLANE("avx2,fma") V set1(float x) { return _mm256_set1_ps(x); }
  INFERON_RLANE("avx2,fma") V add(V a, V b) { return _mm256_add_ps(a, b); }
  INFERON_RLANE("avx2,fma") V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  INFERON_RLANE("avx2,fma") V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  INFERON_RLANE("avx2,fma") V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // NaN in a propagates (max_ps returns its second operand when either is NaN)
  INFERON_RLANE("avx2,fma") V max(V a, V b) { return _mm256_max_ps(b, a); }
  INFERON_RLANE("avx2,fma") V min(V a, V b) { return _mm256_min_ps(b, a); }
  INFERON_RLANE("avx2,fma") V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), a); }
  INFERON_RLANE("avx2,fma") V exp(V a) { return exp256(a); }
  INFERON_RLANE("avx2,fma") float hadd(V v) { return hsum256(v); }
  INFERON_RLANE("avx2,fma") float hmul(V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    return ((t[0] * t[1]) * (t[2] * t[3])) * ((t[4] * t[5]) * (t[6] * t[7]));
  }
  INFERON_RLANE("avx2,fma") float hmax(V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    float m = t[0];
    for (int i = 1; i < 8; i++) m = F1::max(m, t[i]);
    return m;
  }
  INFERON_RLANE("avx2,fma") float hmin(V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    float m = t[0];
    for (int i = 1; i < 8; i++) m = F1::min(m, t[i]);
    return m;
  }
};

// The accumulation of each kind: its start value, the combining step (x mapped first: |x|, x^2,
// exp(x - shift) for log-sum-exp) and the final transform (mean: / r, L2: sqrt, logs).
template <int K>
struct Op {
  static constexpr bool kMul = K == RED_PROD, kMax = K == RED_MAX, kMin = K == RED_MIN;
  static float init() { return kMul ? 1.f : kMax ? -INFINITY : kMin ? INFINITY : 0.f; }
  template <class L>
  static inline typename L::V step(typename L::V acc, typename L::V x, typename L::V shift) {
    if constexpr (kMul) return L::mul(acc, x);
    else if constexpr (kMax) return L::max(x, acc);
    else if constexpr (kMin) return L::min(x, acc);
    else if constexpr (K == RED_L1) return L::add(acc, L::abs(x));
    else if constexpr (K == RED_L2 || K == RED_SUM_SQUARE) return L::fma(x, x, acc);
    else if constexpr (K == RED_LOG_SUM_EXP) return L::add(acc, L::exp(L::sub(x, shift)));
    else return L::add(acc, x);
  }
  template <class L>  // two partial accumulators into one
  static inline typename L::V combine(typename L::V a, typename L::V b) {
    if constexpr (kMul) return L::mul(a, b);
    else if constexpr (kMax) return L::max(a, b);
    else if constexpr (kMin) return L::min(a, b);
    else return L::add(a, b);
  }
  template <class L>
  static inline float horizontal(typename L::V v) {
    if constexpr (kMul) return L::hmul(v);
    else if constexpr (kMax) return L::hmax(v);
    else if constexpr (kMin) return L::hmin(v);
    else return L::hadd(v);
  }
  static float finish(float acc, int64_t r, float shift) {
    if constexpr (K == RED_MEAN) return acc / static_cast<float>(r);
    else if constexpr (K == RED_L2) return std::sqrt(acc);
    else if constexpr (K == RED_LOG_SUM) return std::log(acc);
    else if constexpr (K == RED_LOG_SUM_EXP) return shift + std::log(acc);
    else return acc;
  }
};

// Log-sum-exp shifts by the maximum (finite: exp(x - max) <= 1); an all -inf row shifts by 0.
inline float lse_shift(float m) { return std::isfinite(m) ? m : 0.f; }

// y[o] = reduce over the contiguous row x[o * r .. o * r + r) for o in [o0, o1).
template <class L, int K>
inline void rows(const float* x, float* y, int64_t o0, int64_t o1, int64_t r, const float* shift) {
  using O = Op<K>;
  constexpr int W = L::W;
  for (int64_t o = o0; o < o1; o++) {
    const float* xr = x + o * r;
    const float s = shift ? shift[o] : 0.f;
    const typename L::V vs = L::set1(s);
    typename L::V a0 = L::set1(O::init()), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * W <= r; i += 2 * W) {
      a0 = O::template step<L>(a0, L::load(xr + i), vs);
      a1 = O::template step<L>(a1, L::load(xr + i + W), vs);
    }
    if (i + W <= r) {
      a0 = O::template step<L>(a0, L::load(xr + i), vs);
      i += W;
    }
    float acc = O::template horizontal<L>(O::template combine<L>(a0, a1));
    for (; i < r; i++) acc = O::template step<F1>(acc, xr[i], s);
    y[o] = O::finish(acc, r, s);
  }
}

// y[o][j] = reduce over a of x[o][a][j] for o in [o0, o1): the output row accumulates, W lanes of j
// at a time.
template <class L, int K>
inline void slabs(const float* x, float* y, int64_t o0, int64_t o1, int64_t r, int64_t inner, const float* shift) {
  using O = Op<K>;
  constexpr int W = L::W;
  for (int64_t o = o0; o < o1; o++) {
    float* yr = y + o * inner;
    const float* sr = shift ? shift + o * inner : nullptr;
    int64_t j = 0;
    for (; j + W <= inner; j += W) {
      const typename L::V vs = sr ? L::load(sr + j) : L::set1(0.f);
      typename L::V acc = L::set1(O::init());
      for (int64_t a = 0; a < r; a++) acc = O::template step<L>(acc, L::load(x + (o * r + a) * inner + j), vs);
      L::store(yr + j, acc);
    }
    for (; j < inner; j++) {
      const float s = sr ? sr[j] : 0.f;
      float acc = O::init();
      for (int64_t a = 0; a < r; a++) acc = O::template step<F1>(acc, x[(o * r + a) * inner + j], s);
      yr[j] = acc;
    }
    for (j = 0; j < inner; j++) yr[j] = O::finish(yr[j], r, sr ? sr[j] : 0.f);
  }
}

template <class L, int K>
inline void reduce_range(const float* x, float* y, int64_t o0, int64_t o1, int64_t r, int64_t inner, const float* shift) {
  if (inner == 1) rows<L, K>(x, y, o0, o1, r, shift);
  else slabs<L, K>(x, y, o0, o1, r, inner, shift);
}

template <class L>
inline void reduce_any(int kind, const float* x, float* y, int64_t o0, int64_t o1, int64_t r, int64_t inner,
                       const float* shift) {
  switch (kind) {
    case RED_SUM: return reduce_range<L, RED_SUM>(x, y, o0, o1, r, inner, shift);
    case RED_MEAN: return reduce_range<L, RED_MEAN>(x, y, o0, o1, r, inner, shift);
    case RED_MAX: return reduce_range<L, RED_MAX>(x, y, o0, o1, r, inner, shift);
    case RED_MIN: return reduce_range<L, RED_MIN>(x, y, o0, o1, r, inner, shift);
    case RED_PROD: return reduce_range<L, RED_PROD>(x, y, o0, o1, r, inner, shift);
    case RED_L1: return reduce_range<L, RED_L1>(x, y, o0, o1, r, inner, shift);
    case RED_L2: return reduce_range<L, RED_L2>(x, y, o0, o1, r, inner, shift);
    case RED_SUM_SQUARE: return reduce_range<L, RED_SUM_SQUARE>(x, y, o0, o1, r, inner, shift);
    case RED_LOG_SUM: return reduce_range<L, RED_LOG_SUM>(x, y, o0, o1, r, inner, shift);
    default: return reduce_range<L, RED_LOG_SUM_EXP>(x, y, o0, o1, r, inner, shift);
  }
}

__attribute__((target("avx2,fma"), flatten)) inline void reduce_avx2(int kind, const float* x, float* y, int64_t o0,
                                                                     int64_t o1, int64_t r, int64_t inner,
                                                                     const float* shift) {
  reduce_any<F8>(kind, x, y, o0, o1, r, inner, shift);
}

inline void reduce_part(int kind, const float* x, float* y, int64_t o0, int64_t o1, int64_t r, int64_t inner,
                        const float* shift) {
  if (use_avx2()) reduce_avx2(kind, x, y, o0, o1, r, inner, shift);
  else reduce_any<F1>(kind, x, y, o0, o1, r, inner, shift);
}

// Mean and 1 / sqrt(variance + eps) of n contiguous values (two passes: no cancellation).
template <class L>
inline void moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  constexpr int W = L::W;
  typename L::V a = L::set1(0.f);
  int64_t i = 0;
  for (; i + W <= n; i += W) a = L::add(a, L::load(x + i));
  float s = L::hadd(a);
  for (; i < n; i++) s += x[i];
  const float m = s / static_cast<float>(n);
  const typename L::V vm = L::set1(m);
  a = L::set1(0.f);
  for (i = 0; i + W <= n; i += W) {
    const typename L::V d = L::sub(L::load(x + i), vm);
    a = L::fma(d, d, a);
  }
  float q = L::hadd(a);
  for (; i < n; i++) q += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.f / std::sqrt(q / static_cast<float>(n) + eps);
}

// y = (x - mean) * rstd * scale + bias over `n` values, scale / bias per value or (stride 0) one each.
template <class L>
inline void affine(const float* x, float* y, int64_t n, float mean, float rstd, const float* scale, const float* bias,
                   int per_value) {
  constexpr int W = L::W;
  int64_t i = 0;
  const typename L::V vm = L::set1(mean), vr = L::set1(rstd);
  if (per_value) {
    for (; i + W <= n; i += W) {
      const typename L::V t = L::mul(L::sub(L::load(x + i), vm), vr);
      L::store(y + i, L::fma(t, L::load(scale + i), L::load(bias + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mean) * rstd * scale[i] + bias[i];
  } else {
    const typename L::V vs = L::set1(*scale), vb = L::set1(*bias);
    for (; i + W <= n; i += W) L::store(y + i, L::fma(L::mul(L::sub(L::load(x + i), vm), vr), vs, vb));
    for (; i < n; i++) y[i] = (x[i] - mean) * rstd * *scale + *bias;
  }
}

template <class L>
inline void norm_rows(const float* x, float* y, const float* scale, const float* bias, int64_t r0, int64_t r1,
                      int64_t groups, int64_t cpr, int64_t hw, float eps) {
  const int64_t len = cpr * hw;
  for (int64_t row = r0; row < r1; row++) {
    const float* xr = x + row * len;
    float* yr = y + row * len;
    float mean, rstd;
    moments<L>(xr, len, eps, &mean, &rstd);
    const int64_t c0 = (row % groups) * cpr;
    if (hw == 1) {
      affine<L>(xr, yr, len, mean, rstd, scale + c0, bias + c0, 1);
    } else {
      for (int64_t c = 0; c < cpr; c++) affine<L>(xr + c * hw, yr + c * hw, hw, mean, rstd, scale + c0 + c, bias + c0 + c, 0);
    }
  }
}

__attribute__((target("avx2,fma"), flatten)) inline void norm_rows_avx2(const float* x, float* y, const float* scale,
                                                                        const float* bias, int64_t r0, int64_t r1,
                                                                        int64_t groups, int64_t cpr, int64_t hw,
                                                                        float eps) {
  norm_rows<F8>(x, y, scale, bias, r0, r1, groups, cpr, hw, eps);
}

// ---- ArgMax / ArgMin: the index of the extreme value of x[o][a][j] over a ----------------------
// A sequential scan with strict comparisons, as ONNX Runtime does: ties keep the first index (the
// last with kLast: >= / <=), and a NaN never wins unless it is the first element (nothing compares
// against it then, so index 0 stays). x is float or stored uint8 / int8 integers (an order-preserving
// quantization); y is int64 indices, or float. The AVX2 paths compare 8 float lanes (bytes widen
// exactly) and carry the indices in 8 int32 lanes.

template <bool kMax, bool kLast, class T>
inline bool arg_better(T v, T best) {
  if constexpr (kMax) return kLast ? v >= best : v > best;
  else return kLast ? v <= best : v < best;
}

// Columns [j0, j1) of slab o, one at a time.
template <bool kMax, bool kLast, class X, class Y>
inline void arg_columns(const X* x, Y* y, int64_t o, int64_t r, int64_t inner, int64_t j0, int64_t j1) {
  const X* xs = x + o * r * inner;
  for (int64_t j = j0; j < j1; j++) {
    X best = xs[j];
    int64_t index = 0;
    for (int64_t a = 1; a < r; a++) {
      const X v = xs[a * inner + j];
      if (arg_better<kMax, kLast>(v, best)) best = v, index = a;
    }
    y[o * inner + j] = static_cast<Y>(index);
  }
}

INFERON_RLANE("avx2,fma") __m256 arg_load(const float* p) { return _mm256_loadu_ps(p); }
INFERON_RLANE("avx2,fma") __m256 arg_load(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
INFERON_RLANE("avx2,fma") __m256 arg_load(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
INFERON_RLANE("avx2,fma") void arg_store(int64_t* p, __m256i index) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(index)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(index, 1)));
}
INFERON_RLANE("avx2,fma") void arg_store(float* p, __m256i index) { _mm256_storeu_ps(p, _mm256_cvtepi32_ps(index)); }

// The comparison predicate (ordered: false on NaN) of "v is better than best".
template <bool kMax, bool kLast>
constexpr int arg_predicate() {
  return kMax ? (kLast ? _CMP_GE_OQ : _CMP_GT_OQ) : (kLast ? _CMP_LE_OQ : _CMP_LT_OQ);
}

// Columns [j0, j1) of slab o, 8 x U at a time along the contiguous inner axis (U independent
// compare / blend chains), the rest one at a time.
template <bool kMax, bool kLast, class X, class Y>
__attribute__((target("avx2,fma"))) inline void arg_columns_avx2(const X* x, Y* y, int64_t o, int64_t r, int64_t inner,
                                                                 int64_t j0, int64_t j1) {
  constexpr int U = 4, P = arg_predicate<kMax, kLast>();
  const X* xs = x + o * r * inner;
  int64_t j = j0;
  for (; j + 8 * U <= j1; j += 8 * U) {
    __m256 best[U];
    __m256i index[U];
    for (int u = 0; u < U; u++) best[u] = arg_load(xs + j + 8 * u), index[u] = _mm256_setzero_si256();
    for (int64_t a = 1; a < r; a++) {
      const __m256i va = _mm256_set1_epi32(static_cast<int32_t>(a));
      for (int u = 0; u < U; u++) {
        const __m256 v = arg_load(xs + a * inner + j + 8 * u);
        const __m256 m = _mm256_cmp_ps(v, best[u], P);
        best[u] = _mm256_blendv_ps(best[u], v, m);
        index[u] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(index[u]), _mm256_castsi256_ps(va), m));
      }
    }
    for (int u = 0; u < U; u++) arg_store(y + o * inner + j + 8 * u, index[u]);
  }
  arg_columns<kMax, kLast>(x, y, o, r, inner, j, j1);
}

// Row o of x viewed as [outer, r] (inner == 1): lane l scans x[l], x[l + 8], ..., starting from the
// first element (so a first-element NaN, checked up front, or a first-element extreme stays), then the
// lanes combine (equal values: the lower index first, the higher with kLast) and the tail follows.
template <bool kMax, bool kLast, class X, class Y>
__attribute__((target("avx2,fma"))) inline void arg_row_avx2(const X* x, Y* y, int64_t o, int64_t r) {
  constexpr int P = arg_predicate<kMax, kLast>();
  const X* xr = x + o * r;
  const float first = static_cast<float>(xr[0]);
  if (r < 16 || first != first) return arg_columns<kMax, kLast>(x, y, o, r, 1, 0, 1);
  __m256 best = _mm256_set1_ps(first);
  __m256i index = _mm256_setzero_si256(), at = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i step = _mm256_set1_epi32(8);
  int64_t i = 0;
  for (; i + 8 <= r; i += 8, at = _mm256_add_epi32(at, step)) {
    const __m256 v = arg_load(xr + i);
    const __m256 m = _mm256_cmp_ps(v, best, P);
    best = _mm256_blendv_ps(best, v, m);
    index = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(index), _mm256_castsi256_ps(at), m));
  }
  alignas(32) float bv[8];
  alignas(32) int32_t bi[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bi), index);
  float b = bv[0];
  int64_t k = bi[0];
  for (int l = 1; l < 8; l++) {
    if (arg_better<kMax, false>(bv[l], b) || (bv[l] == b && (kLast ? bi[l] > k : bi[l] < k))) b = bv[l], k = bi[l];
  }
  for (; i < r; i++) {
    const float v = static_cast<float>(xr[i]);
    if (arg_better<kMax, kLast>(v, b)) b = v, k = i;
  }
  y[o] = static_cast<Y>(k);
}

// Work item t of arg_reduce: a row (inner == 1) or a block of kArgBlock columns of one slab.
constexpr int64_t kArgBlock = 1024;

template <bool kMax, bool kLast, class X, class Y>
inline void arg_item(const X* x, Y* y, int64_t t, int64_t r, int64_t inner, bool avx2) {
  if (inner == 1) {
    if (avx2) arg_row_avx2<kMax, kLast>(x, y, t, r);
    else arg_columns<kMax, kLast>(x, y, t, r, 1, 0, 1);
    return;
  }
  const int64_t blocks = (inner + kArgBlock - 1) / kArgBlock, o = t / blocks;
  const int64_t j0 = (t % blocks) * kArgBlock, j1 = std::min(inner, j0 + kArgBlock);
  if (avx2) arg_columns_avx2<kMax, kLast>(x, y, o, r, inner, j0, j1);
  else arg_columns<kMax, kLast>(x, y, o, r, inner, j0, j1);
}

template <bool kMax, bool kLast, class X, class Y>
inline void arg_reduce_all(const X* x, Y* y, int64_t outer, int64_t r, int64_t inner, int num_threads) {
  const int64_t items = inner == 1 ? outer : outer * ((inner + kArgBlock - 1) / kArgBlock);
  // the AVX2 paths carry indices in int32 lanes
  const bool avx2 = use_avx2() && r < (int64_t{1} << 31);
  const int T = threads_for(num_threads, static_cast<double>(outer) * r * inner, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < items; t++) arg_item<kMax, kLast>(x, y, t, r, inner, avx2);
}

#undef INFERON_RLANE

}  // namespace reduce_detail

// ONNX Reduce* (`kind`: RED_*) over the middle axis of x viewed as [outer, r, inner]: y is [outer, inner].
INFERON_ENTRY void reduce(int kind, const float* x, float* y, int64_t outer, int64_t r, int64_t inner, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(REDUCE)
INFERON_ENTRY void reduce(int kind, const float* x, float* y, int64_t outer, int64_t r, int64_t inner, int num_threads) {
  using namespace reduce_detail;
  const double work = static_cast<double>(outer) * r * inner * (kind == RED_LOG_SUM_EXP ? 8.0 : 1.0);
  const int T = threads_for(num_threads, work, 65536.0);
  if (kind == RED_LOG_SUM_EXP) {  // y = max first, then the shifted sum of exponentials
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) reduce_part(RED_MAX, x, y, o, o + 1, r, inner, nullptr);
    for (int64_t i = 0; i < outer * inner; i++) y[i] = lse_shift(y[i]);
  }
  // log-sum-exp reads its shift from y while writing y: each element is read before it is written
  const float* shift = kind == RED_LOG_SUM_EXP ? y : nullptr;
  if (shift && inner > 1) {
    // slabs() overwrites y[o][j] with the running sum, so keep the shifts aside
    std::vector<float> s(y, y + outer * inner);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) reduce_part(kind, x, y, o, o + 1, r, inner, s.data());
    return;
  }
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t o = 0; o < outer; o++) reduce_part(kind, x, y, o, o + 1, r, inner, shift);
}
#endif

// ONNX ArgMax (kind RED_MAX) / ArgMin (RED_MIN) over the middle axis of x viewed as [outer, r, inner]:
// y is [outer, inner] indices (int64, or float for a Cast to float), the first extreme value's, or the
// last's with select_last. x is float, or uint8 / int8 stored integers.
template <class X, class Y>
inline void arg_reduce(int kind, int select_last, const X* x, Y* y, int64_t outer, int64_t r, int64_t inner,
                       int num_threads = 1) {
  using namespace reduce_detail;
  if (kind == RED_MAX) {
    if (select_last) arg_reduce_all<true, true>(x, y, outer, r, inner, num_threads);
    else arg_reduce_all<true, false>(x, y, outer, r, inner, num_threads);
  } else {
    if (select_last) arg_reduce_all<false, true>(x, y, outer, r, inner, num_threads);
    else arg_reduce_all<false, false>(x, y, outer, r, inner, num_threads);
  }
}

// Row normalisation: each of `rows` rows of cpr * hw values to zero mean, unit variance (eps added
// to the variance), then * scale[c] + bias[c], c = (row % groups) * cpr + column / hw.
INFERON_ENTRY void row_norm(const float* x, float* y, const float* scale, const float* bias, int64_t rows, int64_t groups,
                     int64_t cpr, int64_t hw, float eps, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(REDUCE)
INFERON_ENTRY void row_norm(const float* x, float* y, const float* scale, const float* bias, int64_t rows, int64_t groups,
                     int64_t cpr, int64_t hw, float eps, int num_threads) {
  using namespace reduce_detail;
  const int T = threads_for(num_threads, static_cast<double>(rows) * cpr * hw * 3.0, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t row = 0; row < rows; row++) {
    if (use_avx2()) norm_rows_avx2(x, y, scale, bias, row, row + 1, groups, cpr, hw, eps);
    else norm_rows<F1>(x, y, scale, bias, row, row + 1, groups, cpr, hw, eps);
  }
}
#endif

}  // namespace inferon
