// Inferon convolution helpers: im2col (the GEMM does the rest) and col2im, the scatter half of a
// transposed convolution (the GEMM forms its columns first).
#pragma once

#include "im2col.hpp"

namespace inferon {

// The whole im2col matrix of one image: col[r][:] for every row r = (c*kh+i)*kw+j.
INFERON_ENTRY void im2col(const float* x, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw,
                   int pt, int pl, int dh, int dw, int64_t Ho, int64_t Wo, float* col,
                   int num_threads = 1);

#if INFERON_DEFINE_KERNELS(CONV)
INFERON_ENTRY void im2col(const float* x, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw,
                   int pt, int pl, int dh, int dw, int64_t Ho, int64_t Wo, float* col,
                   int num_threads) {
  const Im2col q{C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo};
  const int64_t taps = static_cast<int64_t>(kh) * kw, HoWo = Ho * Wo;
  std::vector<std::vector<Im2colSeg>> plan(static_cast<size_t>(taps));
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) im2col_segments(q, i, j, 0, HoWo, plan[static_cast<size_t>(i * kw + j)]);
  const int T = threads_for(num_threads, static_cast<double>(C * taps) * HoWo, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < C * taps; r++)
    im2col_apply(q, plan[static_cast<size_t>(r % taps)], x + (r / taps) * H * W, col + r * HoWo);
}
#endif

// ---------------------------------------------------------------------------------------------
// col2im (loop.col2im): y[n][c][oh][ow] = act(bias[c] + residual + sum of col[n][(c*kh+i)*kw+j][ih*W+iw]
// over the taps and input pixels with oh = ih*sh - pt + i*dh, ow = iw*sw - pl + j*dw).
//
// One output row at a time: the row is accumulated in `sw` phase rows (output column ow = q*sw + p
// lives at acc[p][q]), where every (tap, input row) adds one contiguous run of its column row --
// vectorized for any stride, no work on the zeros a zero-inserted input would hold. The store pass
// interleaves the phases (AVX2 for sw = 1 and 2, scalar otherwise) with bias, residual, activation.
// ---------------------------------------------------------------------------------------------

struct Col2im {
  int64_t H, W;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  int64_t Ho, Wo;
  int64_t phase_len() const { return (Wo + sw - 1) / sw; }
};

struct Col2imEpilogue {
  float bias;
  const float* residual;  // the output row's residual, or null
  int act;
  float alpha, beta;
};

inline void col2im_add(float* INFERON_RESTRICT acc, const float* INFERON_RESTRICT src, int64_t n) {
  for (int64_t t = 0; t < n; t++) acc[t] += src[t];
}

INFERON_AVX2 inline void col2im_add_avx2(float* INFERON_RESTRICT acc, const float* INFERON_RESTRICT src, int64_t n) {
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) _mm256_storeu_ps(acc + t, _mm256_add_ps(_mm256_loadu_ps(acc + t), _mm256_loadu_ps(src + t)));
  for (; t < n; t++) acc[t] += src[t];
}

// Output columns [from, Wo) of a row (scalar; the whole row on the scalar path).
inline void col2im_store(const Col2im& q, const float* acc, const Col2imEpilogue& e, float* y, int64_t from) {
  const int64_t wp = q.phase_len();
  for (int64_t ow = from; ow < q.Wo; ow++) {
    const float v = acc[(ow % q.sw) * wp + ow / q.sw] + e.bias + (e.residual ? e.residual[ow] : 0.f);
    y[ow] = apply_act(v, e.act, e.alpha, e.beta);
  }
}

INFERON_AVX2_INLINE void col2im_finish8(__m256 v, const Col2imEpilogue& e, __m256 alpha, __m256 beta, float* y,
                                        int64_t ow) {
  v = _mm256_add_ps(v, _mm256_set1_ps(e.bias));
  if (e.residual) v = _mm256_add_ps(v, _mm256_loadu_ps(e.residual + ow));
  _mm256_storeu_ps(y + ow, act256(v, e.act, alpha, beta));
}

