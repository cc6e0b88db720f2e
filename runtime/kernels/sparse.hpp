// Sparse-weight x dense-activation products: C[M, N] = ep(A * B) with A a sparse weight (CSR or
// 2:4 structured) and B dense activations, vectorised along N (spatial positions for convs).
//
// B is addressed through the weight's column indices: row k of B starts at B + k * scale, so one
// kernel serves 1x1 convs (B = the input image, scale = H*W), im2col buffers (scale = Ho*Wo) and
// convs read in place from a zero-bordered, stride-phase-split copy of the image ("implicit", any
// stride, dilation 1, see Frame: the compiler stores, as the CSR column index of filter tap
// (c, i, j), its offset in that frame, with scale 1; 2:4 weights keep their group positions and
// take a per-column offset table `koff`).
//
// Register tile: one output row x `nr` columns (64 by default: 4 zmm with AVX-512F, 8 ymm with
// AVX2; one template, `Zmm` / `Ymm` lanes); per nonzero one broadcast of the weight and nr/W FMAs
// with B loaded straight from memory; accumulator sets (nonzeros dealt round-robin) keep >= 8 FMA
// chains in flight. Loop order: column tiles, then column blocks of A (CSR `kblocks`, chosen by the
// compiler; 2:4: 32 groups), then rows, with partial sums in C between blocks: the B rows of one
// block and tile (~32 KB) stay in L1 while every row of A reads them. B rows that are not a whole
// number of cache lines apart (N = 49, 196, ...) are first copied to an aligned scratch with a
// padded stride. Threads split the rows by nonzero count (blocked: by rows), or the columns where there
// are few rows and many column tiles (spmm_item). N == 1 (fully-
// connected layers at batch 1) is a sparse GEMV instead: 8 nonzeros at a time with a gather of x,
// bound by the weight stream. Measured limits and what did not help: benchmarks/README.md.
#pragma once

#include <vector>

#include "common.hpp"
#include "gemm.hpp"
#include "im2col.hpp"

