"""Adaptive rounding of INT8 weights (`inferon.weight_rounding`, used by `--quantize int8`): the
rounding itself against its definition, the calibration's input patches against ONNX's Conv, and a
quantized model whose depthwise edge detectors lose accuracy under nearest rounding, checked against
the float model run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

import inferon
from inferon.calibration import ConvPatches, InputMoments
from inferon.cli import main
from inferon.errors import InferonError
from inferon.passes.graph.quantize import ADAPTIVE_MAX_K
from inferon.testing import run_onnxruntime
from inferon.weight_rounding import adaptive_round, output_error, regularised
from tests.conftest import make_model


def _moment(rng: np.random.Generator, k: int, rows: int, correlated: bool) -> np.ndarray:
    x = rng.standard_normal((rows, k))
    if correlated:  # a shared component: neighbouring pixels of a smooth image
        x = x * 0.2 + rng.standard_normal((rows, 1)) * 3.0
    return x.T @ x / rows


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 12), k=st.integers(1, 150), per_row=st.booleans(),
       correlated=st.booleans(), zeros=st.floats(0.0, 0.9), scale=st.sampled_from([0.3, 20.0, 126.0, 140.0]))  # fmt: skip
def test_adaptive_round_properties(seed, m, k, per_row, correlated, zeros, scale):
    """Each weight goes to its floor or ceil (saturated to +-127), exact zeros stay zero, and the
    output error e C e^T never exceeds nearest rounding's: on any shapes (more columns than a block,
    one column, one row), shared or per-row moments."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((m, k)) * scale
    v[rng.random((m, k)) < zeros] = 0.0
    c = np.stack([_moment(rng, k, 3 * k, correlated) for _ in range(m)]) if per_row else _moment(rng, k, 3 * k, correlated)
    q = adaptive_round(v, c).q
    assert np.all((q == np.clip(np.floor(v), -127, 127)) | (q == np.clip(np.ceil(v), -127, 127)))
    assert np.all(q[v == 0] == 0) and np.abs(q).max(initial=0) <= 127
    nearest = np.clip(np.rint(v), -127, 127)
    assert output_error(q, v, c) <= output_error(nearest, v, c) * (1 + 1e-5) + 1e-6  # float32 arithmetic


def test_adaptive_round_helps_where_inputs_correlate_and_is_nearest_where_they_do_not():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((64, 9)) * 20.0
    smooth = _moment(rng, 9, 4000, correlated=True)
    rounded = adaptive_round(v, smooth)
    q = rounded.q
    assert np.isclose(rounded.error, output_error(q, v, smooth), rtol=1e-4)
    assert np.isclose(rounded.nearest_error, output_error(np.rint(v), v, smooth), rtol=1e-4)
    assert output_error(q, v, smooth) < 0.3 * output_error(np.rint(v), v, smooth)
    independent = np.diag(rng.random(9) + 0.5)  # uncorrelated inputs: nearest is optimal
    assert np.array_equal(adaptive_round(v, independent).q, np.rint(v))


def test_regularised_pulls_towards_the_diagonal_with_few_rows():
    c = np.array([[[2.0, 1.0], [1.0, 2.0]]])
    assert np.allclose(regularised(c, 10**9)[0], c[0], rtol=1e-8)  # many rows: unchanged
    assert np.allclose(regularised(c, 2)[0], [[4.0, 1.0], [1.0, 4.0]])  # K / rows = 1: diagonal doubled
    with pytest.raises(ValueError, match="does not fit"):
        adaptive_round(np.zeros((3, 2)), np.eye(3))