INFERON_AVX2 inline void col2im_store_avx2(const Col2im& q, const float* acc, const Col2imEpilogue& e, float* y) {
  const __m256 alpha = _mm256_set1_ps(e.alpha), beta = _mm256_set1_ps(e.beta);
  int64_t ow = 0;
  if (q.sw == 1) {
    for (; ow + 8 <= q.Wo; ow += 8) col2im_finish8(_mm256_loadu_ps(acc + ow), e, alpha, beta, y, ow);
  } else if (q.sw == 2) {  // interleave the even and odd phases, 16 columns at a time
    const float* odd = acc + q.phase_len();
    for (; ow + 16 <= q.Wo; ow += 16) {
      const __m256 ev = _mm256_loadu_ps(acc + ow / 2), od = _mm256_loadu_ps(odd + ow / 2);
      const __m256 lo = _mm256_unpacklo_ps(ev, od), hi = _mm256_unpackhi_ps(ev, od);
      col2im_finish8(_mm256_permute2f128_ps(lo, hi, 0x20), e, alpha, beta, y, ow);
      col2im_finish8(_mm256_permute2f128_ps(lo, hi, 0x31), e, alpha, beta, y, ow + 8);
    }
  }
  col2im_store(q, acc, e, y, ow);
}

// One output plane from its kh*kw column rows col[(i*kw+j)*H*W ...]; acc holds sw * phase_len floats.
template <bool kAvx2>
void col2im_plane(const Col2im& q, const float* col, Col2imEpilogue e, float* y, float* acc) {
  const int64_t wp = q.phase_len(), hw = q.H * q.W;
  for (int64_t oh = 0; oh < q.Ho; oh++) {
    std::memset(acc, 0, static_cast<size_t>(q.sw * wp) * sizeof(float));
    for (int i = 0; i < q.kh; i++) {
      const int64_t t = oh + q.pt - static_cast<int64_t>(i) * q.dh;  // = ih * sh
      if (t < 0 || t % q.sh != 0 || t / q.sh >= q.H) continue;
      const int64_t ih = t / q.sh;
      for (int j = 0; j < q.kw; j++) {
        const int64_t off = static_cast<int64_t>(j) * q.dw - q.pl;  // ow = iw*sw + off = (iw + base)*sw + p
        const int64_t p = ((off % q.sw) + q.sw) % q.sw, base = (off - p) / q.sw;
        const int64_t count = (q.Wo - p + q.sw - 1) / q.sw;  // output columns of phase p
        const int64_t lo = std::max<int64_t>(0, -base), hi = std::min<int64_t>(q.W, count - base);
        if (hi <= lo) continue;
        const float* src = col + (static_cast<int64_t>(i) * q.kw + j) * hw + ih * q.W + lo;
        if constexpr (kAvx2) col2im_add_avx2(acc + p * wp + base + lo, src, hi - lo);
        else col2im_add(acc + p * wp + base + lo, src, hi - lo);
      }
    }
    if constexpr (kAvx2) col2im_store_avx2(q, acc, e, y + oh * q.Wo);
    else col2im_store(q, acc, e, y + oh * q.Wo, 0);
    if (e.residual) e.residual += q.Wo;
  }
}

// col: [N, C*kh*kw, H*W] (the GEMM's output), y and residual: [N, C, Ho, Wo], bias: [C] (null: none).
INFERON_ENTRY void col2im(const float* col, const float* bias, const float* residual, float* y, int64_t N, int64_t C,
                   int64_t H, int64_t W, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int64_t Ho,
                   int64_t Wo, int act, float alpha, float beta, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(CONV)
INFERON_ENTRY void col2im(const float* col, const float* bias, const float* residual, float* y, int64_t N, int64_t C,
                   int64_t H, int64_t W, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int64_t Ho,
                   int64_t Wo, int act, float alpha, float beta, int num_threads) {
  const Col2im q{H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo};
  const int64_t planes = N * C, in_plane = static_cast<int64_t>(kh) * kw * H * W, out_plane = Ho * Wo;
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(planes) * (in_plane + out_plane));
#pragma omp parallel num_threads(T) if (T > 1)
  {
    thread_local Scratch scratch;
    float* acc = scratch.get(static_cast<size_t>(sw * q.phase_len()));
#pragma omp for schedule(static)
    for (int64_t pi = 0; pi < planes; pi++) {
      const Col2imEpilogue e{bias ? bias[pi % C] : 0.f, residual ? residual + pi * out_plane : nullptr, act, alpha,
                             beta};
      if (avx2) col2im_plane<true>(q, col + pi * in_plane, e, y + pi * out_plane, acc);
      else col2im_plane<false>(q, col + pi * in_plane, e, y + pi * out_plane, acc);
    }
  }
}
#endif

}  // namespace inferon