namespace inferon {

enum SparseFormat : int { SPARSE_CSR = 0, SPARSE_NM24 = 1 };

struct SparseA {
  int format = SPARSE_CSR;
  int index_bytes = 4;               // CSR column index width: 2 (uint16) or 4 (int32)
  int64_t M = 0, K = 0;              // rows, columns (2:4: K padded to a multiple of 4)
  const float* values = nullptr;     // CSR: nnz values; 2:4: M x K/2 (two per group of four)
  const void* index = nullptr;       // CSR: nnz column indices; 2:4: per row, two groups per byte,
                                     // each 4 bits = position of its 1st (bits 0-1) and 2nd value
  const int32_t* row_ptr = nullptr;  // CSR: kblocks x (M + 1) offsets into values/index
  int64_t kblocks = 1;               // CSR: column blocks (stored one after the other, each its own
                                     // row_ptr): summed block by block so a block's B stays in L1
  int64_t scale = 1;                 // row k of B starts at B + k * scale
  const int32_t* koff = nullptr;     // 2:4 only, optional: row k of B starts at B + koff[k]
};

namespace sparse_detail {

// Row stride of an aligned copy of B: N rounded up to a cache line, plus one line when that is a
// multiple of 1 KB (power-of-two strides map every row to the same few L1 sets).
inline int64_t padded_stride(int64_t n) {
  const int64_t p = (n + 15) / 16 * 16;
  return p % 256 == 0 ? p + 16 : p;
}

// ------------------------------------------------------------------------------ scalar reference
inline int64_t nm24_offset(const SparseA& a, int64_t k) { return a.koff ? a.koff[k] : k * a.scale; }

// Rows [m0, m1): each row is summed into a scratch row, then stored with the epilogue (so the
// residual may alias C).
template <typename Idx>
inline void rows_scalar(const SparseA& a, const Idx* ix, int64_t m0, int64_t m1, const float* B, int64_t N,
                        float* C, int64_t ldc, const Epilogue& ep, const float* residual) {
  thread_local std::vector<float> row;
  row.assign(static_cast<size_t>(N), 0.f);
  const int64_t groups = a.K / 4, bytes = (groups + 1) / 2;
  const uint8_t* meta = static_cast<const uint8_t*>(a.index);
  for (int64_t m = m0; m < m1; m++) {
    std::fill(row.begin(), row.end(), 0.f);
    auto axpy = [&](float w, int64_t off) {
      const float* b = B + off;
      for (int64_t n = 0; n < N; n++) row[n] += w * b[n];
    };
    if (a.format == SPARSE_CSR) {
      for (int64_t blk = 0; blk < a.kblocks; blk++) {
        const int32_t* rp = a.row_ptr + blk * (a.M + 1);
        for (int32_t j = rp[m]; j < rp[m + 1]; j++) axpy(a.values[j], static_cast<int64_t>(ix[j]) * a.scale);
      }
    } else {
      for (int64_t g = 0; g < groups; g++) {
        const int nib = (meta[m * bytes + g / 2] >> (4 * (g & 1))) & 15;
        const float* v = a.values + m * (a.K / 2) + 2 * g;
        axpy(v[0], nm24_offset(a, 4 * g + (nib & 3)));
        axpy(v[1], nm24_offset(a, 4 * g + (nib >> 2)));
      }
    }
    for (int64_t n = 0; n < N; n++) {
      float v = row[n];
      if (ep.bias) v += ep.bias_axis == 0 ? ep.bias[m] : ep.bias[n];
      if (residual) v += residual[m * ldc + n];
      C[m * ldc + n] = apply_act(v, ep.act, ep.alpha, ep.beta);
    }
  }
}

// ----------------------------------------------------------------------- vector tiles (AVX2, AVX-512)
// The tile kernels are written once against a lane type L (one vector register of L::W floats):
// Ymm (AVX2, 8 floats) and Zmm (AVX-512F, 16 floats). The entry points (rows_avx2, rows_avx512)
// carry the target attribute and `flatten`, so everything below is inlined into code compiled for
// that ISA.
#define INFERON_LANES(isa) __attribute__((target(isa))) static inline

struct Ymm {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int W = 8;
  INFERON_LANES("avx2,fma") V zero() { return _mm256_setzero_ps(); }
  INFERON_LANES("avx2,fma") V set1(float x) { return _mm256_set1_ps(x); }
  INFERON_LANES("avx2,fma") V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  INFERON_LANES("avx2,fma") V add(V a, V b) { return _mm256_add_ps(a, b); }
  INFERON_LANES("avx2,fma") V load(const float* p) { return _mm256_loadu_ps(p); }
  INFERON_LANES("avx2,fma") V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  INFERON_LANES("avx2,fma") void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  INFERON_LANES("avx2,fma") void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  INFERON_LANES("avx2,fma") Mask first(int64_t n) { return mask_first(n); }
  INFERON_LANES("avx2,fma") V relu(V v) { return _mm256_max_ps(v, _mm256_setzero_ps()); }
  INFERON_LANES("avx2,fma") V act(V v, int a, float alpha, float beta) {
    return act256(v, a, _mm256_set1_ps(alpha), _mm256_set1_ps(beta));
  }
};

struct Zmm {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16;
  INFERON_LANES("avx2,fma,avx512f") V zero() { return _mm512_setzero_ps(); }
  INFERON_LANES("avx2,fma,avx512f") V set1(float x) { return _mm512_set1_ps(x); }
  INFERON_LANES("avx2,fma,avx512f") V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  INFERON_LANES("avx2,fma,avx512f") V add(V a, V b) { return _mm512_add_ps(a, b); }
  INFERON_LANES("avx2,fma,avx512f") V load(const float* p) { return _mm512_loadu_ps(p); }
  INFERON_LANES("avx2,fma,avx512f") V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  INFERON_LANES("avx2,fma,avx512f") void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  INFERON_LANES("avx2,fma,avx512f") void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  INFERON_LANES("avx2,fma,avx512f") Mask first(int64_t n) { return static_cast<Mask>((1u << n) - 1u); }
  INFERON_LANES("avx2,fma,avx512f") V relu(V v) { return _mm512_max_ps(v, _mm512_setzero_ps()); }
  INFERON_LANES("avx2,fma,avx512f") V act(V v, int a, float alpha, float beta) {
    const V z = _mm512_setzero_ps();
    switch (a) {
      case ACT_RELU: return _mm512_max_ps(v, z);
      case ACT_LEAKY_RELU: return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), v, _mm512_set1_ps(alpha));
      case ACT_CLIP: return _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(alpha)), _mm512_set1_ps(beta));
      case ACT_NONE: return v;
      default: {  // sigmoid, hard swish: two AVX2 halves
        const __m512d d = _mm512_castps_pd(v);
        const __m256 lo = _mm256_castpd_ps(_mm512_castpd512_pd256(d));
        const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(d, 1));
        const __m256d l2 = _mm256_castps_pd(act256(lo, a, _mm256_set1_ps(alpha), _mm256_set1_ps(beta)));
        const __m256d h2 = _mm256_castps_pd(act256(hi, a, _mm256_set1_ps(alpha), _mm256_set1_ps(beta)));
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(l2), h2, 1));
      }
    }
  }
};

