"""Nodes whose inputs are all constants are evaluated at import time (importer._fold): checked
against ONNX Runtime running the same model, including the ops onnx.reference gets wrong (LRN,
Softmax / LogSoftmax with the pre-opset-13 2-D coercion), which Inferon folds with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import inferon
from inferon.testing import run_onnxruntime
from tests.conftest import make_model


@pytest.mark.parametrize(
    "node, opset",
    [
        (helper.make_node("LRN", ["k"], ["kc"], size=3, alpha=0.5, beta=0.75, bias=1.0), 17),
        (helper.make_node("LRN", ["k"], ["kc"], size=5, alpha=0.2, beta=0.5, bias=2.0), 11),
        (helper.make_node("Softmax", ["k"], ["kc"], axis=1), 11),
        (helper.make_node("Softmax", ["k"], ["kc"]), 9),
        (helper.make_node("LogSoftmax", ["k"], ["kc"], axis=2), 11),
        (helper.make_node("Softmax", ["k"], ["kc"], axis=1), 13),
        (helper.make_node("LogSoftmax", ["k"], ["kc"]), 13),
        (helper.make_node("Relu", ["k"], ["kc"]), 13),
    ],
    ids=lambda v: v.op_type if hasattr(v, "op_type") else str(v),
)
def test_folded_constant_subgraph_matches_onnxruntime(tmp_path, node, opset):
    rng = np.random.default_rng(0)
    k = rng.standard_normal((1, 6, 4, 5)) * 2
    model = make_model([node, helper.make_node("Add", ["x", "kc"], ["y"])], {"x": (1, 6, 4, 5)}, ["y"], {"k": k}, opset)
    x = rng.standard_normal((1, 6, 4, 5)).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def _rank_test_if(then_op: str, else_op: str, rank: int) -> list:
    """PyTorch's export of a shape test: If (Equal(Gather(Shape(x), 0), rank)) with one op per branch."""
    from onnx import TensorProto

    def branch(op: str, out: str) -> object:
        return helper.make_graph([helper.make_node(op, ["x"], [out])], f"b_{out}", [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])  # fmt: skip

    return [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=helper.make_tensor("i0", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["s", "i0"], ["n"]),
        helper.make_node("Constant", [], ["r"], value=helper.make_tensor("r", TensorProto.INT64, [], [rank])),
        helper.make_node("Equal", ["n", "r"], ["c"]),
        helper.make_node("If", ["c"], ["y"], name="rank_test", then_branch=branch(then_op, "t"),
                         else_branch=branch(else_op, "e")),  # fmt: skip
    ]


@pytest.mark.parametrize("rank, want", [(1, "Relu"), (2, "Neg")])
def test_if_with_a_compile_time_condition_inlines_its_branch(tmp_path, rank, want):
    """The condition folds at import (Shape / Gather / Equal), so the taken branch is imported in
    place of the If; outputs against ONNX Runtime."""
    model = make_model(_rank_test_if("Relu", "Neg", rank), {"x": (1, 6)}, ["y"])
    x = np.random.default_rng(1).standard_normal((1, 6)).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0])
    np.testing.assert_allclose(got, np.maximum(x, 0) if want == "Relu" else -x)


def test_if_with_a_run_time_condition_is_rejected(tmp_path):
    from inferon.errors import UnsupportedError

    nodes = _rank_test_if("Relu", "Neg", 1)
    nodes[4] = helper.make_node("Greater", ["x", "x"], ["c0"])  # depends on x's values
    nodes.insert(5, helper.make_node("ReduceMax", ["c0"], ["c"], keepdims=0))
    model = make_model(nodes, {"x": (1, 6)}, ["y"])
    with pytest.raises(UnsupportedError, match=r"node 'rank_test', op If.*run-time condition"):
        inferon.compile(model, tmp_path / "m.so")


def test_lrn_as_pytorch_exports_it(tmp_path):
    """torch.nn.LocalResponseNorm exports as a decomposition: x^2 unsqueezed to 5-D, padded along
    the channels, a 3-D AveragePool of kernel (size, 1, 1) (pooled axis by axis here), an If on the
    rank (folded), then (k + alpha * avg)^beta dividing x."""
    from onnx import TensorProto

    size, alpha, beta, k = 5, 1e-2, 0.75, 1.5
    c = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(  # noqa: E731
        name, TensorProto.INT64 if isinstance(v[0], int) else TensorProto.FLOAT, [len(v)], v))
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        c("ax", [1]), helper.make_node("Unsqueeze", ["sq", "ax"], ["sq5"]),
        c("pads", [0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0]),
        helper.make_node("Pad", ["sq5", "pads"], ["padded"]),
        helper.make_node("AveragePool", ["padded"], ["avg5"], kernel_shape=[size, 1, 1]),
        helper.make_node("Squeeze", ["avg5", "ax"], ["avg"]),
        c("al", [alpha]), helper.make_node("Mul", ["avg", "al"], ["sa"]),
        c("kk", [k]), helper.make_node("Add", ["sa", "kk"], ["den0"]),
        c("be", [beta]), helper.make_node("Pow", ["den0", "be"], ["den"]),
        helper.make_node("Div", ["x", "den"], ["y"]),
    ]  # fmt: skip
    model = make_model(nodes, {"x": (1, 12, 7, 9)}, ["y"], opset=13)
    x = (np.random.default_rng(2).standard_normal((1, 12, 7, 9)) * 3).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
