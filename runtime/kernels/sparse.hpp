// Sparse-weight x dense-activation products: C[M, N] = ep(A * B) with A a sparse weight (CSR or
// 2:4 structured) and B dense activations, vectorised along N (spatial positions for convs).
//
// B is addressed through the weight's column indices: row k of B starts at B + k * scale, so one
// kernel serves 1x1 convs (B = the input image, scale = H*W), im2col buffers (scale = Ho*Wo) and
// stride-1 KxK convs read in place from a zero-bordered image ("implicit": the compiler stores, as
// the CSR column index of filter tap (c, i, j), its offset c*P + i*Wp + j in that frame, P =
// frame_plane(Hp, Wp), with scale 1; 2:4 weights keep their group positions and take a per-column
// offset table `koff`).
//
// AVX2 register tile: one output row x `nv` ymm vectors (nv*8 columns, 32 by default); per nonzero
// one broadcast of the weight and nv FMAs with B loaded straight from memory; 2-3 accumulator sets
// (nonzeros dealt round-robin) keep >= 8 FMA chains in flight. Loop order: column chunks of about
// half the L2 of B, rows, tiles of the chunk. CSR weights of implicit convs may come in channel
// blocks (`kblocks`): then tiles, blocks, rows, with partial sums in C, so that one block's frame
// rows stay in L1. Threads split the rows by nonzero count (blocked: by rows). N == 1 (fully-
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

// Floats of B one column chunk may span (K rows x chunk columns): half of a 1 MB L2.
constexpr int64_t kSparseChunkFloats = 128 * 1024;

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

// ------------------------------------------------------------------------------------ AVX2 tiles
// Eight floats; the last vector of a masked tile (MASK and last) loads only the lanes in `mask`.
template <bool MASK>
INFERON_AVX2_INLINE __m256 load8(const float* p, bool last, __m256i mask) {
  if (MASK && last) return _mm256_maskload_ps(p, mask);
  return _mm256_loadu_ps(p);
}

// Accumulator sets for NV vectors per row: enough independent FMA chains (>= 8, FMA latency 4 x
// 2 per cycle) within 16 ymm registers.
template <int NV>
constexpr int acc_sets() { return NV <= 2 ? 4 : NV <= 4 ? 3 : NV <= 6 ? 2 : 1; }

// acc[0..NV) = sum_j v[j] * B[ix[j]*scale + 0 .. NV*8) (the last vector masked when MASK).
template <int NV, bool MASK, typename Idx>
INFERON_AVX2_INLINE void csr_tile(const float* v, const Idx* ix, int64_t nnz, const float* Bn, int64_t scale,
                                  __m256i mask, __m256* acc) {
  constexpr int S = acc_sets<NV>();
  __m256 a[S][NV];
  for (int s = 0; s < S; s++)
    for (int t = 0; t < NV; t++) a[s][t] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + S <= nnz; j += S) {
    for (int s = 0; s < S; s++) {
      const __m256 w = _mm256_broadcast_ss(v + j + s);
      const float* b = Bn + static_cast<int64_t>(ix[j + s]) * scale;
      for (int t = 0; t < NV; t++)
        a[s][t] = _mm256_fmadd_ps(w, load8<MASK>(b + 8 * t, NV - 1 == t, mask), a[s][t]);
    }
  }
  for (; j < nnz; j++) {
    const __m256 w = _mm256_broadcast_ss(v + j);
    const float* b = Bn + static_cast<int64_t>(ix[j]) * scale;
    for (int t = 0; t < NV; t++) a[0][t] = _mm256_fmadd_ps(w, load8<MASK>(b + 8 * t, NV - 1 == t, mask), a[0][t]);
  }
  for (int t = 0; t < NV; t++) {
    __m256 x = a[0][t];
    for (int s = 1; s < S; s++) x = _mm256_add_ps(x, a[s][t]);
    acc[t] = x;
  }
}

