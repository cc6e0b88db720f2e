// Inferon GEMM: batched C_b = epilogue(A_b * B_b), row-major float32.
//
// AVX2 path (BLIS-style): B is packed per KC x NC block into NR-wide panels, A per MC x KC
// block into MR-high panels (thread-local, 64-byte aligned scratch), and an MR x NR register
// microkernel (default 6 x 16: 12 ymm accumulators, broadcast A, load packed B) runs over
// them. The epilogue (bias, residual, activation) is applied in registers before the final
// store of each tile. Special cases: N == 1 (dot products, no packing), M <= 6 (B read
// directly, no packing) and M <= 4 with a large B (B streamed row by row, C accumulated in
// L1). Threads split the M x N plane into a grid of rectangles (or the batch, when it has at
// least as many items as threads).
//
// Aliasing: residual may be exactly C (same pointer and batch stride: C is then accumulated
// into); any other overlap between C and A, B, bias or residual is undefined.
#pragma once

#include "im2col.hpp"

// B elements (K x columns) from which small-M GEMMs stream B instead of using the direct kernel.
#ifndef INFERON_GEMM_STREAM_MIN
#define INFERON_GEMM_STREAM_MIN 65536
#endif

namespace inferon {

struct Epilogue {               // applied to each output element in this order: + bias, + residual, act
  const float* bias = nullptr;  int64_t bias_batch_stride = 0;
  int bias_axis = 0;            // 0: bias[m] per row (conv: output channel), 1: bias[n] per column (FC)
  const float* residual = nullptr; // same layout as C (ldc, sC)
  int act = ACT_NONE; float alpha = 0.f, beta = 0.f; // leaky slope = alpha; clip range [alpha, beta]
};

// Hints. The AVX2 kernel is instantiated for mr = 6 and nr in {8, 16} (other nr → 16; any mr
// → 6, rows beyond M are edges). mc is rounded up to a multiple of 6 and nc of nr.
struct GemmTiles { int mr = 6, nr = 16; int64_t mc = 72, kc = 256, nc = 1024;
  // A is pre-packed (compile time, pass pack-weights): per KC block p (kc = min(kc, K)) the
  // MR-row panels, k-major, at A + p*Mpad + i*kcur (Mpad = M rounded up to 6); lda is unused.
  bool a_packed = false;
  // B is pre-packed (a constant MatMul weight, pack-weights): nr-column panels over the whole K,
  // panel j (columns j*nr ..) k-major at B + j*nr*K, columns past N zero; ldb is unused.
  bool b_packed = false;
  // A is pre-packed as vector lanes (pack-weights, few columns; gemm_lanes.hpp): panels of 32 rows,
  // [ceil(M / 32)][K][32], rows past M zero; lda, mr, nr, mc, kc, nc are unused.
  bool a_lanes = false;
  // With a_lanes only: B (a plain one, K channels x N pixels) / C and the residual (M channels x N
  // pixels) are in the blocked layout NCHWc8 -- element (k, j) at (k / 8) * N * 8 + j * 8 + k % 8,
  // K / M multiples of 8 (pass assign-layout); ldb / ldc are unused for them.
  bool b_nchwc8 = false, c_nchwc8 = false; };

namespace gemm_detail {

// One batch item, epilogue resolved.
struct Job {
  int64_t M, N, K;
  const float* A; int64_t lda;
  const float* B; int64_t ldb;
  float* C; int64_t ldc;
  const float* bias; int bias_axis;
  const float* residual;   // nullptr when none or when acc_c
  bool acc_c;              // C holds the residual already: accumulate into it
  int act; float alpha, beta;
  int mr = 6, nv = 2; int64_t mc = 72, kc = 256, nc = 1024;
  bool a_packed;           // A in the pre-packed panel layout (see GemmTiles)
  bool b_packed;           // B in the pre-packed panel layout (see GemmTiles)
  const Im2col* im2col;    // non-null: B is the image at B seen through im2col (ldb unused)
  const int64_t* b_rows;   // non-null: row k of B starts at B + b_rows[k] (implicit GEMM, no packing)
  bool zmm = false;        // row panels on zmm accumulators (AVX-512F; nr 32): 12 x 32 tiles from pairs of panels, 6 x 32
  bool b_c8 = false, c_c8 = false;  // lanes GEMM: B / C and residual in NCHWc8 (GemmTiles)
  bool packed_only() const { return a_packed || b_packed || im2col || b_rows; }  // no small-M / GEMV special paths
};

constexpr int kPackedMR = 6;
#ifndef INFERON_GEMM_L2_BLOCK
#define INFERON_GEMM_L2_BLOCK 262144
#endif
constexpr int64_t kL2BlockBytes = INFERON_GEMM_L2_BLOCK;  // packed B blocks up to this size: A-panel-major order  // panel height of pre-packed A (vec.PACKED_MR on the Python side)

// Element (i, k) of a pre-packed A (see GemmTiles).
inline float packed_a_at(const Job& g, int64_t i, int64_t k) {
  const int64_t kc = std::max<int64_t>(1, std::min(g.kc, g.K));
  const int64_t mpad = (g.M + kPackedMR - 1) / kPackedMR * kPackedMR;
  const int64_t p = k / kc * kc, kcur = std::min(kc, g.K - p);
  return g.A[p * mpad + (i / kPackedMR) * kPackedMR * kcur + (k - p) * kPackedMR + i % kPackedMR];
}

// Offset of C's / the residual's element (i, j): row-major, or NCHWc8 for a lanes GEMM's blocked C
// (GemmTiles::c_nchwc8).
inline int64_t c_at(const Job& g, int64_t i, int64_t j) {
  return g.c_c8 ? (i / 8) * g.N * 8 + j * 8 + i % 8 : i * g.ldc + j;
}

inline float epi_scalar(const Job& g, float v, int64_t i, int64_t j) {
  if (g.bias) v += g.bias_axis == 0 ? g.bias[i] : g.bias[j];
  if (g.residual) v += g.residual[c_at(g, i, j)];
  return apply_act(v, g.act, g.alpha, g.beta);
}

// ------------------------------------------------------------------------------- scalar path
inline Scratch& tls_scratch(int which) {
  thread_local Scratch s[8];  // 0-1 A/B panels, 2-3 im2col rows, 4-6 implicit GEMM, 7 small-M sums;
                              // lanes GEMM: 0 sums, 4 bordered image, 6 row offsets
  return s[which];
}

inline void rect_scalar(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t n = n1 - n0;
  float* brow = g.im2col || g.b_packed ? tls_scratch(3).get(static_cast<size_t>(n)) : nullptr;
  const auto* plan = g.im2col ? &im2col_plan(*g.im2col, n0, n) : nullptr;
  const int64_t taps = g.im2col ? static_cast<int64_t>(g.im2col->kh) * g.im2col->kw : 1;
  for (int64_t i = m0; i < m1; i++) {
    float* INFERON_RESTRICT c = g.C + i * g.ldc + n0;
    if (!g.acc_c) std::fill(c, c + n, 0.f);
    const float* a = g.A + i * g.lda;
    for (int64_t k = 0; k < g.K; k++) {
      const float av = g.a_packed ? packed_a_at(g, i, k) : a[k];
      const float* INFERON_RESTRICT b = g.B + k * g.ldb + n0;
      if (g.b_packed) {  // row k of the packed panels, columns n0 .. n1
        const int64_t nr = g.nv * 8;
        for (int64_t j = 0; j < n; j++) brow[j] = g.B[((n0 + j) / nr) * nr * g.K + k * nr + (n0 + j) % nr];
        b = brow;
      } else if (g.im2col) {
        const Im2col& q = *g.im2col;
        im2col_apply(q, (*plan)[static_cast<size_t>(k % taps)], g.B + (k / taps) * q.H * q.W, brow);
        b = brow;
      }
      for (int64_t j = 0; j < n; j++) c[j] += av * b[j];
    }
    for (int64_t j = 0; j < n; j++) c[j] = epi_scalar(g, c[j], i, n0 + j);
  }
}

// --------------------------------------------------------------------------------- AVX2 path

// 8 floats at p, or the lanes of `mask` when fewer than 8 (`left`) remain.
INFERON_AVX2_INLINE __m256 load_lanes(const float* p, int64_t left, __m256i mask) {
  return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

// Store an MR x (NV*8) accumulator tile to C (tile origin; global row0/col0), m x n valid: partial
// sums, bias and residual added per vector, then the activation on the whole tile (act256_n), then
// the stores.
template <int MR, int NV>
INFERON_AVX2_INLINE void store_tile(__m256 (&c)[MR][NV], int64_t m, int64_t n, float* C,
                                    bool accumulate, bool last, const Job& g, int64_t row0,
                                    int64_t col0) {
  const int64_t ldc = g.ldc;
  __m256i masks[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; v++) masks[v] = mask_first(std::min<int64_t>(8, std::max<int64_t>(0, n - v * 8)));
#pragma GCC unroll 4
  for (int v = 0; v < NV; v++) {
    if (n - v * 8 <= 0) break;
    __m256 bcol = _mm256_setzero_ps();
    if (last && g.bias && g.bias_axis == 1) bcol = load_lanes(g.bias + col0 + v * 8, n - v * 8, masks[v]);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      if (i >= m) break;
      __m256 x = c[i][v];
      if (accumulate) x = _mm256_add_ps(x, load_lanes(C + i * ldc + v * 8, n - v * 8, masks[v]));
      if (last) {
        if (g.bias) x = _mm256_add_ps(x, g.bias_axis == 0 ? _mm256_set1_ps(g.bias[row0 + i]) : bcol);
        if (g.residual) x = _mm256_add_ps(x, load_lanes(g.residual + (row0 + i) * ldc + col0 + v * 8, n - v * 8, masks[v]));
      }
      c[i][v] = x;
    }
  }
  if (last) act256_n<MR * NV>(&c[0][0], g.act, _mm256_set1_ps(g.alpha), _mm256_set1_ps(g.beta));
#pragma GCC unroll 4
  for (int v = 0; v < NV; v++) {
    if (n - v * 8 <= 0) break;
    const bool full = n - v * 8 >= 8;
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      if (i >= m) break;
      float* cp = C + i * ldc + v * 8;
      if (full) _mm256_storeu_ps(cp, c[i][v]);
      else _mm256_maskstore_ps(cp, masks[v], c[i][v]);
    }
  }
}

// One k step of a register tile: c[i][:] += Ap[i] * b[:] for the MR rows of a packed A panel.
template <int MR, int NV>
INFERON_AVX2_INLINE void rank1_update(const float* INFERON_RESTRICT ak, const __m256 (&b)[NV],
                                      __m256 (&c)[MR][NV]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    const __m256 a = _mm256_broadcast_ss(ak + i);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) c[i][v] = _mm256_fmadd_ps(a, b[v], c[i][v]);
  }
}

