// Inferon kernels: the quantized GEMM with a CSR A (int8 weights stored as single nonzeros,
// inferon.ir.sparse.csr_quad_encode): each row's nonzeros in quads, one vpdpbusd for four of them.
//
// vpdpbusd multiplies the four bytes of each 32-bit lane of B by the four bytes of a broadcast weight
// group. The four need not be consecutive k: for quad (k0, k1, k2, k3) the kernel loads 64 columns of
// each of the four plain uint8 B rows and interleaves them with two rounds of unpacks (bytes, then
// words: 8 shuffles per 4 x 64 bytes) into four vectors of (k0, k1, k2, k3) lanes. Unstructured
// sparsity then costs per nonzero, where block1x4 (qsparse.hpp) pays for every aligned group of four
// k holding one (at 90 % sparsity 34 % of the groups: 3.4 weights' work per nonzero).
//
// The unpacks work within 128-bit lanes, so accumulator v of a 64-column block holds the columns
// 16 L + 4 v + 0..3 in its 128-bit lane L ("quad order"). Requantization is per row, alike for every
// column; the narrowing packs (narrow_zmm<.., QUAD>) restore column order by themselves, and a fused
// residual is put in quad order by one vpermd.
//
// B needs no packing: a 1x1 convolution reads its image in place (row k at b + k * ldb; the last
// column tile by masked loads), a KxK one (dilation 1, any stride) a plain frame (csr_frame: per
// channel and stride phase a bordered plane, as the float kernel's Frame in sparse.hpp) on the
// Ho x Wq wide grid, each block's output rows stored into C by masked stores (WideRuns; with a fused
// residual, or without VNNI, the wide grid is copied into C without the border columns: copy_wide). Anything else (dilation,
// int8 activations, transposed B, a residual that does not fit the wide grid's bytes) first becomes
// plain rows in scratch. Without AVX512-VNNI + BW a scalar loop computes the same integers.
#pragma once

#include "qgemm_base.hpp"
#include "qsparse.hpp"  // (SparseChunk)

