// Inferon elementwise kernels: broadcasting binary ops, unary ops, copies, per-channel affine.
#pragma once

#include "common.hpp"

namespace inferon {

// BIN_PRELU: a < 0 ? a * b : a (b: the slope). Comparisons and logical ops give 1 or 0 (an ONNX bool
// tensor as float32; the logical ops read any nonzero as true).
enum BinOp : int { BIN_ADD = 0, BIN_SUB = 1, BIN_MUL = 2, BIN_DIV = 3, BIN_MAX = 4, BIN_MIN = 5, BIN_POW = 6,
                   BIN_PRELU = 7, BIN_GREATER = 8, BIN_LESS = 9, BIN_GREATER_EQUAL = 10, BIN_LESS_EQUAL = 11,
                   BIN_EQUAL = 12, BIN_AND = 13, BIN_OR = 14, BIN_XOR = 15 };

// Same numbers as Act for ReLU..Sigmoid. HardSigmoid: max(0, min(1, alpha*x + beta)); Elu, Celu and
// ThresholdedRelu use alpha; Selu is beta * Elu(alpha) (beta = ONNX's gamma).
enum UnOp : int { UN_RELU = 1, UN_LEAKY_RELU = 2, UN_CLIP = 3, UN_SIGMOID = 4, UN_TANH = 5, UN_EXP = 6,
                  UN_LOG = 7, UN_ABS = 8, UN_NEG = 9, UN_SQRT = 10, UN_RECIPROCAL = 11, UN_FLOOR = 12, UN_CEIL = 13,
                  UN_ELU = 14, UN_HARD_SIGMOID = 15, UN_SOFTPLUS = 16, UN_HARD_SWISH = 17, UN_SELU = 18,
                  UN_CELU = 19, UN_THRESHOLDED_RELU = 20, UN_SOFTSIGN = 21, UN_MISH = 22, UN_ERF = 23,
                  UN_GELU = 24, UN_GELU_TANH = 25, UN_SIGN = 26, UN_ROUND = 27, UN_SIN = 28, UN_COS = 29,
                  UN_NOT = 30, UN_SWISH = 31 };

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
    case BIN_POW: return std::pow(a, b);
    case BIN_GREATER: return a > b ? 1.f : 0.f;
    case BIN_LESS: return a < b ? 1.f : 0.f;
    case BIN_GREATER_EQUAL: return a >= b ? 1.f : 0.f;
    case BIN_LESS_EQUAL: return a <= b ? 1.f : 0.f;
    case BIN_EQUAL: return a == b ? 1.f : 0.f;
    case BIN_AND: return a != 0.f && b != 0.f ? 1.f : 0.f;
    case BIN_OR: return a != 0.f || b != 0.f ? 1.f : 0.f;
    case BIN_XOR: return (a != 0.f) != (b != 0.f) ? 1.f : 0.f;
    default: return a < 0.f ? a * b : a;  // BIN_PRELU
  }
}

// 1.0f where the mask is set, else 0.
INFERON_AVX2_INLINE __m256 mask_to_one(__m256 m) { return _mm256_and_ps(m, _mm256_set1_ps(1.f)); }

template <int OP>
INFERON_AVX2_INLINE __m256 bin_vec(__m256 a, __m256 b) {
  switch (OP) {
    case BIN_ADD: return _mm256_add_ps(a, b);
    case BIN_SUB: return _mm256_sub_ps(a, b);
    case BIN_MUL: return _mm256_mul_ps(a, b);
    case BIN_DIV: return _mm256_div_ps(a, b);
    // (a > b ? a : b) like the scalar path: max_ps(b, a) returns a when a > b
    case BIN_MAX: return _mm256_max_ps(b, a);
    case BIN_MIN: return _mm256_min_ps(b, a);
    case BIN_GREATER: return mask_to_one(_mm256_cmp_ps(a, b, _CMP_GT_OQ));
    case BIN_LESS: return mask_to_one(_mm256_cmp_ps(a, b, _CMP_LT_OQ));
    case BIN_GREATER_EQUAL: return mask_to_one(_mm256_cmp_ps(a, b, _CMP_GE_OQ));
    case BIN_LESS_EQUAL: return mask_to_one(_mm256_cmp_ps(a, b, _CMP_LE_OQ));
    case BIN_EQUAL: return mask_to_one(_mm256_cmp_ps(a, b, _CMP_EQ_OQ));
    case BIN_AND:
    case BIN_OR:
    case BIN_XOR: {
      const __m256 ta = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NEQ_UQ);
      const __m256 tb = _mm256_cmp_ps(b, _mm256_setzero_ps(), _CMP_NEQ_UQ);
      return mask_to_one(OP == BIN_AND ? _mm256_and_ps(ta, tb) : OP == BIN_OR ? _mm256_or_ps(ta, tb) : _mm256_xor_ps(ta, tb));
    }
    default: return _mm256_blendv_ps(a, _mm256_mul_ps(a, b), _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ));
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

