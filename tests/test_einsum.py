"""Einsum (one or two operands) against ONNX Runtime: batched products, contractions to a scalar,
outer products, transposes, sums over one operand's letters, implicit outputs, an ellipsis with
broadcasting, constant operands; diagonals and three operands are reported as unsupported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon
from inferon.errors import UnsupportedError
from inferon.testing import run_onnxruntime

# (equation, operand shapes, which operands are constants)
CASES = [
    ("bij,jk->bik", [(2, 5, 6), (6, 4)], [False, True]),
    ("bij,bkj->bik", [(2, 5, 6), (2, 4, 6)], [False, False]),
    ("ij->ji", [(3, 4)], [False]),
    ("ij->", [(3, 4)], [False]),
    ("ijk->ik", [(3, 4, 5)], [False]),
    ("i,j->ij", [(3,), (4,)], [False, False]),
    ("i,i->", [(5,), (5,)], [False, False]),
    ("...ij,...jk->...ik", [(1, 3, 4, 5), (2, 3, 5, 6)], [False, False]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)], [False, False]),
    ("nchw,oc->nohw", [(1, 3, 4, 5), (6, 3)], [False, True]),
    ("ij,jk", [(3, 4), (4, 2)], [False, False]),
    ("ijk,ikl->ijl", [(1, 3, 4), (5, 4, 2)], [False, False]),
    ("ij,kj->", [(3, 4), (2, 4)], [False, False]),
    ("abcd,abd->abc", [(2, 3, 4, 5), (2, 3, 5)], [False, False]),
    ("ab,cb->ca", [(3, 4), (2, 4)], [True, False]),
]


def test_einsum_matches_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nodes, inputs, inits, outputs, feeds = [], [], [], [], {}
    for k, (eq, shapes, consts) in enumerate(CASES):
        names = []
        for i, (shape, const) in enumerate(zip(shapes, consts)):
            name, value = f"x{k}_{i}", rng.standard_normal(shape).astype(np.float32)
            names.append(name)
            if const:
                inits.append(numpy_helper.from_array(value, name))
            else:
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
                feeds[name] = value
        nodes.append(helper.make_node("Einsum", names, [f"y{k}"], equation=eq))
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, None))
    model = helper.make_model(helper.make_graph(nodes, "t", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    inferon.compile(model, tmp_path / "m.so")
    got = inferon.load(tmp_path / "m.so").run(feeds)
    for k, ref in enumerate(run_onnxruntime(model, feeds)):
        assert got[f"y{k}"].shape == ref.shape, CASES[k][0]
        np.testing.assert_allclose(got[f"y{k}"], ref, rtol=1e-5, atol=1e-5, err_msg=CASES[k][0])


@pytest.mark.parametrize("eq, n, match", [("ii->i", 1, "repeated within one term"),
                                          ("ij,jk,kl->il", 3, "3 operands")])  # fmt: skip
def test_einsum_unsupported_forms_are_reported(tmp_path: Path, eq: str, n: int, match: str) -> None:
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [3, 3]) for i in range(n)]
    graph = helper.make_graph([helper.make_node("Einsum", [f"x{i}" for i in range(n)], ["y"], equation=eq)], "t",
                              inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    with pytest.raises(UnsupportedError, match=match):
        inferon.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.so")
