// Inferon kernels: the quantized GEMM with a block-sparse A (block1x4 int8 weights, inferon.ir.sparse):
// rows of blocks against the packed B panels of qgemm.hpp, requantized like the dense kernels.
#pragma once

#include "qgemm_base.hpp"

namespace inferon {
namespace qgemm_detail {

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

// With `rowoff` (an implicit convolution, see qgemm.hpp's run_implicit) the k-group of block j is read at
// b + rowoff[index[j]] (the frame: panels 128 bytes apart, unaligned) instead of b + index[j] * 128.
template <class Q, class IT, int NP, bool FRAME>
INFERON_VNNI void sparse_rows_zmm(const QGemm& g, const uint8_t* b, size_t panel_bytes, int64_t n0, int64_t r0,
                                  int64_t r1, const SparseChunk& ch, const int64_t* rowoff) {
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
      const uint8_t* bk = b + (FRAME ? rowoff[index[j]] : static_cast<int64_t>(index[j]) * 128);
#pragma GCC unroll 4
      for (int p = 0; p < NP; p++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
          acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], FRAME ? _mm512_loadu_si512(bk + p * panel_bytes + 64 * v)
                                                           : _mm512_load_si512(bk + p * panel_bytes + 64 * v), wv);
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
    const Requant16 k = requant16_row(g.rq[m], g.zy, g.lo, g.hi);
    for (int p = 0; p < NP; p++) {
      const int64_t n = n0 + 32 * p;
      if (n + 32 <= g.N && g.ldc_col == 1) {
        store32_zmm<Q>(g, k, m, n, full[p][0], full[p][1]);
        continue;
      }
      for (int v = 0; v < 2; v++) {
        out[p][2 * v] = _mm512_castsi512_si256(full[p][v]);
        out[p][2 * v + 1] = _mm512_extracti64x4_epi64(full[p][v], 1);
      }
      const Requant8 k = row_requant(g, m);
      for (int v = 0; v < 4 && n + 8 * v < g.N; v++)
        store8<Q, false>(g, k, m, n + 8 * v, static_cast<int>(std::min<int64_t>(8, g.N - n - 8 * v)), out[p][v]);
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
    const Requant8 k = row_requant(g, m);
    for (int p = 0; p < NP; p++) {
      const int64_t n = n0 + 8 * p;
      if (n >= g.N) break;
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[p], hi[p]), 0xD8);
      store8<Q>(g, k, m, n, static_cast<int>(std::min<int64_t>(8, g.N - n)), s);
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
// ranges of equal block counts; threads take whole tiles when there are enough of them (at least 4
// per thread: one tile less is a small share), else one row range each across all the tiles (a
// split by tiles there left one thread 16 of ResNet-50's 25 panels at 28x28). Within a task, the
// weight's k-group chunks one after the other.
template <class Q, class IT>
void run_sparse(const QGemm& g, const uint8_t* packed, size_t panel_bytes, int64_t panels, int level, int T,
                const int64_t* rowoff = nullptr) {
  const int per = level == 2 ? INFERON_QSPARSE_PANELS : level == 1 ? 4 : 1;
  const int NR = level == 2 ? 32 : 8;
  const int64_t kchunks = std::max<int64_t>(1, g.sparse.kchunks);
  const int64_t tiles = (panels + per - 1) / per;
  const int64_t chunks = tiles >= 4 * T ? 1 : T;
  const SparseRows rows(g.sparse, g.M, chunks, tls(3));
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t t = 0; t < tiles * chunks; t++) {
    const int64_t tile = t % tiles, c = t / tiles;  // (row range major: thread c has range c)
    const int64_t r0 = rows.row(c), r1 = rows.row(c + 1);
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
        auto rows_zmm = [&](auto frame) {  // frame: std::bool_constant, the B addressing (rowoff or panels)
          constexpr bool F = decltype(frame)::value;
          switch (np) {
            case 1: sparse_rows_zmm<Q, IT, 1, F>(g, b, panel_bytes, n0, r0, r1, ch, rowoff); break;
            case 2: sparse_rows_zmm<Q, IT, 2, F>(g, b, panel_bytes, n0, r0, r1, ch, rowoff); break;
            case 3: sparse_rows_zmm<Q, IT, 3, F>(g, b, panel_bytes, n0, r0, r1, ch, rowoff); break;
            default: sparse_rows_zmm<Q, IT, 4, F>(g, b, panel_bytes, n0, r0, r1, ch, rowoff); break;
          }
        };
        if (rowoff) rows_zmm(std::true_type{});
        else rows_zmm(std::false_type{});
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

// N == 1 with VNNI (a fully-connected layer at batch 1): per row, 8 blocks at a time, their
// activation groups (4 bytes of the flipped, zero-padded x each) loaded by index into one ymm and
// multiplied against the 8 blocks' weights by one vpdpbusd; bound by the weight stream (6 bytes per
// block against 4 per group of a dense row).
template <class Q, class IT>
INFERON_VNNI void sparse_gemv_vnni(const QGemm& g, int T) {
  const int64_t K4 = (g.K + 3) / 4, kchunks = std::max<int64_t>(1, g.sparse.kchunks);
  const BView v{g.b, g.ldb, g.b_trans};
  const uint8_t flip = g.b_signed ? 0x80 : 0;
  int32_t* xg = reinterpret_cast<int32_t*>(tls(1).get(static_cast<size_t>(K4) + 16));
  uint8_t* xb = reinterpret_cast<uint8_t*>(xg);
  for (int64_t k = 0; k < 4 * K4; k++) xb[k] = k < g.K ? static_cast<uint8_t>(v.at(k, 0) ^ flip) : 0;
  const IT* index = static_cast<const IT*>(g.sparse.index);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t m = 0; m < g.M; m++) {
    __m256i acc = _mm256_setzero_si256();
    int32_t tail = 0;
    for (int64_t c = 0; c < kchunks; c++) {
      const int32_t* rp = g.sparse.row_ptr + c * (g.M + 1);
      int32_t j = rp[m];
      for (; j + 8 <= rp[m + 1]; j += 8) {
        const IT* ix = index + j;
        const __m256i x = _mm256_setr_epi32(xg[ix[0]], xg[ix[1]], xg[ix[2]], xg[ix[3]], xg[ix[4]], xg[ix[5]],
                                            xg[ix[6]], xg[ix[7]]);
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.a + 4 * static_cast<int64_t>(j)));
        acc = _mm256_dpbusd_epi32(acc, x, w);
      }
      for (; j < rp[m + 1]; j++) {
        const uint8_t* xq = xb + 4 * static_cast<int64_t>(index[j]);
        const int8_t* wq = g.a + 4 * static_cast<int64_t>(j);
        for (int t = 0; t < 4; t++) tail += static_cast<int32_t>(xq[t]) * wq[t];
      }
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    store_scalar<Q>(g, m, 0, _mm_cvtsi128_si32(s) + tail);
  }
}

}  // namespace qgemm_detail
}  // namespace inferon
