"""Winograd F(2x2,3x3) / F(4x4,3x3): the transforms' algebra, the `conv-to-winograd` pass and its
rule, and the runtime transforms against ONNX Runtime (AVX2 and scalar, 1 and 2 threads).

The compiled cases are several Convs (with bias / residual / activation variants) on their own
inputs in one ONNX model per tile size, so each tile costs one C++ build (content-hash cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from xdsl.parser import Parser

import inferon
from inferon.errors import InferonError
from inferon.frontend.onnx.importer import import_model
from inferon.ir.context import make_context
from inferon.ir.winograd import TILES, point_stride, reference_conv, transform_weights
from inferon.passes.graph.sparse_layers import sparse_layers
from inferon.passes.graph.sparsify import SparseCostModel, choose_format
from inferon.passes.loop.conv_to_winograd import winograd_tile
from inferon.pipeline import run_passes
from inferon.testing import run_onnxruntime
from tests.conftest import make_model


def direct_conv(x: np.ndarray, w: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Stride-1 3x3 cross-correlation of x [C, H, W] in float64 (pads: top, left, bottom, right)."""
    xp = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
    return sum(np.einsum("mc,cyx->myx", w[:, :, i, j], xp[:, i : i + ho, j : j + wo]) for i in range(3) for j in range(3))


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize(
    "shape", [(3, 7, 9, (1, 1, 1, 1)), (5, 8, 8, (0, 0, 0, 0)), (2, 5, 11, (1, 0, 2, 1)), (1, 3, 3, (0, 0, 0, 0))]
)
def test_transforms_compute_the_convolution(tile: int, shape: tuple) -> None:  # type: ignore[type-arg]
    """B^T, G, A^T of each tile size give exactly (float64) the direct convolution, any size and padding."""
    c, h, w, pads = shape
    rng = np.random.default_rng(0)
    x, wt = rng.standard_normal((c, h, w)), rng.standard_normal((4, c, 3, 3))
    np.testing.assert_allclose(reference_conv(x, wt, pads, tile), direct_conv(x, wt, pads), atol=1e-11)
    u = transform_weights(wt, tile)
    assert u.shape == ((tile + 2) ** 2, 4, c) and u.dtype == np.float32


def test_point_stride_is_an_odd_number_of_cache_lines() -> None:
    for rows, tiles in [(64, 196), (64, 49), (256, 16), (3, 1), (512, 4)]:
        s = point_stride(rows, tiles)
        assert s >= rows * (tiles + 7) and s % 16 == 0 and (s // 16) % 2 == 1


def test_rule_picks_the_measured_tile() -> None:
    assert winograd_tile(64, 64, 56, 56) == 4
    assert winograd_tile(256, 256, 14, 14) == 4
    assert winograd_tile(512, 512, 7, 7) == 2
    assert winograd_tile(32, 128, 7, 7) == 2
    assert winograd_tile(8, 64, 56, 56) is None  # too few channels for the GEMMs
    assert winograd_tile(64, 64, 3, 3) is None  # too few tiles
    # zmm row panels (Intel AVX-512F): F(4x4) from 5 x 5 tiles
    assert winograd_tile(256, 256, 14, 14, zmm_rows=True) == 2
    assert winograd_tile(256, 64, 13, 13, zmm_rows=True) == 2
    assert winograd_tile(128, 128, 28, 28, zmm_rows=True) == 4
    assert winograd_tile(64, 64, 56, 56, zmm_rows=True) == 4


@dataclass(frozen=True)
class Case:
    c: int
    m: int
    h: int
    w: int
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)
    bias: bool = True
    act: str | None = None  # Relu, Clip (0..6), LeakyRelu
    residual: bool = False
    n: int = 1


CASES = [
    Case(16, 24, 12, 13, act="Relu", residual=True),  # partial tiles on both axes
    Case(20, 17, 9, 9, pads=(0, 1, 2, 0), bias=False, n=2),  # asymmetric padding, batch 2, M off the tiles
    Case(32, 40, 7, 30, residual=True),  # wide plane: several 8-tile vectors per tile row
    Case(16, 16, 3, 37, act="Clip"),  # one tile row
    Case(24, 16, 29, 5, pads=(0, 0, 0, 0), act="LeakyRelu"),  # no padding, narrow
    Case(48, 64, 28, 28, act="Relu", residual=True),  # a ResNet-like layer
    Case(16, 16, 6, 7, pads=(2, 2, 2, 2)),  # padding wider than the kernel's reach: output larger than input
    Case(16, 20, 1, 20, residual=True),  # a single input row
    Case(16, 24, 54, 57, act="Relu", residual=True),  # 196 tiles: GEMMs split by tile columns at 2 threads
]


