"""Reduce* over any axes and the normalisations (LayerNormalization, InstanceNormalization,
GroupNormalization) against ONNX Runtime, with the AVX2 and the scalar kernels and 1 or 2 threads.
Each test compiles one model holding many nodes (one build per test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from inferon.errors import ModelImportError
from inferon.testing import run_onnxruntime
from tests.conftest import make_model

KINDS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
         "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]  # fmt: skip
# (axes, keepdims): trailing, leading, middle, not consecutive, all, a single one of odd length
AXES = [([3], 1), ([0], 0), ([1, 2], 1), ([1, 3], 0), (None, 1), ([-2], 0), ([2, 3], 0)]


def _reduce_nodes(opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    nodes, inits = [], {}
    for k, kind in enumerate(KINDS):
        for a, (axes, keep) in enumerate(AXES):
            src = "p" if kind in ("ReduceLogSum", "ReduceProd") else "x"  # log of a positive sum; bounded products
            out = f"y_{kind}_{a}"
            axes_as_input = opset >= 18 or kind == "ReduceSum"
            if axes is None:
                nodes.append(helper.make_node(kind, [src], [out], keepdims=keep))
            elif axes_as_input:
                inits[f"axes{k}_{a}"] = np.array(axes, np.int64)
                nodes.append(helper.make_node(kind, [src, f"axes{k}_{a}"], [out], keepdims=keep))
            else:
                nodes.append(helper.make_node(kind, [src], [out], axes=axes, keepdims=keep))
    return nodes, inits


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], inits: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    model = make_model(nodes, inputs, [o for n in nodes for o in n.output], None, opset)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in inits.items())
    return model


def _check(library: Path, model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float, atol: float,
           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    want = dict(zip([o.name for o in model.graph.output], run_onnxruntime(model, feeds)))
    for isa, threads in (("avx2", 1), ("scalar", 1), ("avx2", 2)):
        monkeypatch.setenv("INFERON_ISA", isa)
        got = inferon.load(library, threads=threads).run(feeds)
        for name, ref in want.items():
            assert got[name].shape == ref.shape, name
            np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=atol, err_msg=f"{name} ({isa}, {threads} threads)")


@pytest.mark.parametrize("opset", [13, 18])
def test_reductions_match_onnxruntime(tmp_path: Path, opset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, inits = _reduce_nodes(opset)
    shape = (2, 5, 7, 19)  # 19: vector body and scalar tail along the contiguous axis
    model = _model(nodes, {"x": shape, "p": shape}, inits, opset)
    rng = np.random.default_rng(opset)
    feeds = {"x": (rng.standard_normal(shape) * 2).astype(np.float32),
             "p": rng.uniform(0.8, 1.25, shape).astype(np.float32)}  # fmt: skip
    library = inferon.compile(model, tmp_path / "m.so")
    _check(library, model, feeds, 2e-5, 1e-5, monkeypatch)


def test_reduce_noop_and_spatial_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty axes with noop_with_empty_axes pass x through; a mean over H, W is a global pooling."""
    nodes = [
        helper.make_node("ReduceSum", ["x", ""], ["y0"], noop_with_empty_axes=1),
        helper.make_node("ReduceMean", ["x", "hw"], ["y1"], keepdims=0),
        helper.make_node("ReduceMax", ["x", "c"], ["y2"], keepdims=1),
    ]
    model = _model(nodes, {"x": (1, 6, 5, 5)}, {"hw": np.array([2, 3]), "c": np.array([1])}, 18)
    x = np.random.default_rng(1).standard_normal((1, 6, 5, 5)).astype(np.float32)
    _check(inferon.compile(model, tmp_path / "m.so"), model, {"x": x}, 1e-5, 1e-6, monkeypatch)


