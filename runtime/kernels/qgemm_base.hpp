// Inferon kernels: the quantized GEMM's parameters (QGemm), B packing into [K4][NR][4] panels and the
// requantizing epilogue, shared by the dense kernels (qgemm.hpp) and the block-sparse ones
// (qsparse.hpp). See qgemm.hpp for the layouts and the arithmetic.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "im2col.hpp"
#include "requant.hpp"

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
// With `quads` A is CSR instead (qcsr.hpp): row m's nonzeros in quads [row_ptr[m], row_ptr[m + 1]),
// quad j the weights a[4 j .. 4 j + 3] of the columns index[4 j .. 4 j + 3] (any four k; padding
// entries weigh 0), kchunks 1.
struct QSparse {
  const void* index = nullptr;
  const int32_t* row_ptr = nullptr;
  bool index32 = false;
  int64_t kchunks = 1;
  bool quads = false;
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
  const Requant* rq = nullptr;       // [M] fixed-point requantization (requant.hpp)
  void* c = nullptr;                 // C[m, n] at c + m * ldc + n * ldc_col
  int64_t ldc = 0, ldc_col = 1;
  bool c_signed = false;
  int32_t zy = 0, lo = 0, hi = 255;  // output zero point and clamp (activation + saturation)
  const QResidual* add = nullptr;    // fused residual add (then zy, lo, hi are the GEMM value's)
  const void* residual = nullptr;    // laid out like C
  bool a_lanes = false;              // A in panels of 32 rows as vector lanes (qlanes.hpp)
  // Pair-safe A (row panels, see fix_tile): the true weights are the packed ones plus these
  // corrections: fix[0..M] row starts into fix + M + 1, each entry k << 8 | (r & 0xff), r an int8.
  const int32_t* fix = nullptr;
};

// The threads' row split of a sparse A: range c of `ranges` is rows [row(c), row(c + 1)), each range
// holding an equal share of the entries (blocks or quads, over all k-chunks; of the rows when there
// are none). `scratch` holds the entries before each row.
class SparseRows {
 public:
  SparseRows(const QSparse& s, int64_t M, int64_t ranges, Scratch& scratch) : M_(M), ranges_(ranges) {
    if (ranges <= 1) return;
    const int64_t kchunks = std::max<int64_t>(1, s.kchunks);
    int32_t* before = reinterpret_cast<int32_t*>(scratch.get(static_cast<size_t>(M + 1)));
    for (int64_t m = 0; m <= M; m++) {
      int64_t sum = 0;
      for (int64_t c = 0; c < kchunks; c++) sum += s.row_ptr[c * (M + 1) + m] - s.row_ptr[c * (M + 1)];
      before[m] = static_cast<int32_t>(sum);
    }
    before_ = before;
    total_ = before[M];
  }
  int64_t row(int64_t c) const {
    if (c <= 0) return 0;
    if (c >= ranges_) return M_;
    if (total_ == 0) return M_ * c / ranges_;
    return std::lower_bound(before_, before_ + M_ + 1, static_cast<int32_t>(total_ * c / ranges_)) - before_;
  }

 private:
  const int32_t* before_ = nullptr;
  int64_t M_, ranges_, total_ = 0;
};

inline bool use_vnni() {
  static const bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw");
  return ok && isa() >= INFERON_ISA_AVX512;
}

namespace qgemm_detail {

inline Scratch& tls(int which) {
  // 0: packed / interleaved B, 1: im2col rows, 2: bordered image, 3-4: sparse cursors / sums,
  // 3: the widened A panel of the AVX2 kernels, 4: the B offset tables of qlanes.hpp
  thread_local Scratch s[5];
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
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(d, &a, 4);
    std::memcpy(d + n - 4, &b, 4);
  } else {
    for (int64_t t = 0; t < n; t++) d[t] = s[t];
  }
}