def cases_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    nodes, inputs, init, outputs, feeds = [], {}, {}, [], {}
    for i, case in enumerate(CASES):
        ho, wo = case.h + case.pads[0] + case.pads[2] - 2, case.w + case.pads[1] + case.pads[3] - 2
        inputs[f"x{i}"] = (case.n, case.c, case.h, case.w)
        feeds[f"x{i}"] = rng.standard_normal(inputs[f"x{i}"]).astype(np.float32)
        init[f"w{i}"] = rng.standard_normal((case.m, case.c, 3, 3)) / np.sqrt(9 * case.c)
        conv_in = [f"x{i}", f"w{i}"]
        if case.bias:
            init[f"b{i}"] = rng.standard_normal(case.m) * 0.5
            conv_in.append(f"b{i}")
        nodes.append(helper.make_node("Conv", conv_in, [f"c{i}"], pads=list(case.pads)))
        last = f"c{i}"
        if case.residual:
            inputs[f"r{i}"] = (case.n, case.m, ho, wo)
            feeds[f"r{i}"] = rng.standard_normal(inputs[f"r{i}"]).astype(np.float32)
            nodes.append(helper.make_node("Add", [last, f"r{i}"], [f"a{i}"]))
            last = f"a{i}"
        if case.act == "Clip":
            init[f"lo{i}"], init[f"hi{i}"] = np.array(0.0), np.array(0.6)
            nodes.append(helper.make_node("Clip", [last, f"lo{i}", f"hi{i}"], [f"y{i}"]))
        elif case.act:
            nodes.append(helper.make_node(case.act, [last], [f"y{i}"], **({"alpha": 0.1} if case.act == "LeakyRelu" else {})))
        else:
            nodes.append(helper.make_node("Identity", [last], [f"y{i}"]))
        outputs.append(f"y{i}")
    return make_model(nodes, inputs, outputs, init), feeds


@pytest.fixture(scope="module")
def model_and_feeds() -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    model, feeds = cases_model()
    return model, feeds, run_onnxruntime(model, feeds)


@pytest.fixture(scope="module", params=TILES)
def library(request: pytest.FixtureRequest, model_and_feeds: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:  # type: ignore[type-arg]
    tile = request.param
    return tile, inferon.compile(model_and_feeds[0], tmp_path_factory.mktemp(f"wino{tile}") / "m.so", winograd=str(tile))


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_matches_onnxruntime(
    library: tuple[int, Path], model_and_feeds: tuple, isa: str, threads: int, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    tile, path = library
    _, feeds, expected = model_and_feeds
    monkeypatch.setenv("INFERON_ISA", isa)
    compiled = inferon.load(path, threads=threads)
    if compiled.isa != isa:
        pytest.skip(f"no {isa} on this machine")
    got = compiled.run(feeds)
    for i, (case, want) in enumerate(zip(CASES, expected, strict=True)):
        scale = float(np.abs(want).max())
        err = float(np.abs(got[f"y{i}"] - want).max())
        # F(4x4)'s transforms round more than direct convolution does: measured <= 1e-5 of the scale
        assert err <= (2e-6 if tile == 2 else 2e-5) * scale, f"{case} F({tile}x{tile}) {isa}: {err} vs scale {scale}"


def test_pass_rewrites_only_eligible_convs(tmp_path: Path) -> None:
    """3x3 stride-1 single-group convs become transforms + GEMMs; stride 2, dilation, groups and 1x1 do not;
    every IR dump parses back."""
    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal((16, 16, 3, 3)), "wg": rng.standard_normal((16, 8, 3, 3)),
            "w1": rng.standard_normal((16, 16, 1, 1))}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["b", "w"], ["c"], pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("Conv", ["c", "wg"], ["d"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Conv", ["d", "w1"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 16, 32, 32)}, ["y"], init)
    module, weights = import_model(model)
    run_passes(make_context(weights), module, ["convert-graph-to-loop", "conv-to-winograd"])
    names = [op.name for op in module.walk()]
    assert names.count("loop.winograd_input") == names.count("loop.winograd_output") == 1
    assert names.count("loop.conv2d") == 4 and names.count("loop.matmul") == 1
    inferon.lower(model, dump_ir=tmp_path)
    for dump in sorted(tmp_path.glob("*.mlir")):
        Parser(make_context(), dump.read_text()).parse_module().verify()
    assert "inferon::winograd_input(4" in (tmp_path / "model.cpp").read_text()
    off = tmp_path / "off"
    inferon.lower(model, dump_ir=off, winograd="off")
    assert "winograd" not in (off / "model.cpp").read_text()


def test_bad_winograd_option_is_a_clear_error(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 4)}, ["y"], {})
    with pytest.raises(InferonError, match="winograd '3': choose one of auto, off, 2, 4"):
        inferon.compile(model, tmp_path / "m.so", winograd="3")


def test_sparsify_weighs_sparse_kernels_against_winograd() -> None:
    """A 70 %-sparse 3x3 layer beats the dense GEMM but not dense Winograd: CSR only with winograd off."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64, 3, 3))
    w[rng.random(w.shape) < 0.7] = 0.0
    module, weights = import_model(make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                                              {"x": (1, 64, 56, 56)}, ["y"], {"w": w}))  # fmt: skip
    (layer,) = list(sparse_layers(module))
    a = layer.matrix(weights[layer.weight.handle.data])
    cost = SparseCostModel.load()
    assert choose_format(layer, a, "auto", cost, winograd="off").is_sparse
    assert not choose_format(layer, a, "auto", cost, winograd="auto").is_sparse