// One 2:4 group: two nonzeros at positions nib & 3 and nib >> 2 of columns 4g .. 4g+3.
template <int NV, bool MASK, int S>
INFERON_AVX2_INLINE void nm24_group(const SparseA& A, const float* v, int64_t g, int nib, const float* Bn,
                                    __m256i mask, __m256 (*a)[NV]) {
  const __m256 w0 = _mm256_broadcast_ss(v + 2 * g), w1 = _mm256_broadcast_ss(v + 2 * g + 1);
  const int64_t k0 = 4 * g + (nib & 3), k1 = 4 * g + (nib >> 2);
  const float* b0 = Bn + (A.koff ? A.koff[k0] : k0 * A.scale);
  const float* b1 = Bn + (A.koff ? A.koff[k1] : k1 * A.scale);
  for (int t = 0; t < NV; t++) {
    a[0][t] = _mm256_fmadd_ps(w0, load8<MASK>(b0 + 8 * t, t == NV - 1, mask), a[0][t]);
    a[S - 1][t] = _mm256_fmadd_ps(w1, load8<MASK>(b1 + 8 * t, t == NV - 1, mask), a[S - 1][t]);
  }
}

// The same for one 2:4 row: `groups` groups of four columns, two values each.
template <int NV, bool MASK>
INFERON_AVX2_INLINE void nm24_tile(const SparseA& A, const float* v, const uint8_t* meta, int64_t groups,
                                   const float* Bn, __m256i mask, __m256* acc) {
  constexpr int S = NV <= 6 ? 2 : 1;
  __m256 a[2][NV];
  for (int s = 0; s < 2; s++)
    for (int t = 0; t < NV; t++) a[s][t] = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 2 <= groups; g += 2) {
    const int byte = meta[g / 2];
    nm24_group<NV, MASK, S>(A, v, g, byte & 15, Bn, mask, a);
    nm24_group<NV, MASK, S>(A, v, g + 1, byte >> 4, Bn, mask, a);
  }
  if (g < groups) nm24_group<NV, MASK, S>(A, v, g, meta[g / 2] & 15, Bn, mask, a);
  for (int t = 0; t < NV; t++) acc[t] = S == 2 ? _mm256_add_ps(a[0][t], a[1][t]) : a[0][t];
}

struct EpiVec {
  __m256 alpha, beta;
  int act;
};

// c[0 .. NV*8) = act(acc + bias + residual) (the last vector masked when MASK).
template <int NV, bool MASK>
INFERON_AVX2_INLINE void store_tile(const __m256* acc, float* c, const float* bias_n, float bias_m,
                                    const float* res, const EpiVec& e, __m256i mask) {
  const __m256 bm = _mm256_set1_ps(bias_m);
  for (int t = 0; t < NV; t++) {
    const bool last = MASK && t == NV - 1;
    const __m256i mk = last ? mask : _mm256_set1_epi32(-1);
    __m256 x = _mm256_add_ps(acc[t], bm);
    if (bias_n) x = _mm256_add_ps(x, last ? _mm256_maskload_ps(bias_n + 8 * t, mk) : _mm256_loadu_ps(bias_n + 8 * t));
    if (res) x = _mm256_add_ps(x, last ? _mm256_maskload_ps(res + 8 * t, mk) : _mm256_loadu_ps(res + 8 * t));
    x = act256(x, e.act, e.alpha, e.beta);
    if (last) _mm256_maskstore_ps(c + 8 * t, mk, x);
    else _mm256_storeu_ps(c + 8 * t, x);
  }
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
  EpiVec e;
};

// Output row m, columns [n0, n0 + NV*8) (the last vector holds the lanes of `mask` when MASK).
template <int NV, bool MASK, typename Idx>
INFERON_AVX2_INLINE void tile(const TileArgs<Idx>& t, int64_t m, int64_t n0, __m256i mask) {
  const SparseA& a = t.a;
  __m256 acc[NV];
  if (a.format == SPARSE_CSR) {
    const int32_t j0 = a.row_ptr[m];
    csr_tile<NV, MASK, Idx>(a.values + j0, t.ix + j0, a.row_ptr[m + 1] - j0, t.B + n0, a.scale, mask, acc);
  } else {
    const int64_t groups = a.K / 4, bytes = (groups + 1) / 2;
    nm24_tile<NV, MASK>(a, a.values + m * (a.K / 2), static_cast<const uint8_t*>(a.index) + m * bytes, groups,
                        t.B + n0, mask, acc);
  }
  const Epilogue& ep = t.ep;
  const float bias_m = ep.bias && ep.bias_axis == 0 ? ep.bias[m] : 0.f;
  const float* bias_n = ep.bias && ep.bias_axis == 1 ? ep.bias + n0 : nullptr;
  store_tile<NV, MASK>(acc, t.C + m * t.ldc + n0, bias_n, bias_m,
                       t.residual ? t.residual + m * t.ldc + n0 : nullptr, t.e, mask);
}

