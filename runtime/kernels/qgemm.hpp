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
// reference (inferon.ir.quant).
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "im2col.hpp"

#define INFERON_VNNI __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")))

namespace inferon {

constexpr int QMR = 6;  // rows of a packed A panel (all kernels)

struct QGemm {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* a = nullptr;         // packed panels (see above)
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
};

inline bool use_vnni() {
  static const bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw");
  return ok && isa() >= INFERON_ISA_AVX512;
}

namespace qgemm_detail {

inline Scratch& tls(int which) {
  thread_local Scratch s[2];  // 0: packed B, 1: im2col rows
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

// im2col of one uint8 image into rows [K][N] with the zero point as padding.
inline void im2col_u8(const Im2col& q, const uint8_t* x, uint8_t pad, uint8_t* col, int nt) {
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw, HoWo = q.Ho * q.Wo;
  std::vector<std::vector<Im2colSeg>> plan(static_cast<size_t>(taps));
  for (int i = 0; i < q.kh; i++)
    for (int j = 0; j < q.kw; j++) im2col_segments(q, i, j, 0, HoWo, plan[static_cast<size_t>(i * q.kw + j)]);
  const int T = threads_for(nt, static_cast<double>(q.C * taps) * HoWo, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < q.C * taps; r++) {
    const uint8_t* plane = x + (r / taps) * q.H * q.W;
    uint8_t* d = col + r * HoWo;
    for (const Im2colSeg& s : plan[static_cast<size_t>(r % taps)]) {
      if (s.src < 0) std::memset(d + s.dst, pad, static_cast<size_t>(s.len));
      else if (q.sw == 1) std::memcpy(d + s.dst, plane + s.src, static_cast<size_t>(s.len));
      else for (int64_t t = 0; t < s.len; t++) d[s.dst + t] = plane[s.src + t * q.sw];
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

// Full 32-column panels of a row-major B with AVX2: four rows of 32 bytes interleaved per k-group.
INFERON_AVX2 void pack_panel32_avx2(const BView& v, int64_t K, int64_t n0, uint8_t flip, uint8_t* dst) {
  const int64_t K4 = K / 4;
  const __m256i f = _mm256_set1_epi8(static_cast<char>(flip));
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const uint8_t* r = v.p + 4 * k4 * v.ld + n0;
    __m256i a = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)), f);
    __m256i b = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + v.ld)), f);
    __m256i c = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2 * v.ld)), f);
    __m256i d = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 3 * v.ld)), f);
    __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
    __m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
    __m256i q0 = _mm256_unpacklo_epi16(ab_lo, cd_lo);  // cols 0-3 | 16-19
    __m256i q1 = _mm256_unpackhi_epi16(ab_lo, cd_lo);  // cols 4-7 | 20-23
    __m256i q2 = _mm256_unpacklo_epi16(ab_hi, cd_hi);  // cols 8-11 | 24-27
    __m256i q3 = _mm256_unpackhi_epi16(ab_hi, cd_hi);  // cols 12-15 | 28-31
    __m256i* o = reinterpret_cast<__m256i*>(dst + k4 * 128);
    _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(q0, q1, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(q2, q3, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(q0, q1, 0x31));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(q2, q3, 0x31));
  }
  if (K4 * 4 < K) {  // the last, partial k-group
    for (int j = 0; j < 32; j++)
      for (int t = 0; t < 4; t++) {
        const int64_t k = 4 * K4 + t;
        dst[(K4 * 32 + j) * 4 + t] = k < K ? static_cast<uint8_t>(v.at(k, n0 + j) ^ flip) : 0;
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

template <class Q>
inline void store_scalar(const QGemm& g, int64_t m, int64_t n, int32_t acc) {
  float v = static_cast<float>(acc + g.comp[m]) * g.mult[m];
  v = std::min(std::max(v, static_cast<float>(g.lo - g.zy)), static_cast<float>(g.hi - g.zy));
  const int32_t q = static_cast<int32_t>(std::nearbyint(v)) + g.zy;
  static_cast<Q*>(g.c)[m * g.ldc + n * g.ldc_col] = static_cast<Q>(q);
}

// Requantize 8 accumulators of row m (columns n..n+7, `cols` of them valid) and store them.
template <class Q>
INFERON_AVX2_INLINE void store8(const QGemm& g, int64_t m, int64_t n, int cols, __m256i acc) {
  __m256 v = _mm256_cvtepi32_ps(_mm256_add_epi32(acc, _mm256_set1_epi32(g.comp[m])));
  v = _mm256_mul_ps(v, _mm256_set1_ps(g.mult[m]));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(static_cast<float>(g.lo - g.zy))),
                    _mm256_set1_ps(static_cast<float>(g.hi - g.zy)));
  __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(g.zy));
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

