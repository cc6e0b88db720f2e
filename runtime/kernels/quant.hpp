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

template <class Q>
INFERON_AVX2_INLINE __m256 load8_dequant(const Q* x, __m256i z, __m256 s) {
  __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x));
  __m256i v = std::is_signed<Q>::value ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, z)), s);
}

template <class QA, class QB, class QY>
inline void qadd_scalar(const QA* a, float sa, int32_t za, const QB* b, float sb, int32_t zb, QY* y, float sy,
                        int32_t zy, float lo, float hi, int64_t n) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<QY>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<QY>::max());
  for (int64_t i = 0; i < n; i++) {
    float v = static_cast<float>(static_cast<int32_t>(a[i]) - za) * sa + static_cast<float>(static_cast<int32_t>(b[i]) - zb) * sb;
    v = std::min(std::max(v, lo), hi) / sy;
    v = std::min(std::max(v, qmin - static_cast<float>(zy)), qmax - static_cast<float>(zy));
    y[i] = static_cast<QY>(static_cast<int32_t>(std::nearbyint(v)) + zy);
  }
}

template <class QA, class QB, class QY>
INFERON_AVX2 void qadd_avx2(const QA* a, float sa, int32_t za, const QB* b, float sb, int32_t zb, QY* y, float sy,
                            int32_t zy, float lo, float hi, int64_t n) {
  constexpr float qmin = static_cast<float>(std::numeric_limits<QY>::min());
  constexpr float qmax = static_cast<float>(std::numeric_limits<QY>::max());
  const __m256 vsa = _mm256_set1_ps(sa), vsb = _mm256_set1_ps(sb), vsy = _mm256_set1_ps(sy);
  const __m256i vza = _mm256_set1_epi32(za), vzb = _mm256_set1_epi32(zb), vzy = _mm256_set1_epi32(zy);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256 qlo = _mm256_set1_ps(qmin - static_cast<float>(zy)), qhi = _mm256_set1_ps(qmax - static_cast<float>(zy));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // the float steps of dequantize, add, clamp, quantize, in that order (bit-exact with them)
    __m256 v = _mm256_add_ps(load8_dequant(a + i, vza, vsa), load8_dequant(b + i, vzb, vsb));
    v = _mm256_div_ps(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi), vsy);
    v = _mm256_min_ps(_mm256_max_ps(v, qlo), qhi);
    store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(v), vzy));
  }
  qadd_scalar(a + i, sa, za, b + i, sb, zb, y + i, sy, zy, lo, hi, n - i);
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

// y = quantize(clamp(dequantize(a) + dequantize(b), lo, hi)) element-wise, every step in float32.
template <class QA, class QB, class QY>
inline void qadd(const QA* a, float sa, int32_t za, const QB* b, float sb, int32_t zb, QY* y, float sy, int32_t zy,
                 float lo, float hi, int64_t n, int num_threads = 1) {
  const bool avx2 = use_avx2();
  quant_detail::parallel_chunks(n, num_threads, [&](int64_t s, int64_t len) {
    if (avx2) quant_detail::qadd_avx2(a + s, sa, za, b + s, sb, zb, y + s, sy, zy, lo, hi, len);
    else quant_detail::qadd_scalar(a + s, sa, za, b + s, sb, zb, y + s, sy, zy, lo, hi, len);
  });
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
      for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
          const Q* r = p + (ho * sh + static_cast<int64_t>(i) * dh) * Wp + j * dw + wo * sw;
          __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r));
          if (sw == 2) v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, even), 0x08);
          acc = vmax<Q>(acc, v);
        }
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

}  // namespace quant_detail

// MaxPool on quantized NC planes (the max commutes with the monotonic dequantization): each plane
// is copied into a border of the type's minimum (the identity of max), then every output row is
// a running vector max over the kh x kw tap rows (32 outputs per step at stride 1, 16 at stride 2).
template <class Q>
inline void qmax_pool2d(const Q* x, Q* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int kh, int kw,
                        int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw, int num_threads = 1) {
  (void)pb;
  (void)pr;
  const int64_t Hp = std::max<int64_t>(H + pt, (Ho - 1) * sh + static_cast<int64_t>(kh - 1) * dh + 1);
  const int64_t Wp = std::max<int64_t>(W + pl, (Wo + 31) / 32 * 32 * sw + static_cast<int64_t>(kw - 1) * dw + 1) + 64;
  const bool avx2 = use_avx2() && (sw == 1 || sw == 2);
  const int T = threads_for(num_threads, static_cast<double>(NC) * Ho * Wo * kh * kw, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<Q> plane(static_cast<size_t>(Hp * Wp));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < NC; c++) {
      std::fill(plane.begin(), plane.end(), std::numeric_limits<Q>::min());
      for (int64_t r = 0; r < H; r++)
        std::memcpy(plane.data() + (pt + r) * Wp + pl, x + (c * H + r) * W, static_cast<size_t>(W) * sizeof(Q));
      Q* out = y + c * Ho * Wo;
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

// GlobalMaxPool on quantized NC planes.
template <class Q>
inline void qglobal_max_pool(const Q* x, Q* y, int64_t NC, int64_t HW, int num_threads = 1) {
  const int T = threads_for(num_threads, static_cast<double>(NC) * HW, 65536.0);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t c = 0; c < NC; c++) y[c] = *std::max_element(x + c * HW, x + (c + 1) * HW);
}

}  // namespace inferon
