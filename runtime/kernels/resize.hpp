// Inferon resize kernel: separable resize (ONNX Resize / Upsample: nearest, linear, cubic, antialias)
// of [P, H, W] planes to [P, Ho, Wo] through tap tables computed at compile time
// (inferon/ir/resize.py): every decision (coordinates, rounding, filter, clamping) is in the tables.
//
// Per output row: the source row is a pointer into the plane (one tap of weight 1) or the blend of
// ty rows into a scratch row (contiguous, 8 columns per AVX2 FMA); then each output column gathers
// its tx taps from that row (8 columns per _mm256_i32gather_ps, the x tables are tap-major so the
// 8 indices are one load), or with x_repeat = 2 (nearest 2x upsampling) duplicates 8 loaded values
// into 16 with unpack / permute, no gather. A row whose taps equal the previous row's (nearest
// upsampling of H) is a copy of the previous output row.
#pragma once

#include <vector>

#include "common.hpp"

namespace inferon {

// Tap tables of loop.resize: y_index / y_weight [Ho][ty], x_index / x_weight [tx][Wo]; a null
// weight table means one tap of weight 1.
struct ResizeTables {
  const int32_t* y_index;
  const float* y_weight;
  const int32_t* x_index;
  const float* x_weight;
};

namespace resize_detail {

// Output row oy reads exactly what row oy - 1 read.
inline bool same_taps(const ResizeTables& t, int64_t oy, int64_t ty) {
  for (int64_t i = 0; i < ty; i++) {
    if (t.y_index[oy * ty + i] != t.y_index[(oy - 1) * ty + i]) return false;
    if (t.y_weight && t.y_weight[oy * ty + i] != t.y_weight[(oy - 1) * ty + i]) return false;
  }
  return true;
}

// tmp[i] = sum_k w[k] * plane[idx[k]][i], columns [i0, W)
inline void blend_rows_scalar(const float* plane, int64_t W, const int32_t* idx, const float* w, int64_t ty,
                              float* tmp, int64_t i0 = 0) {
  for (int64_t i = i0; i < W; i++) {
    float acc = w[0] * plane[idx[0] * W + i];
    for (int64_t k = 1; k < ty; k++) acc += w[k] * plane[idx[k] * W + i];
    tmp[i] = acc;
  }
}

INFERON_AVX2 inline void blend_rows_avx2(const float* plane, int64_t W, const int32_t* idx, const float* w,
                                         int64_t ty, float* tmp) {
  int64_t i = 0;
  for (; i + 8 <= W; i += 8) {
    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), _mm256_loadu_ps(plane + idx[0] * W + i));
    for (int64_t k = 1; k < ty; k++)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(w[k]), _mm256_loadu_ps(plane + idx[k] * W + i), acc);
    _mm256_storeu_ps(tmp + i, acc);
  }
  blend_rows_scalar(plane, W, idx, w, ty, tmp, i);
}

// out[o] for o in [o0, Wo): sum_k x_weight[k][o] * row[x_index[k][o]]
inline void columns_scalar(const float* row, float* out, const ResizeTables& t, int64_t Wo, int64_t tx,
                           int64_t o0 = 0) {
  for (int64_t o = o0; o < Wo; o++) {
    if (!t.x_weight) {
      out[o] = row[t.x_index[o]];
      continue;
    }
    float acc = t.x_weight[o] * row[t.x_index[o]];
    for (int64_t k = 1; k < tx; k++) acc += t.x_weight[k * Wo + o] * row[t.x_index[k * Wo + o]];
    out[o] = acc;
  }
}

INFERON_AVX2 inline void columns_avx2(const float* row, float* out, const ResizeTables& t, int64_t Wo,
                                      int64_t tx) {
  int64_t o = 0;
  for (; o + 8 <= Wo; o += 8) {
    __m256 acc = _mm256_i32gather_ps(row, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.x_index + o)), 4);
    if (t.x_weight) {
      acc = _mm256_mul_ps(_mm256_loadu_ps(t.x_weight + o), acc);
      for (int64_t k = 1; k < tx; k++) {
        const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.x_index + k * Wo + o));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(t.x_weight + k * Wo + o), _mm256_i32gather_ps(row, idx, 4), acc);
      }
    }
    _mm256_storeu_ps(out + o, acc);
  }
  columns_scalar(row, out, t, Wo, tx, o);
}

// out[2i] = out[2i + 1] = row[i], i < W: 8 loads -> 16 stores
INFERON_AVX2 inline void repeat2_avx2(const float* row, float* out, int64_t W) {
  int64_t i = 0;
  for (; i + 8 <= W; i += 8) {
    const __m256 v = _mm256_loadu_ps(row + i);
    const __m256 lo = _mm256_unpacklo_ps(v, v), hi = _mm256_unpackhi_ps(v, v);  // a0a0a1a1 a4a4a5a5 / a2.. a6..
    _mm256_storeu_ps(out + 2 * i, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(out + 2 * i + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  for (; i < W; i++) out[2 * i] = out[2 * i + 1] = row[i];
}

// One output row from its source row.
inline void columns(const float* row, float* out, const ResizeTables& t, int64_t W, int64_t Wo, int64_t tx,
                    int64_t x_repeat, bool avx2) {
  if (x_repeat == 1) {
    std::memcpy(out, row, static_cast<size_t>(Wo) * sizeof(float));
  } else if (x_repeat == 2 && avx2) {
    repeat2_avx2(row, out, W);
  } else if (avx2) {
    columns_avx2(row, out, t, Wo, tx);
  } else {
    columns_scalar(row, out, t, Wo, tx);
  }
}

}  // namespace resize_detail

// y[p, oy, ox] = sum_i sum_j y_weight[oy][i] * x_weight[j][ox] * x[p, y_index[oy][i], x_index[j][ox]]
// (loop.resize); planes split over threads.
INFERON_ENTRY void resize(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t ty,
                   int64_t tx, int64_t x_repeat, const ResizeTables& t, int num_threads = 1);

#if INFERON_DEFINE_KERNELS(RESIZE)
INFERON_ENTRY void resize(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t ty,
                   int64_t tx, int64_t x_repeat, const ResizeTables& t, int num_threads) {
  const bool avx2 = use_avx2();
  const double work = static_cast<double>(P) * Ho * (Wo * tx + (t.y_weight ? W * ty : 0));
  const int T = threads_for(num_threads, work, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<float> tmp(t.y_weight ? static_cast<size_t>(W) : 0);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; p++) {
      const float* plane = x + p * H * W;
      float* out = y + p * Ho * Wo;
      for (int64_t oy = 0; oy < Ho; oy++) {
        float* dst = out + oy * Wo;
        if (oy > 0 && resize_detail::same_taps(t, oy, ty)) {
          std::memcpy(dst, dst - Wo, static_cast<size_t>(Wo) * sizeof(float));
          continue;
        }
        const float* row = plane + static_cast<int64_t>(t.y_index[oy * ty]) * W;
        if (t.y_weight) {
          if (avx2) resize_detail::blend_rows_avx2(plane, W, t.y_index + oy * ty, t.y_weight + oy * ty, ty, tmp.data());
          else resize_detail::blend_rows_scalar(plane, W, t.y_index + oy * ty, t.y_weight + oy * ty, ty, tmp.data());
          row = tmp.data();
        }
        resize_detail::columns(row, dst, t, W, Wo, tx, x_repeat, avx2);
      }
    }
  }
}
#endif

}  // namespace inferon
