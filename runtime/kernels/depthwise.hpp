// Inferon direct depthwise convolution (ONNX Conv with group == C_in) on NCHW planes.
//
// Output channel m reads input channel m / (M / C) (channel multiplier M / C >= 1) through its
// kh x kw filter w[m]. Outputs are computed in blocks of 8 columns held in one ymm accumulator:
// every tap (i, j) adds w[i][j] * x[ho*sh - pt + i*dh][wo*sw - pl + j*dw], then the epilogue
// (+ bias[m], + residual, activation) is applied before the single store. Threads split the
// N*M planes (the channel-blocked path: groups of 8 of them). Three paths:
//
// * AVX2 fast path (3x3 and 5x5 filters, equal strides 1 or 2, column dilation 1 -- the CNN
//   cases): each plane is first copied into a per-thread scratch with zero borders (written
//   once per call; the copies only write the image), so the kernel runs without any bounds
//   check or mask, weights in registers. Stride 1 with row stride/dilation 1: two output rows
//   per pass share their input loads; stride 2: two loads de-interleaved by one shuffle per tap
//   pair (lanes in a fixed permuted order, put back once per block). A row's last partial block
//   is stored whole when its extra lanes land on later rows of the plane (written afterwards),
//   else recomputed at Wo - 8; masked stores are avoided (slow on AMD).
// * AVX2 channel-blocked path (any other filter, stride or dilation, and 5x5 filters, narrow rows and
//   stride 2 on small planes, where it beats the padded planes; see cb_pays): 8 channels transposed
//   into a zero-bordered interleaved tile, one channel per lane (below).
// * Scalar path: per output row and tap, an axpy over the valid column range.
//
// The residual must not overlap y.
#pragma once

#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.hpp"

namespace inferon {

namespace dw_detail {

struct Geo {
  int64_t H, W, Ho, Wo;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  int act;
  float alpha, beta;
};

// Valid tap range [lo, hi) of a dilated window starting at `start` over [0, n).
inline void taps(int64_t start, int k, int d, int64_t n, int& lo, int& hi) {
  lo = start < 0 ? static_cast<int>((-start + d - 1) / d) : 0;
  const int64_t last_ok = n - 1 - start;
  hi = last_ok < 0 ? 0 : static_cast<int>(std::min<int64_t>(k, last_ok / d + 1));
  if (lo > k) lo = k;
  if (hi < lo) hi = lo;
}

// ---------------------------------------------------------------------------------- scalar path
// Output columns [lo, hi) for which tap j reads inside the row: 0 <= wo*sw + j*dw - pl < W.
inline void col_range(const Geo& g, int j, int64_t& lo, int64_t& hi) {
  const int64_t off = static_cast<int64_t>(j) * g.dw - g.pl;
  lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
  hi = g.W - off <= 0 ? 0 : (g.W - off + g.sw - 1) / g.sw;
  lo = std::min(lo, g.Wo);
  hi = std::max(lo, std::min(hi, g.Wo));
}

inline void plane_scalar(const Geo& g, const int64_t* jlo, const int64_t* jhi, const float* x, const float* w,
                         float b, const float* res, float* y) {
  for (int64_t ho = 0; ho < g.Ho; ho++) {
    float* INFERON_RESTRICT yr = y + ho * g.Wo;
    for (int64_t wo = 0; wo < g.Wo; wo++) yr[wo] = b;
    const int64_t hs = ho * g.sh - g.pt;
    int ilo, ihi;
    taps(hs, g.kh, g.dh, g.H, ilo, ihi);
    for (int i = ilo; i < ihi; i++) {
      const float* xr = x + (hs + static_cast<int64_t>(i) * g.dh) * g.W;
      for (int j = 0; j < g.kw; j++) {
        const float wv = w[i * g.kw + j];
        const int64_t off = static_cast<int64_t>(j) * g.dw - g.pl;
        if (g.sw == 1) {
          const float* INFERON_RESTRICT xs = xr + off;
          for (int64_t wo = jlo[j]; wo < jhi[j]; wo++) yr[wo] += wv * xs[wo];
        } else {
          for (int64_t wo = jlo[j]; wo < jhi[j]; wo++) yr[wo] += wv * xr[wo * g.sw + off];
        }
      }
    }
    const float* rr = res ? res + ho * g.Wo : nullptr;
    for (int64_t wo = 0; wo < g.Wo; wo++) {
      float v = yr[wo];
      if (rr) v += rr[wo];
      yr[wo] = apply_act(v, g.act, g.alpha, g.beta);
    }
  }
}

// ------------------------------------------------------------------------------------ AVX2 path
// Store the first n (< 8) lanes of v (a masked store is slow on some CPUs).
INFERON_AVX2_INLINE void store_first(float* y, __m256 v, int64_t n) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int64_t k = 0; k < n; k++) y[k] = t[k];
}

