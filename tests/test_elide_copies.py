"""elide-copies: Concat inputs computed in place, Reshape sharing memory; checked against ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

import inferon
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.ir.dialects import loop
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_model

RNG = np.random.default_rng(11)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32) * 0.3


def _lowered_ops(model: onnx.ModelProto) -> list[str]:
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "elide-copies", "plan-memory"])
    return [op.name for op in module.walk()]


def _dense_block(batch: int) -> onnx.ModelProto:
    """DenseNet-like chain: c1 = concat(x, conv(x)), c2 = concat(c1, conv(c1)), then conv + Flatten."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Concat", ["x", "ar"], ["c1"], axis=1),
        helper.make_node("Conv", ["c1", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["c1", "b"], ["c2"], axis=1),
        helper.make_node("Conv", ["c2", "w3"], ["d"]),
        helper.make_node("Flatten", ["d"], ["y"]),
    ]
    inits = {"w1": _w(8, 4, 3, 3), "w2": _w(8, 12, 3, 3), "w3": _w(16, 20, 1, 1)}
    return make_model(nodes, {"x": (batch, 4, 9, 9)}, ["y"], inits)


def test_concat_chain_and_reshape_need_no_copy(compile_and_load: Callable[..., inferon.CompiledModel]) -> None:
    model = _dense_block(batch=1)
    ops = _lowered_ops(model)
    # x is a function input: its Concat slice is still copied; every other copy is gone
    assert ops.count("loop.copy") == 1 and ops.count("loop.slice") >= 3
    x = RNG.standard_normal((1, 4, 9, 9)).astype(np.float32)
    got = compile_and_load(model)(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_batched_concat_is_not_contiguous_and_keeps_its_copies(
    compile_and_load: Callable[..., inferon.CompiledModel],
) -> None:
    model = _dense_block(batch=2)
    ops = _lowered_ops(model)
    assert ops.count("loop.copy") >= 4  # the Concat slices interleave over the batch
    x = RNG.standard_normal((2, 4, 9, 9)).astype(np.float32)
    got = compile_and_load(model)(x)
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_a_buffer_in_two_concats_is_placed_once(compile_and_load: Callable[..., inferon.CompiledModel]) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Concat", ["r", "s"], ["c1"], axis=1),
        helper.make_node("Concat", ["s", "r"], ["c2"], axis=1),
        helper.make_node("Add", ["c1", "c2"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 3, 5, 5)}, ["y"])
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "elide-copies", "plan-memory"])
    slices = [op for op in module.walk() if isinstance(op, loop.SliceOp)]
    assert len(slices) == 2 and len({s.result for s in slices}) == 2
    assert sum(isinstance(op, loop.CopyOp) for op in module.walk()) == 2
    x = RNG.standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(compile_and_load(model)(x), run_onnxruntime(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
