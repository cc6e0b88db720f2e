"""Depthwise convolution: the `conv-to-depthwise` pass and the direct kernel against ONNX Runtime.

Every configuration is one Conv (plus fused Add/activation) on its own input inside a single ONNX
model, so the whole module costs one C++ build (content-hash cached). The model runs with the AVX2
kernels and with INFERON_ISA=scalar, with 1 and 2 threads; each output is compared with ORT.
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
from inferon.pipeline import DEFAULT_PASSES, run_passes
from tests.conftest import activation_nodes, make_model


@dataclass(frozen=True)
class Case:
    c: int
    h: int
    w: int
    k: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)
    dilations: tuple[int, int] = (1, 1)
    mult: int = 1  # output channels per input channel
    bias: bool = True
    act: str | None = None  # Relu, Clip (0..6), LeakyRelu
    residual: bool = False
    n: int = 1


CASES = [
    # 3x3, stride 1, odd and tiny widths (one block, partial blocks, several blocks)
    *(Case(4, 5, w) for w in (1, 3, 7, 9, 17)),
    Case(6, 14, 14, act="Relu"),
    Case(5, 7, 7, residual=True, act="Relu"),
    Case(3, 28, 28, residual=True),
    # stride 2, odd/even sizes
    *(Case(4, h, w, strides=(2, 2)) for h, w in ((14, 14), (7, 7), (9, 17), (3, 1), (28, 29))),
    Case(4, 14, 14, strides=(2, 2), act="Clip", residual=True),
    # 5x5
    Case(4, 11, 11, k=(5, 5), pads=(2, 2, 2, 2)),
    Case(4, 13, 20, k=(5, 5), pads=(2, 2, 2, 2), strides=(2, 2), act="LeakyRelu"),
    Case(3, 6, 9, k=(5, 5), pads=(2, 2, 2, 2), residual=True, bias=False),
    # asymmetric / no / large padding
    Case(4, 9, 12, pads=(0, 1, 1, 0)),
    Case(4, 9, 12, pads=(1, 0, 0, 1), strides=(2, 2)),
    Case(4, 10, 10, pads=(0, 0, 0, 0)),
    Case(4, 10, 19, k=(5, 5), pads=(0, 2, 1, 0), strides=(2, 2)),
    Case(3, 8, 8, pads=(2, 2, 2, 2)),
    # dilation (the masked kernel), also with stride 2
    Case(4, 12, 12, dilations=(2, 2), pads=(2, 2, 2, 2)),
    Case(4, 15, 21, dilations=(2, 2), pads=(2, 2, 2, 2), strides=(2, 2), residual=True, act="Relu"),
    Case(4, 12, 13, dilations=(2, 1), pads=(2, 1, 2, 1)),
    # other kernels and strides (masked kernel, gathers)
    Case(4, 16, 16, k=(7, 7), pads=(3, 3, 3, 3)),
    Case(4, 9, 11, k=(3, 5), pads=(1, 2, 1, 2)),
    Case(4, 14, 19, strides=(3, 3)),
    Case(4, 14, 19, strides=(1, 2)),
    Case(4, 6, 6, k=(1, 1), pads=(0, 0, 0, 0), act="Relu"),
    # channel multiplier > 1 and batch 2
    Case(3, 9, 10, mult=2, act="Relu"),
    Case(2, 8, 8, mult=3, strides=(2, 2), residual=True),
    Case(4, 7, 9, n=2, residual=True, act="Relu"),
    Case(6, 12, 12, n=2, strides=(2, 2)),
    # whole and partial groups of 8 channels (the channel-blocked path), MobileNet-like sizes
    Case(20, 7, 7, k=(5, 5), pads=(2, 2, 2, 2), act="Relu"),
    Case(16, 14, 14, k=(5, 5), pads=(2, 2, 2, 2), strides=(2, 2), residual=True),
    Case(24, 14, 14, act="Clip"),
    Case(12, 28, 28, strides=(2, 2), pads=(0, 0, 1, 1)),
    Case(8, 6, 6, mult=2, k=(5, 5), pads=(2, 2, 2, 2), n=2, residual=True, act="LeakyRelu"),
    Case(9, 3, 2, k=(5, 5), pads=(2, 2, 2, 2)),
]


def out_size(n: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    return (n + p0 + p1 - (k - 1) * d - 1) // s + 1


def build_model(cases: list[Case]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, init = [], {}, [], {}
    for i, c in enumerate(cases):
        m = c.c * c.mult
        inputs[f"x{i}"] = (c.n, c.c, c.h, c.w)
        init[f"w{i}"] = rng.standard_normal((m, 1, *c.k)) * 0.5
        conv_in = [f"x{i}", f"w{i}"]
        if c.bias:
            init[f"b{i}"] = rng.standard_normal(m) * 0.5
            conv_in.append(f"b{i}")
        attrs = dict(group=c.c, kernel_shape=list(c.k), strides=list(c.strides), pads=list(c.pads),
                     dilations=list(c.dilations))  # fmt: skip
        nodes.append(helper.make_node("Conv", conv_in, [f"c{i}"], **attrs))
        last = f"c{i}"
        if c.residual:
            ho = out_size(c.h, c.k[0], c.strides[0], c.pads[0], c.pads[2], c.dilations[0])
            wo = out_size(c.w, c.k[1], c.strides[1], c.pads[1], c.pads[3], c.dilations[1])
            inputs[f"r{i}"] = (c.n, m, ho, wo)
            nodes.append(helper.make_node("Add", [last, f"r{i}"], [f"a{i}"]))
            last = f"a{i}"
        nodes += activation_nodes(c.act, last, f"y{i}", init)
        outputs.append(f"y{i}")
    return make_model(nodes, inputs, outputs, init)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_model(CASES)


def test_every_depthwise_conv_is_rewritten(model: onnx.ModelProto) -> None:
    module, weights = import_model(model)
    names = [name for _, name in DEFAULT_PASSES]
    run_passes(make_context(weights), module, names[: names.index("conv-to-depthwise") + 1])
    ops = [op for op in module.walk() if isinstance(op, loop.DepthwiseConv2dOp | loop.Conv2dOp)]
    assert len(ops) == len(CASES) and all(isinstance(op, loop.DepthwiseConv2dOp) for op in ops)
    fused = [op for op in ops if op.residual is not None]
    assert len(fused) == sum(c.residual for c in CASES)


def test_grouped_and_dense_convs_are_left_to_im2col() -> None:
    rng = np.random.default_rng(2)
    init = {"wg": rng.standard_normal((8, 2, 3, 3)), "wd": rng.standard_normal((4, 8, 3, 3))}
    nodes = [
        helper.make_node("Conv", ["x", "wg"], ["g"], group=4, pads=[1, 1, 1, 1]),  # 2 channels per group
        helper.make_node("Conv", ["g", "wd"], ["y"], pads=[1, 1, 1, 1]),
    ]
    module, weights = import_model(make_model(nodes, {"x": (1, 8, 6, 6)}, ["y"], init))
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "conv-to-depthwise"])
    names = [op.name for op in module.walk()]
    assert names.count("loop.conv2d") == 2 and "loop.depthwise_conv2d" not in names


@pytest.mark.parametrize(("isa", "path"), [("avx2", "auto"), ("avx2", "planes"), ("avx2", "blocked"), ("scalar", "auto")])
@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_matches_onnxruntime(
    library: Path,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    isa: str,
    threads: int,
    path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every case on the kernel's own choice of path and forced onto each AVX2 path (INFERON_DEPTHWISE;
    the scalar kernels have one)."""
    monkeypatch.setenv("INFERON_ISA", isa)
    if path != "auto":
        monkeypatch.setenv("INFERON_DEPTHWISE", path)
    compiled = inferon.load(library, threads=threads)
    if isa == "avx2" and compiled.isa == "scalar":
        pytest.skip("no AVX2/FMA on this machine")
    assert compiled.isa == isa
    got = compiled.run(feeds)
    for i, (case, want) in enumerate(zip(CASES, expected, strict=True)):
        np.testing.assert_allclose(got[f"y{i}"], want, rtol=1e-4, atol=1e-5, err_msg=f"{case} ({isa})")
