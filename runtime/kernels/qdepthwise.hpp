// Inferon kernels: quantized depthwise convolution (QLinearConv with group == C_in), direct.
//
// y[n][m] = requantize(sum_taps w[m][tap] * xpad[n][m / mult][...] + comp[m]) with comp = bias -
// zx * sum(w[m]) (compile time) and the padding reading the zero point. With AVX2 the input minus
// its zero point goes through the float depthwise kernels (depthwise.hpp) with the integer weights:
// every product and partial sum is an integer below 2^24 (|x - zx| <= 255, |w| <= 128, up to 512
// taps), hence exact in float32 whatever the order; the integer bias is added after converting
// back, so the result is bit-exact with the integer reference and uses the same requantization as
// qgemm.hpp. For the CNN geometries (3x3 / 5x5, stride 1 / 2) this runs plane by plane: the
// stored plane is converted straight into the zero-bordered float scratch of depthwise.hpp's
// padded kernel (zero-centred, so the border is the zero point), the kernel accumulates one float
// plane, which is requantized at once: all in cache, no whole-tensor float copies. Other
// geometries convert the whole tensor and use the general float kernel. The scalar path works on
// a bordered plane of the stored zero point.
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

// Copy the read rows of a stored plane, minus its zero point, into the zero-bordered float scratch
// P of depthwise.hpp's padded kernel (the same origin and row stride as its copy_padded).
template <class QX>
INFERON_AVX2 void copy_padded_centred(const dw_detail::Geo& g, const dw_detail::Padded& pg, const QX* x, int32_t zx,
                                      float* P) {
  const int64_t cols = pg.cols, c8 = cols / 8 * 8, rows = pg.rows, W = g.W, Wp = pg.Wp;
  const __m256 z = _mm256_set1_ps(static_cast<float>(zx));
  float* dst = P + g.pt * Wp + g.pl;
  for (int64_t h = 0; h < rows; h++, x += W, dst += Wp) {
    for (int64_t c = 0; c < c8; c += 8) _mm256_storeu_ps(dst + c, _mm256_sub_ps(quant_detail::load8_f32(x + c, 1), z));
    for (int64_t c = c8; c < cols; c++) dst[c] = static_cast<float>(static_cast<int32_t>(x[c]) - zx);
  }
}

// The AVX2 path (see the header): integer weights as floats, the bias for the zero-centred input.
template <class QX, class QY>
inline void qdepthwise_via_float(const QDepthwise& g, const QX* x, QY* y, int num_threads) {
  thread_local Scratch ws, xs, as;  // (the padded path's plane scratch is depthwise.hpp's)
  const int64_t taps = static_cast<int64_t>(g.kh) * g.kw, in_plane = g.H * g.W, plane = g.Ho * g.Wo;
  const int64_t mult_ch = g.M / g.C, planes = g.N * g.M;
  const int32_t zx = static_cast<int32_t>(static_cast<QX>(g.pad));
  float* wf = ws.get(static_cast<size_t>(g.M * taps));
  std::vector<int32_t> bias(static_cast<size_t>(g.M));  // comp + zx * sum(w) per channel
  for (int64_t m = 0; m < g.M; m++) {
    int32_t wsum = 0;
    for (int64_t t = 0; t < taps; t++) {
      wf[m * taps + t] = static_cast<float>(g.w[m * taps + t]);
      wsum += g.w[m * taps + t];
    }
    bias[m] = g.comp[m] + zx * wsum;
  }
  const dw_detail::Geo geo{g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, ACT_NONE, 0.f, 0.f};
  const int T = threads_for(num_threads, static_cast<double>(planes * plane * taps) * 2, 65536.0);
  if (const dw_detail::PaddedFn fn = dw_detail::pick_padded(geo)) {
    const dw_detail::Padded pg = dw_detail::padded_geometry(geo, g.kh, g.sw);
#pragma omp parallel num_threads(T) if (T > 1)
    {
      const size_t size = static_cast<size_t>(pg.Hp * pg.Wp) + 8;
      float* P = dw_detail::padded_scratch().get(size);
      std::memset(P, 0, size * sizeof(float));  // the border: the zero point, zero-centred
      thread_local Scratch acc_scratch;
      float* acc = acc_scratch.get(static_cast<size_t>(plane));
      int64_t filled = -1;  // the input plane now in P
#pragma omp for schedule(static)
      for (int64_t p = 0; p < planes; p++) {
        const int64_t m = p % g.M, src = p / g.M * g.C + m / mult_ch;
        if (src != filled) copy_padded_centred(geo, pg, x + src * in_plane, zx, P);
        filled = src;
        fn(geo, pg, P, wf + m * taps, 0.f, nullptr, acc);
        qdw_detail::requant_plane_avx2(g, m, acc, bias[m], y + p * plane, plane);
      }
    }
    return;
  }
  const int64_t in = g.N * g.C * in_plane;
  float* xf = xs.get(static_cast<size_t>(in));
  float* acc = as.get(static_cast<size_t>(planes * plane));
  dequantize_linear(x, xf, in, 1.0f, zx, num_threads);
  depthwise_conv2d(xf, wf, nullptr, nullptr, acc, g.N, g.C, g.H, g.W, g.M, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt,
                   g.pl, g.dh, g.dw, ACT_NONE, 0.f, 0.f, num_threads);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < planes; p++)
    qdw_detail::requant_plane_avx2(g, p % g.M, acc + p * plane, bias[p % g.M], y + p * plane, plane);
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
