// Inferon direct grouped convolution (ONNX Conv with 1 < group < C_in and few channels per group, e.g.
// ResNeXt's 32 groups of 4-32 channels) on NCHW planes.
//
// Output channel m of group g = m / (M/G) reads the C/G input channels of its group through its
// kh x kw filters w[m][ci] (ONNX layout [M, C/G, kh, kw]). As GEMMs these are G products of M/G rows
// and K = C/G * kh * kw through an im2col buffer: a few FMAs per loaded float and the buffer's memory
// traffic. Here each group's input planes are first copied into a per-thread scratch, split into the
// sh x sw stride phases with zero borders (phase (a, b) row r, column c = input row r*sh + a - pt,
// column c*sw + b - pl), so that every tap of 8 consecutive outputs is one unaligned 8-float load.
// Register tile: 8 output columns x CO (8, 4, 2, 1) output channels; per tap one load and CO FMAs
// with the weight broadcast from memory. Bias, residual and the activation are applied before the
// store; the last block of a row is stored masked. Threads split the (image, group) pairs.
// Dilation 1 only (the compiler keeps other convolutions on im2col + GEMM).
//
// The residual must not overlap y.
#pragma once

#include <algorithm>
#include <vector>

#include "common.hpp"

namespace inferon {

namespace gc_detail {

struct Geo {
  int64_t C, H, W, M, G, Ho, Wo;
  int kh, kw, sh, sw, pt, pl;
  int64_t cin, cout;  // channels per group
  int64_t Hq, Wq;     // phase plane rows and row stride (Wo + (kw-1)/sw + 8 slack, rounded to 8)
  int act;
  float alpha, beta;
};

inline Geo make_geo(int64_t C, int64_t H, int64_t W, int64_t M, int64_t G, int64_t Ho, int64_t Wo, int kh, int kw,
                    int sh, int sw, int pt, int pl, int act, float alpha, float beta) {
  Geo g{C, H, W, M, G, Ho, Wo, kh, kw, sh, sw, pt, pl, C / G, M / G, 0, 0, act, alpha, beta};
  g.Hq = Ho + (kh - 1) / sh;
  g.Wq = (Wo + (kw - 1) / sw + 8 + 7) / 8 * 8;
  return g;
}

inline int64_t phase_plane(const Geo& g) { return g.Hq * g.Wq; }

// The group's input planes (x: its first channel) into the phase-split scratch P: per phase row, the
// columns that fall inside the image (c in [lo, hi)) copied, zeros around them.
inline void copy_phases(const Geo& g, const float* x, float* P) {
  const int64_t plane = phase_plane(g);
  for (int b = 0; b < g.sw; b++) {
    // input column c * sw + b - pl in [0, W)
    const int64_t lo = std::min<int64_t>(g.Wq, std::max<int64_t>(0, (g.pl - b + g.sw - 1) / g.sw));
    const int64_t hi = std::max<int64_t>(lo, std::min<int64_t>(g.Wq, (g.W + g.pl - b + g.sw - 1) / g.sw));
    const int64_t first = lo * g.sw + b - g.pl;
    for (int64_t ci = 0; ci < g.cin; ci++)
      for (int a = 0; a < g.sh; a++) {
        float* dst = P + ((ci * g.sh + a) * g.sw + b) * plane;
        const float* src = x + ci * g.H * g.W;
        for (int64_t r = 0; r < g.Hq; r++) {
          const int64_t row = r * g.sh + a - g.pt;
          float* d = dst + r * g.Wq;
          if (row < 0 || row >= g.H) {
            std::fill(d, d + g.Wq, 0.f);
            continue;
          }
          const float* s = src + row * g.W + first;
          std::fill(d, d + lo, 0.f);
          if (g.sw == 1) {
            std::copy(s, s + (hi - lo), d + lo);
          } else {  // only the AVX2 path copies phases
            const int64_t done = g.sw == 2 ? stride2_avx2(s, d + lo, hi - lo) : 0;
            for (int64_t c = lo + done; c < hi; c++) d[c] = s[(c - lo) * g.sw];
          }
          std::fill(d + hi, d + g.Wq, 0.f);
        }
      }
  }
}

// Offsets (in P) of tap q = ci * kh * kw + i * kw + j for output (0, 0).
inline void tap_offsets(const Geo& g, std::vector<int64_t>& off) {
  off.clear();
  const int64_t plane = phase_plane(g);
  for (int64_t ci = 0; ci < g.cin; ci++)
    for (int i = 0; i < g.kh; i++)
      for (int j = 0; j < g.kw; j++)
        off.push_back(((ci * g.sh + i % g.sh) * g.sw + j % g.sw) * plane + (i / g.sh) * g.Wq + j / g.sw);
}

// CO output channels of one block of n (1..8) outputs at (ho, wo0): weights wm [CO][Q].
template <int CO>
INFERON_AVX2_INLINE void block(const Geo& g, const float* Pb, const int64_t* off, int64_t Q, const float* wm,
                               const float* bias, const float* res, float* y, int64_t plane_out, int64_t n) {
  __m256 acc[CO];
#pragma GCC unroll 8
  for (int co = 0; co < CO; co++) acc[co] = _mm256_set1_ps(bias ? bias[co] : 0.f);
  for (int64_t q = 0; q < Q; q++) {
    const __m256 v = _mm256_loadu_ps(Pb + off[q]);
#pragma GCC unroll 8
    for (int co = 0; co < CO; co++) acc[co] = _mm256_fmadd_ps(_mm256_broadcast_ss(wm + co * Q + q), v, acc[co]);
  }
  const __m256i mask = mask_first(n);
  if (res) {
#pragma GCC unroll 8
    for (int co = 0; co < CO; co++)
      acc[co] = _mm256_add_ps(acc[co], n == 8 ? _mm256_loadu_ps(res + co * plane_out)
                                               : _mm256_maskload_ps(res + co * plane_out, mask));
  }
  act256_n<CO>(acc, g.act, _mm256_set1_ps(g.alpha), _mm256_set1_ps(g.beta));
#pragma GCC unroll 8
  for (int co = 0; co < CO; co++) {
    if (n == 8) _mm256_storeu_ps(y + co * plane_out, acc[co]);
    else _mm256_maskstore_ps(y + co * plane_out, mask, acc[co]);
  }
}

// Every output of one group: output channels m0 .. m0 + cout, y / res at channel m0 of the image.
INFERON_AVX2 inline void group_avx2(const Geo& g, const float* P, const int64_t* off, const float* w,
                                    const float* bias, const float* res, float* y) {
  const int64_t Q = g.cin * g.kh * g.kw, plane_out = g.Ho * g.Wo;
  for (int64_t ho = 0; ho < g.Ho; ho++)
    for (int64_t wo0 = 0; wo0 < g.Wo; wo0 += 8) {
      const int64_t n = std::min<int64_t>(8, g.Wo - wo0), idx = ho * g.Wo + wo0;
      const float* Pb = P + ho * g.Wq + wo0;
      const float* r = res ? res + idx : nullptr;
      int64_t co = 0;
      for (; co + 8 <= g.cout; co += 8)
        block<8>(g, Pb, off, Q, w + co * Q, bias ? bias + co : nullptr, r ? r + co * plane_out : nullptr,
                 y + idx + co * plane_out, plane_out, n);
      if (co + 4 <= g.cout) {
        block<4>(g, Pb, off, Q, w + co * Q, bias ? bias + co : nullptr, r ? r + co * plane_out : nullptr,
                 y + idx + co * plane_out, plane_out, n);
        co += 4;
      }
      if (co + 2 <= g.cout) {
        block<2>(g, Pb, off, Q, w + co * Q, bias ? bias + co : nullptr, r ? r + co * plane_out : nullptr,
                 y + idx + co * plane_out, plane_out, n);
        co += 2;
      }
      if (co < g.cout)
        block<1>(g, Pb, off, Q, w + co * Q, bias ? bias + co : nullptr, r ? r + co * plane_out : nullptr,
                 y + idx + co * plane_out, plane_out, n);
    }
}

// Scalar reference path: each output a sum over its group's channels and taps.
inline void group_scalar(const Geo& g, const float* x, const float* w, const float* bias, const float* res,
                         float* y) {
  const int64_t Q = g.cin * g.kh * g.kw, plane_out = g.Ho * g.Wo;
  for (int64_t co = 0; co < g.cout; co++)
    for (int64_t ho = 0; ho < g.Ho; ho++)
      for (int64_t wo = 0; wo < g.Wo; wo++) {
        float s = bias ? bias[co] : 0.f;
        for (int64_t ci = 0; ci < g.cin; ci++)
          for (int i = 0; i < g.kh; i++) {
            const int64_t row = ho * g.sh + i - g.pt;
            if (row < 0 || row >= g.H) continue;
            for (int j = 0; j < g.kw; j++) {
              const int64_t col = wo * g.sw + j - g.pl;
              if (col < 0 || col >= g.W) continue;
              s += w[co * Q + (ci * g.kh + i) * g.kw + j] * x[(ci * g.H + row) * g.W + col];
            }
          }
        const int64_t idx = co * plane_out + ho * g.Wo + wo;
        if (res) s += res[idx];
        y[idx] = apply_act(s, g.act, g.alpha, g.beta);
      }
}

inline Scratch& phase_scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace gc_detail

// y[n][m] = act(bias[m] + residual[n][m] + sum_{ci < C/G, i, j} w[m][ci][i][j] *
//               x[n][(m / (M/G)) * C/G + ci][ho*sh-pt+i][wo*sw-pl+j]) with x: [N, C, H, W],
// w: [M, C/G, kh, kw], y and residual: [N, M, Ho, Wo]; taps outside the input read 0; dilation 1.
INFERON_ENTRY void grouped_conv2d(const float* x, const float* w, const float* bias, const float* residual, float* y,
                                  int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t G, int64_t Ho,
                                  int64_t Wo, int kh, int kw, int sh, int sw, int pt, int pl, int act, float alpha,
                                  float beta, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(GROUPED_CONV)
INFERON_ENTRY void grouped_conv2d(const float* x, const float* w, const float* bias, const float* residual, float* y,
                                  int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t G, int64_t Ho,
                                  int64_t Wo, int kh, int kw, int sh, int sw, int pt, int pl, int act, float alpha,
                                  float beta, int num_threads) {
  if (N <= 0 || M <= 0 || G <= 0 || Ho <= 0 || Wo <= 0) return;
  const gc_detail::Geo g = gc_detail::make_geo(C, H, W, M, G, Ho, Wo, kh, kw, sh, sw, pt, pl, act, alpha, beta);
  const int64_t jobs = N * G, plane_out = Ho * Wo, Q = g.cin * kh * kw;
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(N) * M * plane_out * Q * 2, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<int64_t> off;
    float* P = nullptr;
    if (avx2) {
      gc_detail::tap_offsets(g, off);
      P = gc_detail::phase_scratch().get(static_cast<size_t>(g.cin * sh * sw * gc_detail::phase_plane(g)));
    }
#pragma omp for schedule(static)
    for (int64_t job = 0; job < jobs; job++) {
      const int64_t n = job / G, grp = job % G, m0 = grp * g.cout;
      const float* xg = x + (n * C + grp * g.cin) * H * W;
      const float* wg = w + m0 * Q;
      const float* bg = bias ? bias + m0 : nullptr;
      const float* rg = residual ? residual + (n * M + m0) * plane_out : nullptr;
      float* yg = y + (n * M + m0) * plane_out;
      if (avx2) {
        gc_detail::copy_phases(g, xg, P);
        gc_detail::group_avx2(g, P, off.data(), wg, bg, rg, yg);
      } else {
        gc_detail::group_scalar(g, xg, wg, bg, rg, yg);
      }
    }
  }
}
#endif

}  // namespace inferon
