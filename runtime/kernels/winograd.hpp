// Inferon Winograd convolution F(m x m, 3 x 3): the input and output transforms.
//
// A stride-1, dilation-1 3x3 convolution computes each m x m output tile from an alpha x alpha
// input tile (alpha = m + 2) as  Y = A^T [ (G g G^T) (.) (B^T d B) ] A.  The weight transform
// U = G g G^T is done at compile time (inferon/ir/winograd.py, pass conv-to-winograd), the
// elementwise products summed over input channels are alpha^2 ordinary GEMMs run by gemm.hpp:
//
//   winograd_input:  x [C, H, W]           -> V [alpha^2][C, Tp]    (T = TH * TW tiles, row-major)
//   gemm (batched):  U [alpha^2, M, C]  x  V [alpha^2][C, Tp]  ->  Z [alpha^2][M, Tp]  (N = T columns)
//   winograd_output: Z [alpha^2][M, Tp]    -> y [M, Ho, Wo]  (+ bias[m], + residual, activation)
//
// Rows of V and Z are padded to Tp = winograd_padded(T) >= T + 7 columns, so that both transforms
// move whole 8-float vectors: one lane per tile, 8 neighbouring tiles of a tile row at a time (the
// lanes past a tile row's end spill into the next tile row, which the same thread writes next, or
// into the padding). The alpha^2 matrices of V and Z lie a point stride ps apart that is an odd
// number of cache lines (inferon/ir/winograd.py: point_stride): at a multiple of 4 KiB, the
// transforms' alpha^2 streams would all map to the same L1 sets. The input rows are first split
// by column phase (x mod m) with vector shuffles, so that every operand of the transforms is a
// contiguous run of tiles. The matrices B^T and A^T are compile-time tables here (the values of inferon/ir/winograd.py); their zeros are skipped and
// +-1 become additions at compile time.
#pragma once

#include <utility>

#include "common.hpp"

