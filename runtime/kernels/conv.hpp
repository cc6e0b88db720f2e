// Inferon convolution helpers: im2col (the GEMM does the rest).
#pragma once

#include "common.hpp"

namespace inferon {

// col[(c*kh+i)*kw+j][ho*Wo+wo] = x[c][ho*sh-pt+i*dh][wo*sw-pl+j*dw] or 0 outside
inline void im2col(const float* x, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw,
                   int pt, int pl, int dh, int dw, int64_t Ho, int64_t Wo, float* col,
                   int num_threads = 1) {
  const int64_t rows = C * kh * kw;
  const int64_t HoWo = Ho * Wo;
  const int T = threads_for(num_threads, static_cast<double>(rows) * HoWo, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t c = r / (kh * kw);
    const int i = static_cast<int>((r / kw) % kh);
    const int j = static_cast<int>(r % kw);
    const float* xc = x + c * H * W;
    float* dst = col + r * HoWo;
    // valid output columns [wlo, whi): 0 <= wo*sw + off < W
    const int64_t off = static_cast<int64_t>(j) * dw - pl;
    int64_t wlo = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t whi = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
    wlo = std::min(wlo, Wo);
    whi = std::max(wlo, std::min(whi, Wo));
    for (int64_t ho = 0; ho < Ho; ho++) {
      float* d = dst + ho * Wo;
      const int64_t hi = ho * sh - pt + static_cast<int64_t>(i) * dh;
      if (hi < 0 || hi >= H) {
        std::memset(d, 0, static_cast<size_t>(Wo) * sizeof(float));
        continue;
      }
      const float* xr = xc + hi * W + off;
      for (int64_t wo = 0; wo < wlo; wo++) d[wo] = 0.f;
      if (sw == 1) {
        if (whi > wlo) std::memcpy(d + wlo, xr + wlo, static_cast<size_t>(whi - wlo) * sizeof(float));
      } else {
        for (int64_t wo = wlo; wo < whi; wo++) d[wo] = xr[wo * sw];
      }
      for (int64_t wo = whi; wo < Wo; wo++) d[wo] = 0.f;
    }
  }
}

}  // namespace inferon