// ------------------------------------------------------------------ AVX2 fast path (padded plane)
// K x K filters (K = 3, 5), stride S (1, 2) in both directions, column dilation 1: the plane is
// first copied into a zero-bordered scratch P (row stride Wp, origin at input (-pt, -pl)) that
// covers every load of every block, so the kernel runs without any bounds check or mask; only
// the last block of a row stores through a mask when Wo is not a multiple of 8.
struct Padded {
  int64_t Hp, Wp;  // scratch rows and row stride
  int64_t rows, cols;  // input rows / columns copied (those that are ever read)
};

inline Padded padded_geometry(const Geo& g, int K, int S) {
  Padded p;
  const int64_t nb = (g.Wo + 7) / 8;
  p.Hp = (g.Ho - 1) * g.sh + static_cast<int64_t>(K - 1) * g.dh + 1;
  p.Wp = ((nb - 1) * 8 * S + K + 16 + 7) / 8 * 8;  // last block's loads, rounded up to 8
  p.rows = std::max<int64_t>(0, std::min<int64_t>(g.H, p.Hp - g.pt));
  p.cols = std::max<int64_t>(0, std::min<int64_t>(g.W, p.Wp - g.pl));
  return p;
}

// One block of 8 outputs from the padded rows r[0..K) at column offset `off` (lanes in order).
template <int K, int S>
INFERON_AVX2_INLINE __m256 padded_block(const float* const* r, int64_t off, const __m256* wv, __m256 acc) {
  // one accumulator per kernel row (short dependency chains), summed at the end
  __m256 a[K];
#pragma GCC unroll 5
  for (int i = 0; i < K; i++) a[i] = i == 0 ? acc : _mm256_setzero_ps();
#pragma GCC unroll 5
  for (int i = 0; i < K; i++) {
    const float* p = r[i] + off;
    if (S == 1) {
#pragma GCC unroll 5
      for (int j = 0; j < K; j++) a[i] = _mm256_fmadd_ps(wv[i * K + j], _mm256_loadu_ps(p + j), a[i]);
    } else {
#pragma GCC unroll 3
      for (int j = 0; j < K; j += 2) {  // taps j (even lanes) and j + 1 (odd lanes) share two loads
        const __m256 lo = _mm256_loadu_ps(p + j), hi = _mm256_loadu_ps(p + j + 8);
        a[i] = _mm256_fmadd_ps(wv[i * K + j], _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), a[i]);
        if (j + 1 < K)
          a[i] = _mm256_fmadd_ps(wv[i * K + j + 1], _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)), a[i]);
      }
    }
  }
#pragma GCC unroll 5
  for (int i = 1; i < K; i++) a[0] = _mm256_add_ps(a[0], a[i]);
  acc = a[0];
  // stride 2: lanes came out as outputs 0 1 4 5 2 3 6 7
  if (S == 2) acc = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(acc), _MM_SHUFFLE(3, 1, 2, 0)));
  return acc;
}

