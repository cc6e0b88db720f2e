// Inferon kernels: fixed-point requantization of int32 accumulators (inferon/ir/quant.py).
//
// Output channel c's float32 multiplier M = (sx * sw[c]) / sy is exactly mult / 2^shift (a float32
// has a 24-bit significand; quant.fixed_point), so
//
//   q = clamp(round_half_even(acc * mult / 2^shift) + zy, lo, hi)
//
// is computed on the exact 64-bit product: bit-exact with ONNX's rounding of acc * M (ties to
// even), with no float rounding in between. Every constant is precomputed per channel at compile
// time (the Requant record, quant.fixed_point).
//
// Vector form (8 lanes, AVX2): vpmuldq multiplies the even and the odd 32-bit lanes into 64-bit
// products N (|N| < 2^55: mult < 2^24); adding 2^61 (a multiple of 2^shift) makes them non-negative,
// so a logical shift floors them: floor((N + round) / 2^shift) = q + 2^(61-shift) with round = 2^61 +
// 2^(shift-1), which rounds half up. The low 32 bits plus offset = -2^(61-shift) mod 2^32 are q.
// Two channel properties, flags of the record, add steps where needed:
// - ties: acc * mult can be an exact tie (an odd multiple of 2^(shift-1)); with mult odd that takes
//   |acc| >= 2^(shift-1), beyond the accumulator's reach for any multiplier with more than ~10
//   significant bits. Where it can, round is one less and bit `shift` of N is added (ties to even).
// - clamp_acc: M near 1 or above, where acc * M may leave int32: the accumulator is first clamped to
//   [acc_lo, acc_hi], which changes no clamped output and keeps q within a few bits.
// Each lane may have its own channel (qlanes.hpp) or all the same one (the row kernels).
#pragma once

#include "common.hpp"

namespace inferon {

constexpr uint32_t REQUANT_TIES = 1, REQUANT_CLAMP_ACC = 2;

// One output channel's record (quant.fixed_point: int32 [channels, 8], 32 bytes).
struct Requant {
  int32_t mult, shift, acc_lo, acc_hi;
  int64_t round;   // 2^61 + 2^(shift - 1) (- 1 with REQUANT_TIES)
  int32_t offset;  // -2^(61 - shift) mod 2^32
  uint32_t flags;  // REQUANT_TIES | REQUANT_CLAMP_ACC
};
static_assert(sizeof(Requant) == 32, "quant.fixed_point writes 8 int32 per channel");

// q for one accumulator; zy, lo, hi: the output zero point and clamp.
inline int32_t requant_scalar(const Requant& r, int32_t acc, int32_t zy, int32_t lo, int32_t hi) {
  const int64_t n = static_cast<int64_t>(std::min(std::max(acc, r.acc_lo), r.acc_hi)) * r.mult;
  const int64_t q = (n + (int64_t{1} << (r.shift - 1)) - 1 + ((n >> r.shift) & 1)) >> r.shift;
  return std::min(std::max(static_cast<int32_t>(q) + zy, lo), hi);
}

// The constants of 8 lanes (even / odd lanes' multipliers, shifts and rounding as 64-bit lanes).
struct Requant8 {
  __m256i mult_even, mult_odd, shift_even, shift_odd, round_even, round_odd, offset, acc_lo, acc_hi, lo, hi;
  uint32_t flags;  // the union of the lanes' flags
};

// All 8 lanes with one channel's record; zy, lo, hi: the output zero point and clamp.
INFERON_AVX2_INLINE Requant8 requant8_row(const Requant& r, int32_t zy, int32_t lo, int32_t hi) {
  Requant8 k;
  k.mult_even = k.mult_odd = _mm256_set1_epi32(r.mult);  // vpmuldq reads the low half of each 64-bit lane
  k.shift_even = k.shift_odd = _mm256_set1_epi64x(r.shift);
  k.round_even = k.round_odd = _mm256_set1_epi64x(r.round);
  k.offset = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(r.offset) + static_cast<uint32_t>(zy)));
  k.acc_lo = _mm256_set1_epi32(r.acc_lo);
  k.acc_hi = _mm256_set1_epi32(r.acc_hi);
  k.lo = _mm256_set1_epi32(lo);
  k.hi = _mm256_set1_epi32(hi);
  k.flags = r.flags;
  return k;
}

