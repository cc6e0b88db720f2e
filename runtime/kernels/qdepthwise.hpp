// Inferon kernels: quantized depthwise convolution (QLinearConv with group == C_in), direct.
//
// y[n][m] = requantize(sum_taps w[m][tap] * xpad[n][m / mult][...] + comp[m]) with comp = bias -
// zx * sum(w[m]) (compile time) and the padding reading the zero point. With AVX512-VNNI and VBMI
// the products are integer vpdpbusd sums (see "AVX512-VNNI + VBMI path" below). With AVX2 the input minus
// its zero point goes through the float depthwise kernels (depthwise.hpp) with the integer weights:
// every product and partial sum is an integer below 2^24 (|x - zx| <= 255, |w| <= 128, up to 512
// taps), hence exact in float32 whatever the order; the integer bias is added after converting
// back, so the result is bit-exact with the integer reference and uses the same requantization as
// qgemm.hpp. For the CNN geometries (3x3 / 5x5, stride 1 / 2) this runs plane by plane: the
// stored plane is converted straight into the zero-bordered float scratch of depthwise.hpp's
// padded kernel (zero-centred, so the border is the zero point), the kernel accumulates one float
// plane, which is requantized at once: all in cache, no whole-tensor float copies. Other
// geometries convert the whole tensor and use the general float kernel. The scalar path works on
// a bordered plane of the stored zero point.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "depthwise.hpp"
#include "qgemm_base.hpp"
#include "quant.hpp"

namespace inferon {

struct QDepthwise {
  int64_t N, C, H, W, M, Ho, Wo;
  int kh, kw, sh, sw, pt, pl, dh, dw;
  const int8_t* w;      // [M][kh * kw]
  const int32_t* comp;  // [M]
  const Requant* rq;    // [M] fixed-point requantization (requant.hpp)
  int32_t zy, lo, hi;   // output zero point and clamp
  uint8_t pad;          // stored input zero point
};

namespace qdw_detail {

template <class QY>
inline QY requant_one(const QDepthwise& g, int64_t m, int32_t acc) {
  return static_cast<QY>(requant_scalar(g.rq[m], acc + g.comp[m], g.zy, g.lo, g.hi));
}

// y[i] = requantize(int(acc[i]) + bias) for one output plane (acc: exact integers as floats).
template <class QY>
INFERON_AVX2 void requant_plane_avx2(const QDepthwise& g, int64_t m, const float* acc, int32_t bias, QY* y, int64_t n) {
  const __m256i b = _mm256_set1_epi32(bias);
  const Requant8 k = requant8_row(g.rq[m], g.zy, g.lo, g.hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    quant_detail::store8(y + i, requant8(k, _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_loadu_ps(acc + i)), b)));
  for (; i < n; i++)
    y[i] = static_cast<QY>(requant_scalar(g.rq[m], static_cast<int32_t>(acc[i]) + bias, g.zy, g.lo, g.hi));
}

template <class QX, class QY>
inline void plane_scalar(const QDepthwise& g, int64_t m, const QX* p, int64_t Wp, QY* y) {
  const int taps = g.kh * g.kw;
  for (int64_t ho = 0; ho < g.Ho; ho++)
    for (int64_t wo = 0; wo < g.Wo; wo++) {
      int32_t acc = 0;
      for (int i = 0; i < g.kh; i++)
        for (int j = 0; j < g.kw; j++)
          acc += static_cast<int32_t>(g.w[m * taps + i * g.kw + j]) *
                 static_cast<int32_t>(p[(ho * g.sh + static_cast<int64_t>(i) * g.dh) * Wp + j * g.dw + wo * g.sw]);
      y[ho * g.Wo + wo] = requant_one<QY>(g, m, acc);
    }
}

}  // namespace qdw_detail

