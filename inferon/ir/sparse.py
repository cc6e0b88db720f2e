"""Sparse weight encodings (numpy): CSR and 2:4, and magnitude pruning.

A sparse weight is a matrix A [M, K] (convolutions: [C_out, C_in/group * kh * kw] per group,
stacked block-diagonally; fully-connected layers: W^T [N_out, K]) multiplied with dense
activations B [K, N]. The runtime (`runtime/kernels/sparse.hpp`) finds row k of B at
B + index(k) * scale, so the column index stored for column k may be remapped (`columns`): the
compiler stores filter-tap offsets in a zero-bordered image for stride-1 convolutions read in place.

- CSR: `values` (float32, nnz), `indices` (uint16 when every index fits, else int32), `row_ptr`
  (int32, M + 1; with column blocks, kblocks x (M + 1)).
- 2:4: every aligned group of four columns holds at most two nonzeros. `values` [M, K4/2] (two per
  group, zero-padded; K4 = K rounded up to 4) and `meta` [M, ceil(K4/8)] uint8: two groups per byte,
  each 4 bits = the positions (0-3) of its two values, first in bits 0-1.
- block1x4 (int8 weights, `runtime/kernels/qgemm.hpp`): CSR over the aligned groups of four
  columns that hold any nonzero: `values` int8 [blocks, 4] (the group's four weights, zeros
  included: one vpdpbusd operand), `indices` (group numbers, uint16 / int32), `row_ptr` (int32,
  M + 1; with k-group chunks, kchunks x (M + 1), the blocks stored chunk by chunk).
- CSR of int8 weights (`runtime/kernels/qcsr.hpp`): each row's nonzeros in quads, `values` int8
  [quads, 4] (a row's last quad padded with zero weights), `indices` [quads, 4] (the column of each,
  uint16 / int32), `row_ptr` (int32, M + 1, in quads; with column chunks, kchunks x (M + 1), the quads
  stored chunk by chunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPMM_TILE = 64  # columns per register tile of the sparse kernel (4 zmm / 8 ymm vectors)


@dataclass(frozen=True)
class CSRMatrix:
    values: np.ndarray
    indices: np.ndarray
    row_ptr: np.ndarray  # kblocks x (M + 1), offsets into values / indices
    kblocks: int = 1

    @property
    def index_bits(self) -> int:
        return 8 * self.indices.dtype.itemsize


@dataclass(frozen=True)
class NM24Matrix:
    values: np.ndarray  # [M, K4 // 2]
    meta: np.ndarray  # [M, ceil(K4 / 8)] uint8
    k: int  # K4, the padded column count


def frame_plane(hq: int, wq: int) -> int:
    """Floats between the planes of the zero-bordered frame that sparse convs read in place (must
    match `padded_stride` in runtime/kernels/sparse.hpp): hq*wq rounded up to a cache line, plus one
    line when that is a multiple of 1 KB (power-of-two strides thrash L1 sets)."""
    p = -(-hq * wq // 16) * 16
    return p + 16 if p % 256 == 0 else p


def frame_shape(kh: int, kw: int, ho: int, wo: int, sh: int = 1, sw: int = 1) -> tuple[int, int, int, int]:
    """(phase rows, phase columns, Hq, Wq) of the frame of a conv with dilation 1 (runtime: `Frame`
    in sparse.hpp): per input channel one plane per used stride phase, each Hq x Wq; the product
    runs on the ho x Wq "wide" grid."""
    return min(sh, kh), min(sw, kw), ho + (kh - 1) // sh, wo + (kw - 1) // sw


def implicit_columns(c: int, kh: int, kw: int, ho: int, wo: int, sh: int = 1, sw: int = 1) -> np.ndarray:
    """Frame offset of every im2col column (c, i, j) of a conv with dilation 1: tap (i, j) reads
    plane (c, i % sh, j % sw) at row i // sh, column j // sw (plus the output position)."""
    ph, pw, hq, wq = frame_shape(kh, kw, ho, wo, sh, sw)
    chan, ti, tj = np.unravel_index(np.arange(c * kh * kw), (c, kh, kw))
    plane = (chan * ph + ti % sh) * pw + tj % sw
    return (plane * frame_plane(hq, wq) + (ti // sh) * wq + tj // sw).astype(np.int64)


def index_dtype(max_index: int) -> np.dtype:
    """The narrowest index type the kernels take for indices up to `max_index`."""
    return np.dtype(np.uint16) if max_index < 1 << 16 else np.dtype(np.int32)


def csr_encode(a: np.ndarray, columns: np.ndarray | None = None, blocks: np.ndarray | None = None) -> CSRMatrix:
    """CSR of a 2-D matrix; `columns[k]` (default k) is the index stored for column k.

    `blocks[k]` (0 .. kblocks-1, default all 0) splits the columns into blocks stored one after the
    other, each with its own row pointers (absolute offsets): the kernel sums block by block.
    """
    a = np.asarray(a, dtype=np.float32)
    if blocks is not None and int(blocks.max(initial=0)) > 0:
        parts = [csr_encode(np.where(blocks[None, :] == b, a, 0.0), columns) for b in range(int(blocks.max()) + 1)]
        base = np.cumsum([0] + [p.values.size for p in parts[:-1]])
        dtype = max((p.indices.dtype for p in parts), key=lambda d: d.itemsize)
        return CSRMatrix(
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.indices.astype(dtype) for p in parts]),
            np.concatenate([p.row_ptr + off for p, off in zip(parts, base)]).astype(np.int32),
            len(parts),
        )
    rows, cols = np.nonzero(a)
    mapped = cols if columns is None else np.asarray(columns)[cols]
    dtype = index_dtype(int(mapped.max()) if mapped.size else 0)
    row_ptr = np.zeros(a.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=a.shape[0]), out=row_ptr[1:])
    return CSRMatrix(a[rows, cols].astype(np.float32), mapped.astype(dtype), row_ptr)


