// Test/benchmark shim: exposes the header-only kernels through extern "C" entry points so that
// Python (ctypes) can call them one by one. Built like a generated model (build_shared_library),
// with a trivial descriptor; the k_* symbols are exported explicitly.
#include "inferon/kernels.hpp"
#include "inferon/model_abi.h"

#define SHIM extern "C" __attribute__((visibility("default")))

namespace {
const int64_t kShape[1] = {4};
const inferon_tensor_info kIn[1] = {{"x", INFERON_FLOAT32, 1, kShape}};
const inferon_tensor_info kOut[1] = {{"y", INFERON_FLOAT32, 1, kShape}};
void run(float*, const float* const* in, float* const* out, int, double*) { inferon::copy(in[0], out[0], 4); }
const inferon_model_desc kDesc = {1, 1, kIn, kOut, 64, run, 0, nullptr, 2};
}  // namespace

extern "C" const inferon_model_desc* inferon_model_descriptor(void) { return &kDesc; }

SHIM void k_set_isa(int isa) { inferon_kernels_set_isa(isa); }
SHIM int k_get_isa(void) { return inferon_kernels_get_isa(); }
SHIM const float* k_weights(void) { return inferon_weights; }

// The Epilogue of the k_* entry points (bias_batch_stride 0 unless set by the caller).
static inferon::Epilogue make_epilogue(const float* bias, int bias_axis, const float* residual, int act, float alpha,
                                       float beta) {
  inferon::Epilogue ep;
  ep.bias = bias;
  ep.bias_axis = bias_axis;
  ep.residual = residual;
  ep.act = act;
  ep.alpha = alpha;
  ep.beta = beta;
  return ep;
}

SHIM void k_gemm(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, int64_t sA,
                 const float* B, int64_t ldb, int64_t sB, float* C, int64_t ldc, int64_t sC,
                 const float* bias, int64_t bias_bs, int bias_axis, const float* residual, int act,
                 float alpha, float beta, const int64_t* tiles, int threads) {
  inferon::Epilogue ep = make_epilogue(bias, bias_axis, residual, act, alpha, beta);
  ep.bias_batch_stride = bias_bs;
  inferon::GemmTiles t;
  if (tiles) {
    t.mr = static_cast<int>(tiles[0]);
    t.nr = static_cast<int>(tiles[1]);
    t.mc = tiles[2];
    t.kc = tiles[3];
    t.nc = tiles[4];
  }
  inferon::gemm(batch, M, N, K, A, lda, sA, B, ldb, sB, C, ldc, sC, ep, t, threads);
}

// k_gemm with every GemmTiles field: tiles = {mr, nr, mc, kc, nc, a_packed} (not null). With
// a_packed != 0, A is pre-packed in 6-row panels per KC block (pack_weights.pack_a(A, 6, kc))
// and lda is unused.
SHIM void k_gemm_ex(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, int64_t sA,
                    const float* B, int64_t ldb, int64_t sB, float* C, int64_t ldc, int64_t sC,
                    const float* bias, int64_t bias_bs, int bias_axis, const float* residual, int act,
                    float alpha, float beta, const int64_t* tiles, int threads) {
  inferon::Epilogue ep = make_epilogue(bias, bias_axis, residual, act, alpha, beta);
  ep.bias_batch_stride = bias_bs;
  inferon::GemmTiles t;
  t.mr = static_cast<int>(tiles[0]);
  t.nr = static_cast<int>(tiles[1]);
  t.mc = tiles[2];
  t.kc = tiles[3];
  t.nc = tiles[4];
  t.a_packed = (tiles[5] & 1) != 0;  // bit 0: A pre-packed, bit 1: B pre-packed
  t.b_packed = (tiles[5] & 2) != 0;
  inferon::gemm(batch, M, N, K, A, lda, sA, B, ldb, sB, C, ldc, sC, ep, t, threads);
}

