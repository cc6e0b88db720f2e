// Inferon layout kernels: transpose.
#pragma once

#include "common.hpp"

namespace inferon {

// y = x.transpose(perm) for a dense row-major x of in_shape (rank <= 8); y is dense.
inline void transpose(int rank, const int64_t* in_shape, const int64_t* perm, const float* x, float* y,
                      int num_threads = 1) {
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

}  // namespace inferon