// Independent accumulator sets for NV vectors per row: 8 FMA chains in flight (FMA latency 4, two
// per cycle); more sets only cost short rows their zeroing and reduction (measured).
template <int NV>
constexpr int acc_sets() {
  return NV >= 8 ? 1 : NV >= 4 ? 2 : 4;
}

// One vector of B (the last vector of a masked tile loads only the lanes of `mk`).
template <class L, int NV, bool MASK>
inline typename L::V load_b(const float* p, int t, typename L::Mask mk) {
  return MASK && t == NV - 1 ? L::load(p, mk) : L::load(p);
}

// acc[t] = sum_j v[j] * B[ix[j] * scale + W*t ...] for t < NV: one CSR row over one column tile;
// nonzeros dealt round-robin to the accumulator sets.
template <class L, int NV, bool MASK, typename Idx>
inline void csr_sum(const float* v, const Idx* ix, int64_t nnz, const float* Bn, int64_t scale,
                    typename L::Mask mk, typename L::V* acc) {
  constexpr int S = acc_sets<NV>();
  typename L::V a[S][NV];
  for (int s = 0; s < S; s++)
    for (int t = 0; t < NV; t++) a[s][t] = L::zero();
  int64_t j = 0;
  for (; j + S <= nnz; j += S)
    for (int s = 0; s < S; s++) {
      const typename L::V w = L::set1(v[j + s]);
      const float* b = Bn + static_cast<int64_t>(ix[j + s]) * scale;
      for (int t = 0; t < NV; t++) a[s][t] = L::fma(w, load_b<L, NV, MASK>(b + L::W * t, t, mk), a[s][t]);
    }
  for (; j < nnz; j++) {
    const typename L::V w = L::set1(v[j]);
    const float* b = Bn + static_cast<int64_t>(ix[j]) * scale;
    for (int t = 0; t < NV; t++) a[0][t] = L::fma(w, load_b<L, NV, MASK>(b + L::W * t, t, mk), a[0][t]);
  }
  for (int t = 0; t < NV; t++) {
    typename L::V x = a[0][t];
    for (int s = 1; s < S; s++) x = L::add(x, a[s][t]);
    acc[t] = x;
  }
}

// The same for groups [g0, g1) of one 2:4 row (two values per group of four columns; the 4-bit
// metadata of group g holds the positions of its first (bits 0-1) and second value).
template <class L, int NV, bool MASK>
inline void nm24_sum(const SparseA& A, const float* v, const uint8_t* meta, int64_t g0, int64_t g1,
                     const float* Bn, typename L::Mask mk, typename L::V* acc) {
  constexpr int S = acc_sets<NV>() >= 2 ? 2 : 1;
  typename L::V a[2][NV];
  for (int s = 0; s < 2; s++)
    for (int t = 0; t < NV; t++) a[s][t] = L::zero();
  for (int64_t g = g0; g < g1; g++) {
    const int nib = (meta[g / 2] >> (4 * (g & 1))) & 15;
    const typename L::V w0 = L::set1(v[2 * g]), w1 = L::set1(v[2 * g + 1]);
    const int64_t k0 = 4 * g + (nib & 3), k1 = 4 * g + (nib >> 2);
    const float* b0 = Bn + (A.koff ? A.koff[k0] : k0 * A.scale);
    const float* b1 = Bn + (A.koff ? A.koff[k1] : k1 * A.scale);
    for (int t = 0; t < NV; t++) {
      a[0][t] = L::fma(w0, load_b<L, NV, MASK>(b0 + L::W * t, t, mk), a[0][t]);
      a[S - 1][t] = L::fma(w1, load_b<L, NV, MASK>(b1 + L::W * t, t, mk), a[S - 1][t]);
    }
  }
  for (int t = 0; t < NV; t++) acc[t] = S == 2 ? L::add(a[0][t], a[1][t]) : a[0][t];
}

// What every tile of one call shares.
template <typename Idx>
struct TileArgs {
  const SparseA& a;
  const Idx* ix;
  const float* B;
  float* C;
  int64_t ldc;
  const Epilogue& ep;
  const float* residual;
};

// 2:4 groups per K block: the B rows of one block and a 64-column tile fill about the 32 KB L1.
constexpr int64_t kNm24BlockGroups = 32;

