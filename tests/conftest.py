"""Shared fixtures: small ONNX models built in code, a compile helper, and for modules whose tests
share one multi-case `model` fixture: that model compiled once (`library`), random inputs (`feeds`)
and ONNX Runtime's outputs on them (`expected`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferon


def cpu_supports(isa: str) -> bool:
    """Whether this CPU runs Inferon's `isa` kernels (what the runtime's load-time detection checks)."""
    from inferon.cpu import supports

    return supports(isa)


def use_isa(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    """Run the models loaded from here on with the `isa` kernels (INFERON_ISA); skip the test where
    this CPU does not have that instruction set."""
    if not cpu_supports(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("INFERON_ISA", isa)


def make_typed_model(
    nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: list[str] | tuple[str, ...],
    inits: dict[str, np.ndarray] | None = None, opset: int = 17,
) -> onnx.ModelProto:
    """A model with float32 inputs and outputs whose initializers keep their dtypes (int64 pads,
    starts, shapes, indices)."""
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, ...]],
    outputs: list[str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A float32 ONNX model from nodes, input shapes and initializers (output shapes left to inference)."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in (initializers or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def activation_nodes(act: str | None, x: str, y: str, init: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """y = act(x) as exporters write it: Clip (0..6, bounds added to `init`), LeakyRelu (alpha 0.1),
    Swish (Sigmoid + Mul), any other unary op by name, Identity for None."""
    if act == "Clip":
        init[f"{y}_lo"], init[f"{y}_hi"] = np.float32(0.0), np.float32(6.0)
        return [helper.make_node("Clip", [x, f"{y}_lo", f"{y}_hi"], [y])]
    if act == "LeakyRelu":
        return [helper.make_node("LeakyRelu", [x], [y], alpha=0.1)]
    if act == "Swish":
        return [helper.make_node("Sigmoid", [x], [f"{y}_s"]), helper.make_node("Mul", [x, f"{y}_s"], [y])]
    return [helper.make_node(act or "Identity", [x], [y])]


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 arrays for every graph input of `model`."""
    rng = np.random.default_rng(seed)
    out = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        out[value.name] = rng.standard_normal(shape).astype(np.float32)
    return out


@pytest.fixture
def small_cnn() -> onnx.ModelProto:
    """Conv+BN+ReLU, a residual Conv+Add+ReLU, pooling and a Gemm head: exercises every fusion."""
    rng = np.random.default_rng(0)
    init = {
        "w1": rng.standard_normal((8, 3, 3, 3)) * 0.3,
        "b1": rng.standard_normal(8) * 0.1,
        "scale": rng.random(8) + 0.5, "shift": rng.standard_normal(8) * 0.1,
        "mean": rng.standard_normal(8) * 0.1, "var": rng.random(8) + 0.5,
        "w2": rng.standard_normal((8, 8, 3, 3)) * 0.2,
        "wfc": rng.standard_normal((10, 8)) * 0.3, "bfc": rng.standard_normal(10) * 0.1,
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], transB=1, name="fc"),
    ]
    return make_model(nodes, {"x": (1, 3, 16, 16)}, ["y"], init)


@pytest.fixture
def compile_and_load(tmp_path: Path) -> Callable[..., inferon.CompiledModel]:
    def build(model: onnx.ModelProto, **kwargs: object) -> inferon.CompiledModel:
        path = inferon.compile(model, tmp_path / "model.so", **kwargs)  # type: ignore[arg-type]
        return inferon.load(path)

    return build


@pytest.fixture(scope="module")
def library(model: onnx.ModelProto, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's `model` fixture compiled once."""
    return inferon.compile(model, tmp_path_factory.mktemp("model") / "model.so")


@pytest.fixture(scope="module")
def feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Random inputs for the module's `model` fixture."""
    return random_feeds(model)


@pytest.fixture(scope="module")
def expected(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's outputs of the module's `model` on `feeds`."""
    from inferon.testing import run_onnxruntime

    return run_onnxruntime(model, feeds)