template <int MR, int NV>
INFERON_AVX2_INLINE void zero_tile(__m256 (&c)[MR][NV]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) c[i][v] = _mm256_setzero_ps();
}

// Packed microkernel: Ap is kc x AS (k-major; the first MR rows are used: AS > MR runs a short
// kernel on the top rows of a taller panel), Bp is kc x LDB (k-major; the first NV*8 columns are
// used: LDB > NV*8 runs a narrow kernel on the left part of a wider panel), both aligned.
template <int MR, int NV, int LDB = NV * 8, int AS = MR>
INFERON_AVX2_INLINE void kernel_packed(int64_t kc, const float* INFERON_RESTRICT Ap,
                                       const float* INFERON_RESTRICT Bp, __m256 (&c)[MR][NV]) {
  zero_tile<MR, NV>(c);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = _mm256_load_ps(Bp + k * LDB + v * 8);
    rank1_update<MR, NV>(Ap + k * AS, b, c);
  }
}

// kernel_packed with AVX-512F: an R x 32 tile as R x 2 zmm accumulators (Bp: kc x 32, k-major). On
// CPUs with two 512-bit FMA units (Intel server cores) this doubles the row panels' peak. P = 2: the
// first R rows of two consecutive AS-row panels (Ap, Ap + kc * AS) as one 2R x 32 tile (12 x 32: 24
// accumulators), so that each B row loaded from L2 feeds twice the FMAs (512 x 512 to 1024 x 1024 and
// ResNet-50's 3x3 im2col GEMMs 1.03-1.05x, gemm_bench shapes interleaved, Intel Xeon). NZ = 1: only
// the first 16 columns of the panel (a column edge of 5-16 columns: the panel is zero-padded).
// PACK: B is not packed yet; its row k is read at src + k * ldb (PACK 1: a plain B) or src + rows[k]
// (PACK 2: an implicit GEMM's bordered image, rows[k] readable up to k + kPackPrefetch), the columns
// of `mask`, zeros past them, and written into the panel `pack` as they are used (the first row tiles
// of a block pack its B panels while they compute: the loads overlap the FMAs instead of a packing
// pass of their own),
// each row prefetched kPackPrefetch rows ahead (the rows are far apart: the hardware prefetchers do
// not follow; without it ResNet-50's 64 x 3136 x 256 ran 0.82x the separate packing pass, with it
// 1.12x; 8 / 32 rows ahead: model 0.995x / 0.990x of 16).
constexpr int kPackPrefetch = 16;
// One k step of kernel_packed_z.
template <int R, int AS, int P, int NZ, int PACK>
__attribute__((target("avx2,fma,avx512f"), always_inline)) inline void step_z(
    int64_t k, int64_t kc, const float* INFERON_RESTRICT Ap, const float* INFERON_RESTRICT Bp, __m512 (&acc)[P * R][NZ],
    float* INFERON_RESTRICT pack, const float* INFERON_RESTRICT src, int64_t ldb, const int64_t* INFERON_RESTRICT rows,
    const __mmask16* mask) {
  __m512 b[NZ];
#pragma GCC unroll 2
  for (int z = 0; z < NZ; z++) {
    if constexpr (PACK != 0) {
      const float* ahead = src + (PACK == 2 ? rows[k + kPackPrefetch] : (k + kPackPrefetch) * ldb);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + z * 16), _MM_HINT_T0);
      b[z] = _mm512_maskz_loadu_ps(mask[z], src + (PACK == 2 ? rows[k] : k * ldb) + z * 16);
      _mm512_store_ps(pack + k * 32 + z * 16, b[z]);
    } else {
      b[z] = _mm512_loadu_ps(Bp + k * 32 + z * 16);
    }
  }
#pragma GCC unroll 2
  for (int p = 0; p < P; p++)
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      const __m512 a = _mm512_set1_ps(Ap[p * kc * AS + k * AS + i]);
#pragma GCC unroll 2
      for (int z = 0; z < NZ; z++) acc[p * R + i][z] = _mm512_fmadd_ps(a, b[z], acc[p * R + i][z]);
    }
}

template <int R, int AS, int P = 1, int NZ = 2, int PACK = 0>
__attribute__((target("avx2,fma,avx512f"))) inline void kernel_packed_z(int64_t kc, const float* INFERON_RESTRICT Ap,
                                                                        const float* INFERON_RESTRICT Bp,
                                                                        __m512 (&acc)[P * R][NZ],
                                                                        float* INFERON_RESTRICT pack = nullptr,
                                                                        const float* INFERON_RESTRICT src = nullptr,
                                                                        int64_t ldb = 0, const int64_t* rows = nullptr,
                                                                        const __mmask16* mask = nullptr) {
#pragma GCC unroll 12
  for (int i = 0; i < P * R; i++)
#pragma GCC unroll 2
    for (int z = 0; z < NZ; z++) acc[i][z] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) step_z<R, AS, P, NZ, PACK>(k, kc, Ap, Bp, acc, pack, src, ldb, rows, mask);
}

// The R x NZ zmm tile as R x 2NZ ymm (for store_tile).
template <int R, int NZ>
__attribute__((target("avx2,fma,avx512f"))) inline void split_z(const __m512 (&z)[R][NZ], __m256 (&c)[R][2 * NZ]) {
#pragma GCC unroll 8
  for (int i = 0; i < R; i++)
#pragma GCC unroll 2
    for (int h = 0; h < NZ; h++) {
      c[i][2 * h] = _mm512_castps512_ps256(z[i][h]);
      c[i][2 * h + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z[i][h]), 1));
    }
}

