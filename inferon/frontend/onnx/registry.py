"""Registry of ONNX op converters, keyed by op type and the opset version they apply from."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from inferon.errors import UnsupportedError

if TYPE_CHECKING:
    from onnx import NodeProto

    from inferon.frontend.onnx.importer import Value

Converter = "Callable[[ImportContext, NodeProto], list[Value]]"
_CONVERTERS: dict[str, list[tuple[int, Callable[..., list[Value]]]]] = {}
DEFAULT_DOMAINS = ("", "ai.onnx")
MICROSOFT = "com.microsoft"  # ONNX Runtime's contrib ops (QLinearAdd, QGemm, ... in QOperator models)


def _key(domain: str, op_type: str) -> str:
    return op_type if domain in DEFAULT_DOMAINS else f"{domain}::{op_type}"


def converter(
    *op_types: str, since: int = 1, domain: str = ""
) -> Callable[[Callable[..., list[Value]]], Callable[..., list[Value]]]:
    """Register a converter for `op_types` of `domain` (default ONNX) used from opset `since` on
    (the version of the default domain; contrib-domain converters use since=1)."""

    def register(fn: Callable[..., list[Value]]) -> Callable[..., list[Value]]:
        for op_type in op_types:
            versions = _CONVERTERS.setdefault(_key(domain, op_type), [])
            versions.append((since, fn))
            versions.sort(key=lambda entry: entry[0])
        return fn

    return register


def lookup(node: NodeProto, opset: int) -> Callable[..., list[Value]]:
    """The converter for `node` at `opset`, or an UnsupportedError naming what is missing."""
    versions = _CONVERTERS.get(_key(node.domain, node.op_type))
    if not versions and node.domain not in DEFAULT_DOMAINS:
        contrib = sorted(k.split("::")[1] for k in _CONVERTERS if k.startswith(f"{node.domain}::"))
        raise UnsupportedError(
            f"operator domain '{node.domain}' is not supported for this op (the default ONNX domain is; "
            f"from this domain only {', '.join(contrib) or 'nothing'})",
            node=node.name or None, op_type=node.op_type, opset=opset,
        )
    if not versions:
        raise UnsupportedError(
            f"operator is not supported; supported operators: {', '.join(supported_ops())}",
            node=node.name or None, op_type=node.op_type, opset=opset,
        )
    chosen = [fn for since, fn in versions if since <= opset]
    if not chosen:
        raise UnsupportedError(
            f"opset {opset} is older than any supported version ({versions[0][0]})",
            node=node.name or None, op_type=node.op_type, opset=opset,
        )
    return chosen[-1]


# the modules whose `@converter`s make up the frontend: a new op family adds its module here
CONVERTER_MODULES = ("ops_nn", "ops_elementwise", "ops_shape", "ops_reduce", "ops_resize", "ops_quant", "ops_einsum")


def load_converters() -> None:
    """Import the converter modules (registering their converters); cheap after the first call."""
    import importlib

    for name in CONVERTER_MODULES:
        importlib.import_module(f"inferon.frontend.onnx.{name}")


def supported_ops() -> list[str]:
    """Names of all ONNX ops with a converter."""
    load_converters()
    return sorted(k for k in _CONVERTERS if "::" not in k)