// The 16 even bytes of the 32 at p.
INFERON_AVX2_INLINE __m128i even16(const uint8_t* p) {
  const __m256i even = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i v = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), even);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(v, 0x08));  // quads 0 and 2
}

// d[t] = s[2 t] for t < n, 16 at a time (the last 16 overlapping the previous ones; fewer than 16
// through a copy); reads up to 32 bytes past s + 2 n (the padded plane has that slack).
INFERON_AVX2 inline void copy_stride2_avx2(uint8_t* d, const uint8_t* s, int64_t n) {
  if (n < 16) {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), even16(s));
    copy_bytes(d, tmp, n);
    return;
  }
  int64_t t = 0;
  for (; t + 16 <= n; t += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(d + t), even16(s + 2 * t));
  if (t < n) _mm_storeu_si128(reinterpret_cast<__m128i*>(d + n - 16), even16(s + 2 * (n - 16)));
}

// A 1x1 convolution without padding (a strided projection): every row of the im2col matrix is Ho
// strided copies straight from the image (the last ones exact, not reading past its end).
inline void im2col_u8_1x1(const Im2col& q, const uint8_t* x, uint8_t* col, int nt) {
  const int64_t HoWo = q.Ho * q.Wo, plane = q.H * q.W;
  const uint8_t* end = x + q.C * plane;
  const bool avx2 = use_avx2();
  const int64_t rows = q.implicit ? (q.C + 3) / 4 * 4 : q.C;  // (channels past C: zero weights)
  const int T = threads_for(nt, static_cast<double>(rows * HoWo), 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const uint8_t* base = x + std::min(r, q.C - 1) * plane;
    uint8_t* d = col + r * HoWo;
    for (int64_t ho = 0; ho < q.Ho; ho++, d += q.Wo) {
      const uint8_t* s = base + ho * q.sh * q.W;
      if (q.sw == 1) copy_bytes(d, s, q.Wo);
      else if (q.sw == 2 && avx2 && s + std::max<int64_t>(32, 2 * q.Wo) <= end) copy_stride2_avx2(d, s, q.Wo);
      else for (int64_t t = 0; t < q.Wo; t++) d[t] = s[t * q.sw];
    }
  }
}

// Whether every tap of a convolution lies inside the image: a 1x1 one without padding.
inline bool unpadded_1x1(const Im2col& q) {
  return q.kh == 1 && q.kw == 1 && q.pt == 0 && q.pl == 0 && frame_height(q) <= q.H && frame_width(q) <= q.W;
}

// im2col of one uint8 image into rows [K][N], the zero point in the padding: the image is first
// copied into a bordered plane (pad value around it, slack after it), so that every row of the
// im2col matrix is Ho plain (or stride-2) copies of Wo bytes, with no border tests (an unpadded 1x1
// convolution reads the image itself).
inline void im2col_u8(const Im2col& q, const uint8_t* x, uint8_t pad, uint8_t* col, int nt) {
  if (unpadded_1x1(q)) return im2col_u8_1x1(q, x, col, nt);
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw, HoWo = q.Ho * q.Wo;
  const int64_t Hp = std::max<int64_t>(q.H + q.pt, frame_height(q));
  const int64_t Wp = std::max<int64_t>(q.W + q.pl, frame_width(q));
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
        if (q.pl > 0) std::memset(row, pad, static_cast<size_t>(q.pl));
        copy_bytes(row + q.pl, src + y * q.W, std::min(q.W, Wp - q.pl));
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

// B as uint8 rows [K][N]: the operand itself, or its im2col matrix (built in tls(1)).
inline BView b_view(const QGemm& g, int nt) {
  if (!g.im2col) return BView{g.b, g.ldb, g.b_trans};
  const Im2col& q = *g.im2col;
  const int64_t HoWo = q.Ho * q.Wo;
  uint8_t* col = reinterpret_cast<uint8_t*>(tls(1).get((static_cast<size_t>(g.K * HoWo) + 3) / 4 + 16));
  im2col_u8(q, g.b, g.pad, col, nt);
  return BView{col, HoWo, false};
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
INFERON_AVX2 inline void pack_panel32_avx2(const BView& v, int64_t K, int64_t n0, int64_t nr, int width, uint8_t flip,
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

// n int8 values widened to int16 (the AVX2 kernels' weight panels).
INFERON_AVX2 inline void widen_s8(const int8_t* a, int64_t n, int16_t* aw) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(aw + i),
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i))));
  for (; i < n; i++) aw[i] = a[i];
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
  int32_t q = requant_scalar(g.rq[m], acc + g.comp[m], g.zy, g.lo, g.hi);
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

