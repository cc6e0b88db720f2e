// Inferon elementwise kernels: broadcasting binary ops, unary ops, copies, per-channel affine.
#pragma once

#include "common.hpp"

namespace inferon {

enum BinOp : int { BIN_ADD = 0, BIN_SUB = 1, BIN_MUL = 2, BIN_DIV = 3, BIN_MAX = 4, BIN_MIN = 5, BIN_POW = 6 };

// Same numbers as Act where shared. HardSigmoid: max(0, min(1, alpha*x + beta)); Elu uses alpha.
enum UnOp : int { UN_RELU = 1, UN_LEAKY_RELU = 2, UN_CLIP = 3, UN_SIGMOID = 4, UN_TANH = 5, UN_EXP = 6,
                  UN_LOG = 7, UN_ABS = 8, UN_NEG = 9, UN_SQRT = 10, UN_RECIPROCAL = 11, UN_FLOOR = 12, UN_CEIL = 13,
                  UN_ELU = 14, UN_HARD_SIGMOID = 15, UN_SOFTPLUS = 16 };

namespace ew_detail {

template <int OP>
inline float bin_scalar(float a, float b) {
  switch (OP) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_MAX: return a > b ? a : b;
    case BIN_MIN: return a < b ? a : b;
    default: return std::pow(a, b);
  }
}

template <int OP>
INFERON_AVX2_INLINE __m256 bin_vec(__m256 a, __m256 b) {
  switch (OP) {
    case BIN_ADD: return _mm256_add_ps(a, b);
    case BIN_SUB: return _mm256_sub_ps(a, b);
    case BIN_MUL: return _mm256_mul_ps(a, b);
    case BIN_DIV: return _mm256_div_ps(a, b);
    // (a > b ? a : b) like the scalar path: max_ps(b, a) returns a when a > b
    case BIN_MAX: return _mm256_max_ps(b, a);
    default: return _mm256_min_ps(b, a);
  }
}

// y[i] = a[i*sa] op b[i*sb], i < n
template <int OP>
inline void bin_row_scalar(int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) y[i] = bin_scalar<OP>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; i++) y[i] = bin_scalar<OP>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; i++) y[i] = bin_scalar<OP>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = bin_scalar<OP>(a[i * sa], b[i * sb]);
  }
}

template <int OP>
INFERON_AVX2 void bin_row_avx2(int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  int64_t i = 0;
  if (sa == 1 && sb == 1) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, bin_vec<OP>(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = bin_scalar<OP>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const __m256 bv = _mm256_set1_ps(*b);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bin_vec<OP>(_mm256_loadu_ps(a + i), bv));
    for (; i < n; i++) y[i] = bin_scalar<OP>(a[i], *b);
  } else if (sa == 0 && sb == 1) {
    const __m256 av = _mm256_set1_ps(*a);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bin_vec<OP>(av, _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = bin_scalar<OP>(*a, b[i]);
  } else {
    for (; i < n; i++) y[i] = bin_scalar<OP>(a[i * sa], b[i * sb]);
  }
}

template <int OP>
inline void bin_row(bool avx2, int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  if (OP != BIN_POW && avx2) bin_row_avx2<OP>(n, a, sa, b, sb, y);
  else bin_row_scalar<OP>(n, a, sa, b, sb, y);
}

// Collapsed iteration space: y contiguous over shape[0..rank), rows of length shape[rank-1].
struct BinSpace {
  int rank = 0;
  int64_t shape[INFERON_MAX_RANK], sa[INFERON_MAX_RANK], sb[INFERON_MAX_RANK];
};

