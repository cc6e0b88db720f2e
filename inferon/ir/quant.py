"""Quantization arithmetic in numpy: the one definition the interpreter, the passes and the tests share.

Semantics follow ONNX (QuantizeLinear rounds half to even and saturates) and ONNX Runtime's
QLinearConv / QLinearMatMul: the int32 accumulator (bias included) is converted to float32, scaled by
the float32 multiplier `(sx * sw) / sy`, rounded half to even, offset by the output zero point and
saturated. The kernels compute exactly this, so they are bit-exact with this reference.
"""

from __future__ import annotations

import numpy as np

from inferon.ir.attrs import ActivationKind, EpilogueAttr


def qrange(dtype: np.dtype | type) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype | type) -> np.ndarray:
    """ONNX QuantizeLinear (per tensor): saturate(round_half_even(x / scale) + zero_point)."""
    lo, hi = qrange(dtype)
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, axis: int) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale, per tensor (axis -1) or along `axis`."""
    shape = [1] * q.ndim
    if axis >= 0:
        shape[axis] = -1
    s = np.asarray(scales, np.float32).reshape(shape)
    z = np.asarray(zero_points, np.int64).reshape(shape)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def multipliers(x_scale: float, w_scales: np.ndarray, y_scale: float, channels: int) -> np.ndarray:
    """float32 requantization multipliers (sx * sw[c]) / sy, as ONNX Runtime computes them."""
    sw = np.broadcast_to(np.asarray(w_scales, np.float32), (channels,))
    return ((np.float32(x_scale) * sw) / np.float32(y_scale)).astype(np.float32)


def clamp_range(epilogue: EpilogueAttr, y_scale: float, y_zero_point: int, dtype: np.dtype | type) -> tuple[int, int]:
    """The quantized output range after a fused ReLU / Clip (and saturation to `dtype`)."""
    lo, hi = qrange(dtype)
    kind = epilogue.activation
    if kind == ActivationKind.RELU:
        lo = max(lo, y_zero_point)
    elif kind == ActivationKind.CLIP:
        a, b = float(epilogue.alpha.value.data), float(epilogue.beta.value.data)
        if np.isfinite(a):
            lo = max(lo, min(hi, int(quantize(np.float32([a]), y_scale, y_zero_point, np.int64)[0])))
        if np.isfinite(b):
            hi = min(hi, max(lo, int(quantize(np.float32([b]), y_scale, y_zero_point, np.int64)[0])))
    elif kind != ActivationKind.NONE:
        raise ValueError(f"activation {kind} cannot be fused into a quantized op")
    return lo, hi


def requantize(acc: np.ndarray, mult: np.ndarray, y_zero_point: int, lo: int, hi: int, dtype: np.dtype | type) -> np.ndarray:
    """Output of a quantized GEMM/conv from its int32 accumulators (bias and zero points included).

    `mult` broadcasts against `acc` (one per output channel)."""
    scaled = np.rint(np.asarray(acc).astype(np.float32) * mult)
    return np.clip(scaled.astype(np.float64) + y_zero_point, lo, hi).astype(dtype)


def compensation(w: np.ndarray, x_zero_point: int, bias: np.ndarray | None) -> np.ndarray:
    """Per-output-channel int32 constant folded into the accumulator: bias - zx * sum_k w[c, k].

    With it, the kernels accumulate x * w on the raw stored x (padding reads the zero point, so it
    cancels exactly)."""
    rows = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    comp = -np.int64(x_zero_point) * rows
    if bias is not None:
        comp = comp + bias.astype(np.int64)
    if np.any(np.abs(comp) >= 2**31):
        raise ValueError("quantized bias / zero-point compensation overflows int32")
    return comp.astype(np.int32)


def qadd_constants(qa: tuple[float, int], qb: tuple[float, int], qy: tuple[float, int], dtype: np.dtype | type,
                   lo: float = -np.inf, hi: float = np.inf) -> tuple[float, float, float, float, float]:  # fmt: skip
    """(ra, rb, fixed, lo_q, hi_q) of a quantized Add in ONNX Runtime's arithmetic (its QLinearAdd):
    ra = sa / sy, rb = sb / sy, fixed = zy - (ra * za + rb * zb), all float32; lo_q / hi_q clamp the
    unrounded result: the fused activation's real bounds in output units, within the type's range."""
    f = np.float32
    ra, rb = f(qa[0]) / f(qy[0]), f(qb[0]) / f(qy[0])
    fixed = f(qy[1]) - (ra * f(qa[1]) + rb * f(qb[1]))
    qmin, qmax = qrange(dtype)
    with np.errstate(over="ignore"):
        lo_q = max(f(qmin), f(qy[1]) + f(lo) / f(qy[0])) if np.isfinite(lo) else f(qmin)
        hi_q = min(f(qmax), f(qy[1]) + f(hi) / f(qy[0])) if np.isfinite(hi) else f(qmax)
    return float(ra), float(rb), float(fixed), float(lo_q), float(hi_q)


def qadd(a: np.ndarray, qa: tuple[float, int], b: np.ndarray, qb: tuple[float, int], qy: tuple[float, int],
         dtype: np.dtype | type, lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:  # fmt: skip
    """Quantized Add (+ a fused ReLU / Clip with real bounds lo / hi) as ONNX Runtime computes
    QLinearAdd: round_half_even(fma(a, ra, fma(b, rb, fixed))) clamped (see qadd_constants); within
    one step of quantize(dequantize(a) + dequantize(b)), the QDQ chain it stands for."""
    ra, rb, fixed, lo_q, hi_q = qadd_constants(qa, qb, qy, dtype, lo, hi)

    def fma(x: np.ndarray, y: float, z: np.ndarray | float) -> np.ndarray:  # one rounding, as in hardware
        return (np.asarray(x, np.float64) * np.float64(np.float32(y)) + np.asarray(z, np.float64)).astype(np.float32)

    v = fma(a, ra, fma(b, rb, np.float32(fixed)))
    v = np.minimum(np.maximum(v, np.float32(lo_q)), np.float32(hi_q))
    return np.rint(v).astype(dtype)


def activation_bounds(epilogue: EpilogueAttr) -> tuple[float, float]:
    """The real-valued clamp of a fused ReLU / Clip (infinite when there is none)."""
    kind = epilogue.activation
    if kind == ActivationKind.RELU:
        return 0.0, float("inf")
    if kind == ActivationKind.CLIP:
        return float(epilogue.alpha.value.data), float(epilogue.beta.value.data)
    if kind != ActivationKind.NONE:
        raise ValueError(f"activation {kind} cannot be fused into a quantized op")
    return float("-inf"), float("inf")


def implicit_weight_order(w: np.ndarray) -> np.ndarray:
    """Conv weights [M, C, kh, kw] as the GEMM A [M, ceil(C/4) * kh * kw * 4] of an implicit quantized
    convolution (qgemm.hpp, run_implicit): K runs over (channel group of 4, tap i, tap j, channel in
    group); channels past C get zero weights."""
    m, c, kh, kw = w.shape
    c4 = -(-c // 4)
    padded = np.zeros((m, c4 * 4, kh, kw), dtype=w.dtype)
    padded[:, :c] = w
    return np.ascontiguousarray(padded.reshape(m, c4, 4, kh, kw).transpose(0, 1, 3, 4, 2).reshape(m, -1))
