// Inferon kernels: quantized GEMM, C = requantize(A (s8 weights) x B (8-bit activations)).
//
// C[m, n] = clamp(round_half_even(float(acc[m, n] + comp[m]) * mult[m]) + zy, lo, hi) with
// acc = sum_k A[m, k] * B[k, n] on the stored (uint8) activations; comp[m] = bias[m] - zx * sum_k
// A[m, k] is precomputed at compile time, so zero points cost nothing here, and padding reads zx.
// int8 activations are flipped to uint8 (x ^ 0x80, zx + 128) while B is packed.
//
// Layouts. A is packed at compile time (pack-weights): panels of QMR = 6 rows, per panel
// [K4][6][4] int8 (K4 = ceil(K / 4), rows past M and k past K zero). B is packed per call into
// panels of NR columns, [K4][NR][4] uint8: the 4 consecutive k of one column form one 32-bit lane,
// which is what vpdpbusd (VNNI) multiplies against a broadcast 4-byte group of A.
//
// Kernels: AVX512-VNNI (ymm, 32 registers: 6 x 32 tile, 24 accumulators, one vpdpbusd per 32
// multiply-adds), AVX2 (6 x 8 tile: B widened to int16 and vpmaddwd, exact: vpmaddubsw would
// saturate int16 pair sums of 255 * 127 * 2), scalar. The requantization is ONNX Runtime's (float
// multiplier, cvtps rounding half to even), so results are bit-exact with it and with the numpy
// reference (inferon.ir.quant). A fused residual (QResidual: QLinearAdd after the GEMM) adds the
// requantized value to the residual at C's position with qadd's float steps (quant.hpp), so the
// fused result is bit-exact with the unfused pair.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "im2col.hpp"

#define INFERON_VNNI __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")))

namespace inferon {

constexpr int QMR = 6;  // rows of a packed A panel (all kernels)

// A quantized Add fused after the requantization (quant.hpp's qadd arithmetic): with y the
// requantized GEMM value and r the residual at the same position, out = round(clamp(fma(first,
// ra, fma(second, rb, fixed)), lo, hi)) where (first, second) = (y, r) if gemm_first else (r, y),
// so that the result is bit-exact with the unfused GEMM + qadd.
struct QResidual {
  float r_gemm, r_res, fixed, lo, hi;
  bool gemm_first;
  bool res_signed;
};

// A block-sparse A (block1x4, inferon.ir.sparse): the k-groups are split into kchunks chunks stored
// one after the other; in chunk c, row m's blocks are [row_ptr[c (M + 1) + m], row_ptr[c (M + 1) + m + 1]);
// block j holds the four int8 weights a[4 j .. 4 j + 3] of the k-group index[j] (uint16 or int32).
struct QSparse {
  const void* index = nullptr;
  const int32_t* row_ptr = nullptr;
  bool index32 = false;
  int64_t kchunks = 1;
};

struct QGemm {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* a = nullptr;         // packed panels (see above), or the block values (sparse)
  QSparse sparse;                    // row_ptr set: A is block-sparse
  const uint8_t* b = nullptr;        // B [K, N] (ldb), B^T [N, K] (b_trans), or an image (im2col)
  int64_t ldb = 0;
  bool b_trans = false;
  bool b_signed = false;             // B holds int8 values
  const Im2col* im2col = nullptr;    // B is the im2col matrix of the image at b
  uint8_t pad = 0;                   // stored value of the padding (the input zero point)
  const int32_t* comp = nullptr;     // [M]
  const float* mult = nullptr;       // [M]
  void* c = nullptr;                 // C[m, n] at c + m * ldc + n * ldc_col
  int64_t ldc = 0, ldc_col = 1;
  bool c_signed = false;
  int32_t zy = 0, lo = 0, hi = 255;  // output zero point and clamp (activation + saturation)
  const QResidual* add = nullptr;    // fused residual add (then zy, lo, hi are the GEMM value's)
  const void* residual = nullptr;    // laid out like C
};

inline bool use_vnni() {
  static const bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw");
  return ok && isa() >= INFERON_ISA_AVX512;
}

namespace qgemm_detail {

inline Scratch& tls(int which) {
  thread_local Scratch s[5];  // 0: packed B, 1: im2col rows, 2: bordered image, 3-4: sparse cursors / sums
  return s[which];
}

// ----------------------------------------------------------------------------------- packing B

// The source matrix of B as uint8 rows [K][N] (row stride ldb) or its transpose: a view.
struct BView {
  const uint8_t* p;
  int64_t ld;
  bool trans;
  uint8_t at(int64_t k, int64_t n) const { return trans ? p[n * ld + k] : p[k * ld + n]; }
};

// Copy n bytes with possibly overlapping word moves (rows of an output plane are short).
inline void copy_bytes(uint8_t* d, const uint8_t* s, int64_t n) {
  if (n >= 16) {
    int64_t t = 0;
    for (; t + 16 <= n; t += 16) std::memcpy(d + t, s + t, 16);
    if (t < n) std::memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(d, &a, 8);
    std::memcpy(d + n - 8, &b, 8);
  } else {
    for (int64_t t = 0; t < n; t++) d[t] = s[t];
  }
}

// d[t] = s[2 t] for t < n; reads up to 32 bytes past s + 2 n (the padded plane has that slack).
INFERON_AVX2 void copy_stride2_avx2(uint8_t* d, const uint8_t* s, int64_t n) {
  const __m256i even = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  int64_t t = 0;
  for (; t + 16 <= n; t += 16) {
    __m256i v = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 2 * t)), even);
    v = _mm256_permute4x64_epi64(v, 0x08);  // quads 0 and 2: the 16 even bytes
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + t), _mm256_castsi256_si128(v));
  }
  for (; t < n; t++) d[t] = s[2 * t];
}