// Copy the rows of the input plane x that are read into the zero-bordered scratch P. Short rows:
// inline copies, not memcpy calls; the tail's masked-off lanes store zeros, into padding or into a
// later row (copied after this one); P has 8 floats of slack past Hp * Wp for the last row.
INFERON_AVX2 inline void copy_padded(const Geo& g, const Padded& pg, const float* x, float* P) {
  // (locals: the vector stores may alias anything, so fields would be reloaded after each one)
  const int64_t cols = pg.cols, cfull = cols / 8 * 8, rows = pg.rows, W = g.W, Wp = pg.Wp;
  const __m256i cmask = mask_first(cols - cfull);
  float* dst = P + g.pt * Wp + g.pl;
  for (int64_t h = 0; h < rows; h++, x += W, dst += Wp) {
    for (int64_t c = 0; c < cfull; c += 8) _mm256_storeu_ps(dst + c, _mm256_loadu_ps(x + c));
    if (cfull < cols) _mm256_storeu_ps(dst + cfull, _mm256_maskload_ps(x + cfull, cmask));
  }
}

// Two output rows (stride 1, row dilation 1) from the K + 1 padded rows starting at r0: each loaded
// vector feeds both rows.
template <int K>
INFERON_AVX2_INLINE void padded_block2(const float* r0, int64_t Wp, int64_t off, const __m256* wv, __m256 vb,
                                       __m256& out0, __m256& out1) {
  __m256 a0 = vb, a1 = _mm256_setzero_ps(), b0 = vb, b1 = _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i <= K; i++) {
    const float* p = r0 + i * Wp + off;
#pragma GCC unroll 5
    for (int j = 0; j < K; j++) {
      const __m256 v = _mm256_loadu_ps(p + j);
      if (i < K) {
        if (j & 1) a1 = _mm256_fmadd_ps(wv[i * K + j], v, a1);
        else a0 = _mm256_fmadd_ps(wv[i * K + j], v, a0);
      }
      if (i > 0) {
        if (j & 1) b1 = _mm256_fmadd_ps(wv[(i - 1) * K + j], v, b1);
        else b0 = _mm256_fmadd_ps(wv[(i - 1) * K + j], v, b0);
      }
    }
  }
  out0 = _mm256_add_ps(a0, a1);
  out1 = _mm256_add_ps(b0, b1);
}

// Epilogue and store of the n (1..8) outputs at flat plane index idx (n == 8: one full store).
INFERON_AVX2_INLINE void put_block(float* y, const float* res, int64_t idx, int64_t n, __m256 acc, int act,
                                   __m256 va, __m256 vbeta) {
  if (n == 8) {
    if (res) acc = _mm256_add_ps(acc, _mm256_loadu_ps(res + idx));
    _mm256_storeu_ps(y + idx, act256(acc, act, va, vbeta));
  } else {
    if (res) acc = _mm256_add_ps(acc, _mm256_maskload_ps(res + idx, mask_first(n)));
    store_first(y + idx, act256(acc, act, va, vbeta), n);
  }
}