namespace inferon {
namespace qgemm_detail {

inline Scratch& csr_tls(int which) {
  // 0: B row offsets, 1: B rows made plain (aligned / flipped / transposed), 2: quads before each row,
  // 3: partial sums between k-chunks
  thread_local Scratch s[4];
  return s[which];
}

// The output runs of one 64-column block of a conv's wide grid (Ho rows of Wq columns) written straight
// into C (rows of Wo): per run of columns inside an output row, the block's bytes masked to it and the
// C offset where the block's first byte would go (run_csr: no wide scratch to copy out of).
struct WideRuns {
  int count = 0;
  __mmask64 mask[10];
  int64_t shift[10];
};

inline WideRuns wide_runs(int64_t n, int64_t wide, int64_t Wq, int64_t Wo) {
  WideRuns r;
  for (int64_t col = n; col < std::min(n + 64, wide);) {
    const int64_t y = col / Wq, x = col % Wq;
    const int64_t end = std::min({n + 64, wide, y * Wq + Wo});  // this output row's columns in the block
    if (x < Wo && end > col) {
      const int64_t a = col - n, len = end - col;
      r.mask[r.count] = (len >= 64 ? ~__mmask64{0} : ((__mmask64{1} << len) - 1)) << a;
      r.shift[r.count++] = y * Wo + x - a;
    }
    col = (y + 1) * Wq;
  }
  return r;
}

// Requantize one 64-column block of row m (accumulators in quad order, comp included) into its Q bytes
// in column order; a fused residual read at columns n .. n + 63 where `mask` has their bit.
template <class Q>
INFERON_VNNI inline __m512i quad_bytes(const QGemm& g, const Requant16& k, int64_t m, int64_t n, const __m512i (&acc)[4],
                                       __mmask64 mask) {
  const int64_t at = m * g.ldc + n;
  __m512i q[4];
  if (g.add) {
    __m512i r = _mm512_maskz_loadu_epi8(mask, static_cast<const uint8_t*>(g.residual) + at);
    r = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
    q[0] = add_residual16_bytes(*g.add, _mm512_castsi512_si128(r), requant16(k, acc[0]));
    q[1] = add_residual16_bytes(*g.add, _mm512_extracti32x4_epi32(r, 1), requant16(k, acc[1]));
    q[2] = add_residual16_bytes(*g.add, _mm512_extracti32x4_epi32(r, 2), requant16(k, acc[2]));
    q[3] = add_residual16_bytes(*g.add, _mm512_extracti32x4_epi32(r, 3), requant16(k, acc[3]));
  } else {
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) q[v] = requant16<false>(k, acc[v]);
  }
  return g.add ? narrow_zmm<Q, 4, true>(q, std::numeric_limits<Q>::min(), std::numeric_limits<Q>::max())
               : narrow_zmm<Q, 4, true>(q, g.lo, g.hi);
}

// Rows [r0, r1) of C, columns n0 .. n0 + ncols - 1 (ncols <= 64 NB, more than 64 (NB - 1)), the
// quads of one k-chunk (row pointers rp); B row k at b + off[k]. MASKED: loads limited to the valid
// columns (B read in place: nothing past it). The int32 sums start at comp (first chunk) or the partial
// sums `part` (NB * 64 per row) and end requantized into C (last chunk) or there; with `runs` (a
// conv's wide grid) block h's bytes go to C's row by runs[h].
template <class Q, class IT, int NB, bool MASKED>
INFERON_VNNI void csr_rows_zmm(const QGemm& g, const uint8_t* b, const int32_t* off, int64_t n0, int64_t ncols,
                               int64_t r0, int64_t r1, const SparseChunk& ch, const WideRuns* runs) {
  const IT* index = static_cast<const IT*>(g.sparse.index);
  const int32_t* rp = ch.rp;
  __mmask64 mk[NB];
  for (int h = 0; h < NB; h++) {
    const int64_t valid = std::min<int64_t>(64, ncols - 64 * h);
    mk[h] = valid >= 64 ? ~__mmask64{0} : (__mmask64{1} << valid) - 1;
  }
  const uint8_t* bn = b + n0;
  for (int64_t m = r0; m < r1; m++) {
    __m512i acc[NB][4];
    __m512i* part = reinterpret_cast<__m512i*>(ch.part + (m - r0) * NB * 64);
    const __m512i c = _mm512_set1_epi32(g.comp[m]);
#pragma GCC unroll 2
    for (int h = 0; h < NB; h++)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) acc[h][v] = ch.first ? c : _mm512_load_si512(part + 4 * h + v);
    for (int32_t j = rp[m]; j < rp[m + 1]; j++) {
      const IT* ix = index + 4 * static_cast<int64_t>(j);
      const uint8_t *p0 = bn + off[ix[0]], *p1 = bn + off[ix[1]], *p2 = bn + off[ix[2]], *p3 = bn + off[ix[3]];
      int32_t w4;
      std::memcpy(&w4, g.a + 4 * static_cast<int64_t>(j), 4);
      const __m512i w = _mm512_set1_epi32(w4);
#pragma GCC unroll 2
      for (int h = 0; h < NB; h++) {
        const __m512i x0 = MASKED ? _mm512_maskz_loadu_epi8(mk[h], p0 + 64 * h) : _mm512_loadu_si512(p0 + 64 * h);
        const __m512i x1 = MASKED ? _mm512_maskz_loadu_epi8(mk[h], p1 + 64 * h) : _mm512_loadu_si512(p1 + 64 * h);
        const __m512i x2 = MASKED ? _mm512_maskz_loadu_epi8(mk[h], p2 + 64 * h) : _mm512_loadu_si512(p2 + 64 * h);
        const __m512i x3 = MASKED ? _mm512_maskz_loadu_epi8(mk[h], p3 + 64 * h) : _mm512_loadu_si512(p3 + 64 * h);
        const __m512i t0 = _mm512_unpacklo_epi8(x0, x1), t1 = _mm512_unpackhi_epi8(x0, x1);
        const __m512i t2 = _mm512_unpacklo_epi8(x2, x3), t3 = _mm512_unpackhi_epi8(x2, x3);
        acc[h][0] = _mm512_dpbusd_epi32(acc[h][0], _mm512_unpacklo_epi16(t0, t2), w);
        acc[h][1] = _mm512_dpbusd_epi32(acc[h][1], _mm512_unpackhi_epi16(t0, t2), w);
        acc[h][2] = _mm512_dpbusd_epi32(acc[h][2], _mm512_unpacklo_epi16(t1, t3), w);
        acc[h][3] = _mm512_dpbusd_epi32(acc[h][3], _mm512_unpackhi_epi16(t1, t3), w);
      }
    }
    if (!ch.last) {
#pragma GCC unroll 2
      for (int h = 0; h < NB; h++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm512_store_si512(part + 4 * h + v, acc[h][v]);
      continue;
    }
    const Requant16 k = requant16_row(g.rq[m], g.zy, g.lo, g.hi);
    Q* row = static_cast<Q*>(g.c) + m * g.ldc;
#pragma GCC unroll 2
    for (int h = 0; h < NB; h++) {
      const __m512i bytes = quad_bytes<Q>(g, k, m, n0 + 64 * h, acc[h], mk[h]);
      if (!runs) {
        _mm512_mask_storeu_epi8(row + n0 + 64 * h, mk[h], bytes);
        continue;
      }
      for (int r = 0; r < runs[h].count; r++) _mm512_mask_storeu_epi8(row + runs[h].shift[r], runs[h].mask[r], bytes);
    }
  }
}

// The same integers, one row at a time (no VNNI, or C not contiguous).
template <class Q, class IT>
void csr_rows_scalar(const QGemm& g, const uint8_t* b, const int32_t* off, int64_t r0, int64_t r1, int32_t* acc) {
  const IT* index = static_cast<const IT*>(g.sparse.index);
  for (int64_t m = r0; m < r1; m++) {
    std::fill(acc, acc + g.N, 0);
    for (int64_t c = 0; c < g.sparse.kchunks; c++) {
      const int32_t* rp = g.sparse.row_ptr + c * (g.M + 1);
      for (int64_t e = 4 * static_cast<int64_t>(rp[m]); e < 4 * static_cast<int64_t>(rp[m + 1]); e++) {
        const int32_t w = g.a[e];
        if (w == 0) continue;
        const uint8_t* row = b + off[index[e]];
        for (int64_t n = 0; n < g.N; n++) acc[n] += w * row[n];
      }
    }
    for (int64_t n = 0; n < g.N; n++) store_scalar<Q>(g, m, n, acc[n]);
  }
}

// The product C = A x B on plain B rows (row k at b + off[k], N columns): column tiles of 128
// (two 64-column blocks) x row ranges of equal quad counts; threads take whole tiles when there are
// at least 4 per thread, else one row range each across all the tiles. Within a task the weight's
// k-chunks one after the other (each chunk's B rows for one tile fit L1; partial sums in between).
template <class Q, class IT>
void csr_product(const QGemm& g, const uint8_t* b, const int32_t* off, bool masked, int level, int T,
                 int64_t Wq = 0, int64_t Wo = 0) {
  const int32_t* rp = g.sparse.row_ptr;
  if (level < 2 || g.ldc_col != 1) {
#pragma omp parallel num_threads(T) if (T > 1)
    {
      thread_local Scratch sums;
      int32_t* acc = reinterpret_cast<int32_t*>(sums.get(static_cast<size_t>(g.N)));
      const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
      csr_rows_scalar<Q, IT>(g, b, off, g.M * tid / nth, g.M * (tid + 1) / nth, acc);
    }
    return;
  }
  const int64_t tiles = (g.N + 127) / 128;
  const int64_t ranges = tiles >= 4 * T ? 1 : T;
  const int64_t kchunks = std::max<int64_t>(1, g.sparse.kchunks);
  const SparseRows rows(g.sparse, g.M, ranges, csr_tls(2));
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles * ranges; t++) {
    const int64_t tile = t % tiles, c = t / tiles;
    const int64_t r0 = rows.row(c), r1 = rows.row(c + 1), n0 = 128 * tile, ncols = std::min<int64_t>(128, g.N - n0);
    if (r0 >= r1) continue;
    const bool two = ncols > 64, mask = masked && ncols % 64 != 0;
    int32_t* part = kchunks > 1 ? reinterpret_cast<int32_t*>(csr_tls(3).get(static_cast<size_t>((r1 - r0) * 128))) : nullptr;
    WideRuns runs[2];
    if (Wq) runs[0] = wide_runs(n0, g.N, Wq, Wo), runs[1] = wide_runs(n0 + 64, g.N, Wq, Wo);
    for (int64_t k = 0; k < kchunks; k++) {
      const SparseChunk ch{k == 0, k + 1 == kchunks, rp + k * (g.M + 1), part};
      const WideRuns* r = Wq ? runs : nullptr;
      if (two) {
        if (mask) csr_rows_zmm<Q, IT, 2, true>(g, b, off, n0, ncols, r0, r1, ch, r);
        else csr_rows_zmm<Q, IT, 2, false>(g, b, off, n0, ncols, r0, r1, ch, r);
      } else {
        if (mask) csr_rows_zmm<Q, IT, 1, true>(g, b, off, n0, ncols, r0, r1, ch, r);
        else csr_rows_zmm<Q, IT, 1, false>(g, b, off, n0, ncols, r0, r1, ch, r);
      }
    }
  }
}