// im2col of one uint8 image into rows [K][N], the zero point in the padding: the image is first
// copied into a bordered plane (pad value around it, slack after it), so that every row of the
// im2col matrix is Ho plain (or stride-2) copies of Wo bytes, with no border tests.
inline void im2col_u8(const Im2col& q, const uint8_t* x, uint8_t pad, uint8_t* col, int nt) {
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw, HoWo = q.Ho * q.Wo;
  const int64_t Hp = std::max<int64_t>(q.H + q.pt, (q.Ho - 1) * q.sh + static_cast<int64_t>(q.kh - 1) * q.dh + 1);
  const int64_t Wp = std::max<int64_t>(q.W + q.pl, (q.Wo - 1) * q.sw + static_cast<int64_t>(q.kw - 1) * q.dw + 1);
  const int64_t plane = Hp * Wp, slack = 64;
  uint8_t* padded = reinterpret_cast<uint8_t*>(tls(2).get(static_cast<size_t>(q.C * plane + slack) / 4 + 16));
  const bool avx2 = use_avx2();
  const int T = threads_for(nt, static_cast<double>(q.C * taps) * HoWo, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < q.C; c++) {
      uint8_t* p = padded + c * plane;
      const uint8_t* src = x + c * q.H * q.W;
      std::memset(p, pad, static_cast<size_t>(q.pt * Wp));
      for (int64_t y = 0; y < q.H && q.pt + y < Hp; y++) {
        uint8_t* row = p + (q.pt + y) * Wp;
        std::memset(row, pad, static_cast<size_t>(q.pl));
        std::memcpy(row + q.pl, src + y * q.W, static_cast<size_t>(std::min(q.W, Wp - q.pl)));
        if (q.pl + q.W < Wp) std::memset(row + q.pl + q.W, pad, static_cast<size_t>(Wp - q.pl - q.W));
      }
      for (int64_t y = q.pt + q.H; y < Hp; y++) std::memset(p + y * Wp, pad, static_cast<size_t>(Wp));
    }
#pragma omp single
    std::memset(padded + q.C * plane, pad, static_cast<size_t>(slack));
    // rows in (channel, tap) order, or for an implicit view (channel group of 4, tap, channel in group)
    // with channels past C (zero weights) reading the padding
    const int64_t rows = q.implicit ? (q.C + 3) / 4 * 4 * taps : q.C * taps;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      int64_t c = r / taps, i = (r % taps) / q.kw, j = r % q.kw;
      if (q.implicit) {
        const int64_t k4 = r / 4;
        c = std::min<int64_t>(q.C - 1, 4 * (k4 / taps) + r % 4);
        i = (k4 / q.kw) % q.kh;
        j = k4 % q.kw;
      }
      const uint8_t* base = padded + c * plane + i * q.dh * Wp + j * q.dw;
      uint8_t* d = col + r * HoWo;
      for (int64_t ho = 0; ho < q.Ho; ho++, d += q.Wo) {
        const uint8_t* s = base + ho * q.sh * Wp;
        if (q.sw == 1) copy_bytes(d, s, q.Wo);
        else if (q.sw == 2 && avx2) copy_stride2_avx2(d, s, q.Wo);
        else for (int64_t t = 0; t < q.Wo; t++) d[t] = s[t * q.sw];
      }
    }
  }
}

// One panel of columns [n0, n0 + nr) (nr <= NR) into [K4][NR][4], scalar.
inline void pack_panel_scalar(const BView& v, int64_t K, int64_t n0, int64_t nr, int NR, uint8_t flip,
                              uint8_t* dst) {
  const int64_t K4 = (K + 3) / 4;
  for (int64_t k4 = 0; k4 < K4; k4++)
    for (int j = 0; j < NR; j++)
      for (int t = 0; t < 4; t++) {
        const int64_t k = 4 * k4 + t;
        dst[(k4 * NR + j) * 4 + t] = (k < K && j < nr) ? static_cast<uint8_t>(v.at(k, n0 + j) ^ flip) : 0;
      }
}

// A panel of up to 32 columns [n0, n0 + nr) of a row-major B with AVX2, `width` (a multiple of 8,
// >= nr) columns wide: four rows of 32 bytes interleaved per k-group (a partial panel's rows go
// through a zero-padded copy; columns past nr are zero).
INFERON_AVX2 void pack_panel32_avx2(const BView& v, int64_t K, int64_t n0, int64_t nr, int width, uint8_t flip,
                                    uint8_t* dst) {
  const int64_t K4 = K / 4;
  const __m256i f = _mm256_set1_epi8(static_cast<char>(flip));
  const __m256i keep = _mm256_cmpgt_epi8(_mm256_set1_epi8(static_cast<char>(nr)),
                                         _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                          17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31));
  alignas(32) uint8_t tmp[4][32] = {};
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const uint8_t* r = v.p + 4 * k4 * v.ld + n0;
    const uint8_t* rows[4] = {r, r + v.ld, r + 2 * v.ld, r + 3 * v.ld};
    if (nr < 32)
      for (int t = 0; t < 4; t++) {
        std::memcpy(tmp[t], rows[t], static_cast<size_t>(nr));
        rows[t] = tmp[t];
      }
    __m256i a = _mm256_and_si256(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[0])), f), keep);
    __m256i b = _mm256_and_si256(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[1])), f), keep);
    __m256i c = _mm256_and_si256(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[2])), f), keep);
    __m256i d = _mm256_and_si256(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[3])), f), keep);
    __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
    __m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
    __m256i q0 = _mm256_unpacklo_epi16(ab_lo, cd_lo);  // cols 0-3 | 16-19
    __m256i q1 = _mm256_unpackhi_epi16(ab_lo, cd_lo);  // cols 4-7 | 20-23
    __m256i q2 = _mm256_unpacklo_epi16(ab_hi, cd_hi);  // cols 8-11 | 24-27
    __m256i q3 = _mm256_unpackhi_epi16(ab_hi, cd_hi);  // cols 12-15 | 28-31
    __m256i* o = reinterpret_cast<__m256i*>(dst + k4 * width * 4);
    const __m256i out[4] = {_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q2, q3, 0x20),
                            _mm256_permute2x128_si256(q0, q1, 0x31), _mm256_permute2x128_si256(q2, q3, 0x31)};
    for (int t = 0; t < width / 8; t++) _mm256_storeu_si256(o + t, out[t]);
  }
  if (K4 * 4 < K) {  // the last, partial k-group
    for (int j = 0; j < width; j++)
      for (int t = 0; t < 4; t++) {
        const int64_t k = 4 * K4 + t;
        dst[(K4 * width + j) * 4 + t] = k < K && j < nr ? static_cast<uint8_t>(v.at(k, n0 + j) ^ flip) : 0;
      }
  }
}

