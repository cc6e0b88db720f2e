// Inferon FP32 "lanes" GEMM: C = epilogue(A * B) for pre-packed weights A and few columns N (the
// 7x7 / 14x14 layers of CNNs, Winograd's batched GEMMs), with A's rows as the vector lanes.
//
// The row-panel kernel (gemm.hpp) broadcasts A and loads B: with N = 49 it runs three 16-column
// tiles and a column-edge tile per 6-row panel and streams the weights once per panel through
// broadcasts. Here the weights are the vectors instead: A is pre-packed (pack-weights, `a_lanes`)
// in panels of kLanes = 32 rows, [ceil(M / 32)][K][32] (rows past M zero), and a register tile is
// 32 rows x NC columns: per k two zmm loads of A and NC broadcasts of B's row k, 2 * NC FMAs
// (NC = 7: 14 zmm accumulators, 49 = 7 x 7 columns exactly; 8 where N is a multiple of 8 but not
// of 7, as Winograd's N = 16). With AVX2 the panel runs as two 16-row halves, 2 ymm x 6 columns.
// B is never packed: a plain B is read in place (row k at B + k * ldb), and a convolution's image
// seen through im2col is copied once per call into a zero-bordered frame and read in place too
// (row k = (channel, tap) at a per-k offset `koff`, an output row's columns `stride` apart: any
// kernel, stride and dilation, no im2col matrix; column groups stay within one output row).
// Columns run in chunks of about kLanesChunk (whole output rows for an image) through all K blocks
// (kLanesKC: the panel's A block stays in L1 across a chunk's column groups; the A panel is
// prefetched kLanesPrefetch k-steps ahead, since the weights stream from memory). A chunk's sums
// land transposed in a thread-local [chunk][32] buffer; then each 8 x 8 block is transposed in
// registers and stored through the row-panel kernel's epilogue (bias, residual, activation;
// `store_tile`). Threads split the 32-row panels (or the batch, in gemm()).
#pragma once

#include "im2col.hpp"

