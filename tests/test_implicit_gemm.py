"""Implicit-GEMM convolutions (b_implicit: B read in place from a zero-bordered image) against ORT."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.ir.dialects import loop
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_model

RNG = np.random.default_rng(21)


def _conv_model(c: int, m: int, hw: tuple[int, int], k: int, group: int = 1, pads: list[int] | None = None,
                residual: bool = False, relu: bool = True) -> tuple[onnx.ModelProto, tuple[int, ...]]:  # fmt: skip
    """Conv (+ residual Add) + ReLU, and the output shape."""
    pads = pads if pads is not None else [k // 2] * 4
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y0"], pads=pads, group=group)]
    out = "y0"
    if residual:
        nodes.append(helper.make_node("Add", [out, "r"], ["y1"]))
        out = "y1"
    if relu:
        nodes.append(helper.make_node("Relu", [out], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [out], ["y"]))
    out_shape = (1, m, hw[0] + pads[0] + pads[2] - k + 1, hw[1] + pads[1] + pads[3] - k + 1)
    inputs = {"x": (1, c, *hw), **({"r": out_shape} if residual else {})}
    inits = {"w": RNG.standard_normal((m, c // group, k, k)) * 0.2, "b": RNG.standard_normal(m)}
    return make_model(nodes, inputs, ["y"], inits), out_shape


@pytest.mark.parametrize(
    ("c", "m", "hw", "k", "group", "pads", "residual"),
    [
        (16, 32, (30, 30), 3, 1, None, False),
        (8, 24, (33, 41), 3, 1, [0, 2, 1, 0], True),  # asymmetric pads, odd sizes, residual
        (12, 64, (28, 28), 3, 2, None, False),  # groups of 32 output channels
        (4, 16, (45, 45), 5, 1, [2, 2, 2, 2], True),
        (64, 48, (20, 20), 3, 1, None, True),  # K = 576 over two KC blocks (zmm tiles pack image rows)
        (8, 8, (25, 25), 3, 1, None, False),  # M = 8: no tile pair, B packed in a pass of its own (zmm)
    ],
)
def test_implicit_conv_matches_onnxruntime(
    compile_and_load: Callable[..., inferon.CompiledModel], c: int, m: int, hw: tuple[int, int], k: int, group: int,
    pads: list[int] | None, residual: bool,
) -> None:  # fmt: skip
    model, out_shape = _conv_model(c, m, hw, k, group, pads, residual)
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["fuse-epilogue", "convert-graph-to-loop", "conv-to-im2col"])
    (mm,) = [op for op in module.walk() if isinstance(op, loop.MatMulOp)]
    assert mm.b_implicit is not None
    feeds = {"x": RNG.standard_normal((1, c, *hw)).astype(np.float32)}
    if residual:
        feeds["r"] = RNG.standard_normal(out_shape).astype(np.float32)
    expected = run_onnxruntime(model, feeds)[0]
    for threads in (1, 2):
        got = inferon.load(compile_and_load(model).path, threads=threads).run(feeds)["y"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_implicit_gemm_is_not_used_where_it_loses() -> None:
    from inferon.passes.loop.conv_to_im2col import implicit_gemm_pays

    geometry = [16, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 56, 56]
    assert implicit_gemm_pays(64, tuple(geometry))
    assert not implicit_gemm_pays(128, tuple(geometry))  # many output channels: packing amortised
    assert not implicit_gemm_pays(32, tuple([16, 224, 224, 3, 3, 1, 1, 1, 1, 1, 1, 224, 224]))  # big planes
    assert not implicit_gemm_pays(32, tuple([16, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 7, 7]))  # 2 of 9 columns wasted
    assert not implicit_gemm_pays(32, tuple([16, 56, 56, 3, 3, 2, 2, 1, 1, 1, 1, 28, 28]))  # stride 2
