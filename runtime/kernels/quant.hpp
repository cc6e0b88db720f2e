// Inferon kernels: quantize / dequantize (ONNX QuantizeLinear / DequantizeLinear, per tensor).
//
// quantize: q = saturate(round_half_even(x / scale) + zero_point), computed in float32 exactly as
// ONNX (and numpy) do: a true division, clamping to [qmin - zp, qmax - zp] before the conversion
// (cvtps rounds half to even), then the zero point. dequantize: (q - zero_point) * scale.
#pragma once

#include "common.hpp"

namespace inferon {

namespace quant_detail {

template <class Q>
inline void quantize_scalar(const float* x, Q* y, int64_t n, float scale, int32_t zp) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<Q>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<Q>::max());
  const float lo = qmin - static_cast<float>(zp), hi = qmax - static_cast<float>(zp);
  for (int64_t i = 0; i < n; i++) {
    float v = std::min(std::max(x[i] / scale, lo), hi);
    y[i] = static_cast<Q>(static_cast<int32_t>(std::nearbyint(v)) + zp);
  }
}

// 8 int32 (already within Q's range) -> 8 bytes at y.
template <class Q>
INFERON_AVX2_INLINE void store8(Q* y, __m256i v) {
  __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  __m128i w = _mm_packs_epi32(lo, hi);
  __m128i b = std::is_signed<Q>::value ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(y), b);
}

template <class Q>
INFERON_AVX2 void quantize_avx2(const float* x, Q* y, int64_t n, float scale, int32_t zp) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<Q>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<Q>::max());
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(qmin - static_cast<float>(zp));
  const __m256 hi = _mm256_set1_ps(qmax - static_cast<float>(zp));
  const __m256i z = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), s);  // a true division, as ONNX specifies
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(v), z));
  }
  quantize_scalar(x + i, y + i, n - i, scale, zp);
}

template <class Q>
INFERON_AVX2 void dequantize_avx2(const Q* x, float* y, int64_t n, float scale, int32_t zp) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i z = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i v;
    if constexpr (sizeof(Q) == 4) {
      v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    } else {
      __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i));
      v = std::is_signed<Q>::value ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    }
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, z)), s));
  }
  for (; i < n; i++) y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - zp) * scale;
}

template <class QX>
// 8 stored values at p, p + sw, ..., p + 7 sw as floats (stride 1: one 8-byte load; stride 2: a
// 16-byte load and a shuffle; else a gather). May read up to 16 bytes from p.
INFERON_AVX2_INLINE __m256 load8_f32(const QX* p, int sw) {
  __m128i b;
  if (sw == 1) {
    b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else if (sw == 2) {
    const __m128i even = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
    b = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), even);
  } else {
    alignas(16) QX t[16] = {};
    for (int e = 0; e < 8; e++) t[e] = p[e * sw];
    b = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
  }
  return _mm256_cvtepi32_ps(std::is_signed<QX>::value ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b));
}

// y = round_half_even(clamp(fma(a, ra, fma(b, rb, fixed)), lo_q, hi_q)): ONNX Runtime's QLinearAdd
// arithmetic (ra = sa / sy, rb = sb / sy, fixed = zy - ra * za - rb * zb; inferon.ir.quant.qadd_constants),
// lo_q / hi_q the fused activation's bounds and the type's range in output units.
template <class QA, class QB, class QY>
inline void qadd_scalar(const QA* a, const QB* b, QY* y, float ra, float rb, float fixed, float lo_q, float hi_q,
                        int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float v = std::fma(static_cast<float>(a[i]), ra, std::fma(static_cast<float>(b[i]), rb, fixed));
    y[i] = static_cast<QY>(std::nearbyint(std::min(std::max(v, lo_q), hi_q)));
  }
}

template <class QA, class QB, class QY>
INFERON_AVX2 void qadd_avx2(const QA* a, const QB* b, QY* y, float ra, float rb, float fixed, float lo_q, float hi_q,
                            int64_t n) {
  const __m256 vra = _mm256_set1_ps(ra), vrb = _mm256_set1_ps(rb), vfixed = _mm256_set1_ps(fixed);
  const __m256 vlo = _mm256_set1_ps(lo_q), vhi = _mm256_set1_ps(hi_q);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_fmadd_ps(load8_f32(a + i, 1), vra, _mm256_fmadd_ps(load8_f32(b + i, 1), vrb, vfixed));
    v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
    store8(y + i, _mm256_cvtps_epi32(v));
  }
  qadd_scalar(a + i, b + i, y + i, ra, rb, fixed, lo_q, hi_q, n - i);
}

