// Inferon kernels: quantized depthwise convolution (QLinearConv with group == C_in), direct.
//
// y[n][m] = requantize(sum_taps w[m][tap] * xpad[n][m / mult][...] + comp[m]) with comp = bias -
// zx * sum(w[m]) (compile time) and the padding reading the zero point: each input plane is copied
// into a bordered plane of the stored zero point, so that every output row is a sum of kh * kw
// shifted rows with no border tests. The products and sums are exact in float32 (|acc| <= 255 * 128
// * taps < 2^24), so the AVX2 path accumulates with FMAs on 8 outputs at a time and converts the
// exact integer back before adding comp: the result is bit-exact with the integer reference, with
// the same requantization as qgemm.hpp.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "quant.hpp"

namespace inferon {

struct QDepthwise {
  int64_t N, C, H, W, M, Ho, Wo;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  const int8_t* w;      // [M][kh * kw]
  const int32_t* comp;  // [M]
  const float* mult;    // [M]
  int32_t zy, lo, hi;   // output zero point and clamp
  uint8_t pad;          // stored input zero point
};

namespace qdw_detail {

template <class QY>
inline QY requant_scalar(const QDepthwise& g, int64_t m, int32_t acc) {
  float v = static_cast<float>(acc + g.comp[m]) * g.mult[m];
  v = std::min(std::max(v, static_cast<float>(g.lo - g.zy)), static_cast<float>(g.hi - g.zy));
  return static_cast<QY>(static_cast<int32_t>(std::nearbyint(v)) + g.zy);
}

template <class QX, class QY>
INFERON_AVX2 void plane_avx2(const QDepthwise& g, int64_t m, const QX* p, int64_t Wp, QY* y) {
  const int taps = g.kh * g.kw;
  float wf[64];
  for (int t = 0; t < taps; t++) wf[t] = static_cast<float>(g.w[m * taps + t]);
  const __m256i comp = _mm256_set1_epi32(g.comp[m]), zy = _mm256_set1_epi32(g.zy);
  const __m256 mult = _mm256_set1_ps(g.mult[m]);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(g.lo - g.zy)), hi = _mm256_set1_ps(static_cast<float>(g.hi - g.zy));
  for (int64_t ho = 0; ho < g.Ho; ho++) {
    QY* out = y + ho * g.Wo;
    for (int64_t wo = 0; wo < g.Wo; wo += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int i = 0; i < g.kh; i++) {
        const QX* row = p + (ho * g.sh + static_cast<int64_t>(i) * g.dh) * Wp + wo * g.sw;
        for (int j = 0; j < g.kw; j++)
          acc = _mm256_fmadd_ps(quant_detail::load8_f32(row + j * g.dw, g.sw), _mm256_set1_ps(wf[i * g.kw + j]), acc);
      }
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_cvtps_epi32(acc), comp)), mult);
      f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
      const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), zy);
      __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      __m128i b = std::is_signed<QY>::value ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16);
      if (wo + 8 <= g.Wo) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + wo), b);
      } else {
        alignas(16) uint8_t t[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(t), b);
        std::memcpy(out + wo, t, static_cast<size_t>(g.Wo - wo));
      }
    }
  }
}

template <class QX, class QY>
inline void plane_scalar(const QDepthwise& g, int64_t m, const QX* p, int64_t Wp, QY* y) {
  const int taps = g.kh * g.kw;
  for (int64_t ho = 0; ho < g.Ho; ho++)
    for (int64_t wo = 0; wo < g.Wo; wo++) {
      int32_t acc = 0;
      for (int i = 0; i < g.kh; i++)
        for (int j = 0; j < g.kw; j++)
          acc += static_cast<int32_t>(g.w[m * taps + i * g.kw + j]) *
                 static_cast<int32_t>(p[(ho * g.sh + static_cast<int64_t>(i) * g.dh) * Wp + j * g.dw + wo * g.sw]);
      y[ho * g.Wo + wo] = requant_scalar<QY>(g, m, acc);
    }
}

}  // namespace qdw_detail

template <class QX, class QY>
inline void qdepthwise_conv2d(const QDepthwise& g, const QX* x, QY* y, int num_threads = 1) {
  const int64_t Hp = std::max<int64_t>(g.H + g.pt, (g.Ho - 1) * g.sh + static_cast<int64_t>(g.kh - 1) * g.dh + 1);
  const int64_t Wp = std::max<int64_t>(g.W + g.pl, (g.Wo + 7) / 8 * 8 * g.sw + static_cast<int64_t>(g.kw - 1) * g.dw + 1) + 32;
  const bool avx2 = use_avx2() && g.kh * g.kw <= 64;
  const int64_t mult_ch = g.M / g.C;
  const QX border = static_cast<QX>(g.pad);
  const int T = threads_for(num_threads, static_cast<double>(g.N * g.M) * g.Ho * g.Wo * g.kh * g.kw, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<QX> plane(static_cast<size_t>(Hp * Wp));
    int64_t filled = -1;  // the (n, c) plane currently in `plane`
#pragma omp for schedule(static)
    for (int64_t nm = 0; nm < g.N * g.M; nm++) {
      const int64_t n = nm / g.M, m = nm % g.M, c = m / mult_ch;
      if (filled != n * g.C + c) {
        std::fill(plane.begin(), plane.end(), border);
        const QX* src = x + (n * g.C + c) * g.H * g.W;
        for (int64_t r = 0; r < g.H; r++)
          std::memcpy(plane.data() + (g.pt + r) * Wp + g.pl, src + r * g.W, static_cast<size_t>(g.W) * sizeof(QX));
        filled = n * g.C + c;
      }
      QY* out = y + nm * g.Ho * g.Wo;
      if (avx2) qdw_detail::plane_avx2(g, m, plane.data(), Wp, out);
      else qdw_detail::plane_scalar(g, m, plane.data(), Wp, out);
    }
  }
}

}  // namespace inferon
