// Inferon im2col geometry and row extraction, shared by the materialised im2col (conv.hpp) and
// the GEMM's fused path that packs B panels straight from the image (gemm.hpp).
#pragma once

#include "common.hpp"

namespace inferon {

// One image [C, H, W] seen as the im2col matrix [C*kh*kw, Ho*Wo]:
// col[(c*kh+i)*kw+j][ho*Wo+wo] = x[c][ho*sh-pt+i*dh][wo*sw-pl+j*dw], 0 outside the image.
struct Im2col {
  int64_t C, H, W;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  int64_t Ho, Wo;
};

// dst[0, n) = col[r][n0, n0 + n).
inline void im2col_row(const Im2col& q, const float* x, int64_t r, int64_t n0, int64_t n,
                       float* INFERON_RESTRICT dst) {
  const int64_t c = r / (q.kh * q.kw);
  const int i = static_cast<int>((r / q.kw) % q.kh);
  const int j = static_cast<int>(r % q.kw);
  const float* xc = x + c * q.H * q.W;
  // valid output columns [wlo, whi) of any output row: 0 <= wo*sw + off < W
  const int64_t off = static_cast<int64_t>(j) * q.dw - q.pl;
  int64_t wlo = off >= 0 ? 0 : (-off + q.sw - 1) / q.sw;
  int64_t whi = q.W - off <= 0 ? 0 : (q.W - off + q.sw - 1) / q.sw;
  wlo = std::min(wlo, q.Wo);
  whi = std::max(wlo, std::min(whi, q.Wo));
  int64_t ho = n0 / q.Wo, wo = n0 % q.Wo;
  for (int64_t done = 0; done < n; ho++, wo = 0) {
    const int64_t w1 = std::min(q.Wo, wo + (n - done));  // this output row: columns [wo, w1)
    float* d = dst + done - wo;                            // d[wo'] is column (ho, wo')
    done += w1 - wo;
    const int64_t hi = ho * q.sh - q.pt + static_cast<int64_t>(i) * q.dh;
    // plain loops, not memcpy/memset: segments are often short (7x7 or 14x14 feature maps)
    if (hi < 0 || hi >= q.H) {
      for (int64_t t = wo; t < w1; t++) d[t] = 0.f;
      continue;
    }
    const float* xr = xc + hi * q.W + off;
    const int64_t a = std::max(wo, wlo), b = std::min(w1, whi);  // the valid part
    for (int64_t t = wo; t < std::min(w1, wlo); t++) d[t] = 0.f;
    if (q.sw == 1)
      for (int64_t t = a; t < b; t++) d[t] = xr[t];
    else
      for (int64_t t = a; t < b; t++) d[t] = xr[t * q.sw];
    for (int64_t t = std::max(wo, std::max(whi, a)); t < w1; t++) d[t] = 0.f;
  }
}

}  // namespace inferon
