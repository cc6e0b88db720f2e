// Inferon kernels: quantized depthwise convolution (QLinearConv with group == C_in), direct.
//
// y[n][m] = requantize(sum_taps w[m][tap] * xpad[n][m / mult][...] + comp[m]) with comp = bias -
// zx * sum(w[m]) (compile time) and the padding reading the zero point. With AVX2 the input minus
// its zero point goes through the float depthwise kernel (depthwise.hpp) with the integer weights:
// every product and partial sum is an integer below 2^24 (|x - zx| <= 255, |w| <= 128, up to 512
// taps), hence exact in float32 whatever the order; the integer bias is added after
// converting back, so the result is bit-exact with the integer reference and uses the same
// requantization as qgemm.hpp. The scalar path works on a bordered plane of the stored zero point.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "depthwise.hpp"
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

// y[i] = requantize(int(acc[i]) + bias) for one output plane (acc: exact integers as floats).
template <class QY>
INFERON_AVX2 void requant_plane_avx2(const QDepthwise& g, int64_t m, const float* acc, int32_t bias, QY* y, int64_t n) {
  const __m256i b = _mm256_set1_epi32(bias), zy = _mm256_set1_epi32(g.zy);
  const __m256 mult = _mm256_set1_ps(g.mult[m]);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(g.lo - g.zy)), hi = _mm256_set1_ps(static_cast<float>(g.hi - g.zy));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_cvtps_epi32(_mm256_loadu_ps(acc + i)), b)), mult);
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    quant_detail::store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(f), zy));
  }
  for (; i < n; i++) {
    float v = static_cast<float>(static_cast<int32_t>(acc[i]) + bias) * g.mult[m];
    v = std::min(std::max(v, static_cast<float>(g.lo - g.zy)), static_cast<float>(g.hi - g.zy));
    y[i] = static_cast<QY>(static_cast<int32_t>(std::nearbyint(v)) + g.zy);
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

// With AVX2: the stored input minus its zero point, as floats, through the float depthwise kernel
// (integer weights; every product and partial sum is an integer below 2^24, so exact whatever the
// order), then requantized with the integer bias: bit-exact with the integer definition.
template <class QX, class QY>
inline void qdepthwise_via_float(const QDepthwise& g, const QX* x, QY* y, int num_threads) {
  thread_local Scratch xs, as, ws;
  const int64_t in = g.N * g.C * g.H * g.W, out = g.N * g.M * g.Ho * g.Wo, taps = static_cast<int64_t>(g.kh) * g.kw;
  float* xf = xs.get(static_cast<size_t>(in));
  float* acc = as.get(static_cast<size_t>(out));
  float* wf = ws.get(static_cast<size_t>(g.M * taps));
  const int32_t zx = static_cast<int32_t>(static_cast<QX>(g.pad));
  dequantize_linear(x, xf, in, 1.0f, zx, num_threads);
  for (int64_t i = 0; i < g.M * taps; i++) wf[i] = static_cast<float>(g.w[i]);
  depthwise_conv2d(xf, wf, nullptr, nullptr, acc, g.N, g.C, g.H, g.W, g.M, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl,
                   g.dh, g.dw, ACT_NONE, 0.f, 0.f, num_threads);
  const int64_t plane = g.Ho * g.Wo;
  const int T = threads_for(num_threads, static_cast<double>(out), 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t nm = 0; nm < g.N * g.M; nm++) {
    const int64_t m = nm % g.M;
    int32_t wsum = 0;  // comp = bias - zx * sum(w): the bias for the zero-centred input
    for (int64_t t = 0; t < taps; t++) wsum += g.w[m * taps + t];
    qdw_detail::requant_plane_avx2(g, m, acc + nm * plane, g.comp[m] + zx * wsum, y + nm * plane, plane);
  }
}

template <class QX, class QY>
inline void qdepthwise_conv2d(const QDepthwise& g, const QX* x, QY* y, int num_threads = 1) {
  // exact in float while taps * 255 * 128 < 2^24
  if (use_avx2() && g.kh * g.kw <= 512) return qdepthwise_via_float(g, x, y, num_threads);
  const int64_t Hp = std::max<int64_t>(g.H + g.pt, (g.Ho - 1) * g.sh + static_cast<int64_t>(g.kh - 1) * g.dh + 1);
  const int64_t Wp = std::max<int64_t>(g.W + g.pl, (g.Wo + 7) / 8 * 8 * g.sw + static_cast<int64_t>(g.kw - 1) * g.dw + 1) + 32;
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
      qdw_detail::plane_scalar(g, m, plane.data(), Wp, y + nm * g.Ho * g.Wo);
    }
  }
}

}  // namespace inferon