inline BinSpace collapse(int rank, const int64_t* out_shape, const int64_t* as, const int64_t* bs) {
  BinSpace s;
  for (int d = 0; d < rank; d++) {
    if (out_shape[d] == 1) continue;
    if (s.rank > 0) {
      const int p = s.rank - 1;
      if (s.sa[p] == as[d] * out_shape[d] && s.sb[p] == bs[d] * out_shape[d]) {
        s.shape[p] *= out_shape[d];
        s.sa[p] = as[d];
        s.sb[p] = bs[d];
        continue;
      }
    }
    s.shape[s.rank] = out_shape[d];
    s.sa[s.rank] = as[d];
    s.sb[s.rank] = bs[d];
    s.rank++;
  }
  if (s.rank == 0) {
    s.rank = 1;
    s.shape[0] = 1;
    s.sa[0] = 0;
    s.sb[0] = 0;
  }
  return s;
}

template <int OP>
inline void binary_op(const BinSpace& s, const float* a, const float* b, float* y, int num_threads) {
  const bool avx2 = use_avx2();
  const int r = s.rank;
  const int64_t inner = s.shape[r - 1];
  int64_t rows = 1;
  for (int d = 0; d < r - 1; d++) rows *= s.shape[d];
  const int T = threads_for(num_threads, static_cast<double>(rows) * inner, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
    if (r0 < r1) {
      int64_t idx[INFERON_MAX_RANK] = {0};
      int64_t rem = r0, oa = 0, ob = 0;
      for (int d = r - 2; d >= 0; d--) {
        idx[d] = rem % s.shape[d];
        rem /= s.shape[d];
        oa += idx[d] * s.sa[d];
        ob += idx[d] * s.sb[d];
      }
      for (int64_t row = r0; row < r1; row++) {
        bin_row<OP>(avx2, inner, a + oa, s.sa[r - 1], b + ob, s.sb[r - 1], y + row * inner);
        for (int d = r - 2; d >= 0; d--) {
          oa += s.sa[d];
          ob += s.sb[d];
          if (++idx[d] < s.shape[d]) break;
          oa -= s.sa[d] * s.shape[d];
          ob -= s.sb[d] * s.shape[d];
          idx[d] = 0;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------ unary
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

inline float un_scalar(int op, float x, float alpha, float beta) {
  switch (op) {
    case UN_RELU: return x > 0.f ? x : 0.f;
    case UN_LEAKY_RELU: return x < 0.f ? x * alpha : x;
    case UN_CLIP: return std::min(std::max(x, alpha), beta);
    case UN_SIGMOID: return 1.f / (1.f + std::exp(-x));
    case UN_TANH: return std::tanh(x);
    case UN_EXP: return std::exp(x);
    case UN_LOG: return std::log(x);
    case UN_ABS: return std::fabs(x);
    case UN_NEG: return -x;
    case UN_SQRT: return std::sqrt(x);
    case UN_RECIPROCAL: return 1.f / x;
    case UN_FLOOR: return std::floor(x);
    case UN_CEIL: return std::ceil(x);
    case UN_ELU: return x > 0.f ? x : alpha * (std::exp(x) - 1.f);
    case UN_HARD_SIGMOID: return std::max(0.f, std::min(1.f, alpha * x + beta));
    case UN_SOFTPLUS: return softplus(x);
    default: return x;
  }
}

template <int OP>
inline void un_loop_scalar(int64_t n, const float* x, float* y, float alpha, float beta) {
  for (int64_t i = 0; i < n; i++) y[i] = un_scalar(OP, x[i], alpha, beta);
}

template <int OP>
INFERON_AVX2_INLINE __m256 un_vec(__m256 x, __m256 va, __m256 vb) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  switch (OP) {
    case UN_RELU: return _mm256_max_ps(x, zero);
    case UN_LEAKY_RELU:
      return _mm256_blendv_ps(x, _mm256_mul_ps(x, va), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    case UN_CLIP: return _mm256_min_ps(_mm256_max_ps(x, va), vb);
    case UN_SIGMOID: return sigmoid256(x);
    case UN_TANH: return tanh256(x);
    case UN_EXP: return exp256(x);
    case UN_ABS: return _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
    case UN_NEG: return _mm256_xor_ps(_mm256_set1_ps(-0.f), x);
    case UN_SQRT: return _mm256_sqrt_ps(x);
    case UN_RECIPROCAL: return _mm256_div_ps(one, x);
    case UN_FLOOR: return _mm256_floor_ps(x);
    case UN_CEIL: return _mm256_ceil_ps(x);
    case UN_ELU:
      return _mm256_blendv_ps(_mm256_mul_ps(va, _mm256_sub_ps(exp256(x), one)), x,
                              _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    case UN_HARD_SIGMOID: return _mm256_min_ps(_mm256_max_ps(_mm256_fmadd_ps(va, x, vb), zero), one);
    default: return x;
  }
}

template <int OP>
INFERON_AVX2 void un_loop_avx2(int64_t n, const float* x, float* y, float alpha, float beta) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, un_vec<OP>(_mm256_loadu_ps(x + i), va, vb));
  if (i < n) {
    const __m256i m = mask_first(n - i);
    _mm256_maskstore_ps(y + i, m, un_vec<OP>(_mm256_maskload_ps(x + i, m), va, vb));
  }
}

template <int OP>
inline void un_loop(bool avx2, int64_t n, const float* x, float* y, float alpha, float beta) {
  constexpr bool has_vec = OP != UN_LOG && OP != UN_SOFTPLUS;
  if (has_vec && avx2) un_loop_avx2<OP>(n, x, y, alpha, beta);
  else un_loop_scalar<OP>(n, x, y, alpha, beta);
}

template <int OP>
inline void unary_op(int64_t n, const float* x, float* y, float alpha, float beta, int num_threads) {
  const bool avx2 = use_avx2();
  const double cost = (OP == UN_SIGMOID || OP == UN_TANH || OP == UN_EXP || OP == UN_ELU ||
                       OP == UN_LOG || OP == UN_SOFTPLUS) ? 8.0 : 1.0;
  const int T = threads_for(num_threads, static_cast<double>(n) * cost, 65536.0);
  if (T <= 1) return un_loop<OP>(avx2, n, x, y, alpha, beta);
#pragma omp parallel num_threads(T)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t i0 = n * id / nt / 16 * 16, i1 = id == nt - 1 ? n : n * (id + 1) / nt / 16 * 16;
    if (i0 < i1) un_loop<OP>(avx2, i1 - i0, x + i0, y + i0, alpha, beta);
  }
}

// y = act(x * s + t + r) over one row of n (r: the residual's row or null; y may equal x or r).
INFERON_AVX2 inline void affine_row_avx2(int64_t n, const float* x, float* y, float s, float t, const float* r,
                                         int act, float alpha, float beta) {
  const __m256 vs = _mm256_set1_ps(s), vt = _mm256_set1_ps(t);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vs, vt);
    if (r) v = _mm256_add_ps(v, _mm256_loadu_ps(r + i));
    _mm256_storeu_ps(y + i, act256(v, act, va, vb));
  }
  for (; i < n; i++) y[i] = apply_act(x[i] * s + t + (r ? r[i] : 0.f), act, alpha, beta);
}

}  // namespace ew_detail