// The lanes GEMM (gemm_lanes.hpp): A packed by pack_weights.pack_a_lanes (sA floats per batch item);
// geometry: null (B is [K, N], row stride ldb) or the 13 Im2col fields of B's image (then K = C*kh*kw).
SHIM void k_gemm_lanes(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, int64_t sA, const float* B,
                       int64_t ldb, int64_t sB, float* C, int64_t ldc, int64_t sC, const float* bias, int64_t bias_bs,
                       int bias_axis, const float* residual, int act, float alpha, float beta,
                       const int64_t* geometry, int threads) {
  inferon::Epilogue ep = make_epilogue(bias, bias_axis, residual, act, alpha, beta);
  ep.bias_batch_stride = bias_bs;
  inferon::GemmTiles t;
  t.a_lanes = true;
  inferon::Im2col q{};
  if (geometry)
    q = inferon::Im2col{geometry[0], geometry[1], geometry[2], static_cast<int>(geometry[3]),
                        static_cast<int>(geometry[4]), static_cast<int>(geometry[5]), static_cast<int>(geometry[6]),
                        static_cast<int>(geometry[7]), static_cast<int>(geometry[8]), static_cast<int>(geometry[9]),
                        static_cast<int>(geometry[10]), geometry[11], geometry[12], 0};
  inferon::gemm(batch, M, N, K, A, 0, sA, B, ldb, sB, C, ldc, sC, ep, t, threads, geometry ? &q : nullptr);
}

SHIM void k_im2col(const float* x, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int pt,
                   int pl, int dh, int dw, int64_t Ho, int64_t Wo, float* col, int threads) {
  inferon::im2col(x, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, col, threads);
}

SHIM void k_col2im(const float* col, const float* bias, const float* residual, float* y, int64_t N, int64_t C,
                   int64_t H, int64_t W, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int64_t Ho,
                   int64_t Wo, int act, int threads) {
  inferon::col2im(col, bias, residual, y, N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, act, 0.f, 0.f, threads);
}

SHIM void k_pool2d(const float* x, float* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                   int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw,
                   int is_max, int count_include_pad, int threads) {
  inferon::pool2d(x, y, NC, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max,
                  count_include_pad, threads);
}

SHIM void k_global_pool(const float* x, float* y, int64_t NC, int64_t HW, int is_max, int threads) {
  inferon::global_pool(x, y, NC, HW, is_max, threads);
}

SHIM void k_binary(int op, int rank, const int64_t* shape, const float* a, const int64_t* as,
                   const float* b, const int64_t* bs, float* y, int threads) {
  inferon::binary(op, rank, shape, a, as, b, bs, y, threads);
}

SHIM void k_unary(int op, int64_t n, const float* x, float* y, float alpha, float beta, int threads) {
  inferon::unary(op, n, x, y, alpha, beta, threads);
}

SHIM void k_copy_rows(const float* x, float* y, int64_t rows, int64_t row_len, int64_t y_stride) {
  inferon::copy_rows(x, y, rows, row_len, y_stride);
}

SHIM void k_transpose(int rank, const int64_t* shape, const int64_t* perm, const float* x, float* y,
                      int threads) {
  inferon::transpose(rank, shape, perm, x, y, threads);
}

SHIM void k_strided_copy(int rank, const int64_t* shape, const int64_t* strides, const float* x, float* y,
                         int threads) {
  inferon::strided_copy(rank, shape, strides, x, y, threads);
}

SHIM void k_pad(int rank, const int64_t* shape, const int64_t* strides, const int64_t* pads, int mode,
                const float* x, float* y, float value, int threads) {
  inferon::pad(rank, shape, strides, pads, static_cast<inferon::PadMode>(mode), x, y, value, threads);
}

SHIM void k_pad_u8(int rank, const int64_t* shape, const int64_t* strides, const int64_t* pads, int mode,
                   const uint8_t* x, uint8_t* y, float value, int threads) {
  inferon::pad(rank, shape, strides, pads, static_cast<inferon::PadMode>(mode), x, y, value, threads);
}

SHIM void k_softmax(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner, int log,
                    int threads) {
  inferon::softmax(x, y, outer, axis, inner, log, threads);
}

SHIM void k_lrn(const float* x, float* y, int64_t N, int64_t C, int64_t HW, int size, float alpha,
                float beta, float bias, int threads) {
  inferon::lrn(x, y, N, C, HW, size, alpha, beta, bias, threads);
}

SHIM void k_channel_affine(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const float* scale,
                           const float* shift, const float* residual, int act, int threads) {
  inferon::channel_affine(x, y, N, C, HW, scale, shift, residual, act, 0.f, 6.f, threads);
}