// Requantize 32 accumulators of row m (4 vectors, all columns valid, C contiguous) with one store.
template <class Q>
INFERON_AVX2_INLINE void store32(const QGemm& g, int64_t m, int64_t n, const __m256i* acc) {
  const __m256i comp = _mm256_set1_epi32(g.comp[m]), zy = _mm256_set1_epi32(g.zy);
  const __m256 mult = _mm256_set1_ps(g.mult[m]);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(g.lo - g.zy)), hi = _mm256_set1_ps(static_cast<float>(g.hi - g.zy));
  __m256i q[4];
  for (int v = 0; v < 4; v++) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc[v], comp)), mult);
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    q[v] = _mm256_add_epi32(_mm256_cvtps_epi32(f), zy);
  }
  // packs work per 128-bit lane: [v0 0-3, v1 0-3 | v0 4-7, v1 4-7] -> bytes, then undo the interleave
  const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
  const __m256i b = std::is_signed<Q>::value ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
  const __m256i ordered = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<Q*>(g.c) + m * g.ldc + n), ordered);
}

// ----------------------------------------------------------------------------------- kernels

// VNNI: 6 rows x 32 columns; a: [K4][6][4], b: [K4][32][4]. 24 named accumulators (an array
// makes GCC keep them on the stack), two broadcasts of A in flight.
#define INFERON_QROW(r)                                                                           \
  {                                                                                               \
    int32_t a4;                                                                                   \
    std::memcpy(&a4, ak + 4 * (r), 4);                                                            \
    const __m256i av = _mm256_set1_epi32(a4);                                                     \
    c##r##0 = _mm256_dpbusd_epi32(c##r##0, b0, av);                                               \
    c##r##1 = _mm256_dpbusd_epi32(c##r##1, b1, av);                                               \
    c##r##2 = _mm256_dpbusd_epi32(c##r##2, b2, av);                                               \
    c##r##3 = _mm256_dpbusd_epi32(c##r##3, b3, av);                                               \
  }

template <class Q>
INFERON_VNNI void tile_vnni(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int64_t m0,
                            int64_t n0) {
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
          c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00,
          c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const __m256i* bk = reinterpret_cast<const __m256i*>(b + k4 * 128);
    const int8_t* ak = a + k4 * (4 * QMR);
    const __m256i b0 = _mm256_loadu_si256(bk), b1 = _mm256_loadu_si256(bk + 1);
    const __m256i b2 = _mm256_loadu_si256(bk + 2), b3 = _mm256_loadu_si256(bk + 3);
    INFERON_QROW(0)
    INFERON_QROW(1)
    INFERON_QROW(2)
    INFERON_QROW(3)
    INFERON_QROW(4)
    INFERON_QROW(5)
  }
  const __m256i acc[QMR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                               {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0);
  if (n0 + 32 <= g.N && g.ldc_col == 1) {
    for (int r = 0; r < rows; r++) store32<Q>(g, m0 + r, n0, acc[r]);
    return;
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < 4; v++) {
      const int64_t n = n0 + 8 * v;
      if (n >= g.N) break;
      store8<Q>(g, m0 + r, n, static_cast<int>(std::min<int64_t>(8, g.N - n)), acc[r][v]);
    }
}
#undef INFERON_QROW

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

template <class Q>
void run(const QGemm& g, int nt) {
  const int level = use_vnni() ? 2 : use_avx2() ? 1 : 0;
  const int NR = level == 2 ? 32 : 8;
  const int64_t K4 = (g.K + 3) / 4;
  const int64_t panels = (g.N + NR - 1) / NR, mpanels = (g.M + QMR - 1) / QMR;
  const size_t panel_bytes = static_cast<size_t>(K4) * NR * 4;
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
  uint8_t* packed = reinterpret_cast<uint8_t*>(tls(0).get(panel_bytes * static_cast<size_t>(panels) / 4 + 16));
  const uint8_t flip = g.b_signed ? 0x80 : 0;
  const bool simd_pack = level >= 1 && !view.trans && NR == 32;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < panels; p++) {
    const int64_t n0 = p * NR, nr = std::min<int64_t>(NR, g.N - n0);
    uint8_t* dst = packed + static_cast<size_t>(p) * panel_bytes;
    if (view.trans) pack_panel_trans(view, g.K, n0, nr, NR, flip, dst);
    else if (simd_pack && nr == NR) pack_panel32_avx2(view, g.K, n0, flip, dst);
    else pack_panel_scalar(view, g.K, n0, nr, NR, flip, dst);
  }

  // Tiles in (column chunk, row panel, column panel) order: a chunk of packed B stays in L2 while
  // the A panels stream past it.
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>((256 * 1024) / panel_bytes));
  const int64_t tiles = mpanels * panels;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles; t++) {
    const int64_t c = t / (mpanels * chunk), rem = t - c * mpanels * chunk;
    const int64_t width = std::min(chunk, panels - c * chunk);
    const int64_t mp = rem / width, p = c * chunk + rem % width;
    const int8_t* a = g.a + mp * K4 * 4 * QMR;
    const uint8_t* b = packed + static_cast<size_t>(p) * panel_bytes;
    if (level == 2) tile_vnni<Q>(g, a, b, K4, mp * QMR, p * NR);
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