// y[i] = a[i·a_strides] op b[i·b_strides] over out_shape (rank <= 8); broadcast dims have
// stride 0; y is dense. Dimensions are collapsed first, so same-shape, scalar and row/column
// broadcasts all run as vectorised rows.
inline void binary(int op, int rank, const int64_t* out_shape, const float* a, const int64_t* a_strides,
                   const float* b, const int64_t* b_strides, float* y, int num_threads = 1) {
  for (int d = 0; d < rank; d++)
    if (out_shape[d] == 0) return;
  const ew_detail::BinSpace s = ew_detail::collapse(rank, out_shape, a_strides, b_strides);
  switch (op) {
    case BIN_ADD: return ew_detail::binary_op<BIN_ADD>(s, a, b, y, num_threads);
    case BIN_SUB: return ew_detail::binary_op<BIN_SUB>(s, a, b, y, num_threads);
    case BIN_MUL: return ew_detail::binary_op<BIN_MUL>(s, a, b, y, num_threads);
    case BIN_DIV: return ew_detail::binary_op<BIN_DIV>(s, a, b, y, num_threads);
    case BIN_MAX: return ew_detail::binary_op<BIN_MAX>(s, a, b, y, num_threads);
    case BIN_MIN: return ew_detail::binary_op<BIN_MIN>(s, a, b, y, num_threads);
    default: return ew_detail::binary_op<BIN_POW>(s, a, b, y, num_threads);
  }
}