// R2: stride 1 with sh == dh == 1, output rows in pairs (padded_block2).
template <int K, int S, bool R2>
INFERON_AVX2 void plane_padded(const Geo& g, const Padded& pg, const float* P, const float* w, float b,
                               const float* res, float* y) {
  const int64_t Wp = pg.Wp, Wo = g.Wo, Ho = g.Ho, sh = g.sh, row_step = static_cast<int64_t>(g.dh) * Wp;
  const int act = g.act;
  __m256 wv[K * K];
#pragma GCC unroll 25
  for (int t = 0; t < K * K; t++) wv[t] = _mm256_broadcast_ss(w + t);
  const __m256 vb = _mm256_set1_ps(b), va = _mm256_set1_ps(g.alpha), vbeta = _mm256_set1_ps(g.beta);
  const int64_t nfull = Wo / 8, tail = Wo - nfull * 8;
  // The block holding a row's last `tail` columns: rows up to `spill` store all 8 lanes at column
  // nfull * 8 (the lanes past the row land on later rows, written afterwards); the others store
  // the last 8 columns again (overlapping the previous block) or, when Wo < 8, `tail` lanes.
  const int64_t spill = tail ? (Ho * Wo - 8 + tail) / Wo - 1 : Ho;
  const int64_t late_col = nfull > 0 ? Wo - 8 : 0, late_n = nfull > 0 ? 8 : tail;
  int64_t ho = 0;
  if (R2) {
    for (; ho + 2 <= Ho; ho += 2) {
      const float* r0 = P + ho * Wp;
      float* y0 = y + ho * Wo;
      const float* res0 = res ? res + ho * Wo : nullptr;
      const float* res1 = res ? res0 + Wo : nullptr;
      // tails first: row ho's may spill onto row ho + 1, whose blocks then overwrite it
      if (tail) {
        const int64_t c0 = ho <= spill ? nfull * 8 : late_col, n0 = ho <= spill ? 8 : late_n;
        const int64_t c1 = ho + 1 <= spill ? nfull * 8 : late_col, n1 = ho + 1 <= spill ? 8 : late_n;
        if (c0 == c1) {
          __m256 a, c;
          padded_block2<K>(r0, Wp, c0, wv, vb, a, c);
          put_block(y0, res0, c0, n0, a, act, va, vbeta);
          put_block(y0 + Wo, res1, c1, n1, c, act, va, vbeta);
        } else {
          const float* r[K];
#pragma GCC unroll 5
          for (int i = 0; i < K; i++) r[i] = r0 + i * Wp;
          put_block(y0, res0, c0, n0, padded_block<K, S>(r, c0, wv, vb), act, va, vbeta);
#pragma GCC unroll 5
          for (int i = 0; i < K; i++) r[i] += Wp;
          put_block(y0 + Wo, res1, c1, n1, padded_block<K, S>(r, c1, wv, vb), act, va, vbeta);
        }
      }
      for (int64_t blk = 0; blk < nfull; blk++) {
        __m256 a, c;
        padded_block2<K>(r0, Wp, blk * 8, wv, vb, a, c);
        put_block(y0, res0, blk * 8, 8, a, act, va, vbeta);
        put_block(y0 + Wo, res1, blk * 8, 8, c, act, va, vbeta);
      }
    }
  }
  for (; ho < Ho; ho++) {
    const float* r[K];
#pragma GCC unroll 5
    for (int i = 0; i < K; i++) r[i] = P + ho * sh * Wp + i * row_step;
    float* yr = y + ho * Wo;
    const float* rr = res ? res + ho * Wo : nullptr;
    for (int64_t blk = 0; blk < nfull; blk++)
      put_block(yr, rr, blk * 8, 8, padded_block<K, S>(r, blk * 8 * S, wv, vb), act, va, vbeta);
    if (!tail) continue;
    const int64_t col = ho <= spill ? nfull * 8 : late_col, n = ho <= spill ? 8 : late_n;
    put_block(yr, rr, col, n, padded_block<K, S>(r, col * S, wv, vb), act, va, vbeta);
  }
}

using PaddedFn = void (*)(const Geo&, const Padded&, const float*, const float*, float, const float*, float*);

// The padded kernel for this geometry, or nullptr (then the masked kernel below runs).
inline PaddedFn pick_padded(const Geo& g) {
  if (g.kh != g.kw || g.sh != g.sw || g.dw != 1) return nullptr;
  const bool r2 = g.sh == 1 && g.dh == 1;
  if (g.kh == 3) return g.sw == 1 ? (r2 ? plane_padded<3, 1, true> : plane_padded<3, 1, false>)
                        : g.sw == 2 ? plane_padded<3, 2, false> : nullptr;
  if (g.kh == 5) return g.sw == 1 ? (r2 ? plane_padded<5, 1, true> : plane_padded<5, 1, false>)
                        : g.sw == 2 ? plane_padded<5, 2, false> : nullptr;
  return nullptr;
}

inline Scratch& padded_scratch() {
  thread_local Scratch s;
  return s;
}