#define INFERON_AVX512BW __attribute__((target("avx2,fma,avx512f,avx512bw")))

// 16 stored 8-bit values as float (zmm).
template <class Q>
INFERON_AVX512BW inline __m512 load16_f32(const Q* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(std::is_signed<Q>::value ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
}

// The same arithmetic as qadd_avx2, 16 lanes at a time (bit-exact: the same float operations per
// lane); the clamped values are in the output type's range, so truncating them to bytes is exact.
template <class QA, class QB, class QY>
INFERON_AVX512BW void qadd_avx512(const QA* a, const QB* b, QY* y, float ra, float rb, float fixed, float lo_q,
                                  float hi_q, int64_t n) {
  const __m512 vra = _mm512_set1_ps(ra), vrb = _mm512_set1_ps(rb), vfixed = _mm512_set1_ps(fixed);
  const __m512 vlo = _mm512_set1_ps(lo_q), vhi = _mm512_set1_ps(hi_q);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_fmadd_ps(load16_f32(a + i), vra, _mm512_fmadd_ps(load16_f32(b + i), vrb, vfixed));
    v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  qadd_avx2(a + i, b + i, y + i, ra, rb, fixed, lo_q, hi_q, n - i);
}

inline bool use_avx512bw() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return ok && isa() >= INFERON_ISA_AVX512;
}

// fn(start, length) over [0, n) in 64-aligned chunks, one per thread (element-wise kernels).
template <class Fn>
inline void parallel_chunks(int64_t n, int num_threads, Fn fn) {
  const int T = threads_for(num_threads, static_cast<double>(n), 65536.0);
  const int64_t chunk = ((n + T - 1) / T + 63) & ~int64_t(63);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t s = 0; s < n; s += chunk) fn(s, std::min(chunk, n - s));
}

}  // namespace quant_detail

// Quantized Add element-wise (see qadd_scalar; the constants from inferon.ir.quant.qadd_constants).
template <class QA, class QB, class QY>
inline void qadd(const QA* a, const QB* b, QY* y, float ra, float rb, float fixed, float lo_q, float hi_q, int64_t n,
                 int num_threads = 1) {
  const bool avx2 = use_avx2(), avx512 = quant_detail::use_avx512bw();
  quant_detail::parallel_chunks(n, num_threads, [&](int64_t s, int64_t len) {
    if (avx512) quant_detail::qadd_avx512(a + s, b + s, y + s, ra, rb, fixed, lo_q, hi_q, len);
    else if (avx2) quant_detail::qadd_avx2(a + s, b + s, y + s, ra, rb, fixed, lo_q, hi_q, len);
    else quant_detail::qadd_scalar(a + s, b + s, y + s, ra, rb, fixed, lo_q, hi_q, len);
  });
}

namespace quant_detail {

// y[i] = t[x[i]] for n bytes with one 256-byte table: 64 at a time, the table in four zmm (vpermi2b
// looks up the low 7 bits in two of them; bit 7 picks the pair).
__attribute__((target("avx2,avx512f,avx512bw,avx512vbmi"))) inline void table_vbmi(const uint8_t* x, const uint8_t* t,
                                                                                uint8_t* y, int64_t n) {
  const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64), t2 = _mm512_loadu_si512(t + 128),
                t3 = _mm512_loadu_si512(t + 192);
  for (int64_t i = 0; i < n; i += 64) {
    const __mmask64 m = n - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (n - i)) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
    const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
    _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
  }
}

inline bool use_vbmi() {
  static const bool ok = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
  return ok && isa() >= INFERON_ISA_AVX512;
}

}  // namespace quant_detail

