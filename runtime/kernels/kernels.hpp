// Inferon kernels: everything a generated model.cpp calls. Header-only C++17, namespace
// inferon; include it from exactly one translation unit (the generated model.cpp).
//
// Conventions: float32, row-major, sizes int64_t, strides in elements. Each kernel has a
// scalar path and (where it pays) an AVX2+FMA path chosen at run time from the process-wide
// ISA (see common.hpp / model_abi.h); model.cpp is compiled without -mavx2. Kernels that
// take a trailing `num_threads` (default 1) parallelise with OpenMP when the work is large
// enough.
//
//   common.hpp       ISA state, Act, AVX2 math (exp/sigmoid/tanh), scratch
//   gemm.hpp         gemm (Epilogue, GemmTiles; gemm_lanes.hpp: A as vector lanes for few columns)
//   conv.hpp         im2col, col2im (transposed convolution)
//   winograd.hpp     winograd_input, winograd_output (F(2x2) / F(4x4) 3x3 convolution transforms)
//   depthwise.hpp    depthwise_conv2d (direct, group == C_in)
//   grouped_conv.hpp grouped_conv2d (direct, few channels per group, stride phases)
//   pool.hpp         pool2d, global_pool
//   sparse.hpp       spmm (CSR / 2:4 sparse weights x dense activations; GEMV at N == 1)
//   quant.hpp        quantize_linear, dequantize_linear
//   qgemm.hpp        qgemm (uint8 activations x int8 weights, requantized; VNNI / AVX2 / scalar;
//                    qgemm_base.hpp: parameters, B packing, epilogue; qsparse.hpp: block1x4 A)
//   qdepthwise.hpp   qdepthwise_conv2d (direct quantized depthwise convolution)
//   elementwise.hpp  binary, unary, copy, copy_rows, channel_affine
//   layout.hpp       transpose, strided_copy (Slice / Split / Gather / Expand / Tile windows), pad
//   norm.hpp         softmax, lrn
//   resize.hpp       resize (Resize / Upsample through compile-time tap tables)
//   reduce.hpp       reduce (ONNX Reduce*), arg_reduce (ArgMax / ArgMin), row_norm (layer / group / instance normalisation)
#pragma once

#include "common.hpp"
#include "conv.hpp"
#include "depthwise.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "grouped_conv.hpp"
#include "layout.hpp"
#include "norm.hpp"
#include "pool.hpp"
#include "qdepthwise.hpp"
#include "qgemm.hpp"
#include "quant.hpp"
#include "reduce.hpp"
#include "resize.hpp"
#include "sparse.hpp"
#include "winograd.hpp"