// store_tile_z's rows: MASKED loads and stores (a partial tile) or plain ones.
template <int R, int NZ, bool MASKED>
__attribute__((target("avx2,fma,avx512f"))) inline void store_rows_z(const __m512 (&c)[R][NZ], const __mmask16 (&mask)[NZ],
                                                                     float* C, bool accumulate, bool last, const Job& g,
                                                                     int64_t row0, int64_t col0, __m512 lo, __m512 hi) {
  const int64_t ldc = g.ldc;
#pragma GCC unroll 12
  for (int i = 0; i < R; i++)
#pragma GCC unroll 2
    for (int z = 0; z < NZ; z++) {
      const int64_t off = i * ldc + z * 16;
      __m512 x = c[i][z];
      if (accumulate) x = _mm512_add_ps(x, MASKED ? _mm512_maskz_loadu_ps(mask[z], C + off) : _mm512_loadu_ps(C + off));
      if (last) {
        if (g.bias) x = _mm512_add_ps(x, _mm512_set1_ps(g.bias[row0 + i]));
        if (g.residual) {
          const float* r = g.residual + row0 * ldc + col0 + off;
          x = _mm512_add_ps(x, MASKED ? _mm512_maskz_loadu_ps(mask[z], r) : _mm512_loadu_ps(r));
        }
        if (g.act != ACT_NONE) x = _mm512_max_ps(x, lo);
        if (g.act == ACT_CLIP) x = _mm512_min_ps(x, hi);
      }
      if (MASKED) _mm512_mask_storeu_ps(C + off, mask[z], x);
      else _mm512_storeu_ps(C + off, x);
    }
}

// Store an R x (NZ * 16) zmm tile, all R rows and the first n columns (those of `mask`) valid, with a
// per-row bias, the residual and ReLU / Clip / no activation in zmm registers (masked loads and stores
// past n); false (nothing stored) for what store_tile handles: partial rows, per-column bias, the
// other activations.
template <int R, int NZ>
__attribute__((target("avx2,fma,avx512f"))) inline bool store_tile_z(const __m512 (&c)[R][NZ],
                                                                     const __mmask16 (&mask)[NZ], int64_t m, int64_t n,
                                                                     float* C, bool accumulate, bool last, const Job& g,
                                                                     int64_t row0, int64_t col0) {
  if (m != R || (last && ((g.bias && g.bias_axis != 0) ||
                          (g.act != ACT_NONE && g.act != ACT_RELU && g.act != ACT_CLIP))))
    return false;
  const __m512 lo = g.act == ACT_RELU ? _mm512_setzero_ps() : _mm512_set1_ps(g.alpha), hi = _mm512_set1_ps(g.beta);
  if (n >= NZ * 16) store_rows_z<R, NZ, false>(c, mask, C, accumulate, last, g, row0, col0, lo, hi);
  else store_rows_z<R, NZ, true>(c, mask, C, accumulate, last, g, row0, col0, lo, hi);
  return true;
}

// tile_zmm's ymm epilogue (store_tile), for one panel's R rows: out of line, the rare path (build time).
template <int R, int NZ>
__attribute__((target("avx2,fma,avx512f"), noinline)) void store_panel_ymm(const __m512 (&zp)[R][NZ], int64_t m,
                                                                            int64_t n, float* Ct, bool accumulate,
                                                                            bool last, const Job& g, int64_t row0,
                                                                            int64_t col0) {
  __m256 c[R][2 * NZ];
  split_z<R, NZ>(zp, c);
  store_tile<R, 2 * NZ>(c, m, n, Ct, accumulate, last, g, row0, col0);
}

// Run the zmm kernel on P panels' first R rows (NZ zmm per row) and store the tile: zmm epilogue, or
// else the ymm one (store_tile) panel by panel.
template <int R, int AS, int P, int NZ, int PACK = 0>
__attribute__((target("avx2,fma,avx512f"))) inline void tile_zmm(int64_t kc, const float* Ap, const float* Bp,
                                                                 int64_t m, int64_t n, float* Ct, bool accumulate,
                                                                 bool last, const Job& g, int64_t row0, int64_t col0,
                                                                 float* pack = nullptr, const float* src = nullptr,
                                                                 int64_t ldb = 0, const int64_t* rows = nullptr) {
  __m512 z[P * R][NZ];
  __mmask16 mask[NZ];
#pragma GCC unroll 2
  for (int h = 0; h < NZ; h++)
    mask[h] = static_cast<__mmask16>((1u << std::min<int64_t>(16, std::max<int64_t>(0, n - h * 16))) - 1u);
  kernel_packed_z<R, AS, P, NZ, PACK>(kc, Ap, Bp, z, pack, src, ldb, rows, mask);
  if (store_tile_z<P * R, NZ>(z, mask, m, n, Ct, accumulate, last, g, row0, col0)) return;
#pragma GCC unroll 2
  for (int p = 0; p < P; p++) {
    const int64_t mp = std::min<int64_t>(R, m - p * R);
    if (mp <= 0) break;
    __m512 zp[R][NZ];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
      for (int h = 0; h < NZ; h++) zp[i][h] = z[p * R + i][h];
    store_panel_ymm<R, NZ>(zp, mp, n, Ct + p * R * g.ldc, accumulate, last, g, row0 + p * R, col0);
  }
}

// Column-edge microkernel for the last NC (1-4) columns of a packed panel (N = 49 leaves one): per
// column, dot products of the MR rows of the A panel with B's column, vectorised along the rows
// (one 8-float load of A per k, lanes past MR unused), U k-steps in flight: 1 + NC loads per k
// instead of the 6 x 8 kernel's 7. The result lands in c[i][0] (column j in lane j) for store_tile.
template <int MR, int NC, int LDB>
INFERON_AVX2_INLINE void kernel_columns(int64_t kc, const float* INFERON_RESTRICT Ap,
                                        const float* INFERON_RESTRICT Bp, __m256 (&c)[MR][1]) {
  static_assert(MR <= 8 && NC >= 1 && NC <= 4, "rows fit one vector");
  constexpr int U = NC <= 2 ? 4 : 2;
  __m256 acc[U][NC];
#pragma GCC unroll 4
  for (int u = 0; u < U; u++)
#pragma GCC unroll 4
    for (int j = 0; j < NC; j++) acc[u][j] = _mm256_setzero_ps();
  // the last k reads its A row masked (8 floats from Ap + k MR would pass the panel's end)
  const int64_t body = kc - 1;
  int64_t k = 0;
  for (; k + U <= body; k += U)
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
      const __m256 a = _mm256_loadu_ps(Ap + (k + u) * MR);
#pragma GCC unroll 4
      for (int j = 0; j < NC; j++)
        acc[u][j] = _mm256_fmadd_ps(a, _mm256_broadcast_ss(Bp + (k + u) * LDB + j), acc[u][j]);
    }
  for (; k < kc; k++) {
    const __m256 a = k < body ? _mm256_loadu_ps(Ap + k * MR) : _mm256_maskload_ps(Ap + k * MR, mask_first(MR));
#pragma GCC unroll 4
    for (int j = 0; j < NC; j++) acc[0][j] = _mm256_fmadd_ps(a, _mm256_broadcast_ss(Bp + k * LDB + j), acc[0][j]);
  }
  alignas(32) float t[NC][8];
#pragma GCC unroll 4
  for (int j = 0; j < NC; j++) {
#pragma GCC unroll 4
    for (int u = 1; u < U; u++) acc[0][j] = _mm256_add_ps(acc[0][j], acc[u][j]);
    _mm256_store_ps(t[j], acc[0][j]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    alignas(32) float row[8] = {};
#pragma GCC unroll 4
    for (int j = 0; j < NC; j++) row[j] = t[j][i];
    c[i][0] = _mm256_load_ps(row);
  }
}

// Microkernel reading B in place: row k of the panel is the NV*8 floats at Brow + rows[k] (A as
// in kernel_packed: the first MR rows of an AS-row panel).
template <int MR, int NV, int AS = MR>
INFERON_AVX2_INLINE void kernel_rows(int64_t kc, const float* INFERON_RESTRICT Ap, const float* Brow,
                                     const int64_t* INFERON_RESTRICT rows, __m256 (&c)[MR][NV]) {
  zero_tile<MR, NV>(c);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b[NV];
    const float* bp = Brow + rows[k];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = _mm256_loadu_ps(bp + v * 8);
    rank1_update<MR, NV>(Ap + k * AS, b, c);
  }
}

// Floats from one packed NR-column B panel to the next: kc * NR plus one cache line, so that the
// panels one row of B is split into do not start 4 KB apart where kc * NR * 4 is a multiple of 4 KB
// (kc = 64, 128, 384 with NR = 16): their stores aliased in L1's sets (ResNet-50's 64 x 3136 x 64
// GEMM 1.05x faster with the extra line).
inline int64_t panel_stride(int64_t kc, int nr) { return kc * nr + 16; }

