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