// Sparse weights x dense B (sparse.hpp). format 0 = CSR (index_bytes 2|4, row_ptr), 1 = 2:4 (index =
// metadata bytes, koff optional). geom: null, or the 13-entry Im2col geometry of an implicit conv.
// kblocks: CSR column blocks (row_ptr holds kblocks x (M + 1) entries).
SHIM void k_spmm(int format, int index_bytes, int64_t M, int64_t K, const float* values, const void* index,
                 const int32_t* row_ptr, int64_t scale, const int32_t* koff, int64_t batch, const float* B,
                 int64_t sB, int64_t N, float* C, int64_t ldc, int64_t sC, const float* bias, int bias_axis,
                 const float* residual, int act, float alpha, float beta, int nr, int threads,
                 const int64_t* geom, int64_t kblocks) {
  inferon::SparseA a;
  a.kblocks = kblocks;
  a.format = format;
  a.index_bytes = index_bytes;
  a.M = M;
  a.K = K;
  a.values = values;
  a.index = index;
  a.row_ptr = row_ptr;
  a.scale = scale;
  a.koff = koff;
  const inferon::Epilogue ep = make_epilogue(bias, bias_axis, residual, act, alpha, beta);
  inferon::Im2col q{};
  if (geom) {
    q = {geom[0], geom[1], geom[2], static_cast<int>(geom[3]), static_cast<int>(geom[4]),
         static_cast<int>(geom[5]), static_cast<int>(geom[6]), static_cast<int>(geom[7]),
         static_cast<int>(geom[8]), static_cast<int>(geom[9]), static_cast<int>(geom[10]), geom[11], geom[12], 1};
  }
  inferon::spmm(a, batch, B, sB, N, C, ldc, sC, ep, nr, threads, geom ? &q : nullptr);
}

// Quantized GEMM: A packed (pack_weights.pack_a_int8(A, 6)), or (row_ptr set) block-sparse A
// (inferon.ir.sparse.block4_encode: a = values, index uint16 / int32 with index32, kchunks); geometry = the 13
// b_im2col entries + the implicit flag (then K is in inferon.ir.quant.implicit_weight_order) or null (then B is [K, N] with row stride ldb, or [N, K] with b_trans).
static void qgemm_call(int64_t M, int64_t N, int64_t K, const int8_t* a, const void* index, const int32_t* row_ptr,
                       int index32, int64_t kchunks, const uint8_t* b, int64_t ldb, int b_trans, int b_signed, const int64_t* geometry,
                       int pad, const int32_t* comp, const int32_t* mult, void* c, int64_t ldc, int64_t ldc_col,
                       int c_signed, int zy, int lo, int hi, int threads, bool a_lanes = false,
                       const int32_t* fix = nullptr, bool quads = false) {
  inferon::QGemm g;
  g.a_lanes = a_lanes;
  g.fix = fix;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = a;
  g.sparse = {index, row_ptr, index32 != 0, kchunks, quads};
  g.b = b;
  g.ldb = ldb;
  g.b_trans = b_trans != 0;
  g.b_signed = b_signed != 0;
  inferon::Im2col q{};
  if (geometry) {
    q = inferon::Im2col{geometry[0], geometry[1], geometry[2], static_cast<int>(geometry[3]),
                        static_cast<int>(geometry[4]), static_cast<int>(geometry[5]), static_cast<int>(geometry[6]),
                        static_cast<int>(geometry[7]), static_cast<int>(geometry[8]), static_cast<int>(geometry[9]),
                        static_cast<int>(geometry[10]), geometry[11], geometry[12], static_cast<int>(geometry[13])};
    g.im2col = &q;
  }
  g.pad = static_cast<uint8_t>(pad);
  g.comp = comp;
  g.rq = reinterpret_cast<const inferon::Requant*>(mult);  // quant.fixed_point records
  g.c = c;
  g.ldc = ldc;
  g.ldc_col = ldc_col;
  g.c_signed = c_signed != 0;
  g.zy = zy;
  g.lo = lo;
  g.hi = hi;
  inferon::qgemm(g, threads);
}

SHIM void k_qgemm(int64_t M, int64_t N, int64_t K, const int8_t* a, const uint8_t* b, int64_t ldb, int b_trans,
                  int b_signed, const int64_t* geometry, int pad, const int32_t* comp, const int32_t* mult, void* c,
                  int64_t ldc, int64_t ldc_col, int c_signed, int zy, int lo, int hi, int threads) {
  qgemm_call(M, N, K, a, nullptr, nullptr, 0, 1, b, ldb, b_trans, b_signed, geometry, pad, comp, mult, c, ldc, ldc_col,
             c_signed, zy, lo, hi, threads);
}