// Channel and tap (i, j) of column k of a conv's A: implicit weight order (c / 4, i, j, c % 4), C
// padded to four (quant.implicit_weight_order), or (c, i, j).
inline void conv_column(const Im2col& q, int64_t k, int64_t& c, int64_t& i, int64_t& j) {
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw;
  const int64_t tap = q.implicit ? k / 4 % taps : k % taps;
  c = q.implicit ? k / (4 * taps) * 4 + k % 4 : k / taps;
  i = tap / q.kw;
  j = tap % q.kw;
}

// The plain frame of a convolution with dilation 1: per input channel c and stride phase (a, b) <
// (min(sh, kh), min(sw, kw)) a plane [Hq][Wq] of bytes holding the bordered image's pixel
// (y sh + a, x sw + b) (pad: the zero point), Hq = Ho + (kh - 1) / sh, Wq = Wo + (kw - 1) / sw. Tap
// (i, j) of channel c for wide-grid column ho * Wq + wo is then byte off[k] + ho * Wq + wo.
inline const uint8_t* csr_frame(const QGemm& g, int T, int32_t* off) {
  const Im2col& q = *g.im2col;
  const int64_t ph = std::min(q.sh, q.kh), pw = std::min(q.sw, q.kw);
  const int64_t Hq = q.Ho + (q.kh - 1) / q.sh, Wq = q.Wo + (q.kw - 1) / q.sw;
  // planes whole cache lines apart (not a multiple of 1 KB: L1 sets): the taps at a plane's start then
  // read aligned (all of a 1x1 conv's, 4 of 9 of a 3x3/2's). A stride-1 KxK conv has one such tap of
  // kh * kw: where the lines would waste an eighth or more its planes are packed (ResNet-50's 7x7 ones:
  // 81 bytes, not 128; the 512-channel frame then fits L1: 1.2x), while strided or 1x1 ones lost so
  // (0.8-0.85x)
  const int64_t lines = (Hq * Wq + 63) / 64 * 64 + ((Hq * Wq + 63) / 64 * 64 % 1024 == 0 ? 64 : 0);
  const bool packed = q.sh == 1 && q.sw == 1 && q.kh * q.kw > 1 && 8 * (lines - Hq * Wq) >= Hq * Wq;
  const int64_t plane = packed ? Hq * Wq : lines;
  const int64_t planes = q.C * ph * pw;
  const int64_t frame_bytes = planes * plane + 128 + Wq * q.kh + q.kw + 64;  // + slack: tiles read past a plane
  uint8_t* xb = reinterpret_cast<uint8_t*>(tls(2).get(static_cast<size_t>(frame_bytes) / 4 + 16));
  const uint8_t pad = g.pad;
  const uint8_t* end = g.b + q.C * q.H * q.W;
  const bool avx2 = use_avx2();
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < planes; p++) {  // plane (c, a, b): bordered, then the image's pixels of that phase
    const int64_t c = p / (ph * pw), a = p / pw % ph, b = p % pw;
    uint8_t* d = xb + p * plane;
    std::memset(d, pad, static_cast<size_t>(Hq * Wq));
    const ColumnRange cr = phase_columns(q, b, Wq);
    if (cr.hi <= cr.lo) continue;
    for (int64_t y = 0; y < Hq; y++) {
      const int64_t h = y * q.sh + a - q.pt;
      if (h < 0 || h >= q.H) continue;
      const uint8_t* s = g.b + (c * q.H + h) * q.W + b - q.pl + cr.lo * q.sw;
      uint8_t* row = d + y * Wq + cr.lo;
      const int64_t n = cr.hi - cr.lo;
      if (q.sw == 1) copy_bytes(row, s, n);
      else if (q.sw == 2 && avx2 && s + 2 * n + 32 <= end) copy_stride2_avx2(row, s, n);
      else
        for (int64_t x = 0; x < n; x++) row[x] = s[x * q.sw];
    }
  }
  std::memset(xb + planes * plane, pad, static_cast<size_t>(frame_bytes - planes * plane));
  // off[k] = channel c's first plane + its tap's plane and position, in the weight's column order
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw;
  std::vector<int64_t> tap(static_cast<size_t>(taps));
  for (int64_t i = 0; i < q.kh; i++)
    for (int64_t j = 0; j < q.kw; j++) tap[i * q.kw + j] = ((i % q.sh) * pw + j % q.sw) * plane + (i / q.sh) * Wq + j / q.sw;
  const int64_t per_channel = ph * pw * plane;
  int64_t k = 0;
  if (q.implicit) {  // (c / 4, i, j, c % 4), channels past C (zero weights) at offset 0
    for (int64_t c4 = 0; c4 < (q.C + 3) / 4; c4++)
      for (int64_t t = 0; t < taps; t++)
        for (int64_t c = 4 * c4; c < 4 * c4 + 4; c++) off[k++] = c < q.C ? static_cast<int32_t>(c * per_channel + tap[t]) : 0;
  } else {
    for (int64_t c = 0; c < q.C; c++)
      for (int64_t t = 0; t < taps; t++) off[k++] = static_cast<int32_t>(c * per_channel + tap[t]);
  }
  return xb;
}