// y may equal x.
inline void unary(int op, int64_t n, const float* x, float* y, float alpha, float beta, int num_threads = 1) {
  using namespace ew_detail;
  switch (op) {
#define INFERON_UN_CASE(OPC) case OPC: return unary_op<OPC>(n, x, y, alpha, beta, num_threads);
    INFERON_UN_CASE(UN_RELU) INFERON_UN_CASE(UN_LEAKY_RELU) INFERON_UN_CASE(UN_CLIP)
    INFERON_UN_CASE(UN_SIGMOID) INFERON_UN_CASE(UN_TANH) INFERON_UN_CASE(UN_EXP)
    INFERON_UN_CASE(UN_LOG) INFERON_UN_CASE(UN_ABS) INFERON_UN_CASE(UN_NEG)
    INFERON_UN_CASE(UN_SQRT) INFERON_UN_CASE(UN_RECIPROCAL) INFERON_UN_CASE(UN_FLOOR)
    INFERON_UN_CASE(UN_CEIL) INFERON_UN_CASE(UN_ELU) INFERON_UN_CASE(UN_HARD_SIGMOID)
    INFERON_UN_CASE(UN_SOFTPLUS)
#undef INFERON_UN_CASE
    default:
      if (x != y) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  }
}

inline void copy(const float* x, float* y, int64_t n) {
  if (n > 0 && x != y) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
}

// copy `rows` rows of `row_len` floats from contiguous x into y with row stride y_stride (Concat)
inline void copy_rows(const float* x, float* y, int64_t rows, int64_t row_len, int64_t y_stride) {
  if (row_len <= 0) return;
  if (y_stride == row_len) return copy(x, y, rows * row_len);
  for (int64_t r = 0; r < rows; r++)
    std::memcpy(y + r * y_stride, x + r * row_len, static_cast<size_t>(row_len) * sizeof(float));
}

// The same for integer (quantized) tensors.
template <class T>
inline void copy_rows(const T* x, T* y, int64_t rows, int64_t row_len, int64_t y_stride) {
  if (row_len <= 0) return;
  for (int64_t r = 0; r < rows; r++)
    std::memcpy(y + r * y_stride, x + r * row_len, static_cast<size_t>(row_len) * sizeof(T));
}

// y[n][c][hw] = act(x[n][c][hw] * scale[c] + shift[c] + residual[n][c][hw]): an unfolded
// BatchNormalization with its fused epilogue (shift, residual may be null; y may equal x or residual).
inline void channel_affine(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const float* scale,
                           const float* shift, const float* residual = nullptr, int act = ACT_NONE,
                           float alpha = 0.f, float beta = 0.f, int num_threads = 1) {
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(N) * C * HW, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t nc = 0; nc < N * C; nc++) {
    const int64_t c = nc % C;
    const float* xp = x + nc * HW;
    const float* rp = residual ? residual + nc * HW : nullptr;
    float* yp = y + nc * HW;
    const float s = scale[c], t = shift ? shift[c] : 0.f;
    if (avx2) {
      ew_detail::affine_row_avx2(HW, xp, yp, s, t, rp, act, alpha, beta);
    } else {
      for (int64_t i = 0; i < HW; i++) yp[i] = apply_act(xp[i] * s + t + (rp ? rp[i] : 0.f), act, alpha, beta);
    }
  }
}

}  // namespace inferon
