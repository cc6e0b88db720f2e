// Inferon kernels: quantized GEMM, C = requantize(A (s8 weights) x B (8-bit activations)).
//
// C[m, n] = clamp(round_half_even((acc[m, n] + comp[m]) * M[m]) + zy, lo, hi) with
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
// multiply-adds; pairs of whole panels as one 6 x 64 zmm tile, tile_vnni_zmm), AVX2 with a
// pair-safe A (QGemm::fix: 6 x 16 tile, vpmaddubsw + vpmaddwd, exact
// because no weight pair can saturate the int16 sums; the sparse corrections back to the true
// weights are added to the sums by every kernel, fix_tile), AVX2 otherwise (6 x 8 tile: A and B
// widened to int16, vpmaddwd, exact), scalar. The requantization is fixed point on the exact
// product (requant.hpp: M[m] = mult / 2^shift), bit-exact with the numpy reference
// (inferon.ir.quant) and ONNX's rounding rule. A fused residual (QResidual: QLinearAdd after the GEMM) adds the
// requantized value to the residual at C's position with qadd's float steps (quant.hpp), so the
// fused result is bit-exact with the unfused pair.
//
// Special paths: stride-1 convolutions read B in place from an interleaved frame (run_implicit),
// N == 1 is a GEMV (gemv_vnni), an A packed as vector lanes (few columns) runs qlanes.hpp, a
// block-sparse A runs the kernels of qsparse.hpp against the same B panels, a CSR A qcsr.hpp (plain B
// rows, no packing). Files: qgemm_base.hpp (QGemm, B packing, epilogue), qlanes.hpp, qsparse.hpp,
// qcsr.hpp, this file (dense kernels and the dispatch,
// qgemm()).
#pragma once

#include "qgemm_base.hpp"
#include "qlanes.hpp"
#include "qcsr.hpp"
#include "qsparse.hpp"

namespace inferon {
namespace qgemm_detail {

// ----------------------------------------------------------------------------------- kernels

// VNNI: 6 rows x (8 * NV) columns; a: [K4][6][4], b: [K4][8 * NV][4]. The accumulators start at
// comp (one per row); fully unrolled so that GCC keeps all 6 * NV of them in registers.
// With `rowoff` (implicit convolution, see run_implicit), k-group k4 of the tile's columns is the
// 8 * NV * 4 bytes at b + rowoff[k4] instead.
template <class Q, int NV>
INFERON_VNNI void tile_vnni(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int64_t m0,
                            int64_t n0, const int64_t* rowoff = nullptr) {
  const int rows = static_cast<int>(std::min<int64_t>(QMR, g.M - m0));
  __m256i acc[QMR][NV];
  init_tile<NV>(g, acc, m0, rows);
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
  if (g.fix)
    fix_tile<NV>(g, out, m0, rows, [&](int64_t k4) { return b + (rowoff ? rowoff[k4] : k4 * (32 * NV)); });
  if (NV == 4 && n0 + 32 <= g.N && g.ldc_col == 1) {
    for (int r = 0; r < rows; r++)
      store32_zmm<Q>(g, m0 + r, n0, _mm512_inserti64x4(_mm512_castsi256_si512(out[r][0]), out[r][1], 1),
                     _mm512_inserti64x4(_mm512_castsi256_si512(out[r][2]), out[r][3], 1));
    return;
  }
  store_tile<Q, NV>(g, out, m0, rows, n0);
}

// VNNI on zmm: 6 rows x 64 columns, two whole 32-column panels b0, b1 ([K4][32][4] each), 24
// accumulators: per k-group the same instructions as tile_vnni<4> for twice the columns, and one
// broadcast of each row's requantization constants per 64 outputs. Dense A without corrections,
// all 64 columns inside N. With `rowoff` (implicit convolution), k-group k4 of each panel is at
// b0 / b1 + rowoff[k4].
template <class Q>
INFERON_VNNI void tile_vnni_zmm(const QGemm& g, const int8_t* a, const uint8_t* b0, const uint8_t* b1, int64_t K4,
                                int64_t m0, int64_t n0, const int64_t* rowoff = nullptr) {
  const int rows = static_cast<int>(std::min<int64_t>(QMR, g.M - m0));
  __m512i acc[QMR][4];
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++) {
    const __m512i c = _mm512_set1_epi32(r < rows ? g.comp[m0 + r] : 0);
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) acc[r][v] = c;
  }
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const int64_t off = rowoff ? rowoff[k4] : k4 * 128;
    const __m512i* p0 = reinterpret_cast<const __m512i*>(b0 + off);
    const __m512i* p1 = reinterpret_cast<const __m512i*>(b1 + off);
    const __m512i bv[4] = {_mm512_loadu_si512(p0), _mm512_loadu_si512(p0 + 1), _mm512_loadu_si512(p1),
                           _mm512_loadu_si512(p1 + 1)};
    const int8_t* ak = a + k4 * (4 * QMR);
#pragma GCC unroll 6
    for (int r = 0; r < QMR; r++) {
      int32_t a4;
      std::memcpy(&a4, ak + 4 * r, 4);
      const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], bv[v], av);
    }
  }
  // a copy for the epilogue: indexing `acc` by the run-time row would keep it in memory
  __m512i out[QMR][4];
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) out[r][v] = acc[r][v];
  for (int r = 0; r < rows; r++) store_row_zmm<Q, 4>(g, requant16_row(g.rq[m0 + r], g.zy, g.lo, g.hi), m0 + r, n0, out[r]);
}

