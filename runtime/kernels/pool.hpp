// Inferon pooling kernels (ONNX MaxPool / AveragePool / GlobalMax/AveragePool) on NC planes.
#pragma once

#include <vector>

#include "common.hpp"

namespace inferon {

namespace pool_detail {

// Valid tap range [lo, hi) of a dilated window starting at `start` over an extent [0, n).
inline void tap_range(int64_t start, int k, int d, int64_t n, int& lo, int& hi) {
  lo = 0;
  hi = k;
  if (start < 0) lo = static_cast<int>((-start + d - 1) / d);
  const int64_t last_ok = n - 1 - start;  // i*d <= last_ok
  if (last_ok < 0) hi = 0;
  else hi = static_cast<int>(std::min<int64_t>(k, last_ok / d + 1));
  if (hi < lo) hi = lo;
}

// Number of taps in [lo_bound, hi_bound) for a window starting at start.
inline int tap_count(int64_t start, int k, int d, int64_t lo_bound, int64_t hi_bound) {
  int c = 0;
  for (int i = 0; i < k; i++) {
    const int64_t p = start + static_cast<int64_t>(i) * d;
    if (p >= lo_bound && p < hi_bound) c++;
  }
  return c;
}

// The 8 channels of one NCHWc8 block x[HW][8]: y[0..8) = their means / maxima.
INFERON_AVX2 inline void global_block_c8_avx2(const float* x, float* y, int64_t HW, int is_max) {
  __m256 a0 = is_max ? _mm256_set1_ps(-INFINITY) : _mm256_setzero_ps(), a1 = a0;
  int64_t i = 0;
  for (; i + 2 <= HW; i += 2) {
    const __m256 v0 = _mm256_loadu_ps(x + i * 8), v1 = _mm256_loadu_ps(x + i * 8 + 8);
    a0 = is_max ? _mm256_max_ps(a0, v0) : _mm256_add_ps(a0, v0);
    a1 = is_max ? _mm256_max_ps(a1, v1) : _mm256_add_ps(a1, v1);
  }
  if (i < HW) a0 = is_max ? _mm256_max_ps(a0, _mm256_loadu_ps(x + i * 8)) : _mm256_add_ps(a0, _mm256_loadu_ps(x + i * 8));
  const __m256 r = is_max ? _mm256_max_ps(a0, a1)
                          : _mm256_mul_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(1.f / static_cast<float>(HW)));
  _mm256_storeu_ps(y, r);
}

INFERON_AVX2 inline void global_plane_avx2(const float* x, float* y, int64_t HW, int is_max) {
  int64_t i = 0;
  if (is_max) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    for (; i + 16 <= HW; i += 16) {
      m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
      m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    float m = hmax256(_mm256_max_ps(m0, m1));
    for (; i < HW; i++) m = x[i] > m ? x[i] : m;
    *y = m;
  } else {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; i + 32 <= HW; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= HW; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < HW; i++) s += x[i];
    *y = s / static_cast<float>(HW);
  }
}

// ------------------------------------------------------------------------- pool2d, AVX2 path
// Every output row is computed in blocks of 8 columns (the last block of a row at Wo - 8,
// overlapping the previous one; Wo < 8: one partial block). Per block and tap the loaded input
// columns are precomputed once per call: a block whose loads all lie inside the row takes the
// fast path (plain loads, 3x3/2x2 taps unrolled), the others load through lane masks (masked-off
// lanes: -FLT_MAX for max, 0 for average). Kernel rows outside the image are skipped per output
// row. Column stride 1: contiguous loads; stride 2: two loads de-interleaved (lanes in the order
// 0 1 4 5 2 3 6 7, put back once per block). Average: sum / max(1, row count * column count),
// the counts being separable (in-image or padded-extent taps per row and per column).
struct PoolGeo {
  int64_t H, W, Ho, Wo;
  int kh, kw, sh, sw, dh, dw, pt, pl;
};