// Pack a kc x nc block of B (row k at B + k * ldb, or at B + rows[k]) into NR-wide panels, zero-padding
// the last one. Row by row: each source row segment is read once, in order (walking one panel's column down all kc
// rows touched a new cache line and page per element row: 25 % of a 64 x 12544 x 147 GEMM).
template <int NV>
INFERON_AVX2_INLINE void pack_B(int64_t kc, int64_t nc, const float* B, int64_t ldb, const int64_t* rows, float* Bp) {
  constexpr int NR = NV * 8;
  const int64_t full = nc / NR * NR, ps = panel_stride(kc, NR);
  __m256i masks[NV];
  for (int v = 0; v < NV; v++) masks[v] = mask_first(std::max<int64_t>(0, nc - full - v * 8));
  for (int64_t k = 0; k < kc; k++) {
    const float* src = B + (rows ? rows[k] : k * ldb);
    float* dst = Bp + k * NR;
    for (int64_t j = 0; j < full; j += NR)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) _mm256_store_ps(dst + j / NR * ps + v * 8, _mm256_loadu_ps(src + j + v * 8));
    if (full < nc)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        _mm256_store_ps(dst + full / NR * ps + v * 8, _mm256_maskload_ps(src + full + v * 8, masks[v]));
  }
}

// Pack rows [pc, pc + kc) x columns [jc, jc + nc) of the im2col matrix of image x into NR-wide
// panels (as pack_B): each row segment is extracted into an L1-resident buffer, then split.
template <int NV>
INFERON_AVX2_INLINE void pack_B_im2col(const Im2col& q, const float* x, int64_t pc, int64_t kc,
                                       int64_t jc, int64_t nc, float* Bp) {
  constexpr int NR = NV * 8;
  float* row = tls_scratch(2).get(static_cast<size_t>((nc + NR - 1) / NR * NR));
  const int64_t full = nc / NR * NR, ps = panel_stride(kc, NR);
  const auto& plan = im2col_plan(q, jc, nc);
  const int64_t taps = static_cast<int64_t>(q.kh) * q.kw;
  for (int64_t k = 0; k < kc; k++) {
    const int64_t r = pc + k;
    im2col_apply_avx2(q, plan[static_cast<size_t>(r % taps)], x + (r / taps) * q.H * q.W, row);
    for (int64_t j = 0; j < full; j += NR)
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        _mm256_store_ps(Bp + j / NR * ps + k * NR + v * 8, _mm256_loadu_ps(row + j + v * 8));
    if (full < nc) {
      for (int64_t t = nc; t < full + NR; t++) row[t] = 0.f;
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        _mm256_store_ps(Bp + full / NR * ps + k * NR + v * 8, _mm256_loadu_ps(row + full + v * 8));
    }
  }
}

// Pack an mc x kc block of A (row stride lda) into MR-high panels, zero-padding the last one.
template <int MR>
INFERON_AVX2_INLINE void pack_A(int64_t mc, int64_t kc, const float* A, int64_t lda, float* Ap) {
  for (int64_t i = 0; i < mc; i += MR) {
    float* INFERON_RESTRICT dst = Ap + i * kc;
    const int64_t mr = std::min<int64_t>(MR, mc - i);
    if (mr == MR) {
      const float* rows[MR];
      for (int r = 0; r < MR; r++) rows[r] = A + (i + r) * lda;
      for (int64_t k = 0; k < kc; k++)
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) dst[k * MR + r] = rows[r][k];
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? A[(i + r) * lda + k] : 0.f;
    }
  }
}

// One cache block of the packed GEMM: A panels at A, B panels at B, C origin (ic, jc).
struct Block {
  const float* A; const float* B;  // B: packed panels, or (implicit GEMM) the image at column jc
  const int64_t* rows;             // implicit GEMM: B row offsets of this KC block, else null
  int64_t ic, jc, mcur, ncur, kcur;
  bool accumulate, last;
  int64_t bstride;                 // floats from one NR-column B panel to the next
  float* pack = nullptr;           // B's panels still to be packed (at B): row k from pack_src + k * g.ldb,
                                   // or + pack_rows[k] (implicit GEMM)
  const float* pack_src = nullptr;
  const int64_t* pack_rows = nullptr;
};