// The residual add's float steps on 8 requantized values q and their residual values rv (as int32).
INFERON_AVX2_INLINE __m256i add_residual8_values(const QResidual& r, const Residual8& k, __m256i q, __m256i rv) {
  const __m256 y = _mm256_cvtepi32_ps(q), res = _mm256_cvtepi32_ps(rv);
  const __m256 v = r.gemm_first ? _mm256_fmadd_ps(y, k.r_gemm, _mm256_fmadd_ps(res, k.r_res, k.fixed))
                                : _mm256_fmadd_ps(res, k.r_res, _mm256_fmadd_ps(y, k.r_gemm, k.fixed));
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, k.lo), k.hi));
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
  return add_residual8_values(*g.add, k, q, rv);
}

// The residual add on `count` requantized values q (stored as Q: the GEMM's own range [g.lo, g.hi]
// must lie in Q's) of row m from column n (C contiguous), into C (run_implicit's copy out of the wide
// grid).
template <class Q>
INFERON_AVX2 void add_residual_row(const QGemm& g, const Q* q, int64_t m, int64_t n, int64_t count) {
  const Residual8 k = residual8(g);
  const int64_t at = m * g.ldc + n;
  const uint8_t* res = static_cast<const uint8_t*>(g.residual) + at;
  Q* out = static_cast<Q*>(g.c) + at;
  const bool q_signed = std::is_signed<Q>::value, res_signed = g.add->res_signed;
  for (int64_t j = 0; j < count; j += 8) {
    const int w = static_cast<int>(std::min<int64_t>(8, count - j));
    alignas(16) uint8_t qb[16] = {}, rb[16] = {}, ob[16];
    std::memcpy(qb, q + j, static_cast<size_t>(w));
    std::memcpy(rb, res + j, static_cast<size_t>(w));
    const __m128i qv = _mm_load_si128(reinterpret_cast<const __m128i*>(qb));
    const __m128i rv = _mm_load_si128(reinterpret_cast<const __m128i*>(rb));
    const __m256i v = add_residual8_values(*g.add, k, q_signed ? _mm256_cvtepi8_epi32(qv) : _mm256_cvtepu8_epi32(qv),
                                           res_signed ? _mm256_cvtepi8_epi32(rv) : _mm256_cvtepu8_epi32(rv));
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_store_si128(reinterpret_cast<__m128i*>(ob),
                    std::is_signed<Q>::value ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16));
    std::memcpy(out + j, ob, static_cast<size_t>(w));
  }
}

// C from a product on a conv's wide grid (Ho rows of Wp columns, `wide` = Ho * Wp per output row m,
// in cw): each output row's first Wo columns, with the fused residual added (the GEMM's range must
// lie in Q's, see add_residual_row).
template <class Q>
void copy_wide(const QGemm& g, const Q* cw, int64_t wide, int64_t Wp, int T) {
  const Im2col& q = *g.im2col;
  Q* out = static_cast<Q*>(g.c);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < g.M * q.Ho; r++) {
    const int64_t m = r / q.Ho, ho = r % q.Ho;
    if (g.add) add_residual_row<Q>(g, cw + m * wide + ho * Wp, m, ho * q.Wo, q.Wo);
    else std::memcpy(out + m * g.ldc + ho * q.Wo, cw + m * wide + ho * Wp, static_cast<size_t>(q.Wo) * sizeof(Q));
  }
}