// AVX2 without VNNI, A not pair-safe (no QGemm::fix): 6 rows x 8 columns of a 32-column panel (b:
// [K4][width][4] uint8, the tile's columns at b + 4 * c0 of each k-group). vpmaddubsw could saturate
// int16 pair sums (255 * 127 * 2), so both operands are widened to int16 and vpmaddwd multiplies them exactly: the tile's A
// panel comes widened ([K4][6][4] int16, widen_s8), so a row's k-group is one 64-bit broadcast,
// and B is widened by one vpmovzxbw per 4 columns and k-group.
template <class Q>
INFERON_AVX2 void tile_avx2(const QGemm& g, const int16_t* aw, const uint8_t* b, int64_t stride, int64_t K4,
                            int64_t m0, int64_t n0) {
  __m256i lo[QMR], hi[QMR];  // columns 0-3 / 4-7, two partial sums per column
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++) lo[r] = hi[r] = _mm256_setzero_si256();
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const uint8_t* bk = b + k4 * stride;
    const __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk)));
    const __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk + 16)));
    const int16_t* ak = aw + k4 * (4 * QMR);
#pragma GCC unroll 6
    for (int r = 0; r < QMR; r++) {
      int64_t a4;
      std::memcpy(&a4, ak + 4 * r, 8);
      const __m256i av = _mm256_set1_epi64x(a4);
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(b0, av));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(b1, av));
    }
  }
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0);
  const int cols = static_cast<int>(std::min<int64_t>(8, g.N - n0));
  for (int r = 0; r < rows; r++) {
    // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7] -> reorder to c0..c7
    const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xD8);
    store8<Q>(g, row_requant(g, m0 + r), m0 + r, n0, cols, s);
  }
}

// AVX2 with a pair-safe A (QGemm::fix): 6 rows x 8 NV columns of a 32-column panel, the VNNI tile's
// data flow with vpmaddubsw + vpmaddwd (against ones) in place of each vpdpbusd. No int16 pair sum
// can saturate: a same-sign weight pair sums to at most 128 in magnitude (255 * 128 < 2^15), and a
// mixed-sign pair to at most 255 * 128. The corrections (fix_tile) restore the true weights.
// With `rowoff` (implicit convolution, see run_implicit) k-group k4 is at b + rowoff[k4], not b + k4 * stride.
template <class Q, int NV>
INFERON_AVX2 void tile_avx2_u8(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t stride, int64_t K4,
                               int64_t m0, int64_t n0, const int64_t* rowoff = nullptr) {
  const int rows = static_cast<int>(std::min<int64_t>(QMR, g.M - m0));
  __m256i acc[QMR][NV];
  init_tile<NV>(g, acc, m0, rows);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const uint8_t* bk = b + (rowoff ? rowoff[k4] : k4 * stride);
    __m256i bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bk + 32 * v));
    const int8_t* ak = a + k4 * (4 * QMR);
#pragma GCC unroll 6
    for (int r = 0; r < QMR; r++) {
      int32_t a4;
      std::memcpy(&a4, ak + 4 * r, 4);
      const __m256i av = _mm256_set1_epi32(a4);
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++)
        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(bv[v], av), ones));
    }
  }
  __m256i out[QMR][NV];  // (a copy: taking acc's address would keep it in memory)