struct PoolBlocks {
  int64_t nb = 0;
  std::vector<int64_t> start;        // [nb]: first output column of the block
  std::vector<unsigned char> full;   // [nb]: every load of the block inside the row
  int64_t fb0 = 0, fb1 = 0;          // the full blocks: [fb0, fb1) (a contiguous range)
  std::vector<int32_t> mask;         // [nb][kw][16]: valid lanes of the (up to 16) loaded columns
  std::vector<int> base;             // [kw]: load offset of tap j from the block's first input column
  std::vector<unsigned char> odd;    // [kw]: stride 2, odd tap offset (take the odd lanes)
  std::vector<float> colcnt;         // [Wo + 8]: average divisor factor per output column (0 past Wo)
};

inline PoolBlocks make_pool_blocks(const PoolGeo& g, const int* colcnt) {
  PoolBlocks pb;
  pb.nb = (g.Wo + 7) / 8;
  pb.start.resize(static_cast<size_t>(pb.nb));
  pb.full.assign(static_cast<size_t>(pb.nb), 1);
  pb.mask.assign(static_cast<size_t>(pb.nb * g.kw * 16), 0);
  pb.base.resize(static_cast<size_t>(g.kw));
  pb.odd.resize(static_cast<size_t>(g.kw));
  pb.colcnt.assign(static_cast<size_t>(g.Wo + 8), 0.f);
  for (int64_t wo = 0; wo < g.Wo; wo++) pb.colcnt[wo] = static_cast<float>(colcnt[wo]);
  for (int j = 0; j < g.kw; j++) {
    const int off = j * g.dw;
    pb.odd[j] = g.sw == 2 && (off & 1);
    pb.base[j] = pb.odd[j] ? off - 1 : off;
  }
  const int lanes = g.sw == 2 ? 16 : 8;
  for (int64_t b = 0; b < pb.nb; b++) {
    const int64_t wo0 = g.Wo >= 8 ? std::min<int64_t>(8 * b, g.Wo - 8) : 0;
    pb.start[b] = wo0;
    for (int j = 0; j < g.kw; j++) {
      int32_t* m = &pb.mask[static_cast<size_t>((b * g.kw + j) * 16)];
      for (int k = 0; k < lanes; k++) {
        const int64_t col = wo0 * g.sw - g.pl + pb.base[j] + k;
        m[k] = col >= 0 && col < g.W ? -1 : 0;
        if (!m[k]) pb.full[b] = 0;
      }
    }
  }
  pb.fb0 = pb.fb1 = 0;
  for (int64_t b = 0; b < pb.nb; b++)
    if (pb.full[b]) {
      if (pb.fb1 == pb.fb0) pb.fb0 = b;
      pb.fb1 = b + 1;
    }
  for (int64_t b = pb.fb0; b < pb.fb1; b++)
    if (!pb.full[b]) std::abort();  // full blocks are contiguous: the loads only move right with b
  return pb;
}

template <bool MAX>
INFERON_AVX2_INLINE __m256 combine(__m256 acc, __m256 v) {
  return MAX ? _mm256_max_ps(v, acc) : _mm256_add_ps(acc, v);  // max: (v > acc ? v : acc)
}

