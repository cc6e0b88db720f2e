"""Each pass on its own: its structural effect, and numerics unchanged (numpy interpreter as oracle)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from inferon.frontend.onnx.importer import import_model
from inferon.ir import interpreter
from inferon.ir.context import make_context
from inferon.ir.dialects import loop, vec
from inferon.passes.loop.plan_memory import plan
from inferon.pipeline import run_passes
from tests.conftest import make_model

GRAPH_PASSES = ["remove-identities", "fold-batchnorm", "decompose-batchnorm", "fold-constants", "fuse-epilogue"]


def _ops(module: object) -> list[str]:
    return [op.name for op in module.walk()]  # type: ignore[attr-defined]


def _check_equivalent(model: onnx.ModelProto, names: list[str]) -> tuple[list[str], list[str]]:
    """Run `names` and check the interpreter gives the same outputs before and after."""
    module, weights = import_model(model)
    ctx = make_context(weights)
    fn = next(iter(module.ops))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(a.type.get_shape()).astype(np.float32) for a in fn.body.block.args]  # type: ignore[attr-defined]
    before = interpreter.run(module, weights, inputs)
    ops_before = _ops(module)
    run_passes(ctx, module, names)
    after = interpreter.run(module, weights, inputs)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return ops_before, _ops(module)


def test_remove_identities() -> None:
    model = make_model(
        [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Dropout", ["a"], ["b"]),
         helper.make_node("Relu", ["b"], ["y"])],
        {"x": (2, 3)}, ["y"],
    )  # fmt: skip
    before, after = _check_equivalent(model, ["remove-identities"])
    assert before.count("graph.identity") == 2 and "graph.identity" not in after


def test_fold_batchnorm(small_cnn: onnx.ModelProto) -> None:
    before, after = _check_equivalent(small_cnn, ["fold-batchnorm"])
    assert "graph.batch_norm" in before and "graph.batch_norm" not in after


def test_decompose_batchnorm_then_fold_constants() -> None:
    c = 4
    rng = np.random.default_rng(1)
    init = {k: rng.random(c) + 0.5 for k in ("s", "b", "m", "v")}
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"])],
        {"x": (1, c, 5, 5)}, ["y"], init,
    )  # fmt: skip
    _, after = _check_equivalent(model, ["fold-batchnorm", "decompose-batchnorm", "fold-constants"])
    assert "graph.batch_norm" not in after
    assert after.count("graph.channel_affine") == 1  # x * s + shift
    assert after.count("graph.weight") == 2 and "graph.sqrt" not in after  # s and shift folded


def test_batchnorm_relu_fuses_into_one_channel_affine(tmp_path: Path) -> None:
    """An unfolded BatchNorm (after a ReLU) + ReLU + residual Add become one graph.channel_affine."""
    c = 4
    rng = np.random.default_rng(2)
    init = {k: rng.random(c) + 0.5 for k in ("s", "b", "m", "v")}
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["n"]),
         helper.make_node("Add", ["n", "x"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        {"x": (2, c, 5, 3)}, ["y"], init,
    )  # fmt: skip
    _, after = _check_equivalent(model, ["fold-batchnorm", "decompose-batchnorm", "fold-constants", "fuse-epilogue"])
    assert after.count("graph.channel_affine") == 1 and after.count("graph.relu") == 1 and "graph.add" not in after
    from inferon.testing import run_onnxruntime

    x = np.random.default_rng(3).standard_normal((2, c, 5, 3)).astype(np.float32)
    for isa in ("avx2", "scalar"):
        os.environ["INFERON_ISA"] = isa
        try:
            got = inferon.load(inferon.compile(model, tmp_path / "m.so"), threads=2)(x)
        finally:
            del os.environ["INFERON_ISA"]
        np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_fuse_epilogue(small_cnn: onnx.ModelProto) -> None:
    _, after = _check_equivalent(small_cnn, GRAPH_PASSES)
    assert "graph.relu" not in after and "graph.add" not in after


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Sigmoid", "Clip"])
def test_fuse_each_activation(act: str) -> None:
    rng = np.random.default_rng(2)
    init = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4)}
    extra = {"min": np.float32(-0.5), "max": np.float32(0.5)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"])]
    if act == "Clip":
        init.update(extra)
        nodes.append(helper.make_node("Clip", ["c", "min", "max"], ["y"]))
    else:
        nodes.append(helper.make_node(act, ["c"], ["y"]))
    model = make_model(nodes, {"x": (1, 3, 6, 6)}, ["y"], init)
    _, after = _check_equivalent(model, GRAPH_PASSES)
    assert after.count("graph.conv2d") == 1 and len([o for o in after if o.startswith("graph.") and o != "graph.weight"]) == 1


def test_no_fusion_when_conv_output_has_two_uses() -> None:
    rng = np.random.default_rng(3)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Add", ["c", "r"], ["y"])],
        {"x": (1, 2, 4, 4)}, ["y"], {"w": rng.standard_normal((2, 2, 1, 1))},
    )  # fmt: skip
    _, after = _check_equivalent(model, GRAPH_PASSES)
    assert "graph.relu" in after and "graph.add" in after


def test_lowering_passes(small_cnn: onnx.ModelProto) -> None:
    module, weights = import_model(small_cnn)
    ctx = make_context(weights)
    run_passes(ctx, module, GRAPH_PASSES + ["convert-graph-to-loop"])
    names = _ops(module)
    assert not any(n.startswith("graph.") for n in names)
    assert names.count("loop.conv2d") == 2 and names.count("loop.matmul") == 1
    run_passes(ctx, module, ["conv-to-im2col"])
    # both 3x3 convs have 8 > 6 output channels: im2col is fused into the GEMM's B packing
    matmuls = [op for op in module.walk() if isinstance(op, loop.MatMulOp)]
    assert "loop.im2col" not in _ops(module) and len(matmuls) == 3
    assert sum(m.b_im2col is not None for m in matmuls) == 2
    run_passes(ctx, module, ["select-tiles", "convert-loop-to-vec", "pack-weights"])
    gemms = [op for op in module.walk() if isinstance(op, vec.GemmOp)]
    assert len(gemms) == 3 and all(g.tiles is not None for g in gemms)
    assert [g.a_packed is not None for g in gemms] == [True, True, False]  # the FC's A is the activation
    run_passes(ctx, module, ["plan-memory"])
    allocs = [op for op in module.walk() if isinstance(op, loop.AllocOp)]
    assert all(a.offset is not None for a in allocs)


def test_one_by_one_conv_needs_no_im2col() -> None:
    rng = np.random.default_rng(4)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": (1, 8, 5, 5)}, ["y"],
                       {"w": rng.standard_normal((4, 8, 1, 1))})  # fmt: skip
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "conv-to-im2col"])
    assert "loop.im2col" not in _ops(module) and "loop.matmul" in _ops(module)


def test_small_conv_gets_an_im2col_buffer() -> None:
    # 4 output channels: a single register tile of rows, so B is materialised by loop.im2col
    rng = np.random.default_rng(5)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"x": (1, 3, 6, 6)}, ["y"],
                       {"w": rng.standard_normal((4, 3, 3, 3))})  # fmt: skip
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "conv-to-im2col"])
    assert _ops(module).count("loop.im2col") == 1


def test_pack_a_layout() -> None:
    from inferon.passes.vec.pack_weights import pack_a

    rng = np.random.default_rng(6)
    m, k, mr, kc = 13, 10, 6, 4
    a = rng.standard_normal((m, k)).astype(np.float32)
    packed = pack_a(a, mr, kc)
    mpad = 18
    assert packed.size == mpad * k
    for i in range(mpad):
        for kk in range(k):
            p = kk // kc * kc
            kcur = min(kc, k - p)
            got = packed[p * mpad + (i // mr) * mr * kcur + (kk - p) * mr + i % mr]
            assert got == (a[i, kk] if i < m else 0.0)


def test_pack_weights_packs_conv_filters_per_group() -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])],
                       {"x": (1, 8, 6, 6)}, ["y"], {"w": w})  # fmt: skip
    module, weights = import_model(model)
    run_passes(make_context(weights), module,
               ["convert-graph-to-loop", "conv-to-im2col", "select-tiles", "convert-loop-to-vec", "pack-weights"])  # fmt: skip
    (gemm,) = [op for op in module.walk() if isinstance(op, vec.GemmOp)]
    assert gemm.a_packed is not None and list(gemm.a_strides.get_values()) == [0, 12 * 36]
    from inferon.passes.vec.pack_weights import pack_a

    packed = weights[gemm.a.owner.handle.data]  # type: ignore[attr-defined]
    kc = gemm.tiles.values()[1]
    for g in range(2):
        np.testing.assert_array_equal(packed[g * 432 : (g + 1) * 432], pack_a(w[g * 8 : (g + 1) * 8].reshape(8, 36), 6, kc))
    assert not any(isinstance(op, loop.WeightOp) and op.handle.data == "w" for op in module.walk())


def test_pack_weights_packs_constant_matmul_b(compile_and_load) -> None:  # type: ignore[no-untyped-def]
    """x[M, K] @ W[K, N] with a constant W and M > 6 rows: W is packed in nr-column panels at compile time
    (b_packed; M <= 6 keeps the streaming small-M path), and the model still matches ONNX Runtime."""
    from inferon.passes.vec.pack_weights import pack_b
    from inferon.testing import run_onnxruntime

    rng = np.random.default_rng(8)
    w1, w2 = rng.standard_normal((24, 37)).astype(np.float32), rng.standard_normal((37, 19)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"]), helper.make_node("MatMul", ["s", "w1"], ["z"])]
    model = make_model(nodes, {"x": (2, 13, 24), "s": (3, 24)}, ["y", "z"], {"w1": w1, "w2": w2})
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["remove-identities", "fold-constants", "fuse-epilogue",
               "convert-graph-to-loop", "select-tiles", "convert-loop-to-vec", "pack-weights"])  # fmt: skip
    gemms = [op for op in module.walk() if isinstance(op, vec.GemmOp)]
    assert [g.b_packed is not None for g in gemms] == [True, True, False]
    first = gemms[0]
    assert list(first.b_strides.get_values()) == [0, 0]  # one W for the whole batch
    np.testing.assert_array_equal(weights[first.b.owner.handle.data], pack_b(w1, first.nr.value.data))  # type: ignore[attr-defined]
    feeds = {"x": rng.standard_normal((2, 13, 24)).astype(np.float32), "s": rng.standard_normal((3, 24)).astype(np.float32)}
    got = compile_and_load(model).run(feeds)
    for name, want in zip(["y", "z"], run_onnxruntime(model, feeds), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)


def test_plan_memory_reuses_dead_buffers() -> None:
    # a chain a -> b -> c: a and c may share memory, b overlaps both
    offsets, total = plan([(100, 0, 1), (100, 1, 2), (100, 2, 3)])
    assert offsets[0] == offsets[2] != offsets[1]
    assert total == 2 * 112  # 100 floats rounded up to 64 bytes
    # overlapping lifetimes never share
    offsets, _ = plan([(10, 0, 5), (20, 2, 3), (30, 4, 6)])
    spans = [(offsets[i], offsets[i] + s) for i, s in enumerate((16, 32, 32))]
    lives = [(0, 5), (2, 3), (4, 6)]
    for i in range(3):
        for j in range(i + 1, 3):
            if not (lives[i][1] < lives[j][0] or lives[j][1] < lives[i][0]):
                assert spans[i][1] <= spans[j][0] or spans[j][1] <= spans[i][0]


def test_fold_constants_folds_weight_only_subgraph() -> None:
    from xdsl.parser import Parser

    from inferon.ir.weights import WeightStore

    text = """builtin.module {
  func.func @main(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %a = "graph.weight"() <{handle = "a"}> : () -> tensor<3x2xf32>
    %t = "graph.transpose"(%a) <{perm = array<i64: 1, 0>}> : (tensor<3x2xf32>) -> tensor<2x3xf32>
    %e = "graph.exp"(%t) <{alpha = 0.0 : f32, beta = 0.0 : f32}> : (tensor<2x3xf32>) -> tensor<2x3xf32>
    %y = "graph.add"(%x, %e) : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    func.return %y : tensor<2x3xf32>
  }
}"""
    weights = WeightStore()
    a = np.arange(6, dtype=np.float32).reshape(3, 2) / 6
    weights.arrays["a"] = a
    ctx = make_context(weights)
    module = Parser(ctx, text).parse_module()
    run_passes(ctx, module, ["fold-constants"])
    assert _ops(module).count("graph.weight") == 1
    assert "graph.transpose" not in _ops(module) and "graph.exp" not in _ops(module)
    x = np.zeros((2, 3), np.float32)
    (y,) = interpreter.run(module, weights, [x])
    np.testing.assert_allclose(y, np.exp(a.T), rtol=1e-6)


def test_whole_plane_pools_lower_to_the_global_pool(tmp_path: Path) -> None:
    """An AveragePool / MaxPool whose one window is the whole unpadded plane (ResNet's 7x7 average
    pool) lowers to loop.global_pool; a padded or strided-window pool stays a loop.pool2d. Outputs
    match ONNX Runtime."""
    from inferon.testing import run_onnxruntime

    model = make_model(
        [helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[7, 6]),
         helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[7, 6]),
         helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[7, 6], pads=[1, 0, 0, 0]),
         helper.make_node("MaxPool", ["x"], ["s"], kernel_shape=[3, 3], strides=[3, 3])],
        {"x": (2, 5, 7, 6)}, ["a", "m", "p", "s"],
    )  # fmt: skip
    module, weights = import_model(model)
    ctx = make_context(weights)
    run_passes(ctx, module, [*GRAPH_PASSES, "convert-graph-to-loop"])
    ops = _ops(module)
    assert ops.count("loop.global_pool") == 2 and ops.count("loop.pool2d") == 2
    x = np.random.default_rng(4).standard_normal((2, 5, 7, 6)).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    for g, want in zip(got, run_onnxruntime(model, {"x": x}), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


def test_whole_plane_quantized_pools_lower_to_the_global_pool(tmp_path: Path) -> None:
    """The same for pools between DequantizeLinear and QuantizeLinear (a QDQ model): the quantized
    global pool kernels, within one output step of ONNX Runtime's dequantize -> pool -> quantize."""
    from inferon.pipeline import DEFAULT_PASSES
    from inferon.testing import run_onnxruntime

    init = {"s": np.float32(0.05), "z": np.uint8(128), "so": np.float32(0.02), "zo": np.uint8(100)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
    for op, y in (("AveragePool", "a"), ("MaxPool", "m")):
        nodes += [helper.make_node(op, ["xd"], [f"{y}p"], kernel_shape=[7, 6]),
                  helper.make_node("QuantizeLinear", [f"{y}p", "so", "zo"], [f"{y}q"]),
                  helper.make_node("DequantizeLinear", [f"{y}q", "so", "zo"], [y])]  # fmt: skip
    graph_ = helper.make_graph(
        nodes, "qpool", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 9, 7, 6])],
        [helper.make_tensor_value_info(y, onnx.TensorProto.FLOAT, None) for y in ("a", "m")],
        [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()],
    )
    model = helper.make_model(graph_, opset_imports=[helper.make_opsetid("", 13)])
    module, weights = import_model(model)
    names = [name for _, name in DEFAULT_PASSES]
    run_passes(make_context(weights), module, names[: names.index("convert-graph-to-loop") + 1])
    ops = _ops(module)
    assert ops.count("loop.global_pool") == 2 and "loop.pool2d" not in ops
    pools = [op for op in module.walk() if op.name == "loop.global_pool"]  # type: ignore[attr-defined]
    assert sum("quant" in op.properties for op in pools) == 1  # the average pool runs on the integers
    x = (np.random.default_rng(5).standard_normal((2, 9, 7, 6)) * 2).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "q.so"))(x)
    for g, want in zip(got, run_onnxruntime(model, {"x": x}), strict=True):
        assert np.abs(g - want).max() <= 0.02 * 1.001
