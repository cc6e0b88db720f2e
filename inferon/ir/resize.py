"""Resize arithmetic in numpy: the source taps (indices and weights) of every output position of one
axis, the one definition the interpreter, `convert-graph-to-loop` (the kernel's tables) and tests share.

Resize is separable: along each resized axis, output position o reads the input at `index[o, t]`
(clamped to the axis, as ONNX's edge padding) with weight `weight[o, t]`, t < taps. The coordinate
transformation maps o to a source coordinate x; nearest keeps one tap (rounded per the nearest mode),
linear two and cubic four around x; antialias (linear / cubic when downscaling) stretches the
filter by 1 / scale. The rules follow ONNX's reference implementation (`onnx.reference.ops.op_resize`)
and ONNX Runtime where the two differ (source coordinates in float32; pytorch_half_pixel of a
length-1 output maps to 0, the spec's value; tf_half_pixel_for_nn, Resize-11's mode that both now lack).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inferon.ir.attrs import CoordinateMode, NearestMode, ResizeMode


@dataclass(frozen=True)
class ResizeParams:
    """Everything but the sizes that decides a resize's taps."""

    mode: ResizeMode = ResizeMode.NEAREST
    coordinate: CoordinateMode = CoordinateMode.HALF_PIXEL
    nearest: NearestMode = NearestMode.ROUND_PREFER_FLOOR
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False


def source_coordinates(coordinate: CoordinateMode, in_size: int, out_size: int, scale: float) -> np.ndarray:
    """x_original of every output position along one axis, computed in float32 in ONNX Runtime's
    order of operations (so nearest rounding agrees with it where float64 would fall on the other
    side of an integer, e.g. 3 / 0.6f = 5, not 4.9999998)."""
    f = np.float32
    y = np.arange(out_size, dtype=f)
    s, half = f(scale), f(0.5)
    if coordinate == CoordinateMode.ALIGN_CORNERS:
        return np.zeros(out_size, f) if out_size == 1 else y * f(in_size - 1) / f(out_size - 1)
    if coordinate == CoordinateMode.ASYMMETRIC:
        return y / s
    if coordinate == CoordinateMode.PYTORCH_HALF_PIXEL:
        return np.zeros(out_size, f) if out_size == 1 else (y + half) / s - half
    if coordinate == CoordinateMode.HALF_PIXEL:
        return (y + half) / s - half
    if coordinate == CoordinateMode.HALF_PIXEL_SYMMETRIC:
        adjustment = f(out_size) / (s * f(in_size))  # the integer over the fractional output length
        offset = f(in_size) / f(2) * (f(1) - adjustment)
        return (np.float64(offset) + (y + 0.5) / np.float64(s) - 0.5).astype(f)  # the last step in double
    assert coordinate == CoordinateMode.TF_HALF_PIXEL_FOR_NN
    return (y + half) / s


def _nearest_index(x: np.ndarray, mode: NearestMode, scale: float) -> np.ndarray:
    if mode == NearestMode.SIMPLE:
        mode = NearestMode.FLOOR if scale >= 1 else NearestMode.CEIL
    if mode == NearestMode.ROUND_PREFER_FLOOR:
        return np.ceil(x - 0.5)
    if mode == NearestMode.ROUND_PREFER_CEIL:
        return np.floor(x + 0.5)
    return np.floor(x) if mode == NearestMode.FLOOR else np.ceil(x)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at distance d."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _filter(p: ResizeParams, ratio: np.ndarray, scale: float) -> np.ndarray:
    """[out, taps] weights of the window starting `start(taps)` below x, given ratio = x - floor(x)
    in (0, 1] (1 at integer x: ONNX prefers the pixel on the left)."""
    if not p.antialias or scale >= 1:
        if p.mode == ResizeMode.LINEAR:
            return np.stack([1 - ratio, ratio], axis=1)
        offsets = np.array([-1.0, 0.0, 1.0, 2.0])  # taps floor(x) - 1 .. floor(x) + 2
        return _cubic(offsets[None, :] - ratio[:, None], p.cubic_a)
    # antialias: the filter stretched by 1 / scale, normalized
    support = 1.0 if p.mode == ResizeMode.LINEAR else 2.0
    start = math.floor(-support / scale) + 1
    taps = np.arange(start, 2 - start if p.mode == ResizeMode.CUBIC else start + 2 - 2 * start, dtype=np.float64)
    d = (taps[None, :] - ratio[:, None]) * scale
    w = np.clip(1 - np.abs(d), 0, 1) if p.mode == ResizeMode.LINEAR else _cubic(d, p.cubic_a)
    return w / w.sum(axis=1, keepdims=True)


def axis_taps(p: ResizeParams, in_size: int, out_size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(index int64 [out, taps], weight float64 [out, taps]) of one axis; indices are clamped into
    [0, in_size). An identity axis (scale 1, same length) has one tap of weight 1."""
    if math.isclose(scale, 1.0) and in_size == out_size:
        return np.arange(out_size, dtype=np.int64)[:, None], np.ones((out_size, 1))
    x = source_coordinates(p.coordinate, in_size, out_size, scale).astype(np.float64)
    if p.mode == ResizeMode.NEAREST:
        index = _nearest_index(x, p.nearest, scale).astype(np.int64)
        return np.clip(index, 0, in_size - 1)[:, None], np.ones((out_size, 1))
    floor = np.floor(x)
    ratio = np.where(x == floor, 1.0, x - floor)
    weight = _filter(p, ratio, scale)
    taps = weight.shape[1]
    # the `taps` nearest pixels, ties to the left (ONNX's _get_neighbor): even windows start at
    # floor(x) - taps/2 + 1 (one lower at integer x, where ratio is 1)
    start = floor.astype(np.int64) - taps // 2 + np.where(x == floor, 0, 1)
    index = start[:, None] + np.arange(taps)[None, :]
    if p.exclude_outside:
        weight = np.where((index < 0) | (index >= in_size), 0.0, weight)
        total = weight.sum(axis=1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, in_size - 1), weight


def resize_reference(x: np.ndarray, p: ResizeParams, out_hw: tuple[int, int], scales: tuple[float, float]) -> np.ndarray:
    """Resize the last two axes of `x` (float64): H, then W."""
    y = x.astype(np.float64)
    for axis, out, scale in ((-2, out_hw[0], scales[0]), (-1, out_hw[1], scales[1])):
        index, weight = axis_taps(p, y.shape[axis], out, scale)
        gathered = np.take(y, index, axis=axis)  # [..., out, taps] (+ W after it for axis -2)
        w = weight if axis == -1 else weight[:, :, None]
        y = (gathered * w).sum(axis=axis)
    return y
