"""Converters for Resize (opsets 10, 11, 13, 18, 19) and the deprecated Upsample (7, 9).

Both become one `graph.resize` of the spatial axes H and W of an NCHW tensor (1-D [N, C, W] and
higher-rank tensors are viewed as NCHW when only their last one or two axes are resized). Scales
and sizes must be compile-time constants (folded Shape arithmetic counts); the taps themselves are
computed by `inferon.ir.resize`.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto
from xdsl.dialects.builtin import BoolAttr, FloatAttr, f64
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.ops_shape import reshape
from inferon.frontend.onnx.registry import converter
from inferon.ir.attrs import (
    CoordinateMode,
    CoordinateModeAttr,
    NearestMode,
    NearestModeAttr,
    ResizeMode,
    ResizeModeAttr,
)
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import shape_of, tensor_type
from inferon.ir.resize import ResizeParams

# Upsample and Resize-10: asymmetric coordinates, ONNX Runtime's legacy nearest rounding
LEGACY = {"coordinate": CoordinateMode.ASYMMETRIC, "nearest": NearestMode.SIMPLE}
KEEP_ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _text(ctx: ImportContext, name: str, default: str) -> str:
    value = ctx.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _enum(ctx: ImportContext, name: str, default: str, kind: type, allowed: list[str]) -> object:
    value = _text(ctx, name, default)
    if value not in allowed:
        raise ctx.error(f"unknown {name} '{value}' (expected one of {', '.join(allowed)})")
    return kind(value)


def _mode(ctx: ImportContext, modes: tuple[str, ...]) -> ResizeMode:
    mode = _text(ctx, "mode", "nearest")
    if mode not in modes:
        raise ctx.error(f"unknown mode '{mode}' (expected one of {', '.join(modes)})")
    return ResizeMode(mode)


def _optional_const(ctx: ImportContext, index: int, what: str) -> np.ndarray | None:
    """Constant input `index`, or None when absent or empty (opset 11 passes an empty `scales`)."""
    name = ctx.input(index)
    if not name:
        return None
    value = ctx.require_const(name, what)
    return None if value.size == 0 else value.ravel()


def _from_scales(ctx: ImportContext, shape: tuple[int, ...], scales: list[float]) -> tuple[list[int], list[float]]:
    if any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ctx.error(f"scales {scales} must be positive")
    out = [int(np.float64(s) * d) for s, d in zip(scales, shape)]  # floor(input * scale)
    if min(out) < 1:
        raise ctx.unsupported(f"scales {scales} give an empty output {out} for input {list(shape)}")
    return out, scales


def _target(
    ctx: ImportContext, shape: tuple[int, ...], scales_in: np.ndarray | None, sizes_in: np.ndarray | None
) -> tuple[list[int], list[float]]:
    """(output shape, scale per axis) from Resize-11+'s scales / sizes and its `axes` and
    `keep_aspect_ratio_policy` attributes (opset 18)."""
    rank = len(shape)
    if (scales_in is None) == (sizes_in is None):
        raise ctx.error("exactly one of 'scales' and 'sizes' must be given (non-empty)")
    axes = [int(a) for a in ctx.attr("axes", list(range(rank)))]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ctx.error(f"axes {axes} are out of range or repeated for a rank-{rank} input")
    axes = [a % rank for a in axes]
    given = scales_in if scales_in is not None else sizes_in
    assert given is not None
    if len(given) != len(axes):
        what = "scales" if scales_in is not None else "sizes"
        raise ctx.error(f"{what} has {len(given)} entries, expected {len(axes)} (one per axis of {axes})")
    policy = _text(ctx, "keep_aspect_ratio_policy", "stretch")
    if policy not in KEEP_ASPECT_POLICIES:
        raise ctx.error(f"unknown keep_aspect_ratio_policy '{policy}' (expected one of {', '.join(KEEP_ASPECT_POLICIES)})")
    if scales_in is not None:
        full = [1.0] * rank
        for a, s in zip(axes, scales_in.astype(np.float32).tolist()):
            full[a] = float(s)
        return _from_scales(ctx, shape, full)
    assert sizes_in is not None
    sizes = [int(v) for v in sizes_in.astype(np.int64).tolist()]
    if min(sizes) < 1:
        raise ctx.unsupported(f"sizes {sizes} give an empty output")
    out, scales = list(shape), [1.0] * rank
    for a, size in zip(axes, sizes):
        out[a], scales[a] = size, float(np.float32(size) / np.float32(shape[a]))  # as ONNX Runtime
    if policy != "stretch":
        pick = min if policy == "not_larger" else max
        scale = pick(scales[a] for a in axes)
        for a in axes:
            out[a], scales[a] = int(scale * shape[a] + 0.5), scale
    return out, scales


def _params(ctx: ImportContext, mode: ResizeMode) -> ResizeParams:
    """Resize-11+'s interpolation attributes."""
    coordinate = _text(ctx, "coordinate_transformation_mode", "half_pixel")
    if coordinate == "tf_crop_and_resize":
        raise ctx.unsupported(
            "coordinate_transformation_mode 'tf_crop_and_resize' (crops by the 'roi' input, with "
            "extrapolation_value outside) is not supported"
        )
    allowed = [m.value for m in CoordinateMode]
    if ctx.opset < 19:
        allowed.remove(CoordinateMode.HALF_PIXEL_SYMMETRIC.value)
    if coordinate == "tf_half_pixel_for_nearest":  # how some exporters spell Resize-11's tf_half_pixel_for_nn
        coord: object = CoordinateMode.TF_HALF_PIXEL_FOR_NN
    else:
        coord = _enum(ctx, "coordinate_transformation_mode", "half_pixel", CoordinateMode, allowed)
    nearest = _enum(ctx, "nearest_mode", "round_prefer_floor", NearestMode,
                    [m.value for m in NearestMode if m != NearestMode.SIMPLE])  # fmt: skip
    assert isinstance(coord, CoordinateMode) and isinstance(nearest, NearestMode)
    antialias = int(ctx.attr("antialias", 0))  # opset 18; nearest ignores it (no filter to stretch)
    return ResizeParams(
        mode, coord, nearest, float(ctx.attr("cubic_coeff_a", -0.75)), bool(int(ctx.attr("exclude_outside", 0))),
        bool(antialias) and mode != ResizeMode.NEAREST,
    )  # fmt: skip