// Transposed B (each column a contiguous row of K bytes): 4-byte copies.
inline void pack_panel_trans(const BView& v, int64_t K, int64_t n0, int64_t nr, int NR, uint8_t flip,
                             uint8_t* dst) {
  const int64_t K4 = (K + 3) / 4, full = K / 4;
  const uint32_t f4 = 0x01010101u * flip;
  for (int j = 0; j < NR; j++) {
    if (j >= nr) {
      for (int64_t k4 = 0; k4 < K4; k4++) std::memset(dst + (k4 * NR + j) * 4, 0, 4);
      continue;
    }
    const uint8_t* col = v.p + (n0 + j) * v.ld;
    for (int64_t k4 = 0; k4 < full; k4++) {
      uint32_t w;
      std::memcpy(&w, col + 4 * k4, 4);
      w ^= f4;
      std::memcpy(dst + (k4 * NR + j) * 4, &w, 4);
    }
    for (int t = 0; t < 4 && full < K4; t++) {
      const int64_t k = 4 * full + t;
      dst[(full * NR + j) * 4 + t] = k < K ? static_cast<uint8_t>(col[k] ^ flip) : 0;
    }
  }
}

// ----------------------------------------------------------------------------------- epilogue

// The residual add on one requantized value q (zero point included) at offset `at` of C.
inline int32_t add_residual_scalar(const QGemm& g, int64_t at, int32_t q) {
  const QResidual& r = *g.add;
  const float y = static_cast<float>(q);
  const float res = static_cast<float>(r.res_signed ? static_cast<const int8_t*>(g.residual)[at]
                                                    : static_cast<const uint8_t*>(g.residual)[at]);
  const float v = r.gemm_first ? std::fma(y, r.r_gemm, std::fma(res, r.r_res, r.fixed))
                               : std::fma(res, r.r_res, std::fma(y, r.r_gemm, r.fixed));
  return static_cast<int32_t>(std::nearbyint(std::min(std::max(v, r.lo), r.hi)));
}

template <class Q>
inline void store_scalar(const QGemm& g, int64_t m, int64_t n, int32_t acc) {
  float v = static_cast<float>(acc + g.comp[m]) * g.mult[m];
  v = std::min(std::max(v, static_cast<float>(g.lo - g.zy)), static_cast<float>(g.hi - g.zy));
  int32_t q = static_cast<int32_t>(std::nearbyint(v)) + g.zy;
  const int64_t at = m * g.ldc + n * g.ldc_col;
  if (g.add) q = add_residual_scalar(g, at, q);
  static_cast<Q*>(g.c)[at] = static_cast<Q>(q);
}

// The residual add's constants, broadcast once per row.
struct Residual8 {
  __m256 r_gemm, r_res, fixed, lo, hi;
};

INFERON_AVX2_INLINE Residual8 residual8(const QGemm& g) {
  const QResidual& r = *g.add;
  return {_mm256_set1_ps(r.r_gemm), _mm256_set1_ps(r.r_res), _mm256_set1_ps(r.fixed), _mm256_set1_ps(r.lo),
          _mm256_set1_ps(r.hi)};
}

// The residual add on 8 requantized values q of row m, columns n.. (`cols` valid), like qadd_avx2.
INFERON_AVX2_INLINE __m256i add_residual8(const QGemm& g, const Residual8& k, int64_t m, int64_t n, int cols,
                                          __m256i q) {
  const int64_t at = m * g.ldc + n * g.ldc_col;
  const bool res_signed = g.add->res_signed;
  __m256i rv;
  if (g.ldc_col == 1 && cols == 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(g.residual) + at));
    rv = res_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
  } else {
    alignas(32) int32_t t[8] = {};
    for (int j = 0; j < cols; j++)
      t[j] = res_signed ? static_cast<const int8_t*>(g.residual)[at + j * g.ldc_col]
                        : static_cast<const uint8_t*>(g.residual)[at + j * g.ldc_col];
    rv = _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
  }
  const __m256 y = _mm256_cvtepi32_ps(q), res = _mm256_cvtepi32_ps(rv);
  const __m256 v = g.add->gemm_first ? _mm256_fmadd_ps(y, k.r_gemm, _mm256_fmadd_ps(res, k.r_res, k.fixed))
                                     : _mm256_fmadd_ps(res, k.r_res, _mm256_fmadd_ps(y, k.r_gemm, k.fixed));
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, k.lo), k.hi));
}

// Requantize 8 accumulators of row m (columns n..n+7, `cols` of them valid) and store them.
template <class Q, bool WITH_COMP = true>
INFERON_AVX2_INLINE void store8(const QGemm& g, int64_t m, int64_t n, int cols, __m256i acc) {
  if (WITH_COMP) acc = _mm256_add_epi32(acc, _mm256_set1_epi32(g.comp[m]));
  __m256 v = _mm256_cvtepi32_ps(acc);
  v = _mm256_mul_ps(v, _mm256_set1_ps(g.mult[m]));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(static_cast<float>(g.lo - g.zy))),
                    _mm256_set1_ps(static_cast<float>(g.hi - g.zy)));
  __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(g.zy));
  if (g.add) q = add_residual8(g, residual8(g), m, n, cols, q);
  Q* out = static_cast<Q*>(g.c) + m * g.ldc + n * g.ldc_col;
  if (g.ldc_col == 1) {
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    __m128i b = std::is_signed<Q>::value ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
    if (cols == 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out), b);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), b);
      std::memcpy(out, tmp, static_cast<size_t>(cols));
    }
  } else {
    alignas(32) int32_t tmp[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), q);
    for (int j = 0; j < cols; j++) out[j * g.ldc_col] = static_cast<Q>(tmp[j]);
  }
}

