"""IR levels: every dump parses back, and a golden test pins a small model at each level."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from xdsl.parser import Parser

import inferon
from inferon.ir.context import make_context
from inferon.pipeline import DEFAULT_PASSES

GOLDEN = Path(__file__).parent / "golden" / "small_cnn"


def _parse(text: str) -> None:
    module = Parser(make_context(), text).parse_module()
    module.verify()


def test_every_dump_parses_back(small_cnn: onnx.ModelProto, tmp_path: Path) -> None:
    inferon.lower(small_cnn, dump_ir=tmp_path)
    dumps = sorted(tmp_path.glob("*.mlir"))
    assert [p.name.split("_", 1)[1] for p in dumps][:2] == ["import.mlir", "remove-identities.mlir"]
    assert len(dumps) == len(DEFAULT_PASSES) + 1
    for path in dumps:
        _parse(path.read_text())
    assert (tmp_path / "model.cpp").read_text().count("inferon::gemm(") == 3


@pytest.mark.parametrize(
    "stage",
    ["import", "fuse-epilogue", "convert-graph-to-loop", "plan-memory"],
)
def test_golden_ir(small_cnn: onnx.ModelProto, tmp_path: Path, stage: str) -> None:
    """The graph, loop and vec levels of small_cnn, pinned (regenerate with INFERON_UPDATE_GOLDEN=1)."""
    import os

    inferon.lower(small_cnn, dump_ir=tmp_path)
    (dump,) = tmp_path.glob(f"[0-9][0-9][0-9]_{stage}.mlir")  # numbered by position in the pipeline
    got = dump.read_text()
    golden = GOLDEN / f"{stage}.mlir"
    if os.environ.get("INFERON_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text()


def test_fusion_shows_in_graph_level(small_cnn: onnx.ModelProto, tmp_path: Path) -> None:
    inferon.lower(small_cnn, dump_ir=tmp_path)
    (dump,) = tmp_path.glob("[0-9][0-9][0-9]_fuse-epilogue.mlir")
    fused = dump.read_text()
    assert "graph.batch_norm" not in fused
    assert "graph.relu" not in fused and "graph.add" not in fused
    assert fused.count("#graph<act relu>") == 2
    assert fused.count("graph.conv2d") == 2 and fused.count("graph.matmul") == 1


def test_dumps_with_fused_activations_grouped_convs_and_packed_b_parse_back(tmp_path: Path) -> None:
    """A grouped conv + SiLU (loop.grouped_conv2d with a swish epilogue) and a MatMul by a constant
    matrix + GELU in its Erf form (a b_packed vec.gemm with a gelu epilogue): every dump parses back."""
    import numpy as np
    from onnx import helper

    from tests.conftest import make_model

    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal((8, 4, 3, 3)), "m": rng.standard_normal((30, 16)), "half": np.array(0.5),
            "one": np.array(1.0), "root2": np.array(np.sqrt(2.0))}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"]),
        helper.make_node("MatMul", ["t", "m"], ["h"]), helper.make_node("Div", ["h", "root2"], ["z"]),
        helper.make_node("Erf", ["z"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["h", "a"], ["ha"]), helper.make_node("Mul", ["ha", "half"], ["g"]),
    ]  # fmt: skip
    model = make_model(nodes, {"x": (1, 8, 6, 7), "t": (12, 30)}, ["y", "g"], init)
    inferon.lower(model, dump_ir=tmp_path)
    dumps = sorted(tmp_path.glob("*.mlir"))
    text = dumps[-1].read_text()
    assert "loop.grouped_conv2d" in text and "b_packed" in text and "swish" in text and "gelu" in text
    for path in dumps:
        _parse(path.read_text())