def emit_resize(
    ctx: ImportContext, x: SSAValue, out: list[int], scales: list[float], params: ResizeParams
) -> SSAValue:
    """A `graph.resize` of x to `out` (same rank): only the last two axes, and no batch or channel
    axis, may change; other ranks are viewed as NCHW around it."""
    shape = shape_of(x)
    rank = len(shape)
    resized = [a for a in range(rank) if not (math.isclose(scales[a], 1.0) and out[a] == shape[a])]
    if not resized:
        return x
    if rank < 3 or resized[0] < 2:
        raise ctx.unsupported(
            f"resizing axis {resized[0]} of a rank-{rank} tensor ({list(shape)} -> {out}, scales "
            f"{[round(s, 6) for s in scales]}); only the spatial axes of [N, C, ...] (H and W) can be resized"
        )
    if resized[0] < rank - 2:
        raise ctx.unsupported(
            f"resizing {rank - 2}-D spatial axis {resized[0]} ({list(shape)} -> {out}); only the last two "
            "axes (H and W) can be resized"
        )
    if rank == 3:  # [N, C, W] as [N, C, 1, W]
        view, out_view, pair = (*shape[:2], 1, shape[2]), (*shape[:2], 1, out[2]), (1.0, scales[2])
    else:  # leading spatial axes kept: merged into the channels
        c = math.prod(shape[1:-2])
        view, out_view, pair = (shape[0], c, *shape[-2:]), (shape[0], c, *out[-2:]), (scales[-2], scales[-1])
    props = {
        "mode": ResizeModeAttr(params.mode), "coordinate": CoordinateModeAttr(params.coordinate),
        "nearest": NearestModeAttr(params.nearest), "scales": graph.DenseArrayBase.from_list(f64, list(pair)),
        "cubic_a": FloatAttr(params.cubic_a, 32), "exclude_outside": BoolAttr.from_bool(params.exclude_outside),
        "antialias": BoolAttr.from_bool(params.antialias),
    }  # fmt: skip
    op = graph.ResizeOp.create(operands=[reshape(ctx, x, view)], properties=props, result_types=[tensor_type(out_view)])
    return reshape(ctx, ctx.emit(op).results[0], tuple(out))


@converter("Resize", since=10)
def convert_resize_10(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Resize-10: scales only; coordinates and rounding as Upsample."""
    x = ctx.value(node.input[0])
    scales = ctx.require_const(ctx.input(1), "scales").astype(np.float32).ravel().tolist()
    return [_legacy(ctx, x, scales, _mode(ctx, ("nearest", "linear")))]


@converter("Resize", since=11)
def convert_resize(ctx: ImportContext, node: NodeProto) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = shape_of(x)
    params = _params(ctx, _mode(ctx, ("nearest", "linear", "cubic")))
    out, scales = _target(ctx, shape, _optional_const(ctx, 2, "scales"), _optional_const(ctx, 3, "sizes"))
    return [emit_resize(ctx, x, out, scales, params)]


def _legacy(ctx: ImportContext, x: SSAValue, scales: list[float], mode: ResizeMode) -> SSAValue:
    shape = shape_of(x)
    if len(scales) != len(shape):
        raise ctx.error(f"scales has {len(scales)} entries for a rank-{len(shape)} input")
    out, scales = _from_scales(ctx, shape, scales)
    return emit_resize(ctx, x, out, scales, ResizeParams(mode, **LEGACY))


@converter("Upsample", since=7)
def convert_upsample(ctx: ImportContext, node: NodeProto) -> list[Value]:
    """Upsample-7 (scales attribute) and -9 (scales input); removed from ONNX in opset 10."""
    if ctx.opset >= 10:
        raise ctx.error("Upsample was removed in opset 10 (use Resize)")
    x = ctx.value(node.input[0])
    if ctx.opset >= 9:
        scales = ctx.require_const(ctx.input(1), "scales").astype(np.float32).ravel().tolist()
    else:
        scales = [float(s) for s in ctx.attr("scales", [])]
    return [_legacy(ctx, x, scales, _mode(ctx, ("nearest", "linear")))]