namespace inferon {

// Row length of the transformed buffers V and Z for T tiles (see above).
constexpr int64_t winograd_padded(int64_t T) { return (T + 7 + 7) / 8 * 8; }

template <int M> struct WinogradF;

template <> struct WinogradF<2> {  // interpolation points 0, 1, -1, inf
  static constexpr int A = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <> struct WinogradF<4> {  // interpolation points 0, 1, -1, 2, -2, inf
  static constexpr int A = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

namespace winograd_detail {

#define WINO_INLINE __attribute__((always_inline)) inline

// Lane operations of the two code paths: 8 floats (GCC vector extension: plain arithmetic that
// becomes AVX instructions inside the INFERON_AVX2 entry points below) or 1 float (scalar fallback).
struct VectorLanes {
  typedef float V __attribute__((vector_size(32)));
  static constexpr int W = 8;
  static WINO_INLINE V zero() { return V{}; }
  static WINO_INLINE V set(float c) { return V{} + c; }
  static WINO_INLINE V add(V a, V b) { return a + b; }
  static WINO_INLINE V sub(V a, V b) { return a - b; }
  static WINO_INLINE V fma(V a, V b, V c) { return a * b + c; }
  static WINO_INLINE V neg(V a) { return -a; }
  static WINO_INLINE V load(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
  static WINO_INLINE void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  // the first n < W lanes (nothing read or written past them; plain code: these inline into both ISAs)
  static WINO_INLINE V load_first(const float* p, int64_t n) {
    float t[W] = {};
    for (int64_t i = 0; i < n; i++) t[i] = p[i];
    return load(t);
  }
  static WINO_INLINE void store_first(float* p, V v, int64_t n) {
    float t[W];
    store(t, v);
    for (int64_t i = 0; i < n; i++) p[i] = t[i];
  }
  static WINO_INLINE V act(V v, int act, float alpha, float beta) {
    const V z{};
    switch (act) {
      case ACT_RELU: return v > z ? v : z;
      case ACT_LEAKY_RELU: return v < z ? v * alpha : v;
      case ACT_CLIP: v = v < alpha ? z + alpha : v; return v > beta ? z + beta : v;
      case ACT_NONE: return v;
      default: {  // sigmoid, swish, GELU, ...: act256 (this lane type only runs on AVX2 CPUs)
        float t[W];
        std::memcpy(t, &v, sizeof t);
        act_row_avx2(t, t, nullptr, 0.f, W, act, alpha, beta);
        std::memcpy(&v, t, sizeof t);
        return v;
      }
    }
  }
};

struct ScalarLanes {
  using V = float;
  static constexpr int W = 1;
  static WINO_INLINE V zero() { return 0.f; }
  static WINO_INLINE V set(float c) { return c; }
  static WINO_INLINE V add(V a, V b) { return a + b; }
  static WINO_INLINE V sub(V a, V b) { return a - b; }
  static WINO_INLINE V fma(V a, V b, V c) { return a * b + c; }
  static WINO_INLINE V neg(V a) { return -a; }
  static WINO_INLINE V load(const float* p) { return *p; }
  static WINO_INLINE void store(float* p, V v) { *p = v; }
  static WINO_INLINE V load_first(const float* p, int64_t) { return *p; }
  static WINO_INLINE void store_first(float* p, V v, int64_t) { *p = v; }
  static WINO_INLINE V act(V v, int act, float alpha, float beta) { return apply_act(v, act, alpha, beta); }
};

// sum_k T[I][k] * x[k] over the compile-time table T: zeros skipped, +-1 as add / sub.
template <class L, const auto& T, int I, int K, int N, bool FIRST = true>
WINO_INLINE typename L::V lin(const typename L::V* x, typename L::V acc) {
  if constexpr (K == N) {
    return FIRST ? L::zero() : acc;
  } else {
    constexpr float c = T[I][K];
    if constexpr (c == 0.f) {
      return lin<L, T, I, K + 1, N, FIRST>(x, acc);
    } else if constexpr (FIRST) {
      return lin<L, T, I, K + 1, N, false>(x, c == 1.f ? x[K] : c == -1.f ? L::neg(x[K]) : L::fma(L::set(c), x[K], L::zero()));
    } else {
      return lin<L, T, I, K + 1, N, false>(x, c == 1.f ? L::add(acc, x[K]) : c == -1.f ? L::sub(acc, x[K]) : L::fma(L::set(c), x[K], acc));
    }
  }
}

// y[i] = sum_k T[i][k] x[k] for every row i of the R x N table T.
template <class L, const auto& T, int N, int... I>
WINO_INLINE void apply_rows(const typename L::V* x, typename L::V* y, std::integer_sequence<int, I...>) {
  ((y[I] = lin<L, T, I, 0, N>(x, L::zero())), ...);
}

template <class L, const auto& T, int R, int N>
WINO_INLINE void apply(const typename L::V* x, typename L::V* y) {
  apply_rows<L, T, N>(x, y, std::make_integer_sequence<int, R>{});
}

// Per-thread scratch of the transforms (phase rows; output rows).
inline Scratch& tls() {
  thread_local Scratch s;
  return s;
}

// Lane index vector type of VectorLanes (for __builtin_shuffle masks).
typedef int VI __attribute__((vector_size(32)));

// dst[r * J + i] = src[i * M + r] for i < W lanes, r < M: the M column phases of W tiles.
template <int M, class L>
WINO_INLINE void split_phases(const float* src, float* dst, int64_t J) {
  if constexpr (L::W == 1) {
    for (int r = 0; r < M; r++) dst[r * J] = src[r];
  } else if constexpr (M == 2) {
    const typename L::V a = L::load(src), b = L::load(src + 8);
    L::store(dst, __builtin_shuffle(a, b, VI{0, 2, 4, 6, 8, 10, 12, 14}));
    L::store(dst + J, __builtin_shuffle(a, b, VI{1, 3, 5, 7, 9, 11, 13, 15}));
  } else {
    static_assert(M == 4, "phases of F(2x2) and F(4x4) only");
    const typename L::V a = L::load(src), b = L::load(src + 8);
    const typename L::V c = L::load(src + 16), d = L::load(src + 24);
    // ab holds phases (0, 1, 2, 3) of tiles 0-3 as [r0 t0 t1 t2 t3 | ...]: transpose two 4x4 blocks
    const typename L::V ab0 = __builtin_shuffle(a, b, VI{0, 4, 8, 12, 1, 5, 9, 13});
    const typename L::V ab1 = __builtin_shuffle(a, b, VI{2, 6, 10, 14, 3, 7, 11, 15});
    const typename L::V cd0 = __builtin_shuffle(c, d, VI{0, 4, 8, 12, 1, 5, 9, 13});
    const typename L::V cd1 = __builtin_shuffle(c, d, VI{2, 6, 10, 14, 3, 7, 11, 15});
    L::store(dst, __builtin_shuffle(ab0, cd0, VI{0, 1, 2, 3, 8, 9, 10, 11}));
    L::store(dst + J, __builtin_shuffle(ab0, cd0, VI{4, 5, 6, 7, 12, 13, 14, 15}));
    L::store(dst + 2 * J, __builtin_shuffle(ab1, cd1, VI{0, 1, 2, 3, 8, 9, 10, 11}));
    L::store(dst + 3 * J, __builtin_shuffle(ab1, cd1, VI{4, 5, 6, 7, 12, 13, 14, 15}));
  }
}

// dst[(t + i) * M + j] = o[j][i] for i < W lanes, j < M: interleave the M column phases back.
template <int M, class L>
WINO_INLINE void join_phases(const typename L::V* o, float* dst) {
  if constexpr (L::W == 1) {
    for (int j = 0; j < M; j++) dst[j] = o[j];
  } else if constexpr (M == 2) {
    L::store(dst, __builtin_shuffle(o[0], o[1], VI{0, 8, 1, 9, 2, 10, 3, 11}));
    L::store(dst + 8, __builtin_shuffle(o[0], o[1], VI{4, 12, 5, 13, 6, 14, 7, 15}));
  } else {
    static_assert(M == 4, "phases of F(2x2) and F(4x4) only");
    const typename L::V p01a = __builtin_shuffle(o[0], o[1], VI{0, 8, 1, 9, 2, 10, 3, 11});
    const typename L::V p01b = __builtin_shuffle(o[0], o[1], VI{4, 12, 5, 13, 6, 14, 7, 15});
    const typename L::V p23a = __builtin_shuffle(o[2], o[3], VI{0, 8, 1, 9, 2, 10, 3, 11});
    const typename L::V p23b = __builtin_shuffle(o[2], o[3], VI{4, 12, 5, 13, 6, 14, 7, 15});
    L::store(dst, __builtin_shuffle(p01a, p23a, VI{0, 1, 8, 9, 2, 3, 10, 11}));
    L::store(dst + 8, __builtin_shuffle(p01a, p23a, VI{4, 5, 12, 13, 6, 7, 14, 15}));
    L::store(dst + 16, __builtin_shuffle(p01b, p23b, VI{0, 1, 8, 9, 2, 3, 10, 11}));
    L::store(dst + 24, __builtin_shuffle(p01b, p23b, VI{4, 5, 12, 13, 6, 7, 14, 15}));
  }
}

// Both transforms touch alpha^2 rows of V / Z per vector of tiles, one cache line each, a point stride
// (tens of KB) apart: the hardware prefetchers do not follow that many streams. The rows' lines 16 tiles ahead are
// prefetched (for writing, in the input transform): input transforms 1.3-1.5x, output ones 1.06-1.12x
// faster (64 channels of 56 x 56 and 55 x 55, 32 of 27 x 27; 32 tiles ahead: the same).
constexpr int kPrefetchV = 16;
// Input transform of one channel: x its H x W plane, v = V + c * Tp (point stride ps = C * Tp).
// The plane is first copied with its zero border (xp: rows ty * M - pt + k, columns j * M - pl + r)
// and split by column phase (ph[y][r][j]); each tile row then reads A rows of ph. `first`: the
// thread's first channel of this call, which zeroes the whole bordered plane; the later ones only
// copy the image rows (the border is the same zeros for every channel).
template <int M, class L>
WINO_INLINE void input_channel(const float* x, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t TH, int64_t TW,
                               float* v, int64_t ps, bool first) {
  using F = WinogradF<M>;
  constexpr int A = F::A;
  using V = typename L::V;
  const int64_t J = (TW + 1 + 7) / 8 * 8 + 8;  // tiles per phase row (TW + the next one, whole vectors, slack)
  const int64_t Wr = J * M, Hp = TH * M + 2;   // bordered plane: Hp rows of Wr columns
  float* buf = tls().get(static_cast<size_t>(Hp * Wr * 2 + A * M * J));
  float* xp = buf;
  float* ph = buf + Hp * Wr;
  float* q = ph + Hp * Wr;  // q[a][r][j] = sum_k BT[a][k] ph[ty * M + k][r][j]
  const int64_t wcopy = std::min<int64_t>(W, Wr - pl);
  if (first) std::fill(xp, xp + Hp * Wr, 0.f);
  for (int64_t y = std::max<int64_t>(0, pt); y < std::min<int64_t>(Hp, H + pt); y++)
    std::memcpy(xp + y * Wr + pl, x + (y - pt) * W, static_cast<size_t>(wcopy) * sizeof(float));
  for (int64_t y = 0; y < Hp; y++)
    for (int64_t j = 0; j + L::W <= J; j += L::W) split_phases<M, L>(xp + y * Wr + j * M, ph + y * M * J + j, J);
  for (int64_t ty = 0; ty < TH; ty++) {
    const float* pt0 = ph + ty * M * M * J;  // phase rows of input row ty * M
    for (int64_t j = 0; j < TW + 1; j += L::W)
      for (int r = 0; r < M; r++) {
        V in[A], out[A];
        for (int k = 0; k < A; k++) in[k] = L::load(pt0 + (k * M + r) * J + j);
        apply<L, F::BT, A, A>(in, out);
        for (int a = 0; a < A; a++) L::store(q + (a * M + r) * J + j, out[a]);
      }
    float* vt = v + ty * TW;
    for (int64_t j = 0; j < TW; j += L::W)
      for (int a = 0; a < A; a++) {
        V in[A], out[A];
        for (int l = 0; l < A; l++) in[l] = L::load(q + (a * M + l % M) * J + j + l / M);
        apply<L, F::BT, A, A>(in, out);
        for (int b = 0; b < A; b++) {
          __builtin_prefetch(vt + (a * A + b) * ps + j + kPrefetchV, 1);
          L::store(vt + (a * A + b) * ps + j, out[b]);
        }
      }
  }
}

constexpr int kPrefetchZ = 16;  // see kPrefetchV
// Output transform of one output channel: z = Z + m * Tp (point stride ps = M * Tp), y its
// Ho x Wo plane (res: the residual's plane or null).
template <int M, class L>
WINO_INLINE void output_channel(const float* z, int64_t ps, int64_t TH, int64_t TW, float* y, const float* res,
                                int64_t Ho, int64_t Wo, float bias, int act, float alpha, float beta) {
  using F = WinogradF<M>;
  constexpr int A = F::A;
  using V = typename L::V;
  const int64_t Wr = ((TW + 7) / 8 * 8) * M;
  float* rows = tls().get(static_cast<size_t>(M * Wr));  // rows[i][xx]: output row ty * M + i
  for (int64_t ty = 0; ty < TH; ty++) {
    const float* zt = z + ty * TW;
    for (int64_t t = 0; t < TW; t += L::W) {
      V s[A][M];
      for (int a = 0; a < A; a++) {
        V in[A];
        for (int b = 0; b < A; b++) {
          __builtin_prefetch(zt + (a * A + b) * ps + t + kPrefetchZ);
          in[b] = L::load(zt + (a * A + b) * ps + t);
        }
        apply<L, F::AT, M, A>(in, s[a]);
      }
      V o[M][M];  // o[i][j]: output (ty * M + i, (t + lane) * M + j)
      for (int j = 0; j < M; j++) {
        V col[A], out[M];
        for (int a = 0; a < A; a++) col[a] = s[a][j];
        apply<L, F::AT, M, A>(col, out);
        for (int i = 0; i < M; i++) o[i][j] = out[i];
      }
      for (int i = 0; i < M; i++) join_phases<M, L>(o[i], rows + i * Wr + t * M);
    }
    for (int i = 0; i < M && ty * M + i < Ho; i++) {
      float* dst = y + (ty * M + i) * Wo;
      const float* r = res ? res + (ty * M + i) * Wo : nullptr;
      const float* src = rows + i * Wr;
      int64_t xx = 0;
      for (; xx + L::W <= Wo; xx += L::W) {
        V v = L::add(L::load(src + xx), L::set(bias));
        if (r) v = L::add(v, L::load(r + xx));
        L::store(dst + xx, L::act(v, act, alpha, beta));
      }
      if (xx < Wo) {  // a masked vector (a scalar loop here was most of the transform at Wo = 55)
        V v = L::add(L::load(src + xx), L::set(bias));  // rows[] is whole vectors wide
        if (r) v = L::add(v, L::load_first(r + xx, Wo - xx));
        L::store_first(dst + xx, L::act(v, act, alpha, beta), Wo - xx);
      }
    }
  }
}

template <int M>
INFERON_AVX2 void input_channel_avx2(const float* x, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t TH,
                                     int64_t TW, float* v, int64_t ps, bool first) {
  input_channel<M, VectorLanes>(x, H, W, pt, pl, TH, TW, v, ps, first);
}

template <int M>
INFERON_AVX2 void output_channel_avx2(const float* z, int64_t ps, int64_t TH, int64_t TW, float* y, const float* res,
                                      int64_t Ho, int64_t Wo, float bias, int act, float alpha, float beta) {
  output_channel<M, VectorLanes>(z, ps, TH, TW, y, res, Ho, Wo, bias, act, alpha, beta);
}

// The same 8-lane code compiled for AVX-512VL: 32 vector registers (EVEX ymm16-31) instead of 16,
// so the output transform's 6 x 4 column sums and 4 x 4 outputs no longer spill.
#define INFERON_AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))

template <int M>
INFERON_AVX512VL void input_channel_avx512(const float* x, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t TH,
                                          int64_t TW, float* v, int64_t ps, bool first) {
  input_channel<M, VectorLanes>(x, H, W, pt, pl, TH, TW, v, ps, first);
}

template <int M>
INFERON_AVX512VL void output_channel_avx512(const float* z, int64_t ps, int64_t TH, int64_t TW, float* y,
                                           const float* res, int64_t Ho, int64_t Wo, float bias, int act, float alpha,
                                           float beta) {
  output_channel<M, VectorLanes>(z, ps, TH, TW, y, res, Ho, Wo, bias, act, alpha, beta);
}

template <int M>
void input_all(const float* x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl, int64_t TH, int64_t TW,
               float* v, int64_t ps, bool avx2, int T) {
  const int64_t tp = winograd_padded(TH * TW);
  const bool vl = avx2 && isa() >= INFERON_ISA_AVX512;
#pragma omp parallel num_threads(T) if (T > 1)
  {
    bool first = true;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; c++) {
      if (vl) input_channel_avx512<M>(x + c * H * W, H, W, pt, pl, TH, TW, v + c * tp, ps, first);
      else if (avx2) input_channel_avx2<M>(x + c * H * W, H, W, pt, pl, TH, TW, v + c * tp, ps, first);
      else input_channel<M, ScalarLanes>(x + c * H * W, H, W, pt, pl, TH, TW, v + c * tp, ps, first);
      first = false;
    }
  }
}

template <int M>
void output_all(const float* z, int64_t Mo, int64_t TH, int64_t TW, int64_t ps, float* y, const float* bias,
                const float* res, int64_t Ho, int64_t Wo, int act, float alpha, float beta, bool avx2, int T) {
  const int64_t tp = winograd_padded(TH * TW);
  const bool vl = avx2 && isa() >= INFERON_ISA_AVX512;
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t m = 0; m < Mo; m++) {
    const float* rm = res ? res + m * Ho * Wo : nullptr;
    const float b = bias ? bias[m] : 0.f;
    if (vl) output_channel_avx512<M>(z + m * tp, ps, TH, TW, y + m * Ho * Wo, rm, Ho, Wo, b, act, alpha, beta);
    else if (avx2) output_channel_avx2<M>(z + m * tp, ps, TH, TW, y + m * Ho * Wo, rm, Ho, Wo, b, act, alpha, beta);
    else output_channel<M, ScalarLanes>(z + m * tp, ps, TH, TW, y + m * Ho * Wo, rm, Ho, Wo, b, act, alpha, beta);
  }
}

#undef WINO_INLINE
#undef INFERON_AVX512VL

}  // namespace winograd_detail

// V[p * ps + c * Tp + ty * TW + tx] = (B^T d B)[p] of the tile at (ty, tx) of image x [C, H, W]
// (zero padding pt, pl; Tp = winograd_padded(TH * TW), point stride ps >= C * Tp).
INFERON_ENTRY void winograd_input(int m, const float* x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl,
                           int64_t TH, int64_t TW, float* v, int64_t ps, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(WINOGRAD)
INFERON_ENTRY void winograd_input(int m, const float* x, int64_t C, int64_t H, int64_t W, int64_t pt, int64_t pl,
                           int64_t TH, int64_t TW, float* v, int64_t ps, int num_threads) {
  const int T = threads_for(num_threads, static_cast<double>(C) * TH * TW * (m + 2) * (m + 2) * 4, 65536.0);
  if (m == 2) winograd_detail::input_all<2>(x, C, H, W, pt, pl, TH, TW, v, ps, use_avx2(), T);
  else winograd_detail::input_all<4>(x, C, H, W, pt, pl, TH, TW, v, ps, use_avx2(), T);
}
#endif

// y[m] = act((A^T Z A)[tiles of channel m] + bias[m] + residual[m]) for output [M, Ho, Wo]; Z as V
// above (point stride ps >= M * Tp).
INFERON_ENTRY void winograd_output(int m, const float* z, int64_t M, int64_t TH, int64_t TW, int64_t ps, float* y,
                            const float* bias, const float* residual, int64_t Ho, int64_t Wo, int act, float alpha,
                            float beta, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(WINOGRAD)
INFERON_ENTRY void winograd_output(int m, const float* z, int64_t M, int64_t TH, int64_t TW, int64_t ps, float* y,
                            const float* bias, const float* residual, int64_t Ho, int64_t Wo, int act, float alpha,
                            float beta, int num_threads) {
  const int T = threads_for(num_threads, static_cast<double>(M) * TH * TW * (m + 2) * (m + 2) * 4, 65536.0);
  if (m == 2) winograd_detail::output_all<2>(z, M, TH, TW, ps, y, bias, residual, Ho, Wo, act, alpha, beta, use_avx2(), T);
  else winograd_detail::output_all<4>(z, M, TH, TW, ps, y, bias, residual, Ho, Wo, act, alpha, beta, use_avx2(), T);
}
#endif

}  // namespace inferon
