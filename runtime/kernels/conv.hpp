// Inferon convolution helpers: im2col (the GEMM does the rest).
#pragma once

#include "im2col.hpp"

namespace inferon {

// The whole im2col matrix of one image: col[r][:] for every row r = (c*kh+i)*kw+j.
inline void im2col(const float* x, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw,
                   int pt, int pl, int dh, int dw, int64_t Ho, int64_t Wo, float* col,
                   int num_threads = 1) {
  const Im2col q{C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo};
  const int64_t taps = static_cast<int64_t>(kh) * kw, HoWo = Ho * Wo;
  std::vector<std::vector<Im2colSeg>> plan(static_cast<size_t>(taps));
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) im2col_segments(q, i, j, 0, HoWo, plan[static_cast<size_t>(i * kw + j)]);
  const int T = threads_for(num_threads, static_cast<double>(C * taps) * HoWo, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < C * taps; r++)
    im2col_apply(q, plan[static_cast<size_t>(r % taps)], x + (r / taps) * H * W, col + r * HoWo);
}

}  // namespace inferon