def csr_decode(m: CSRMatrix, k: int) -> np.ndarray:
    """The dense [M, k] matrix of a CSR whose indices are plain column numbers."""
    rows = m.row_ptr.size // m.kblocks - 1
    out = np.zeros((rows, k), dtype=np.float32)
    for b in range(m.kblocks):
        rp = m.row_ptr[b * (rows + 1) : (b + 1) * (rows + 1)]
        for r in range(rows):
            lo, hi = rp[r], rp[r + 1]
            out[r, m.indices[lo:hi].astype(np.int64)] += m.values[lo:hi]
    return out


def _groups(a: np.ndarray) -> np.ndarray:
    """[M, G, 4] view of `a` zero-padded to a multiple of four columns."""
    m, k = a.shape
    k4 = -(-k // 4) * 4
    padded = np.zeros((m, k4), dtype=np.float32)
    padded[:, :k] = a
    return padded.reshape(m, k4 // 4, 4)


def is_nm24(a: np.ndarray) -> bool:
    """True when every aligned group of four columns of `a` [M, K] has at most two nonzeros."""
    return bool(a.size) and bool((np.count_nonzero(_groups(a), axis=2) <= 2).all())


def nm24_encode(a: np.ndarray) -> NM24Matrix:
    """2:4 encoding of `a` (which must satisfy is_nm24)."""
    g = _groups(np.asarray(a, dtype=np.float32))
    m, ng, _ = g.shape
    if (np.count_nonzero(g, axis=2) > 2).any():
        raise ValueError("matrix is not 2:4 sparse")
    k = a.shape[1]
    # positions of the two kept entries: nonzeros first (stable), then zeros; in-range columns only
    valid = (np.arange(ng)[:, None] * 4 + np.arange(4)[None, :]) < k  # [G, 4]
    key = (g == 0).astype(np.int8) * 2 + (~valid[None]).astype(np.int8)  # nonzero < zero < out of range
    pos = np.argsort(key, axis=2, kind="stable")[:, :, :2]  # [M, G, 2]
    pos.sort(axis=2)
    values = np.take_along_axis(g, pos, axis=2).reshape(m, 2 * ng)
    nib = (pos[:, :, 0] | (pos[:, :, 1] << 2)).astype(np.uint8)  # [M, G]
    if ng % 2:
        nib = np.concatenate([nib, np.zeros((m, 1), dtype=np.uint8)], axis=1)
    meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return NM24Matrix(values.astype(np.float32), meta, ng * 4)


@dataclass(frozen=True)
class Block4Matrix:
    values: np.ndarray  # int8 [blocks * 4]
    indices: np.ndarray  # group number of each block
    row_ptr: np.ndarray  # int32 [kchunks * (M + 1)]: per chunk, absolute offsets
    k: int  # columns (before padding to a multiple of four)
    kchunks: int = 1

    @property
    def index_bits(self) -> int:
        return 8 * self.indices.dtype.itemsize


BLOCK4_CHUNK_GROUPS = 64  # k-groups per chunk: 4 VNNI panels of 32 columns x 64 groups = 32 KB of B (L1)


BLOCK4_CHUNK_MIN_BLOCKS = 24  # blocks per row and chunk below which a chunk costs more than it saves


def block4_chunks(k: int, row_blocks: float | None = None) -> int:
    """Chunks of k-groups a block1x4 weight with K columns is stored in: about BLOCK4_CHUNK_GROUPS
    groups each (the kernel keeps one chunk's B rows in L1 while every row of A reads them); short
    rows (up to 1.5 chunks) stay whole. With `row_blocks` (the mean blocks per row) no more chunks
    than leave BLOCK4_CHUNK_MIN_BLOCKS blocks per row in each: every row starts and ends each chunk
    (its partial sums loaded and stored), which at 10 % block density (ResNet-50's 512 x 4608 conv: 18
    chunks of ~6 blocks) cost more than reading B from L2."""
    groups = -(-k // 4)
    chunks = 1 if 2 * groups <= 3 * BLOCK4_CHUNK_GROUPS else -(-groups // BLOCK4_CHUNK_GROUPS)
    if row_blocks is not None:
        chunks = max(1, min(chunks, int(row_blocks // BLOCK4_CHUNK_MIN_BLOCKS)))
    return chunks


def block4_groups(a: np.ndarray) -> np.ndarray:
    """[M, G] mask of the aligned groups of four columns of `a` [M, K] that hold a nonzero."""
    m, k = a.shape
    padded = np.zeros((m, -(-k // 4) * 4), dtype=bool)
    padded[:, :k] = a != 0
    return padded.reshape(m, -1, 4).any(axis=2)


def block4_encode(a: np.ndarray, kchunks: int = 1) -> Block4Matrix:
    """block1x4 encoding of an int8 matrix `a` [M, K], its k-groups split into `kchunks` equal
    chunks stored one after the other (chunk-major: rows of chunk 0, then of chunk 1, ...)."""
    m, k = a.shape
    padded = np.zeros((m, -(-k // 4) * 4), dtype=np.int8)
    padded[:, :k] = a
    groups4 = padded.reshape(m, -1, 4)
    used = block4_groups(a)
    per = -(-used.shape[1] // kchunks)
    values, indices, row_ptr, offset = [], [], [], 0
    for c in range(kchunks):
        sub = np.zeros_like(used)
        sub[:, c * per : (c + 1) * per] = used[:, c * per : (c + 1) * per]
        rows, groups = np.nonzero(sub)
        ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(sub.sum(axis=1), out=ptr[1:])
        row_ptr.append(ptr + offset)
        offset += int(ptr[-1])
        values.append(groups4[rows, groups].ravel())
        indices.append(groups)
    groups_all = np.concatenate(indices)
    dtype = index_dtype(int(groups_all.max()) if groups_all.size else 0)
    return Block4Matrix(np.ascontiguousarray(np.concatenate(values), dtype=np.int8), groups_all.astype(dtype),
                        np.concatenate(row_ptr).astype(np.int32), k, kchunks)  # fmt: skip


@dataclass(frozen=True)
class QuadCSRMatrix:
    """An int8 matrix as CSR quads (csr_quad_encode)."""

    values: np.ndarray  # int8 [quads * 4]
    indices: np.ndarray  # column of each entry (uint16 / int32) [quads * 4]
    row_ptr: np.ndarray  # int32 [kchunks * (M + 1)], in quads: per chunk, absolute offsets
    k: int
    kchunks: int = 1

    @property
    def index_bits(self) -> int:
        return 8 * self.indices.dtype.itemsize


CSR_QUAD_CHUNK_BYTES = 32 * 1024  # B bytes one column tile of the int8 CSR kernel reads per k-chunk (L1)
CSR_QUAD_CHUNK_MIN_QUADS = 6  # quads per row and chunk below which a chunk costs more than it saves


def csr_quad_chunks(tile_bytes: int, row_nnz: float) -> int:
    """k-chunks of an int8 CSR weight whose B rows for one column tile take `tile_bytes` (the kernel
    keeps one chunk's in L1 while every row reads them), no more than leave CSR_QUAD_CHUNK_MIN_QUADS
    quads per row (mean nonzeros per row: `row_nnz`) in each: every row loads and stores its int32
    sums at each chunk."""
    chunks = -(-tile_bytes // CSR_QUAD_CHUNK_BYTES)
    return max(1, min(chunks, int(row_nnz / 4 // CSR_QUAD_CHUNK_MIN_QUADS)))


def csr_quad_encode(a: np.ndarray, kchunks: int = 1) -> QuadCSRMatrix:
    """CSR of an int8 matrix `a` [M, K] with each row's nonzeros in quads (the int8 CSR kernel,
    `runtime/kernels/qcsr.hpp`, multiplies four at a time), its columns split into `kchunks` equal
    ranges stored one after the other (chunk-major, as block4_encode): a row with r nonzeros in a chunk
    holds ceil(r / 4) quads there, the last padded with zero weights at the row's last nonzero column
    (a B row the kernel reads anyway)."""
    m, k = a.shape
    per = -(-k // kchunks)
    values, indices, row_ptr, offset = [], [], [], 0
    for c in range(kchunks):
        sub = a[:, c * per : (c + 1) * per]
        per_row = np.count_nonzero(sub, axis=1)
        ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(-(-per_row // 4), out=ptr[1:])
        vals = np.zeros(4 * int(ptr[-1]), dtype=np.int8)
        cols = np.zeros(4 * int(ptr[-1]), dtype=np.int64)
        rows, nz = np.nonzero(sub)
        first = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(per_row, out=first[1:])
        slot = 4 * ptr[rows] + (np.arange(rows.size) - first[rows])  # entry of each nonzero
        vals[slot] = sub[rows, nz]
        cols[slot] = nz + c * per
        for r in np.nonzero(per_row % 4)[0]:  # padding entries: the row's last column, weight 0
            start = 4 * int(ptr[r]) + int(per_row[r])
            cols[start : 4 * int(ptr[r + 1])] = cols[start - 1]
        values.append(vals)
        indices.append(cols)
        row_ptr.append(ptr + offset)
        offset += int(ptr[-1])
    return QuadCSRMatrix(np.concatenate(values), np.concatenate(indices).astype(index_dtype(k - 1)),
                         np.concatenate(row_ptr).astype(np.int32), k, kchunks)  # fmt: skip


def csr_quad_decode(e: QuadCSRMatrix) -> np.ndarray:
    """The dense int8 [M, K] matrix of a CSR-quads encoding (padding entries add zero)."""
    m = e.row_ptr.size // e.kchunks - 1
    out = np.zeros((m, e.k), dtype=np.int64)
    for c in range(e.kchunks):
        rp = e.row_ptr[c * (m + 1) : (c + 1) * (m + 1)]
        rows = np.repeat(np.arange(m), 4 * np.diff(rp))
        entries = slice(4 * int(rp[0]), 4 * int(rp[-1]))
        np.add.at(out, (rows, e.indices[entries].astype(np.int64)), e.values[entries].astype(np.int64))
    return out.astype(np.int8)


def block4_decode(e: Block4Matrix) -> np.ndarray:
    m = e.row_ptr.size // e.kchunks - 1
    out = np.zeros((m, -(-e.k // 4), 4), dtype=np.int8)
    for c in range(e.kchunks):
        rp = e.row_ptr[c * (m + 1) : (c + 1) * (m + 1)]
        rows = np.repeat(np.arange(m), np.diff(rp))
        out[rows, e.indices[rp[0] : rp[-1]].astype(np.int64)] = e.values[4 * rp[0] : 4 * rp[-1]].reshape(-1, 4)
    return out.reshape(m, -1)[:, : e.k]


def nm24_decode(e: NM24Matrix) -> np.ndarray:
    m, ng = e.values.shape[0], e.k // 4
    nib = np.stack([e.meta & 15, e.meta >> 4], axis=2).reshape(m, -1)[:, :ng]
    out = np.zeros((m, ng, 4), dtype=np.float32)
    v = e.values.reshape(m, ng, 2)
    rows, groups = np.indices((m, ng))
    out[rows, groups, nib & 3] += v[:, :, 0]
    out[rows, groups, nib >> 2] += v[:, :, 1]
    return out.reshape(m, e.k)


def prune_unstructured(a: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the `sparsity` fraction of smallest-magnitude entries of `a` (per tensor)."""
    flat = np.abs(a.astype(np.float32)).ravel()  # (int8: |-128| does not wrap)
    drop = int(round(sparsity * flat.size))
    if drop <= 0:
        return a.copy()
    out = a.copy().ravel()
    out[np.argpartition(flat, drop - 1)[:drop]] = 0.0
    return out.reshape(a.shape)


def _by_tap(a: np.ndarray, taps: int) -> np.ndarray:
    """A [M, C * taps] (K ordered channel, tap: a conv weight [M, C, kh, kw] flattened) as [M * taps, C]:
    one row per output channel and tap, so that groups of four columns are four input channels at one
    tap (the k-groups of an implicit convolution, `quant.implicit_weight_order`)."""
    m, k = a.shape
    return a.reshape(m, k // taps, taps).transpose(0, 2, 1).reshape(m * taps, k // taps)


def block4_groups_by_tap(a: np.ndarray, taps: int = 1) -> int:
    """How many 1x4 blocks hold a nonzero when a conv weight A [M, C * taps] is grouped by four input
    channels at one tap (the block1x4 encoding of its implicit order; taps = 1: along K)."""
    return int(block4_groups(_by_tap(a, taps)).sum())


def prune_block4(a: np.ndarray, sparsity: float, taps: int = 1) -> np.ndarray:
    """Zero the `sparsity` fraction of the 1x4 blocks of `a` [M, K] with the smallest L2 norm (per
    tensor), whole: aligned groups of four columns, or for a conv weight flattened as [M, C * taps]
    four input channels at one tap (`taps` = kh * kw: the block1x4 int8 kernel's groups in the
    implicit order of a KxK conv). A ragged last group counts as a group."""
    m, k = a.shape
    rows = _by_tap(a, taps)
    g = _groups(rows)
    norms = np.square(g).sum(axis=2).ravel()
    drop = int(round(sparsity * norms.size))
    if drop <= 0:
        return a.copy()
    flat = g.reshape(-1, 4)
    flat[np.argpartition(norms, drop - 1)[:drop]] = 0.0
    kept = flat.reshape(m * taps, -1)[:, : k // taps]
    return kept.reshape(m, taps, k // taps).transpose(0, 2, 1).reshape(m, k).astype(a.dtype)


def prune_nm24(a: np.ndarray) -> np.ndarray:
    """Keep the two largest-magnitude entries of every aligned group of four columns of `a` [M, K]."""
    m, k = a.shape
    g = _groups(a)
    drop = np.argsort(np.abs(g), axis=2, kind="stable")[:, :, :2]
    np.put_along_axis(g, drop, 0.0, axis=2)
    return g.reshape(m, -1)[:, :k].astype(a.dtype)
