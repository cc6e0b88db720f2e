// Inferon normalisation kernels: softmax / log-softmax, LRN.
#pragma once

#include <vector>

#include "common.hpp"

namespace inferon {

namespace norm_detail {

// Softmax of one contiguous row of n values.
INFERON_AVX2 inline void softmax_row_avx2(const float* x, float* y, int64_t n, int log) {
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  float m = hmax256(vm);
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  const __m256 bm = _mm256_set1_ps(m);
  __m256 vs = _mm256_setzero_ps();
  float s = 0.f;
  i = 0;
  if (log) {
    for (; i + 8 <= n; i += 8) vs = _mm256_add_ps(vs, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm)));
    s = hsum256(vs);
    for (; i < n; i++) s += std::exp(x[i] - m);
    const float sub = m + std::log(s);
    const __m256 vsub = _mm256_set1_ps(sub);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), vsub));
    for (; i < n; i++) y[i] = x[i] - sub;
  } else {
    for (; i + 8 <= n; i += 8) {
      const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm));
      _mm256_storeu_ps(y + i, e);
      vs = _mm256_add_ps(vs, e);
    }
    s = hsum256(vs);
    for (; i < n; i++) {
      y[i] = std::exp(x[i] - m);
      s += y[i];
    }
    const float inv = 1.f / s;
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vinv));
    for (; i < n; i++) y[i] *= inv;
  }
}

inline void softmax_row_scalar(const float* x, float* y, int64_t n, int log) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  float s = 0.f;
  if (log) {
    for (int64_t i = 0; i < n; i++) s += std::exp(x[i] - m);
    const float sub = m + std::log(s);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] - sub;
  } else {
    for (int64_t i = 0; i < n; i++) {
      y[i] = std::exp(x[i] - m);
      s += y[i];
    }
    const float inv = 1.f / s;
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
  }
}

// Softmax over the middle axis of one [axis, inner] slab (inner > 1), vectorised over inner.
inline void softmax_slab(const float* x, float* y, int64_t axis, int64_t inner, int log, float* m, float* s) {
  for (int64_t j = 0; j < inner; j++) {
    m[j] = -INFINITY;
    s[j] = 0.f;
  }
  for (int64_t a = 0; a < axis; a++) {
    const float* xr = x + a * inner;
    for (int64_t j = 0; j < inner; j++) m[j] = xr[j] > m[j] ? xr[j] : m[j];
  }
  for (int64_t a = 0; a < axis; a++) {
    const float* xr = x + a * inner;
    float* yr = y + a * inner;
    for (int64_t j = 0; j < inner; j++) {
      const float e = std::exp(xr[j] - m[j]);
      s[j] += e;
      if (!log) yr[j] = e;
    }
  }
  if (log) {
    for (int64_t j = 0; j < inner; j++) s[j] = m[j] + std::log(s[j]);
    for (int64_t a = 0; a < axis; a++)
      for (int64_t j = 0; j < inner; j++) y[a * inner + j] = x[a * inner + j] - s[j];
  } else {
    for (int64_t j = 0; j < inner; j++) s[j] = 1.f / s[j];
    for (int64_t a = 0; a < axis; a++)
      for (int64_t j = 0; j < inner; j++) y[a * inner + j] *= s[j];
  }
}

// log(x) for finite x > 0 (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)), degree-9 polynomial;
// ~1 ulp). x <= 0 or denormal: undefined.
INFERON_AVX2_INLINE __m256 log256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  __m256i bits = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
  // mantissa in [0.5, 1)
  __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
  m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(m, small)), one);
  const __m256 z = _mm256_mul_ps(m, m);
  __m256 y = _mm256_set1_ps(7.0376836292E-2f);
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174E-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
}