// ------------------------------------------------------------ AVX2 channel-blocked path
// Eight output channels at a time, one per ymm lane. Their input planes are transposed (8 x 8
// blocks) into a zero-bordered, channel-interleaved tile T[Hp][Wp][8] (per-thread scratch), so
// that every tap of every output pixel is one 8-channel vector whatever the stride, dilation or
// plane width: no shuffles, masks or partial vectors along a row, and small planes (7x7, 14x14)
// waste no lanes. A register tile is 8 consecutive output pixels of a row (8 accumulators: 8 FMA
// chains in flight), each tap one vector of the 8 channels' weights against 8 pixel vectors; the
// tile is transposed back (8 pixels per channel) and stored into the NCHW planes after residual
// and activation (the bias is where the accumulators start).
constexpr int kCBPixels = 8;

struct CBTile {
  int64_t Hp, Wp;  // rows and columns (pixels of 8 floats) of the interleaved tile
};

inline CBTile cb_tile(const Geo& g) {
  const int64_t wo8 = (g.Wo + kCBPixels - 1) / kCBPixels * kCBPixels;  // register tiles cover whole rows
  return {(g.Ho - 1) * g.sh + static_cast<int64_t>(g.kh - 1) * g.dh + 1,
          (wo8 - 1) * g.sw + static_cast<int64_t>(g.kw - 1) * g.dw + 1};
}

// The tile's rows: zero borders (and whole zero rows outside the image); fill(d, h, cols) writes the
// `cols` pixels of input row h that the tile holds, starting at d.
template <class Fill>
INFERON_AVX2_INLINE void cb_rows(const Geo& g, const CBTile& t, float* T, Fill fill) {
  const int64_t Wp = t.Wp, pl = std::min<int64_t>(g.pl, t.Wp);
  const int64_t cols = std::max<int64_t>(0, std::min<int64_t>(g.W, Wp - pl));  // input columns in the tile
  for (int64_t r = 0; r < t.Hp; r++) {
    float* row = T + r * Wp * 8;
    const int64_t h = r - g.pt;
    if (h < 0 || h >= g.H || cols == 0) {
      std::memset(row, 0, static_cast<size_t>(Wp) * 8 * sizeof(float));
      continue;
    }
    std::memset(row, 0, static_cast<size_t>(pl) * 8 * sizeof(float));
    std::memset(row + (pl + cols) * 8, 0, static_cast<size_t>(Wp - pl - cols) * 8 * sizeof(float));
    fill(row + pl * 8, h, cols);
  }
}

// T[r][c][k] = plane k's input at row r - pt, column c - pl; zero outside the image and for k >= n.
INFERON_AVX2 inline void cb_pack(const Geo& g, const CBTile& t, const float* const* src, int n, float* T) {
  cb_rows(g, t, T, [&](float* d, int64_t h, int64_t cols) __attribute__((target("avx2,fma"))) {
    for (int64_t w0 = 0; w0 < cols; w0 += 8) {
      const int64_t m = std::min<int64_t>(8, cols - w0);
      const __m256i mask = mask_first(m);
      __m256 v[8][1];
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const float* p = src[k] + h * g.W + w0;
        v[k][0] = k >= n ? _mm256_setzero_ps() : m == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
      }
      transpose8(v);
      for (int64_t j = 0; j < m; j++) _mm256_storeu_ps(d + (w0 + j) * 8, v[j][0]);
    }
  });
}

// The same tile from an NCHWc8 block x[H][W][8] (8 channels already interleaved): row copies.
INFERON_AVX2 inline void cb_pack_c8(const Geo& g, const CBTile& t, const float* x, float* T) {
  cb_rows(g, t, T, [&](float* d, int64_t h, int64_t cols) {
    std::memcpy(d, x + h * g.W * 8, static_cast<size_t>(cols) * 8 * sizeof(float));
  });
}