// Pair-safe A (QGemm::fix, from pack-weights' pair_safe_split): add each row's corrections r * B[k, n]
// to the int32 sums of a tile of `rows` rows x 8 NV columns (out[r][v]: columns 8 v .. 8 v + 7);
// group(k4) points at the tile's k-group k4 in the packed B layout (8 NV columns x 4 bytes).
template <int NV, class Group>
INFERON_AVX2_INLINE void fix_tile(const QGemm& g, __m256i (&out)[QMR][NV], int64_t m0, int rows, Group group) {
  const int32_t* e = g.fix + g.M + 1;
  for (int r = 0; r < rows; r++)
    for (int32_t i = g.fix[m0 + r]; i < g.fix[m0 + r + 1]; i++) {
      const int32_t k = e[i] >> 8;
      const __m256i rv = _mm256_set1_epi32(static_cast<int8_t>(e[i] & 0xff));
      const __m128i shift = _mm_cvtsi32_si128(8 * (k & 3));
      const uint8_t* p = group(k >> 2);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) {
        __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * v));
        b = _mm256_and_si256(_mm256_srl_epi32(b, shift), _mm256_set1_epi32(0xff));
        out[r][v] = _mm256_add_epi32(out[r][v], _mm256_mullo_epi32(b, rv));
      }
    }
}

// A register tile's int32 sums start at comp (rows past M at 0): rows m0 .., 8 NV columns each.
template <int NV>
INFERON_AVX2_INLINE void init_tile(const QGemm& g, __m256i (&acc)[QMR][NV], int64_t m0, int rows) {
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++) {
    const __m256i c = _mm256_set1_epi32(r < rows ? g.comp[m0 + r] : 0);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = c;
  }
}

// The corrections of row m at column j of a packed B panel [K4][nr][4] (scalar kernels).
inline int32_t fix_scalar(const QGemm& g, int64_t m, const uint8_t* panel, int nr, int64_t j) {
  int32_t s = 0;
  for (int32_t i = g.fix[m]; i < g.fix[m + 1]; i++) {
    const int32_t e = g.fix[g.M + 1 + i], k = e >> 8;
    s += static_cast<int8_t>(e & 0xff) * static_cast<int32_t>(panel[((k >> 2) * nr + j) * 4 + (k & 3)]);
  }
  return s;
}

// Row m's requantization constants for store8.
INFERON_AVX2_INLINE Requant8 row_requant(const QGemm& g, int64_t m) { return requant8_row(g.rq[m], g.zy, g.lo, g.hi); }