// Copy the read rows of a stored plane, minus its zero point, into the zero-bordered float scratch
// P of depthwise.hpp's padded kernel (the same origin and row stride as its copy_padded).
template <class QX>
INFERON_AVX2 void copy_padded_centred(const dw_detail::Geo& g, const dw_detail::Padded& pg, const QX* x, int32_t zx,
                                      float* P) {
  const int64_t cols = pg.cols, c8 = cols / 8 * 8, rows = pg.rows, W = g.W, Wp = pg.Wp;
  const __m256 z = _mm256_set1_ps(static_cast<float>(zx));
  float* dst = P + g.pt * Wp + g.pl;
  for (int64_t h = 0; h < rows; h++, x += W, dst += Wp) {
    for (int64_t c = 0; c < c8; c += 8) _mm256_storeu_ps(dst + c, _mm256_sub_ps(quant_detail::load8_f32(x + c, 1), z));
    for (int64_t c = c8; c < cols; c++) dst[c] = static_cast<float>(static_cast<int32_t>(x[c]) - zx);
  }
}

// The AVX2 path (see the header): integer weights as floats, the bias for the zero-centred input.
template <class QX, class QY>
inline void qdepthwise_via_float(const QDepthwise& g, const QX* x, QY* y, int num_threads) {
  thread_local Scratch ws, xs, as;  // (the padded path's plane scratch is depthwise.hpp's)
  const int64_t taps = static_cast<int64_t>(g.kh) * g.kw, in_plane = g.H * g.W, plane = g.Ho * g.Wo;
  const int64_t mult_ch = g.M / g.C, planes = g.N * g.M;
  const int32_t zx = static_cast<int32_t>(static_cast<QX>(g.pad));
  float* wf = ws.get(static_cast<size_t>(g.M * taps));
  std::vector<int32_t> bias(static_cast<size_t>(g.M));  // comp + zx * sum(w) per channel
  for (int64_t m = 0; m < g.M; m++) {
    int32_t wsum = 0;
    for (int64_t t = 0; t < taps; t++) {
      wf[m * taps + t] = static_cast<float>(g.w[m * taps + t]);
      wsum += g.w[m * taps + t];
    }
    bias[m] = g.comp[m] + zx * wsum;
  }
  const dw_detail::Geo geo{g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, ACT_NONE, 0.f, 0.f};
  const int T = threads_for(num_threads, static_cast<double>(planes * plane * taps) * 2, 65536.0);
  if (const dw_detail::PaddedFn fn = dw_detail::pick_padded(geo)) {
    const dw_detail::Padded pg = dw_detail::padded_geometry(geo, g.kh, g.sw);
#pragma omp parallel num_threads(T) if (T > 1)
    {
      const size_t size = static_cast<size_t>(pg.Hp * pg.Wp) + 8;
      float* P = dw_detail::padded_scratch().get(size);
      std::memset(P, 0, size * sizeof(float));  // the border: the zero point, zero-centred
      thread_local Scratch acc_scratch;
      float* acc = acc_scratch.get(static_cast<size_t>(plane));
      int64_t filled = -1;  // the input plane now in P
#pragma omp for schedule(static)
      for (int64_t p = 0; p < planes; p++) {
        const int64_t m = p % g.M, src = p / g.M * g.C + m / mult_ch;
        if (src != filled) copy_padded_centred(geo, pg, x + src * in_plane, zx, P);
        filled = src;
        fn(geo, pg, P, wf + m * taps, 0.f, nullptr, acc);
        qdw_detail::requant_plane_avx2(g, m, acc, bias[m], y + p * plane, plane);
      }
    }
    return;
  }
  const int64_t in = g.N * g.C * in_plane;
  float* xf = xs.get(static_cast<size_t>(in));
  float* acc = as.get(static_cast<size_t>(planes * plane));
  dequantize_linear(x, xf, in, 1.0f, zx, num_threads);
  depthwise_conv2d(xf, wf, nullptr, nullptr, acc, g.N, g.C, g.H, g.W, g.M, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt,
                   g.pl, g.dh, g.dw, ACT_NONE, 0.f, 0.f, num_threads);
#pragma omp parallel for num_threads(T) if (T > 1) schedule(static)
  for (int64_t p = 0; p < planes; p++)
    qdw_detail::requant_plane_avx2(g, p % g.M, acc + p * plane, bias[p % g.M], y + p * plane, plane);
}