// Requantize 32 accumulators of row m (comp included; 4 vectors, all columns valid, C contiguous)
// with one store.
template <class Q>
INFERON_AVX2_INLINE void store32(const QGemm& g, int64_t m, int64_t n, const __m256i* acc) {
  const __m256i zy = _mm256_set1_epi32(g.zy);
  const __m256 mult = _mm256_set1_ps(g.mult[m]);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(g.lo - g.zy)), hi = _mm256_set1_ps(static_cast<float>(g.hi - g.zy));
  __m256i q[4];
  Residual8 k{};
  if (g.add) k = residual8(g);
  for (int v = 0; v < 4; v++) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[v]), mult);
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    q[v] = _mm256_add_epi32(_mm256_cvtps_epi32(f), zy);
    if (g.add) q[v] = add_residual8(g, k, m, n + 8 * v, 8, q[v]);
  }
  // packs work per 128-bit lane: [v0 0-3, v1 0-3 | v0 4-7, v1 4-7] -> bytes, then undo the interleave
  const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
  const __m256i b = std::is_signed<Q>::value ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
  const __m256i ordered = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<Q*>(g.c) + m * g.ldc + n), ordered);
}

// store32 with 16 lanes per instruction (AVX-512): two zmm of row m (comp included), columns n..n+31
// all valid, C contiguous, no fused residual. The clamped values lie in the output type's range, so
// narrowing them to bytes by truncation (vpmovdb) is exact: bit-exact with store32.
INFERON_VNNI inline __m128i requant16(__m512i acc, __m512 mult, __m512 lo, __m512 hi, __m512i zy) {
  const __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult), lo), hi);
  return _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zy));
}

template <class Q>
INFERON_VNNI inline void store32_zmm(const QGemm& g, int64_t m, int64_t n, __m512i a0, __m512i a1) {
  const __m512 mult = _mm512_set1_ps(g.mult[m]);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(g.lo - g.zy)), hi = _mm512_set1_ps(static_cast<float>(g.hi - g.zy));
  const __m512i zy = _mm512_set1_epi32(g.zy);
  Q* out = static_cast<Q*>(g.c) + m * g.ldc + n;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), requant16(a0, mult, lo, hi, zy));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), requant16(a1, mult, lo, hi, zy));
}

// ----------------------------------------------------------------------------------- kernels

// VNNI: 6 rows x (8 * NV) columns; a: [K4][6][4], b: [K4][8 * NV][4]. The accumulators start at
// comp (one per row); fully unrolled so that GCC keeps all 6 * NV of them in registers.
// With `rowoff` (implicit convolution, see run_implicit), k-group k4 of the tile's columns is the
// 8 * NV * 4 bytes at b + rowoff[k4] instead.
template <class Q, int NV>
INFERON_VNNI void tile_vnni(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int64_t m0,
                            int64_t n0, const int64_t* rowoff = nullptr) {
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0);
  __m256i acc[QMR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++) {
    const __m256i c = _mm256_set1_epi32(r < rows ? g.comp[m0 + r] : 0);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = c;
  }
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const __m256i* bk = reinterpret_cast<const __m256i*>(b + (rowoff ? rowoff[k4] : k4 * (32 * NV)));
    const int8_t* ak = a + k4 * (4 * QMR);
    __m256i bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_si256(bk + v);
#pragma GCC unroll 6
    for (int r = 0; r < QMR; r++) {
      int32_t a4;
      std::memcpy(&a4, ak + 4 * r, 4);
      const __m256i av = _mm256_set1_epi32(a4);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = _mm256_dpbusd_epi32(acc[r][v], bv[v], av);
    }
  }
  // a copy for the epilogue: taking the address of `acc` itself would keep it in memory
  __m256i out[QMR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) out[r][v] = acc[r][v];
  if (NV == 4 && n0 + 32 <= g.N && g.ldc_col == 1) {
    if (g.add) {
      for (int r = 0; r < rows; r++) store32<Q>(g, m0 + r, n0, out[r]);
    } else {
      for (int r = 0; r < rows; r++)
        store32_zmm<Q>(g, m0 + r, n0, _mm512_inserti64x4(_mm512_castsi256_si512(out[r][0]), out[r][1], 1),
                       _mm512_inserti64x4(_mm512_castsi256_si512(out[r][2]), out[r][3], 1));
    }
    return;
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < NV; v++) {
      const int64_t n = n0 + 8 * v;
      if (n >= g.N) break;
      store8<Q, false>(g, m0 + r, n, static_cast<int>(std::min<int64_t>(8, g.N - n)), out[r][v]);
    }
}

// AVX2 without VNNI: 6 rows x 8 columns; B widened to int16, vpmaddwd (exact).
template <class Q>
INFERON_AVX2 void tile_avx2(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int64_t m0,
                            int64_t n0) {
  __m256i lo[QMR], hi[QMR];  // columns 0-3 / 4-7, two partial sums per column
  for (int r = 0; r < QMR; r++) lo[r] = hi[r] = _mm256_setzero_si256();
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const uint8_t* bk = b + k4 * 32;
    const __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk)));
    const __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk + 16)));
    const int8_t* ak = a + k4 * (4 * QMR);
    const __m256i a03 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ak)));
    const __m256i a45 = _mm256_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ak + 16)));
    __m256i av[QMR];
    av[0] = _mm256_permute4x64_epi64(a03, 0x00);
    av[1] = _mm256_permute4x64_epi64(a03, 0x55);
    av[2] = _mm256_permute4x64_epi64(a03, 0xAA);
    av[3] = _mm256_permute4x64_epi64(a03, 0xFF);
    av[4] = _mm256_permute4x64_epi64(a45, 0x00);
    av[5] = _mm256_permute4x64_epi64(a45, 0x55);
    for (int r = 0; r < QMR; r++) {
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(b0, av[r]));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(b1, av[r]));
    }
  }
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0);
  const int cols = static_cast<int>(std::min<int64_t>(8, g.N - n0));
  for (int r = 0; r < rows; r++) {
    // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7] -> reorder to c0..c7
    const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xD8);
    store8<Q>(g, m0 + r, n0, cols, s);
  }
}

