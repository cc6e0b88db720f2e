// Inferon FP32 "lanes" GEMM: C = epilogue(A * B) for pre-packed weights A and few columns N (the
// 7x7 / 14x14 layers of CNNs, Winograd's batched GEMMs), with A's rows as the vector lanes.
//
// The row-panel kernel (gemm.hpp) broadcasts A and loads B: with N = 49 it runs three 16-column
// tiles and a column-edge tile per 6-row panel and streams the weights once per panel through
// broadcasts. Here the weights are the vectors instead: A is pre-packed (pack-weights, `a_lanes`)
// in panels of kLanes = 32 rows, [ceil(M / 32)][K][32] (rows past M zero), and a register tile is
// 32 rows x NC columns: per k two zmm loads of A and NC broadcasts of B's row k (B read in place,
// row-major, no packing), 2 * NC FMAs (NC = 7: 14 zmm accumulators, 49 = 7 x 7 columns exactly; 8
// where N is a multiple of 8 but not of 7, as Winograd's N = 16).
// With AVX2 the panel runs as two 16-row halves, 2 ymm x 6 columns. K is blocked (kLanesKC) so
// that the panel's A block stays in L1 across the column groups, and the A panel is prefetched
// kLanesPrefetch k-steps ahead (the weights stream from memory: measured 1.05-1.1x on ResNet-50's
// N = 49 shapes with cold weights). The tile's sums land transposed in a thread-local [N][32]
// buffer, accumulated across K blocks; at the end each 8 x 8 block is transposed in registers and
// stored through the row-panel kernel's epilogue (bias, residual, activation; `store_tile`).
//
// An im2col B (strided convolutions) is materialised once per call as a K x N matrix (N is small).
// Threads split the 32-row panels (or the batch, in gemm()).
#pragma once

#include "im2col.hpp"

namespace inferon {
namespace gemm_detail {

constexpr int kLanes = 32;             // rows per packed panel (vec.GEMM_LANES on the Python side)
constexpr int64_t kLanesKC = 256;      // K block: 32 x 256 floats of A (32 KB)
constexpr int kLanesPrefetch = 32;     // k steps ahead of the A panel

// Tiles and the panel loop carry their own target; the entry points (lanes_rect_avx512 / _avx2) are
// `flatten`ed, so that everything is inlined into code compiled for that instruction set.

// ct[j * 32 + lane] (+)= sum_k Ap[k * 32 + lane] * B[k * ldb + j], j < NC: one 32-row x NC tile.
template <int NC>
__attribute__((target("avx2,fma,avx512f"))) inline void lanes_tile_zmm(int64_t kc, const float* INFERON_RESTRICT Ap, const float* B, int64_t ldb,
                                       float* ct, bool first) {
  __m512 acc[NC][2];
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int z = 0; z < 2; z++) acc[j][z] = first ? _mm512_setzero_ps() : _mm512_load_ps(ct + j * kLanes + z * 16);
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    const float* a = Ap + k * kLanes;
    _mm_prefetch(reinterpret_cast<const char*>(a + kLanesPrefetch * kLanes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(a + kLanesPrefetch * kLanes + 16), _MM_HINT_T0);
    const __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + 16);
    const float* b = B + k * ldb;
#pragma GCC unroll 8
    for (int j = 0; j < NC; j++) {
      const __m512 bj = _mm512_set1_ps(b[j]);
      acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int z = 0; z < 2; z++) _mm512_store_ps(ct + j * kLanes + z * 16, acc[j][z]);
}

// The same for the 16 lanes at Ap / ct (a half panel; stride still 32) with ymm registers.
template <int NC>
INFERON_AVX2 inline void lanes_tile_ymm(int64_t kc, const float* INFERON_RESTRICT Ap, const float* B, int64_t ldb,
                                        float* ct, bool first) {
  __m256 acc[NC][2];
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) acc[j][v] = first ? _mm256_setzero_ps() : _mm256_load_ps(ct + j * kLanes + v * 8);
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    const float* a = Ap + k * kLanes;
    const __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8);
    const float* b = B + k * ldb;
#pragma GCC unroll 8
    for (int j = 0; j < NC; j++) {
      const __m256 bj = _mm256_broadcast_ss(b + j);
      acc[j][0] = _mm256_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) _mm256_store_ps(ct + j * kLanes + v * 8, acc[j][v]);
}

// One column group [j0, j0 + n) (n <= NC) of a panel's K block, on the instruction set's tile.
template <bool ZMM, int NC>
INFERON_AVX2 inline void lanes_group(int n, int64_t kc, const float* Ap, const float* B, int64_t ldb, float* ct,
                                    bool first) {
  if constexpr (NC > 1) {
    if (n < NC) return lanes_group<ZMM, NC - 1>(n, kc, Ap, B, ldb, ct, first);
  }
  if constexpr (ZMM) {
    lanes_tile_zmm<NC>(kc, Ap, B, ldb, ct, first);
  } else {
    lanes_tile_ymm<NC>(kc, Ap, B, ldb, ct, first);
    lanes_tile_ymm<NC>(kc, Ap + 16, B, ldb, ct + 16, first);
  }
}