// The epilogue of a block's rows, fixed at compile time: partial sums (blocks before the last), the
// common ones (bias per row if any, then residual and/or ReLU), or any (bias per column, other
// activations: decided per row). Fixed, a row costs its nonzeros plus ~11 cycles instead of ~25
// (branches on the epilogue, spilled registers): short CSR rows at 90 % sparsity (6-26 nonzeros)
// run 1.1-1.3x faster.
enum RowEpilogue { EPI_PARTIAL, EPI_BIAS, EPI_RES, EPI_RELU, EPI_RES_RELU, EPI_ANY };

struct RowTarget {
  float* C;  // at the tile's first column
  int64_t ldc;
  const float* bias_m;    // per row, or null
  const float* bias_n;    // per column (at the tile's first column), or null
  const float* residual;  // laid out as C, or null
  int act;
  float alpha, beta;
};

// Rows [m0, m1) of one column block over one column tile: x = sum(m) (+ C's partial sums with
// ADD_C), then the epilogue EPI, stored to C.
template <class L, int NV, bool MASK, bool ADD_C, int EPI, class Sum>
inline void block_rows(const Sum& sum, const RowTarget& r, int64_t m0, int64_t m1, typename L::Mask mk) {
  using V = typename L::V;
  constexpr bool RES = EPI == EPI_RES || EPI == EPI_RES_RELU || EPI == EPI_ANY;
  const int64_t ldc = r.ldc;
  const float* const bias_m = r.bias_m;
  float* c = r.C + m0 * ldc;
  const float* res = RES && r.residual ? r.residual + m0 * ldc : nullptr;
  for (int64_t m = m0; m < m1; m++, c += ldc) {
    V x[NV];
    sum(m, x);
    if constexpr (ADD_C)
      for (int v = 0; v < NV; v++) x[v] = L::add(x[v], load_b<L, NV, MASK>(c + L::W * v, v, mk));
    if constexpr (EPI != EPI_PARTIAL) {
      if (bias_m) {
        const V b = L::set1(bias_m[m]);
        for (int v = 0; v < NV; v++) x[v] = L::add(x[v], b);
      }
      if constexpr (EPI == EPI_ANY) {
        if (r.bias_n)
          for (int v = 0; v < NV; v++) x[v] = L::add(x[v], load_b<L, NV, MASK>(r.bias_n + L::W * v, v, mk));
      }
      if constexpr (RES) {
        if (EPI != EPI_ANY || res) {
          for (int v = 0; v < NV; v++) x[v] = L::add(x[v], load_b<L, NV, MASK>(res + L::W * v, v, mk));
          res += ldc;
        }
      }
      if constexpr (EPI == EPI_RELU || EPI == EPI_RES_RELU)
        for (int v = 0; v < NV; v++) x[v] = L::relu(x[v]);
      if constexpr (EPI == EPI_ANY) {
        if (r.act == ACT_RELU)
          for (int v = 0; v < NV; v++) x[v] = L::relu(x[v]);
        else if (r.act != ACT_NONE)
          for (int v = 0; v < NV; v++) x[v] = L::act(x[v], r.act, r.alpha, r.beta);
      }
    }
    for (int v = 0; v < NV; v++) {
      if (MASK && v == NV - 1) L::store(c + L::W * v, x[v], mk);
      else L::store(c + L::W * v, x[v]);
    }
  }
}

// block_rows with the runtime choices as template arguments: the last block's epilogue is one of the
// common ones where it can be (CSR only: 2:4 is rare on CPUs where it is not kept dense).
template <class L, int NV, bool MASK, bool ADD_C, class Sum>
inline void block(const Sum& sum, const RowTarget& r, int64_t m0, int64_t m1, typename L::Mask mk, bool last,
                  bool common) {
  const bool relu = r.act == ACT_RELU;
  if (!last) block_rows<L, NV, MASK, ADD_C, EPI_PARTIAL>(sum, r, m0, m1, mk);
  else if (!common) block_rows<L, NV, MASK, ADD_C, EPI_ANY>(sum, r, m0, m1, mk);
  else if (r.residual && relu) block_rows<L, NV, MASK, ADD_C, EPI_RES_RELU>(sum, r, m0, m1, mk);
  else if (r.residual) block_rows<L, NV, MASK, ADD_C, EPI_RES>(sum, r, m0, m1, mk);
  else if (relu) block_rows<L, NV, MASK, ADD_C, EPI_RELU>(sum, r, m0, m1, mk);
  else block_rows<L, NV, MASK, ADD_C, EPI_BIAS>(sum, r, m0, m1, mk);
}