// Column-blocked CSR, output row m, columns [n0, n0 + NV*8), block `blk`: C holds the sum of the
// previous blocks; the last block applies the epilogue.
template <int NV, bool MASK, typename Idx>
INFERON_AVX2_INLINE void block_tile(const TileArgs<Idx>& t, int64_t m, int64_t n0, __m256i mask, int64_t blk) {
  const SparseA& a = t.a;
  const int32_t* rp = a.row_ptr + blk * (a.M + 1);
  __m256 acc[NV];
  csr_tile<NV, MASK, Idx>(a.values + rp[m], t.ix + rp[m], rp[m + 1] - rp[m], t.B + n0, a.scale, mask, acc);
  float* c = t.C + m * t.ldc + n0;
  if (blk > 0)
    for (int v = 0; v < NV; v++) acc[v] = _mm256_add_ps(acc[v], load8<MASK>(c + 8 * v, v == NV - 1, mask));
  if (blk == a.kblocks - 1) {
    const Epilogue& ep = t.ep;
    const float bias_m = ep.bias && ep.bias_axis == 0 ? ep.bias[m] : 0.f;
    const float* bias_n = ep.bias && ep.bias_axis == 1 ? ep.bias + n0 : nullptr;
    store_tile<NV, MASK>(acc, c, bias_n, bias_m, t.residual ? t.residual + m * t.ldc + n0 : nullptr, t.e, mask);
  } else {
    for (int v = 0; v < NV; v++) {
      if (MASK && v == NV - 1) _mm256_maskstore_ps(c + 8 * v, mask, acc[v]);
      else _mm256_storeu_ps(c + 8 * v, acc[v]);
    }
  }
}

template <typename Idx>
INFERON_AVX2_INLINE void block_tail(const TileArgs<Idx>& t, int64_t m, int64_t n0, int64_t rest, int64_t blk) {
  const __m256i mask = mask_first(rest - (rest - 1) / 8 * 8);
  switch ((rest + 7) / 8) {
    case 1: block_tile<1, true, Idx>(t, m, n0, mask, blk); break;
    case 2: block_tile<2, true, Idx>(t, m, n0, mask, blk); break;
    case 3: block_tile<3, true, Idx>(t, m, n0, mask, blk); break;
    default: block_tile<4, true, Idx>(t, m, n0, mask, blk); break;
  }
}

// Column-blocked CSR (32-column tiles): for each tile, block by block over all rows, so that the B
// rows of one block and tile (a few channels of a zero-bordered image) stay in L1.
template <typename Idx>
INFERON_AVX2 void rows_blocked(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t N) {
  const __m256i ones = _mm256_set1_epi32(-1);
  for (int64_t n0 = 0; n0 < N; n0 += 32)
    for (int64_t blk = 0; blk < t.a.kblocks; blk++)
      for (int64_t m = m0; m < m1; m++) {
        if (n0 + 32 <= N) block_tile<4, false, Idx>(t, m, n0, ones, blk);
        else block_tail<Idx>(t, m, n0, N - n0, blk);
      }
}

// The last, partial column tile [n0, N) of row m: 1..8 vectors, the last one masked.
template <typename Idx>
INFERON_AVX2_INLINE void tail_tile(const TileArgs<Idx>& t, int64_t m, int64_t n0, int64_t rest) {
  const __m256i mask = mask_first(rest - (rest - 1) / 8 * 8);
  switch ((rest + 7) / 8) {
    case 1: tile<1, true, Idx>(t, m, n0, mask); break;
    case 2: tile<2, true, Idx>(t, m, n0, mask); break;
    case 3: tile<3, true, Idx>(t, m, n0, mask); break;
    case 4: tile<4, true, Idx>(t, m, n0, mask); break;
    case 5: tile<5, true, Idx>(t, m, n0, mask); break;
    case 6: tile<6, true, Idx>(t, m, n0, mask); break;
    case 7: tile<7, true, Idx>(t, m, n0, mask); break;
    default: tile<8, true, Idx>(t, m, n0, mask); break;
  }
}