// Panels [p0, p1) of one batch item; B row-major (ldb), ct: thread-local [round_up(N, 8)][32].
template <bool ZMM, int NC>
INFERON_AVX2 inline void lanes_rect(const Job& g, int64_t p0, int64_t p1, const float* B, int64_t ldb, float* ct) {
  const int64_t K = g.K, N = g.N;
  for (int64_t p = p0; p < p1; p++) {
    const float* Ap = g.A + p * kLanes * K;
    for (int64_t pc = 0; pc == 0 || pc < K; pc += kLanesKC) {  // K == 0: one empty block zeroes ct
      const int64_t kcur = std::min(kLanesKC, K - pc);
      for (int64_t j0 = 0; j0 < N; j0 += NC)
        lanes_group<ZMM, NC>(static_cast<int>(std::min<int64_t>(NC, N - j0)), kcur, Ap + pc * kLanes,
                             B + pc * ldb + j0, ldb, ct + j0 * kLanes, pc == 0);
    }
    // ct holds C^T of the panel: 8 x 8 blocks transposed in registers, stored through the epilogue
    const int64_t row0 = p * kLanes, rows = std::min<int64_t>(kLanes, g.M - row0);
    for (int64_t r = 0; r < rows; r += 8)
      for (int64_t j = 0; j < N; j += 8) {
        __m256 c[8][1];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) c[t][0] = _mm256_load_ps(ct + (j + t) * kLanes + r);
        transpose8(c);
        store_tile<8, 1>(c, std::min<int64_t>(8, rows - r), std::min<int64_t>(8, N - j),
                         g.C + (row0 + r) * g.ldc + j, g.acc_c, true, g, row0 + r, j);
      }
  }
}

// Scalar path over the same packed layout.
inline void lanes_rect_scalar(const Job& g, int64_t p0, int64_t p1, const float* B, int64_t ldb) {
  for (int64_t p = p0; p < p1; p++) {
    const float* Ap = g.A + p * kLanes * g.K;
    for (int64_t i = p * kLanes; i < std::min<int64_t>(g.M, (p + 1) * kLanes); i++)
      for (int64_t j = 0; j < g.N; j++) {
        float s = 0.f;
        for (int64_t k = 0; k < g.K; k++) s += Ap[k * kLanes + i % kLanes] * B[k * ldb + j];
        float* c = g.C + i * g.ldc + j;
        if (g.acc_c) s += *c;
        *c = epi_scalar(g, s, i, j);
      }
  }
}

INFERON_AVX2 inline void im2col_row_avx2(const Im2col& q, const std::vector<Im2colSeg>& segs, const float* plane,
                                         float* dst) {
  im2col_apply_avx2(q, segs, plane, dst);
}

// B as a row-major K x N matrix: the operand itself, or its im2col matrix in thread-local scratch.
inline const float* lanes_b(const Job& g, int64_t& ldb) {
  ldb = g.ldb;
  if (!g.im2col) return g.B;
  const Im2col& q = *g.im2col;
  float* m = tls_scratch(1).get(static_cast<size_t>(std::max<int64_t>(1, g.K * g.N)));
  const auto& plan = im2col_plan(q, 0, g.N);
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw;
  const bool avx2 = use_avx2();
  for (int64_t r = 0; r < g.K; r++) {
    const float* plane = g.B + (r / taps) * q.H * q.W;
    if (avx2) im2col_row_avx2(q, plan[static_cast<size_t>(r % taps)], plane, m + r * g.N);
    else im2col_apply(q, plan[static_cast<size_t>(r % taps)], plane, m + r * g.N);
  }
  ldb = g.N;
  return m;
}

__attribute__((target("avx2,fma,avx512f"), flatten)) inline void lanes_rect_avx512(const Job& g, int64_t p0, int64_t p1,
                                                                               const float* B, int64_t ldb, float* ct) {
  if (g.N % 8 == 0 && g.N % 7 != 0) lanes_rect<true, 8>(g, p0, p1, B, ldb, ct);  // N = 16: two whole groups
  else lanes_rect<true, 7>(g, p0, p1, B, ldb, ct);
}

__attribute__((target("avx2,fma"), flatten)) inline void lanes_rect_avx2(const Job& g, int64_t p0, int64_t p1,
                                                                       const float* B, int64_t ldb, float* ct) {
  lanes_rect<false, 6>(g, p0, p1, B, ldb, ct);
}

inline void lanes_run_panels(const Job& g, int64_t p0, int64_t p1, const float* B, int64_t ldb) {
  if (!use_avx2()) return lanes_rect_scalar(g, p0, p1, B, ldb);
  float* ct = tls_scratch(0).get(static_cast<size_t>((g.N + 7) / 8 * 8 * kLanes));
  if (isa() >= INFERON_ISA_AVX512) lanes_rect_avx512(g, p0, p1, B, ldb, ct);
  else lanes_rect_avx2(g, p0, p1, B, ldb, ct);
}

// One batch item on up to T threads (split by panels).
inline void lanes_run(const Job& g, int T) {
  int64_t ldb;
  const float* B = lanes_b(g, ldb);
  const int64_t panels = (g.M + kLanes - 1) / kLanes;
  const int nt = static_cast<int>(std::min<int64_t>(T, panels));
  if (nt <= 1) return lanes_run_panels(g, 0, panels, B, ldb);
#pragma omp parallel num_threads(nt)
  {
    const int id = omp_get_thread_num(), n = omp_get_num_threads();
    lanes_run_panels(g, panels * id / n, panels * (id + 1) / n, B, ldb);
  }
}

}  // namespace gemm_detail
}  // namespace inferon
