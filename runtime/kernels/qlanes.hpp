// Inferon kernels: the quantized GEMM for few columns (QGemm::a_lanes), A's rows as vector lanes.
//
// The row-panel kernels (qgemm.hpp) vectorise along N: 32-column panels, the last one rounded up to
// 8 columns, and stride-1 convolutions on the Ho x (Wo + kw - 1) wide grid. Deep layers at batch 1
// have few columns (7 x 7 = 49: 56 computed, 63 on the wide grid), so there the compiler packs A in
// panels of QLANES = 32 rows, [ceil(M / 32)][K4][32][4] int8, and these kernels vectorise along M:
// two zmm of weights (16 rows x 4 k each) against the broadcast 4-byte k-group of one column, one
// vpdpbusd per 16 rows and column; N costs exactly N columns.
//
// B is read through two offset tables: the k-group k4 of column n is the 4 bytes at base +
// rowoff[k4] + colbase[n]. For convolutions with K in implicit order (Im2col::implicit, any stride
// or dilation) base is the interleaved, bordered frame of qgemm.hpp's implicit_frame (no im2col);
// otherwise B (or its im2col matrix) is interleaved once into [K4][N][4]. The requantization is store8's, on rows instead of columns (bit-exact with the
// row-panel kernels). AVX2: weights widened to int16 per panel and vpmaddwd (exact, see tile_avx2);
// scalar otherwise.
#pragma once

#include <array>
#include <utility>

#include "qgemm_base.hpp"

namespace inferon {
namespace qgemm_detail {

constexpr int QLANES = 32;
constexpr int QLANES_NC = 8;  // columns per VNNI tile (16 accumulators; 10 and 12 measured slower)

struct LanesB {
  const uint8_t* base;
  const int64_t* rowoff;   // [K4]
  const int64_t* colbase;  // [N]
};

inline int32_t load_group(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The requantization of rows m0.. (`rows` valid, up to 8) and their comp (0 past `rows`), as lanes.
struct LanesRequant {
  Requant8 k;
  __m256i comp;
};

INFERON_AVX2_INLINE LanesRequant lanes_requant(const QGemm& g, int64_t m0, int rows) {
  const int valid = std::max(0, std::min(8, rows));
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return {requant8_channels(g.rq + m0, valid, g.zy, g.lo, g.hi), _mm256_maskload_epi32(g.comp + m0, keep)};
}

// The 16-lane requantization of rows m0 .. m0 + 15 of a panel (comp included, 0 past M), built once
// per GEMM call for every row panel (lanes_requant16) instead of per tile: gathering the records of
// 32 channels costs about as much as a short tile's products.
struct alignas(64) LanesRq16 {
  Requant16 k;
  __m512i comp;
};

INFERON_VNNI inline LanesRq16 lanes_requant16(const QGemm& g, int64_t m0) {
  const int rows = static_cast<int>(std::min<int64_t>(16, g.M - m0));
  const LanesRequant k0 = lanes_requant(g, m0, rows), k1 = lanes_requant(g, m0 + 8, rows - 8);
  return {requant16_pair(k0.k, k1.k), _mm512_inserti64x4(_mm512_castsi256_si512(k0.comp), k1.comp, 1)};
}

// Requantize the 8 rows m0.. (`rows` valid, k = lanes_requant(g, m0, rows)) of column n from their
// int32 sums (comp not included) and store them (C column-strided); a fused residual takes the
// scalar steps.
template <class Q>
INFERON_AVX2 void lanes_store8(const QGemm& g, const LanesRequant& k, int64_t m0, int rows, int64_t n, __m256i acc) {
  if (rows <= 0) return;
  alignas(32) int32_t q[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(q), requant8(k.k, _mm256_add_epi32(acc, k.comp)));
  Q* out = static_cast<Q*>(g.c) + m0 * g.ldc + n * g.ldc_col;
  for (int r = 0; r < rows; r++) {
    const int64_t at = (m0 + r) * g.ldc + n * g.ldc_col;
    out[r * g.ldc] = static_cast<Q>(g.add ? add_residual_scalar(g, at, q[r]) : q[r]);
  }
}

// Store 32 rows x nc (<= 8) columns of requantized bytes, given column by column (cols[j]: rows 0-31
// of column j): the 32 x 8 bytes are transposed so that each row's columns are one masked store. A
// fused residual is added row by row on those 8 columns (add_residual8's steps; the requantized
// bytes are signed where the GEMM's own range is).
template <class Q>
INFERON_VNNI void lanes_store_cols8(const QGemm& g, const uint8_t (*cols)[QLANES], int64_t m0, int rows, int64_t n0,
                                    int nc) {
  __m256i c[8], t[8], u[8];
  for (int j = 0; j < 8; j++) c[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(cols[j]));
  for (int j = 0; j < 4; j++) {  // bytes of column pairs: rows 0-7 / 16-23 (lo), 8-15 / 24-31 (hi)
    t[2 * j] = _mm256_unpacklo_epi8(c[2 * j], c[2 * j + 1]);
    t[2 * j + 1] = _mm256_unpackhi_epi8(c[2 * j], c[2 * j + 1]);
  }
  for (int j = 0; j < 2; j++)  // 4 columns per row: u[4 j + s] holds rows 4 s .. 4 s + 3 (and + 16)
    for (int s = 0; s < 2; s++) {
      u[4 * j + 2 * s] = _mm256_unpacklo_epi16(t[4 * j + s], t[4 * j + 2 + s]);
      u[4 * j + 2 * s + 1] = _mm256_unpackhi_epi16(t[4 * j + s], t[4 * j + 2 + s]);
    }
  alignas(32) uint64_t row8[QLANES];
  for (int s = 0; s < 4; s++) {  // 8 columns per row: rows 4 s + {0, 1} / {2, 3}, each also + 16
    const __m256i w0 = _mm256_unpacklo_epi32(u[s], u[4 + s]), w1 = _mm256_unpackhi_epi32(u[s], u[4 + s]);
    _mm_store_si128(reinterpret_cast<__m128i*>(row8 + 4 * s), _mm256_castsi256_si128(w0));
    _mm_store_si128(reinterpret_cast<__m128i*>(row8 + 4 * s + 2), _mm256_castsi256_si128(w1));
    _mm_store_si128(reinterpret_cast<__m128i*>(row8 + 16 + 4 * s), _mm256_extracti128_si256(w0, 1));
    _mm_store_si128(reinterpret_cast<__m128i*>(row8 + 16 + 4 * s + 2), _mm256_extracti128_si256(w1, 1));
  }
  const __mmask16 cmask = static_cast<__mmask16>((1u << nc) - 1);
  Q* o = static_cast<Q*>(g.c) + m0 * g.ldc + n0;
  if (!g.add) {
    for (int r = 0; r < rows; r++)
      _mm_mask_storeu_epi8(o + r * g.ldc, cmask, _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row8 + r)));
    return;
  }
  const QResidual& add = *g.add;
  const Residual8 k = residual8(g);
  const uint8_t* res = static_cast<const uint8_t*>(g.residual) + m0 * g.ldc + n0;
  for (int r = 0; r < rows; r++) {
    const __m128i qb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row8 + r));
    const __m128i rb = _mm_maskz_loadu_epi8(cmask, res + r * g.ldc);
    const __m256i q = g.lo < 0 ? _mm256_cvtepi8_epi32(qb) : _mm256_cvtepu8_epi32(qb);
    const __m256i rv = add.res_signed ? _mm256_cvtepi8_epi32(rb) : _mm256_cvtepu8_epi32(rb);
    _mm_mask_storeu_epi8(o + r * g.ldc, cmask, _mm256_cvtepi32_epi8(add_residual8_values(add, k, q, rv)));
  }
}

