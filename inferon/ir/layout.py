"""Activation layouts of loop-level buffers: NCHW (the default: a memref without a layout) and the
blocked NCHWc8, written as the memref's affine layout map, as MLIR writes tiled layouts:

    memref<1x240x14x14xf32, affine_map<(d0, d1, d2, d3) -> (d0, (d1 floordiv 8), d2, d3, (d1 mod 8))>>

The shape stays the logical [N, C, H, W]; element (n, c, h, w) lives at
((n * C + c // 8 * 8) * H * W + (h * W + w) * 8 + c % 8): eight channels of one pixel are one ymm
vector. C is a multiple of 8, so the buffer has the same size in both layouts (memory planning is
unchanged), and with H * W = 1 the two coincide. `assign-layout` chooses it; the kernels that read or
write it take the layout as a flag (`vec.gemm` with `a_lanes`, `loop.depthwise_conv2d`,
`loop.global_pool`), or see it through their strides (`loop.binary`, `loop.unary`).
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import AffineMapAttr, MemRefType, NoneAttr
from xdsl.ir import Attribute
from xdsl.ir.affine import AffineExpr, AffineMap

BLOCK = 8  # channels per pixel vector (one ymm of floats)


def _nchwc8_map() -> AffineMap:
    n, c, h, w = (AffineExpr.dimension(i) for i in range(4))
    return AffineMap(4, 0, (n, c // BLOCK, h, w, c % BLOCK))


NCHWC8 = AffineMapAttr(_nchwc8_map())


def is_nchwc8(memref: Attribute) -> bool:
    """Whether a memref type is laid out as NCHWc8."""
    return isinstance(memref, MemRefType) and memref.layout == NCHWC8


def can_block(memref: Attribute) -> bool:
    """Whether a buffer could be NCHWc8: a float [N, C, H, W] with C a multiple of 8 and H * W > 1."""
    if not isinstance(memref, MemRefType) or not isinstance(memref.layout, NoneAttr):
        return False
    shape = memref.get_shape()
    return (
        len(shape) == 4 and str(memref.element_type) == "f32" and shape[1] % BLOCK == 0 and shape[2] * shape[3] > 1
    )


def nchwc8(memref: MemRefType) -> MemRefType:
    """The same buffer laid out as NCHWc8."""
    return MemRefType(memref.element_type, list(memref.get_shape()), NCHWC8)


def to_nchwc8(x: np.ndarray) -> np.ndarray:
    """An [N, C, H, W] array's memory in NCHWc8 order (flat), for tests."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // BLOCK, BLOCK, h * w).transpose(0, 1, 3, 2)).ravel()


def from_nchwc8(flat: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """The [N, C, H, W] array whose NCHWc8 memory is `flat`."""
    n, c, h, w = shape
    return np.ascontiguousarray(flat.reshape(n, c // BLOCK, h * w, BLOCK).transpose(0, 1, 3, 2)).reshape(shape)