// Rows [m0, m1). Loop order: column chunks of about L2 / 2 of B (K x chunk floats), then rows, then
// the NV*8-column tiles of the chunk: a row's tiles repeat the same nonzero loop (predictable
// branches, its weights stay in L1) while the chunk of B stays in L2 for all rows.
template <int NV, typename Idx>
INFERON_AVX2 void rows_nv(const TileArgs<Idx>& t, int64_t m0, int64_t m1, int64_t N) {
  constexpr int64_t step = NV * 8;
  const int64_t full = N / step * step;
  const int64_t chunk = std::max<int64_t>(step, kSparseChunkFloats / std::max<int64_t>(t.a.K, 1) / step * step);
  const __m256i ones = _mm256_set1_epi32(-1);
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t c1 = std::min(N, c0 + chunk), f1 = std::min(c1, full);
    for (int64_t m = m0; m < m1; m++) {
      for (int64_t n0 = c0; n0 < f1; n0 += step) tile<NV, false, Idx>(t, m, n0, ones);
      if (c1 > full) tail_tile<Idx>(t, m, full, N - full);
    }
  }
}

template <typename Idx>
INFERON_AVX2 void rows_avx2(const SparseA& a, const Idx* ix, int64_t m0, int64_t m1, const float* B, int64_t N,
                            float* C, int64_t ldc, const Epilogue& ep, const float* residual, int nr) {
  const TileArgs<Idx> t{a, ix, B, C, ldc, ep, residual, {_mm256_set1_ps(ep.alpha), _mm256_set1_ps(ep.beta), ep.act}};
  if (a.format == SPARSE_CSR && a.kblocks > 1) rows_blocked<Idx>(t, m0, m1, N);
  else if (nr >= 64) rows_nv<8, Idx>(t, m0, m1, N);
  else if (nr >= 48) rows_nv<6, Idx>(t, m0, m1, N);
  else rows_nv<4, Idx>(t, m0, m1, N);
}

// Eight column indices, widened to int32 and scaled.
template <typename Idx>
INFERON_AVX2_INLINE __m256i gather_index(const Idx* p, int64_t scale, __m256i vscale) {
  __m256i i;
  if constexpr (sizeof(Idx) == 2) i = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  else i = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return scale == 1 ? i : _mm256_mullo_epi32(i, vscale);
}

// Sparse GEMV (N == 1): c[m * ldc] = ep(sum_j v[j] * x[ix[j] * scale]), 8 nonzeros per gather.
template <typename Idx>
INFERON_AVX2 void gemv_avx2(const SparseA& a, const Idx* ix, int64_t m0, int64_t m1, const float* x, float* C,
                            int64_t ldc, const Epilogue& ep, const float* residual) {
  const __m256i vscale = _mm256_set1_epi32(static_cast<int>(a.scale));
  for (int64_t m = m0; m < m1; m++) {
    const int32_t j0 = a.row_ptr[m], j1 = a.row_ptr[m + 1];
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.values + j), _mm256_i32gather_ps(x, gather_index(ix + j, a.scale, vscale), 4), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.values + j + 8), _mm256_i32gather_ps(x, gather_index(ix + j + 8, a.scale, vscale), 4), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < j1; j++) s += a.values[j] * x[static_cast<int64_t>(ix[j]) * a.scale];
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
  const bool avx2 = use_avx2();
  auto run = [&](const auto* ix) {
    using Idx = std::remove_const_t<std::remove_pointer_t<decltype(ix)>>;
    if (avx2 && N == 1 && a.format == SPARSE_CSR && a.kblocks == 1) gemv_avx2<Idx>(a, ix, m0, m1, B, C, ldc, ep, residual);
    else if (avx2) rows_avx2<Idx>(a, ix, m0, m1, B, N, C, ldc, ep, residual, nr);
    else rows_scalar<Idx>(a, ix, m0, m1, B, N, C, ldc, ep, residual);
  };
  if (a.format == SPARSE_CSR && a.index_bytes == 2) run(static_cast<const uint16_t*>(a.index));
  else run(static_cast<const int32_t*>(a.index));
}

// C = ep(A * B) split over T threads by rows (residual may alias C: each element is read before written).
inline void spmm_item(const SparseA& a, const float* B, int64_t N, float* C, int64_t ldc, const Epilogue& ep,
                      const float* residual, int T, int nr) {
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int nth = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t m0, m1;
    split_rows(a, nth, t, m0, m1);
    rows(a, m0, m1, B, N, C, ldc, ep, residual, nr);
  }
}

