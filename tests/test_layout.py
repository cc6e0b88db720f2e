"""The blocked activation layout NCHWc8 (`inferon.ir.layout`, pass `assign-layout`): which buffers the
pass lays out blocked, that the IR with its layout maps prints and parses back, and depthwise-
separable blocks (lanes 1x1 convs, depthwise convs, squeeze-excite, residuals, batch 2) run through
those buffers on every instruction set against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.dialects.func import Func
from xdsl.parser import Parser

import inferon
from inferon.ir.dialects import loop
from inferon.ir.layout import from_nchwc8, is_nchwc8, to_nchwc8
from tests.conftest import make_model, use_isa


def test_nchwc8_round_trip() -> None:
    x = np.arange(2 * 16 * 3 * 5, dtype=np.float32).reshape(2, 16, 3, 5)
    flat = to_nchwc8(x)
    # channel c of pixel p of image n at (n * C + c // 8 * 8) * HW + p * 8 + c % 8
    assert flat[(1 * 16 + 8) * 15 + 4 * 8 + 3] == x[1, 11, 0, 4]
    np.testing.assert_array_equal(from_nchwc8(flat, x.shape), x)


def _se_block_net(n: int = 1) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """A 7x7 stage of two MBConv blocks (1x1 expand + Swish, depthwise 3x3 / 5x5 stride 2 + ReLU,
    squeeze-excite with the gate on either side of the Mul, 1x1 project + residual), a HardSigmoid
    (unary) and GlobalMaxPool on blocked buffers, then an FC head."""
    rng = np.random.default_rng(3)

    def w(*s: int) -> np.ndarray:
        return (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)

    init = {
        "w0": w(128, 128, 1, 1), "b0": w(128),
        "we": w(256, 128, 1, 1), "wd": w(256, 1, 3, 3), "bd": w(256), "ws1": w(64, 256, 1, 1), "bs1": w(64),
        "ws2": w(256, 64, 1, 1), "bs2": w(256), "wp": w(128, 256, 1, 1), "bp": w(128),
        "we2": w(256, 128, 1, 1), "wd2": w(256, 1, 5, 5), "ws3": w(256, 256, 1, 1), "wp2": w(128, 256, 1, 1),
        "fc": w(10, 128),
    }  # fmt: skip
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w0", "b0"], ["y0"]),
        # block 1: expand, depthwise, SE (gate on the right), project + residual
        node("Conv", ["y0", "we"], ["e"]), node("Sigmoid", ["e"], ["es"]), node("Mul", ["e", "es"], ["ea"]),
        node("Conv", ["ea", "wd", "bd"], ["d"], group=256, pads=[1, 1, 1, 1]), node("Relu", ["d"], ["dr"]),
        node("GlobalAveragePool", ["dr"], ["g"]),
        node("Conv", ["g", "ws1", "bs1"], ["s1"]), node("Relu", ["s1"], ["s1r"]),
        node("Conv", ["s1r", "ws2", "bs2"], ["s2"]), node("Sigmoid", ["s2"], ["gate"]),
        node("Mul", ["dr", "gate"], ["se"]),
        node("Conv", ["se", "wp", "bp"], ["p"]), node("Add", ["p", "y0"], ["b1"]),
        # block 2: depthwise 5x5 stride 2, the gate on the left of the Mul
        node("Conv", ["b1", "we2"], ["e2"]), node("Relu", ["e2"], ["e2r"]),
        node("Conv", ["e2r", "wd2"], ["d2"], group=256, pads=[2, 2, 2, 2], strides=[2, 2]),
        node("GlobalMaxPool", ["d2"], ["g2"]), node("Conv", ["g2", "ws3"], ["s3"]), node("HardSigmoid", ["s3"], ["gate2"]),
        node("Mul", ["gate2", "d2"], ["se2"]), node("HardSigmoid", ["se2"], ["hs"]),
        node("Conv", ["hs", "wp2"], ["p2"]),
        node("GlobalAveragePool", ["p2"], ["gp"]), node("Flatten", ["gp"], ["f"]), node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]  # fmt: skip
    shape = (n, 128, 7, 7)
    return make_model(nodes, {"x": shape}, ["y", "b1"], init), shape


def _compile(model: onnx.ModelProto, out: Path, **kwargs: object) -> tuple[Path, str]:
    """Compile with the layouts of an AVX-512 machine (lanes GEMMs), whatever this CPU has; the IR
    after assign-layout."""
    dump = out.parent / f"{out.stem}_dump"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inferon.compiler, "model_isa", lambda target="native", flags=None: "avx512")
        mp.setattr(inferon.compiler, "zmm_row_panels", lambda target="native", flags=None: False)  # the host may be Intel
        lib = inferon.compile(model, out, dump_ir=dump, **kwargs)  # type: ignore[arg-type]
    return lib, next(dump.glob("*assign-layout.mlir")).read_text()


@pytest.fixture(scope="module")
def se_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, tuple[int, ...], Path, str]:
    model, shape = _se_block_net()
    lib, ir = _compile(model, tmp_path_factory.mktemp("layout") / "m.so")
    return model, shape, lib, ir


def _parse(text: str) -> ModuleOp:
    from inferon.ir.dialects.graph import Graph
    from inferon.ir.dialects.loop import Loop
    from inferon.ir.dialects.vec import Vec

    ctx = Context()
    for dialect in (Builtin, Func, Graph, Loop, Vec):
        ctx.load_dialect(dialect)
    return Parser(ctx, text).parse_module()


def test_blocked_buffers_are_chosen(se_net) -> None:
    _, _, _, ir = se_net
    module = _parse(ir)  # the layout maps print and parse back
    blocked = [op for op in module.walk() if isinstance(op, loop.AllocOp) and is_nchwc8(op.result.type)]
    # block 1: the expand conv's output (Swish fused), the depthwise output, the gated product; block 2:
    # expand, depthwise, gated product, HardSigmoid, project. Not y0 nor p: tied through the residual
    # to b1, a graph output
    shapes = sorted(tuple(op.result.type.get_shape()) for op in blocked)
    assert shapes == [(1, 128, 4, 4), *[(1, 256, 4, 4)] * 3, *[(1, 256, 7, 7)] * 4], shapes
    depthwise = [op for op in module.walk() if isinstance(op, loop.DepthwiseConv2dOp)]
    assert all(is_nchwc8(op.output.type) for op in depthwise)
    # the Muls by the gates run over the blocked view [N, C / 8, H * W, 8]
    muls = [op for op in module.walk() if isinstance(op, loop.BinaryOp) and is_nchwc8(op.output.type)]
    assert len(muls) == 2 and all(tuple(op.shape.get_values())[1:] in ((32, 49, 8), (32, 16, 8)) for op in muls)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_blocked_model_matches_onnxruntime(se_net, monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    from inferon.testing import run_onnxruntime

    model, shape, lib, _ = se_net
    use_isa(monkeypatch, isa)
    rng = np.random.default_rng(7)
    for threads in (1, 2):
        x = rng.standard_normal(shape).astype(np.float32)
        with inferon.load(lib, threads=threads) as cm:
            got = cm.run({"x": x})
        for name, want in zip(("y", "b1"), run_onnxruntime(model, {"x": x}), strict=True):
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), err_msg=name)


def test_layout_nchw_keeps_every_buffer_plain(tmp_path: Path) -> None:
    model, _ = _se_block_net()
    _, ir = _compile(model, tmp_path / "m.so", layout="nchw")
    assert "floordiv" not in ir


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_blocked_batch_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    from inferon.testing import run_onnxruntime

    model, shape = _se_block_net(n=2)
    lib, ir = _compile(model, tmp_path / "m.so")
    assert "floordiv" in ir
    use_isa(monkeypatch, isa)
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    with inferon.load(lib, threads=2) as cm:
        got = cm.run({"x": x})
    for name, want in zip(("y", "b1"), run_onnxruntime(model, {"x": x}), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), err_msg=name)