// The n (1..8) output planes dst[k] of one channel group from its tile T; wt: [kh * kw][8] weights,
// vb: the 8 biases. KH, KW, SW: compile-time sizes, or 0 (runtime). c8: the output (and residual) is
// NCHWc8, dst[0] / res[0] its block of these 8 channels [Ho][Wo][8]: the pixel vectors are stored as
// they are, no transpose.
template <int KH, int KW, int SW>
INFERON_AVX2 void cb_planes(const Geo& g, const CBTile& t, const float* T, const float* wt, __m256 vb, int n,
                            float* const* dst, const float* const* res, bool c8) {
  const int kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  const int64_t sw = SW ? SW : g.sw, Wp = t.Wp, Wo = g.Wo, plane = g.Ho * g.Wo, dh = g.dh, dw = g.dw;
  const __m256 va = _mm256_set1_ps(g.alpha), vbeta = _mm256_set1_ps(g.beta);
  for (int64_t ho = 0; ho < g.Ho; ho++) {
    const float* trow = T + ho * g.sh * Wp * 8;
    for (int64_t wo0 = 0; wo0 < Wo; wo0 += kCBPixels) {
      __m256 acc[8][1];
#pragma GCC unroll 8
      for (int p = 0; p < 8; p++) acc[p][0] = vb;
#pragma GCC unroll 5
      for (int i = 0; i < kh; i++) {
        const float* r = trow + (i * dh * Wp + wo0 * sw) * 8;
#pragma GCC unroll 5
        for (int j = 0; j < kw; j++) {
          const __m256 wv = _mm256_loadu_ps(wt + (i * kw + j) * 8);
          const float* q = r + j * dw * 8;
#pragma GCC unroll 8
          for (int p = 0; p < 8; p++) acc[p][0] = _mm256_fmadd_ps(_mm256_loadu_ps(q + p * sw * 8), wv, acc[p][0]);
        }
      }
      const int64_t off = ho * Wo + wo0;
      // 8 lanes whenever they stay inside the plane: lanes past the row land on later rows, which
      // are written afterwards (only the plane's last partial block stores lane by lane)
      const bool whole = off + 8 <= plane;
      const int64_t m = whole ? 8 : plane - off;
      if (c8) {
        if (res)
          for (int p = 0; p < m; p++) acc[p][0] = _mm256_add_ps(acc[p][0], _mm256_loadu_ps(res[0] + (off + p) * 8));
        if (whole) act256_n<8>(&acc[0][0], g.act, va, vbeta);
        else
          for (int p = 0; p < m; p++) act256_n<1>(&acc[p][0], g.act, va, vbeta);
        for (int p = 0; p < m; p++) _mm256_storeu_ps(dst[0] + (off + p) * 8, acc[p][0]);
        continue;
      }
      transpose8(acc);  // acc[k]: channel k's 8 pixels
      if (res) {
        const __m256i mask = mask_first(m);
        for (int k = 0; k < n; k++)
          acc[k][0] = _mm256_add_ps(acc[k][0], whole ? _mm256_loadu_ps(res[k] + off) : _mm256_maskload_ps(res[k] + off, mask));
      }
      act256_n<8>(&acc[0][0], g.act, va, vbeta);
      for (int k = 0; k < n; k++) {
        if (whole) _mm256_storeu_ps(dst[k] + off, acc[k][0]);
        else store_first(dst[k] + off, acc[k][0], m);
      }
    }
  }
}

using CBFn = void (*)(const Geo&, const CBTile&, const float*, const float*, __m256, int, float* const*,
                      const float* const*, bool);

inline CBFn pick_cb(const Geo& g) {
  if (g.kh == 3 && g.kw == 3 && g.sw == 1) return cb_planes<3, 3, 1>;
  if (g.kh == 3 && g.kw == 3 && g.sw == 2) return cb_planes<3, 3, 2>;
  if (g.kh == 5 && g.kw == 5 && g.sw == 1) return cb_planes<5, 5, 1>;
  if (g.kh == 5 && g.kw == 5 && g.sw == 2) return cb_planes<5, 5, 2>;
  return cb_planes<0, 0, 0>;
}

