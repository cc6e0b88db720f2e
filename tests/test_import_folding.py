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