template <class Q>
inline void tile_scalar(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int NR, int64_t m0,
                        int64_t n0) {
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0), cols = std::min<int64_t>(NR, g.N - n0);
  for (int r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) {
      int32_t acc = 0;
      for (int64_t k4 = 0; k4 < K4; k4++)
        for (int t = 0; t < 4; t++)
          acc += static_cast<int32_t>(a[(k4 * QMR + r) * 4 + t]) * static_cast<int32_t>(b[(k4 * NR + j) * 4 + t]);
      store_scalar<Q>(g, m0 + r, n0 + j, acc);
    }
}

// ------------------------------------------------------------------------- block-sparse A
// Rows [r0, r1) of C against NP consecutive B panels starting at column n0 (panels full width,
// `panel_bytes` apart): per row, every block broadcasts its 4 weights against the panels' k-group
// (VNNI: a 32-column panel row is two zmm, one vpdpbusd each; AVX2: widened, vpmaddwd).
// Weights stored in several k-group chunks (their panel rows fit L1) are summed chunk by chunk: the
// int32 sums stay in `part` (NP * 32 per row) between chunks; the last chunk requantizes and stores.
struct SparseChunk {
  bool first, last;
  const int32_t* rp;  // this chunk's row pointers
  int32_t* part;      // [r1 - r0][NP * 32] (unused when first && last)
};

template <class Q, class IT, int NP>
INFERON_VNNI void sparse_rows_zmm(const QGemm& g, const uint8_t* b, size_t panel_bytes, int64_t n0, int64_t r0,
                                  int64_t r1, const SparseChunk& ch) {
  const IT* index = static_cast<const IT*>(g.sparse.index);
  for (int64_t m = r0; m < r1; m++) {
    __m512i acc[NP][2];
    __m512i* part = reinterpret_cast<__m512i*>(ch.part + (m - r0) * NP * 32);
    const __m512i c = _mm512_set1_epi32(g.comp[m]);
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 2
      for (int v = 0; v < 2; v++) acc[p][v] = ch.first ? c : _mm512_loadu_si512(part + 2 * p + v);
    const int32_t end = ch.rp[m + 1];
    for (int32_t j = ch.rp[m]; j < end; j++) {
      int32_t w4;
      std::memcpy(&w4, g.a + 4 * static_cast<int64_t>(j), 4);
      const __m512i wv = _mm512_set1_epi32(w4);
      const uint8_t* bk = b + static_cast<int64_t>(index[j]) * 128;
#pragma GCC unroll 4
      for (int p = 0; p < NP; p++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
          acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], _mm512_load_si512(bk + p * panel_bytes + 64 * v), wv);
    }
    if (!ch.last) {
#pragma GCC unroll 4
      for (int p = 0; p < NP; p++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) _mm512_storeu_si512(part + 2 * p + v, acc[p][v]);
      continue;
    }
    __m512i full[NP][2];
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 2
      for (int v = 0; v < 2; v++) full[p][v] = acc[p][v];
    __m256i out[NP][4];
    for (int p = 0; p < NP; p++) {
      const int64_t n = n0 + 32 * p;
      if (n + 32 <= g.N && g.ldc_col == 1) {  // (a block-sparse A has no fused residual)
        store32_zmm<Q>(g, m, n, full[p][0], full[p][1]);
        continue;
      }
      for (int v = 0; v < 2; v++) {
        out[p][2 * v] = _mm512_castsi512_si256(full[p][v]);
        out[p][2 * v + 1] = _mm512_extracti64x4_epi64(full[p][v], 1);
      }
      for (int v = 0; v < 4 && n + 8 * v < g.N; v++)
        store8<Q, false>(g, m, n + 8 * v, static_cast<int>(std::min<int64_t>(8, g.N - n - 8 * v)), out[p][v]);
    }
  }
}

template <class Q, class IT, int NP>
INFERON_AVX2 void sparse_rows_avx2(const QGemm& g, const uint8_t* b, size_t panel_bytes, int64_t n0, int64_t r0,
                                   int64_t r1, const SparseChunk& ch) {
  const IT* index = static_cast<const IT*>(g.sparse.index);
  for (int64_t m = r0; m < r1; m++) {
    __m256i lo[NP], hi[NP];  // as tile_avx2: columns 0-3 / 4-7 of each 8-column panel
    __m256i* part = reinterpret_cast<__m256i*>(ch.part + (m - r0) * NP * 32);
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++) {
      lo[p] = ch.first ? _mm256_setzero_si256() : _mm256_loadu_si256(part + 2 * p);
      hi[p] = ch.first ? _mm256_setzero_si256() : _mm256_loadu_si256(part + 2 * p + 1);
    }
    const int32_t end = ch.rp[m + 1];
    for (int32_t j = ch.rp[m]; j < end; j++) {
      int32_t w4;
      std::memcpy(&w4, g.a + 4 * static_cast<int64_t>(j), 4);
      const __m256i wv = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(w4)));
      const uint8_t* bk = b + static_cast<int64_t>(index[j]) * 32;
#pragma GCC unroll 4
      for (int p = 0; p < NP; p++) {
        const uint8_t* q = bk + p * panel_bytes;
        const __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
        const __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)));
        lo[p] = _mm256_add_epi32(lo[p], _mm256_madd_epi16(b0, wv));
        hi[p] = _mm256_add_epi32(hi[p], _mm256_madd_epi16(b1, wv));
      }
    }
    if (!ch.last) {
      for (int p = 0; p < NP; p++) {
        _mm256_storeu_si256(part + 2 * p, lo[p]);
        _mm256_storeu_si256(part + 2 * p + 1, hi[p]);
      }
      continue;
    }
    for (int p = 0; p < NP; p++) {
      const int64_t n = n0 + 8 * p;
      if (n >= g.N) break;
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[p], hi[p]), 0xD8);
      store8<Q>(g, m, n, static_cast<int>(std::min<int64_t>(8, g.N - n)), s);
    }
  }
}