// ------------------------------------------------------------------- AVX512-VNNI + VBMI path
// Integer throughout: the plane is copied (as uint8: int8 inputs + 128, the bias compensating) into
// a per-thread scratch with a border of the zero point and a padded row of Wp bytes. A block is 16
// outputs: RB output rows of CB columns (CB = 16, 8 or 4, the fewest lanes that cover a narrow
// plane's rows). For each kernel row i and group of four taps j = 4 q .. 4 q + 3 (the missing taps
// weigh 0), one 64-byte load at the block's window and one vpermb gather every lane's four input
// bytes (lane r * CB + c reads r * sh * Wp + c * sw + t * dw, t < 4), and one vpdpbusd adds the
// four products to the lane's int32 sum (u8 x s8, exact). Four blocks run side by side (independent
// accumulator chains); each is requantized like qgemm.hpp (requant16) and stored row by row with
// masked byte stores. Taken when the whole gather window fits one load (see qdw_vnni_layout).

#define INFERON_VNNI_VBMI __attribute__((target("avx2,fma,bmi2,avx512f,avx512vl,avx512bw,avx512vnni,avx512vbmi")))

inline bool use_vnni_vbmi() {
  static const bool ok = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("bmi2");
  return ok && use_vnni();
}

struct QdwLayout {
  int64_t Wp = 0, rows = 0, bytes = 0;  // scratch row stride, rows, allocation
  int cb = 0, rb = 0, groups = 0;         // lanes per output row, output rows per block, tap groups per kernel row
};

// The scratch layout and block shape, or rb == 0 when the gather window exceeds one 64-byte load.
inline QdwLayout qdw_vnni_layout(const QDepthwise& g) {
  QdwLayout l;
  l.groups = (g.kw + 3) / 4;
  l.Wp = std::max<int64_t>(g.pl + g.W, (g.Wo - 1) * g.sw + static_cast<int64_t>(g.kw - 1) * g.dw + 1);
  for (int cb : {4, 8, 16}) {
    if (cb < 16 && g.Wo > cb) continue;
    const int rb = 16 / cb;
    if ((rb - 1) * g.sh * l.Wp + static_cast<int64_t>(cb - 1) * g.sw + 3 * g.dw > 63) continue;
    l.cb = cb, l.rb = rb;
    break;
  }
  if (!l.rb) return l;
  const int64_t ho_blocks = (g.Ho + l.rb - 1) / l.rb * l.rb;  // rows the blocks cover
  l.rows = std::max<int64_t>(g.pt + g.H, (ho_blocks - 1) * g.sh + static_cast<int64_t>(g.kh - 1) * g.dh + 1) + 1;
  l.bytes = l.rows * l.Wp + 4 * l.groups * g.dw + 128;  // + the last load's / row copy's overhang
  return l;
}