// The register tile at (ir, jr) of a block: R rows of an MR-row A panel (R < MR: the last panel
// of a block whose rows do not fill it, computed without its zero rows).
template <int R, int MR, int NV>
INFERON_AVX2_INLINE void tile_rows(const Job& g, const Block& b, int64_t ir, int64_t jr) {
  constexpr int NR = NV * 8;
  const int64_t nr = std::min<int64_t>(NR, b.ncur - jr);
  const int64_t mr = std::min<int64_t>(R, b.mcur - ir);
  float* Ct = g.C + (b.ic + ir) * g.ldc + b.jc + jr;
  if constexpr (NV == 4) {  // zmm panels (B always packed, implicit GEMMs' too): a 1-16 column edge on one zmm per row
    const float* Ap = b.A + ir * b.kcur;
    const float* Bp = b.B + (jr / NR) * b.bstride;
    if (nr <= 16) tile_zmm<R, MR, 1, 1>(b.kcur, Ap, Bp, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
    else tile_zmm<R, MR, 1, 2>(b.kcur, Ap, Bp, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
  } else if (b.rows) {  // implicit GEMM: B read in place (columns past the edge are readable slack)
    __m256 c[R][NV];
    kernel_rows<R, NV, MR>(b.kcur, b.A + ir * b.kcur, b.B + jr, b.rows, c);
    store_tile<R, NV>(c, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
  } else if (nr <= 4) {  // column edge: dot products along the rows
    __m256 c[MR][1];
    const float* Ap = b.A + ir * b.kcur;
    const float* Bp = b.B + (jr / NR) * b.bstride;
    switch (nr) {
      case 1: kernel_columns<MR, 1, NR>(b.kcur, Ap, Bp, c); break;
      case 2: kernel_columns<MR, 2, NR>(b.kcur, Ap, Bp, c); break;
      case 3: kernel_columns<MR, 3, NR>(b.kcur, Ap, Bp, c); break;
      default: kernel_columns<MR, 4, NR>(b.kcur, Ap, Bp, c); break;
    }
    store_tile<MR, 1>(c, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
  } else if (NV >= 2 && nr <= 8) {  // column edge: half (a quarter) of the FMAs
    __m256 c[R][1];
    kernel_packed<R, 1, NR, MR>(b.kcur, b.A + ir * b.kcur, b.B + (jr / NR) * b.bstride, c);
    store_tile<R, 1>(c, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
  } else {
    __m256 c[R][NV];
    kernel_packed<R, NV, NV * 8, MR>(b.kcur, b.A + ir * b.kcur, b.B + (jr / NR) * b.bstride, c);
    store_tile<R, NV>(c, mr, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr);
  }
}

// The register tile at (ir, jr): a last 6-row panel with 1-4 rows of M left runs a 4-row kernel
// (M = 64: 11 panels of 6 computed 66 rows; 64 x 3136 x 64 and the 7x7 stem's 64 x 12544 x 147
// ran at 84 / 82 % of the FMA peak).
// (Out of line: inlined next to the 6-row tile, GCC spilled the 6-row kernel's accumulators.)
template <int MR, int NV>
__attribute__((target("avx2,fma"), noinline)) void tile_short(const Job& g, const Block& b, int64_t ir, int64_t jr) {
  tile_rows<4, MR, NV>(g, b, ir, jr);
}

// The zmm tiles (NV = 4, MR = kPackedMR): only these are compiled for AVX-512F (out of line, one call
// per register tile or per pair of panels' row of tiles), not the whole block loop (inlining
// everything into one AVX-512 function doubled the GEMM kernels' build time). Their own kernel
// object (family GEMM_ZMM, linked with GEMM) compiles beside the rest of the GEMM.
#define INFERON_ZMM_TILE __attribute__((target("avx2,fma,avx512f"), noinline))
INFERON_ENTRY INFERON_ZMM_TILE void tile_z(const Job& g, const Block& b, int64_t ir, int64_t jr);
INFERON_ENTRY INFERON_ZMM_TILE void tile_short_z(const Job& g, const Block& b, int64_t ir, int64_t jr);
INFERON_ENTRY INFERON_ZMM_TILE void tile_pairs_z(const Job& g, const Block& b, int64_t ir);

#if INFERON_DEFINE_KERNELS(GEMM_ZMM)
// Every register tile of rows ir .. ir + 11 (two whole 6-row panels) of a block, in one call: 12 x 32
// tiles (kernel_packed_z, P = 2), a column edge as one 12-row tile too (masked; 1-4 columns as dot
// products per panel instead, kernel_columns: 64 x 196 x 16 1.05x, 256 x 196 x 2304 1.03x slower).
// (One call per tile instead: 64 x 12321 x 27 1.02x slower.) With b.pack, these tiles pack the
// block's B panels as they go (the block's first rows).
template <int PACK>
__attribute__((target("avx2,fma,avx512f"))) inline void pairs_z(const Job& g, const Block& b, int64_t ir) {
  constexpr int R = kPackedMR;
  const float* Ap = b.A + ir * b.kcur;
  for (int64_t jr = 0; jr < b.ncur; jr += 32) {
    const int64_t nr = std::min<int64_t>(32, b.ncur - jr);
    float* Ct = g.C + (b.ic + ir) * g.ldc + b.jc + jr;
    const float* Bp = b.B + (jr / 32) * b.bstride;
    float* pack = PACK ? b.pack + (jr / 32) * b.bstride : nullptr;  // = Bp, written
    const float* src = PACK ? b.pack_src + jr : nullptr;
    if (nr > 16) {
      tile_zmm<R, R, 2, 2, PACK>(b.kcur, Ap, Bp, 2 * R, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr, pack, src,
                                 g.ldb, b.pack_rows);
    } else {
      tile_zmm<R, R, 2, 1, PACK>(b.kcur, Ap, Bp, 2 * R, nr, Ct, b.accumulate, b.last, g, b.ic + ir, b.jc + jr, pack, src,
                                 g.ldb, b.pack_rows);
    }
  }
}

INFERON_ENTRY INFERON_ZMM_TILE void tile_pairs_z(const Job& g, const Block& b, int64_t ir) {
  if (b.pack && b.pack_rows) pairs_z<2>(g, b, ir);
  else if (b.pack) pairs_z<1>(g, b, ir);
  else pairs_z<0>(g, b, ir);
}

INFERON_ENTRY INFERON_ZMM_TILE void tile_z(const Job& g, const Block& b, int64_t ir, int64_t jr) {
  tile_rows<kPackedMR, kPackedMR, 4>(g, b, ir, jr);
}

INFERON_ENTRY INFERON_ZMM_TILE void tile_short_z(const Job& g, const Block& b, int64_t ir, int64_t jr) {
  tile_rows<4, kPackedMR, 4>(g, b, ir, jr);
}
#endif

template <int MR, int NV>
INFERON_AVX2_INLINE void tile(const Job& g, const Block& b, int64_t ir, int64_t jr) {
  if constexpr (NV == 4) {
    static_assert(MR == kPackedMR, "zmm tiles are compiled for 6-row panels");
    if (b.mcur - ir <= 4) return tile_short_z(g, b, ir, jr);
    return tile_z(g, b, ir, jr);
  } else {
    if (MR == 6 && b.mcur - ir <= 4) return tile_short<MR, NV>(g, b, ir, jr);
    tile_rows<MR, MR, NV>(g, b, ir, jr);
  }
}

template <int MR, int NV>
INFERON_AVX2 void rect_packed(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int NR = NV * 8;
  const int64_t K = g.K;
  const int64_t kc = std::max<int64_t>(1, std::min(g.kc, K));
  const int64_t mc = std::max<int64_t>(MR, (g.mc + MR - 1) / MR * MR);
  const int64_t nc = std::max<int64_t>(NR, (g.nc + NR - 1) / NR * NR);
  const int64_t mc_eff = std::min(mc, (m1 - m0 + MR - 1) / MR * MR);
  const int64_t nc_eff = std::min(nc, (n1 - n0 + NR - 1) / NR * NR);
  float* Ap = g.a_packed ? nullptr : tls_scratch(0).get(static_cast<size_t>(mc_eff * kc));
  const int64_t mpad = (g.M + MR - 1) / MR * MR;
  // zmm panels pack B whether it is plain or an implicit GEMM's image (row offsets b_rows), ymm ones
  // read the image in place
  const bool in_place = g.b_rows && NV != 4;
  float* Bp = in_place || g.b_packed ? nullptr : tls_scratch(1).get(static_cast<size_t>(nc_eff / NR * panel_stride(kc, NR)));
  for (int64_t jc = n0; jc < n1; jc += nc) {
    const int64_t ncur = std::min(nc, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kc) {
      const int64_t kcur = std::min(kc, K - pc);
      const bool accumulate = pc > 0 || g.acc_c;
      const bool last = pc + kcur >= K;
      // zmm panels of a plain B or an implicit GEMM's image: the first pair of A panels of the first
      // row block packs B as it computes (pairs_z)
      const bool fused_pack = NV == 4 && !g.b_packed && !g.im2col && std::min(mc, m1 - m0) >= 2 * MR;
      // this block's B rows: an implicit GEMM's at bsrc + brows[k], a plain B's at bsrc + k * ldb
      const int64_t* brows = g.b_rows ? g.b_rows + pc : nullptr;
      const float* bsrc = g.b_rows ? g.B + jc : g.B + pc * g.ldb + jc;
      if (in_place || g.b_packed || fused_pack) {}  // B read in place, pre-packed or packed by the tiles
      else if (g.im2col) pack_B_im2col<NV>(*g.im2col, g.B, pc, kcur, jc, ncur, Bp);
      else pack_B<NV>(kcur, ncur, bsrc, g.ldb, brows, Bp);
      for (int64_t ic = m0; ic < m1; ic += mc) {
        const int64_t mcur = std::min(mc, m1 - ic);
        const float* Ablk = Ap;
        if (g.a_packed) Ablk = g.A + pc * mpad + ic * kcur;
        else pack_A<MR>(mcur, kcur, g.A + ic * g.lda + pc, g.lda, Ap);
        Block blk = in_place ? Block{Ablk, g.B + jc, g.b_rows + pc, ic, jc, mcur, ncur, kcur, accumulate, last, 0}
                          : g.b_packed ? Block{Ablk, g.B + jc * K + pc * NR, nullptr, ic, jc, mcur, ncur, kcur, accumulate, last, NR * K}
                                       : Block{Ablk, Bp, nullptr, ic, jc, mcur, ncur, kcur, accumulate, last, panel_stride(kcur, NR)};
        // Register tiles of this block. zmm: pairs of whole A panels (12 x 32 tiles) in L1, B
        // panels streaming from L2 (ir outer; a 32-column panel of KC = 384 rows fills L1 alone).
        // ymm: B panels stay in L1 across the A panels (jr outer) unless the packed B block is small
        // enough for L2: then each A panel is loaded once (ir outer), which matters when A streams
        // from memory (pre-packed weights, few columns).
        if constexpr (NV == 4) {
          int64_t ir = 0;
          if (fused_pack && ic == m0) {  // the first pair of panels packs the block's B
            blk.pack = Bp;
            blk.pack_src = bsrc;
            blk.pack_rows = brows;
            tile_pairs_z(g, blk, 0);
            blk.pack = nullptr;
            ir = 2 * MR;
          }
          for (; ir + 2 * MR <= mcur; ir += 2 * MR) tile_pairs_z(g, blk, ir);
          for (; ir < mcur; ir += MR)
            for (int64_t jr = 0; jr < ncur; jr += NR) tile<MR, NV>(g, blk, ir, jr);
        } else if (kcur * ncur * static_cast<int64_t>(sizeof(float)) <= kL2BlockBytes) {
          for (int64_t ir = 0; ir < mcur; ir += MR)
            for (int64_t jr = 0; jr < ncur; jr += NR) tile<MR, NV>(g, blk, ir, jr);
        } else {
          for (int64_t jr = 0; jr < ncur; jr += NR)
            for (int64_t ir = 0; ir < mcur; ir += MR) tile<MR, NV>(g, blk, ir, jr);
        }
      }
    }
  }
}

// Direct microkernel for small M (all of it in one tile, M == MR): A rows read in place,
// B read in place (masked on the last columns), whole K in registers.
template <int MR, int NV, bool MASKED>
INFERON_AVX2_INLINE void kernel_direct(int64_t K, const float* A, int64_t lda, const float* B,
                                       int64_t ldb, int64_t n, __m256 (&c)[MR][NV]) {
  __m256i masks[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; v++) masks[v] = mask_first(std::max<int64_t>(0, std::min<int64_t>(8, n - v * 8)));
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) c[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; k++) {
    __m256 b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
      b[v] = MASKED ? _mm256_maskload_ps(B + k * ldb + v * 8, masks[v]) : _mm256_loadu_ps(B + k * ldb + v * 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) c[i][v] = _mm256_fmadd_ps(a, b[v], c[i][v]);
    }
  }
}

template <int MR, int NV>
INFERON_AVX2 void rect_direct(const Job& g, int64_t n0, int64_t n1) {
  constexpr int NR = NV * 8;
  int64_t j = n0;
  for (; j + NR <= n1; j += NR) {
    __m256 c[MR][NV];
    kernel_direct<MR, NV, false>(g.K, g.A, g.lda, g.B + j, g.ldb, NR, c);
    store_tile<MR, NV>(c, MR, NR, g.C + j, g.acc_c, true, g, 0, j);
  }
  if (j < n1) {
    __m256 c[MR][NV];
    kernel_direct<MR, NV, true>(g.K, g.A, g.lda, g.B + j, g.ldb, n1 - j, c);
    store_tile<MR, NV>(c, MR, n1 - j, g.C + j, g.acc_c, true, g, 0, j);
  }
}

// Small M with a large B: stream B row by row (4 rows at a time, contiguous, prefetch
// friendly) and accumulate the MR rows of C in memory (chunks of 1024 columns stay in L1),
// then apply the epilogue. Columns [n0, n1).
// The next four rows of B are prefetched while these four stream (1 x 4096 x 9216, AlexNet's first FC
// layer, 151 MB of weights: 9.2 -> 10.7 GFLOP/s; 1 x 1000 x 2048 unchanged; eight rows ahead: 9.3).
template <int MR>
INFERON_AVX2 void rect_stream(const Job& g, int64_t n0, int64_t n1) {
  constexpr int64_t NCH = 1024;
  const int64_t K = g.K, lda = g.lda, ldb = g.ldb, ldc = g.ldc;
  for (int64_t j0 = n0; j0 < n1; j0 += NCH) {
    const int64_t nc = std::min(NCH, n1 - j0);
    const int64_t nv = nc / 8 * 8;
    const __m256i tail = mask_first(nc - nv);
    if (!g.acc_c)
      for (int i = 0; i < MR; i++) std::fill(g.C + i * ldc + j0, g.C + i * ldc + j0 + nc, 0.f);
    int64_t k = 0;
    for (; k < K; k += 4) {
      const int kk = static_cast<int>(std::min<int64_t>(4, K - k));
      const float* b0 = g.B + k * ldb + j0;
      const float* b1 = kk > 1 ? b0 + ldb : b0;
      const float* b2 = kk > 2 ? b0 + 2 * ldb : b0;
      const float* b3 = kk > 3 ? b0 + 3 * ldb : b0;
      __m256 a[MR][4];
#pragma GCC unroll 8
      for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
          a[i][q] = _mm256_set1_ps(q < kk ? g.A[i * lda + k + q] : 0.f);
      int64_t j = 0;
      const float* pf = k + 4 < K ? b0 + 4 * ldb : nullptr;  // the next four rows
      for (; j < nv; j += 8) {
        if (pf && (j & 15) == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(pf + j), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(pf + ldb + j), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(pf + 2 * ldb + j), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(pf + 3 * ldb + j), _MM_HINT_T0);
        }
        const __m256 v0 = _mm256_loadu_ps(b0 + j), v1 = _mm256_loadu_ps(b1 + j);
        const __m256 v2 = _mm256_loadu_ps(b2 + j), v3 = _mm256_loadu_ps(b3 + j);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
          float* c = g.C + i * ldc + j0 + j;
          __m256 s = _mm256_mul_ps(a[i][0], v0);
          s = _mm256_fmadd_ps(a[i][1], v1, s);
          s = _mm256_fmadd_ps(a[i][2], v2, s);
          s = _mm256_fmadd_ps(a[i][3], v3, s);
          _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), s));
        }
      }
      if (j < nc) {
        const __m256 v0 = _mm256_maskload_ps(b0 + j, tail), v1 = _mm256_maskload_ps(b1 + j, tail);
        const __m256 v2 = _mm256_maskload_ps(b2 + j, tail), v3 = _mm256_maskload_ps(b3 + j, tail);
        for (int i = 0; i < MR; i++) {
          float* c = g.C + i * ldc + j0 + j;
          __m256 s = _mm256_mul_ps(a[i][0], v0);
          s = _mm256_fmadd_ps(a[i][1], v1, s);
          s = _mm256_fmadd_ps(a[i][2], v2, s);
          s = _mm256_fmadd_ps(a[i][3], v3, s);
          _mm256_maskstore_ps(c, tail, _mm256_add_ps(_mm256_maskload_ps(c, tail), s));
        }
      }
    }
    if (g.bias || g.residual || g.act != ACT_NONE)
      for (int i = 0; i < MR; i++) {
        float* c = g.C + i * ldc;
        for (int64_t jj = j0; jj < j0 + nc; jj++) c[jj] = epi_scalar(g, c[jj], i, jj);
      }
  }
}