template <class Q, class IT>
inline void sparse_rows_scalar(const QGemm& g, const uint8_t* b, int NR, int64_t n0, int64_t r0, int64_t r1) {
  const IT* index = static_cast<const IT*>(g.sparse.index);
  const int64_t cols = std::min<int64_t>(NR, g.N - n0);
  for (int64_t m = r0; m < r1; m++)
    for (int64_t col = 0; col < cols; col++) {
      int32_t acc = 0;
      for (int64_t c = 0; c < g.sparse.kchunks; c++) {
        const int32_t* rp = g.sparse.row_ptr + c * (g.M + 1);
        for (int32_t j = rp[m]; j < rp[m + 1]; j++) {
          const uint8_t* bk = b + (static_cast<int64_t>(index[j]) * NR + col) * 4;
          for (int t = 0; t < 4; t++) acc += static_cast<int32_t>(g.a[4 * static_cast<int64_t>(j) + t]) * bk[t];
        }
      }
      store_scalar<Q>(g, m, n0 + col, acc);
    }
}

#ifndef INFERON_QSPARSE_PANELS
#define INFERON_QSPARSE_PANELS 4
#endif

// Column tiles of NP panels (VNNI 4 x 32 columns in zmm, AVX2 4 x 8: 8 accumulators per row) x row
// ranges of equal block counts; threads take whole tiles when there are enough of them, else row
// ranges. Within a task, the weight's k-group chunks one after the other.
template <class Q, class IT>
void run_sparse(const QGemm& g, const uint8_t* packed, size_t panel_bytes, int64_t panels, int level, int T) {
  const int per = level == 2 ? INFERON_QSPARSE_PANELS : level == 1 ? 4 : 1;
  const int NR = level == 2 ? 32 : 8;
  const int64_t kchunks = std::max<int64_t>(1, g.sparse.kchunks);
  const int64_t tiles = (panels + per - 1) / per;
  const int64_t chunks = tiles >= 2 * T ? 1 : T;
  // blocks before row m over all k-chunks, for splitting rows by work
  int32_t* before = reinterpret_cast<int32_t*>(tls(3).get(static_cast<size_t>(g.M + 1)));
  for (int64_t m = 0; m <= g.M; m++) {
    int64_t sum = 0;
    for (int64_t c = 0; c < kchunks; c++) sum += g.sparse.row_ptr[c * (g.M + 1) + m] - g.sparse.row_ptr[c * (g.M + 1)];
    before[m] = static_cast<int32_t>(sum);
  }
  const int64_t blocks = before[g.M];
  auto row_at = [&](int64_t c) {  // first row of chunk c: equal shares of the blocks (rows when none)
    if (c <= 0) return int64_t{0};
    if (c >= chunks) return g.M;
    if (blocks == 0) return g.M * c / chunks;
    return static_cast<int64_t>(std::lower_bound(before, before + g.M + 1, blocks * c / chunks) - before);
  };
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles * chunks; t++) {
    const int64_t tile = t / chunks, c = t % chunks;
    const int64_t r0 = row_at(c), r1 = row_at(c + 1);
    const int64_t p0 = tile * per, np = std::min<int64_t>(per, panels - p0);
    const uint8_t* b = packed + static_cast<size_t>(p0) * panel_bytes;
    const int64_t n0 = p0 * NR;
    if (r0 >= r1) continue;
    if (level == 0) {
      sparse_rows_scalar<Q, IT>(g, b, NR, n0, r0, r1);
      continue;
    }
    int32_t* part = kchunks > 1 ? reinterpret_cast<int32_t*>(tls(4).get(static_cast<size_t>((r1 - r0) * per * 32)))
                                : nullptr;
    for (int64_t k = 0; k < kchunks; k++) {
      const SparseChunk ch{k == 0, k + 1 == kchunks, g.sparse.row_ptr + k * (g.M + 1), part};
      if (level == 2) {
        switch (np) {
          case 1: sparse_rows_zmm<Q, IT, 1>(g, b, panel_bytes, n0, r0, r1, ch); break;
          case 2: sparse_rows_zmm<Q, IT, 2>(g, b, panel_bytes, n0, r0, r1, ch); break;
          case 3: sparse_rows_zmm<Q, IT, 3>(g, b, panel_bytes, n0, r0, r1, ch); break;
          default: sparse_rows_zmm<Q, IT, 4>(g, b, panel_bytes, n0, r0, r1, ch); break;
        }
      } else {
        switch (np) {
          case 1: sparse_rows_avx2<Q, IT, 1>(g, b, panel_bytes, n0, r0, r1, ch); break;
          case 2: sparse_rows_avx2<Q, IT, 2>(g, b, panel_bytes, n0, r0, r1, ch); break;
          case 3: sparse_rows_avx2<Q, IT, 3>(g, b, panel_bytes, n0, r0, r1, ch); break;
          default: sparse_rows_avx2<Q, IT, 4>(g, b, panel_bytes, n0, r0, r1, ch); break;
        }
      }
    }
  }
}

// dst[4 e + t] = src[t][e] ^ flip for e < w (a null src[t] reads `pads`, w bytes of the pad value).
INFERON_AVX2 void interleave_row(const uint8_t* const (&src)[4], const uint8_t* pads, int64_t w, uint8_t flip,
                                 uint8_t* dst) {
  const __m256i f = _mm256_set1_epi8(static_cast<char>(flip));
  int64_t e = 0;
  for (; e + 32 <= w; e += 32) {
    __m256i v[4];
    for (int t = 0; t < 4; t++)
      v[t] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t] ? src[t] + e : pads)), f);
    const __m256i ab_lo = _mm256_unpacklo_epi8(v[0], v[1]), ab_hi = _mm256_unpackhi_epi8(v[0], v[1]);
    const __m256i cd_lo = _mm256_unpacklo_epi8(v[2], v[3]), cd_hi = _mm256_unpackhi_epi8(v[2], v[3]);
    const __m256i q0 = _mm256_unpacklo_epi16(ab_lo, cd_lo), q1 = _mm256_unpackhi_epi16(ab_lo, cd_lo);
    const __m256i q2 = _mm256_unpacklo_epi16(ab_hi, cd_hi), q3 = _mm256_unpackhi_epi16(ab_hi, cd_hi);
    __m256i* o = reinterpret_cast<__m256i*>(dst + 4 * e);
    _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(q0, q1, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(q2, q3, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(q0, q1, 0x31));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(q2, q3, 0x31));
  }
  for (; e < w; e++)
    for (int t = 0; t < 4; t++) dst[4 * e + t] = static_cast<uint8_t>((src[t] ? src[t][e] : pads[0]) ^ flip);
}