// y[b, c, i] = table[c][x[b, c, i]] on stored bytes (graph.qtable; the table's row 0 for every
// channel unless per_channel): [batch, channels, plane] elements, planes split over threads.
template <class QX, class QY>
inline void qtable(const QX* x, const uint8_t* table, QY* y, int64_t batch, int64_t channels, int64_t plane,
                   int per_channel, int num_threads = 1) {
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(x);
  uint8_t* yb = reinterpret_cast<uint8_t*>(y);
  const bool vbmi = quant_detail::use_vbmi();
  const int64_t rows = batch * channels;
  const int T = threads_for(num_threads, static_cast<double>(rows * plane), 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const uint8_t* t = table + (per_channel ? (r % channels) * 256 : 0);
    const uint8_t* src = xb + r * plane;
    uint8_t* dst = yb + r * plane;
    if (vbmi) quant_detail::table_vbmi(src, t, dst, plane);
    else
      for (int64_t i = 0; i < plane; i++) dst[i] = t[src[i]];
  }
}

// y[i] = saturate(round_half_even(x[i] / scale) + zp) for Q = uint8_t or int8_t.
template <class Q>
inline void quantize_linear(const float* x, Q* y, int64_t n, float scale, int32_t zp, int num_threads = 1) {
  const bool avx2 = use_avx2();
  quant_detail::parallel_chunks(n, num_threads, [&](int64_t s, int64_t len) {
    if (avx2) quant_detail::quantize_avx2(x + s, y + s, len, scale, zp);
    else quant_detail::quantize_scalar(x + s, y + s, len, scale, zp);
  });
}

// y[i] = (x[i] - zp) * scale for Q = uint8_t, int8_t or int32_t.
template <class Q>
inline void dequantize_linear(const Q* x, float* y, int64_t n, float scale, int32_t zp, int num_threads = 1) {
  const bool avx2 = use_avx2();
  quant_detail::parallel_chunks(n, num_threads, [&](int64_t s, int64_t len) {
    if (avx2) {
      quant_detail::dequantize_avx2(x + s, y + s, len, scale, zp);
    } else {
      for (int64_t i = s; i < s + len; i++) y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - zp) * scale;
    }
  });
}

// ONNX DynamicQuantizeLinear (uint8) with ONNX Runtime's formulas, the result as the stored
// integers minus the zero point, in float: scale = (max(0, max x) - min(0, min x)) / 255 (1 if
// that is 0), zp = round_half_even(clamp(0 - min / scale, 0, 255)), v[i] = saturate(
// round_half_even(x[i] / scale) + zp) - zp. scale and zero_point are one float each.
INFERON_ENTRY void dynamic_quantize(const float* x, float* v, float* scale, float* zero_point, int64_t n,
                             int num_threads = 1);

#if INFERON_DEFINE_KERNELS(QUANT)
INFERON_ENTRY void dynamic_quantize(const float* x, float* v, float* scale, float* zero_point, int64_t n,
                             int num_threads) {
  float lo = 0.f, hi = 0.f;
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int64_t i = 0; i < n; i++) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const float s = hi == lo ? 1.f : (hi - lo) / 255.f;
  const int32_t zp = static_cast<int32_t>(std::nearbyint(std::max(0.f, std::min(255.f, 0.f - lo / s))));
  *scale = s;
  *zero_point = static_cast<float>(zp);
  const bool avx2 = use_avx2();
  quant_detail::parallel_chunks(n, num_threads, [&](int64_t start, int64_t len) {
    uint8_t q[1024];
    for (int64_t c = start; c < start + len; c += 1024) {
      const int64_t m = std::min<int64_t>(1024, start + len - c);
      if (avx2) quant_detail::quantize_avx2(x + c, q, m, s, zp);
      else quant_detail::quantize_scalar(x + c, q, m, s, zp);
      for (int64_t i = 0; i < m; i++) v[c + i] = static_cast<float>(static_cast<int32_t>(q[i]) - zp);
    }
  });
}
#endif

}  // namespace inferon