// N == 1: C[i] = dot(A[i, :], B[:, 0]).
INFERON_AVX2 inline void rect_gemv(const Job& g, int64_t m0, int64_t m1) {
  const int64_t K = g.K;
  const float* b = g.B;
  if (g.ldb != 1) {
    float* tmp = tls_scratch(2).get(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; k++) tmp[k] = g.B[k * g.ldb];
    b = tmp;
  }
  for (int64_t i = m0; i < m1; i++) {
    const float* a = g.A + i * g.lda;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
      s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
      s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
    }
    for (; k + 8 <= K; k += 8)
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    if (k < K) {
      const __m256i mk = mask_first(K - k);
      s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + k, mk), _mm256_maskload_ps(b + k, mk), s1);
    }
    float v = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float* c = g.C + i * g.ldc;
    if (g.acc_c) v += *c;
    *c = epi_scalar(g, v, i, 0);
  }
}

// The row panels on zmm tiles (Job::zmm): 32-column B panels, register tiles in tile_pairs_z / tile_z.
INFERON_AVX2 inline void rect_packed_z(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  rect_packed<kPackedMR, 4>(g, m0, m1, n0, n1);
}

template <int MR>
INFERON_AVX2 void rect_packed_nv(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (g.zmm) return rect_packed_z(g, m0, m1, n0, n1);
  if (g.nv == 1) rect_packed<MR, 1>(g, m0, m1, n0, n1);
  else rect_packed<MR, 2>(g, m0, m1, n0, n1);
}

// All M <= 6 rows (B read directly, or streamed for M <= 4): its own kernel object (family
// GEMM_SMALL_M, linked with GEMM), compiled beside the row panels.
INFERON_ENTRY INFERON_AVX2 void rect_small_m(const Job& g, int64_t n0, int64_t n1);

#if INFERON_DEFINE_KERNELS(GEMM_SMALL_M)
INFERON_ENTRY INFERON_AVX2 void rect_small_m(const Job& g, int64_t n0, int64_t n1) {
  if (g.M <= 4 && g.K * (n1 - n0) >= INFERON_GEMM_STREAM_MIN) {  // measured: M 5-6 prefer direct
    switch (g.M) {
      case 1: return rect_stream<1>(g, n0, n1);
      case 2: return rect_stream<2>(g, n0, n1);
      case 3: return rect_stream<3>(g, n0, n1);
      default: return rect_stream<4>(g, n0, n1);
    }
  }
  switch (g.M) {
    case 1: return rect_direct<1, 4>(g, n0, n1);
    case 2: return rect_direct<2, 4>(g, n0, n1);
    case 3: return rect_direct<3, 4>(g, n0, n1);
    case 4: return rect_direct<4, 2>(g, n0, n1);
    case 5: return rect_direct<5, 2>(g, n0, n1);
    default: return rect_direct<6, 2>(g, n0, n1);
  }
}
#endif

INFERON_AVX2 inline void rect_avx2(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (g.packed_only()) return rect_packed_nv<kPackedMR>(g, m0, m1, n0, n1);
  if (g.N == 1) return rect_gemv(g, m0, m1);
  if (g.M <= 6 && m0 == 0 && m1 == g.M) return rect_small_m(g, n0, n1);
  // Only MR = 6 is instantiated (compile time): smaller mr hints run the 6-row kernel.
  rect_packed_nv<6>(g, m0, m1, n0, n1);
}

inline void rect(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, bool avx2) {
  if (m0 >= m1 || n0 >= n1) return;
  if (avx2) rect_avx2(g, m0, m1, n0, n1);
  else rect_scalar(g, m0, m1, n0, n1);
}