// Implicit convolution (Im2col::implicit: stride 1, dilation 1, VNNI). The GEMM's K runs over
// (channel group c4 of 4, tap i, tap j, channel in group) (the compiler orders the weights so, channels
// padded to a multiple of 4 with zero weights), and the image is copied once into an interleaved,
// zero-point-bordered frame [C4][Hp][Wp][4] (Hp = Ho + kh - 1, Wp = Wo + kw - 1): there the 4 bytes
// of k-group (c4, i, j) for output pixel (ho, wo) sit at c4 * Hp*Wp*4 + ((ho + i) * Wp + wo + j) * 4, so
// the packed-panel layout [k4][32 columns][4] is the frame itself, shifted per k-group: no im2col,
// no packing. The product runs on the Ho x Wp "wide" grid into a scratch C; the Wp - Wo border
// columns of each output row are dropped when it is copied into C. Dense A only; elsewhere (other
// instruction sets, block-sparse A, fused residual) the im2col rows follow the same K order.
template <class Q>
void run_implicit(const QGemm& g, int level, int T) {
  const Im2col& q = *g.im2col;
  const int64_t C4 = (q.C + 3) / 4, Hp = q.Ho + q.kh - 1, Wp = q.Wo + q.kw - 1, plane = Hp * Wp * 4;
  const int64_t wide = q.Ho * Wp, panels = (wide + 31) / 32, K4 = C4 * q.kh * q.kw;
  const int64_t frame_bytes = C4 * plane + 4 * (32 * 4 + Wp * q.kh);  // + slack: the last panel reads past
  uint8_t* xb = reinterpret_cast<uint8_t*>(tls(2).get(static_cast<size_t>(frame_bytes) / 4 + 16));
  const uint8_t flip = g.b_signed ? 0x80 : 0, pad = static_cast<uint8_t>(g.pad ^ flip);
  const uint8_t* x = g.b;
  const int64_t wi = std::min<int64_t>(q.W, Wp - q.pl);  // image columns inside the frame
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < C4 * Hp; r++) {
    const int64_t c4 = r / Hp, y = r % Hp - q.pt;
    uint8_t* row = xb + c4 * plane + (r % Hp) * Wp * 4;
    if (y < 0 || y >= q.H) {
      std::memset(row, pad, static_cast<size_t>(Wp * 4));
      continue;
    }
    std::memset(row, pad, static_cast<size_t>(q.pl * 4));
    std::memset(row + (q.pl + wi) * 4, pad, static_cast<size_t>((Wp - q.pl - wi) * 4));
    alignas(32) uint8_t pads[32];
    std::memset(pads, g.pad, 32);
    const uint8_t* src[4];
    for (int t = 0; t < 4; t++) src[t] = 4 * c4 + t < q.C ? x + ((4 * c4 + t) * q.H + y) * q.W : nullptr;
    interleave_row(src, pads, wi, flip, row + q.pl * 4);
  }
  std::memset(xb + C4 * plane, pad, static_cast<size_t>(frame_bytes - C4 * plane));
  int64_t* rowoff = reinterpret_cast<int64_t*>(tls(1).get(static_cast<size_t>(2 * K4)));
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const int64_t c4 = k4 / (q.kh * q.kw), i = (k4 / q.kw) % q.kh, j = k4 % q.kw;
    rowoff[k4] = c4 * plane + (i * Wp + j) * 4;
  }
  Q* cw = reinterpret_cast<Q*>(tls(0).get(static_cast<size_t>(g.M * wide) / 4 + 16));
  QGemm w = g;
  w.N = wide;
  w.c = cw;
  w.ldc = wide;
  const int64_t mpanels = (g.M + QMR - 1) / QMR;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < mpanels * panels; t++) {
    const int64_t mp = t / panels, p = t % panels;
    const int8_t* a = g.a + mp * K4 * 4 * QMR;
    tile_vnni<Q, 4>(w, a, xb + p * 128, K4, mp * QMR, p * 32, rowoff);
  }
  Q* out = static_cast<Q*>(g.c);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < g.M * q.Ho; r++) {
    const int64_t m = r / q.Ho, ho = r % q.Ho;
    std::memcpy(out + m * g.ldc + ho * q.Wo, cw + m * wide + ho * Wp, static_cast<size_t>(q.Wo) * sizeof(Q));
  }
}

// N == 1 (a fully-connected layer at batch 1) with VNNI: one vpdpbusd per k-group and 6-row panel
// (the panel's 24 weight bytes against the broadcast 4 activation bytes), instead of a whole register
// tile for one column; bound by the weight stream.
template <class Q>
INFERON_VNNI void gemv_vnni(const QGemm& g, int T) {
  const int64_t K4 = (g.K + 3) / 4, mpanels = (g.M + QMR - 1) / QMR;
  const BView v{g.b, g.ldb, g.b_trans};
  const uint8_t flip = g.b_signed ? 0x80 : 0;
  uint8_t* xg = reinterpret_cast<uint8_t*>(tls(1).get(static_cast<size_t>(K4) + 16));
  for (int64_t k = 0; k < 4 * K4; k++) xg[k] = k < g.K ? static_cast<uint8_t>(v.at(k, 0) ^ flip) : 0;
  const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t mp = 0; mp < mpanels; mp++) {
    const int8_t* a = g.a + mp * K4 * 4 * QMR;
    __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
    int64_t k4 = 0;
    for (; k4 + 2 <= K4; k4 += 2) {
      int32_t x0, x1;
      std::memcpy(&x0, xg + 4 * k4, 4);
      std::memcpy(&x1, xg + 4 * k4 + 4, 4);
      const __m256i w0 = _mm256_maskload_epi32(reinterpret_cast<const int*>(a + k4 * 24), six);
      const __m256i w1 = _mm256_maskload_epi32(reinterpret_cast<const int*>(a + k4 * 24 + 24), six);
      acc0 = _mm256_dpbusd_epi32(acc0, _mm256_set1_epi32(x0), w0);
      acc1 = _mm256_dpbusd_epi32(acc1, _mm256_set1_epi32(x1), w1);
    }
    if (k4 < K4) {
      int32_t x0;
      std::memcpy(&x0, xg + 4 * k4, 4);
      acc0 = _mm256_dpbusd_epi32(acc0, _mm256_set1_epi32(x0),
                                 _mm256_maskload_epi32(reinterpret_cast<const int*>(a + k4 * 24), six));
    }
    alignas(32) int32_t sums[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums), _mm256_add_epi32(acc0, acc1));
    for (int r = 0; r < QMR && mp * QMR + r < g.M; r++) store_scalar<Q>(g, mp * QMR + r, 0, sums[r]);
  }
}