// Lane i with record r[i] for i < rows (the other lanes give zy).
INFERON_AVX2_INLINE Requant8 requant8_channels(const Requant* r, int rows, int32_t zy, int32_t lo, int32_t hi) {
  alignas(32) int32_t f[5][8] = {};
  alignas(32) int64_t round[8];
  Requant8 k;
  k.flags = 0;
  for (int i = 0; i < 8; i++) {
    const Requant c = i < rows ? r[i] : Requant{0, 1, 0, 0, (int64_t{1} << 61) + 1, 0, 0};
    f[0][i] = c.mult, f[1][i] = c.shift, f[2][i] = c.acc_lo, f[3][i] = c.acc_hi;
    f[4][i] = static_cast<int32_t>(static_cast<uint32_t>(c.offset) + static_cast<uint32_t>(zy));
    round[i] = c.round;
    k.flags |= c.flags;
  }
  if (k.flags & REQUANT_TIES)  // the bit is added in every lane: ties to even there too (the same results)
    for (int i = 0; i < 8; i++)
      if (i >= rows || !(r[i].flags & REQUANT_TIES)) round[i] -= 1;
  const __m256i* v = reinterpret_cast<const __m256i*>(f);
  const __m256i mult = _mm256_load_si256(v), shift = _mm256_load_si256(v + 1);
  const __m256i r0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(round));      // lanes 0-3
  const __m256i r1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(round + 4));  // lanes 4-7
  k.mult_even = mult;
  k.mult_odd = _mm256_srli_epi64(mult, 32);
  k.shift_even = _mm256_and_si256(shift, _mm256_set1_epi64x(0xffffffff));
  k.shift_odd = _mm256_srli_epi64(shift, 32);
  // 64-bit lanes in the products' order: even = lanes 0, 2, 4, 6, odd = 1, 3, 5, 7
  const __m256i lo2 = _mm256_permute2x128_si256(r0, r1, 0x20), hi2 = _mm256_permute2x128_si256(r0, r1, 0x31);
  k.round_even = _mm256_unpacklo_epi64(lo2, hi2);
  k.round_odd = _mm256_unpackhi_epi64(lo2, hi2);
  k.offset = _mm256_load_si256(v + 4);
  k.acc_lo = _mm256_load_si256(v + 2);
  k.acc_hi = _mm256_load_si256(v + 3);
  k.lo = _mm256_set1_epi32(lo);
  k.hi = _mm256_set1_epi32(hi);
  return k;
}

namespace requant_detail {

// floor((N + round [+ bit `s` of N]) / 2^s) per 64-bit lane: q + 2^(61 - s).
INFERON_AVX2_INLINE __m256i round_shift(__m256i n, __m256i s, __m256i round, bool ties) {
  __m256i t = _mm256_add_epi64(n, round);
  if (ties) t = _mm256_add_epi64(t, _mm256_and_si256(_mm256_srlv_epi64(n, s), _mm256_set1_epi64x(1)));
  return _mm256_srlv_epi64(t, s);
}

}  // namespace requant_detail

// q of 8 accumulators (zero point included; clamped to [lo, hi] unless CLAMP is false: callers that
// narrow with saturation to a [lo, hi] that is the output type's whole range).
template <bool CLAMP = true>
INFERON_AVX2_INLINE __m256i requant8(const Requant8& k, __m256i acc) {
  if (k.flags & REQUANT_CLAMP_ACC) acc = _mm256_min_epi32(_mm256_max_epi32(acc, k.acc_lo), k.acc_hi);
  const bool ties = k.flags & REQUANT_TIES;
  const __m256i even = _mm256_mul_epi32(acc, k.mult_even);
  const __m256i odd = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), k.mult_odd);
  const __m256i qe = requant_detail::round_shift(even, k.shift_even, k.round_even, ties);
  const __m256i qo = requant_detail::round_shift(odd, k.shift_odd, k.round_odd, ties);
  const __m256i q = _mm256_add_epi32(_mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xAA), k.offset);
  return CLAMP ? _mm256_min_epi32(_mm256_max_epi32(q, k.lo), k.hi) : q;
}

}  // namespace inferon