// A pair-safe A (pack_a_int8 of pair_safe_split's weights) with its corrections `fix`.
SHIM void k_qgemm_fix(int64_t M, int64_t N, int64_t K, const int8_t* a, const uint8_t* b, int64_t ldb, int b_trans,
                      int b_signed, const int64_t* geometry, int pad, const int32_t* comp, const int32_t* mult, void* c,
                      int64_t ldc, int64_t ldc_col, int c_signed, int zy, int lo, int hi, int threads, const int32_t* fix) {
  qgemm_call(M, N, K, a, nullptr, nullptr, 0, 1, b, ldb, b_trans, b_signed, geometry, pad, comp, mult, c, ldc, ldc_col,
             c_signed, zy, lo, hi, threads, false, fix);
}

// A packed as vector lanes (pack_a_int8(A, 32)): the few-columns kernels of qlanes.hpp.
SHIM void k_qgemm_lanes(int64_t M, int64_t N, int64_t K, const int8_t* a, const uint8_t* b, int64_t ldb, int b_trans,
                        int b_signed, const int64_t* geometry, int pad, const int32_t* comp, const int32_t* mult, void* c,
                        int64_t ldc, int64_t ldc_col, int c_signed, int zy, int lo, int hi, int threads) {
  qgemm_call(M, N, K, a, nullptr, nullptr, 0, 1, b, ldb, b_trans, b_signed, geometry, pad, comp, mult, c, ldc, ldc_col,
             c_signed, zy, lo, hi, threads, true);
}

SHIM void k_qgemm_sparse(int64_t M, int64_t N, int64_t K, const int8_t* values, const void* index, int index32,
                         const int32_t* row_ptr, int64_t kchunks, const uint8_t* b, int64_t ldb, int b_trans, int b_signed,
                         const int64_t* geometry, int pad, const int32_t* comp, const int32_t* mult, void* c,
                         int64_t ldc, int64_t ldc_col, int c_signed, int zy, int lo, int hi, int threads) {
  qgemm_call(M, N, K, values, index, row_ptr, index32, kchunks, b, ldb, b_trans, b_signed, geometry, pad, comp, mult, c, ldc,
             ldc_col, c_signed, zy, lo, hi, threads);
}

// A in CSR quads (inferon.ir.sparse.csr_quad_encode; qcsr.hpp).
SHIM void k_qgemm_csr(int64_t M, int64_t N, int64_t K, const int8_t* values, const void* index, int index32,
                      const int32_t* row_ptr, int64_t kchunks, const uint8_t* b, int64_t ldb, int b_trans, int b_signed,
                      const int64_t* geometry, int pad, const int32_t* comp, const int32_t* mult, void* c, int64_t ldc,
                      int64_t ldc_col, int c_signed, int zy, int lo, int hi, int threads) {
  qgemm_call(M, N, K, values, index, row_ptr, index32, kchunks, b, ldb, b_trans, b_signed, geometry, pad, comp, mult, c,
             ldc, ldc_col, c_signed, zy, lo, hi, threads, false, nullptr, true);
}

// geometry: N C H W M Ho Wo kh kw sh sw pt pl dh dw; requant: zy lo hi pad (stored input zero point).
// requant.hpp on n accumulators, element i with record rq[i] (int32 x 4): scalar, or AVX2 with 8
// channels per vector (requant8_channels, the lanes kernels' form) and `rows` valid lanes per group.
INFERON_AVX2 static void requant_group_avx2(const inferon::Requant* r, int rows, const int32_t* a, int zy, int lo,
                                             int hi, int32_t* q) {
  const inferon::Requant8 k = inferon::requant8_channels(r, rows, zy, lo, hi);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      inferon::requant8(k, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))));
}

// The AVX-512 form: 16 lanes, channels per lane (requant16_pair of two 8-lane groups), or with
// `row` every lane with the group's first record (requant16_row, the row kernels' form).
INFERON_VNNI static void requant_group_avx512(const inferon::Requant* r, int rows, const int32_t* a, int zy, int lo,
                                              int hi, bool row, int32_t* q) {
  using namespace inferon::qgemm_detail;
  const Requant16 k = row ? requant16_row(r[0], zy, lo, hi)
                          : requant16_pair(inferon::requant8_channels(r, std::min(rows, 8), zy, lo, hi),
                                           inferon::requant8_channels(r + 8, std::max(rows - 8, 0), zy, lo, hi));
  _mm512_storeu_si512(q, requant16(k, _mm512_loadu_si512(a)));
}