namespace inferon {
namespace gemm_detail {

constexpr int kLanes = 32;             // rows per packed panel (vec.GEMM_LANES on the Python side)
constexpr int64_t kLanesKC = 256;      // K block: 32 x 256 floats of A (32 KB)
constexpr int64_t kLanesChunk = 224;   // columns per chunk (32 groups of 7, 28 blocks of 8): 28 KB of sums
constexpr int kLanesPrefetch = 32;     // k steps ahead of the A panel

// Where the tiles find B: row k of the column group at `b0` starts at b0 + k * ldb (plain) or at
// b0 + koff[k] (image), its columns `step` apart (1 when plain).
struct LanesB {
  const float* base = nullptr;     // plain: B; image: the zero-bordered frame [C][Hp][Wp]
  int64_t ldb = 0;                 // plain: row stride
  const int64_t* koff = nullptr;   // image: frame offset of im2col row k (channel, kernel tap)
  int64_t Wo = 0, row = 0, step = 1;  // image: output row width, frame floats per output row / column
};

// Tiles and the panel loop carry their own target; the entry points (lanes_rect_avx512 / _avx2) are
// `flatten`ed, so that everything is inlined into code compiled for that instruction set.

// The next K block's weights (the panel's next block, or the next panel's first), prefetched into L2
// by the column groups that read the current block from L1: one prefetch per k step at p + k * step
// (step <= 64: every line of the group's share is reached). Null p: none (a tile without the
// prefetch in its loop).
struct LanesPrefetchF {
  const char* p = nullptr;
  int64_t step = 0;
};
constexpr int kLanesPrefetchGroups = 6;  // column groups (after the first) that share it, at most

// ct[j * 32 + lane] (+)= sum_k Ap[k * 32 + lane] * B(k, j), j < NC: one 32-row x NC tile.
template <int NC, bool IMG, bool PF>
__attribute__((target("avx2,fma,avx512f"))) inline void lanes_tile_zmm(int64_t kc, const float* INFERON_RESTRICT Ap,
                                                                       const float* b0, const int64_t* koff,
                                                                       int64_t ldb, int64_t step, float* ct,
                                                                       bool first, LanesPrefetchF pf) {
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
    if constexpr (PF) {
      _mm_prefetch(pf.p, _MM_HINT_T1);
      pf.p += pf.step;
    }
    const __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + 16);
    const float* b = IMG ? b0 + koff[k] : b0 + k * ldb;
#pragma GCC unroll 8
    for (int j = 0; j < NC; j++) {
      const __m512 bj = _mm512_set1_ps(b[IMG ? j * step : j]);
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
template <int NC, bool IMG>
INFERON_AVX2 inline void lanes_tile_ymm(int64_t kc, const float* INFERON_RESTRICT Ap, const float* b0,
                                        const int64_t* koff, int64_t ldb, int64_t step, float* ct, bool first) {
  __m256 acc[NC][2];
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) acc[j][v] = first ? _mm256_setzero_ps() : _mm256_load_ps(ct + j * kLanes + v * 8);
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    const float* a = Ap + k * kLanes;
    const __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8);
    const float* b = IMG ? b0 + koff[k] : b0 + k * ldb;
#pragma GCC unroll 8
    for (int j = 0; j < NC; j++) {
      const __m256 bj = _mm256_broadcast_ss(b + (IMG ? j * step : j));
      acc[j][0] = _mm256_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NC; j++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) _mm256_store_ps(ct + j * kLanes + v * 8, acc[j][v]);
}

// One column group of n <= NC columns of a panel's K block, on the instruction set's tile.
template <bool ZMM, int NC, bool IMG>
INFERON_AVX2 inline void lanes_group(int n, int64_t kc, const float* Ap, const float* b0, const int64_t* koff,
                                     int64_t ldb, int64_t step, float* ct, bool first, LanesPrefetchF pf = {}) {
  if constexpr (NC > 1) {
    if (n < NC) return lanes_group<ZMM, NC - 1, IMG>(n, kc, Ap, b0, koff, ldb, step, ct, first, pf);
  }
  if constexpr (ZMM) {
    if (pf.p) lanes_tile_zmm<NC, IMG, true>(kc, Ap, b0, koff, ldb, step, ct, first, pf);
    else lanes_tile_zmm<NC, IMG, false>(kc, Ap, b0, koff, ldb, step, ct, first, pf);
  } else {
    lanes_tile_ymm<NC, IMG>(kc, Ap, b0, koff, ldb, step, ct, first);
    lanes_tile_ymm<NC, IMG>(kc, Ap + 16, b0, koff, ldb, step, ct + 16, first);
  }
}

// Columns per chunk: whole output rows for an image (at least one), kLanesChunk for a plain B.
inline int64_t lanes_chunk(const LanesB& lb) {
  return lb.koff ? std::max<int64_t>(1, kLanesChunk / lb.Wo) * lb.Wo : kLanesChunk;
}

// NCHWc8 C: columns [c0, c1) of rows [row0, row0 + rows) (rows a multiple of 8) from ct, each 8-row
// block of a column one vector: bias, residual (or C's own value with acc_c), activation, store.
INFERON_AVX2 inline void lanes_store_c8(const Job& g, const float* ct, int64_t row0, int64_t rows, int64_t c0,
                                        int64_t c1) {
  const __m256 va = _mm256_set1_ps(g.alpha), vb = _mm256_set1_ps(g.beta);
  for (int64_t r = 0; r < rows; r += 8) {
    const __m256 bias = g.bias && g.bias_axis == 0 ? _mm256_loadu_ps(g.bias + row0 + r) : _mm256_setzero_ps();
    float* cb = g.C + (row0 + r) / 8 * g.N * 8;
    const float* rb = g.residual ? g.residual + (row0 + r) / 8 * g.N * 8 : nullptr;
    for (int64_t j0 = c0; j0 < c1; j0 += 8) {
      const int n = static_cast<int>(std::min<int64_t>(8, c1 - j0));
      __m256 v[8];
#pragma GCC unroll 8
      for (int t = 0; t < 8; t++) {
        if (t >= n) break;
        const int64_t j = j0 + t;
        __m256 x = _mm256_add_ps(_mm256_load_ps(ct + (j - c0) * kLanes + r), bias);
        if (g.bias && g.bias_axis == 1) x = _mm256_add_ps(x, _mm256_set1_ps(g.bias[j]));
        if (rb) x = _mm256_add_ps(x, _mm256_loadu_ps(rb + j * 8));
        if (g.acc_c) x = _mm256_add_ps(x, _mm256_loadu_ps(cb + j * 8));
        v[t] = x;
      }
      if (n == 8) act256_n<8>(v, g.act, va, vb);
      else
        for (int t = 0; t < n; t++) act256_n<1>(v + t, g.act, va, vb);
      for (int t = 0; t < n; t++) _mm256_storeu_ps(cb + (j0 + t) * 8, v[t]);
    }
  }
}

// Panels [p0, p1) of one batch item; ct: thread-local [round_up(chunk, 8) + 8][32].
template <bool ZMM, int NC, bool IMG>
INFERON_AVX2 inline void lanes_rect(const Job& g, int64_t p0, int64_t p1, const LanesB& lb, float* ct) {
  const int64_t K = g.K, N = g.N, chunk = lanes_chunk(lb), Wo = lb.Wo;
  for (int64_t p = p0; p < p1; p++) {
    const float* Ap = g.A + p * kLanes * K;
    const int64_t row0 = p * kLanes, rows = std::min<int64_t>(kLanes, g.M - row0);
    for (int64_t c0 = 0; c0 < N; c0 += chunk) {
      const int64_t c1 = std::min(N, c0 + chunk);
      for (int64_t pc = 0; pc == 0 || pc < K; pc += kLanesKC) {  // K == 0: one empty block zeroes ct
        const int64_t kcur = std::min(kLanesKC, K - pc);
        const float* Ak = Ap + pc * kLanes;
        // the first column group streams this block from L3 / memory; the next ones, reading it
        // from L1, prefetch the next block into L2 (the next panel's first block after the last;
        // none past this thread's panels), each an equal share
        const int64_t groups = IMG ? (c1 - c0) / Wo * ((Wo + NC - 1) / NC) : (c1 - c0 + NC - 1) / NC;
        const int64_t helpers = std::min<int64_t>(groups - 1, kLanesPrefetchGroups);
        const bool last_block = pc + kLanesKC >= K, last_chunk = c1 == N;
        const int64_t next_k = last_block ? (p + 1 < p1 ? std::min(kLanesKC, K) : 0) : std::min(kLanesKC, K - pc - kLanesKC);
        const int64_t next_bytes = next_k * kLanes * static_cast<int64_t>(sizeof(float));
        const int64_t share = helpers >= 2 && last_chunk ? (next_bytes + helpers - 1) / helpers : 0;
        const int64_t pf_step = kcur > 0 ? (share + kcur - 1) / kcur : 0;
        const bool prefetch = ZMM && share > 0 && pf_step <= 64;
        const char* next = reinterpret_cast<const char*>(Ak + kcur * kLanes);  // contiguous: [panel][K][32]
        int64_t grp = 0;
        const auto pf_for = [&](int64_t gi) {
          return prefetch && gi >= 1 && gi <= helpers ? LanesPrefetchF{next + share * (gi - 1), pf_step} : LanesPrefetchF{};
        };
        if constexpr (IMG) {  // c0, c1: whole output rows
          for (int64_t oy = c0 / Wo; oy < c1 / Wo; oy++)
            for (int64_t ox = 0; ox < Wo; ox += NC)
              lanes_group<ZMM, NC, IMG>(static_cast<int>(std::min<int64_t>(NC, Wo - ox)), kcur, Ak,
                                        lb.base + oy * lb.row + ox * lb.step, lb.koff + pc, 0, lb.step,
                                        ct + (oy * Wo + ox - c0) * kLanes, pc == 0, pf_for(grp++));
        } else {
          for (int64_t j0 = c0; j0 < c1; j0 += NC)
            lanes_group<ZMM, NC, IMG>(static_cast<int>(std::min<int64_t>(NC, c1 - j0)), kcur, Ak,
                                      lb.base + pc * lb.ldb + j0, nullptr, lb.ldb, 1, ct + (j0 - c0) * kLanes,
                                      pc == 0, pf_for(grp++));
        }
      }
      if (g.c_c8) {  // NCHWc8: ct's 8-lane rows are C's pixel vectors already
        lanes_store_c8(g, ct, row0, rows, c0, c1);
        continue;
      }
      // ct holds C^T of the chunk: 8 x 8 blocks transposed in registers, stored through the epilogue
      for (int64_t r = 0; r < rows; r += 8)
        for (int64_t j = c0; j < c1; j += 8) {
          __m256 c[8][1];
#pragma GCC unroll 8
          for (int t = 0; t < 8; t++) c[t][0] = _mm256_load_ps(ct + (j - c0 + t) * kLanes + r);
          transpose8(c);
          store_tile<8, 1>(c, std::min<int64_t>(8, rows - r), std::min<int64_t>(8, c1 - j),
                           g.C + (row0 + r) * g.ldc + j, g.acc_c, true, g, row0 + r, j);
        }
    }
  }
}

// B(k, j) for the scalar path.
inline float lanes_b_at(const LanesB& lb, int64_t k, int64_t j) {
  if (!lb.koff) return lb.base[k * lb.ldb + j];
  return lb.base[lb.koff[k] + (j / lb.Wo) * lb.row + (j % lb.Wo) * lb.step];
}

// Scalar path over the same packed layout.
inline void lanes_rect_scalar(const Job& g, int64_t p0, int64_t p1, const LanesB& lb) {
  for (int64_t p = p0; p < p1; p++) {
    const float* Ap = g.A + p * kLanes * g.K;
    for (int64_t i = p * kLanes; i < std::min<int64_t>(g.M, (p + 1) * kLanes); i++)
      for (int64_t j = 0; j < g.N; j++) {
        float s = 0.f;
        for (int64_t k = 0; k < g.K; k++) s += Ap[k * kLanes + i % kLanes] * lanes_b_at(lb, k, j);
        float* c = g.C + c_at(g, i, j);
        if (g.acc_c) s += *c;
        *c = epi_scalar(g, s, i, j);
      }
  }
}

// How the tiles read B: in place, or (im2col) from a zero-bordered copy of the image [C][Hp][Wp] in
// thread-local scratch (made by T threads), with the frame offset of every im2col row; an unpadded
// convolution's image is read in place (ResNet's stride-2 1x1 convs: no copy).
inline LanesB lanes_operand(const Job& g, int T) {
  LanesB lb;
  lb.base = g.B;
  lb.ldb = g.ldb;
  if (g.b_c8 && !g.im2col) {  // NCHWc8: row k at (k / 8) * N * 8 + k % 8, columns 8 floats apart
    int64_t* koff = reinterpret_cast<int64_t*>(tls_scratch(6).get(static_cast<size_t>(2 * std::max<int64_t>(1, g.K))));
    for (int64_t k = 0; k < g.K; k++) koff[k] = k / 8 * g.N * 8 + k % 8;
    lb.koff = koff;
    lb.Wo = g.N;  // "output rows" of a divisor of N near kLanesChunk columns (chunks are whole rows)
    for (int64_t d = std::min<int64_t>(g.N, kLanesChunk); d >= 1 && g.N > kLanesChunk; d--)
      if (g.N % d == 0 && d >= 8) { lb.Wo = d; break; }
    lb.row = lb.Wo * 8;
    lb.step = 8;
    return lb;
  }
  if (!g.im2col) return lb;
  const Im2col& q = *g.im2col;
  const Frame f = bordered_frame(q, g.B, g.K, 16, T, true);  // gemm.hpp
  lb.base = f.x;
  lb.koff = f.offsets;
  lb.Wo = q.Wo;
  lb.row = q.sh * f.Wp;
  lb.step = q.sw;
  return lb;
}

template <bool IMG>
__attribute__((target("avx2,fma,avx512f"), flatten)) inline void lanes_rect_avx512(const Job& g, int64_t p0, int64_t p1,
                                                                               const LanesB& lb, float* ct) {
  if (g.N % 8 == 0 && g.N % 7 != 0) lanes_rect<true, 8, IMG>(g, p0, p1, lb, ct);  // N = 16: two whole groups
  else lanes_rect<true, 7, IMG>(g, p0, p1, lb, ct);
}

template <bool IMG>
__attribute__((target("avx2,fma"), flatten)) inline void lanes_rect_avx2(const Job& g, int64_t p0, int64_t p1,
                                                                       const LanesB& lb, float* ct) {
  lanes_rect<false, 6, IMG>(g, p0, p1, lb, ct);
}

// One batch item on up to T threads (split by panels). Defined in its own kernel object (family
// GEMM_LANES, linked with GEMM): it compiles beside the row-panel kernels.
INFERON_ENTRY void lanes_run(const Job& g, int T);

#if INFERON_DEFINE_KERNELS(GEMM_LANES)
inline void lanes_run_panels(const Job& g, int64_t p0, int64_t p1, const LanesB& lb) {
  if (!use_avx2()) return lanes_rect_scalar(g, p0, p1, lb);
  float* ct = tls_scratch(0).get(static_cast<size_t>(((lanes_chunk(lb) + 7) / 8 * 8 + 8) * kLanes));
  const bool img = lb.koff != nullptr;
  if (isa() >= INFERON_ISA_AVX512) img ? lanes_rect_avx512<true>(g, p0, p1, lb, ct) : lanes_rect_avx512<false>(g, p0, p1, lb, ct);
  else img ? lanes_rect_avx2<true>(g, p0, p1, lb, ct) : lanes_rect_avx2<false>(g, p0, p1, lb, ct);
}

INFERON_ENTRY void lanes_run(const Job& g, int T) {
  const LanesB lb = lanes_operand(g, T);
  const int64_t panels = (g.M + kLanes - 1) / kLanes;
  const int nt = static_cast<int>(std::min<int64_t>(T, panels));
  if (nt <= 1) return lanes_run_panels(g, 0, panels, lb);
#pragma omp parallel num_threads(nt)
  {
    const int id = omp_get_thread_num(), n = omp_get_num_threads();
    lanes_run_panels(g, panels * id / n, panels * (id + 1) / n, lb);
  }
}

#endif

}  // namespace gemm_detail
}  // namespace inferon
