// Inferon pooling kernels (ONNX MaxPool / AveragePool / GlobalMax/AveragePool) on NC planes.
#pragma once

#include <vector>

#include "common.hpp"

namespace inferon {

namespace pool_detail {

// Valid tap range [lo, hi) of a dilated window starting at `start` over an extent [0, n).
inline void tap_range(int64_t start, int k, int d, int64_t n, int& lo, int& hi) {
  lo = 0;
  hi = k;
  if (start < 0) lo = static_cast<int>((-start + d - 1) / d);
  const int64_t last_ok = n - 1 - start;  // i*d <= last_ok
  if (last_ok < 0) hi = 0;
  else hi = static_cast<int>(std::min<int64_t>(k, last_ok / d + 1));
  if (hi < lo) hi = lo;
}

// Number of taps in [lo_bound, hi_bound) for a window starting at start.
inline int tap_count(int64_t start, int k, int d, int64_t lo_bound, int64_t hi_bound) {
  int c = 0;
  for (int i = 0; i < k; i++) {
    const int64_t p = start + static_cast<int64_t>(i) * d;
    if (p >= lo_bound && p < hi_bound) c++;
  }
  return c;
}

INFERON_AVX2 inline void global_plane_avx2(const float* x, float* y, int64_t HW, int is_max) {
  int64_t i = 0;
  if (is_max) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    for (; i + 16 <= HW; i += 16) {
      m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
      m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    float m = hmax256(_mm256_max_ps(m0, m1));
    for (; i < HW; i++) m = x[i] > m ? x[i] : m;
    *y = m;
  } else {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; i + 32 <= HW; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= HW; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < HW; i++) s += x[i];
    *y = s / static_cast<float>(HW);
  }
}

}  // namespace pool_detail

// ONNX Max/AveragePool on NC planes. pads top/left/bottom/right. Avg divisor: count_include_pad=0 →
// number of in-image elements in the window; =1 → window clipped to the padded extent
// [-pt, H+pb) x [-pl, W+pr) (with ceil_mode the last window may extend past it). Max ignores
// padding; a window with no in-image element gives -FLT_MAX (max) or 0 (average).
inline void pool2d(const float* x, float* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                   int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw,
                   int is_max, int count_include_pad, int num_threads = 1) {
  using pool_detail::tap_count;
  using pool_detail::tap_range;
  // per output column: valid tap range and padded-extent tap count
  std::vector<int> jlo(static_cast<size_t>(Wo)), jhi(static_cast<size_t>(Wo)), jcnt(static_cast<size_t>(Wo));
  for (int64_t wo = 0; wo < Wo; wo++) {
    const int64_t ws = wo * sw - pl;
    tap_range(ws, kw, dw, W, jlo[wo], jhi[wo]);
    jcnt[wo] = tap_count(ws, kw, dw, -pl, W + pr);
  }
  const int T = threads_for(num_threads, static_cast<double>(NC) * Ho * Wo * kh * kw, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < NC; p++) {
    const float* xp = x + p * H * W;
    float* yp = y + p * Ho * Wo;
    for (int64_t ho = 0; ho < Ho; ho++) {
      const int64_t hs = ho * sh - pt;
      int ilo, ihi;
      tap_range(hs, kh, dh, H, ilo, ihi);
      const int icnt = tap_count(hs, kh, dh, -pt, H + pb);
      float* yr = yp + ho * Wo;
      for (int64_t wo = 0; wo < Wo; wo++) {
        const int64_t ws = wo * sw - pl;
        const int lo = jlo[wo], hi = jhi[wo];
        if (is_max) {
          float m = -FLT_MAX;
          for (int i = ilo; i < ihi; i++) {
            const float* xr = xp + (hs + static_cast<int64_t>(i) * dh) * W + ws;
            for (int j = lo; j < hi; j++) {
              const float v = xr[static_cast<int64_t>(j) * dw];
              m = v > m ? v : m;
            }
          }
          yr[wo] = m;
        } else {
          float s = 0.f;
          for (int i = ilo; i < ihi; i++) {
            const float* xr = xp + (hs + static_cast<int64_t>(i) * dh) * W + ws;
            for (int j = lo; j < hi; j++) s += xr[static_cast<int64_t>(j) * dw];
          }
          const int cnt = count_include_pad ? icnt * jcnt[wo] : (ihi - ilo) * (hi - lo);
          yr[wo] = cnt > 0 ? s / static_cast<float>(cnt) : 0.f;
        }
      }
    }
  }
}

// Global max/average over each of NC planes of HW elements.
inline void global_pool(const float* x, float* y, int64_t NC, int64_t HW, int is_max, int num_threads = 1) {
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(NC) * HW, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < NC; p++) {
    const float* xp = x + p * HW;
    if (avx2) {
      pool_detail::global_plane_avx2(xp, y + p, HW, is_max);
    } else if (is_max) {
      float m = -INFINITY;
      for (int64_t i = 0; i < HW; i++) m = xp[i] > m ? xp[i] : m;
      y[p] = m;
    } else {
      float s = 0.f;
      for (int64_t i = 0; i < HW; i++) s += xp[i];
      y[p] = s / static_cast<float>(HW);
    }
  }
}

}  // namespace inferon