// Rows of single vectors (an NCHWc8 tensor times a per-channel vector: [.., C / 8, HW, 8] with the
// vector's HW stride 0): the last two axes as one loop of vector ops per outer row, instead of one
// 8-element row call each.
template <int OP>
INFERON_AVX2 void bin_vec8_rows(const BinSpace& s, const float* a, const float* b, float* y, int64_t r0, int64_t r1) {
  const int r = s.rank;
  const int64_t n2 = s.shape[r - 2], sa2 = s.sa[r - 2], sb2 = s.sb[r - 2];
  for (int64_t row = r0; row < r1; row++) {
    int64_t rem = row, oa = 0, ob = 0;
    for (int d = r - 3; d >= 0; d--) {
      oa += rem % s.shape[d] * s.sa[d];
      ob += rem % s.shape[d] * s.sb[d];
      rem /= s.shape[d];
    }
    const float* ap = a + oa;
    const float* bp = b + ob;
    float* yp = y + row * n2 * 8;
    for (int64_t i = 0; i < n2; i++)
      _mm256_storeu_ps(yp + i * 8, bin_vec<OP>(_mm256_loadu_ps(ap + i * sa2), _mm256_loadu_ps(bp + i * sb2)));
  }
}

template <int OP>
inline void binary_op(const BinSpace& s, const float* a, const float* b, float* y, int num_threads) {
  const bool avx2 = use_avx2();
  const int r = s.rank;
  const int64_t inner = s.shape[r - 1];
  if (OP != BIN_POW && avx2 && r >= 2 && inner == 8 && s.sa[r - 1] == 1 && s.sb[r - 1] == 1) {
    int64_t rows2 = 1;
    for (int d = 0; d < r - 2; d++) rows2 *= s.shape[d];
    const int T = threads_for(num_threads, static_cast<double>(rows2) * s.shape[r - 2] * 8, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
    {
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      bin_vec8_rows<OP>(s, a, b, y, rows2 * id / nt, rows2 * (id + 1) / nt);
    }
    return;
  }
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


// Ops that evaluate exp / erf / sin (threads pay off sooner).
constexpr bool un_transcendental(int op) {
  return op == UN_SIGMOID || op == UN_TANH || op == UN_EXP || op == UN_ELU || op == UN_LOG || op == UN_SOFTPLUS ||
         op == UN_SELU || op == UN_CELU || op == UN_MISH || op == UN_ERF || op == UN_GELU || op == UN_GELU_TANH ||
         op == UN_SIN || op == UN_COS || op == UN_SWISH;
}

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
    case UN_HARD_SWISH: return hard_swish(x);
    case UN_SELU: return beta * (x > 0.f ? x : alpha * std::expm1(x));
    case UN_CELU: return std::max(x, 0.f) + std::min(0.f, alpha * std::expm1(x / alpha));
    case UN_THRESHOLDED_RELU: return x > alpha ? x : 0.f;
    case UN_SOFTSIGN: return x / (1.f + std::fabs(x));
    case UN_MISH: return x * std::tanh(softplus(x));
    case UN_ERF: return std::erf(x);
    case UN_GELU: return 0.5f * x * std::erfc(-x * kSqrtHalf);  // erfc: no cancellation for x << 0
    case UN_GELU_TANH: return x / (1.f + std::exp(-2.f * kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    case UN_SIGN: return x > 0.f ? 1.f : x < 0.f ? -1.f : x == x ? 0.f : x;
    case UN_ROUND: return std::nearbyint(x);  // default rounding mode: halves to even
    case UN_SIN: return std::sin(x);
    case UN_COS: return std::cos(x);
    case UN_NOT: return x == 0.f ? 1.f : 0.f;
    case UN_SWISH: return x / (1.f + std::exp(-alpha * x));
    default: return x;
  }
}

template <int OP>
inline void un_loop_scalar(int64_t n, const float* x, float* y, float alpha, float beta) {
  for (int64_t i = 0; i < n; i++) y[i] = un_scalar(OP, x[i], alpha, beta);
}

// x tanh(softplus(x)) = x n / (n + 2), n = e^x (e^x + 2); x itself above 20 (where e^2x would overflow).
INFERON_AVX2_INLINE __m256 mish256(__m256 x) {
  const __m256 e = exp256(x);
  const __m256 n = _mm256_mul_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.f)));
  const __m256 y = _mm256_div_ps(_mm256_mul_ps(x, n), _mm256_add_ps(n, _mm256_set1_ps(2.f)));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.f), _CMP_GT_OQ));
}