// Requantize 8 accumulators of row m (columns n..n+7, `cols` of them valid; k = row_requant(g, m))
// and store them.
template <class Q, bool WITH_COMP = true>
INFERON_AVX2_INLINE void store8(const QGemm& g, const Requant8& k, int64_t m, int64_t n, int cols, __m256i acc) {
  if (WITH_COMP) acc = _mm256_add_epi32(acc, _mm256_set1_epi32(g.comp[m]));
  // the packs below saturate: no clamp needed when [lo, hi] is Q's whole range (and nothing is added)
  constexpr int32_t qmin = std::numeric_limits<Q>::min(), qmax = std::numeric_limits<Q>::max();
  const bool saturate = g.ldc_col == 1 && !g.add && g.lo == qmin && g.hi == qmax;
  __m256i q = saturate ? requant8<false>(k, acc) : requant8(k, acc);
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

// Requantize and store a register tile's sums (comp included): `rows` rows from m0, 8 NV columns from
// n0, columns past N dropped.
template <class Q, int NV>
INFERON_AVX2_INLINE void store_tile(const QGemm& g, const __m256i (&out)[QMR][NV], int64_t m0, int rows, int64_t n0) {
  // 16 whole columns of a plain C: both vectors requantized, then narrowed and clamped together
  if constexpr (NV == 2) {
    if (n0 + 16 <= g.N && g.ldc_col == 1 && !g.add) {
      constexpr bool is_signed = std::is_signed<Q>::value;
      const bool clamp = is_signed ? (g.lo > -128 || g.hi < 127) : (g.lo > 0 || g.hi < 255);
      const __m128i lo = _mm_set1_epi8(static_cast<char>(g.lo)), hi = _mm_set1_epi8(static_cast<char>(g.hi));
      for (int r = 0; r < rows; r++) {
        const Requant8 k = row_requant(g, m0 + r);
        const __m256i w = _mm256_permute4x64_epi64(
            _mm256_packs_epi32(requant8<false>(k, out[r][0]), requant8<false>(k, out[r][1])), 0xD8);
        const __m128i w0 = _mm256_castsi256_si128(w), w1 = _mm256_extracti128_si256(w, 1);
        __m128i b = is_signed ? _mm_packs_epi16(w0, w1) : _mm_packus_epi16(w0, w1);
        if (clamp) b = is_signed ? _mm_min_epi8(_mm_max_epi8(b, lo), hi) : _mm_min_epu8(_mm_max_epu8(b, lo), hi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<Q*>(g.c) + (m0 + r) * g.ldc + n0), b);
      }
      return;
    }
  }
  for (int r = 0; r < rows; r++) {
    const Requant8 k = row_requant(g, m0 + r);
    for (int v = 0; v < NV; v++) {
      const int64_t n = n0 + 8 * v;
      if (n >= g.N) break;
      store8<Q, false>(g, k, m0 + r, n, static_cast<int>(std::min<int64_t>(8, g.N - n)), out[r][v]);
    }
  }
}

// requant8's constants on 16 lanes (AVX-512 kernels): lanes 0-7 and 8-15 each as a Requant8, the
// even / odd 64-bit lanes in the products' order.
struct Requant16 {
  __m512i mult_even, mult_odd, shift_even, shift_odd, round_even, round_odd, offset, acc_lo, acc_hi, lo, hi;
  uint32_t flags;
};

// All 16 lanes with one channel's record (as requant8_row).
INFERON_VNNI inline Requant16 requant16_row(const Requant& r, int32_t zy, int32_t lo, int32_t hi) {
  Requant16 k;
  k.mult_even = k.mult_odd = _mm512_set1_epi32(r.mult);  // vpmuldq reads the low half of each 64-bit lane
  k.shift_even = k.shift_odd = _mm512_set1_epi64(r.shift);
  k.round_even = k.round_odd = _mm512_set1_epi64(r.round);
  k.offset = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(r.offset) + static_cast<uint32_t>(zy)));
  k.acc_lo = _mm512_set1_epi32(r.acc_lo);
  k.acc_hi = _mm512_set1_epi32(r.acc_hi);
  k.lo = _mm512_set1_epi32(lo);
  k.hi = _mm512_set1_epi32(hi);
  k.flags = r.flags;
  return k;
}

// Lanes 0-7 from k_lo, 8-15 from k_hi (per-lane channels: qlanes.hpp). Where only one half has
// REQUANT_TIES the other's rounding constant drops by one, as requant8_channels does, since the
// ties step then runs on every lane.
INFERON_VNNI inline __m512i cat256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