// The taps of input row xr (at the block's first input column) for the 8 outputs of a block.
// FULL: plain loads, KW > 0 unrolled (column dilation 1; stride 2: taps 2t and 2t + 1 share two
// loads). Otherwise masked loads (mk: the block's masks, 16 per tap).
template <int S, int KW, bool MAX, bool FULL>
INFERON_AVX2_INLINE __m256 pool_taps(const float* xr, const PoolBlocks& pb, int kw, const int32_t* mk, __m256 acc) {
  if constexpr (FULL && KW > 0) {
    if (S == 1) {
#pragma GCC unroll 8
      for (int j = 0; j < KW; j++) acc = combine<MAX>(acc, _mm256_loadu_ps(xr + j));
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < KW; j += 2) {
        const __m256 lo = _mm256_loadu_ps(xr + j), hi = _mm256_loadu_ps(xr + j + 8);
        acc = combine<MAX>(acc, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
        if (j + 1 < KW) acc = combine<MAX>(acc, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
    return acc;
  }
  const __m256 lowest = _mm256_set1_ps(-FLT_MAX);
  if constexpr (!FULL && KW > 0) {  // masked, unrolled (column dilation 1)
#pragma GCC unroll 8
    for (int j = 0; j < KW; j += (S == 2 ? 2 : 1)) {
      const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mk + j * 16));
      __m256 lo = _mm256_maskload_ps(xr + j, m0);
      if (MAX) lo = _mm256_blendv_ps(lowest, lo, _mm256_castsi256_ps(m0));
      if (S == 1) {
        acc = combine<MAX>(acc, lo);
      } else {
        const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mk + j * 16 + 8));
        __m256 hi = _mm256_maskload_ps(xr + j + 8, m1);
        if (MAX) hi = _mm256_blendv_ps(lowest, hi, _mm256_castsi256_ps(m1));
        acc = combine<MAX>(acc, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
        if (j + 1 < KW) acc = combine<MAX>(acc, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
    return acc;
  }
  for (int j = 0; j < kw; j++) {
    const float* p = xr + pb.base[j];
    __m256 lo, hi;
    if (FULL) {
      lo = _mm256_loadu_ps(p);
      if (S == 2) hi = _mm256_loadu_ps(p + 8);
    } else {
      const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mk + j * 16));
      lo = _mm256_maskload_ps(p, m0);
      if (MAX) lo = _mm256_blendv_ps(lowest, lo, _mm256_castsi256_ps(m0));
      if (S == 2) {
        const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mk + j * 16 + 8));
        hi = _mm256_maskload_ps(p + 8, m1);
        if (MAX) hi = _mm256_blendv_ps(lowest, hi, _mm256_castsi256_ps(m1));
      }
    }
    __m256 v = lo;
    if (S == 2)
      v = pb.odd[j] ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    acc = combine<MAX>(acc, v);
  }
  return acc;
}

// One block: the window rows [ilo, ihi) from x0 (input row ilo, the block's first input column);
// ROWS > 0: exactly ROWS rows (the whole window inside the image), unrolled.
template <int S, int KW, bool MAX, bool FULL, int ROWS>
INFERON_AVX2_INLINE __m256 pool_block(const float* x0, int64_t row_step, int nrows, const PoolBlocks& pb, int kw,
                                      const int32_t* mk) {
  __m256 acc = MAX ? _mm256_set1_ps(-FLT_MAX) : _mm256_setzero_ps();
  if constexpr (ROWS > 0) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; i++) acc = pool_taps<S, KW, MAX, FULL>(x0 + i * row_step, pb, kw, mk, acc);
  } else {
    for (int i = 0; i < nrows; i++, x0 += row_step) acc = pool_taps<S, KW, MAX, FULL>(x0, pb, kw, mk, acc);
  }
  if (S == 2) acc = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(acc), _MM_SHUFFLE(3, 1, 2, 0)));
  return acc;
}

// Blocks [b0, b1) of one output row (y row yr; x0: input row ilo at column -pl).
template <int S, int KW, bool MAX, bool FULL, int ROWS>
INFERON_AVX2_INLINE void pool_blocks(int64_t b0, int64_t b1, const float* x0, int64_t row_step, int nrows,
                                     const PoolBlocks& pb, int kw, __m256 vrow, int64_t Wo, float* yr) {
  const __m256 one = _mm256_set1_ps(1.f);
  for (int64_t b = b0; b < b1; b++) {
    const int64_t wo0 = pb.start[b];
    __m256 acc = pool_block<S, KW, MAX, FULL, ROWS>(x0 + wo0 * S, row_step, nrows, pb, kw,
                                                    &pb.mask[static_cast<size_t>(b * kw * 16)]);
    if (!MAX) acc = _mm256_div_ps(acc, _mm256_max_ps(_mm256_mul_ps(vrow, _mm256_loadu_ps(&pb.colcnt[wo0])), one));
    if (Wo >= 8) {
      _mm256_storeu_ps(yr + wo0, acc);
    } else {
      alignas(32) float t[8];
      _mm256_store_ps(t, acc);
      for (int64_t k = 0; k < Wo; k++) yr[k] = t[k];
    }
  }
}

