// inferon IR (loop level) after convert-graph-to-loop
builtin.module {
  func.func @main(%0: memref<1x3x16x16xf32> {inferon.name = "x"}, %1: memref<1x10xf32> {inferon.name = "y"}) attributes {inferon.num_inputs = 1 : i64} {
    %2 = "loop.weight"() <{handle = "bn_folded_w", sparse = #graph.sparse<#graph<format dense>, 1.000000e+00 : f32, 0 : i64>}> : () -> memref<8x3x3x3xf32>
    %3 = "loop.weight"() <{handle = "bn_folded_b"}> : () -> memref<8xf32>
    %4 = "loop.alloc"() : () -> memref<1x8x16x16xf32>
    "loop.conv2d"(%0, %2, %3, %4) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>}> : (memref<1x3x16x16xf32>, memref<8x3x3x3xf32>, memref<8xf32>, memref<1x8x16x16xf32>) -> ()
    %5 = "loop.weight"() <{handle = "w2", sparse = #graph.sparse<#graph<format dense>, 1.000000e+00 : f32, 0 : i64>}> : () -> memref<8x8x3x3xf32>
    %6 = "loop.alloc"() : () -> memref<1x8x16x16xf32>
    "loop.conv2d"(%4, %5, %4, %6) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 1, 1>}> : (memref<1x8x16x16xf32>, memref<8x8x3x3xf32>, memref<1x8x16x16xf32>, memref<1x8x16x16xf32>) -> ()
    %7 = "loop.alloc"() : () -> memref<1x8x8x8xf32>
    "loop.pool2d"(%6, %7) <{geometry = array<i64: 8, 16, 16, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1>, is_max = true, count_include_pad = false}> : (memref<1x8x16x16xf32>, memref<1x8x8x8xf32>) -> ()
    %8 = "loop.alloc"() : () -> memref<1x8x1x1xf32>
    "loop.global_pool"(%7, %8) <{planes = 8 : i64, plane_size = 64 : i64, is_max = false}> : (memref<1x8x8x8xf32>, memref<1x8x1x1xf32>) -> ()
    %9 = "loop.alloc"() : () -> memref<1x8xf32>
    "loop.copy"(%8, %9) <{rows = 1 : i64, row_len = 8 : i64, stride = 8 : i64, offset = 0 : i64}> : (memref<1x8x1x1xf32>, memref<1x8xf32>) -> ()
    %10 = "loop.weight"() <{handle = "wfc", sparse = #graph.sparse<#graph<format dense>, 1.000000e+00 : f32, 0 : i64>}> : () -> memref<8x10xf32>
    %11 = "loop.weight"() <{handle = "fused_bias"}> : () -> memref<10xf32>
    "loop.matmul"(%9, %10, %11, %1) <{dims = array<i64: 1, 10, 8>, leading = array<i64: 8, 10, 10>, batch = array<i64: 1, 1>, a_strides = array<i64: 0, 0>, b_strides = array<i64: 0, 0>, c_strides = array<i64: 0, 0>, bias_axis = 1 : i64, bias_strides = array<i64: 0, 0>, epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>}> : (memref<1x8xf32>, memref<8x10xf32>, memref<10xf32>, memref<1x10xf32>) -> ()
    func.return
  }
}