// One LRN output row: y[i] = x_c[i] * (bias + scale * sum_{cc in [c0, c1]} x_cc[i]^2)^-beta, where
// x_cc = xn + cc * HW; the power as exp(-beta * log(base)).
INFERON_AVX2 inline void lrn_row_avx2(const float* xn, int64_t c, int64_t c0, int64_t c1, int64_t HW, float* y,
                                      float scale, float beta, float bias) {
  const __m256 vs = _mm256_set1_ps(scale), vbias = _mm256_set1_ps(bias), vnb = _mm256_set1_ps(-beta);
  const float* xc = xn + c * HW;
  int64_t i = 0;
  for (; i + 8 <= HW; i += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t cc = c0; cc <= c1; cc++) {
      const __m256 v = _mm256_loadu_ps(xn + cc * HW + i);
      acc = _mm256_fmadd_ps(v, v, acc);
    }
    const __m256 base = _mm256_fmadd_ps(acc, vs, vbias);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(xc + i), exp256(_mm256_mul_ps(vnb, log256(base)))));
  }
  for (; i < HW; i++) {
    float acc = 0.f;
    for (int64_t cc = c0; cc <= c1; cc++) acc += xn[cc * HW + i] * xn[cc * HW + i];
    y[i] = xc[i] * std::pow(bias + scale * acc, -beta);
  }
}

}  // namespace norm_detail

// softmax (or log-softmax if log != 0) over the middle axis of an [outer, axis, inner] view
INFERON_ENTRY void softmax(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner, int log,
                    int num_threads = 1);

#if INFERON_DEFINE_KERNELS(NORM)
INFERON_ENTRY void softmax(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner, int log,
                    int num_threads) {
  if (outer <= 0 || axis <= 0 || inner <= 0) return;
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(outer) * axis * inner * 8, 65536.0);
  if (inner == 1) {
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
      if (avx2) norm_detail::softmax_row_avx2(x + o * axis, y + o * axis, axis, log);
      else norm_detail::softmax_row_scalar(x + o * axis, y + o * axis, axis, log);
    }
    return;
  }
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<float> tmp(static_cast<size_t>(2 * inner));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < outer; o++)
      norm_detail::softmax_slab(x + o * axis * inner, y + o * axis * inner, axis, inner, log,
                                tmp.data(), tmp.data() + inner);
  }
}
#endif

// ONNX LRN over channels of NCHW: sum over c' in [c-floor((size-1)/2), c+ceil((size-1)/2)] of x^2;
// y = x / (bias + alpha/size * sum)^beta. AVX2: 8 positions at a time, the power as
// exp(-beta * log(base)) (a few ulp from std::pow; base > 0).
INFERON_ENTRY void lrn(const float* x, float* y, int64_t N, int64_t C, int64_t HW, int size, float alpha,
                float beta, float bias, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(NORM)
INFERON_ENTRY void lrn(const float* x, float* y, int64_t N, int64_t C, int64_t HW, int size, float alpha,
                float beta, float bias, int num_threads) {
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  const float scale = alpha / static_cast<float>(size);
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(N) * C * HW * (size + 8), 65536.0);
  if (avx2) {
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t nc = 0; nc < N * C; nc++) {
      const int64_t n = nc / C, c = nc % C;
      const int64_t c0 = std::max<int64_t>(0, c - before), c1 = std::min<int64_t>(C - 1, c + after);
      norm_detail::lrn_row_avx2(x + n * C * HW, c, c0, c1, HW, y + nc * HW, scale, beta, bias);
    }
    return;
  }
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<float> acc(static_cast<size_t>(HW));
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < N * C; nc++) {
      const int64_t n = nc / C, c = nc % C;
      const int64_t c0 = std::max<int64_t>(0, c - before), c1 = std::min<int64_t>(C - 1, c + after);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t cc = c0; cc <= c1; cc++) {
        const float* xp = x + (n * C + cc) * HW;
        for (int64_t i = 0; i < HW; i++) acc[i] += xp[i] * xp[i];
      }
      const float* xp = x + nc * HW;
      float* yp = y + nc * HW;
      for (int64_t i = 0; i < HW; i++) yp[i] = xp[i] * std::pow(bias + scale * acc[i], -beta);
    }
  }
}
#endif

}  // namespace inferon
