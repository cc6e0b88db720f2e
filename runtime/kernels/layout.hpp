// Inferon layout kernels: transpose, strided_copy (Slice / Split / Gather / Expand / Tile windows),
// pad (any axes, constant / reflect / edge / wrap).
#pragma once

#include "common.hpp"

namespace inferon {

namespace layout_detail {

// 8x8 block: d[r * ld_d + c] = s[c * ld_s + r], r, c < 8.
INFERON_AVX2_INLINE void transpose8x8(const float* s, int64_t ld_s, float* d, int64_t ld_d) {
  __m256 r[8][1];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) r[i][0] = _mm256_loadu_ps(s + i * ld_s);
  transpose8(r);
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + i * ld_d, r[i][0]);
}

// Rows [r0, r1) of the 2-D transpose d[r * ld_d + c] = s[c * ld_s + r], c < nc: 8x8 blocks, the
// remaining rows and columns element by element.
INFERON_AVX2 inline void transpose2d_avx2(const float* s, int64_t ld_s, float* d, int64_t ld_d, int64_t r0,
                                          int64_t r1, int64_t nc) {
  int64_t r = r0;
  for (; r + 8 <= r1; r += 8) {
    int64_t c = 0;
    for (; c + 8 <= nc; c += 8) transpose8x8(s + c * ld_s + r, ld_s, d + r * ld_d + c, ld_d);
    for (; c < nc; c++)
      for (int64_t k = 0; k < 8; k++) d[(r + k) * ld_d + c] = s[c * ld_s + r + k];
  }
  for (; r < r1; r++)
    for (int64_t c = 0; c < nc; c++) d[r * ld_d + c] = s[c * ld_s + r];
}

// d[k] = s[k * stride], k < n, with 8-lane gathers (any other stride, negative ones included).
INFERON_AVX2 inline int64_t gather_avx2(const float* s, int64_t stride, float* d, int64_t n) {
  const __m256i lanes = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(stride)));
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(d + k, _mm256_i32gather_ps(s + k * stride, lanes, 4));
  return k;
}

// One output row: y[k] = x[k * stride], k < n; memcpy when contiguous, AVX2 for strided floats.
template <class T>
inline void strided_row(const T* x, int64_t stride, T* y, int64_t n) {
  if (stride == 1) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  if (stride == 0) {  // a broadcast (Expand / Tile)
    std::fill(y, y + n, x[0]);
    return;
  }
  int64_t k = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx2() && stride == 2) k = inferon::stride2_avx2(x, y, n);
    else if (use_avx2() && std::abs(stride) < (int64_t{1} << 27)) k = gather_avx2(x, stride, y, n);
  }
  for (; k < n; k++) y[k] = x[k * stride];
}

}  // namespace layout_detail

// y[i0, .., i(r-1)] = x[sum_d i_d * strides[d]] for a dense y of `shape` (rank <= 8, strides in
// elements, possibly negative, or 0 for a broadcast axis; x already points at the window's first element). Rows of the
// innermost dimension are split over the threads.
template <class T>
inline void strided_copy(int rank, const int64_t* shape, const int64_t* strides, const T* x, T* y,
                         int num_threads = 1) {
  int64_t total = 1;
  for (int d = 0; d < rank; d++) total *= shape[d];
  if (total == 0) return;
  const int64_t inner = shape[rank - 1], sin = strides[rank - 1], rows = total / inner;
  const int NT = threads_for(num_threads, static_cast<double>(total), 65536.0);
#pragma omp parallel num_threads(NT) if (NT > 1)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
    if (r0 < r1) {
      int64_t idx[INFERON_MAX_RANK] = {0};
      int64_t rem = r0, off = 0;
      for (int d = rank - 2; d >= 0; d--) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
        off += idx[d] * strides[d];
      }
      for (int64_t row = r0; row < r1; row++) {
        layout_detail::strided_row(x + off, sin, y + row * inner, inner);
        for (int d = rank - 2; d >= 0; d--) {
          off += strides[d];
          if (++idx[d] < shape[d]) break;
          off -= strides[d] * shape[d];
          idx[d] = 0;
        }
      }
    }
  }
}