// The next row panel's weights, prefetched into L2 by the tiles that read the current panel from
// cache: one prefetch per k-group, at p + k4 * step (PF tiles only; step <= 64, so every line of the
// share is reached: at least two tiles share the panel's 128 bytes per k-group).
constexpr int64_t kLanesPrefetchTiles = 6;  // tiles that share the next panel's prefetch (at most)

struct LanesPrefetch {
  const char* p = nullptr;
  int64_t step = 0;
};

// VNNI: 32 rows (two zmm) x NC columns; a: [K4][32][4].
// rq: the panel's two LanesRq16 (rows 0-15, 16-31).
template <class Q, int NC, bool PF>
INFERON_VNNI void lanes_tile_vnni(const QGemm& g, const int8_t* a, const LanesB& b, int64_t K4, int64_t m0,
                                  int64_t n0, const LanesRq16* rq, LanesPrefetch pf) {
  __m512i acc[2][NC];
  const uint8_t* col[NC];
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++) {
    acc[0][j] = acc[1][j] = _mm512_setzero_si512();
    col[j] = b.base + b.colbase[n0 + j];
  }
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const __m512i a0 = _mm512_loadu_si512(a + k4 * 128), a1 = _mm512_loadu_si512(a + k4 * 128 + 64);
    if (n0 == 0) {  // the panel's first tile reads it from L3 / memory: prefetch ahead
      _mm_prefetch(reinterpret_cast<const char*>(a + k4 * 128 + 2048), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a + k4 * 128 + 2048 + 64), _MM_HINT_T0);
    }
    if constexpr (PF) {
      _mm_prefetch(pf.p, _MM_HINT_T1);
      pf.p += pf.step;
    }
    const int64_t off = b.rowoff[k4];
