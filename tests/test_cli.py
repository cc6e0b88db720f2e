"""The command line and the C example, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferon.cli import main
from inferon.testing import run_onnxruntime

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_file(small_cnn: onnx.ModelProto, tmp_path: Path) -> Path:
    path = tmp_path / "small.onnx"
    onnx.save(small_cnn, str(path))
    return path


def test_compile_run_inspect(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "small.so"
    assert main(["compile", str(model_file), "-o", str(lib), "--dump-ir", str(tmp_path / "ir"),
                 "--print-ir-after", "fuse-epilogue"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "IR after fuse-epilogue" in captured.err and "graph.conv2d" in captured.err
    assert (tmp_path / "ir" / "001_remove-identities.mlir").is_file()

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(lib), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    (expected,) = run_onnxruntime(onnx.load(str(model_file)), {"x": x})
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)
    assert "latency" in capsys.readouterr().out

    assert main(["inspect", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "Conv" in out and "supported" in out and "GFLOP" in out and "input  x: [1, 3, 16, 16] float32" in out

    # dtypes as the compiled model takes / returns them
    bools = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Not", ["a"], ["b"])], "t",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.BOOL, [3])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.BOOL, [3])],
    ), opset_imports=[onnx.helper.make_opsetid("", 17)])  # fmt: skip
    onnx.save(bools, str(tmp_path / "not.onnx"))
    assert main(["inspect", str(tmp_path / "not.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input  a: [3] bool" in out and "output b: [3] bool" in out

    assert main(["run", str(lib), "--profile", "3"]) == 0
    out = capsys.readouterr().out
    assert "profile over 3 run(s)" in out and "vec.gemm 8x256x27" in out


def test_profile_api(model_file: Path, tmp_path: Path) -> None:
    import inferon

    lib = tmp_path / "small.so"
    inferon.compile(model_file, lib)
    model = inferon.load(lib)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    rows = model.profile(x, runs=4)
    # small_cnn runs 2 conv GEMMs, max pool, global pool, FC GEMM (the Flatten copy is elided)
    assert sorted(r.index for r in rows) == list(range(len(rows))) and len(rows) == 5
    assert sum(r.op.startswith("vec.gemm") for r in rows) == 3
    assert all(r.ms >= 0 for r in rows) and abs(sum(r.percent for r in rows) - 100.0) < 1e-6
    assert [r.ms for r in rows] == sorted((r.ms for r in rows), reverse=True)
    np.testing.assert_allclose(model(x), run_onnxruntime(onnx.load(str(model_file)), {"x": x})[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(inferon.InferonError, match="runs must be >= 1"):
        model.profile(x, runs=0)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tmp_path / "missing.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["compile", "m.onnx", "--input-shape", "x=1,a"])
    assert exc.value.code == 2


def test_pass_plugin(model_file: Path, tmp_path: Path) -> None:
    from inferon.passes import unregister_pass

    try:
        assert main(["compile", str(model_file), "-o", str(tmp_path / "m.so"), "--dump-ir", str(tmp_path / "ir"),
                     "--pass-plugin", str(ROOT / "examples" / "custom_pass.py")]) == 0  # fmt: skip
        assert (tmp_path / "ir" / "002_drop-redundant-relu.mlir").is_file()
    finally:
        unregister_pass("drop-redundant-relu")


def test_console_script_help() -> None:
    out = subprocess.run([sys.executable, "-m", "inferon", "--help"], capture_output=True, text=True, check=True)
    assert "compile" in out.stdout and "inspect" in out.stdout


def test_c_example(model_file: Path, tmp_path: Path) -> None:
    """examples/c builds against a model.so and runs it with no Python."""
    lib = tmp_path / "model.so"
    assert main(["compile", str(model_file), "-o", str(lib)]) == 0
    env = dict(os.environ)
    subprocess.run(["make", "-s", "-C", str(ROOT / "examples" / "c"), f"MODEL={lib}", f"OUT={tmp_path / 'main'}"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    exe = tmp_path / "main" if (tmp_path / "main").exists() else ROOT / "examples" / "c" / "main"
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "x" in result.stdout and "y" in result.stdout


def test_target_caps_the_isa(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import inferon

    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    (expected,) = run_onnxruntime(onnx.load(str(model_file)), {"x": x})
    for target in ("scalar", "native"):
        lib = tmp_path / f"small_{target}.so"
        assert main(["compile", str(model_file), "-o", str(lib), "--target", target]) == 0
        model = inferon.load(lib)
        assert (model.isa == "scalar") == (target == "scalar")
        np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(SystemExit):
        main(["compile", str(model_file), "--target", "sse2"])
    assert "invalid choice" in capsys.readouterr().err


def test_two_threads_restore_the_callers_cpu_affinity(model_file: Path, tmp_path: Path) -> None:
    import os

    import inferon

    lib = inferon.compile(model_file, tmp_path / "small.so")
    model = inferon.load(lib, threads=2)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    before = os.sched_getaffinity(0)
    for _ in range(3):
        np.testing.assert_allclose(model(x), run_onnxruntime(onnx.load(str(model_file)), {"x": x})[0], rtol=1e-4, atol=1e-5)
    assert os.sched_getaffinity(0) == before  # the run pins the caller only while it runs


def test_threads_are_capped_at_the_available_cores(model_file: Path, tmp_path: Path) -> None:
    """More threads than the cores this process may use are capped to them (no oversubscription): a
    64-thread request starts no 64-thread team, and 0 means all cores."""
    import os

    import inferon

    lib = inferon.compile(model_file, tmp_path / "small.so")
    cores = len(os.sched_getaffinity(0))
    x = np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = run_onnxruntime(onnx.load(str(model_file)), {"x": x})[0]
    before = len(os.listdir("/proc/self/task"))
    model = inferon.load(lib, threads=64)
    assert model.threads == cores and inferon.load(lib, threads=0).threads == cores
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    assert len(os.listdir("/proc/self/task")) - before < 8  # an uncapped team would add 63 threads


def test_passes_lists_the_pipeline_and_the_opt_in_passes(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from inferon.pipeline import DEFAULT_PASSES

    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^\s*\d+\. \[\w+\s*\] (\S+)", out, flags=re.M)
    assert listed == [name for _, name in DEFAULT_PASSES]
    opt_in = out.split("opt-in:")[1]
    for name, how in (("quantize", "--quantize int8"), ("prune", "--prune")):
        assert name in opt_in and how in opt_in