// KW > 0 (column dilation 1): the kh == KW window rows are unrolled where they all lie inside.
template <int S, int KW, bool MAX>
INFERON_AVX2 void pool_plane_avx2(const PoolGeo& g, const PoolBlocks& pb, const int* ilos, const int* ihis,
                                  const float* rowcnt, const float* xp, float* yp) {
  const int kw = g.kw;
  const int64_t W = g.W, Wo = g.Wo, Ho = g.Ho, sh = g.sh, pt = g.pt, pl = g.pl, nb = pb.nb;
  const int64_t fb0 = pb.fb0, fb1 = pb.fb1, row_step = static_cast<int64_t>(g.dh) * W;
  const bool square = KW > 0 && g.kh == KW;
  for (int64_t ho = 0; ho < Ho; ho++) {
    const int ilo = ilos[ho], ihi = ihis[ho], nrows = ihi - ilo;
    const float* x0 = xp + (ho * sh - pt + static_cast<int64_t>(ilo) * g.dh) * W - pl;
    float* yr = yp + ho * Wo;
    const __m256 vrow = _mm256_set1_ps(rowcnt[ho]);
    pool_blocks<S, KW, MAX, false, 0>(0, fb0, x0, row_step, nrows, pb, kw, vrow, Wo, yr);
    if (square && nrows == KW) pool_blocks<S, KW, MAX, true, KW>(fb0, fb1, x0, row_step, nrows, pb, kw, vrow, Wo, yr);
    else pool_blocks<S, KW, MAX, true, 0>(fb0, fb1, x0, row_step, nrows, pb, kw, vrow, Wo, yr);
    pool_blocks<S, KW, MAX, false, 0>(fb1, nb, x0, row_step, nrows, pb, kw, vrow, Wo, yr);
  }
}

using PoolPlaneFn = void (*)(const PoolGeo&, const PoolBlocks&, const int*, const int*, const float*, const float*,
                             float*);

template <int S, bool MAX>
inline PoolPlaneFn pick_pool_plane(int kw, int dw) {
  if (dw == 1 && kw == 2) return pool_plane_avx2<S, 2, MAX>;
  if (dw == 1 && kw == 3) return pool_plane_avx2<S, 3, MAX>;
  return pool_plane_avx2<S, 0, MAX>;
}

inline PoolPlaneFn pick_pool_plane(int sw, int kw, int dw, int is_max) {
  if (sw == 1) return is_max ? pick_pool_plane<1, true>(kw, dw) : pick_pool_plane<1, false>(kw, dw);
  return is_max ? pick_pool_plane<2, true>(kw, dw) : pick_pool_plane<2, false>(kw, dw);
}


// ---------------------------------------------------------------- max pool, AVX-512F path
// Separable: per output row, the max over its window's rows is taken once per input column into a
// row vm (columns -pl .. past the last window, -FLT_MAX outside the image), then the max over the kw
// taps along vm (stride 2: even / odd lanes of two loads, one vpermt2ps per tap), 16 outputs per
// vector. (The AVX2 path takes every tap of every window row per 8 outputs; SqueezeNet's 3x3 / 2 pools
// 0.200 -> 0.180 and 0.117 -> 0.101 ms: both wait mostly on the input rows.) Column dilation 1,
// column stride 1 or 2. vm: -FLT_MAX outside
// the image columns [pl, pl + W), which are rewritten per row.
#define INFERON_POOL_ZMM __attribute__((target("avx2,fma,avx512f")))
INFERON_POOL_ZMM inline void max_plane_zmm(const float* x, float* y, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                                           int kw, int sh, int sw, int dh, int pt, int pl, const int* ilo,
                                           const int* ihi, float* vm) {
  const __m512 lowest = _mm512_set1_ps(-FLT_MAX);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t ho = 0; ho < Ho; ho++) {
    const int64_t hs = ho * sh - pt;
    for (int64_t c0 = 0; c0 < W; c0 += 16) {
      const __mmask16 m = static_cast<__mmask16>((1u << std::min<int64_t>(16, W - c0)) - 1u);
      __m512 acc = lowest;
      for (int i = ilo[ho]; i < ihi[ho]; i++)
        acc = _mm512_max_ps(acc, _mm512_mask_loadu_ps(lowest, m, x + (hs + static_cast<int64_t>(i) * dh) * W + c0));
      _mm512_mask_storeu_ps(vm + pl + c0, m, acc);
    }
    float* yr = y + ho * Wo;
    for (int64_t o = 0; o < Wo; o += 16) {
      const __mmask16 m = static_cast<__mmask16>((1u << std::min<int64_t>(16, Wo - o)) - 1u);
      __m512 acc = lowest;
      if (sw == 1) {
        for (int j = 0; j < kw; j++) acc = _mm512_max_ps(acc, _mm512_loadu_ps(vm + o + j));
      } else {
        const float* b = vm + 2 * o;
        for (int j = 0; j < kw; j++) {
          const float* q = b + (j & ~1);
          acc = _mm512_max_ps(acc, _mm512_permutex2var_ps(_mm512_loadu_ps(q), (j & 1) ? odd : even, _mm512_loadu_ps(q + 16)));
        }
      }
      _mm512_mask_storeu_ps(yr + o, m, acc);
    }
  }
}
#undef INFERON_POOL_ZMM

}  // namespace pool_detail