#pragma GCC unroll 6
  for (int r = 0; r < QMR; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) out[r][v] = acc[r][v];
  fix_tile<NV>(g, out, m0, rows, [&](int64_t k4) { return b + (rowoff ? rowoff[k4] : k4 * stride); });
  store_tile<Q, NV>(g, out, m0, rows, n0);
}

template <class Q>
inline void tile_scalar(const QGemm& g, const int8_t* a, const uint8_t* b, int64_t K4, int NR, int64_t m0,
                        int64_t n0) {
  const int64_t rows = std::min<int64_t>(QMR, g.M - m0), cols = std::min<int64_t>(NR, g.N - n0);
  for (int r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) {
      int32_t acc = g.fix ? fix_scalar(g, m0 + r, b, NR, j) : 0;
      for (int64_t k4 = 0; k4 < K4; k4++)
        for (int t = 0; t < 4; t++)
          acc += static_cast<int32_t>(a[(k4 * QMR + r) * 4 + t]) * static_cast<int32_t>(b[(k4 * NR + j) * 4 + t]);
      store_scalar<Q>(g, m0 + r, n0 + j, acc);
    }
}

// dst[4 e + t] = src[t][e] ^ flip for e < w (a null src[t] reads `pads`, 32 bytes of the pad value);
// the last w % 32 through zero-padded copies.
INFERON_AVX2 inline void interleave32(const uint8_t* const (&src)[4], __m256i f, uint8_t* dst) {
  __m256i v[4];
  for (int t = 0; t < 4; t++) v[t] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t])), f);
  const __m256i ab_lo = _mm256_unpacklo_epi8(v[0], v[1]), ab_hi = _mm256_unpackhi_epi8(v[0], v[1]);
  const __m256i cd_lo = _mm256_unpacklo_epi8(v[2], v[3]), cd_hi = _mm256_unpackhi_epi8(v[2], v[3]);
  const __m256i q0 = _mm256_unpacklo_epi16(ab_lo, cd_lo), q1 = _mm256_unpackhi_epi16(ab_lo, cd_lo);
  const __m256i q2 = _mm256_unpacklo_epi16(ab_hi, cd_hi), q3 = _mm256_unpackhi_epi16(ab_hi, cd_hi);
  __m256i* o = reinterpret_cast<__m256i*>(dst);
  _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(q0, q1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(q2, q3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(q0, q1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(q2, q3, 0x31));
}

INFERON_AVX2 inline void interleave_row(const uint8_t* const (&src)[4], const uint8_t* pads, int64_t w, uint8_t flip,
                                 uint8_t* dst) {
  const __m256i f = _mm256_set1_epi8(static_cast<char>(flip));
  int64_t e = 0;
  for (; e + 32 <= w; e += 32) {
    const uint8_t* s[4];
    for (int t = 0; t < 4; t++) s[t] = src[t] ? src[t] + e : pads;
    interleave32(s, f, dst + 4 * e);
  }
  if (e < w) {
    alignas(32) uint8_t tail[4][32] = {}, out[128];
    const uint8_t* s[4];
    for (int t = 0; t < 4; t++) {
      copy_bytes(tail[t], src[t] ? src[t] + e : pads, w - e);
      s[t] = tail[t];
    }
    interleave32(s, f, out);
    copy_bytes(dst + 4 * e, out, 4 * (w - e));
  }
}

// Implicit convolution (Im2col::implicit: stride 1, dilation 1; VNNI, or AVX2 with a pair-safe A where kw - 1 is
// at most kImplicitWaste of the wide row). The GEMM's K runs over
// (channel group c4 of 4, tap i, tap j, channel in group) (the compiler orders the weights so, channels
// padded to a multiple of 4 with zero weights), and the image is copied once into an interleaved,
// zero-point-bordered frame [C4][Hp][Wp][4] (Hp = Ho + kh - 1, Wp = Wo + kw - 1): there the 4 bytes
// of k-group (c4, i, j) for output pixel (ho, wo) sit at c4 * Hp*Wp*4 + ((ho + i) * Wp + wo + j) * 4, so
// the packed-panel layout [k4][32 columns][4] is the frame itself, shifted per k-group: no im2col,
// no packing. The product runs on the Ho x Wp "wide" grid into a scratch C; the Wp - Wo border
// columns of each output row are dropped when it is copied into C (a fused residual is added there).
// A block-sparse A (VNNI) runs its row kernel (qsparse.hpp) on the same frame: block j's k-group at
// rowoff[index[j]], panels 128 bytes apart. Elsewhere (other instruction sets, a block-sparse A
// without VNNI, a residual whose GEMM range does not fit C's type) the im2col rows follow the same
// K order.
//
// implicit_frame builds the frame and rowoff[K4] (the offset of each k-group's tap) and returns it;
// with strides / dilations (the lanes kernels) the frame spans (Ho - 1) sh + (kh - 1) dh + 1 rows and
// its columns likewise (frame_width), and tap (i, j) sits at (i dh Wp + j dw) * 4.

constexpr double kImplicitWaste = 0.1;

inline const uint8_t* implicit_frame(const QGemm& g, int T, int64_t* rowoff) {
  const Im2col& q = *g.im2col;
  const int64_t C4 = (q.C + 3) / 4, Hp = frame_height(q);
  const int64_t Wp = frame_width(q), plane = Hp * Wp * 4;
  const int64_t K4 = C4 * q.kh * q.kw;
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
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const int64_t c4 = k4 / (q.kh * q.kw), i = (k4 / q.kw) % q.kh, j = k4 % q.kw;
    rowoff[k4] = c4 * plane + (i * q.dh * Wp + j * q.dw) * 4;
  }
  return xb;
}

