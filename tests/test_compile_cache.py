"""The compile cache (inferon/compile_cache.py): hits skip lowering, every input that decides the
output is in the key, and the bypasses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import inferon
from inferon import compile_cache
from inferon.testing import run_onnxruntime


@pytest.fixture(scope="module")
def shared_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("builds")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_builds: Path) -> Path:
    """A private compile cache, so that hits and misses are this test's own (the g++ builds, kernel
    objects and precompiled header below it are shared by the tests of this module)."""
    path = tmp_path / "cache"
    path.mkdir()
    for sub in ("builds", "kernels", "pch"):
        (shared_builds / sub).mkdir(exist_ok=True)
        (path / sub).symlink_to(shared_builds / sub, target_is_directory=True)
    monkeypatch.setenv("INFERON_CACHE_DIR", str(path))
    return path


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "compiled").rglob("*.so"))


def test_second_compile_hits_and_runs(small_cnn: onnx.ModelProto, cache_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    first = inferon.compile(small_cnn, tmp_path / "a.so")
    assert len(_entries(cache_dir)) == 1
    second = inferon.compile(small_cnn, tmp_path / "b.so", verbose=True)
    err = capsys.readouterr().err
    assert "compile cache hit" in err and "passes in" not in err  # the pipeline did not run
    assert first.read_bytes() == second.read_bytes()
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    (want,) = run_onnxruntime(small_cnn, {"x": x})
    with inferon.load(second) as m:
        np.testing.assert_allclose(m(x), want, rtol=1e-4, atol=1e-5)


def test_key_covers_model_and_options(small_cnn: onnx.ModelProto) -> None:
    data = compile_cache.model_bytes(small_cnn)
    assert data is not None
    base = {"input_shapes": {}, "target": "native", "sparse": "auto", "winograd": "auto"}
    key = compile_cache.compile_key(data, base)
    assert compile_cache.compile_key(data, dict(base)) == key
    for name, value in [("target", "avx2"), ("sparse", "off"), ("winograd", "off"), ("input_shapes", {"x": [2]})]:
        assert compile_cache.compile_key(data, {**base, name: value}) != key, name
    other = onnx.ModelProto()
    other.CopyFrom(small_cnn)
    other.graph.initializer[0].float_data.append(0.0)  # any byte of the model
    assert compile_cache.compile_key(other.SerializeToString(), base) != key


def test_a_changed_option_compiles_again(small_cnn: onnx.ModelProto, cache_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    inferon.compile(small_cnn, tmp_path / "a.so")
    inferon.compile(small_cnn, tmp_path / "b.so", target="scalar", verbose=True)
    assert "compile cache hit" not in capsys.readouterr().err
    assert len(_entries(cache_dir)) == 2


def test_the_level_the_model_will_run_with_is_in_the_key(
    small_cnn: onnx.ModelProto, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`sparsify` picks formats with the figures of the level the model will run with here (a
    "native" model: the host's, or a lower INFERON_ISA): the same options on another level compile again."""
    monkeypatch.delenv("INFERON_ISA", raising=False)
    inferon.compile(small_cnn, tmp_path / "a.so")
    monkeypatch.setenv("INFERON_ISA", "scalar")
    inferon.compile(small_cnn, tmp_path / "b.so", verbose=True)
    assert "compile cache hit" not in capsys.readouterr().err
    assert len(_entries(cache_dir)) == 2


def test_bypasses(small_cnn: onnx.ModelProto, cache_dir: Path, tmp_path: Path) -> None:
    """IR dumps, pruning and models with external weight files always run the pipeline."""
    inferon.compile(small_cnn, tmp_path / "a.so", dump_ir=tmp_path / "ir")
    inferon.compile(small_cnn, tmp_path / "b.so", print_ir_after=["fuse-epilogue"])
    inferon.compile(small_cnn, tmp_path / "c.so", prune="unstructured:0.5")
    assert _entries(cache_dir) == []
    external = tmp_path / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save(small_cnn, str(external), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)  # fmt: skip
    assert compile_cache.model_bytes(external) is None
    inferon.compile(external, tmp_path / "d.so")
    assert _entries(cache_dir) == []


def test_overwriting_the_output_leaves_the_cache_intact(small_cnn: onnx.ModelProto, cache_dir: Path,
                                                        tmp_path: Path) -> None:  # fmt: skip
    out = inferon.compile(small_cnn, tmp_path / "a.so")
    (entry,) = _entries(cache_dir)
    good = entry.read_bytes()
    out.write_bytes(b"junk")  # a user writing onto the library in place
    assert entry.read_bytes() == good
    again = inferon.compile(small_cnn, tmp_path / "a.so")
    assert again.read_bytes() == good


