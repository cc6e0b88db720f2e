// inferon IR (graph level) after fuse-epilogue
builtin.module {
  func.func @main(%0: tensor<1x3x16x16xf32> {inferon.name = "x"}) -> (tensor<1x10xf32> {inferon.name = "y"}) {
    %1 = "graph.weight"() <{handle = "bn_folded_w"}> : () -> tensor<8x3x3x3xf32>
    %2 = "graph.weight"() <{handle = "bn_folded_b"}> : () -> tensor<8xf32>
    %3 = "graph.conv2d"(%0, %1, %2) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0>}> : (tensor<1x3x16x16xf32>, tensor<8x3x3x3xf32>, tensor<8xf32>) -> tensor<1x8x16x16xf32>
    %4 = "graph.weight"() <{handle = "w2"}> : () -> tensor<8x8x3x3xf32>
    %5 = "graph.conv2d"(%3, %4, %3) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act relu>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 1>}> : (tensor<1x8x16x16xf32>, tensor<8x8x3x3xf32>, tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32>
    %6 = "graph.max_pool"(%5) <{kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>}> : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
    %7 = "graph.global_avg_pool"(%6) : (tensor<1x8x8x8xf32>) -> tensor<1x8x1x1xf32>
    %8 = "graph.reshape"(%7) : (tensor<1x8x1x1xf32>) -> tensor<1x8xf32>
    %9 = "graph.weight"() <{handle = "wfc"}> : () -> tensor<8x10xf32>
    %10 = "graph.weight"() <{handle = "fused_bias"}> : () -> tensor<10xf32>
    %11 = "graph.matmul"(%8, %9, %10) <{epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0>}> : (tensor<1x8xf32>, tensor<8x10xf32>, tensor<10xf32>) -> tensor<1x10xf32>
    func.return %11 : tensor<1x10xf32>
  }
}