// Floats between the channel planes of the zero-bordered frame: Hp*Wp rounded up to a cache line,
// plus one line when that is a multiple of 1 KB (power-of-two strides map every channel's rows to
// the same few L1 sets). convert-sparse-to-spmm computes the column offsets with the same rule.
inline int64_t frame_plane(int64_t Hp, int64_t Wp) {
  const int64_t p = (Hp * Wp + 15) / 16 * 16;
  return p % 256 == 0 ? p + 16 : p;
}

// Stride-1 conv read in place: the image is copied into a zero-bordered frame [C, Hp, Wp], the
// product is computed on the Ho x Wp "wide" grid, then the Wo valid columns of every output row are
// copied to C with the epilogue.
inline void spmm_implicit(const SparseA& a, const Im2col& q, const float* image, float* C, const Epilogue& ep,
                          const float* residual, int T, int nr) {
  const int64_t Hp = q.Ho + q.kh - 1, Wp = q.Wo + q.kw - 1, plane = frame_plane(Hp, Wp), wide = q.Ho * Wp;
  thread_local Scratch frame_s, wide_s;
  float* xp = frame_s.get(static_cast<size_t>(q.C * plane + 64));
  float* cw = wide_s.get(static_cast<size_t>(a.M * wide));
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t c = 0; c < q.C; c++) {
    float* p = xp + c * plane;
    std::memset(p, 0, static_cast<size_t>(plane) * sizeof(float));  // borders and the padding after the plane
    for (int64_t h = 0; h < q.H && h + q.pt < Hp; h++)
      std::memcpy(p + (h + q.pt) * Wp + q.pl, image + (c * q.H + h) * q.W,
                  static_cast<size_t>(std::min<int64_t>(q.W, Wp - q.pl)) * sizeof(float));
  }
  std::memset(xp + q.C * plane, 0, 64 * sizeof(float));
  spmm_item(a, xp, wide, cw, wide, Epilogue{}, nullptr, T, nr);
  const int64_t Ho = q.Ho, Wo = q.Wo, HW = Ho * Wo;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < a.M * Ho; r++) {
    const int64_t m = r / Ho, ho = r % Ho;
    const float* src = cw + m * wide + ho * Wp;
    float* dst = C + m * HW + ho * Wo;
    const float* res = residual ? residual + m * HW + ho * Wo : nullptr;
    const float bias = ep.bias ? ep.bias[m] : 0.f;
    for (int64_t t = 0; t < Wo; t++)
      dst[t] = apply_act(src[t] + bias + (res ? res[t] : 0.f), ep.act, ep.alpha, ep.beta);
  }
}

}  // namespace sparse_detail

// for b in [0, batch): C_b = ep(A * B_b), C_b[m, n] at C + b*sC + m*ldc + n, row k of B_b at
// B + b*sB + (column index k) * scale. With `implicit` (a stride-1 conv), B_b is the image and
// the column indices are offsets in its zero-bordered frame (see spmm_implicit). `nr` is the
// column tile (32 or 64 floats). Bias is per row (bias_axis 0) or per column (1).
inline void spmm(const SparseA& a, int64_t batch, const float* B, int64_t sB, int64_t N, float* C, int64_t ldc,
                 int64_t sC, const Epilogue& ep, int nr, int num_threads, const Im2col* implicit = nullptr) {
  if (a.M <= 0 || N <= 0) return;
  const double work = a.format == SPARSE_CSR ? static_cast<double>(a.row_ptr[a.kblocks * (a.M + 1) - 1]) * N
                                             : static_cast<double>(a.M) * (a.K / 2) * N;
  const int T = threads_for(num_threads, work, 32768.0);
  for (int64_t b = 0; b < batch; b++) {
    const float* residual = ep.residual ? ep.residual + b * sC : nullptr;
    if (implicit) sparse_detail::spmm_implicit(a, *implicit, B + b * sB, C + b * sC, ep, residual, T, nr);
    else sparse_detail::spmm_item(a, B + b * sB, N, C + b * sC, ldc, ep, residual, T, nr);
  }
}

}  // namespace inferon