template <class Q>
void run_csr(const QGemm& g, int nt, int level) {
  const double quads = g.sparse.row_ptr[std::max<int64_t>(1, g.sparse.kchunks) * (g.M + 1) - 1];
  // (32-bit offsets: half the table's L1 footprint, 1.07-1.12x on ResNet-50's 14x14 and 7x7 3x3 convs;
  // sparsify keeps B under 2^31 bytes)
  int32_t* off = reinterpret_cast<int32_t*>(csr_tls(0).get(static_cast<size_t>(g.K) + 16));
  const bool fits = !g.add || (g.lo >= std::numeric_limits<Q>::min() && g.hi <= std::numeric_limits<Q>::max());
  const Im2col* q = g.im2col;
  if (q && q->dh == 1 && q->dw == 1 && !g.b_signed && fits && g.ldc_col == 1) {
    // a frame, the product on its wide grid into scratch, then C without the border columns
    const int64_t Wq = q->Wo + (q->kw - 1) / q->sw, wide = q->Ho * Wq;
    const int T = threads_for(nt, 64.0 * quads * wide, 1 << 20);
    const uint8_t* xb = csr_frame(g, T, off);
    QGemm w = g;
    w.N = wide;
    if (!g.add && level == 2 && Wq >= 8) {  // (VNNI: each block's output rows straight into C: <= 10 runs)
      if (g.sparse.index32) csr_product<Q, int32_t>(w, xb, off, false, level, T, Wq, q->Wo);
      else csr_product<Q, uint16_t>(w, xb, off, false, level, T, Wq, q->Wo);
      return;
    }
    Q* cw = reinterpret_cast<Q*>(tls(0).get(static_cast<size_t>(g.M * wide) / 4 + 16));
    w.c = cw;
    w.ldc = wide;
    w.add = nullptr;
    if (g.sparse.index32) csr_product<Q, int32_t>(w, xb, off, false, level, T);
    else csr_product<Q, uint16_t>(w, xb, off, false, level, T);
    copy_wide<Q>(g, cw, wide, Wq, T);
    return;
  }
  const int T = threads_for(nt, 64.0 * quads * g.N, 1 << 20);
  // B as plain uint8 rows [K][N]: the operand itself where its rows are whole cache lines apart, else
  // (unaligned 64-byte loads cost up to twice as much) its rows copied that far apart, as are its
  // im2col rows and a flipped (int8) or transposed B
  BView v = g.im2col ? b_view(g, nt) : BView{g.b, g.ldb, g.b_trans};
  const bool aligned = !v.trans && !g.b_signed && v.ld % 64 == 0 && reinterpret_cast<uintptr_t>(v.p) % 64 == 0;
  if (!aligned && level == 2) {
    const int64_t ld = (g.N + 63) / 64 * 64;
    uint8_t* rows = reinterpret_cast<uint8_t*>(csr_tls(1).get(static_cast<size_t>(g.K * ld) / 4 + 16));
    const uint8_t flip = g.b_signed ? 0x80 : 0;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t k = 0; k < g.K; k++) {
      uint8_t* d = rows + k * ld;
      if (!v.trans && !flip) std::memcpy(d, v.p + k * v.ld, static_cast<size_t>(g.N));
      else
        for (int64_t n = 0; n < g.N; n++) d[n] = static_cast<uint8_t>(v.at(k, n) ^ flip);
    }
    v = BView{rows, ld, false};
  } else if (v.trans || g.b_signed) {  // (the scalar loop: a flipped / transposed copy)
    uint8_t* rows = reinterpret_cast<uint8_t*>(csr_tls(1).get(static_cast<size_t>(g.K * g.N) / 4 + 16));
    const uint8_t flip = g.b_signed ? 0x80 : 0;
    for (int64_t k = 0; k < g.K; k++)
      for (int64_t n = 0; n < g.N; n++) rows[k * g.N + n] = static_cast<uint8_t>(v.at(k, n) ^ flip);
    v = BView{rows, g.N, false};
  }
  for (int64_t k = 0; k < g.K; k++) off[k] = static_cast<int32_t>(k * v.ld);
  // (a copy's rows are padded to whole 64-column blocks: only B in place needs masked loads)
  const bool masked = v.p == g.b;
  if (g.sparse.index32) csr_product<Q, int32_t>(g, v.p, off, masked, level, T);
  else csr_product<Q, uint16_t>(g, v.p, off, masked, level, T);
}

}  // namespace qgemm_detail
}  // namespace inferon