// 1, -1, 0 for +-0 (as numpy and ONNX Runtime), NaN for NaN.
INFERON_AVX2_INLINE __m256 sign256(__m256 x) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  const __m256 s = _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), one),
                                 _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_LT_OQ), one));
  return _mm256_blendv_ps(s, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// sin / cos (Cephes sinf/cosf: octant reduction by pi/4 in three parts, two minimax polynomials); lanes
// with |x| > 8192 (where the reduction loses accuracy), inf or NaN are recomputed with std::sin / std::cos.
template <bool COS>
INFERON_AVX2_INLINE __m256 sincos256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(ax, _mm256_set1_ps(1.27323954473516f)));  // 4/pi
  j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
  const __m256 y = _mm256_cvtepi32_ps(j);
  __m256i flip;
  if (COS) {
    j = _mm256_sub_epi32(j, _mm256_set1_epi32(2));
    flip = _mm256_slli_epi32(_mm256_andnot_si256(j, _mm256_set1_epi32(4)), 29);
  } else {
    flip = _mm256_xor_si256(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29),
                            _mm256_castps_si256(_mm256_and_ps(x, sign)));
  }
  const __m256 use_sin = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)), _mm256_setzero_si256()));
  __m256 r = _mm256_fnmadd_ps(y, _mm256_set1_ps(0.78515625f), ax);
  r = _mm256_fnmadd_ps(y, _mm256_set1_ps(2.4187564849853515625e-4f), r);
  r = _mm256_fnmadd_ps(y, _mm256_set1_ps(3.77489497744594108e-8f), r);
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 c = _mm256_set1_ps(2.443315711809948e-5f);
  c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(-1.388731625493765e-3f));
  c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(4.166664568298827e-2f));
  c = _mm256_mul_ps(_mm256_mul_ps(c, z), z);
  c = _mm256_add_ps(_mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, c), _mm256_set1_ps(1.f));
  __m256 s = _mm256_set1_ps(-1.9515295891e-4f);
  s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(8.3321608736e-3f));
  s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(-1.6666654611e-1f));
  s = _mm256_fmadd_ps(_mm256_mul_ps(s, z), r, r);
  __m256 out = _mm256_xor_ps(_mm256_blendv_ps(c, s, use_sin), _mm256_castsi256_ps(flip));
  const int slow = _mm256_movemask_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(8192.f), _CMP_NLE_UQ));
  if (slow) {
    alignas(32) float xs[8], ys[8];
    _mm256_store_ps(xs, x);
    _mm256_store_ps(ys, out);
    for (int i = 0; i < 8; i++)
      if (slow >> i & 1) ys[i] = COS ? std::cos(xs[i]) : std::sin(xs[i]);
    out = _mm256_load_ps(ys);
  }
  return out;
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
    case UN_EXP:  // exp256 saturates at exp(88.38); past FLT_MAX's log the result is +inf, as std::exp
      return _mm256_blendv_ps(exp256(x), _mm256_set1_ps(INFINITY),
                              _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ));
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
    case UN_HARD_SWISH: return hard_swish256(x);
    case UN_SELU:
      return _mm256_mul_ps(vb, _mm256_blendv_ps(_mm256_mul_ps(va, _mm256_sub_ps(exp256(x), one)), x,
                                                _mm256_cmp_ps(x, zero, _CMP_GT_OQ)));
    case UN_CELU:  // max(zero, x), min(zero, e): NaN in x stays NaN
      return _mm256_add_ps(_mm256_max_ps(zero, x),
                           _mm256_min_ps(zero, _mm256_mul_ps(va, _mm256_sub_ps(exp256(_mm256_div_ps(x, va)), one))));
    case UN_THRESHOLDED_RELU: return _mm256_and_ps(x, _mm256_cmp_ps(x, va, _CMP_GT_OQ));
    case UN_SOFTSIGN: return _mm256_div_ps(x, _mm256_add_ps(one, _mm256_andnot_ps(_mm256_set1_ps(-0.f), x)));
    case UN_MISH: return mish256(x);
    case UN_ERF: return erf256(x);
    case UN_GELU: return gelu256(x);
    case UN_GELU_TANH: return gelu_tanh256(x);
    case UN_SIGN: return sign256(x);
    case UN_ROUND: return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    case UN_SIN: return sincos256<false>(x);
    case UN_COS: return sincos256<true>(x);
    case UN_NOT: return _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ), one);
    case UN_SWISH: return _mm256_mul_ps(x, sigmoid256(_mm256_mul_ps(va, x)));
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
  const double cost = un_transcendental(OP) ? 8.0 : 1.0;
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
INFERON_ENTRY void binary(int op, int rank, const int64_t* out_shape, const float* a, const int64_t* a_strides,
                   const float* b, const int64_t* b_strides, float* y, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(ELEMENTWISE)
INFERON_ENTRY void binary(int op, int rank, const int64_t* out_shape, const float* a, const int64_t* a_strides,
                   const float* b, const int64_t* b_strides, float* y, int num_threads) {
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
    case BIN_PRELU: return ew_detail::binary_op<BIN_PRELU>(s, a, b, y, num_threads);
    case BIN_GREATER: return ew_detail::binary_op<BIN_GREATER>(s, a, b, y, num_threads);
    case BIN_LESS: return ew_detail::binary_op<BIN_LESS>(s, a, b, y, num_threads);
    case BIN_GREATER_EQUAL: return ew_detail::binary_op<BIN_GREATER_EQUAL>(s, a, b, y, num_threads);
    case BIN_LESS_EQUAL: return ew_detail::binary_op<BIN_LESS_EQUAL>(s, a, b, y, num_threads);
    case BIN_EQUAL: return ew_detail::binary_op<BIN_EQUAL>(s, a, b, y, num_threads);
    case BIN_AND: return ew_detail::binary_op<BIN_AND>(s, a, b, y, num_threads);
    case BIN_OR: return ew_detail::binary_op<BIN_OR>(s, a, b, y, num_threads);
    case BIN_XOR: return ew_detail::binary_op<BIN_XOR>(s, a, b, y, num_threads);
    default: return ew_detail::binary_op<BIN_POW>(s, a, b, y, num_threads);
  }
}
#endif