namespace inferon {

namespace quant_detail {

// 16 (stride 2: every other byte of 32) or 32 (stride 1) outputs of one tap row into acc.
template <class Q>
INFERON_AVX2_INLINE __m256i vmax(__m256i a, __m256i b) {
  return std::is_signed<Q>::value ? _mm256_max_epi8(a, b) : _mm256_max_epu8(a, b);
}

template <class Q>
INFERON_AVX2 void max_pool_plane_avx2(const Q* p, int64_t Wp, Q* y, int64_t Ho, int64_t Wo, int kh, int kw, int sh,
                                      int sw, int dh, int dw) {
  const __m256i even = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  const int step = sw == 1 ? 32 : 16;
  for (int64_t ho = 0; ho < Ho; ho++) {
    Q* out = y + ho * Wo;
    for (int64_t wo = 0; wo < Wo; wo += step) {  // the plane has slack: a partial last step is fine
      __m256i acc = _mm256_set1_epi8(static_cast<char>(std::numeric_limits<Q>::min()));
      // the window max at every input column, then (stride 2) one pick of the even bytes: one
      // shuffle per 16 outputs instead of one per tap
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
          const Q* r = p + (ho * sh + static_cast<int64_t>(i) * dh) * Wp + j * dw + wo * sw;
          acc = vmax<Q>(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)));
        }
      if (sw == 2) acc = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(acc, even), 0x08);
      if (wo + step <= Wo) {
        if (sw == 1) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + wo), acc);
        else _mm_storeu_si128(reinterpret_cast<__m128i*>(out + wo), _mm256_castsi256_si128(acc));
      } else {
        alignas(32) Q t[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(t), acc);
        std::memcpy(out + wo, t, static_cast<size_t>(Wo - wo) * sizeof(Q));
      }
    }
  }
}

template <class Q>
INFERON_AVX512BW inline __m512i vmax64(__m512i a, __m512i b) {
  return std::is_signed<Q>::value ? _mm512_max_epi8(a, b) : _mm512_max_epu8(a, b);
}

// The same with AVX-512BW, separably: per output row the max over the kh tap rows of every input
// column it needs, into the row `v` (64 columns per step), then the max over the kw taps along v
// (64 outputs per step at stride 1; at stride 2 the max at every column, then its 32 even bytes by
// one `vpmovwb`). 2 + kh + kw (+ 2) instructions per 64 input columns instead of kh * kw per 32
// (16 at stride 2). Reads up to 63 bytes past a row's last needed column (the plane's slack); the
// horizontal steps read `v` (2 (Wo + 63) + (kw - 1) dw + 128 bytes) past its computed columns only
// for outputs that are not stored.
template <class Q>
INFERON_AVX512BW void max_pool_plane_zmm(const Q* p, int64_t Wp, Q* y, int64_t Ho, int64_t Wo, int kh, int kw, int sh,
                                         int sw, int dh, int dw, Q* v) {
  const int64_t step = sw == 1 ? 64 : 32;
  const int64_t need = (Wo - 1) * sw + static_cast<int64_t>(kw - 1) * dw + 1;  // input columns the outputs use
  for (int64_t ho = 0; ho < Ho; ho++) {
    const Q* r0 = p + ho * sh * Wp;
    for (int64_t x = 0; x < need; x += 64) {
      __m512i acc = _mm512_loadu_si512(r0 + x);
      for (int i = 1; i < kh; i++) acc = vmax64<Q>(acc, _mm512_loadu_si512(r0 + static_cast<int64_t>(i) * dh * Wp + x));
      _mm512_storeu_si512(v + x, acc);
    }
    Q* out = y + ho * Wo;
    for (int64_t wo = 0; wo < Wo; wo += step) {
      const Q* h = v + wo * sw;
      __m512i acc = _mm512_loadu_si512(h);
      for (int j = 1; j < kw; j++) acc = vmax64<Q>(acc, _mm512_loadu_si512(h + static_cast<int64_t>(j) * dw));
      const int64_t n = std::min<int64_t>(step, Wo - wo);
      const __mmask64 keep = n == 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
      _mm512_mask_storeu_epi8(out + wo, keep, sw == 1 ? acc : _mm512_castsi256_si512(_mm512_cvtepi16_epi8(acc)));
    }
  }
}

}  // namespace quant_detail