INFERON_VNNI inline Requant16 requant16_pair(const Requant8& k_lo, const Requant8& k_hi) {
  Requant16 k;
  k.flags = k_lo.flags | k_hi.flags;
  const __m256i one = _mm256_set1_epi64x(1);
  const bool drop_lo = (k.flags & REQUANT_TIES) && !(k_lo.flags & REQUANT_TIES);
  const bool drop_hi = (k.flags & REQUANT_TIES) && !(k_hi.flags & REQUANT_TIES);
  k.mult_even = cat256(k_lo.mult_even, k_hi.mult_even);
  k.mult_odd = cat256(k_lo.mult_odd, k_hi.mult_odd);
  k.shift_even = cat256(k_lo.shift_even, k_hi.shift_even);
  k.shift_odd = cat256(k_lo.shift_odd, k_hi.shift_odd);
  k.round_even = cat256(drop_lo ? _mm256_sub_epi64(k_lo.round_even, one) : k_lo.round_even,
                     drop_hi ? _mm256_sub_epi64(k_hi.round_even, one) : k_hi.round_even);
  k.round_odd = cat256(drop_lo ? _mm256_sub_epi64(k_lo.round_odd, one) : k_lo.round_odd,
                    drop_hi ? _mm256_sub_epi64(k_hi.round_odd, one) : k_hi.round_odd);
  k.offset = cat256(k_lo.offset, k_hi.offset);
  k.acc_lo = cat256(k_lo.acc_lo, k_hi.acc_lo);
  k.acc_hi = cat256(k_lo.acc_hi, k_hi.acc_hi);
  k.lo = cat256(k_lo.lo, k_hi.lo);
  k.hi = cat256(k_lo.hi, k_hi.hi);
  return k;
}

// requant8's steps on 16 lanes in zmm registers (half the instructions of two ymm halves). With
// CLAMP the values are clamped to [lo, hi] (bit-exact with store8); without, the caller narrows them
// with saturation (store_row_zmm).
INFERON_VNNI inline __m512i round_shift16(__m512i n, __m512i s, __m512i round, bool ties) {
  __m512i t = _mm512_add_epi64(n, round);
  if (ties) t = _mm512_add_epi64(t, _mm512_and_si512(_mm512_srlv_epi64(n, s), _mm512_set1_epi64(1)));
  return _mm512_srlv_epi64(t, s);
}

template <bool CLAMP = true>
INFERON_VNNI inline __m512i requant16(const Requant16& k, __m512i acc) {
  if (k.flags & REQUANT_CLAMP_ACC) acc = _mm512_min_epi32(_mm512_max_epi32(acc, k.acc_lo), k.acc_hi);
  const bool ties = k.flags & REQUANT_TIES;
  const __m512i qe = round_shift16(_mm512_mul_epi32(acc, k.mult_even), k.shift_even, k.round_even, ties);
  const __m512i qo =
      round_shift16(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), k.mult_odd), k.shift_odd, k.round_odd, ties);
  const __m512i q = _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, qe, _mm512_slli_epi64(qo, 32)), k.offset);
  return CLAMP ? _mm512_min_epi32(_mm512_max_epi32(q, k.lo), k.hi) : q;
}

// Requantize 32 accumulators of row m (AVX-512 kernels): two zmm (comp included), columns n..n+31
// all valid, C contiguous. A fused residual takes add_residual8's float steps on 16 lanes.
// (add_residual16_bytes: the 16 residual bytes already loaded)
INFERON_VNNI inline __m512i add_residual16_bytes(const QResidual& r, __m128i b, __m512i q) {
  const __m512 res = _mm512_cvtepi32_ps(r.res_signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
  const __m512 y = _mm512_cvtepi32_ps(q);
  const __m512 ra = _mm512_set1_ps(r.r_gemm), rr = _mm512_set1_ps(r.r_res), fixed = _mm512_set1_ps(r.fixed);
  const __m512 v = r.gemm_first ? _mm512_fmadd_ps(y, ra, _mm512_fmadd_ps(res, rr, fixed))
                                : _mm512_fmadd_ps(res, rr, _mm512_fmadd_ps(y, ra, fixed));
  return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(r.lo)), _mm512_set1_ps(r.hi)));
}

INFERON_VNNI inline __m512i add_residual16(const QResidual& r, const void* residual, __m512i q) {
  return add_residual16_bytes(r, _mm_loadu_si128(static_cast<const __m128i*>(residual)), q);
}

