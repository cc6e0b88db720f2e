"""Adaptive rounding of INT8 weights: round each weight up or down so that the layer's *output*
error on the calibration inputs is smallest, instead of rounding every weight to its nearest step.

Rounding to nearest treats the weight errors e = q - w/s of a row as independent, but what the
network sees is the output error e . x, whose mean square over the calibration inputs is e^T C e
with C = E[x x^T] (the second moment of the layer's input patches). Where inputs are correlated
(smooth images under a 3x3 edge detector whose large weights sum to ~0, typical of depthwise
convolutions with BatchNorm folded in) the nearest rounding's errors add up along C's large
directions; choosing, per weight, floor or ceil to minimise e^T C e removes most of that (AdaRound's
objective, Nagel et al. 2020, solved greedily here).

Algorithm: start from round-to-nearest and sweep the columns, flipping a weight to its other
neighbour (floor <-> ceil) where that lowers e^T C e; a few sweeps (coordinate descent: the
objective never increases, so the result is never worse than nearest rounding on the calibration
data). The gradient g = e C is updated lazily per block of columns (one matrix product per block).
Weights stay on their floor or ceil: exact zeros (pruned weights) stay zero and |q| <= 127.

`C` is regularised towards its diagonal by K / n (K inputs per row, n input rows seen): with few
samples (a fully connected layer at batch 1 sees one row per calibration sample) the rounding falls
back towards nearest instead of fitting the calibration set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SWEEPS = 3
BLOCK = 64
BIG = 2e9  # rows * K^2 above which one sweep only (each sweep costs about one rows x K x K product)


def regularised(moment: np.ndarray, rows_seen: int) -> np.ndarray:
    """E[x x^T] [..., K, K] plus (K / rows_seen) times its diagonal."""
    k = moment.shape[-1]
    alpha = k / max(rows_seen, 1)
    diag = np.einsum("...kk->...k", moment)
    out = moment.copy()
    idx = np.arange(k)
    out[..., idx, idx] = diag * (1.0 + alpha)
    return out


def output_error(q: np.ndarray, v: np.ndarray, moment: np.ndarray) -> float:
    """sum over rows of (q - v) C (q - v)^T: the mean square output error of integer weights q for
    weights v (both in units of the row's scale); `moment` [K, K] shared or [rows, K, K]."""
    e = np.asarray(q, np.float64) - v
    if moment.ndim == 2:
        return float(np.einsum("mk,mk->", e @ moment, e))
    return float(np.einsum("mk,mkj,mj->", e, moment, e))


@dataclass
class Rounded:
    """Integer weights from `adaptive_round`, with the output errors (e C e^T summed over rows) of
    nearest rounding and of these weights."""

    q: np.ndarray
    nearest_error: float
    error: float


def adaptive_round(v: np.ndarray, moment: np.ndarray, lo: int = -127, hi: int = 127,
                   sweeps: int | None = None) -> Rounded:  # fmt: skip
    """Integer weights q [M, K] (each the floor or ceil of v, within [lo, hi]) lowering
    (q - v) C (q - v)^T per row from round-to-nearest. `v` [M, K]: weights divided by their row's
    scale; `moment` C: [K, K] (shared by all rows) or [M, K, K] (one per row: depthwise / grouped).
    `sweeps`: SWEEPS, or 1 for layers above BIG. Float32 arithmetic (a flip whose gain is within
    rounding noise of 0 may go either way)."""
    v = np.asarray(v, np.float64)
    per_row = moment.ndim == 3
    if moment.shape[-2:] != (v.shape[1], v.shape[1]) or (per_row and moment.shape[0] != v.shape[0]):
        raise ValueError(f"moment {moment.shape} does not fit weights {v.shape}")
    # work on columns: [K, M] arrays (a column of the weights is contiguous), moments [K, K(, M)]
    vt = np.ascontiguousarray(v.T)
    lower = np.clip(np.floor(vt), lo, hi).astype(np.float32)
    upper = np.clip(np.ceil(vt), lo, hi).astype(np.float32)
    q = np.clip(np.rint(vt), lo, hi).astype(np.float32)
    c = np.ascontiguousarray((moment.transpose(1, 2, 0) if per_row else moment).astype(np.float32))  # c[j, k(, m)]
    err = (q - vt).astype(np.float32)
    grad = np.einsum("jkm,jm->km", c, err) if per_row else c @ err  # e C, [K, M]
    nearest_error = float(np.einsum("km,km->", err.astype(np.float64), grad))
    diag = np.ascontiguousarray(np.einsum("kkm->km", c)) if per_row else np.diag(c)[:, None]
    k = vt.shape[0]
    if sweeps is None:
        sweeps = 1 if v.shape[0] * k * k > BIG else SWEEPS
    for _ in range(sweeps):
        flips = 0
        for b0 in range(0, k, BLOCK):
            b1 = min(k, b0 + BLOCK)
            steps = np.zeros((b1 - b0, vt.shape[1]), np.float32)
            g = grad[b0:b1].copy()
            for j in range(b0, b1):
                t = np.where(q[j] == lower[j], upper[j], lower[j]) - q[j]  # to the other neighbour
                take = (t != 0) & (t * (2.0 * g[j - b0] + t * diag[j]) < 0.0)
                if not take.any():
                    continue
                t = np.where(take, t, np.float32(0.0))
                q[j] += t
                steps[j - b0] = t
                flips += int(take.sum())
                g += c[j, b0:b1] * t if per_row else c[j, b0:b1, None] * t
            if steps.any():
                grad += np.einsum("bkm,bm->km", c[b0:b1], steps) if per_row else c[:, b0:b1] @ steps
        if not flips:
            break
    error = float(np.einsum("km,km->", q.astype(np.float64) - vt, grad.astype(np.float64)))
    return Rounded(np.ascontiguousarray(q.T.astype(np.float64)), nearest_error, error)
