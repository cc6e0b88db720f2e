"""The nine real CNN architectures shipped with the onnx package, compiled end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import inferon
from inferon.testing import (
    LIGHT_MODELS,
    expose_logits,
    light_model_path,
    light_reference_output,
    randomize_weights,
    run_onnxruntime,
)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_real_model(name: str, tmp_path: Path) -> None:
    """Shipped model vs its shipped reference output; random-weight model vs ONNX Runtime."""
    shipped = onnx.load(str(light_model_path(name)))
    lib = inferon.compile(shipped, tmp_path / "shipped.so")
    model = inferon.load(lib)
    (info,) = model.inputs
    reference = light_reference_output(name)
    got = model(np.ones(info.shape, dtype=np.float32))
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)

    randomized = expose_logits(randomize_weights(shipped, seed=0))
    lib = inferon.compile(randomized, tmp_path / "random.so")
    model = inferon.load(lib, threads=2)
    x = np.random.default_rng(1).random(info.shape, dtype=np.float32)
    expected = run_onnxruntime(randomized, {info.name: x})
    got = model(x)
    assert len(got) == len(expected) == len(randomized.graph.output)
    for g, e in zip(got, expected):
        scale = float(np.abs(e).max())
        assert scale > 0
        diff = float(np.abs(g - e).max())
        assert diff <= 1e-3 * scale, f"{name}: max abs diff {diff} vs ORT exceeds 1e-3 x output scale {scale}"
