"""Quantization arithmetic in numpy: the one definition the interpreter, the passes and the tests share.

Semantics follow ONNX: QuantizeLinear rounds half to even and saturates; a QLinearConv /
QLinearMatMul (and every folded QDQ chain) requantizes its int32 accumulator (bias included) with the
float32 multiplier M = (sx * sw) / sy as round_half_even(acc * M) + zy, saturated, where acc * M is
the *exact* product. The kernels compute it in fixed point: M = mult / 2^shift exactly (a float32 has
a 24-bit significand), so acc * mult is an exact 64-bit integer and the rounding is an integer shift
(`fixed_point`, `requantize`). That is ONNX's reference arithmetic (float64, exact for every
accumulator below 2^29) bit for bit; ONNX Runtime's CPU kernels instead round acc * M to float32
first, which can move a value lying within 2^-16 of a half step by one step.
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


# A fixed-point requantization record per output channel (int32 [channels, 8], requant.hpp's Requant)
REQUANT_FIELDS = ("mult", "shift", "acc_lo", "acc_hi", "round_lo", "round_hi", "offset", "flags")
REQUANT_TIES, REQUANT_CLAMP_ACC = 1, 2
MAX_SHIFT = 61  # 2^61 is requant.hpp's rounding offset: a multiple of 2^shift, above any |acc * mult|


def fixed_point(mult: np.ndarray, zy: int, lo: int, hi: int) -> np.ndarray:
    """The kernels' form of float32 multipliers M: one int32 record per channel (REQUANT_FIELDS).

    M = mult / 2^shift exactly (mult odd, < 2^24, 1 <= shift <= 61; an M below 2^-38 rounds every
    int32 accumulator to 0 and becomes mult 0). [acc_lo, acc_hi] clamps the accumulator without
    changing any output clamped to [lo, hi] (zero point zy included); the kernels apply it where the
    product could leave int32 (flag REQUANT_CLAMP_ACC). round (int64, two int32 fields) and offset
    are requant.hpp's rounding constants; REQUANT_TIES marks channels where acc * M can be an exact
    tie for an accumulator in range (rounded to even)."""
    m = np.atleast_1d(np.asarray(mult, np.float32))
    out = np.zeros((m.size, len(REQUANT_FIELDS)), np.int32)
    i32 = np.iinfo(np.int32)
    for c, value in enumerate(m.ravel().tolist()):
        if not np.isfinite(value) or value < 0 or value >= 2.0**23:
            raise ValueError(f"requantization multiplier {value!r} (channel {c}) is outside [0, 2^23): "
                             "check the input, weight and output scales")  # fmt: skip
        frac, exp = np.frexp(np.float32(value))  # value = frac * 2^exp, frac in [0.5, 1)
        q, s = int(frac * 2**24), 24 - int(exp)
        if q == 0 or s > MAX_SHIFT:
            q, s = 0, 1
        while s > 1 and q % 2 == 0:  # mult odd: see the ties test below
            q, s = q // 2, s - 1
        acc_lo, acc_hi = int(i32.min), int(i32.max)
        if q:
            acc_hi = min(acc_hi, -((-(hi - zy) << s) // q))  # ceil((hi - zy) 2^s / q): acc * M >= hi - zy
            acc_lo = max(acc_lo, ((lo - zy) << s) // q)  # floor: acc * M <= lo - zy from here down
        reach = max(abs(acc_lo), abs(acc_hi))
        tz = (q & -q).bit_length() - 1 if q else 0
        ties = q != 0 and s - 1 - tz >= 0 and (1 << (s - 1 - tz)) <= reach  # acc * q = odd * 2^(s-1) in range
        clamp_acc = (2**31 * q >> s) + 1024 >= 2**31  # |acc * M| could leave int32 (M near 1 or above)
        rnd = (1 << 61) + (1 << (s - 1)) - int(ties)
        offset = -(1 << (61 - s)) % 2**32
        flags = (REQUANT_TIES if ties else 0) | (REQUANT_CLAMP_ACC if clamp_acc else 0)
        fields = [q, s, acc_lo, acc_hi, rnd & 0xFFFFFFFF, rnd >> 32, offset, flags]
        out[c] = np.array([f % 2**32 for f in fields], np.uint32).view(np.int32)
    return out


def requantize(acc: np.ndarray, mult: np.ndarray, y_zero_point: int, lo: int, hi: int, dtype: np.dtype | type) -> np.ndarray:
    """Output of a quantized GEMM/conv from its int32 accumulators (bias and zero points included):
    clamp(round_half_even(acc * M) + zy, lo, hi) with the exact product, in requant.hpp's fixed point.

    `mult` (float32 M, one per output channel) broadcasts against `acc`."""
    acc = np.asarray(acc, np.int64)
    m = np.broadcast_to(np.asarray(mult, np.float32), np.broadcast_shapes(np.shape(mult), (1,) * acc.ndim))
    table = fixed_point(m.ravel(), y_zero_point, lo, hi).astype(np.int64)
    q, s, acc_lo, acc_hi = (table[:, i].reshape(m.shape) for i in range(4))
    n = np.clip(acc, acc_lo, acc_hi) * q  # exact: |n| < 2^61
    r = (n + (np.int64(1) << (s - 1)) - 1 + ((n >> s) & 1)) >> s  # round half to even, arithmetic shift
    return np.clip(r + y_zero_point, lo, hi).astype(dtype)


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
