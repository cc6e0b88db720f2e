// Inferon im2col geometry, shared by the materialised im2col (conv.hpp) and the GEMM's fused path
// that packs B panels straight from the image (gemm.hpp).
//
// Row r = (c*kh + i)*kw + j of the im2col matrix depends on the channel c only through the base
// address of plane c: its layout (which columns are padding, where each run of valid columns reads
// from) is a function of the kernel offset (i, j). So the layout is computed once per (i, j) as a
// list of segments and replayed for every channel.
#pragma once

#include <vector>

#include "common.hpp"

namespace inferon {

// One image [C, H, W] seen as the im2col matrix [C*kh*kw, Ho*Wo]:
// col[(c*kh+i)*kw+j][ho*Wo+wo] = x[c][ho*sh-pt+i*dh][wo*sw-pl+j*dw], 0 outside the image.
struct Im2col {
  int64_t C, H, W;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  int64_t Ho, Wo;
  // 1: FP32 GEMM: stride 1, dilation 1, B read in place (gemm.hpp); quantized GEMM: K in the implicit
  // weight order, read in place by the lanes kernels (any stride) and the VNNI row panels (stride 1)
  int implicit = 0;
};

// Rows / columns of the image a convolution's taps reach from the top-left of the (padded) input:
// the extent of a frame that holds every tap of every output.
inline int64_t frame_height(const Im2col& q) { return (q.Ho - 1) * q.sh + static_cast<int64_t>(q.kh - 1) * q.dh + 1; }
inline int64_t frame_width(const Im2col& q) { return (q.Wo - 1) * q.sw + static_cast<int64_t>(q.kw - 1) * q.dw + 1; }

// A frame split into stride phases (sparse.hpp's Frame, qgemm.hpp's phase_frame): the columns
// [lo, hi) of the Wq columns of phase b whose image column x * sw + b - pl exists (lo <= hi <= Wq).
struct ColumnRange {
  int64_t lo, hi;
};
inline ColumnRange phase_columns(const Im2col& q, int64_t b, int64_t Wq) {
  const int64_t off = b - q.pl;
  const int64_t lo = std::min<int64_t>(Wq, off >= 0 ? 0 : (-off + q.sw - 1) / q.sw);
  return {lo, std::max<int64_t>(lo, std::min<int64_t>(Wq, q.W - off <= 0 ? 0 : (q.W - off + q.sw - 1) / q.sw))};
}

// A run of `len` consecutive columns starting at column offset `dst` of a row segment: zeros
// (src < 0), or plane elements src, src + sw, src + 2*sw, ...
struct Im2colSeg {
  int64_t dst, len, src;
};

// The segments of columns [n0, n0 + n) of the rows with kernel offset (i, j), in column order.
inline void im2col_segments(const Im2col& q, int i, int j, int64_t n0, int64_t n,
                            std::vector<Im2colSeg>& out) {
  out.clear();
  // valid output columns [wlo, whi) of any output row: 0 <= wo*sw + off < W
  const int64_t off = static_cast<int64_t>(j) * q.dw - q.pl;
  int64_t wlo = off >= 0 ? 0 : (-off + q.sw - 1) / q.sw;
  int64_t whi = q.W - off <= 0 ? 0 : (q.W - off + q.sw - 1) / q.sw;
  wlo = std::min(wlo, q.Wo);
  whi = std::max(wlo, std::min(whi, q.Wo));
  auto push = [&](int64_t dst, int64_t len, int64_t src) {
    if (len <= 0) return;
    if (src < 0 && !out.empty() && out.back().src < 0 && out.back().dst + out.back().len == dst)
      out.back().len += len;  // merge neighbouring zero runs
    else
      out.push_back({dst, len, src});
  };
  int64_t ho = n0 / q.Wo, wo = n0 % q.Wo;
  for (int64_t done = 0; done < n; ho++, wo = 0) {
    const int64_t w1 = std::min(q.Wo, wo + (n - done));  // this output row: columns [wo, w1)
    const int64_t base = done - wo;                        // column (ho, wo') is at base + wo'
    done += w1 - wo;
    const int64_t hi = ho * q.sh - q.pt + static_cast<int64_t>(i) * q.dh;
    if (hi < 0 || hi >= q.H) {
      push(base + wo, w1 - wo, -1);
      continue;
    }
    const int64_t a = std::max(wo, wlo), b = std::max(a, std::min(w1, whi));  // the valid part
    push(base + wo, a - wo, -1);
    push(base + a, b - a, hi * q.W + off + a * q.sw);
    push(base + b, w1 - b, -1);
  }
}

// Replay segments for one plane: dst[seg.dst ...] from plane (scalar code).
inline void im2col_apply(const Im2col& q, const std::vector<Im2colSeg>& segs, const float* plane,
                         float* INFERON_RESTRICT dst) {
  for (const Im2colSeg& s : segs) {
    float* d = dst + s.dst;
    if (s.src < 0) std::memset(d, 0, static_cast<size_t>(s.len) * sizeof(float));
    else if (q.sw == 1) std::memcpy(d, plane + s.src, static_cast<size_t>(s.len) * sizeof(float));
    else for (int64_t t = 0; t < s.len; t++) d[t] = plane[s.src + t * q.sw];
  }
}

// The same with AVX2 moves (segments are often short: no libc calls).
INFERON_AVX2_INLINE void im2col_apply_avx2(const Im2col& q, const std::vector<Im2colSeg>& segs,
                                           const float* plane, float* INFERON_RESTRICT dst) {
  const __m256 zero = _mm256_setzero_ps();
  for (const Im2colSeg& s : segs) {
    float* d = dst + s.dst;
    const int64_t n8 = s.len / 8 * 8;
    const __m256i tail = mask_first(s.len - n8);
    if (s.src < 0) {
      for (int64_t t = 0; t < n8; t += 8) _mm256_storeu_ps(d + t, zero);
      if (n8 < s.len) _mm256_maskstore_ps(d + n8, tail, zero);
    } else if (q.sw == 1) {
      const float* p = plane + s.src;
      for (int64_t t = 0; t < n8; t += 8) _mm256_storeu_ps(d + t, _mm256_loadu_ps(p + t));
      if (n8 < s.len) _mm256_maskstore_ps(d + n8, tail, _mm256_maskload_ps(p + n8, tail));
    } else {
      const int64_t t0 = q.sw == 2 ? stride2_avx2(plane + s.src, d, s.len) : 0;
      for (int64_t t = t0; t < s.len; t++) d[t] = plane[s.src + t * q.sw];
    }
  }
}

// Segment lists of every kernel offset (i, j) for columns [n0, n0 + n) (thread-local storage).
inline std::vector<std::vector<Im2colSeg>>& im2col_plan(const Im2col& q, int64_t n0, int64_t n) {
  thread_local std::vector<std::vector<Im2colSeg>> plan;
  plan.resize(static_cast<size_t>(q.kh) * q.kw);
  for (int i = 0; i < q.kh; i++)
    for (int j = 0; j < q.kw; j++) im2col_segments(q, i, j, n0, n, plan[static_cast<size_t>(i) * q.kw + j]);
  return plan;
}

}  // namespace inferon