// ONNX Max/AveragePool on NC planes. pads top/left/bottom/right. Avg divisor: count_include_pad=0 →
// number of in-image elements in the window; =1 → window clipped to the padded extent
// [-pt, H+pb) x [-pl, W+pr) (with ceil_mode the last window may extend past it). Max ignores
// padding; a window with no in-image element gives -FLT_MAX (max) or 0 (average).
// AVX2 with column stride 1 or 2: pool_plane_avx2 above (average within an ulp of the scalar
// division); other strides and the scalar ISA: the scalar loop.
INFERON_ENTRY void pool2d(const float* x, float* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                   int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw,
                   int is_max, int count_include_pad, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(POOL)
INFERON_ENTRY void pool2d(const float* x, float* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                   int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw,
                   int is_max, int count_include_pad, int num_threads) {
  using pool_detail::tap_count;
  using pool_detail::tap_range;
  if (NC <= 0 || Ho <= 0 || Wo <= 0) return;
  // per output column / row: valid tap range and padded-extent tap count
  std::vector<int> jlo(static_cast<size_t>(Wo)), jhi(static_cast<size_t>(Wo)), jcnt(static_cast<size_t>(Wo));
  for (int64_t wo = 0; wo < Wo; wo++) {
    const int64_t ws = wo * sw - pl;
    tap_range(ws, kw, dw, W, jlo[wo], jhi[wo]);
    jcnt[wo] = tap_count(ws, kw, dw, -pl, W + pr);
  }
  std::vector<int> ilo(static_cast<size_t>(Ho)), ihi(static_cast<size_t>(Ho)), icnt(static_cast<size_t>(Ho));
  for (int64_t ho = 0; ho < Ho; ho++) {
    const int64_t hs = ho * sh - pt;
    tap_range(hs, kh, dh, H, ilo[ho], ihi[ho]);
    icnt[ho] = tap_count(hs, kh, dh, -pt, H + pb);
  }
  const int T = threads_for(num_threads, static_cast<double>(NC) * Ho * Wo * kh * kw, 65536.0);
  // (narrow outputs stay on the AVX2 path: SqueezeNet's 27 x 27 -> 13 x 13 pool 0.064 ms there, 0.074 here)
  if (is_max && dw == 1 && (sw == 1 || sw == 2) && Wo >= 16 && isa() >= INFERON_ISA_AVX512) {
    // vm: column -pl at 0, read up to sw * (Wo rounded up to 16) + kw + 16
    const int64_t vlen = std::max<int64_t>(pl + W, sw * ((Wo + 15) / 16 * 16) + kw + 16) + 16;
#pragma omp parallel num_threads(T) if (T > 1)
    {
      std::vector<float> vm(static_cast<size_t>(vlen), -FLT_MAX);
#pragma omp for schedule(static)
      for (int64_t p = 0; p < NC; p++)
        pool_detail::max_plane_zmm(x + p * H * W, y + p * Ho * Wo, H, W, Ho, Wo, kw, sh, sw, dh, pt, pl, ilo.data(),
                                   ihi.data(), vm.data());
    }
    return;
  }
  if (use_avx2() && (sw == 1 || sw == 2)) {
    const pool_detail::PoolGeo g{H, W, Ho, Wo, kh, kw, sh, sw, dh, dw, pt, pl};
    std::vector<int> colcnt(static_cast<size_t>(Wo));
    std::vector<float> rowcnt(static_cast<size_t>(Ho));
    for (int64_t wo = 0; wo < Wo; wo++) colcnt[wo] = count_include_pad ? jcnt[wo] : jhi[wo] - jlo[wo];
    for (int64_t ho = 0; ho < Ho; ho++)
      rowcnt[ho] = static_cast<float>(count_include_pad ? icnt[ho] : ihi[ho] - ilo[ho]);
    const pool_detail::PoolBlocks blocks = pool_detail::make_pool_blocks(g, colcnt.data());
    const pool_detail::PoolPlaneFn fn = pool_detail::pick_pool_plane(sw, kw, dw, is_max);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t p = 0; p < NC; p++)
      fn(g, blocks, ilo.data(), ihi.data(), rowcnt.data(), x + p * H * W, y + p * Ho * Wo);
    return;
  }
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < NC; p++) {
    const float* xp = x + p * H * W;
    float* yp = y + p * Ho * Wo;
    for (int64_t ho = 0; ho < Ho; ho++) {
      const int64_t hs = ho * sh - pt;
      float* yr = yp + ho * Wo;
      for (int64_t wo = 0; wo < Wo; wo++) {
        const int64_t ws = wo * sw - pl;
        const int lo = jlo[wo], hi = jhi[wo];
        if (is_max) {
          float m = -FLT_MAX;
          for (int i = ilo[ho]; i < ihi[ho]; i++) {
            const float* xr = xp + (hs + static_cast<int64_t>(i) * dh) * W + ws;
            for (int j = lo; j < hi; j++) {
              const float v = xr[static_cast<int64_t>(j) * dw];
              m = v > m ? v : m;
            }
          }
          yr[wo] = m;
        } else {
          float s = 0.f;
          for (int i = ilo[ho]; i < ihi[ho]; i++) {
            const float* xr = xp + (hs + static_cast<int64_t>(i) * dh) * W + ws;
            for (int j = lo; j < hi; j++) s += xr[static_cast<int64_t>(j) * dw];
          }
          const int cnt = count_include_pad ? icnt[ho] * jcnt[wo] : (ihi[ho] - ilo[ho]) * (hi - lo);
          yr[wo] = cnt > 0 ? s / static_cast<float>(cnt) : 0.f;
        }
      }
    }
  }
}
#endif

