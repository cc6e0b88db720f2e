"""Inferon: an ONNX → C++ compiler for fast CNN inference on x86-64 CPUs.

    import inferon
    inferon.compile("model.onnx", "model.so")
    model = inferon.load("model.so", threads=2)
    y = model(x)
"""

from inferon.compiler import compile, lower
from inferon.errors import (
    BuildError,
    InferonError,
    ModelImportError,
    PassError,
    RuntimeCallError,
    UnsupportedError,
)
from inferon.passes import register_pass
from inferon.runtime import CompiledModel, load
from inferon.version import __version__

__all__ = [
    "BuildError", "CompiledModel", "InferonError", "ModelImportError", "PassError",
    "RuntimeCallError", "UnsupportedError", "__version__", "compile", "load", "lower", "register_pass",
]  # fmt: skip