// ONNX Where: y[i] = c[i·c_strides] != 0 ? a[i·a_strides] : b[i·b_strides] over out_shape (rank <= 8,
// broadcast dims with stride 0, y dense); c is a bool tensor as 1 / 0 floats.
INFERON_ENTRY void select(int rank, const int64_t* out_shape, const float* c, const int64_t* c_strides, const float* a,
                          const int64_t* a_strides, const float* b, const int64_t* b_strides, float* y,
                          int num_threads = 1);

#if INFERON_DEFINE_KERNELS(ELEMENTWISE)
INFERON_ENTRY void select(int rank, const int64_t* out_shape, const float* c, const int64_t* c_strides, const float* a,
                          const int64_t* a_strides, const float* b, const int64_t* b_strides, float* y,
                          int num_threads) {
  int64_t rows = 1, inner = rank > 0 ? out_shape[rank - 1] : 1;
  for (int d = 0; d + 1 < rank; d++) rows *= out_shape[d];
  if (rows == 0 || inner == 0) return;
  const int64_t sc = rank > 0 ? c_strides[rank - 1] : 0, sa = rank > 0 ? a_strides[rank - 1] : 0,
                sb = rank > 0 ? b_strides[rank - 1] : 0;
  const int T = threads_for(num_threads, static_cast<double>(rows) * inner, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t row = 0; row < rows; row++) {
    int64_t oc = 0, oa = 0, ob = 0, rem = row;
    for (int d = rank - 2; d >= 0; d--) {
      const int64_t i = rem % out_shape[d];
      rem /= out_shape[d];
      oc += i * c_strides[d], oa += i * a_strides[d], ob += i * b_strides[d];
    }
    float* out = y + row * inner;
    for (int64_t i = 0; i < inner; i++) out[i] = c[oc + i * sc] != 0.f ? a[oa + i * sa] : b[ob + i * sb];
  }
}
#endif

