// inferon IR (vec level) after plan-memory
builtin.module {
  func.func @main(%0: memref<1x3x16x16xf32> {inferon.name = "x"}, %1: memref<1x10xf32> {inferon.name = "y"}) attributes {inferon.num_inputs = 1 : i64, inferon.arena_floats = 22528 : i64} {
    %2 = "loop.weight"() <{handle = "bn_folded_w"}> : () -> memref<8x3x3x3xf32>
    %3 = "loop.weight"() <{handle = "bn_folded_b"}> : () -> memref<8xf32>
    %4 = "loop.alloc"() <{offset = 18432 : i64}> : () -> memref<1x8x16x16xf32>
    %5 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x27x256xf32>
    "loop.im2col"(%0, %5) <{geometry = array<i64: 1, 3, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16>}> : (memref<1x3x16x16xf32>, memref<1x27x256xf32>) -> ()
    "vec.gemm"(%2, %5, %3, %4) <{dims = array<i64: 8, 256, 27>, leading = array<i64: 27, 256, 256>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 216>, b_strides = array<i64: 6912, 6912>, c_strides = array<i64: 2048, 2048>, bias_axis = 0 : i64, bias_strides = array<i64: 0, 8>, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, tiles = #loop.tiles<12 : i64, 27 : i64, 256 : i64>, mr = 6 : i64, nr = 16 : i64}> : (memref<8x3x3x3xf32>, memref<1x27x256xf32>, memref<8xf32>, memref<1x8x16x16xf32>) -> ()
    %6 = "loop.weight"() <{handle = "w2"}> : () -> memref<8x8x3x3xf32>
    %7 = "loop.alloc"() <{offset = 20480 : i64}> : () -> memref<1x8x16x16xf32>
    %8 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x72x256xf32>
    "loop.im2col"(%4, %8) <{geometry = array<i64: 1, 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16>}> : (memref<1x8x16x16xf32>, memref<1x72x256xf32>) -> ()
    "vec.gemm"(%6, %8, %4, %7) <{dims = array<i64: 8, 256, 72>, leading = array<i64: 72, 256, 256>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 576>, b_strides = array<i64: 18432, 18432>, c_strides = array<i64: 2048, 2048>, bias_axis = 0 : i64, bias_strides = array<i64: 0, 8>, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 1, 1>, tiles = #loop.tiles<12 : i64, 72 : i64, 256 : i64>, mr = 6 : i64, nr = 16 : i64}> : (memref<8x8x3x3xf32>, memref<1x72x256xf32>, memref<1x8x16x16xf32>, memref<1x8x16x16xf32>) -> ()
    %9 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x8x8x8xf32>
    "loop.pool2d"(%7, %9) <{geometry = array<i64: 8, 16, 16, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1>, is_max = true, count_include_pad = false}> : (memref<1x8x16x16xf32>, memref<1x8x8x8xf32>) -> ()
    %10 = "loop.alloc"() <{offset = 512 : i64}> : () -> memref<1x8x1x1xf32>
    "loop.global_pool"(%9, %10) <{planes = 8 : i64, plane_size = 64 : i64, is_max = false}> : (memref<1x8x8x8xf32>, memref<1x8x1x1xf32>) -> ()
    %11 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x8xf32>
    "loop.copy"(%10, %11) <{rows = 1 : i64, row_len = 8 : i64, stride = 8 : i64, offset = 0 : i64}> : (memref<1x8x1x1xf32>, memref<1x8xf32>) -> ()
    %12 = "loop.weight"() <{handle = "wfc"}> : () -> memref<8x10xf32>
    %13 = "loop.weight"() <{handle = "fused_bias"}> : () -> memref<10xf32>
    "vec.gemm"(%11, %12, %13, %1) <{dims = array<i64: 1, 10, 8>, leading = array<i64: 8, 10, 10>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 0>, b_strides = array<i64: 0, 0>, c_strides = array<i64: 0, 0>, bias_axis = 1 : i64, bias_strides = array<i64: 0, 0>, epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, tiles = #loop.tiles<6 : i64, 8 : i64, 16 : i64>, mr = 6 : i64, nr = 16 : i64}> : (memref<1x8xf32>, memref<8x10xf32>, memref<10xf32>, memref<1x10xf32>) -> ()
    func.return
  }
}