def _relu_sigmoid() -> onnx.ModelProto:
    nodes = [onnx.helper.make_node("Relu", ["x"], ["r"]), onnx.helper.make_node("Sigmoid", ["r"], ["y"])]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 70])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 70])],
    )  # fmt: skip
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_kernel_objects_are_built_once_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model links the kernel families it calls from objects compiled on first use; a second model
    reuses them; with the precompiled header turned off the build parses the kernels itself and
    links the same objects; an unwritable kernel cache costs only time."""
    from inferon.backend.toolchain import kernel_families

    monkeypatch.setenv("INFERON_CACHE_DIR", str(tmp_path / "cache"))
    x = np.random.default_rng(0).standard_normal((3, 70)).astype(np.float32)
    model = _relu_sigmoid()
    first = inferon.compile(model, tmp_path / "a.so")
    objects = sorted((tmp_path / "cache" / "kernels").rglob("*.o"))
    assert [o.name for o in objects] == ["elementwise.o"]
    stamp = objects[0].stat().st_mtime_ns
    np.testing.assert_allclose(inferon.load(first)(x), run_onnxruntime(model, {"x": x})[0], rtol=1e-6, atol=1e-6)
    monkeypatch.setenv("INFERON_PCH", "0")
    model.graph.node[1].op_type = "Tanh"
    second = inferon.compile(model, tmp_path / "b.so")
    assert objects[0].stat().st_mtime_ns == stamp
    np.testing.assert_allclose(inferon.load(second)(x), np.tanh(np.maximum(x, 0)), rtol=1e-6, atol=1e-6)
    # a kernel cache that cannot be written: the object is compiled for this build only
    monkeypatch.setenv("INFERON_CACHE_DIR", str(tmp_path / "blocked"))
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "kernels").write_text("not a directory")
    model.graph.node[1].op_type = "Neg"
    third = inferon.compile(model, tmp_path / "c.so")
    np.testing.assert_allclose(inferon.load(third)(x), -np.maximum(x, 0), rtol=1e-6, atol=1e-6)
    assert kernel_families("inferon::gemm(1, 2); inferon::qdepthwise_conv2d<uint8_t, int8_t>(g, x, y);") == [
        "GEMM", "GEMM_LANES", "GEMM_ZMM", "GEMM_SMALL_M", "DEPTHWISE"]
    assert kernel_families("inferon::gemm_like(); // inferon::spmm_x") == []


def test_every_kernel_entry_point_is_in_its_prebuilt_family() -> None:
    """Each `INFERON_ENTRY` function of a family header is listed in `PREBUILT_FAMILIES` (a model
    calling an unlisted one would not link its family's object)."""
    import re

    from inferon.backend.toolchain import PREBUILT_FAMILIES, runtime_dir

    entries: set[str] = set()
    for header in sorted((runtime_dir() / "kernels").glob("*.hpp")):
        text = header.read_text()
        names = set(re.findall(r"INFERON_ENTRY\s+[\w:<>*&\s]*?\b(\w+)\s*\(", text))
        families = set(re.findall(r"INFERON_DEFINE_KERNELS\((\w+)\)", text)) - {"FAMILY"}
        entries |= names
        for family in families:
            assert family in PREBUILT_FAMILIES, f"{header.name}: family {family} is not in PREBUILT_FAMILIES"
        if len(families) == 1:
            missing = names - set(PREBUILT_FAMILIES[families.pop()])
            assert not missing, f"{header.name}: entry points {sorted(missing)} are not listed"
    assert {"select", "binary", "qgemm"} <= entries
    assert entries <= {name for names in PREBUILT_FAMILIES.values() for name in names}


def test_cache_trim_evicts_least_recently_used_libraries(tmp_path: Path) -> None:
    """`trim` counts a library once however many links it has, evicts by last use (mtime), keeps `keep`."""
    import os

    from inferon.cache_trim import touch, trim

    cache = tmp_path / "cache"

    def entry(sub: str, name: str, size: int, age: float) -> Path:
        path = cache / sub / name[:2] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
        os.utime(path, (1e9 + age, 1e9 + age))
        return path

    a, b, c = entry("builds", "aa.so", 1000, 0), entry("builds", "bb.so", 1000, 1), entry("builds", "cc.so", 1000, 2)
    link = cache / "compiled" / "dd" / "dd.so"
    link.parent.mkdir(parents=True)
    os.link(a, link)
    touch(link)  # a compile-cache hit on a: now the most recently used library
    (cache / "kernels").mkdir()
    (cache / "kernels" / "gemm.o").write_bytes(b"\0" * 5000)  # not a cached library: never counted
    assert trim(cache, 0) == []  # 0: no limit
    assert trim(cache, 2000) == [b]  # 3000 bytes (a once): the least recently used goes
    assert a.exists() and link.exists() and c.exists()
    removed = trim(cache, 500, keep=c)  # c is older than a, but kept: a and its link go
    assert sorted(removed) == sorted([a, link]) and c.exists() and (cache / "kernels" / "gemm.o").exists()


@pytest.mark.parametrize(("text", "gb"), [(None, 10.0), ("", 10.0), ("0.5", 0.5), ("0", 0.0), ("lots", 10.0), ("-3", 0.0)])
def test_cache_size_limit_from_the_environment(text: str | None, gb: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferon.config import load_config

    if text is None:
        monkeypatch.delenv("INFERON_CACHE_MAX_GB", raising=False)
    else:
        monkeypatch.setenv("INFERON_CACHE_MAX_GB", text)
    assert load_config().cache_max_bytes == int(gb * 2**30)