// y may equal x.
INFERON_ENTRY void unary(int op, int64_t n, const float* x, float* y, float alpha, float beta, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(ELEMENTWISE)
INFERON_ENTRY void unary(int op, int64_t n, const float* x, float* y, float alpha, float beta, int num_threads) {
  using namespace ew_detail;
  switch (op) {
#define INFERON_UN_CASE(OPC) case OPC: return unary_op<OPC>(n, x, y, alpha, beta, num_threads);
    INFERON_UN_CASE(UN_RELU) INFERON_UN_CASE(UN_LEAKY_RELU) INFERON_UN_CASE(UN_CLIP)
    INFERON_UN_CASE(UN_SIGMOID) INFERON_UN_CASE(UN_TANH) INFERON_UN_CASE(UN_EXP)
    INFERON_UN_CASE(UN_LOG) INFERON_UN_CASE(UN_ABS) INFERON_UN_CASE(UN_NEG)
    INFERON_UN_CASE(UN_SQRT) INFERON_UN_CASE(UN_RECIPROCAL) INFERON_UN_CASE(UN_FLOOR)
    INFERON_UN_CASE(UN_CEIL) INFERON_UN_CASE(UN_ELU) INFERON_UN_CASE(UN_HARD_SIGMOID)
    INFERON_UN_CASE(UN_SOFTPLUS) INFERON_UN_CASE(UN_HARD_SWISH) INFERON_UN_CASE(UN_SELU)
    INFERON_UN_CASE(UN_CELU) INFERON_UN_CASE(UN_THRESHOLDED_RELU) INFERON_UN_CASE(UN_SOFTSIGN)
    INFERON_UN_CASE(UN_MISH) INFERON_UN_CASE(UN_ERF) INFERON_UN_CASE(UN_GELU)
    INFERON_UN_CASE(UN_GELU_TANH) INFERON_UN_CASE(UN_SIGN) INFERON_UN_CASE(UN_ROUND)
    INFERON_UN_CASE(UN_SIN) INFERON_UN_CASE(UN_COS) INFERON_UN_CASE(UN_NOT)
    INFERON_UN_CASE(UN_SWISH)
#undef INFERON_UN_CASE
    default:
      if (x != y) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  }
}
#endif

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
INFERON_ENTRY void channel_affine(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const float* scale,
                           const float* shift, const float* residual = nullptr, int act = ACT_NONE,
                           float alpha = 0.f, float beta = 0.f, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(ELEMENTWISE)
INFERON_ENTRY void channel_affine(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const float* scale,
                           const float* shift, const float* residual, int act,
                           float alpha, float beta, int num_threads) {
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
#endif

}  // namespace inferon