// The frame of a strided convolution (dilation 1) for the block-sparse kernel, split into stride
// phases as the float sparse kernel's (sparse.hpp, Frame): per channel group c4 and phase (a, b) <
// (min(sh, kh), min(sw, kw)) a plane [Hq][Wq][4] holding the bordered image's pixel (y sh + a, x sw + b),
// Hq = Ho + (kh - 1) / sh, Wq = Wo + (kw - 1) / sw. Tap (i, j) of output (ho, wo) is then pixel
// (ho + i / sh, wo + j / sw) of phase (i % sh, j % sw): the product runs on the Ho x Wq wide grid with
// one offset per k-group, rowoff[(c4, i, j)]. With stride 1 this is implicit_frame's frame.
inline int64_t phase_width(const Im2col& q) { return q.Wo + (q.kw - 1) / q.sw; }

inline const uint8_t* phase_frame(const QGemm& g, int T, int64_t* rowoff) {
  const Im2col& q = *g.im2col;
  const int64_t ph = std::min<int64_t>(q.sh, q.kh), pw = std::min<int64_t>(q.sw, q.kw);
  // planes a whole number of cache lines apart (1x1 convs: every block's loads aligned), not a
  // multiple of 1 KB (their rows would share a few L1 sets)
  const int64_t Hq = q.Ho + (q.kh - 1) / q.sh, Wq = phase_width(q);
  const int64_t plane = (Hq * Wq * 4 + 63) / 64 * 64 + ((Hq * Wq * 4 + 63) / 64 * 64 % 1024 == 0 ? 64 : 0);
  const int64_t C4 = (q.C + 3) / 4, planes = C4 * ph * pw;
  const int64_t frame_bytes = planes * plane + 4 * (32 * 4 + Wq * q.kh);  // + slack: the last panel reads past
  uint8_t* xb = reinterpret_cast<uint8_t*>(tls(2).get(static_cast<size_t>(frame_bytes) / 4 + 16));
  const uint8_t flip = g.b_signed ? 0x80 : 0, pad = static_cast<uint8_t>(g.pad ^ flip);
  const uint32_t pad4 = 0x01010101u * pad;
  std::vector<ColumnRange> cols(pw);  // per phase b: the frame columns whose image column exists
  for (int64_t b = 0; b < pw; b++) cols[b] = phase_columns(q, b, Wq);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    thread_local Scratch line_s;
    uint32_t* line = reinterpret_cast<uint32_t*>(line_s.get(static_cast<size_t>(q.W) + 8));
    alignas(32) uint8_t pads[32];
    std::memset(pads, g.pad, 32);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < C4 * ph * Hq; r++) {  // frame rows (c4, a, y): one image row, all its b phases
      const int64_t c4 = r / (ph * Hq), a = r / Hq % ph, y = r % Hq, h = y * q.sh + a - q.pt;
      uint8_t* rows = xb + (c4 * ph + a) * pw * plane + y * Wq * 4;  // phase b's row at + b * plane
      if (h < 0 || h >= q.H) {
        for (int64_t b = 0; b < pw; b++) std::memset(rows + b * plane, pad, static_cast<size_t>(Wq * 4));
        continue;
      }
      const uint8_t* src[4];
      for (int t = 0; t < 4; t++) src[t] = 4 * c4 + t < q.C ? g.b + ((4 * c4 + t) * q.H + h) * q.W : nullptr;
      interleave_row(src, pads, q.W, flip, reinterpret_cast<uint8_t*>(line));
      for (int64_t b = 0; b < pw; b++) {
        uint32_t* d = reinterpret_cast<uint32_t*>(rows + b * plane);
        const uint32_t* sl = line + b - q.pl;
        for (int64_t x = 0; x < cols[b].lo; x++) d[x] = pad4;
        for (int64_t x = cols[b].lo; x < cols[b].hi; x++) d[x] = sl[x * q.sw];
        for (int64_t x = cols[b].hi; x < Wq; x++) d[x] = pad4;
      }
    }
  }
  std::memset(xb + planes * plane, pad, static_cast<size_t>(frame_bytes - planes * plane));
  for (int64_t k4 = 0; k4 < C4 * q.kh * q.kw; k4++) {
    const int64_t c4 = k4 / (q.kh * q.kw), i = (k4 / q.kw) % q.kh, j = k4 % q.kw;
    rowoff[k4] = ((c4 * ph + i % q.sh) * pw + j % q.sw) * plane + ((i / q.sh) * Wq + j / q.sw) * 4;
  }
  return xb;
}