def test_normalizations_match_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    inits = {
        "s_w": rng.uniform(0.5, 1.5, 19).astype(np.float32), "b_w": rng.standard_normal(19).astype(np.float32),
        "s_hw": rng.uniform(0.5, 1.5, (7, 19)).astype(np.float32), "b_hw": rng.standard_normal((7, 19)).astype(np.float32),
        "s_c": rng.uniform(0.5, 1.5, 6).astype(np.float32), "b_c": rng.standard_normal(6).astype(np.float32),
        "s_g": rng.uniform(0.5, 1.5, 3).astype(np.float32), "b_g": rng.standard_normal(3).astype(np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("LayerNormalization", ["x", "s_w", "b_w"], ["ln_last"]),
        helper.make_node("LayerNormalization", ["x", "s_hw", "b_hw"], ["ln_hw"], axis=-2, epsilon=1e-3),
        helper.make_node("LayerNormalization", ["x", "s_w"], ["ln_nobias", "ln_mean", "ln_rstd"], epsilon=1e-4),
        helper.make_node("InstanceNormalization", ["x", "s_c", "b_c"], ["inorm"], epsilon=1e-5),
        helper.make_node("GroupNormalization", ["x", "s_g", "b_g"], ["gnorm"], num_groups=3, epsilon=1e-5),
    ]
    model = _model(nodes, {"x": (2, 6, 7, 19)}, inits, 18)
    x = (rng.standard_normal((2, 6, 7, 19)) * 3 + 1).astype(np.float32)
    _check(inferon.compile(model, tmp_path / "m.so"), model, {"x": x}, 1e-4, 1e-4, monkeypatch)


def test_convnext_block_matches_onnxruntime(tmp_path: Path) -> None:
    """ConvNeXt's block: depthwise 7x7, channels-last LayerNorm, two Linear layers, layer scale,
    residual; then a mean over H, W and a LayerNorm over the channels."""
    rng = np.random.default_rng(3)
    c = 12
    inits = {
        "dw": rng.standard_normal((c, 1, 7, 7)) * 0.2, "dwb": rng.standard_normal(c) * 0.1,
        "lns": rng.uniform(0.5, 1.5, c), "lnb": rng.standard_normal(c) * 0.1,
        "w1": rng.standard_normal((c, 4 * c)) * 0.3, "b1": rng.standard_normal(4 * c) * 0.1,
        "w2": rng.standard_normal((4 * c, c)) * 0.3, "b2": rng.standard_normal(c) * 0.1,
        "gamma": rng.uniform(0.1, 0.5, c), "hw": np.array([-2, -1]),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "dw", "dwb"], ["d"], pads=[3, 3, 3, 3], group=c),
        helper.make_node("Transpose", ["d"], ["dt"], perm=[0, 2, 3, 1]),
        helper.make_node("LayerNormalization", ["dt", "lns", "lnb"], ["ln"], epsilon=1e-6),
        helper.make_node("MatMul", ["ln", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Mul", ["a2", "gamma"], ["g"]),
        helper.make_node("Transpose", ["g"], ["gt"], perm=[0, 3, 1, 2]),
        helper.make_node("Add", ["x", "gt"], ["res"]),
        helper.make_node("ReduceMean", ["res", "hw"], ["pooled"], keepdims=0),
        helper.make_node("LayerNormalization", ["pooled", "lns", "lnb"], ["y"]),
    ]
    init = {k: np.asarray(v, np.int64 if k == "hw" else np.float32) for k, v in inits.items()}
    model = _model(nodes, {"x": (1, c, 9, 9)}, init, 18)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None))
    x = rng.standard_normal((1, c, 9, 9)).astype(np.float32)
    got = inferon.load(inferon.compile(model, tmp_path / "m.so"))(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "node, inits, message",
    [
        (helper.make_node("ReduceSum", ["x", "ax"], ["y"], name="rs"), {}, "'rs', op ReduceSum.*axes.*constant"),
        (helper.make_node("ReduceMean", ["x"], ["y"], axes=[4], name="rm"), {}, "'rm', op ReduceMean.*axis 4 is out of range"),
        (helper.make_node("ReduceMax", ["x"], ["y"], axes=[1, -3], name="rx"), {}, "'rx', op ReduceMax.*axes .* twice"),
        (helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln"), {"s": np.ones(5, np.float32)},
         "'ln', op LayerNormalization.*Scale of shape \\[5\\] does not broadcast to \\[4\\]"),
        (helper.make_node("GroupNormalization", ["x", "s", "s"], ["y"], num_groups=2, name="gn"),
         {"s": np.ones(2, np.float32)}, "'gn', op GroupNormalization.*num_groups 2 does not divide the 3"),
    ],
    ids=["axes-not-constant", "axis-range", "axis-twice", "ln-scale-shape", "gn-groups"],
)
def test_reduce_norm_errors_name_the_node(node: onnx.NodeProto, inits: dict[str, np.ndarray], message: str) -> None:
    inputs = {"x": (1, 3, 2, 4)} | ({"ax": (1,)} if "ax" in node.input else {})
    model = make_model([node], inputs, ["y"], None, 13 if node.op_type in ("ReduceMean", "ReduceMax") else 18)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in inits.items())
    with pytest.raises(ModelImportError, match=message):
        inferon.compile(model, "/nonexistent/never-built.so")


def test_mean_and_lp_normalization(tmp_path: Path) -> None:
    """Mean of broadcast inputs (sum / n) and LpNormalization (p = 1, 2; any axis; 0 where the norm
    is 0) against ONNX Runtime."""
    n = helper.make_node
    nodes = [n("Mean", ["a", "b", "c"], ["m"]), n("Mean", ["a"], ["m1"]), n("LpNormalization", ["m"], ["l2"], axis=1),
             n("LpNormalization", ["a"], ["l1"], axis=-1, p=1), n("LpNormalization", ["a"], ["l0"], axis=0)]  # fmt: skip
    model = make_model(nodes, {"a": (2, 3, 5), "b": (1, 3, 1), "c": (5,)}, ["m", "m1", "l2", "l1", "l0"])
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in [("a", (2, 3, 5)), ("b", (1, 3, 1)), ("c", (5,))]}
    feeds["a"][1, 2, :] = 0.0  # a zero norm gives 0 (l1), as do the zero columns of l0
    feeds["a"][:, 0, 0] = 0.0
    inferon.compile(model, tmp_path / "m.so")
    got = inferon.load(tmp_path / "m.so").run(feeds)
    for name, ref in zip(["m", "m1", "l2", "l1", "l0"], run_onnxruntime(model, feeds)):
        np.testing.assert_allclose(got[name], ref, rtol=1e-6, atol=1e-7, err_msg=name)
    bad = make_model([n("LpNormalization", ["a"], ["y"], p=3)], {"a": (2, 3)}, ["y"])
    with pytest.raises(ModelImportError, match="p must be 1 or 2"):
        inferon.compile(bad, tmp_path / "bad.so")