// MaxPool on quantized NC planes (the max commutes with the monotonic dequantization): each plane
// is copied into a border of the type's minimum (the identity of max), then every output row is
// a running vector max over the kh x kw tap rows (32 outputs per step at stride 1, 16 at stride 2;
// with AVX-512BW separably, max_pool_plane_zmm).
template <class Q>
inline void qmax_pool2d(const Q* x, Q* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int kh, int kw,
                        int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw, int num_threads = 1) {
  (void)pb;
  (void)pr;
  const int64_t Hp = std::max<int64_t>(H + pt, (Ho - 1) * sh + static_cast<int64_t>(kh - 1) * dh + 1);
  const int64_t Wp = std::max<int64_t>(W + pl, (Wo + 31) / 32 * 32 * sw + static_cast<int64_t>(kw - 1) * dw + 1) + 64;
  const bool avx2 = use_avx2() && (sw == 1 || sw == 2);
  const bool zmm = avx2 && quant_detail::use_avx512bw();
  // in place, the zmm path's reads past the plane's end: its last tap row, 64-column steps over the
  // columns the outputs use
  const int64_t need = (Wo - 1) * sw + static_cast<int64_t>(kw - 1) * dw + 1;
  const int64_t over_read = ((Ho - 1) * sh + static_cast<int64_t>(kh - 1) * dh) * W + (need + 63) / 64 * 64 - H * W;
  // without padding, windows inside the image: the planes are read in place (a vector reading past
  // a row's end reads up to 31 bytes of what follows, whose values only reach outputs that are not
  // stored), except the last planes, where fewer than 32 bytes of x follow
  const bool in_place = avx2 && pt == 0 && pl == 0 && (Ho - 1) * sh + static_cast<int64_t>(kh - 1) * dh + 1 <= H &&
                        (Wo - 1) * sw + static_cast<int64_t>(kw - 1) * dw + 1 <= W;
  const int T = threads_for(num_threads, static_cast<double>(NC) * Ho * Wo * kh * kw, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    // the border (type minimum) is written once: every plane overwrites the same interior
    // (+ 128: the zmm path's vertical pass may read up to that far past the last row's slack)
    std::vector<Q> plane(in_place ? 0 : static_cast<size_t>(Hp * Wp + 128), std::numeric_limits<Q>::min());
    std::vector<Q> vrow(zmm ? static_cast<size_t>(2 * (Wo + 63) + static_cast<int64_t>(kw - 1) * dw + 128) : 0);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < NC; c++) {
      if (in_place && (NC - 1 - c) * H * W >= (zmm ? over_read : 32)) {
        if (zmm) quant_detail::max_pool_plane_zmm(x + c * H * W, W, y + c * Ho * Wo, Ho, Wo, kh, kw, sh, sw, dh, dw, vrow.data());
        else quant_detail::max_pool_plane_avx2(x + c * H * W, W, y + c * Ho * Wo, Ho, Wo, kh, kw, sh, sw, dh, dw);
        continue;
      }
      if (plane.empty()) plane.assign(static_cast<size_t>(Hp * Wp), std::numeric_limits<Q>::min());
      for (int64_t r = 0; r < H && pt + r < Hp; r++)
        std::memcpy(plane.data() + (pt + r) * Wp + pl, x + (c * H + r) * W, static_cast<size_t>(W) * sizeof(Q));
      Q* out = y + c * Ho * Wo;
      if (zmm) {
        quant_detail::max_pool_plane_zmm(plane.data(), Wp, out, Ho, Wo, kh, kw, sh, sw, dh, dw, vrow.data());
        continue;
      }
      if (avx2) {
        quant_detail::max_pool_plane_avx2(plane.data(), Wp, out, Ho, Wo, kh, kw, sh, sw, dh, dw);
        continue;
      }
      for (int64_t ho = 0; ho < Ho; ho++)
        for (int64_t wo = 0; wo < Wo; wo++) {
          Q m = std::numeric_limits<Q>::min();
          for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++)
              m = std::max(m, plane[static_cast<size_t>((ho * sh + static_cast<int64_t>(i) * dh) * Wp + j * dw + wo * sw)]);
          out[ho * Wo + wo] = m;
        }
    }
  }
}