// VNNI: 32-column panels of the wide grid; AVX2 with a pair-safe A (level 1): 16 columns. A
// block-sparse A (VNNI only) reads the phase frame where strided, a dense one implicit_frame (stride 1).
template <class Q>
void run_implicit(const QGemm& g, int T, int level) {
  const Im2col& q = *g.im2col;
  const int64_t NR = level == 2 ? 32 : 16;
  const bool sparse = g.sparse.row_ptr != nullptr;
  const int64_t Wp = sparse ? phase_width(q) : q.Wo + q.kw - 1, wide = q.Ho * Wp, panels = (wide + NR - 1) / NR;
  const int64_t K4 = (q.C + 3) / 4 * q.kh * q.kw;
  int64_t* rowoff = reinterpret_cast<int64_t*>(tls(1).get(static_cast<size_t>(2 * K4)));
  const bool unit = q.sh == 1 && q.sw == 1;  // (stride 1: the two frames are alike)
  const uint8_t* xb = sparse && !unit ? phase_frame(g, T, rowoff) : implicit_frame(g, T, rowoff);
  Q* cw = reinterpret_cast<Q*>(tls(0).get(static_cast<size_t>(g.M * wide) / 4 + 16));
  QGemm w = g;
  w.N = wide;
  w.c = cw;
  w.ldc = wide;
  w.add = nullptr;  // a fused residual is added in the copy out of the wide grid
  const int64_t mpanels = (g.M + QMR - 1) / QMR;
  if (sparse) {  // block1x4 A (VNNI): each block's k-group read from the frame at rowoff[group]
    if (g.sparse.index32) run_sparse<Q, int32_t>(w, xb, 128, panels, level, T, rowoff);
    else run_sparse<Q, uint16_t>(w, xb, 128, panels, level, T, rowoff);
  } else {
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t t = 0; t < mpanels * panels; t++) {
      const int64_t mp = t / panels, p = t % panels;
      const int8_t* a = g.a + mp * K4 * 4 * QMR;
      if (level == 2) {  // pairs of panels as 64-column zmm tiles where both lie inside the wide grid
        if (p % 2 == 1) continue;
        if ((p + 2) * 32 <= wide && g.fix == nullptr) {
          tile_vnni_zmm<Q>(w, a, xb + p * 128, xb + p * 128 + 128, K4, mp * QMR, p * 32, rowoff);
          continue;
        }
        for (int64_t r = p; r < std::min<int64_t>(p + 2, panels); r++)
          tile_vnni<Q, 4>(w, a, xb + r * 128, K4, mp * QMR, r * 32, rowoff);
      } else {
        tile_avx2_u8<Q, 2>(w, a, xb + p * 64, 0, K4, mp * QMR, p * 16, rowoff);
      }
    }
  }
  copy_wide<Q>(g, cw, wide, Wp, T);
}