template <class Q>
void run(const QGemm& g, int nt) {
  const int level = use_vnni() ? 2 : use_avx2() ? 1 : 0;
  if (g.N == 1 && level == 2 && g.sparse.row_ptr == nullptr && g.im2col == nullptr && g.add == nullptr)
    return gemv_vnni<Q>(g, threads_for(nt, static_cast<double>(g.M) * g.K, 1 << 20));
  // (block-sparse A: measured 2-3 % slower in place on ResNet-50 than through packed, aligned panels)
  if (g.im2col && g.im2col->implicit && level == 2 && g.add == nullptr && g.ldc_col == 1 && g.sparse.row_ptr == nullptr) {
    const Im2col& q = *g.im2col;
    return run_implicit<Q>(g, level, threads_for(nt, static_cast<double>(g.M) * q.Ho * (q.Wo + q.kw - 1) * g.K, 1 << 20));
  }
  const int NR = level == 2 ? 32 : 8;
  const int64_t K4 = (g.K + 3) / 4;
  const int64_t panels = (g.N + NR - 1) / NR, mpanels = (g.M + QMR - 1) / QMR;
  const size_t panel_bytes = static_cast<size_t>(K4) * NR * 4;
  // the last panel is only as wide as needed, in whole vectors of 8 columns (VNNI)
  // (full width for a block-sparse A, whose kernels address every panel alike)
  const bool sparse = g.sparse.row_ptr != nullptr;
  const int last_nr = level == 2 && !sparse ? static_cast<int>(((g.N - (panels - 1) * NR) + 7) / 8 * 8) : NR;
  const double work = static_cast<double>(g.M) * g.N * g.K;
  const int T = threads_for(nt, work, 1 << 20);

  BView view{g.b, g.ldb, g.b_trans};
  if (g.im2col) {
    const Im2col& q = *g.im2col;
    const int64_t HoWo = q.Ho * q.Wo;
    uint8_t* col = reinterpret_cast<uint8_t*>(tls(1).get((static_cast<size_t>(g.K * HoWo) + 3) / 4 + 16));
    im2col_u8(q, g.b, g.pad, col, nt);
    view = BView{col, HoWo, false};
  }
  // (Scratch::get is 64-byte aligned; panel_bytes is a multiple of 128 with VNNI: aligned panel loads)
  uint8_t* packed = reinterpret_cast<uint8_t*>(tls(0).get(panel_bytes * static_cast<size_t>(panels) / 4 + 16));
  const uint8_t flip = g.b_signed ? 0x80 : 0;
  const bool simd_pack = level >= 1 && !view.trans && NR == 32;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < panels; p++) {
    const int64_t n0 = p * NR, nr = std::min<int64_t>(NR, g.N - n0);
    const int width = p == panels - 1 ? last_nr : NR;
    uint8_t* dst = packed + static_cast<size_t>(p) * panel_bytes;
    if (view.trans) pack_panel_trans(view, g.K, n0, nr, width, flip, dst);
    else if (simd_pack) pack_panel32_avx2(view, g.K, n0, nr, width, flip, dst);
    else pack_panel_scalar(view, g.K, n0, nr, width, flip, dst);
  }

  if (sparse) {
    if (g.sparse.index32) run_sparse<Q, int32_t>(g, packed, panel_bytes, panels, level, T);
    else run_sparse<Q, uint16_t>(g, packed, panel_bytes, panels, level, T);
    return;
  }

  // Tile order: the smaller operand stays in cache while the other streams past it once. With a
  // larger packed B (big images): (column chunk, row panel, column panel), a chunk of B in L2;
  // with a larger A (deep layers, few columns): (row panel, column panel), all of B in L2.
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>((256 * 1024) / panel_bytes));
  const bool a_outer = g.M * g.K > g.N * g.K || panels <= chunk;
  const int64_t tiles = mpanels * panels;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles; t++) {
    int64_t mp, p;
    if (a_outer) {
      mp = t / panels;
      p = t % panels;
    } else {
      const int64_t c = t / (mpanels * chunk), rem = t - c * mpanels * chunk;
      const int64_t width = std::min(chunk, panels - c * chunk);
      mp = rem / width;
      p = c * chunk + rem % width;
    }
    const int8_t* a = g.a + mp * K4 * 4 * QMR;
    const uint8_t* b = packed + static_cast<size_t>(p) * panel_bytes;
    if (level == 2) {
      switch (p == panels - 1 ? last_nr / 8 : 4) {
        case 1: tile_vnni<Q, 1>(g, a, b, K4, mp * QMR, p * NR); break;
        case 2: tile_vnni<Q, 2>(g, a, b, K4, mp * QMR, p * NR); break;
        case 3: tile_vnni<Q, 3>(g, a, b, K4, mp * QMR, p * NR); break;
        default: tile_vnni<Q, 4>(g, a, b, K4, mp * QMR, p * NR); break;
      }
    }
    else if (level == 1) tile_avx2<Q>(g, a, b, K4, mp * QMR, p * NR);
    else tile_scalar<Q>(g, a, b, K4, NR, mp * QMR, p * NR);
  }
}

}  // namespace qgemm_detail

// One quantized GEMM (see the top of this file); the output type follows c_signed.
inline void qgemm(const QGemm& g, int num_threads = 1) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.c_signed) qgemm_detail::run<int8_t>(g, num_threads);
  else qgemm_detail::run<uint8_t>(g, num_threads);
}

}  // namespace inferon