// y = x.transpose(perm) for a dense row-major x of in_shape (rank <= 8); y is dense. Output dims
// adjacent in x are merged first. Then: an inner dimension contiguous in x → memcpy of whole runs
// (e.g. a channel shuffle moves HW planes); else, AVX2 and x's contiguous dimension at least 8
// long → 8x8 register-block transposes; else element by element.
INFERON_ENTRY void transpose(int rank, const int64_t* in_shape, const int64_t* perm, const float* x, float* y,
                      int num_threads = 1);

#if INFERON_DEFINE_KERNELS(LAYOUT)
INFERON_ENTRY void transpose(int rank, const int64_t* in_shape, const int64_t* perm, const float* x, float* y,
                      int num_threads) {
  // output dims with their input strides, collapsing output-adjacent dims adjacent in the input
  int64_t in_stride[INFERON_MAX_RANK];
  int64_t total = 1;
  for (int d = rank - 1; d >= 0; d--) {
    in_stride[d] = total;
    total *= in_shape[d];
  }
  if (total == 0) return;
  int r = 0;
  int64_t shape[INFERON_MAX_RANK], stride[INFERON_MAX_RANK];
  for (int d = 0; d < rank; d++) {
    const int64_t n = in_shape[perm[d]], s = in_stride[perm[d]];
    if (n == 1) continue;
    if (r > 0 && stride[r - 1] == s * n) {
      shape[r - 1] *= n;
      stride[r - 1] = s;
      continue;
    }
    shape[r] = n;
    stride[r] = s;
    r++;
  }
  if (r == 0) {
    y[0] = x[0];
    return;
  }
  const int64_t inner = shape[r - 1], sin = stride[r - 1];
  const int64_t rows = total / inner;
  const int T = threads_for(num_threads, static_cast<double>(total), 65536.0);
  // Inner dimension strided in x: x's contiguous dimension is output dimension a < r - 1. With
  // both at least 8 long, every (other index) slice is a 2-D transpose done in 8x8 register blocks.
  int a = -1;
  for (int d = 0; d < r - 1; d++)
    if (stride[d] == 1) a = d;
  if (sin != 1 && a >= 0 && shape[a] >= 8 && inner >= 8 && use_avx2()) {
    int64_t ystride[INFERON_MAX_RANK];  // dense output strides
    for (int64_t d = r - 1, acc = 1; d >= 0; d--) {
      ystride[d] = acc;
      acc *= shape[d];
    }
    const int64_t na = shape[a], slices = total / (na * inner), blocks = (na + 63) / 64;
    // tasks: (slice, 64-row block of a)
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
    for (int64_t task = 0; task < slices * blocks; task++) {
      int64_t rem = task / blocks, xoff = 0, yoff = 0;
      for (int d = r - 2; d >= 0; d--) {
        if (d == a) continue;
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        xoff += i * stride[d];
        yoff += i * ystride[d];
      }
      const int64_t r0 = (task % blocks) * 64, r1 = std::min(na, r0 + 64);
      layout_detail::transpose2d_avx2(x + xoff, sin, y + yoff, ystride[a], r0, r1, inner);
    }
    return;
  }
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
    if (r0 < r1) {
      int64_t idx[INFERON_MAX_RANK] = {0};
      int64_t rem = r0, off = 0;
      for (int d = r - 2; d >= 0; d--) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
        off += idx[d] * stride[d];
      }
      for (int64_t row = r0; row < r1; row++) {
        float* yr = y + row * inner;
        const float* xr = x + off;
        if (sin == 1) std::memcpy(yr, xr, static_cast<size_t>(inner) * sizeof(float));
        else
          for (int64_t k = 0; k < inner; k++) yr[k] = xr[k * sin];
        for (int d = r - 2; d >= 0; d--) {
          off += stride[d];
          if (++idx[d] < shape[d]) break;
          off -= stride[d] * shape[d];
          idx[d] = 0;
        }
      }
    }
  }
}
#endif

// ONNX Pad modes (numbers match inferon.ir.attrs.PadMode's order).
enum PadMode { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_EDGE = 2, PAD_WRAP = 3 };