// Rows [m0, m1), columns [n0, n0 + NV*W) (the last vector holds the lanes of `mk` when MASK): block
// by block over all rows, so that one block's B rows stay in L1 while every row reads them; C
// holds the partial sums between blocks, the last block applies the epilogue.
template <class L, int NV, bool MASK, typename Idx>
inline void column_tile(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t n0, typename L::Mask mk) {
  const SparseA& a = t.a;
  // locals: stores to C (float) could otherwise alias the epilogue's floats and force reloads
  const float* const values = a.values;
  const Idx* const ix = t.ix;
  const uint8_t* const meta = static_cast<const uint8_t*>(a.index);
  const int64_t M = a.M, K = a.K, scale = a.scale, groups = K / 4, bytes = (groups + 1) / 2;
  const float* const Bn = t.B + n0;
  const Epilogue& ep = t.ep;
  const RowTarget r{t.C + n0, t.ldc, ep.bias && ep.bias_axis == 0 ? ep.bias : nullptr,
                    ep.bias && ep.bias_axis == 1 ? ep.bias + n0 : nullptr, t.residual ? t.residual + n0 : nullptr,
                    ep.act, ep.alpha, ep.beta};
  if (a.format == SPARSE_CSR) {
    const bool common = r.bias_n == nullptr && (r.act == ACT_RELU || r.act == ACT_NONE);
    for (int64_t blk = 0; blk < a.kblocks; blk++) {
      const int32_t* const rp = a.row_ptr + blk * (M + 1);
      auto sum = [&](int64_t m, typename L::V* x) {
        csr_sum<L, NV, MASK, Idx>(values + rp[m], ix + rp[m], rp[m + 1] - rp[m], Bn, scale, mk, x);
      };
      const bool last = blk == a.kblocks - 1;
      if (blk == 0) block<L, NV, MASK, false>(sum, r, m0, m1, mk, last, common);
      else block<L, NV, MASK, true>(sum, r, m0, m1, mk, last, common);
    }
    return;
  }
  const int64_t blocks = (groups + kNm24BlockGroups - 1) / kNm24BlockGroups;
  for (int64_t blk = 0; blk < blocks; blk++) {
    const int64_t g0 = blk * kNm24BlockGroups, g1 = std::min(groups, g0 + kNm24BlockGroups);
    auto sum = [&](int64_t m, typename L::V* x) {
      nm24_sum<L, NV, MASK>(a, values + m * (K / 2), meta + m * bytes, g0, g1, Bn, mk, x);
    };
    const bool last = blk == blocks - 1;
    if (blk == 0) block<L, NV, MASK, false>(sum, r, m0, m1, mk, last, false);
    else block<L, NV, MASK, true>(sum, r, m0, m1, mk, last, false);
  }
}

// The last, partial column tile: `nvec` (1 .. NV) vectors, the last one masked.
template <class L, int NV, typename Idx>
inline void tail_tile(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t n0, int64_t nvec, typename L::Mask mk) {
  if constexpr (NV == 1) {
    column_tile<L, 1, true, Idx>(t, m0, m1, n0, mk);
  } else {
    if (nvec == NV) column_tile<L, NV, true, Idx>(t, m0, m1, n0, mk);
    else tail_tile<L, NV - 1, Idx>(t, m0, m1, n0, nvec, mk);
  }
}

// Rows [m0, m1) of C, column tile after column tile (NV vectors each).
template <class L, int NV, typename Idx>
inline void rows_tiles(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t N) {
  constexpr int64_t step = NV * L::W;
  int64_t n0 = 0;
  for (; n0 + step <= N; n0 += step) column_tile<L, NV, false, Idx>(t, m0, m1, n0, L::first(L::W));
  const int64_t rest = N - n0;
  if (rest > 0) tail_tile<L, NV, Idx>(t, m0, m1, n0, (rest + L::W - 1) / L::W, L::first(rest - (rest - 1) / L::W * L::W));
}

// Entry points: `nr` columns per tile (32, 48 or 64).
template <class L, typename Idx>
inline void rows_lanes(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t N, int nr) {
  if (nr >= 64) rows_tiles<L, 64 / L::W, Idx>(t, m0, m1, N);
  else if (nr >= 48) rows_tiles<L, 48 / L::W, Idx>(t, m0, m1, N);
  else rows_tiles<L, 32 / L::W, Idx>(t, m0, m1, N);
}

template <typename Idx>
__attribute__((target("avx2,fma"), flatten)) void rows_avx2(const TileArgs<Idx>& t, int64_t m0, int64_t m1,
                                                             int64_t N, int nr) {
  rows_lanes<Ymm, Idx>(t, m0, m1, N, nr);
}