namespace quant_detail {

// quantize(real) for the pooled means: clamp, round half to even, zero point.
template <class Q>
INFERON_AVX2_INLINE void store8_real(Q* y, int n, __m256 real, __m256 sy, int32_t zy) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<Q>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<Q>::max());
  __m256 v = _mm256_div_ps(real, sy);
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(qmin - static_cast<float>(zy))), _mm256_set1_ps(qmax - static_cast<float>(zy)));
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(zy));
  if (n == 8) {
    store8(y, q);
  } else {
    alignas(16) Q t[16];
    store8(t, q);
    std::memcpy(y, t, static_cast<size_t>(n) * sizeof(Q));
  }
}

template <class Q>
inline Q quantize_real(float real, float sy, int32_t zy) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<Q>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<Q>::max());
  float v = std::min(std::max(real / sy, qmin - static_cast<float>(zy)), qmax - static_cast<float>(zy));
  return static_cast<Q>(static_cast<int32_t>(std::nearbyint(v)) + zy);
}

// taps of a dilated window starting at `start` inside [lo, hi)
inline int taps_inside(int64_t start, int k, int d, int64_t lo, int64_t hi) {
  int c = 0;
  for (int i = 0; i < k; i++) c += (start + static_cast<int64_t>(i) * d >= lo && start + static_cast<int64_t>(i) * d < hi);
  return c;
}

// 8 outputs from their tap sums: zero points out, scaled, clamped, quantized, stored.
template <class Q>
INFERON_AVX2_INLINE void qavg_finish8(Q* out, int64_t Wo, int64_t wo, __m256 sum, __m256 bias, const float* scale,
                                      __m256 lo, __m256 hi, __m256i zy) {
  __m256 v = _mm256_mul_ps(_mm256_sub_ps(sum, bias), _mm256_loadu_ps(scale + wo));
  v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), zy);
  if (wo + 8 <= Wo) {
    store8(out + wo, q);
  } else {
    alignas(16) Q t[16];
    store8(t, q);
    std::memcpy(out + wo, t, static_cast<size_t>(Wo - wo) * sizeof(Q));
  }
}

// 16 averaged outputs of one row (stride 1, <= 128 taps: the sums fit int16), or 8 in float
// otherwise; the zero points removed, scaled by sx / (count * sy) per output, quantized.
template <class Q>
INFERON_AVX2 void qavg_row(const Q* base, int64_t Wp, Q* out, int64_t Wo, int kh, int kw, int sw, int dh, int dw,
                           float bias, const float* scale, int32_t zy) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<Q>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<Q>::max());
  const __m256 lo = _mm256_set1_ps(qmin - static_cast<float>(zy)), hi = _mm256_set1_ps(qmax - static_cast<float>(zy));
  const __m256 vbias = _mm256_set1_ps(bias);
  const __m256i vzy = _mm256_set1_epi32(zy);
#define INFERON_QAVG_FINISH(sum, wo) qavg_finish8(out, Wo, (wo), (sum), vbias, scale, lo, hi, vzy)
  int64_t wo = 0;
  if (sw == 1 && kh * kw <= 128) {
    for (; wo < Wo; wo += 16) {
      __m256i acc = _mm256_setzero_si256();
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + static_cast<int64_t>(i) * dh * Wp + j * dw + wo));
          acc = _mm256_add_epi16(acc, std::is_signed<Q>::value ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
        }
      INFERON_QAVG_FINISH(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc))), wo);
      if (wo + 8 < Wo) INFERON_QAVG_FINISH(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc, 1))), wo + 8);
    }
    return;
  }
  for (; wo < Wo; wo += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < kh; i++)
      for (int j = 0; j < kw; j++) acc = _mm256_add_ps(acc, load8_f32(base + static_cast<int64_t>(i) * dh * Wp + j * dw + wo * sw, sw));
    INFERON_QAVG_FINISH(acc, wo);
  }
}
#undef INFERON_QAVG_FINISH

}  // namespace quant_detail

