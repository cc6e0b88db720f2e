"""Exceptions raised by Inferon. Every user-facing failure is one of these."""

from __future__ import annotations


class InferonError(Exception):
    """Base class of all Inferon errors."""


class ModelImportError(InferonError):
    """The ONNX model is malformed or uses something Inferon cannot import."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        op_type: str | None = None,
        opset: int | None = None,
    ) -> None:
        self.node = node
        self.op_type = op_type
        self.opset = opset
        where = []
        if node is not None:
            where.append(f"node '{node}'")
        if op_type is not None:
            where.append(f"op {op_type}" + (f" (opset {opset})" if opset is not None else ""))
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnsupportedError(ModelImportError):
    """The model uses an op, attribute or dtype Inferon does not support (yet)."""


class PassError(InferonError):
    """A compiler pass found its preconditions violated."""


class BuildError(InferonError):
    """The system C++ compiler failed on generated code."""


class RuntimeCallError(InferonError):
    """A compiled model rejected its inputs or failed while running."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)