// The element of an axis of n read at position i (< 0 or >= n in the border), -1 for the constant.
template <PadMode M>
inline int64_t pad_source(int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;
  if constexpr (M == PAD_EDGE) return i < 0 ? 0 : n - 1;
  if constexpr (M == PAD_WRAP) return ((i % n) + n) % n;
  if constexpr (M == PAD_REFLECT) {  // period 2 (n - 1): 0 1 .. n-1 n-2 .. 1 0 1 ..
    if (n == 1) return 0;
    const int64_t p = 2 * (n - 1), j = ((i % p) + p) % p;
    return j < n ? j : p - j;
  }
  return -1;
}

namespace layout_detail {

template <class T, PadMode M>
inline void pad(int rank, const int64_t* shape, const int64_t* strides, const int64_t* pads, const T* x, T* y,
                float value, int num_threads) {
  int64_t out[INFERON_MAX_RANK];
  int64_t rows = 1;
  for (int d = 0; d < rank; d++) {
    out[d] = shape[d] + pads[d] + pads[rank + d];
    if (d < rank - 1) rows *= out[d];
  }
  const int64_t n = shape[rank - 1], b = pads[rank - 1], wo = out[rank - 1], s = strides[rank - 1];
  const T fill = static_cast<T>(value);
  const int NT = threads_for(num_threads, static_cast<double>(rows) * wo, 65536.0);
#pragma omp parallel num_threads(NT) if (NT > 1)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
    int64_t idx[INFERON_MAX_RANK] = {0};
    for (int64_t d = rank - 2, rem = r0; d >= 0; d--) {  // output index of row r0, then counted up
      idx[d] = rem % out[d];
      rem /= out[d];
    }
    for (int64_t row = r0; row < r1; row++) {
      T* yr = y + row * wo;
      int64_t off = 0;
      bool border = false;
      for (int d = 0; d < rank - 1; d++) {
        const int64_t src = pad_source<M>(idx[d] - pads[d], shape[d]);
        border |= src < 0;
        off += src * strides[d];
      }
      for (int d = rank - 2; d >= 0; d--) {
        if (++idx[d] < out[d]) break;
        idx[d] = 0;
      }
      if (border) {
        std::fill(yr, yr + wo, fill);
        continue;
      }
      const T* xr = x + off;
      for (int64_t k = 0; k < b; k++) {
        const int64_t src = pad_source<M>(k - b, n);
        yr[k] = src < 0 ? fill : xr[src * s];
      }
      if (s == 1) std::memcpy(yr + b, xr, static_cast<size_t>(n) * sizeof(T));
      else
        for (int64_t j = 0; j < n; j++) yr[b + j] = xr[j * s];
      for (int64_t k = b + n; k < wo; k++) {
        const int64_t src = pad_source<M>(k - b, n);
        yr[k] = src < 0 ? fill : xr[src * s];
      }
    }
  }
}

}  // namespace layout_detail

// y = x padded: per axis d, shape[d] elements of x (element stride strides[d], x already at the
// window's first element) get pads[d] in front and pads[rank + d] behind, filled by `mode` (`value`
// for constant). y is dense. Rows of the innermost axis are split over the threads; each is
// its border element by element around one memcpy (or strided read) of the window's row.
// The mode is a template parameter of the row loop (pad_source inlined per mode).
template <class T>
inline void pad(int rank, const int64_t* shape, const int64_t* strides, const int64_t* pads, PadMode mode, const T* x,
                T* y, float value, int num_threads = 1) {
  switch (mode) {
    case PAD_REFLECT:
      return layout_detail::pad<T, PAD_REFLECT>(rank, shape, strides, pads, x, y, value, num_threads);
    case PAD_EDGE:
      return layout_detail::pad<T, PAD_EDGE>(rank, shape, strides, pads, x, y, value, num_threads);
    case PAD_WRAP:
      return layout_detail::pad<T, PAD_WRAP>(rank, shape, strides, pads, x, y, value, num_threads);
    default:
      return layout_detail::pad<T, PAD_CONSTANT>(rank, shape, strides, pads, x, y, value, num_threads);
  }
}

}  // namespace inferon
