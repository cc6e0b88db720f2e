"""Winograd F(m x m, 3 x 3) transforms: the weight transform done at compile time, and a numpy
reference of the whole algorithm (for tests).

A stride-1 3x3 convolution computes each m x m output tile from an alpha x alpha input tile
(alpha = m + 2): Y = A^T [ (G g G^T) (.) (B^T d B) ] A. The tables are Lavin & Gray's (points 0, 1,
-1 for m = 2; 0, 1, -1, 2, -2 for m = 4, plus infinity); the runtime's transforms
(runtime/kernels/winograd.hpp) use the same B^T and A^T.
"""

from __future__ import annotations

import numpy as np

TILES = (2, 4)  # output tile sizes m the runtime implements

BT = {
    2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
    4: np.array(
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64,
    ),  # fmt: skip
}
G = {
    2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64),
    4: np.array(
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64,
    ),  # fmt: skip
}
AT = {
    2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
    4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64),
}


def alpha(m: int) -> int:
    """Input tile size of F(m x m, 3 x 3)."""
    return m + 2


def tile_grid(ho: int, wo: int, m: int) -> tuple[int, int]:
    """Tile rows and columns covering an Ho x Wo output."""
    return -(-ho // m), -(-wo // m)


def padded_tiles(tiles: int) -> int:
    """Row length of the transformed buffers for `tiles` tiles: at least tiles + 7, a multiple of 8
    (the runtime's transforms move whole 8-float vectors; winograd_padded in winograd.hpp)."""
    return (tiles + 14) // 8 * 8


def point_stride(rows: int, tiles: int) -> int:
    """Floats between the alpha^2 matrices [rows, padded_tiles(tiles)] of a transformed buffer: an odd
    number of 64-byte lines, so that the transforms' alpha^2 concurrent streams spread over the L1
    sets (at a multiple of 4 KiB they all collide: measured 2x slower)."""
    stride = -(-rows * padded_tiles(tiles) // 16) * 16
    return stride + 16 if (stride // 16) % 2 == 0 else stride


def transform_weights(weight: np.ndarray, m: int) -> np.ndarray:
    """U[p, M, C] = (G g G^T)[p] for weight [M, C, 3, 3] (p = a * alpha + b), float32."""
    if m not in TILES:
        raise ValueError(f"Winograd tile {m} not implemented; choose one of {TILES}")
    m_out, c_in = weight.shape[:2]
    kron = np.kron(G[m], G[m])  # [(a, b), (k, l)] = G[a, k] * G[b, l]: one product per kernel
    u = kron @ weight.reshape(m_out * c_in, 9).T.astype(np.float64)  # [alpha^2, M * C]
    return u.astype(np.float32).reshape(alpha(m) ** 2, m_out, c_in)


def reference_conv(x: np.ndarray, weight: np.ndarray, pads: tuple[int, int, int, int], m: int) -> np.ndarray:
    """Stride-1 3x3 convolution of x [C, H, W] by weight [M, C, 3, 3] computed the Winograd way
    in float64 (pads: top, left, bottom, right)."""
    c, h, w = x.shape
    pt, pl, pb, pr = pads
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = tile_grid(ho, wo, m)
    a = alpha(m)
    xp = np.zeros((c, th * m + 2, tw * m + 2))
    ys, xs = slice(pt, pt + min(h, th * m + 2 - pt)), slice(pl, pl + min(w, tw * m + 2 - pl))
    xp[:, ys, xs] = x[:, : ys.stop - ys.start, : xs.stop - xs.start]
    tiles = np.lib.stride_tricks.sliding_window_view(xp, (a, a), axis=(1, 2))[:, ::m, ::m]  # [C, TH, TW, a, a]
    v = np.einsum("ak,cyxkl,bl->abcyx", BT[m], tiles, BT[m])
    u = np.einsum("ak,mckl,bl->abmc", G[m], weight.astype(np.float64), G[m])
    z = np.einsum("abmc,abcyx->abmyx", u, v)
    y = np.einsum("ia,abmyx,jb->myixj", AT[m], z, AT[m]).reshape(weight.shape[0], th * m, tw * m)
    return y[:, :ho, :wo]
