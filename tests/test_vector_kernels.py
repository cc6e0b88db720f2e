"""Pooling, LRN and transpose kernels (AVX2 fast paths and their scalar/border fallbacks) against
ONNX Runtime, on shapes wide enough to reach the vector code (>= 8 vectorisable columns, 8x8
transpose blocks) and with every pooling edge case: pads, ceil_mode, count_include_pad, dilations.

One ONNX model holds every case (one C++ build, content-hash cached); it runs with the AVX2 and the
scalar kernels (INFERON_ISA), with 1 and 2 threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

import inferon
from tests.conftest import make_model, random_feeds

# (op, input shape, attributes)
POOLS: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
    ("MaxPool", (1, 3, 112, 112), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", (1, 2, 17, 33), dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
    ("MaxPool", (1, 2, 16, 40), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", (2, 2, 15, 41), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", (1, 2, 20, 37), dict(kernel_shape=[3, 2], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1)),
    ("MaxPool", (1, 2, 19, 45), dict(kernel_shape=[3, 3], strides=[1, 2], dilations=[2, 2], pads=[2, 2, 2, 2])),
    ("MaxPool", (1, 2, 14, 50), dict(kernel_shape=[5, 5], strides=[3, 3], pads=[2, 2, 2, 2])),
    ("MaxPool", (1, 2, 9, 29), dict(kernel_shape=[1, 4], strides=[1, 1], dilations=[1, 3])),
    ("AveragePool", (1, 3, 28, 28), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", (1, 3, 28, 28), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", (1, 2, 17, 43), dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", (1, 2, 23, 39), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1)),
    ("AveragePool", (2, 2, 23, 39), dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", (1, 2, 21, 35), dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])),
    ("AveragePool", (1, 2, 21, 35), dict(kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", (1, 2, 12, 31), dict(kernel_shape=[7, 7], strides=[1, 1])),
]
LRNS: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((1, 16, 13, 13), dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)),
    ((2, 7, 5, 9), dict(size=3, alpha=0.5, beta=0.6, bias=2.0)),
    ((1, 5, 2, 2), dict(size=1, alpha=1e-2, beta=1.3, bias=1.0)),
]
TRANSPOSES: list[tuple[tuple[int, ...], list[int]]] = [
    ((1, 2, 12, 14, 14), [0, 2, 1, 3, 4]),  # channel shuffle: whole planes
    ((2, 3, 17, 20), [0, 1, 3, 2]),  # 2-D inner transposes, edges of 8x8 blocks
    ((1, 16, 9, 11), [0, 2, 3, 1]),  # NCHW -> NHWC
    ((1, 9, 11, 24), [0, 3, 1, 2]),  # NHWC -> NCHW
    ((33, 40), [1, 0]),
    ((4, 8, 5, 16), [3, 1, 2, 0]),
    ((3, 4, 5), [2, 0, 1]),
]


def build_model() -> onnx.ModelProto:
    nodes, inputs, outputs = [], {}, []
    specs = [(op, shape, attrs) for op, shape, attrs in POOLS]
    specs += [("LRN", shape, attrs) for shape, attrs in LRNS]
    specs += [("Transpose", shape, {"perm": perm}) for shape, perm in TRANSPOSES]
    for i, (op, shape, attrs) in enumerate(specs):
        inputs[f"x{i}"] = shape
        nodes.append(helper.make_node(op, [f"x{i}"], [f"y{i}"], **attrs))
        outputs.append(f"y{i}")
    return make_model(nodes, inputs, outputs, opset=19)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_model()


@pytest.fixture(scope="module")
def feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:  # (conftest's library / expected use these)
    return random_feeds(model, 3)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_match_onnxruntime(
    library: Path,
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    isa: str,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERON_ISA", isa)
    compiled = inferon.load(library, threads=threads)
    if isa == "avx2" and compiled.isa == "scalar":
        pytest.skip("no AVX2/FMA on this machine")
    assert compiled.isa == isa
    got = compiled.run(feeds)
    for i, (node, want) in enumerate(zip(model.graph.node, expected, strict=True)):
        msg = f"{node.op_type} {list(feeds[f'x{i}'].shape)} {helper.printable_node(node)} ({isa})"
        assert got[f"y{i}"].shape == want.shape, msg
        if node.op_type in ("Transpose", "MaxPool"):
            np.testing.assert_array_equal(got[f"y{i}"], want, err_msg=msg)
        else:
            np.testing.assert_allclose(got[f"y{i}"], want, rtol=1e-5, atol=1e-6, err_msg=msg)