@pytest.mark.parametrize("kernel,strides,pads,dilations,groups", [
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), ((3, 2), (2, 1), (0, 1, 2, 0), (1, 2), 2),
    ((5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 6), ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
])  # fmt: skip
def test_conv_patches_reproduce_onnx_conv(kernel, strides, pads, dilations, groups):
    """Patches (all positions) times the weights' rows give ONNX's Conv output, per group; a random
    subset of positions is a subset of the same rows."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    w = rng.standard_normal((12, 6 // groups, *kernel)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), pads=[pads[0], pads[1], pads[2], pads[3]],
                            dilations=list(dilations), group=groups)  # fmt: skip
    ref = ReferenceEvaluator(make_model([node], {"x": x.shape}, ["y"], {"w": w}, opset=13)).run(None, {"x": x})[0]
    geo = ConvPatches(kernel, strides, pads, dilations, groups)
    rows = geo.columns(x, np.random.default_rng(0), limit=10**9).transpose(0, 2, 1)
    per_group = 12 // groups
    for g in range(groups):
        got = rows[g] @ w[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T  # [n * positions, per_group]
        want = ref[:, g * per_group:(g + 1) * per_group].transpose(0, 2, 3, 1).reshape(-1, per_group)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    some = geo.columns(x, np.random.default_rng(0), limit=7).transpose(0, 2, 1)
    assert some.shape[1] == 7 and all(any(np.array_equal(r, a) for a in rows[0]) for r in some[0])
    acc = InputMoments(geo)
    acc.add(x, np.random.default_rng(0))
    assert acc.rows_seen == rows.shape[1]
    np.testing.assert_allclose(acc.moment(), np.matmul(rows.transpose(0, 2, 1), rows) / rows.shape[1], rtol=1e-4)


def _edge_detector_model(rng: np.random.Generator) -> object:
    """A depthwise conv of large, cancelling weights (edge detectors, as folded BatchNorm leaves them
    in MobileNet-style nets) on images with a large mean, then a 1x1 conv."""
    dw = rng.standard_normal((8, 1, 3, 3)) * 8.0
    dw -= dw.mean(axis=(2, 3), keepdims=True)  # each kernel sums to 0: the image's mean cancels out
    init = {"dw": dw, "w2": rng.standard_normal((8, 8, 1, 1)) * 0.3}
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["c1"], group=8),
        helper.make_node("Conv", ["c1", "w2"], ["y"]),
    ]
    return make_model(nodes, {"x": (1, 8, 24, 24)}, ["y"], init, opset=13)


def _smooth_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """3 + low-frequency variation (bilinear upsampling of 4x4 noise), [n, 8, 24, 24]."""
    coarse = rng.standard_normal((n, 8, 4, 4)) * 0.5
    t = np.linspace(0, 3, 24)
    i0 = np.minimum(t.astype(int), 2)
    f = t - i0
    rows = coarse[:, :, i0] * (1 - f)[:, None] + coarse[:, :, i0 + 1] * f[:, None]
    return (3.0 + rows[..., i0] * (1 - f) + rows[..., i0 + 1] * f).astype(np.float32)


def test_adaptive_rounding_brings_a_quantized_model_closer_to_float(tmp_path, capsys):
    """On smooth images the edge detectors' weight errors add up under nearest rounding; adaptive
    rounding (the default) gives a smaller error against the float model (ONNX Runtime) on inputs the
    calibration never saw, and the report says how much the weights' output error shrank."""
    rng = np.random.default_rng(0)
    model = _edge_detector_model(rng)
    calib = {"x": _smooth_images(rng, 16)[:, None]}
    adaptive = inferon.load(inferon.compile(model, tmp_path / "a.so", quantize="int8", calibration=calib))
    report = capsys.readouterr().err
    assert "adaptive weight rounding" in report and "(nearest) ->" in report
    nearest = inferon.load(inferon.compile(model, tmp_path / "n.so", quantize="int8", calibration=calib,
                                           weight_rounding="nearest"))  # fmt: skip
    assert "adaptive weight rounding" not in capsys.readouterr().err
    errors = {"adaptive": [], "nearest": []}
    for x in _smooth_images(rng, 8):
        ref = run_onnxruntime(model, {"x": x[None]})[0]
        for name, m in (("adaptive", adaptive), ("nearest", nearest)):
            errors[name].append(np.abs(m(x[None]) - ref).mean() / np.abs(ref).mean())
    assert np.mean(errors["adaptive"]) < 0.7 * np.mean(errors["nearest"]), errors
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=calib["x"])
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "c.so"), "--quantize", "int8",
                 "--calibration", str(tmp_path / "calib.npz"), "--weight-rounding", "nearest"]) == 0  # fmt: skip
    cli_nearest = inferon.load(tmp_path / "c.so")
    x = _smooth_images(rng, 1)
    assert np.array_equal(cli_nearest(x), nearest(x)), "the CLI flag picks the same rounding"
    with pytest.raises(InferonError, match="--weight-rounding: only used with --quantize"):
        inferon.compile(model, tmp_path / "x.so", weight_rounding="nearest")
    with pytest.raises(InferonError, match="unknown weight rounding 'up'"):
        inferon.compile(model, tmp_path / "x.so", quantize="int8", calibration=calib, weight_rounding="up")


def test_layers_too_large_for_adaptive_rounding_round_to_nearest(tmp_path, capsys):
    """A fully-connected layer with more inputs than ADAPTIVE_MAX_K (VGG's 25088) is rounded to
    nearest (its K x K moment would not be affordable), the smaller one adaptively; both run."""
    rng = np.random.default_rng(2)
    k = ADAPTIVE_MAX_K + 8
    init = {"w1": rng.standard_normal((k, 16)) * 0.02, "w2": rng.standard_normal((16, 4)) * 0.3}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]  # fmt: skip
    model = make_model(nodes, {"x": (1, k)}, ["y"], init, opset=13)
    calib = {"x": rng.standard_normal((8, 1, k)).astype(np.float32)}
    cm = inferon.load(inferon.compile(model, tmp_path / "m.so", quantize="int8", calibration=calib))
    report = capsys.readouterr().err
    assert "(mean over 1 layers)" in report and "1 layer(s) too large for adaptive rounding" in report
    x = rng.standard_normal((1, k)).astype(np.float32)
    ref = run_onnxruntime(model, {"x": x})[0]
    assert np.abs(cm(x) - ref).max() <= 0.05 * np.abs(ref).max()