template <typename Idx>
__attribute__((target("avx2,fma,avx512f"), flatten)) void rows_avx512(const TileArgs<Idx>& t, int64_t m0, int64_t m1,
                                                                       int64_t N, int nr) {
  rows_lanes<Zmm, Idx>(t, m0, m1, N, nr);
}

// Eight column indices, widened to int32 and scaled.
template <typename Idx>
INFERON_AVX2_INLINE __m256i gather_index(const Idx* p, int64_t scale, __m256i vscale) {
  __m256i i;
  if constexpr (sizeof(Idx) == 2) i = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  else i = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return scale == 1 ? i : _mm256_mullo_epi32(i, vscale);
}

// Sparse GEMV (N == 1): c[m * ldc] = ep(sum_j v[j] * x[ix[j] * scale]), 8 nonzeros per gather
// (column blocks, if any, one after the other).
template <typename Idx>
INFERON_AVX2 void gemv_avx2(const SparseA& a, const Idx* ix, int64_t m0, int64_t m1, const float* x, float* C,
                            int64_t ldc, const Epilogue& ep, const float* residual) {
  const __m256i vscale = _mm256_set1_epi32(static_cast<int>(a.scale));
  for (int64_t m = m0; m < m1; m++) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    float s = 0.f;
    for (int64_t blk = 0; blk < a.kblocks; blk++) {
      const int32_t* rp = a.row_ptr + blk * (a.M + 1);
      int64_t j = rp[m];
      const int64_t j1 = rp[m + 1];
      for (; j + 16 <= j1; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.values + j), _mm256_i32gather_ps(x, gather_index(ix + j, a.scale, vscale), 4), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.values + j + 8), _mm256_i32gather_ps(x, gather_index(ix + j + 8, a.scale, vscale), 4), s1);
      }
      for (; j < j1; j++) s += a.values[j] * x[static_cast<int64_t>(ix[j]) * a.scale];
    }
    s += hsum256(_mm256_add_ps(s0, s1));
    if (ep.bias) s += ep.bias[ep.bias_axis == 0 ? m : 0];
    if (residual) s += residual[m * ldc];
    C[m * ldc] = apply_act(s, ep.act, ep.alpha, ep.beta);
  }
}

// Row ranges of T threads holding about equal numbers of nonzeros (rows for 2:4).
inline void split_rows(const SparseA& a, int T, int t, int64_t& m0, int64_t& m1) {
  if (a.format != SPARSE_CSR || a.kblocks > 1) {
    m0 = a.M * t / T;
    m1 = a.M * (t + 1) / T;
    return;
  }
  const int64_t nnz = a.row_ptr[a.M];
  auto at = [&](int64_t share) {
    return static_cast<int64_t>(std::lower_bound(a.row_ptr, a.row_ptr + a.M + 1, share) - a.row_ptr);
  };
  m0 = t == 0 ? 0 : std::min(a.M, at(nnz * t / T));
  m1 = t == T - 1 ? a.M : std::min(a.M, at(nnz * (t + 1) / T));
}

// Rows [m0, m1) of C = ep(A * B) for one batch item.
inline void rows(const SparseA& a, int64_t m0, int64_t m1, const float* B, int64_t N, float* C, int64_t ldc,
                 const Epilogue& ep, const float* residual, int nr) {
  if (m0 >= m1) return;
  auto run = [&](const auto* ix) {
    using Idx = std::remove_const_t<std::remove_pointer_t<decltype(ix)>>;
    const TileArgs<Idx> t{a, ix, B, C, ldc, ep, residual};
    if (use_avx2() && N == 1 && a.format == SPARSE_CSR) gemv_avx2<Idx>(a, ix, m0, m1, B, C, ldc, ep, residual);
    else if (isa() >= INFERON_ISA_AVX512) rows_avx512<Idx>(t, m0, m1, N, nr);
    else if (use_avx2()) rows_avx2<Idx>(t, m0, m1, N, nr);
    else rows_scalar<Idx>(a, ix, m0, m1, B, N, C, ldc, ep, residual);
  };
  if (a.format == SPARSE_CSR && a.index_bytes == 2) run(static_cast<const uint16_t*>(a.index));
  else run(static_cast<const int32_t*>(a.index));
}