// A packed as vector lanes (QGemm::a_lanes, few columns; see qlanes.hpp): the B tables, then the tiles.
template <class Q>
void run_lanes(const QGemm& g, int level, int nt) {
  const int64_t K4 = (g.K + 3) / 4;
  const int T = threads_for(nt, static_cast<double>(g.M) * g.N * g.K, 1 << 20);
  int64_t* rowoff = reinterpret_cast<int64_t*>(tls(4).get(static_cast<size_t>(2 * (K4 + g.N)) + 16));
  int64_t* colbase = rowoff + K4;
  LanesB b{nullptr, rowoff, colbase};
  // read in place from the bordered frame (a strided 1x1 conv without padding: its im2col rows, direct
  // copies of the pixels it reads, are a quarter of the frame or less)
  if (g.im2col && g.im2col->implicit && !unpadded_1x1(*g.im2col)) {
    const Im2col& q = *g.im2col;
    b.base = implicit_frame(g, T, rowoff);
    const int64_t Wp = frame_width(q);
    for (int64_t n = 0; n < g.N; n++) colbase[n] = ((n / q.Wo) * q.sh * Wp + (n % q.Wo) * q.sw) * 4;
    return run_lanes_tiles<Q>(g, b, level, T);
  }
  const BView view = b_view(g, nt);
  // B interleaved into [K4][N][4] (k past K: zero, against zero weights)
  uint8_t* G = reinterpret_cast<uint8_t*>(tls(0).get(static_cast<size_t>(K4 * g.N) + 16));
  const uint8_t flip = g.b_signed ? 0x80 : 0;
  alignas(32) static const uint8_t zeros[32] = {};
  const bool simd = level >= 1 && !view.trans;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t k4 = 0; k4 < K4; k4++) {
    uint8_t* dst = G + k4 * 4 * g.N;
    if (simd) {
      const uint8_t* src[4];
      for (int t = 0; t < 4; t++) src[t] = 4 * k4 + t < g.K ? view.p + (4 * k4 + t) * view.ld : nullptr;
      interleave_row(src, zeros, g.N, flip, dst);
    } else {
      for (int64_t n = 0; n < g.N; n++)
        for (int t = 0; t < 4; t++) {
          const int64_t k = 4 * k4 + t;
          dst[4 * n + t] = k < g.K ? static_cast<uint8_t>(view.at(k, n) ^ flip) : 0;
        }
    }
    rowoff[k4] = k4 * 4 * g.N;
  }
  for (int64_t n = 0; n < g.N; n++) colbase[n] = 4 * n;
  b.base = G;
  run_lanes_tiles<Q>(g, b, level, T);
}

// N == 1 (a fully-connected layer at batch 1) with VNNI: one vpdpbusd per k-group and 6-row panel
// (the panel's 24 weight bytes against the broadcast 4 activation bytes), instead of a whole register
// tile for one column; bound by the weight stream. Each k-group is one plain 32-byte load (lanes 6-7
// read the next group's bytes and are ignored; masked only where that would pass the end of A),
// four k-groups in flight.
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
    // k-groups whose 32-byte load stays inside A (the last panel's last one would read 8 bytes past)
    const int64_t plain = mp == mpanels - 1 ? K4 - 1 : K4;
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    int64_t k4 = 0;
    for (; k4 + 4 <= plain; k4 += 4)
#pragma GCC unroll 4
      for (int u = 0; u < 4; u++) {
        int32_t x;
        std::memcpy(&x, xg + 4 * (k4 + u), 4);
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + (k4 + u) * 24));
        acc[u] = _mm256_dpbusd_epi32(acc[u], _mm256_set1_epi32(x), w);
      }
    for (; k4 < K4; k4++) {
      int32_t x;
      std::memcpy(&x, xg + 4 * k4, 4);
      const int8_t* w = a + k4 * 24;
      acc[0] = _mm256_dpbusd_epi32(acc[0], _mm256_set1_epi32(x),
                                   k4 < plain ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))
                                              : _mm256_maskload_epi32(reinterpret_cast<const int*>(w), six));
    }
    alignas(32) int32_t sums[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums),
                       _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3])));
    for (int r = 0; r < QMR && mp * QMR + r < g.M; r++) store_scalar<Q>(g, mp * QMR + r, 0, sums[r]);
  }
}

