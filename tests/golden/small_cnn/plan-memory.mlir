// inferon IR (vec level) after plan-memory
builtin.module {
  func.func @main(%0: memref<1x3x16x16xf32> {inferon.name = "x"}, %1: memref<1x10xf32> {inferon.name = "y"}) attributes {inferon.num_inputs = 1 : i64, inferon.arena_floats = 4096 : i64} {
    %2 = "loop.weight"() <{handle = "bn_folded_w.packed6x27"}> : () -> memref<324xf32>
    %3 = "loop.weight"() <{handle = "bn_folded_b"}> : () -> memref<8xf32>
    %4 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x8x16x16xf32>
    "vec.gemm"(%2, %0, %3, %4) <{dims = array<i64: 8, 256, 27>, leading = array<i64: 27, 256, 256>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 0>, b_strides = array<i64: 768, 768>, c_strides = array<i64: 2048, 2048>, bias_axis = 0 : i64, bias_strides = array<i64: 0, 8>, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, b_im2col = array<i64: 3, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16>, tiles = #loop.tiles<12 : i64, 27 : i64, 256 : i64>, mr = 6 : i64, nr = 16 : i64, a_packed}> : (memref<324xf32>, memref<1x3x16x16xf32>, memref<8xf32>, memref<1x8x16x16xf32>) -> ()
    %5 = "loop.weight"() <{handle = "w2.packed6x72"}> : () -> memref<864xf32>
    %6 = "loop.alloc"() <{offset = 2048 : i64}> : () -> memref<1x8x16x16xf32>
    "vec.gemm"(%5, %4, %4, %6) <{dims = array<i64: 8, 256, 72>, leading = array<i64: 72, 256, 256>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 0>, b_strides = array<i64: 2048, 2048>, c_strides = array<i64: 2048, 2048>, bias_axis = 0 : i64, bias_strides = array<i64: 0, 8>, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 1, 1>, b_im2col = array<i64: 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16>, tiles = #loop.tiles<12 : i64, 72 : i64, 256 : i64>, mr = 6 : i64, nr = 16 : i64, a_packed}> : (memref<864xf32>, memref<1x8x16x16xf32>, memref<1x8x16x16xf32>, memref<1x8x16x16xf32>) -> ()
    %7 = "loop.alloc"() <{offset = 0 : i64}> : () -> memref<1x8x8x8xf32>
    "loop.pool2d"(%6, %7) <{geometry = array<i64: 8, 16, 16, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1>, is_max = true, count_include_pad = false}> : (memref<1x8x16x16xf32>, memref<1x8x8x8xf32>) -> ()
    %8 = "loop.alloc"() <{offset = 512 : i64}> : () -> memref<1x8xf32>
    %9 = "loop.slice"(%8) <{offset = 0 : i64}> : (memref<1x8xf32>) -> memref<1x8x1x1xf32>
    "loop.global_pool"(%7, %9) <{planes = 8 : i64, plane_size = 64 : i64, is_max = false}> : (memref<1x8x8x8xf32>, memref<1x8x1x1xf32>) -> ()
    %10 = "loop.weight"() <{handle = "wfc", sparse = #graph.sparse<#graph<format dense>, 1.000000e+00 : f32, 0 : i64>}> : () -> memref<8x10xf32>
    %11 = "loop.weight"() <{handle = "fused_bias"}> : () -> memref<10xf32>
    "vec.gemm"(%8, %10, %11, %1) <{dims = array<i64: 1, 10, 8>, leading = array<i64: 8, 10, 10>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 0>, b_strides = array<i64: 0, 0>, c_strides = array<i64: 0, 0>, bias_axis = 1 : i64, bias_strides = array<i64: 0, 0>, epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, tiles = #loop.tiles<6 : i64, 8 : i64, 16 : i64>, mr = 6 : i64, nr = 16 : i64}> : (memref<1x8xf32>, memref<8x10xf32>, memref<10xf32>, memref<1x10xf32>) -> ()
    func.return
  }
}
