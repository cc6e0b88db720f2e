"""Pass registry: every Inferon pass by name (lazily imported), plus passes users register.

A user pass is any `xdsl.passes.ModulePass`; register it with `register_pass(MyPass, after="fuse-epilogue")`
(or as a decorator) and the default pipeline runs it after that pass. `inferon compile --pass-plugin
file.py` imports such a file before compiling.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from xdsl.passes import ModulePass

from inferon.errors import InferonError

_BUILTIN: dict[str, str] = {
    "remove-identities": "inferon.passes.graph.remove_identities:RemoveIdentitiesPass",
    "fold-pad": "inferon.passes.graph.fold_pad:FoldPadPass",
    "fold-qdq": "inferon.passes.graph.fold_qdq:FoldQdqPass",
    "fold-batchnorm": "inferon.passes.graph.fold_batchnorm:FoldBatchNormPass",
    "decompose-batchnorm": "inferon.passes.graph.decompose_batchnorm:DecomposeBatchNormPass",
    "fold-constants": "inferon.passes.graph.fold_constants:FoldConstantsPass",
    "fold-quantized-elementwise": "inferon.passes.graph.fold_quantized_elementwise:FoldQuantizedElementwisePass",
    "quantize": "inferon.passes.graph.quantize:QuantizePass",
    "fuse-epilogue": "inferon.passes.graph.fuse_epilogue:FuseEpiloguePass",
    "prune": "inferon.passes.graph.prune:PrunePass",
    "sparsify": "inferon.passes.graph.sparsify:SparsifyPass",
    "convert-graph-to-loop": "inferon.passes.conversion.graph_to_loop:ConvertGraphToLoopPass",
    "convert-sparse-to-spmm": "inferon.passes.conversion.sparse_to_spmm:ConvertSparseToSpMMPass",
    "conv-to-depthwise": "inferon.passes.loop.conv_to_depthwise:ConvToDepthwisePass",
    "conv-to-grouped": "inferon.passes.loop.conv_to_grouped:ConvToGroupedPass",
    "elide-copies": "inferon.passes.loop.elide_copies:ElideCopiesPass",
    "fuse-residual-qadd": "inferon.passes.loop.fuse_residual_qadd:FuseResidualQAddPass",
    "conv-to-winograd": "inferon.passes.loop.conv_to_winograd:ConvToWinogradPass",
    "conv-to-im2col": "inferon.passes.loop.conv_to_im2col:ConvToIm2ColPass",
    "select-tiles": "inferon.passes.loop.select_tiles:SelectTilesPass",
    "convert-loop-to-vec": "inferon.passes.conversion.loop_to_vec:ConvertLoopToVecPass",
    "pack-weights": "inferon.passes.vec.pack_weights:PackWeightsPass",
    "assign-layout": "inferon.passes.vec.assign_layout:AssignLayoutPass",
    "plan-memory": "inferon.passes.loop.plan_memory:PlanMemoryPass",
}

# user passes: name -> (class, the pass it runs after)
_USER: dict[str, tuple[type[ModulePass], str]] = {}


def get_pass(name: str) -> type[ModulePass]:
    """The pass class registered under `name`."""
    if name in _USER:
        return _USER[name][0]
    if name not in _BUILTIN:
        raise InferonError(f"unknown pass '{name}'; known passes: {', '.join(all_pass_names())}")
    module, cls = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), cls)


def all_pass_names() -> list[str]:
    return [*_BUILTIN, *(n for n in _USER if n not in _BUILTIN)]


def user_passes() -> dict[str, tuple[type[ModulePass], str]]:
    return dict(_USER)


def register_pass(
    cls: type[ModulePass] | None = None, *, after: str = "fuse-epilogue"
) -> Callable[[type[ModulePass]], type[ModulePass]] | type[ModulePass]:
    """Register a user pass to run after the pass named `after` in the default pipeline."""

    def register(c: type[ModulePass]) -> type[ModulePass]:
        if not (isinstance(c, type) and issubclass(c, ModulePass)):
            raise InferonError(f"{c!r} is not an xdsl ModulePass subclass")
        if after not in _BUILTIN and after not in _USER:
            raise InferonError(f"register_pass: unknown pass '{after}' to run after")
        if c.name in _BUILTIN:
            raise InferonError(f"pass name '{c.name}' is taken by a built-in pass")
        _USER[c.name] = (c, after)
        return c

    return register(cls) if cls is not None else register


def unregister_pass(name: str) -> None:
    _USER.pop(name, None)


def load_plugin(path: str | Path) -> None:
    """Import a Python file that registers passes (`inferon compile --pass-plugin`)."""
    path = Path(path)
    if not path.is_file():
        raise InferonError(f"pass plugin '{path}' does not exist")
    spec = importlib.util.spec_from_file_location(f"inferon_plugin_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InferonError(f"pass plugin '{path}' cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InferonError(f"pass plugin '{path}' failed to import: {exc}") from exc