template <class Q>
void run(const QGemm& g, int nt) {
  const int level = use_vnni() ? 2 : use_avx2() ? 1 : 0;
  if (g.a_lanes) return run_lanes<Q>(g, level, nt);
  if (g.sparse.quads) return run_csr<Q>(g, nt, level);
  if (g.N == 1 && level == 2 && g.im2col == nullptr && g.add == nullptr && g.fix == nullptr) {
    const int T = threads_for(nt, static_cast<double>(g.M) * g.K, 1 << 20);
    if (g.sparse.row_ptr == nullptr) return gemv_vnni<Q>(g, T);
    if (g.sparse.index32) return sparse_gemv_vnni<Q, int32_t>(g, T);
    return sparse_gemv_vnni<Q, uint16_t>(g, T);
  }
  // (a block-sparse A of a 1x1 conv: measured 2-3 % slower in place on ResNet-50 than through packed,
  // aligned panels; KxK convs read their frame in place, below)
  const bool unit_steps = g.im2col && g.im2col->sh == 1 && g.im2col->sw == 1 && g.im2col->dh == 1 && g.im2col->dw == 1;
  // AVX2 (pair-safe A) where the wide grid's kw - 1 dropped columns per row cost less than im2col and
  // packing: at most kImplicitWaste of the columns computed (ResNet-50's 56x56 / 28x28 3x3 layers)
  const bool implicit_avx2 = level == 1 && g.fix && unit_steps &&
                             (g.im2col->kw - 1) <= kImplicitWaste * (g.im2col->Wo + g.im2col->kw - 1);
  // (a fused residual is added when the wide grid's bytes are copied out: they must hold the GEMM's range)
  const bool residual_fits = !g.add || (g.lo >= std::numeric_limits<Q>::min() && g.hi <= std::numeric_limits<Q>::max());
  // (a block-sparse A with VNNI: KxK convs of any stride, on the phase frame; strided 1x1 convs were
  // 1.5x slower so than through im2col and packed panels: building the frame from short rows)
  const bool sparse_frame = g.sparse.row_ptr && level == 2 && g.im2col && g.im2col->dh == 1 && g.im2col->dw == 1 &&
                            g.im2col->kh * g.im2col->kw > 1;
  if (g.im2col && g.im2col->implicit && g.ldc_col == 1 && residual_fits &&
      (sparse_frame || (unit_steps && (level == 2 || implicit_avx2) && g.sparse.row_ptr == nullptr))) {
    const Im2col& q = *g.im2col;
    const double work = static_cast<double>(g.M) * q.Ho * (q.Wo + q.kw - 1) * g.K;
    return run_implicit<Q>(g, threads_for(nt, work, 1 << 20), level);
  }
  const bool sparse = g.sparse.row_ptr != nullptr;
  // 32-column panels for the SIMD kernels (block-sparse AVX2 rows read 8-column ones)
  const int NR = level == 2 || (level == 1 && !sparse) ? 32 : 8;
  const int64_t K4 = (g.K + 3) / 4;
  const int64_t panels = (g.N + NR - 1) / NR, mpanels = (g.M + QMR - 1) / QMR;
  const size_t panel_bytes = static_cast<size_t>(K4) * NR * 4;
  // the last panel is only as wide as needed, in whole vectors of 8 columns (VNNI)
  // (full width for a block-sparse A, whose kernels address every panel alike)
  const int last_nr = level >= 1 && !sparse ? static_cast<int>(((g.N - (panels - 1) * NR) + 7) / 8 * 8) : NR;
  const double work = static_cast<double>(g.M) * g.N * g.K;
  // (one column: bound by the weight stream, worth splitting from a quarter of the size)
  const int T = threads_for(nt, work, g.N == 1 ? 1 << 18 : 1 << 20);

  const BView view = b_view(g, nt);
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
  // Several threads, a small A and a larger B (VNNI): column-panel major, so that each thread's
  // contiguous range of tiles covers the column panels it packed itself (the packing loop splits the
  // panels alike): B never crosses cores, and A (all row panels) stays in cache.
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>((256 * 1024) / panel_bytes));
  const bool a_outer = g.M * g.K > g.N * g.K || panels <= chunk;
  const bool p_major = T > 1 && level == 2 && !(g.M * g.K > g.N * g.K) && g.M * g.K <= 256 * 1024;
  const int64_t tiles = mpanels * panels;
  // VNNI, dense A, contiguous C: pairs of panels as 64-column zmm tiles (tile_vnni_zmm)
  const bool zmm_pairs = level == 2 && g.fix == nullptr && g.ldc_col == 1;
  const auto tile_at = [&](int64_t t, int64_t& mp, int64_t& p) {
    if (p_major) {
      p = t / mpanels;
      mp = t % mpanels;
    } else if (a_outer) {
      mp = t / panels;
      p = t % panels;
    } else {
      const int64_t c = t / (mpanels * chunk), rem = t - c * mpanels * chunk;
      const int64_t width = std::min(chunk, panels - c * chunk);
      mp = rem / width;
      p = c * chunk + rem % width;
    }
  };
  if (level == 1) {
    // each thread a contiguous range of tiles, widening an A panel when its row panel changes
#pragma omp parallel num_threads(T) if (T > 1)
    {
      const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
      int16_t* aw = g.fix ? nullptr : reinterpret_cast<int16_t*>(tls(3).get(static_cast<size_t>(K4) * 4 * QMR / 2 + 16));
      int64_t widened = -1;
      for (int64_t t = tiles * tid / nth; t < tiles * (tid + 1) / nth; t++) {
        int64_t mp, p;
        tile_at(t, mp, p);
        const uint8_t* b = packed + static_cast<size_t>(p) * panel_bytes;
        const int width = p == panels - 1 ? last_nr : NR;
        if (g.fix) {  // pair-safe A: vpmaddubsw on the packed bytes, 16 columns per tile
          const int8_t* a = g.a + mp * K4 * 4 * QMR;
          int c0 = 0;
          for (; c0 + 16 <= width; c0 += 16) tile_avx2_u8<Q, 2>(g, a, b + 4 * c0, 4 * width, K4, mp * QMR, p * NR + c0);
          if (c0 < width) tile_avx2_u8<Q, 1>(g, a, b + 4 * c0, 4 * width, K4, mp * QMR, p * NR + c0);
          continue;
        }
        if (mp != widened) widen_s8(g.a + mp * K4 * 4 * QMR, K4 * 4 * QMR, aw);
        widened = mp;
        for (int c0 = 0; c0 < width; c0 += 8)
          tile_avx2<Q>(g, aw, b + 4 * c0, 4 * width, K4, mp * QMR, p * NR + c0);
      }
    }
    return;
  }
  // one 32-column panel q (the last one only as wide as needed) on the VNNI ymm tile
  const auto vnni_panel = [&](const int8_t* a, int64_t mp, int64_t q) {
    const uint8_t* bq = packed + static_cast<size_t>(q) * panel_bytes;
    switch (q == panels - 1 ? last_nr / 8 : 4) {
      case 1: tile_vnni<Q, 1>(g, a, bq, K4, mp * QMR, q * NR); break;
      case 2: tile_vnni<Q, 2>(g, a, bq, K4, mp * QMR, q * NR); break;
      case 3: tile_vnni<Q, 3>(g, a, bq, K4, mp * QMR, q * NR); break;
      default: tile_vnni<Q, 4>(g, a, bq, K4, mp * QMR, q * NR); break;
    }
  };
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles; t++) {
    int64_t mp, p;
    tile_at(t, mp, p);
    const int8_t* a = g.a + mp * K4 * 4 * QMR;
    const uint8_t* b = packed + static_cast<size_t>(p) * panel_bytes;
    if (zmm_pairs) {  // panels p, p + 1 as one 64-column tile where both are whole; else one by one
      if (p % 2 == 1) continue;
      if ((p + 2) * NR <= g.N) tile_vnni_zmm<Q>(g, a, b, b + panel_bytes, K4, mp * QMR, p * NR);
      else
        for (int64_t q = p; q < std::min<int64_t>(p + 2, panels); q++) vnni_panel(a, mp, q);
    } else if (level == 2) {
      vnni_panel(a, mp, p);
    } else {
      tile_scalar<Q>(g, a, b, K4, NR, mp * QMR, p * NR);
    }
  }
}

}  // namespace qgemm_detail

// One quantized GEMM (see the top of this file); the output type follows c_signed.
INFERON_ENTRY void qgemm(const QGemm& g, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(QGEMM)
INFERON_ENTRY void qgemm(const QGemm& g, int num_threads) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.c_signed) qgemm_detail::run<int8_t>(g, num_threads);
  else qgemm_detail::run<uint8_t>(g, num_threads);
}
#endif

}  // namespace inferon