#pragma GCC unroll 8
    for (int j = 0; j < NC; j++) {
      const __m512i bj = _mm512_set1_epi32(load_group(col[j] + off));
      acc[0][j] = _mm512_dpbusd_epi32(acc[0][j], bj, a0);
      acc[1][j] = _mm512_dpbusd_epi32(acc[1][j], bj, a1);
    }
  }
  __m512i out[2][NC];  // (a copy: taking acc's address would keep it in memory)
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++) out[0][j] = acc[0][j], out[1][j] = acc[1][j];
  const int rows = static_cast<int>(std::min<int64_t>(QLANES, g.M - m0));
  if (g.ldc_col != 1) {  // strided C: row by row
    for (int h = 0; h < 4; h++) {
      const LanesRequant k = lanes_requant(g, m0 + 8 * h, rows - 8 * h);
      for (int j = 0; j < NC; j++) {
        const __m512i v = out[h / 2][j];
        lanes_store8<Q>(g, k, m0 + 8 * h, rows - 8 * h, n0 + j,
                        h % 2 ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v));
      }
    }
    return;
  }
  // requantize 16 rows per zmm (store_row_zmm's steps), bytes into cols[j] (32 rows of column j),
  // then store them row by row (lanes_store_cols8). A fused residual needs the GEMM's own range (its
  // bytes by truncation: read back signed where it is, lanes_store_cols8).
  static_assert(NC <= 8, "lanes_store_cols8 stores 8 columns");
  alignas(32) uint8_t cols[8][QLANES] = {};
  for (int j = 0; j < NC; j++) {
    const __m512i s0 = _mm512_add_epi32(out[0][j], rq[0].comp), s1 = _mm512_add_epi32(out[1][j], rq[1].comp);
    if (g.add) {
      _mm_store_si128(reinterpret_cast<__m128i*>(cols[j]), _mm512_cvtepi32_epi8(requant16(rq[0].k, s0)));
      _mm_store_si128(reinterpret_cast<__m128i*>(cols[j] + 16), _mm512_cvtepi32_epi8(requant16(rq[1].k, s1)));
    } else {
      const __m512i q[2] = {requant16<false>(rq[0].k, s0), requant16<false>(rq[1].k, s1)};
      _mm256_store_si256(reinterpret_cast<__m256i*>(cols[j]), _mm512_castsi512_si256(narrow_zmm<Q, 2>(q, g.lo, g.hi)));
    }
  }
  lanes_store_cols8<Q>(g, cols, m0, rows, n0, NC);
}

// AVX2: 16 rows x NC columns; aw: the 32-row panel widened to int16, [K4][32][4], from row `half` * 16.
// A row's k-group is one 64-bit lane: vpmaddwd against the widened, broadcast column group gives its
// two pair sums, added up in the epilogue (hadd), as in tile_avx2.
template <class Q, int NC>
INFERON_AVX2 void lanes_tile_avx2(const QGemm& g, const int16_t* aw, const LanesB& b, int64_t K4, int64_t m0,
                                  int half, int64_t n0) {
  __m256i acc[4][NC];  // 4 rows each
  const uint8_t* col[NC];
#pragma GCC unroll 3
  for (int j = 0; j < NC; j++) {
    col[j] = b.base + b.colbase[n0 + j];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) acc[v][j] = _mm256_setzero_si256();
  }
  for (int64_t k4 = 0; k4 < K4; k4++) {
    const int64_t off = b.rowoff[k4];
    __m256i bj[NC];
#pragma GCC unroll 3
    for (int j = 0; j < NC; j++)
      bj[j] = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(load_group(col[j] + off))));
    const int16_t* ak = aw + k4 * (4 * QLANES) + half * 64;
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ak + 16 * v));
#pragma GCC unroll 3
      for (int j = 0; j < NC; j++) acc[v][j] = _mm256_add_epi32(acc[v][j], _mm256_madd_epi16(av, bj[j]));
    }
  }
  const int rows = static_cast<int>(std::min<int64_t>(16, g.M - m0));
  for (int h = 0; h < 2; h++) {  // rows 8 h ..: [r0 r1 r4 r5 | r2 r3 r6 r7] after hadd -> in order
    const LanesRequant k = lanes_requant(g, m0 + 8 * h, rows - 8 * h);
    for (int j = 0; j < NC; j++)
      lanes_store8<Q>(g, k, m0 + 8 * h, rows - 8 * h, n0 + j,
                      _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2 * h][j], acc[2 * h + 1][j]), 0xD8));
  }
}