// C = ep(A * B) split over T threads by rows or columns (residual may alias C: each element is read before written).
inline void spmm_item(const SparseA& a, const float* B, int64_t N, float* C, int64_t ldc, const Epilogue& ep,
                      const float* residual, int T, int nr) {
  // Enough column tiles (>= 4 per thread): threads split the columns instead of the rows, each
  // reading only its part of B and its residual, which a producer split the same way computed on
  // the same core. ResNet-50 at 90 % sparsity, 2 threads, per-op profile: the 56 x 56 and 28 x 28
  // layers 1.1-1.4x faster by columns, whatever their rows (the 256-row ones too; the model
  // 1.04-1.05x); with 196 or 49 columns (4 tiles or fewer) by rows.
  const int64_t tiles = (N + nr - 1) / nr;
  const bool by_cols = T > 1 && N > 1 && tiles >= 4 * T;
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int nth = omp_get_num_threads(), t = omp_get_thread_num();
    if (by_cols) {
      const int64_t n0 = std::min(N, tiles * t / nth * nr), n1 = std::min(N, tiles * (t + 1) / nth * nr);
      if (n0 < n1) {
        Epilogue e = ep;
        if (e.bias && e.bias_axis == 1) e.bias += n0;
        rows(a, 0, a.M, B + n0, n1 - n0, C + n0, ldc, e, residual ? residual + n0 : nullptr, nr);
      }
    } else {
      int64_t m0, m1;
      split_rows(a, nth, t, m0, m1);
      rows(a, m0, m1, B, N, C, ldc, ep, residual, nr);
    }
  }
}

// The zero-bordered "frame" a KxK conv (dilation 1, any stride) is read from in place: per input
// channel, one plane per used stride phase (ph, pw) < (min(sh, kh), min(sw, kw)) holding
// padded_input[y*sh + ph][x*sw + pw] for y < Hq, x < Wq. Tap (c, i, j) of output (ho, wo) is then
// element (ho + i/sh, wo + j/sw) of plane (c, i%sh, j%sw): the product runs on the Ho x Wq "wide"
// grid with one column offset per tap. inferon/ir/sparse.py (implicit_columns) computes the same
// offsets; planes lie padded_stride(Hq * Wq) floats apart.
struct Frame {
  int64_t ph, pw, Hq, Wq, plane;
  explicit Frame(const Im2col& q)
      : ph(std::min(q.sh, q.kh)), pw(std::min(q.sw, q.kw)), Hq(q.Ho + (q.kh - 1) / q.sh),
        Wq(q.Wo + (q.kw - 1) / q.sw), plane(padded_stride(Hq * Wq)) {}
  int64_t floats(int64_t C) const { return C * ph * pw * plane; }
};

// Plane (c, a, b) of the frame of `image` (one batch item).
inline void frame_fill(const Im2col& q, const Frame& f, const float* image, int64_t c, int64_t a, int64_t b, float* p) {
  std::memset(p, 0, static_cast<size_t>(f.plane) * sizeof(float));  // borders and the padding after the plane
  const int64_t off = b - q.pl;
  const auto [xlo, xhi] = phase_columns(q, b, f.Wq);  // valid x: 0 <= x*sw + b - pl < W
  for (int64_t y = 0; y < f.Hq; y++) {
    const int64_t h = y * q.sh + a - q.pt;
    if (h < 0 || h >= q.H || xlo >= xhi) continue;
    const float* src = image + (c * q.H + h) * q.W + off;
    float* dst = p + y * f.Wq;
    if (q.sw == 1) {
      std::memcpy(dst + xlo, src + xlo, static_cast<size_t>(xhi - xlo) * sizeof(float));
      continue;
    }
    int64_t x = xlo;
    if (q.sw == 2 && isa() >= INFERON_ISA_AVX512) x += stride2_avx512(src + 2 * xlo, dst + xlo, xhi - xlo);
    else if (q.sw == 2 && use_avx2()) x += stride2_avx2(src + 2 * xlo, dst + xlo, xhi - xlo);
    for (; x < xhi; x++) dst[x] = src[x * q.sw];
  }
}