// Split the plane into tm x tn rectangles (tm * tn <= T) minimising the per-thread cost: register
// tiles plus the panels each thread packs itself (every thread packs the B panels of its columns and
// the A panels of its rows), in register-tile units: wb / wa per B / A panel (0: nothing packed).
// Splitting M makes both threads pack the same B panels; for an im2col-fused B (a gather per
// element) that cost ~one tile per panel and made ResNet-50's stride-2 3x3 layers 20 % slower at 2
// threads than splitting N.
inline void choose_grid(int T, int64_t mblocks, int64_t nblocks, int& tm, int& tn, double wb = 0,
                        double wa = 0, double mfrac = 1.0, double nfrac = 1.0) {
  // the largest share of `blocks` split `parts` ways as run_parallel cuts them, the last block counted
  // as the `frac` of one it is (SqueezeNet's 1000 x 169 x 512 classifier: 5.3 column tiles; counted as
  // 6, splitting N looked as cheap as splitting M and ran 96 + 73 columns: 1.07x slower at 2 threads)
  const auto share = [&](int64_t blocks, int parts, double frac) {
    double best = 0;
    for (int p = 0; p < parts; p++) {
      const int64_t b0 = blocks * p / parts, b1 = blocks * (p + 1) / parts;
      best = std::max(best, static_cast<double>(b1 - b0) - (b1 == blocks && b1 > b0 ? 1.0 - frac : 0.0));
    }
    return best;
  };
  const auto cost_of = [&](int a, int b) {
    const double mt = share(mblocks, a, mfrac), nt = share(nblocks, b, nfrac);
    return mt * nt + wb * nt + wa * mt;
  };
  tm = 1;
  tn = 1;
  double best = cost_of(1, 1);
  for (int a = 1; a <= T; a++) {
    if (a > mblocks) break;
    for (int b = 1; a * b <= T; b++) {
      if (b > nblocks) break;
      const double cost = cost_of(a, b);
      // prefer lower cost, then fewer threads, then splitting N
      if (cost < best || (cost == best && a * b < tm * tn) ||
          (cost == best && a * b == tm * tn && b > tn)) {
        best = cost;
        tm = a;
        tn = b;
      }
    }
  }
}

inline void run_parallel(const Job& g, int T, bool avx2) {
  const bool small_m = g.M <= 6 && g.N > 1 && !g.packed_only();  // the unsplit small-M paths
  const int64_t mb_size = g.packed_only() ? kPackedMR : (g.N == 1) ? 1 : (g.M <= 6 ? g.M : g.mr);
  const int64_t nb_size = small_m || g.zmm ? 32 : (g.nv * 8);
  const int64_t mblocks = small_m ? 1 : (g.M + mb_size - 1) / mb_size;
  const int64_t nblocks = (g.N + nb_size - 1) / nb_size;
  int tm, tn;
  const bool packs = avx2 && (g.packed_only() || (!small_m && g.N > 1));  // rect_packed packs panels
  // a B panel packed costs about one register tile, gathered through im2col or not (plain B at 0.25:
  // SqueezeNet's 32 x 729 x 128-256 squeeze convs split M, both threads packing all of B, 1.75x
  // slower than split N; the model 1.055x at 2 threads, ResNet-50 0.99-1.02x)
  const double wb = !packs || (g.b_rows && !g.zmm) || g.b_packed ? 0.0 : 1.0;
  const double wa = !packs || g.a_packed ? 0.0 : 0.25;
  const double mfrac = static_cast<double>(g.M - (mblocks - 1) * mb_size) / static_cast<double>(mb_size);
  const double nfrac = static_cast<double>(g.N - (nblocks - 1) * nb_size) / static_cast<double>(nb_size);
  choose_grid(T, mblocks, nblocks, tm, tn, wb, wa, small_m ? 1.0 : mfrac, nfrac);
  if (tm * tn <= 1) return rect(g, 0, g.M, 0, g.N, avx2);
#pragma omp parallel num_threads(tm * tn)
  {
    const int id = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    if (nt == tm * tn) {
      const int im = id / tn, in = id % tn;
      const int64_t m0 = std::min(g.M, mblocks * im / tm * mb_size);
      const int64_t m1 = std::min(g.M, mblocks * (im + 1) / tm * mb_size);
      const int64_t n0 = std::min(g.N, nblocks * in / tn * nb_size);
      const int64_t n1 = std::min(g.N, nblocks * (in + 1) / tn * nb_size);
      rect(g, m0, m1, n0, n1, avx2);
    } else if (id == 0) {  // fewer threads than asked for: do it all on one
      rect(g, 0, g.M, 0, g.N, avx2);
    }
  }
}

}  // namespace gemm_detail

namespace gemm_detail {

// The image of `q` copied into a zero-bordered frame [C][Hp][Wp] that covers every tap of every
// output (Hp = (Ho - 1) * sh + (kh - 1) * dh + 1, likewise Wp), plus `slack` zeros, in thread-local
// scratch 4 (filled by T threads, a share of the channels each); `offsets` (scratch 6) gets each
// im2col row's frame offset, row k = (c, i, j) at c*Hp*Wp + i*dh*Wp + j*dw. With `in_place` and no
// padding the image itself is the frame (rows W floats apart: Wp = W, no copy). Shared by the
// implicit GEMM and the lanes GEMM.
struct Frame { const float* x; const int64_t* offsets; int64_t Hp, Wp; };
inline Frame bordered_frame(const Im2col& q, const float* image, int64_t K, int64_t slack, int T,
                            bool in_place = false) {
  const int64_t Hp = frame_height(q);
  // K offsets, and kPackPrefetch more (the last one again) for the zmm kernel's prefetches
  int64_t* offsets =
      reinterpret_cast<int64_t*>(tls_scratch(6).get(static_cast<size_t>(2 * (std::max<int64_t>(1, K) + kPackPrefetch))));
  const bool image_is_frame = in_place && q.pt == 0 && q.pl == 0 && Hp <= q.H && frame_width(q) <= q.W;
  const int64_t Wp = image_is_frame ? q.W : frame_width(q), plane = image_is_frame ? q.H * q.W : Hp * Wp;
  for (int64_t k = 0; k < K; k++) {
    const int64_t c = k / (q.kh * q.kw), i = (k / q.kw) % q.kh, j = k % q.kw;
    offsets[k] = c * plane + i * q.dh * Wp + j * q.dw;
  }
  for (int64_t k = K; k < K + kPackPrefetch; k++) offsets[k] = K > 0 ? offsets[K - 1] : 0;
  if (image_is_frame) return {image, offsets, Hp, Wp};
  float* xp = tls_scratch(4).get(static_cast<size_t>(q.C * plane + slack));
  std::memset(xp + q.C * plane, 0, static_cast<size_t>(slack) * sizeof(float));
  const int64_t w = std::max<int64_t>(0, std::min<int64_t>(q.W, Wp - q.pl));  // image columns inside the frame
#pragma omp parallel for num_threads(T) if (T > 1 && q.C > 1) schedule(static)
  for (int64_t c = 0; c < q.C; c++) {
    float* p = xp + c * plane;
    for (int64_t y = 0; y < Hp; y++) {  // frame row y holds image row y - pt (or zeros)
      const int64_t h = y - q.pt;
      float* row = p + y * Wp;
      if (h < 0 || h >= q.H) {
        std::memset(row, 0, static_cast<size_t>(Wp) * sizeof(float));
        continue;
      }
      const int64_t lead = std::min<int64_t>(q.pl, Wp);
      std::memset(row, 0, static_cast<size_t>(lead) * sizeof(float));
      std::memcpy(row + lead, image + (c * q.H + h) * q.W, static_cast<size_t>(w) * sizeof(float));
      std::memset(row + lead + w, 0, static_cast<size_t>(Wp - lead - w) * sizeof(float));
    }
  }
  return {xp, offsets, Hp, Wp};
}

// Implicit GEMM of a stride-1, dilation-1 convolution (Im2col::implicit): the image is copied once
// into a zero-bordered plane [C, Hp, Wp] (Hp = Ho + kh - 1, Wp = Wo + kw - 1). In that frame im2col
// row (c, i, j) is the padded image shifted by c*Hp*Wp + i*Wp + j, so the microkernel reads B in
// place (no packing) for the Ho*Wp "wide" output columns; the Wp - Wo columns per output row that
// fall into the border are computed and dropped when the wide result is copied into C (where the
// residual and activation are applied).
inline void run_implicit(Job g, int T) {
  const Im2col& q = *g.im2col;
  const Frame f = bordered_frame(q, g.B, g.K, 64, T);  // kernels read up to one panel past the last column
  const int64_t Wp = f.Wp, wide = q.Ho * Wp;
  float* cw = tls_scratch(5).get(static_cast<size_t>(g.M * wide));
  Job w = g;
  const float* residual = g.acc_c ? g.C : g.residual;
  w.B = f.x; w.b_rows = f.offsets; w.im2col = nullptr;
  w.N = wide; w.C = cw; w.ldc = wide; w.acc_c = false; w.residual = nullptr;
  if (residual) w.act = ACT_NONE;  // applied after the residual, below
  if (T > 1) run_parallel(w, T, true);
  else rect(w, 0, w.M, 0, w.N, true);
  const int64_t Ho = q.Ho, Wo = q.Wo;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < g.M * Ho; r++) {
    const int64_t m = r / Ho, ho = r % Ho;
    const float* src = cw + m * wide + ho * Wp;
    float* dst = g.C + m * g.ldc + ho * Wo;
    if (!residual) {
      std::memcpy(dst, src, static_cast<size_t>(Wo) * sizeof(float));
    } else {
      act_row_avx2(dst, src, residual + m * g.ldc + ho * Wo, 0.f, Wo, g.act, g.alpha, g.beta);
    }
  }
}

}  // namespace gemm_detail