// Global max/average over each of NC planes of HW elements.
// nchwc8: x is NCHWc8 (NC a multiple of 8; y [N, C, 1, 1] is the same in either layout).
INFERON_ENTRY void global_pool(const float* x, float* y, int64_t NC, int64_t HW, int is_max, int num_threads = 1,
                               int nchwc8 = 0);

#if INFERON_DEFINE_KERNELS(POOL)
INFERON_ENTRY void global_pool(const float* x, float* y, int64_t NC, int64_t HW, int is_max, int num_threads,
                               int nchwc8) {
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(NC) * HW, 65536.0);
  if (nchwc8) {
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t b = 0; b < NC / 8; b++) {
      const float* xb = x + b * HW * 8;
      if (avx2) {
        pool_detail::global_block_c8_avx2(xb, y + b * 8, HW, is_max);
        continue;
      }
      for (int k = 0; k < 8; k++) {
        float a = is_max ? -INFINITY : 0.f;
        for (int64_t i = 0; i < HW; i++) a = is_max ? (xb[i * 8 + k] > a ? xb[i * 8 + k] : a) : a + xb[i * 8 + k];
        y[b * 8 + k] = is_max ? a : a / static_cast<float>(HW);
      }
    }
    return;
  }
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < NC; p++) {
    const float* xp = x + p * HW;
    if (avx2) {
      pool_detail::global_plane_avx2(xp, y + p, HW, is_max);
    } else if (is_max) {
      float m = -INFINITY;
      for (int64_t i = 0; i < HW; i++) m = xp[i] > m ? xp[i] : m;
      y[p] = m;
    } else {
      float s = 0.f;
      for (int64_t i = 0; i < HW; i++) s += xp[i];
      y[p] = s / static_cast<float>(HW);
    }
  }
}
#endif

}  // namespace inferon