namespace qdw_detail {

// What every plane shares: the vpermb lane pattern, each tap group's offset in the scratch.
struct QdwTaps {
  alignas(64) uint8_t idx[64];
  std::vector<int64_t> off;     // [kh * groups]
  struct Block {
    int64_t in, out;   // offset of the window in the scratch; of lane 0's output in the plane
    int32_t rows;      // output rows the block holds (<= rb)
    __mmask16 mask;    // lanes of row 0 that are outputs (row r: mask << r * cb)
  };
  std::vector<Block> blocks;  // padded with copies of the last to a multiple of NB
};

constexpr int QDW_NB = 4;  // blocks computed side by side

inline QdwTaps qdw_taps(const QDepthwise& g, const QdwLayout& l) {
  QdwTaps t;
  for (int k = 0; k < 16; k++)
    for (int b = 0; b < 4; b++)
      t.idx[4 * k + b] = static_cast<uint8_t>((k / l.cb) * g.sh * l.Wp + (k % l.cb) * g.sw + b * g.dw);
  const int ntap = g.kh * l.groups;
  for (int n = 0; n < ntap; n++) t.off.push_back(static_cast<int64_t>(n / l.groups) * g.dh * l.Wp + 4 * (n % l.groups) * g.dw);
  for (int64_t ho0 = 0; ho0 < g.Ho; ho0 += l.rb)
    for (int64_t wo0 = 0; wo0 < g.Wo; wo0 += l.cb) {
      const int64_t cols = std::min<int64_t>(l.cb, g.Wo - wo0);
      t.blocks.push_back({ho0 * g.sh * l.Wp + wo0 * g.sw, ho0 * g.Wo + wo0,
                          static_cast<int32_t>(std::min<int64_t>(l.rb, g.Ho - ho0)), static_cast<__mmask16>((1u << cols) - 1)});
    }
  while (t.blocks.size() % QDW_NB) t.blocks.push_back({t.blocks.back().in, t.blocks.back().out, 0, 0});
  return t;
}

template <class QY>
INFERON_VNNI_VBMI void plane_vnni(const QDepthwise& g, const QdwLayout& l, const QdwTaps& taps, int64_t m,
                                  const uint8_t* P, int32_t comp, QY* y) {
  const int ntap = static_cast<int>(taps.off.size());
  int32_t w[64];  // tap group (i, q): the four int8 weights w[m][i][4 q .. 4 q + 3] (0 past kw)
  std::memset(w, 0, sizeof(w));
  const int8_t* wm = g.w + m * g.kh * g.kw;
  for (int i = 0; i < g.kh; i++)
    for (int j = 0; j < g.kw; j++)
      w[i * l.groups + j / 4] |= static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint8_t>(wm[i * g.kw + j])) << (8 * (j % 4)));
  const int64_t* toff = taps.off.data();
  const __m512i idx = _mm512_load_si512(taps.idx), init = _mm512_set1_epi32(comp);
  const qgemm_detail::Requant16 k = qgemm_detail::requant16_row(g.rq[m], g.zy, g.lo, g.hi);
  constexpr int NB = QDW_NB;
  for (size_t b0 = 0; b0 < taps.blocks.size(); b0 += NB) {
    const QdwTaps::Block* blk = taps.blocks.data() + b0;
    __m512i acc[NB];
    for (int b = 0; b < NB; b++) acc[b] = init;
    for (int t = 0; t < ntap; t++) {
      const __m512i wv = _mm512_set1_epi32(w[t]);
      const uint8_t* src = P + toff[t];
      for (int b = 0; b < NB; b++)
        acc[b] = _mm512_dpbusd_epi32(acc[b], _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(src + blk[b].in)), wv);
    }
    for (int b = 0; b < NB; b++) {
      const __m128i q = _mm512_cvtepi32_epi8(qgemm_detail::requant16(k, acc[b]));
      if (blk[b].rows == 1 && blk[b].mask == 0xFFFF) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + blk[b].out), q);
        continue;
      }
      for (int r = 0; r < blk[b].rows; r++)  // lane r * cb + c -> y[ho0 + r][wo0 + c]
        _mm_mask_storeu_epi8(y + blk[b].out + r * (g.Wo - l.cb), static_cast<__mmask16>(blk[b].mask << (r * l.cb)), q);
    }
  }
}

// Copy one stored plane into the scratch interior (int8 inputs shifted to uint8) with whole 64-byte
// stores only (masked stores do not scale across cores here): a row's last piece is blended with the
// border byte, so what it writes past the row is border, or interior of later rows (copied after it).
template <class QX>
INFERON_VNNI_VBMI void copy_plane_u8(const QDepthwise& g, const QdwLayout& l, const QX* x, uint8_t border, uint8_t* P) {
  const __m512i flip = _mm512_set1_epi8(std::is_same_v<QX, int8_t> ? static_cast<char>(0x80) : 0);
  const __m512i fill = _mm512_set1_epi8(static_cast<char>(border));
  const int64_t full = g.W / 64 * 64;
  const __mmask64 tail = _bzhi_u64(~0ull, static_cast<unsigned>(g.W - full));
  uint8_t* dst = P + g.pt * l.Wp + g.pl;
  for (int64_t h = 0; h < g.H; h++, x += g.W, dst += l.Wp) {
    for (int64_t c = 0; c < full; c += 64)
      _mm512_storeu_si512(dst + c, _mm512_xor_si512(_mm512_loadu_si512(x + c), flip));
    if (tail)
      _mm512_storeu_si512(dst + full, _mm512_mask_blend_epi8(tail, fill, _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, x + full), flip)));
  }
}

}  // namespace qdw_detail