// isa: 0 scalar, 1 AVX2 (8 channels per vector), 2 AVX-512 (16 channels per vector), 3 AVX-512 with
// one channel per 16 lanes (the record of each group's first element).
SHIM void k_requant(const int32_t* acc, const int32_t* rq, int64_t n, int zy, int lo, int hi, int32_t* out, int isa) {
  const auto* r = reinterpret_cast<const inferon::Requant*>(rq);
  int64_t i = 0;
  if (isa >= INFERON_ISA_AVX512)
    for (; i < n; i += 16) {
      const int rows = static_cast<int>(std::min<int64_t>(16, n - i));
      int32_t a[16] = {}, q[16];
      std::memcpy(a, acc + i, sizeof(int32_t) * rows);
      requant_group_avx512(r + i, rows, a, zy, lo, hi, isa == 3, q);
      std::memcpy(out + i, q, sizeof(int32_t) * rows);
    }
  if (isa == INFERON_ISA_AVX2)
    for (; i < n; i += 8) {
      const int rows = static_cast<int>(std::min<int64_t>(8, n - i));
      int32_t a[8] = {}, q[8];
      std::memcpy(a, acc + i, sizeof(int32_t) * rows);
      requant_group_avx2(r + i, rows, a, zy, lo, hi, q);
      std::memcpy(out + i, q, sizeof(int32_t) * rows);
    }
  for (; i < n; i++) out[i] = inferon::requant_scalar(r[i], acc[i], zy, lo, hi);
}

SHIM void k_qdepthwise(const void* x, void* y, const int64_t* geo, const int8_t* w, const int32_t* comp,
                       const int32_t* mult, const int* requant, int x_signed, int y_signed, int threads) {
  const inferon::QDepthwise g{geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6],
                              static_cast<int>(geo[7]), static_cast<int>(geo[8]), static_cast<int>(geo[9]),
                              static_cast<int>(geo[10]), static_cast<int>(geo[11]), static_cast<int>(geo[12]),
                              static_cast<int>(geo[13]), static_cast<int>(geo[14]), w, comp, reinterpret_cast<const inferon::Requant*>(mult),
                              requant[0], requant[1], requant[2], static_cast<uint8_t>(requant[3])};
  auto run = [&](auto xt, auto yt) {
    using X = decltype(xt);
    using Y = decltype(yt);
    inferon::qdepthwise_conv2d(g, static_cast<const X*>(x), static_cast<Y*>(y), threads);
  };
  if (x_signed) {
    if (y_signed) run(int8_t{}, int8_t{});
    else run(int8_t{}, uint8_t{});
  } else {
    if (y_signed) run(uint8_t{}, int8_t{});
    else run(uint8_t{}, uint8_t{});
  }
}

// kind: 0 uint8, 1 int8 (quantize); 0 uint8, 1 int8, 2 int32 (dequantize).
SHIM void k_quantize(const float* x, void* y, int64_t n, float scale, int zp, int kind, int threads) {
  if (kind == 1) inferon::quantize_linear(x, static_cast<int8_t*>(y), n, scale, zp, threads);
  else inferon::quantize_linear(x, static_cast<uint8_t*>(y), n, scale, zp, threads);
}

SHIM void k_dequantize(const void* x, float* y, int64_t n, float scale, int zp, int kind, int threads) {
  if (kind == 2) inferon::dequantize_linear(static_cast<const int32_t*>(x), y, n, scale, zp, threads);
  else if (kind == 1) inferon::dequantize_linear(static_cast<const int8_t*>(x), y, n, scale, zp, threads);
  else inferon::dequantize_linear(static_cast<const uint8_t*>(x), y, n, scale, zp, threads);
}

SHIM void k_qmax_pool2d(const void* x, void* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                        const int* g /* kh kw sh sw pt pl pb pr dh dw */, int is_signed, int threads) {
  if (is_signed)
    inferon::qmax_pool2d(static_cast<const int8_t*>(x), static_cast<int8_t*>(y), NC, H, W, Ho, Wo, g[0], g[1], g[2],
                         g[3], g[4], g[5], g[6], g[7], g[8], g[9], threads);
  else
    inferon::qmax_pool2d(static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), NC, H, W, Ho, Wo, g[0], g[1], g[2],
                         g[3], g[4], g[5], g[6], g[7], g[8], g[9], threads);
}

SHIM void k_qavg_pool2d(const uint8_t* x, uint8_t* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                        const int* g /* kh kw sh sw pt pl pb pr dh dw */, int include_pad, float sx, int zx, float sy,
                        int zy, int threads) {
  inferon::qavg_pool2d(x, y, NC, H, W, Ho, Wo, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], include_pad,
                       sx, zx, sy, zy, threads);
}