// Whether the channel-blocked path beats the padded plane kernel on a geometry that has one (the
// others always run blocked: against the masked plane kernel they replaced, dilated 3x3 56x56 0.170
// -> 0.128 ms, 7x7 28x28 0.510 -> 0.223, stride 3 0.166 -> 0.104). Its two 8 x 8 transposes per 8
// pixels (tile in, planes out) are amortised by 5x5 filters; with 3x3 ones it wins only where the
// plane kernel wastes lanes: rows of at most 8 outputs, stride 2 on rows of at most 28 (its
// shuffles). Measured per layer on MobileNetV3 / EfficientNet-B0 (Zen 4, 1 thread, plane -> blocked
// ms): 5x5 7x7 0.118 -> 0.081, 0.131 -> 0.117; 5x5 14x14 0.251 -> 0.228; 5x5 / 2 28x28 0.337 ->
// 0.246; 3x3 / 2 28x28 0.125 -> 0.096; 3x3 7x7 0.091 -> 0.085; but 3x3 14x14 0.051 -> 0.068, 3x3
// 112x112 0.108 -> 0.133. INFERON_DEPTHWISE=planes|blocked forces the choice (tests, measurements).
inline bool cb_pays(const Geo& g) {
  const char* env = std::getenv("INFERON_DEPTHWISE");
  if (env && std::strcmp(env, "blocked") == 0) return true;
  if (env && std::strcmp(env, "planes") == 0) return false;
  return g.kh * g.kw >= 25 || g.Wo <= 8 || (g.sw == 2 && g.Wo <= 28);
}

// All N x M output planes, channel group by channel group (groups split over T threads). in_c8 /
// out_c8: x / y and the residual are NCHWc8 (M == C, a multiple of 8): tile rows copied as they are /
// pixel vectors stored as they are.
INFERON_AVX2 inline void cb_run(const Geo& g, const float* x, const float* w, const float* bias, const float* residual,
                                float* y, int64_t N, int64_t C, int64_t M, int T, bool in_c8, bool out_c8) {
  const CBTile t = cb_tile(g);
  const CBFn fn = pick_cb(g);
  const int64_t mult = M / C, groups_m = (M + 7) / 8, in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const int ktaps = g.kh * g.kw;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t gi = 0; gi < N * groups_m; gi++) {
    thread_local Scratch tile_s, weight_s;
    float* T_ = tile_s.get(static_cast<size_t>(t.Hp * t.Wp * 8));
    float* wt = weight_s.get(static_cast<size_t>(ktaps) * 8);
    const int64_t nb = gi / groups_m, m0 = gi % groups_m * 8;
    const int n = static_cast<int>(std::min<int64_t>(8, M - m0));
    const float* src[8];
    float* dst[8];
    const float* res[8];
    alignas(32) float b[8] = {};
    for (int k = 0; k < 8; k++) {
      const int64_t m = m0 + std::min(k, n - 1);
      src[k] = x + (nb * C + m / mult) * in_plane;
      dst[k] = y + (nb * M + m) * out_plane;
      res[k] = residual ? residual + (nb * M + m) * out_plane : nullptr;
      if (k < n && bias) b[k] = bias[m];
      for (int tp = 0; tp < ktaps; tp++) wt[tp * 8 + k] = k < n ? w[m * ktaps + tp] : 0.f;
    }
    if (in_c8) cb_pack_c8(g, t, x + (nb * C + m0) * in_plane, T_);
    else cb_pack(g, t, src, n, T_);
    if (out_c8) {
      dst[0] = y + (nb * M + m0) * out_plane;
      res[0] = residual ? residual + (nb * M + m0) * out_plane : nullptr;
    }
    fn(g, t, T_, wt, _mm256_load_ps(b), n, dst, residual ? res : nullptr, out_c8);
  }
}

}  // namespace dw_detail

// y[n][m] = act(bias[m] + residual[n][m] + sum_{i,j} w[m][i][j] * x[n][m / (M/C)][ho*sh-pt+i*dh][wo*sw-pl+j*dw])
// with x: [N, C, H, W], w: [M, 1, kh, kw] (M a multiple of C), y and residual: [N, M, Ho, Wo];
// taps outside the input read 0 (bottom/right padding follows from Ho, Wo). bias/residual may be null.
// layout: bit 0 x is NCHWc8, bit 1 y and the residual are (pass assign-layout; then M == C, a
// multiple of 8); the channel-blocked path reads / writes them directly.
INFERON_ENTRY void depthwise_conv2d(const float* x, const float* w, const float* bias, const float* residual, float* y,
                             int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t Ho, int64_t Wo, int kh,
                             int kw, int sh, int sw, int pt, int pl, int dh, int dw, int act, float alpha, float beta,
                             int num_threads = 1, int layout = 0);