template <class QX, class QY>
inline void qdepthwise_vnni(const QDepthwise& g, const QdwLayout& l, const QX* x, QY* y, int num_threads) {
  const int64_t taps = static_cast<int64_t>(g.kh) * g.kw, in_plane = g.H * g.W, plane = g.Ho * g.Wo;
  const int64_t mult_ch = g.M / g.C, planes = g.N * g.M;
  constexpr bool shifted = std::is_same_v<QX, int8_t>;  // int8 inputs read as x + 128
  const uint8_t border = shifted ? static_cast<uint8_t>(g.pad ^ 0x80u) : g.pad;
  const qdw_detail::QdwTaps tap_table = qdw_detail::qdw_taps(g, l);
  const int T = threads_for(num_threads, static_cast<double>(planes * plane * taps), 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    thread_local Scratch scratch;
    uint8_t* P = reinterpret_cast<uint8_t*>(scratch.get(static_cast<size_t>(l.bytes + 3) / 4));
    std::memset(P, border, static_cast<size_t>(l.bytes));  // the border: copies write the image only
    int64_t filled = -1;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; p++) {
      const int64_t m = p % g.M, src = p / g.M * g.C + m / mult_ch;
      if (src != filled) qdw_detail::copy_plane_u8(g, l, x + src * in_plane, border, P);
      filled = src;
      int32_t comp = g.comp[m];
      if (shifted)  // sum w (x + 128) counts 128 sum w too many
        for (int64_t t = 0; t < taps; t++) comp -= 128 * g.w[m * taps + t];
      qdw_detail::plane_vnni(g, l, tap_table, m, P, comp, y + p * plane);
    }
  }
}

template <class QX, class QY>
inline void qdepthwise_conv2d(const QDepthwise& g, const QX* x, QY* y, int num_threads = 1) {
  if (use_vnni_vbmi() && g.kh * ((g.kw + 3) / 4) <= 64) {
    const QdwLayout l = qdw_vnni_layout(g);
    if (l.rb) return qdepthwise_vnni(g, l, x, y, num_threads);
  }
  // exact in float while taps * 255 * 128 < 2^24
  if (use_avx2() && g.kh * g.kw <= 512) return qdepthwise_via_float(g, x, y, num_threads);
  const int64_t Hp = std::max<int64_t>(g.H + g.pt, (g.Ho - 1) * g.sh + static_cast<int64_t>(g.kh - 1) * g.dh + 1);
  const int64_t Wp = std::max<int64_t>(g.W + g.pl, (g.Wo + 7) / 8 * 8 * g.sw + static_cast<int64_t>(g.kw - 1) * g.dw + 1) + 32;
  const int64_t mult_ch = g.M / g.C;
  const QX border = static_cast<QX>(g.pad);
  const int T = threads_for(num_threads, static_cast<double>(g.N * g.M) * g.Ho * g.Wo * g.kh * g.kw, 65536.0);
#pragma omp parallel num_threads(T) if (T > 1)
  {
    std::vector<QX> plane(static_cast<size_t>(Hp * Wp));
    int64_t filled = -1;  // the (n, c) plane currently in `plane`
#pragma omp for schedule(static)
    for (int64_t nm = 0; nm < g.N * g.M; nm++) {
      const int64_t n = nm / g.M, m = nm % g.M, c = m / mult_ch;
      if (filled != n * g.C + c) {
        std::fill(plane.begin(), plane.end(), border);
        const QX* src = x + (n * g.C + c) * g.H * g.W;
        for (int64_t r = 0; r < g.H; r++)
          std::memcpy(plane.data() + (g.pt + r) * Wp + g.pl, src + r * g.W, static_cast<size_t>(g.W) * sizeof(QX));
        filled = n * g.C + c;
      }
      qdw_detail::plane_scalar(g, m, plane.data(), Wp, y + nm * g.Ho * g.Wo);
    }
  }
}

}  // namespace inferon
