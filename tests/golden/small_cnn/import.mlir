// inferon IR (graph level) after import
builtin.module {
  func.func @main(%0: tensor<1x3x16x16xf32> {inferon.name = "x"}) -> (tensor<1x10xf32> {inferon.name = "y"}) {
    %1 = "graph.weight"() <{handle = "w1"}> : () -> tensor<8x3x3x3xf32>
    %2 = "graph.weight"() <{handle = "b1"}> : () -> tensor<8xf32>
    %3 = "graph.conv2d"(%0, %1, %2) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 1, 0>}> : (tensor<1x3x16x16xf32>, tensor<8x3x3x3xf32>, tensor<8xf32>) -> tensor<1x8x16x16xf32>
    %4 = "graph.weight"() <{handle = "scale"}> : () -> tensor<8xf32>
    %5 = "graph.weight"() <{handle = "shift"}> : () -> tensor<8xf32>
    %6 = "graph.weight"() <{handle = "mean"}> : () -> tensor<8xf32>
    %7 = "graph.weight"() <{handle = "var"}> : () -> tensor<8xf32>
    %8 = "graph.batch_norm"(%3, %4, %5, %6, %7) <{epsilon = 1.000000e-05 : f32}> : (tensor<1x8x16x16xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x8x16x16xf32>
    %9 = "graph.relu"(%8) <{alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32}> : (tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32>
    %10 = "graph.weight"() <{handle = "w2"}> : () -> tensor<8x8x3x3xf32>
    %11 = "graph.conv2d"(%9, %10) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 0>}> : (tensor<1x8x16x16xf32>, tensor<8x8x3x3xf32>) -> tensor<1x8x16x16xf32>
    %12 = "graph.add"(%11, %9) : (tensor<1x8x16x16xf32>, tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32>
    %13 = "graph.relu"(%12) <{alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32}> : (tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32>
    %14 = "graph.max_pool"(%13) <{kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>}> : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
    %15 = "graph.global_avg_pool"(%14) : (tensor<1x8x8x8xf32>) -> tensor<1x8x1x1xf32>
    %16 = "graph.reshape"(%15) : (tensor<1x8x1x1xf32>) -> tensor<1x8xf32>
    %17 = "graph.weight"() <{handle = "wfc"}> : () -> tensor<8x10xf32>
    %18 = "graph.matmul"(%16, %17) <{epilogue = #graph.epilogue<#graph<act none>, 0.000000e+00 : f32, 0.000000e+00 : f32>, operandSegmentSizes = array<i32: 1, 1, 0, 0>}> : (tensor<1x8xf32>, tensor<8x10xf32>) -> tensor<1x10xf32>
    %19 = "graph.weight"() <{handle = "bfc"}> : () -> tensor<10xf32>
    %20 = "graph.add"(%18, %19) : (tensor<1x10xf32>, tensor<10xf32>) -> tensor<1x10xf32>
    func.return %20 : tensor<1x10xf32>
  }
}