namespace gemm_detail {

// C = ep(A * B) for a few rows of A (M <= kSmallM: fully-connected layers at batch 1-4): B is
// streamed once, four rows at a time, into thread-local accumulators instead of being packed on
// every call (packing a large FC weight tripled its memory traffic); bias, residual (which may be C
// itself) and activation are applied when the accumulators are copied out. Columns are split over
// threads; the work is bound by B's memory stream, as a batch-1 FC layer is.
constexpr int64_t kSmallM = 4;

INFERON_AVX2 inline void small_m_cols(const Job& g, float* acc, int64_t n0, int64_t n1) {
  const int64_t n8 = n0 + (n1 - n0) / 8 * 8;
  for (int64_t m = 0; m < g.M; m++) std::fill(acc + m * g.N + n0, acc + m * g.N + n1, 0.f);
  int64_t k = 0;
  for (; k + 4 <= g.K; k += 4) {
    const float* b0 = g.B + k * g.ldb;
    const float *b1 = b0 + g.ldb, *b2 = b1 + g.ldb, *b3 = b2 + g.ldb;
    for (int64_t m = 0; m < g.M; m++) {
      const float* a = g.A + m * g.lda + k;
      const __m256 x0 = _mm256_set1_ps(a[0]), x1 = _mm256_set1_ps(a[1]);
      const __m256 x2 = _mm256_set1_ps(a[2]), x3 = _mm256_set1_ps(a[3]);
      float* c = acc + m * g.N;
      int64_t n = n0;
      for (; n < n8; n += 8) {
        __m256 v = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b0 + n), _mm256_loadu_ps(c + n));
        v = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b1 + n), v);
        v = _mm256_fmadd_ps(x2, _mm256_loadu_ps(b2 + n), v);
        _mm256_storeu_ps(c + n, _mm256_fmadd_ps(x3, _mm256_loadu_ps(b3 + n), v));
      }
      for (; n < n1; n++) c[n] += a[0] * b0[n] + a[1] * b1[n] + a[2] * b2[n] + a[3] * b3[n];
    }
  }
  for (; k < g.K; k++) {
    const float* b0 = g.B + k * g.ldb;
    for (int64_t m = 0; m < g.M; m++) {
      const float a = g.A[m * g.lda + k];
      float* c = acc + m * g.N;
      for (int64_t n = n0; n < n1; n++) c[n] += a * b0[n];
    }
  }
  const float* residual = g.acc_c ? g.C : g.residual;
  for (int64_t m = 0; m < g.M; m++)
    for (int64_t n = n0; n < n1; n++) {
      float v = acc[m * g.N + n];
      if (g.bias) v += g.bias_axis == 0 ? g.bias[m] : g.bias[n];
      if (residual) v += residual[m * g.ldc + n];
      g.C[m * g.ldc + n] = apply_act(v, g.act, g.alpha, g.beta);
    }
}

inline void small_m(const Job& g, int T) {
  float* acc = tls_scratch(7).get(static_cast<size_t>(g.M * g.N));
  const int64_t blocks = (g.N + 7) / 8;
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int nth = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t n0 = std::min(g.N, blocks * t / nth * 8), n1 = std::min(g.N, blocks * (t + 1) / nth * 8);
    if (n0 < n1) small_m_cols(g, acc, n0, n1);
  }
}

}  // namespace gemm_detail

// for b in [0,batch): C_b[MxN] = ep(A_b[MxK] * B_b[KxN]); X_b = X + b*sX (sX may be 0 = broadcast)
}  // namespace inferon

#include "gemm_lanes.hpp"  // uses the Job, store_tile and scratch above

namespace inferon {

INFERON_ENTRY void gemm(int64_t batch, int64_t M, int64_t N, int64_t K,
                 const float* A, int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB,
                 float* C, int64_t ldc, int64_t sC, const Epilogue& ep, const GemmTiles& t,
                 int num_threads, const Im2col* b_im2col = nullptr);

#if INFERON_DEFINE_KERNELS(GEMM)
INFERON_ENTRY void gemm(int64_t batch, int64_t M, int64_t N, int64_t K,
                 const float* A, int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB,
                 float* C, int64_t ldc, int64_t sC, const Epilogue& ep, const GemmTiles& t,
                 int num_threads, const Im2col* b_im2col) {
  using gemm_detail::Job;
  if (batch <= 0 || M <= 0 || N <= 0) return;
  const bool avx2 = use_avx2();
  Job base;
  base.M = M; base.N = N; base.K = K < 0 ? 0 : K;
  base.lda = lda; base.ldb = ldb; base.ldc = ldc;
  base.bias_axis = ep.bias_axis;
  base.act = ep.act; base.alpha = ep.alpha; base.beta = ep.beta;
  base.mr = 6;  // see GemmTiles
  base.a_packed = t.a_packed;
  base.b_packed = t.b_packed;
  base.im2col = b_im2col;
  base.b_rows = nullptr;
  base.nv = t.nr == 8 ? 1 : 2;
  // zmm row panels: with AVX-512F, for 16-column tiles whose B the kernel packs (pre-packed B panels
  // are 16 wide), implicit GEMMs included (their tiles pack the image's rows)
  base.zmm = base.nv == 2 && !t.b_packed && !t.a_lanes && zmm_rows();
  base.b_c8 = t.a_lanes && t.b_nchwc8 && !b_im2col;
  base.c_c8 = t.a_lanes && t.c_nchwc8;
  base.mc = t.mc > 0 ? t.mc : 72;
  base.kc = t.kc > 0 ? t.kc : 256;
  base.nc = t.nc > 0 ? t.nc : 1024;
  const bool alias = ep.residual != nullptr && ep.residual == C;
  auto job = [&](int64_t b) {
    Job g = base;
    g.A = A + b * sA;
    g.B = B + b * sB;
    g.C = C + b * sC;
    g.bias = ep.bias ? ep.bias + b * ep.bias_batch_stride : nullptr;
    g.acc_c = alias;
    g.residual = (ep.residual && !alias) ? ep.residual + b * sC : nullptr;
    return g;
  };
  const int T = threads_for(num_threads, static_cast<double>(M) * N * std::max<int64_t>(K, 1),
                            65536.0);
  if (t.a_lanes) {  // whole batch items per thread where there are enough, else panels per thread
    if (T > 1 && batch >= T) {
#pragma omp parallel for num_threads(T) schedule(static)
      for (int64_t b = 0; b < batch; b++) gemm_detail::lanes_run(job(b), 1);
    } else {
      for (int64_t b = 0; b < batch; b++) gemm_detail::lanes_run(job(b), T);
    }
    return;
  }
  if (T > 1 && batch >= T && !(avx2 && b_im2col && b_im2col->implicit)) {
#pragma omp parallel for num_threads(T) schedule(static)
    for (int64_t b = 0; b < batch; b++) gemm_detail::rect(job(b), 0, M, 0, N, avx2);
    return;
  }
  const bool small = avx2 && M <= gemm_detail::kSmallM && N >= 256 && K > 0 && !b_im2col && !t.a_packed && !t.b_packed;
  for (int64_t b = 0; b < batch; b++) {
    const Job g = job(b);
    if (small) gemm_detail::small_m(g, T);
    else if (avx2 && b_im2col && b_im2col->implicit) gemm_detail::run_implicit(g, T);
    else if (T > 1) gemm_detail::run_parallel(g, T, avx2);
    else gemm_detail::rect(g, 0, M, 0, N, avx2);
  }
}
#endif

}  // namespace inferon