// A conv read in place (see Frame): the image is copied into its frame, the product is computed on
// the Ho x Wq wide grid (with bias and activation unless there is a residual), then the Wo valid
// columns of every output row are copied to C (adding the residual before the activation). When
// Wq == Wo the product is written to C directly.
inline void spmm_implicit(const SparseA& a, const Im2col& q, const float* image, float* C, const Epilogue& ep,
                          const float* residual, int T, int nr) {
  const Frame f(q);
  const int64_t wide = q.Ho * f.Wq, planes = q.C * f.ph * f.pw;
  thread_local Scratch frame_s, wide_s;
  float* xp = frame_s.get(static_cast<size_t>(f.floats(q.C) + 64));
  float* cw = f.Wq == q.Wo ? nullptr : wide_s.get(static_cast<size_t>(a.M * wide));
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t i = 0; i < planes; i++)
    frame_fill(q, f, image, i / (f.ph * f.pw), i / f.pw % f.ph, i % f.pw, xp + i * f.plane);
  std::memset(xp + f.floats(q.C), 0, 64 * sizeof(float));
  const int64_t Ho = q.Ho, Wo = q.Wo, Wq = f.Wq, HW = Ho * Wo;
  if (Wq == Wo) {  // the wide grid is the output (1x1 convs with stride)
    spmm_item(a, xp, wide, C, HW, ep, residual, T, nr);
    return;
  }
  // bias and activation apply on the wide grid; a residual (laid out as C) is added in the copy
  const bool fused = residual == nullptr;
  spmm_item(a, xp, wide, cw, wide, fused ? ep : Epilogue{}, nullptr, T, nr);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < a.M * Ho; r++) {
    const int64_t m = r / Ho, ho = r % Ho;
    const float* src = cw + m * wide + ho * Wq;
    float* dst = C + m * HW + ho * Wo;
    if (fused) {
      std::memcpy(dst, src, static_cast<size_t>(Wo) * sizeof(float));
      continue;
    }
    const float* res = residual + m * HW + ho * Wo;
    const float bias = ep.bias ? ep.bias[m] : 0.f;
    if (use_avx2()) act_row_avx2(dst, src, res, bias, Wo, ep.act, ep.alpha, ep.beta);
    else
      for (int64_t t = 0; t < Wo; t++) dst[t] = apply_act(src[t] + bias + res[t], ep.act, ep.alpha, ep.beta);
  }
}

}  // namespace sparse_detail

// for b in [0, batch): C_b = ep(A * B_b), C_b[m, n] at C + b*sC + m*ldc + n, row k of B_b at
// B + b*sB + (column index k) * scale. With `implicit` (a conv with dilation 1), B_b is the image
// and the column indices are offsets in its zero-bordered frame (see Frame). `nr` is the
// column tile (32 or 64 floats). Bias is per row (bias_axis 0) or per column (1).
INFERON_ENTRY void spmm(const SparseA& a, int64_t batch, const float* B, int64_t sB, int64_t N, float* C, int64_t ldc,
                 int64_t sC, const Epilogue& ep, int nr, int num_threads, const Im2col* implicit = nullptr);

#if INFERON_DEFINE_KERNELS(SPARSE)
INFERON_ENTRY void spmm(const SparseA& a, int64_t batch, const float* B, int64_t sB, int64_t N, float* C, int64_t ldc,
                 int64_t sC, const Epilogue& ep, int nr, int num_threads, const Im2col* implicit) {
  if (a.M <= 0 || N <= 0) return;
  const double nnz = a.format == SPARSE_CSR ? static_cast<double>(a.row_ptr[a.kblocks * (a.M + 1) - 1])
                                            : static_cast<double>(a.M) * (a.K / 2);
  const int T = threads_for(num_threads, nnz * N, 32768.0);
  // B rows not a whole number of cache lines apart (1x1 convs on 14x14 or 7x7 images, im2col
  // buffers): split-line vector loads cost more than copying B to an aligned scratch with a padded
  // stride, when each B row feeds >= 8 nonzeros.
  const bool realign = !implicit && N >= 16 && a.scale % 16 != 0 && a.koff == nullptr && use_avx2() && nnz >= 8.0 * a.K;
  const int64_t ld = realign ? sparse_detail::padded_stride(N) : a.scale;
  thread_local Scratch aligned_s;
  float* copy = realign ? aligned_s.get(static_cast<size_t>(a.K * ld)) : nullptr;
  SparseA ac = a;
  ac.scale = ld;
  for (int64_t b = 0; b < batch; b++) {
    const float* residual = ep.residual ? ep.residual + b * sC : nullptr;
    const float* Bb = B + b * sB;
    if (realign) {
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
      for (int64_t k = 0; k < a.K; k++) std::memcpy(copy + k * ld, Bb + k * a.scale, static_cast<size_t>(N) * sizeof(float));
      Bb = copy;
    }
    if (implicit) sparse_detail::spmm_implicit(a, *implicit, Bb, C + b * sC, ep, residual, T, nr);
    else sparse_detail::spmm_item(ac, Bb, N, C + b * sC, ldc, ep, residual, T, nr);
  }
}
#endif

}  // namespace inferon