// AveragePool of quantized NC planes (QLinearAveragePool): the mean of the dequantized window,
// (sum of (x - zx)) * sx / count, quantized with (sy, zy). The plane is bordered with the zero point
// (its taps add 0); count follows count_include_pad (the padded area, never past it) as in ONNX.
template <class Q>
inline void qavg_pool2d(const Q* x, Q* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int kh, int kw,
                        int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw, int include_pad, float sx,
                        int32_t zx, float sy, int32_t zy, int num_threads = 1) {
  const int64_t Hp = std::max<int64_t>(H + pt, (Ho - 1) * sh + static_cast<int64_t>(kh - 1) * dh + 1);
  const int64_t Wp = std::max<int64_t>(W + pl, (Wo + 15) / 16 * 16 * sw + static_cast<int64_t>(kw - 1) * dw + 1) + 32;
  std::vector<float> rowcnt(static_cast<size_t>(Ho)), colcnt(static_cast<size_t>(Wo + 16), 1.f);
  for (int64_t ho = 0; ho < Ho; ho++)
    rowcnt[ho] = static_cast<float>(include_pad ? quant_detail::taps_inside(ho * sh - pt, kh, dh, -pt, H + pb)
                                                : quant_detail::taps_inside(ho * sh - pt, kh, dh, 0, H));
  for (int64_t wo = 0; wo < Wo; wo++)
    colcnt[wo] = static_cast<float>(include_pad ? quant_detail::taps_inside(wo * sw - pl, kw, dw, -pl, W + pr)
                                                : quant_detail::taps_inside(wo * sw - pl, kw, dw, 0, W));
  const float bias = static_cast<float>(kh * kw) * static_cast<float>(zx);  // the zx of every tap, pads too
  const size_t row = colcnt.size();
  std::vector<float> scales(static_cast<size_t>(Ho) * row);  // sx / (count * sy) per output
  for (int64_t ho = 0; ho < Ho; ho++)
    for (size_t k = 0; k < row; k++) scales[ho * row + k] = sx / (rowcnt[ho] * colcnt[k] * sy);
  const bool avx2 = use_avx2();
  const int T = threads_for(num_threads, static_cast<double>(NC) * Ho * Wo * kh * kw, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<Q> plane(static_cast<size_t>(Hp * Wp));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < NC; c++) {
      std::fill(plane.begin(), plane.end(), static_cast<Q>(zx));
      for (int64_t r = 0; r < H; r++)
        std::memcpy(plane.data() + (pt + r) * Wp + pl, x + (c * H + r) * W, static_cast<size_t>(W) * sizeof(Q));
      Q* out = y + c * Ho * Wo;
      for (int64_t ho = 0; ho < Ho; ho++) {
        const Q* base = plane.data() + ho * sh * Wp;
        int64_t wo = 0;
        if (avx2) {
          quant_detail::qavg_row(base, Wp, out + ho * Wo, Wo, kh, kw, sw, dh, dw, bias, scales.data() + ho * row, zy);
          continue;
        }
        for (; wo < Wo; wo++) {
          int32_t sum = 0;
          for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) sum += base[static_cast<int64_t>(i) * dh * Wp + j * dw + wo * sw];
          const float real = (static_cast<float>(sum) - bias) * sx / (rowcnt[ho] * colcnt[wo]);
          out[ho * Wo + wo] = quant_detail::quantize_real<Q>(real, sy, zy);
        }
      }
    }
  }
}

// GlobalAveragePool of quantized NC planes: (sum of (x - zx)) * sx / HW, quantized with (sy, zy).
template <class Q>
inline void qglobal_avg_pool(const Q* x, Q* y, int64_t NC, int64_t HW, float sx, int32_t zx, float sy, int32_t zy,
                             int num_threads = 1) {
  const int T = threads_for(num_threads, static_cast<double>(NC) * HW, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t c = 0; c < NC; c++) {
    int64_t sum = 0;
    for (int64_t i = 0; i < HW; i++) sum += static_cast<int32_t>(x[c * HW + i]) - zx;
    y[c] = quant_detail::quantize_real<Q>(static_cast<float>(sum) * sx / static_cast<float>(HW), sy, zy);
  }
}

// GlobalMaxPool on quantized NC planes.
template <class Q>
inline void qglobal_max_pool(const Q* x, Q* y, int64_t NC, int64_t HW, int num_threads = 1) {
  const int T = threads_for(num_threads, static_cast<double>(NC) * HW, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t c = 0; c < NC; c++) y[c] = *std::max_element(x + c * HW, x + (c + 1) * HW);
}

}  // namespace inferon
