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

// Geometry of pool2d, plus the per-call tables of the AVX2 path.
struct PoolGeo {
  int64_t H, W, Ho, Wo;
  int kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
  int is_max, cip;
};

// One output row of the AVX2 path for the vectorisable columns [wlo, whi) (every tap inside the
// row), in blocks of 8 (the last block overlaps the previous one); rows [ilo, ihi) of the window
// are inside the image. S: column stride 1 or 2 (two loads de-interleaved, lanes in the order
// 0 1 4 5 2 3 6 7, put back once per block). base/odd: per tap, as in depthwise.hpp.
template <int S>
INFERON_AVX2 void pool_row_avx2(const PoolGeo& g, const float* xp, float* yr, int64_t hs, int ilo, int ihi,
                                int64_t wlo, int64_t whi, const int* base, const unsigned char* odd, float inv) {
  const int kw = g.kw, is_max = g.is_max;
  const int64_t W = g.W, dh = g.dh, pl = g.pl;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (int64_t wo = wlo; wo < whi; wo += 8) {
    if (wo + 8 > whi) wo = whi - 8;  // last block: overlap (same values are stored again)
    const float* x0 = xp + wo * S - pl;
    __m256 acc = is_max ? _mm256_set1_ps(-FLT_MAX) : _mm256_setzero_ps();
    for (int i = ilo; i < ihi; i++) {
      const float* xr = x0 + (hs + i * dh) * W;
      for (int j = 0; j < kw; j++) {
        __m256 v;
        if (S == 1) {
          v = _mm256_loadu_ps(xr + base[j]);
        } else {
          const __m256 lo = _mm256_loadu_ps(xr + base[j]), hi = _mm256_loadu_ps(xr + base[j] + 8);
          v = odd[j] ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
        }
        // max: (v > acc ? v : acc) like the scalar path, NaN-free inputs assumed alike
        acc = is_max ? _mm256_max_ps(v, acc) : _mm256_add_ps(acc, v);
      }
    }
    if (S == 2) acc = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(acc), _MM_SHUFFLE(3, 1, 2, 0)));
    if (!is_max) acc = _mm256_mul_ps(acc, vinv);
    _mm256_storeu_ps(yr + wo, acc);
  }
}

}  // namespace pool_detail

// ONNX Max/AveragePool on NC planes. pads top/left/bottom/right. Avg divisor: count_include_pad=0 →
// number of in-image elements in the window; =1 → window clipped to the padded extent
// [-pt, H+pb) x [-pl, W+pr) (with ceil_mode the last window may extend past it). Max ignores
// padding; a window with no in-image element gives -FLT_MAX (max) or 0 (average).
// AVX2 (column stride 1 or 2): the columns whose window lies inside the row are computed 8 at a
// time (average: times 1/count, within an ulp of the scalar division); border columns, other
// strides and the scalar ISA use the scalar loop.
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
  // AVX2: columns [vlo, vhi) have every tap inside the row (and, stride 2, every 16-float load);
  // they are computed 8 at a time, the others by the scalar code below.
  int64_t vlo = 0, vhi = 0;
  std::vector<int> base(static_cast<size_t>(kw));
  std::vector<unsigned char> odd(static_cast<size_t>(kw));
  if (use_avx2() && (sw == 1 || sw == 2)) {
    int max_base = 0;
    for (int j = 0; j < kw; j++) {
      const int off = j * dw;
      odd[j] = sw == 2 && (off & 1);
      base[j] = odd[j] ? off - 1 : off;
      max_base = std::max(max_base, base[j]);
    }
    auto floor_div = [](int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
    vlo = (pl + sw - 1) / sw;
    // last column: wo*sw - pl + (kw-1)*dw <= W-1 (stride 1: the 8-wide loads end there too)
    vhi = floor_div(W - 1 + pl - static_cast<int64_t>(kw - 1) * dw, sw) + 1;
    // stride 2: the block starting at vhi - 8 loads up to (vhi-8)*2 - pl + max_base + 15 <= W-1
    if (sw == 2) vhi = std::min<int64_t>(vhi, floor_div(W - 16 + pl - max_base, 2) + 8);
    vhi = std::min(vhi, Wo);
    if (vhi - vlo < 8) vlo = vhi = 0;
  }
  const pool_detail::PoolGeo geo{H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, count_include_pad};
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
      if (vhi > vlo) {
        const int cnt = (count_include_pad ? icnt : ihi - ilo) * kw;
        const float inv = cnt > 0 ? 1.f / static_cast<float>(cnt) : 0.f;
        if (sw == 1) pool_detail::pool_row_avx2<1>(geo, xp, yr, hs, ilo, ihi, vlo, vhi, base.data(), odd.data(), inv);
        else pool_detail::pool_row_avx2<2>(geo, xp, yr, hs, ilo, ihi, vlo, vhi, base.data(), odd.data(), inv);
      }
      for (int64_t wo = 0; wo < Wo; wo++) {
        if (wo == vlo && vhi > vlo) wo = vhi;
        if (wo >= Wo) break;
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
