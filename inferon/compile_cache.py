"""The compile cache: ONNX model + compile options -> a model.so built before, without lowering.

`inferon.compile` first looks up a key hashed from everything that decides the output: the model's
bytes, the options, every file of the inferon package and of the C runtime, and the compilers and
their versions (`toolchain.cache_key`'s toolchain part). A hit copies the library the build cache
holds for it (`builds/`); a miss runs the pipeline, and the build's cache entry is then linked under
the key (`compiled/`), so the two caches share one file. Models whose weights live in external
files, user-registered passes, IR dumps, pruning and quantization (their reports come from the
pipeline) bypass this cache; the build cache still applies to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import onnx

from inferon.backend.toolchain import install, runtime_dir, toolchain_digest, tree_digest
from inferon.cache_trim import touch
from inferon.config import load_config

_FORMAT = "1"  # bump when the key's recipe changes


@cache
def _package_digest() -> str:
    """Every file of the inferon package (passes, cost model, templates): the code that lowers."""
    return tree_digest(Path(__file__).resolve().parent)


def model_bytes(model: onnx.ModelProto | str | Path | bytes) -> bytes | None:
    """The serialized model, or None when its weights may live in external files (a TensorProto
    external_data entry holds the key "location") or the file cannot be read."""
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
    elif isinstance(model, bytes):
        data = model
    else:
        try:
            data = Path(model).read_bytes()
        except OSError:
            return None  # the importer reports a missing or unreadable file clearly
    return None if b"location" in data else data


def compile_key(data: bytes, options: Mapping[str, object]) -> str:
    """The key of one compile: model bytes, options (JSON), package, runtime and toolchain."""
    h = hashlib.sha256()
    for part in (
        _FORMAT,
        hashlib.sha256(data).hexdigest(),
        json.dumps(options, sort_keys=True, default=repr),
        _package_digest(),
        tree_digest(runtime_dir()),
        toolchain_digest(),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _entry(key: str) -> Path:
    return load_config().cache_dir / "compiled" / key[:2] / f"{key}.so"


def lookup(key: str, output: Path) -> bool:
    """Install the library compiled under `key` at `output`; False if there is none."""
    entry = _entry(key)
    if not entry.is_file():
        return False
    touch(entry)
    install(entry, output)
    return True


def store(key: str, build: Path | None, output: Path) -> None:
    """Record the finished compile: link its build cache entry `build` (or copy `output`)."""
    entry = _entry(key)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        if build is not None and build.is_file():
            try:
                os.link(build, tmp)  # cache entries are never rewritten in place (install renames)
            except OSError:
                shutil.copyfile(build, tmp)
        else:
            shutil.copyfile(output, tmp)
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only or full cache only costs the next compile


def cacheable(
    *, dump_ir: object, print_ir_after: Sequence[str], user_passes: Mapping[str, object], prune: str | None,
    quantize: str | None,
) -> bool:  # fmt: skip
    """False for compiles that must run the pipeline: IR dumps, user passes (their code is not
    hashed), and pruning / quantization (they print reports computed while lowering)."""
    return not dump_ir and not print_ir_after and not user_passes and not prune and not quantize