#if INFERON_DEFINE_KERNELS(DEPTHWISE)
INFERON_ENTRY void depthwise_conv2d(const float* x, const float* w, const float* bias, const float* residual, float* y,
                             int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t Ho, int64_t Wo, int kh,
                             int kw, int sh, int sw, int pt, int pl, int dh, int dw, int act, float alpha, float beta,
                             int num_threads, int layout) {
  if (N <= 0 || M <= 0 || Ho <= 0 || Wo <= 0) return;
  const bool in_c8 = layout & 1, out_c8 = layout & 2;
  if (layout && !use_avx2()) {  // scalar: through NCHW copies
    std::vector<float> xs, ys, rs;
    if (in_c8) {
      xs.resize(static_cast<size_t>(N * C * H * W));
      nchwc8_to_nchw(x, xs.data(), N, C, H * W);
    }
    if (out_c8) {
      ys.resize(static_cast<size_t>(N * M * Ho * Wo));
      if (residual) {
        rs.resize(ys.size());
        nchwc8_to_nchw(residual, rs.data(), N, M, Ho * Wo);
      }
    }
    depthwise_conv2d(in_c8 ? xs.data() : x, w, bias, out_c8 && residual ? rs.data() : residual, out_c8 ? ys.data() : y,
                     N, C, H, W, M, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw, act, alpha, beta, num_threads, 0);
    if (out_c8) nchw_to_nchwc8(ys.data(), y, N, M, Ho * Wo);
    return;
  }
  const dw_detail::Geo g{H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw, act, alpha, beta};
  const int64_t mult = M / C, planes = N * M;
  const int64_t in_plane = H * W, out_plane = Ho * Wo, ktaps = static_cast<int64_t>(kh) * kw;
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(planes) * out_plane * ktaps * 2, 65536.0);
  if (avx2) {
    const dw_detail::PaddedFn fn = dw_detail::pick_padded(g);
    if (!fn || layout || dw_detail::cb_pays(g)) {
      dw_detail::cb_run(g, x, w, bias, residual, y, N, C, M, T, in_c8, out_c8);
      return;
    }
    {
      const dw_detail::Padded pg = dw_detail::padded_geometry(g, kh, sw);
#pragma omp parallel num_threads(T) if (T > 1)
      {
        const size_t size = static_cast<size_t>(pg.Hp * pg.Wp) + 8;  // + the copy's tail overrun
        float* P = dw_detail::padded_scratch().get(size);
        std::memset(P, 0, size * sizeof(float));  // the borders stay zero: copies write the image only
#pragma omp for schedule(static)
        for (int64_t p = 0; p < planes; p++) {
          const int64_t m = p % M;
          dw_detail::copy_padded(g, pg, x + (p / M * C + m / mult) * in_plane, P);
          fn(g, pg, P, w + m * ktaps, bias ? bias[m] : 0.f, residual ? residual + p * out_plane : nullptr,
             y + p * out_plane);
        }
      }
      return;
    }
  }
  std::vector<int64_t> jlo(static_cast<size_t>(kw)), jhi(static_cast<size_t>(kw));
  for (int j = 0; j < kw; j++) dw_detail::col_range(g, j, jlo[j], jhi[j]);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < planes; p++) {
    const int64_t n = p / M, m = p % M;
    dw_detail::plane_scalar(g, jlo.data(), jhi.data(), x + (n * C + m / mult) * in_plane, w + m * ktaps,
                            bias ? bias[m] : 0.f, residual ? residual + p * out_plane : nullptr, y + p * out_plane);
  }
}
#endif

}  // namespace inferon