inline void lanes_tile_scalar(const QGemm& g, const int8_t* a, const LanesB& b, int64_t K4, int64_t m0, int64_t n0,
                              int nc, bool is_signed) {
  const int64_t rows = std::min<int64_t>(QLANES, g.M - m0);
  for (int j = 0; j < nc; j++)
    for (int64_t r = 0; r < rows; r++) {
      int32_t acc = 0;
      for (int64_t k4 = 0; k4 < K4; k4++) {
        const uint8_t* bg = b.base + b.rowoff[k4] + b.colbase[n0 + j];
        for (int t = 0; t < 4; t++) acc += static_cast<int32_t>(a[(k4 * QLANES + r) * 4 + t]) * bg[t];
      }
      if (is_signed) store_scalar<int8_t>(g, m0 + r, n0 + j, acc);
      else store_scalar<uint8_t>(g, m0 + r, n0 + j, acc);
    }
}

// lanes_tile_vnni for NC = 1 .. sizeof(I), indexed by NC - 1.
template <class Q, bool PF, int... I>
constexpr auto lanes_vnni_tiles(std::integer_sequence<int, I...>) {
  return std::array{&lanes_tile_vnni<Q, I + 1, PF>...};
}

// The product over prepared B tables; threads take contiguous ranges of (row panel, column tile).
template <class Q>
void run_lanes_tiles(const QGemm& g, const LanesB& b, int level, int T) {
  const int64_t K4 = (g.K + 3) / 4, mpanels = (g.M + QLANES - 1) / QLANES;
  const int nc_max = level == 2 ? QLANES_NC : 3;  // columns per tile: as many as registers allow, balanced
  const int64_t ctiles = (g.N + nc_max - 1) / nc_max, tiles = mpanels * ctiles;
  const int NC = static_cast<int>((g.N + ctiles - 1) / ctiles);
  std::vector<LanesRq16> rq16(level == 2 ? static_cast<size_t>(2 * mpanels) : 0);
  if (level == 2)
    for (int64_t i = 0; i < 2 * mpanels; i++) rq16[i] = lanes_requant16(g, 16 * i);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    int16_t* aw = level == 1 ? reinterpret_cast<int16_t*>(tls(3).get(static_cast<size_t>(K4) * 4 * QLANES / 2 + 16))
                             : nullptr;
    int64_t widened = -1;
    for (int64_t t = tiles * tid / nth; t < tiles * (tid + 1) / nth; t++) {
      const int64_t mp = t / ctiles, n0 = (t % ctiles) * NC;
      const int nc = static_cast<int>(std::min<int64_t>(NC, g.N - n0));
      const int8_t* a = g.a + mp * K4 * 4 * QLANES;
      const int64_t m0 = mp * QLANES;
      if (level == 2) {
        const LanesRq16* rq = rq16.data() + 2 * mp;
        // the panel's first tile streams its weights from L3 / memory; the others, reading them from
        // cache, prefetch the next panel's (each an equal share; none past this thread's last tile)
        constexpr auto seq = std::make_integer_sequence<int, QLANES_NC>{};
        const int64_t c = t % ctiles;
        if (ctiles >= 3 && c > 0 && c <= kLanesPrefetchTiles && mp + 1 < mpanels &&
            (mp + 1) * ctiles < tiles * (tid + 1) / nth) {
          const int64_t helpers = std::min<int64_t>(ctiles - 1, kLanesPrefetchTiles);
          const int64_t bytes = K4 * 4 * QLANES, share = (bytes + helpers - 1) / helpers;
          const LanesPrefetch pf{reinterpret_cast<const char*>(a + bytes) + share * (c - 1), (share + K4 - 1) / K4};
          lanes_vnni_tiles<Q, true>(seq)[nc - 1](g, a, b, K4, m0, n0, rq, pf);
        } else {
          lanes_vnni_tiles<Q, false>(seq)[nc - 1](g, a, b, K4, m0, n0, rq, LanesPrefetch{});
        }
      } else if (level == 1) {
        if (mp != widened) widen_s8(a, K4 * 4 * QLANES, aw);
        widened = mp;
        for (int half = 0; half < 2 && m0 + 16 * half < g.M; half++) {
          switch (nc) {
            case 1: lanes_tile_avx2<Q, 1>(g, aw, b, K4, m0 + 16 * half, half, n0); break;
            case 2: lanes_tile_avx2<Q, 2>(g, aw, b, K4, m0 + 16 * half, half, n0); break;
            default: lanes_tile_avx2<Q, 3>(g, aw, b, K4, m0 + 16 * half, half, n0); break;
          }
        }
      } else {
        lanes_tile_scalar(g, a, b, K4, m0, n0, nc, std::is_signed<Q>::value);
      }
    }
  }
}

}  // namespace qgemm_detail
}  // namespace inferon