// 16 NZ int32 values (NZ = 2 or 4 zmm, in order) as bytes of Q, in the low 16 NZ bytes: narrowed with
// saturation (packs, packus: Q's range for free; one vpermd restores the order the 128-bit lanes of
// the packs interleave), then clamped to [lo, hi] by a byte min / max only where that is narrower.
// QUAD: four vectors in qcsr.hpp's quad order (128-bit lane L of q[v]: columns 16 L + 4 v + 0..3),
// which the packs' interleave itself puts back in column order (no vpermd).
template <class Q, int NZ, bool QUAD = false>
INFERON_VNNI inline __m512i narrow_zmm(const __m512i (&q)[NZ], int32_t lo, int32_t hi) {
  static_assert(NZ == 2 || NZ == 4, "32 or 64 values");
  constexpr bool is_signed = std::is_signed<Q>::value;
  // per 128-bit lane i: 4 values of each q[v] as int16 (w), then as bytes: dword 4 i + v
  const __m512i w0 = _mm512_packs_epi32(q[0], q[1]);
  __m512i w1 = w0;
  if constexpr (NZ == 4) w1 = _mm512_packs_epi32(q[2], q[3]);
  __m512i b = is_signed ? _mm512_packs_epi16(w0, w1) : _mm512_packus_epi16(w0, w1);
  if constexpr (!QUAD) b = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
  if (lo > std::numeric_limits<Q>::min() || hi < std::numeric_limits<Q>::max()) {
    const __m512i l = _mm512_set1_epi8(static_cast<char>(lo)), h = _mm512_set1_epi8(static_cast<char>(hi));
    b = is_signed ? _mm512_min_epi8(_mm512_max_epi8(b, l), h) : _mm512_min_epu8(_mm512_max_epu8(b, l), h);
  }
  return b;
}

// Requantize 16 NZ accumulators of row m (AVX-512 kernels): NZ (2 or 4) zmm (comp included), columns
// n .. n + 16 NZ - 1 all valid, C contiguous; the row's constants are broadcast once. Unclamped
// values are narrowed by narrow_zmm (bit-exact with clamping first); a fused residual needs q clamped
// to the GEMM's own range, and its result lies in Q's.
template <class Q, int NZ>
INFERON_VNNI inline void store_row_zmm(const QGemm& g, const Requant16& k, int64_t m, int64_t n,
                                       const __m512i (&acc)[NZ]) {
  const int64_t at = m * g.ldc + n;
  __m512i q[NZ];
#pragma GCC unroll 4
  for (int v = 0; v < NZ; v++) {
    if (g.add) q[v] = add_residual16(*g.add, static_cast<const uint8_t*>(g.residual) + at + 16 * v, requant16(k, acc[v]));
    else q[v] = requant16<false>(k, acc[v]);
  }
  const __m512i b = g.add ? narrow_zmm<Q, NZ>(q, std::numeric_limits<Q>::min(), std::numeric_limits<Q>::max())
                          : narrow_zmm<Q, NZ>(q, g.lo, g.hi);
  Q* out = static_cast<Q*>(g.c) + at;
  if constexpr (NZ == 4) _mm512_storeu_si512(out, b);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_castsi512_si256(b));
}

// (k: row m's requantization record, requant16_row: built once per row by callers storing several
// column panels of it, since the byte stores may alias g's fields and force them to be reloaded)
template <class Q>
INFERON_VNNI inline void store32_zmm(const QGemm& g, const Requant16& k, int64_t m, int64_t n, __m512i a0, __m512i a1) {
  const __m512i acc[2] = {a0, a1};
  store_row_zmm<Q, 2>(g, k, m, n, acc);
}

template <class Q>
INFERON_VNNI inline void store32_zmm(const QGemm& g, int64_t m, int64_t n, __m512i a0, __m512i a1) {
  store32_zmm<Q>(g, requant16_row(g.rq[m], g.zy, g.lo, g.hi), m, n, a0, a1);
}

}  // namespace qgemm_detail
}  // namespace inferon
