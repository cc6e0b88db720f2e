"""Grouped convolution with few channels per group: the `conv-to-grouped` pass and the direct kernel
against ONNX Runtime.

Every configuration is one grouped Conv (plus fused Add / activation) on its own input inside a single
ONNX model (one C++ build); it runs with the AVX2 kernels and with INFERON_ISA=scalar, with 1 and 2
threads, and each output is compared with ORT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.ir.dialects import loop
from inferon.passes.loop.conv_to_grouped import ALWAYS_CHANNELS, SMALL_IMAGE, SMALL_IMAGE_CHANNELS
from inferon.pipeline import DEFAULT_PASSES, run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import activation_nodes, make_model, use_isa


@dataclass(frozen=True)
class Case:
    groups: int
    cin: int  # input channels per group
    cout: int  # output channels per group
    h: int
    w: int
    k: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)
    bias: bool = True
    act: str | None = None  # Relu, Clip (0..6), Swish (Sigmoid + Mul)
    residual: bool = False
    n: int = 1


CASES = [
    # ResNeXt-like: 4 / 8 / 16 / 32 channels per group, 3x3, stride 1 and 2, widths that are and are not
    # multiples of 8 (one block, partial blocks)
    Case(8, 4, 4, 14, 14, act="Relu"),
    Case(4, 8, 8, 9, 13, residual=True, act="Relu"),
    Case(2, 16, 16, 7, 7),
    Case(2, SMALL_IMAGE_CHANNELS, 8, 5, 6, act="Swish"),
    Case(2, ALWAYS_CHANNELS, 4, 29, 30),  # an image larger than SMALL_IMAGE
    Case(8, 4, 4, 15, 16, strides=(2, 2)),
    Case(4, 8, 8, 14, 14, strides=(2, 2), act="Clip", residual=True),
    # output channels per group not a multiple of the register tiles (8, 4, 2, 1), channel multipliers
    Case(3, 2, 3, 6, 11),
    Case(2, 3, 5, 10, 9, bias=False),
    Case(2, 4, 12, 8, 17, act="Relu"),
    Case(4, 2, 1, 5, 5),
    # other kernels, strides, asymmetric and no padding, batch 2
    Case(2, 4, 4, 11, 12, k=(5, 5), pads=(2, 2, 2, 2)),
    Case(2, 4, 4, 16, 16, k=(7, 7), pads=(3, 3, 3, 3), strides=(2, 2)),
    Case(2, 4, 4, 9, 10, k=(1, 1), pads=(0, 0, 0, 0)),
    Case(2, 3, 4, 9, 11, k=(3, 5), pads=(0, 2, 1, 0)),
    Case(2, 4, 4, 14, 19, strides=(3, 1), pads=(0, 1, 2, 1)),
    Case(2, 4, 4, 8, 8, pads=(3, 3, 3, 3)),
    Case(2, 4, 4, 7, 9, n=2, residual=True),
]


def out_size(n: int, k: int, s: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - k) // s + 1


def build_model(cases: list[Case]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, init = [], {}, [], {}
    for i, c in enumerate(cases):
        m = c.groups * c.cout
        inputs[f"x{i}"] = (c.n, c.groups * c.cin, c.h, c.w)
        init[f"w{i}"] = rng.standard_normal((m, c.cin, *c.k)) * (1.0 / np.sqrt(c.cin * c.k[0] * c.k[1]))
        conv_in = [f"x{i}", f"w{i}"]
        if c.bias:
            init[f"b{i}"] = rng.standard_normal(m) * 0.5
            conv_in.append(f"b{i}")
        attrs = dict(group=c.groups, kernel_shape=list(c.k), strides=list(c.strides), pads=list(c.pads))
        nodes.append(helper.make_node("Conv", conv_in, [f"c{i}"], **attrs))
        last = f"c{i}"
        if c.residual:
            ho = out_size(c.h, c.k[0], c.strides[0], c.pads[0], c.pads[2])
            wo = out_size(c.w, c.k[1], c.strides[1], c.pads[1], c.pads[3])
            inputs[f"r{i}"] = (c.n, m, ho, wo)
            nodes.append(helper.make_node("Add", [last, f"r{i}"], [f"a{i}"]))
            last = f"a{i}"
        nodes += activation_nodes(c.act, last, f"y{i}", init)
        outputs.append(f"y{i}")
    return make_model(nodes, inputs, outputs, init)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_model(CASES)


def test_every_small_grouped_conv_is_rewritten(model: onnx.ModelProto) -> None:
    module, weights = import_model(model)
    names = [name for _, name in DEFAULT_PASSES]
    run_passes(make_context(weights), module, names[: names.index("conv-to-grouped") + 1])
    ops = [op for op in module.walk() if isinstance(op, loop.GroupedConv2dOp | loop.Conv2dOp)]
    assert len(ops) == len(CASES) and all(isinstance(op, loop.GroupedConv2dOp) for op in ops)
    assert sum(op.residual is not None for op in ops) == sum(c.residual for c in CASES)


def test_wide_groups_dilation_and_depthwise_are_left_alone() -> None:
    """Wider groups on a large image, wider groups than any direct limit, dilation, depthwise."""
    rng = np.random.default_rng(2)
    mid, wide, side = ALWAYS_CHANNELS * 2, SMALL_IMAGE_CHANNELS + 8, int(np.sqrt(SMALL_IMAGE)) + 1
    init = {
        "w_mid": rng.standard_normal((4, mid, 3, 3)), "w_wide": rng.standard_normal((4, wide, 3, 3)),
        "w_dil": rng.standard_normal((8, 4, 3, 3)), "w_dw": rng.standard_normal((8, 1, 3, 3)),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["z", "w_mid"], ["m"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w_wide"], ["a"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["y", "w_dil"], ["b"], group=2, pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("Conv", ["y", "w_dw"], ["c"], group=8, pads=[1, 1, 1, 1]),
    ]
    inputs = {"z": (1, 2 * mid, side, side), "x": (1, 2 * wide, 6, 6), "y": (1, 8, 6, 6)}
    model = make_model(nodes, inputs, ["m", "a", "b", "c"], init)
    module, weights = import_model(model)
    names = [name for _, name in DEFAULT_PASSES]
    run_passes(make_context(weights), module, names[: names.index("conv-to-grouped") + 1])
    ops = [op.name for op in module.walk()]
    assert "loop.grouped_conv2d" not in ops and ops.count("loop.conv2d") == 3 and "loop.depthwise_conv2d" in ops


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_conv_matches_onnxruntime(
    model: onnx.ModelProto, library: Path, feeds: dict[str, np.ndarray], isa: str, threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    use_isa(monkeypatch, isa)
    compiled = inferon.load(library, threads=threads)
    assert compiled.isa == isa
    got = compiled.run(feeds)
    for i, (case, want) in enumerate(zip(CASES, run_onnxruntime(model, feeds), strict=True)):
        np.testing.assert_allclose(got[f"y{i}"], want, rtol=1e-4, atol=1e-5, err_msg=f"{case} ({isa})")
