"""convert-sparse-to-spmm: lower convs and FC layers with a sparse weight to `loop.spmm`.

Preconditions: loop level, before conv-to-im2col; weights marked sparse by `sparsify` (the
`sparse` attribute of `loop.weight`). For each `loop.conv2d` / `loop.matmul` whose weight is CSR or
2:4, the weight is encoded (`inferon.ir.sparse`) into new `loop.weight`s (values, indices, row
pointers or 2:4 metadata; integer memrefs) and the op becomes a `loop.spmm`. How B is read is
baked into the column indices:

- 1x1, stride-1, unpadded convs: B is the input image (index = channel, scale H*W), in column
  blocks of A of about 32 KB of B rows per 64-column tile when K > 256;
- other convs with dilation 1 (any stride): B is read in place from a zero-bordered copy of the
  image split into stride phases (`b_implicit`; `inferon.ir.sparse.implicit_columns`: the CSR index
  of tap (c, i, j) is its offset in that frame, 2:4 goes through a `koff` table; no im2col buffer).
  CSR columns come in channel blocks (`kblocks`) whose frame rows for one column tile fit in L1:
  the kernel sums block by block;
- dilated convs: an im2col buffer (`loop.im2col`) is B (index = im2col row, scale Ho*Wo), in
  column blocks as for 1x1 convs;
- fully-connected layers (x [rows, K] times W [K, N]): A = W^T, each row of x is a B column
  (N = 1: the kernel's sparse GEMV).

Grouped convs become one block-diagonal sparse matrix (CSR only). Produces `loop.spmm`; the dense
weight disappears when nothing else reads it.

Quantized layers: a `loop.qgemm` (single group) whose int8 weight is `block1x4` or `csr` keeps its
op and its B (image, im2col view or plain rows); its A becomes the block encoding (`a`: int8 values,
`a_index`, `a_row_ptr`; `inferon.ir.sparse.block4_encode`), in `block4_chunks(K)` k-group chunks
of about 32 KB of B panel rows each, or the CSR quads (`inferon.ir.sparse.csr_quad_encode`, marked
`a_csr`; the kernel reads B's plain rows, a conv's from a frame it builds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    Signedness,
    StringAttr,
    UnitAttr,
    f32,
    i32,
    i64,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from inferon.ir.attrs import SparseAttr, SparseFormat
from inferon.ir.dialects import loop
from inferon.ir.dialects.graph import i64_array, ints
from inferon.ir.sparse import (
    SPMM_TILE,
    block4_chunks,
    block4_encode,
    block4_groups,
    csr_encode,
    csr_quad_chunks,
    csr_quad_encode,
    frame_shape,
    implicit_columns,
    nm24_encode,
)
from inferon.ir.weights import WeightStore
from inferon.passes.conversion.graph_to_loop import memref
from inferon.passes.graph.fold_constants import weights_context
from inferon.passes.loop.conv_to_im2col import memref_shape

L1_BUDGET_BYTES = 32 * 1024  # the L1D, for the B rows of one column block and column tile (measured best)

ELEMENT_TYPES = {
    np.dtype(np.float32): f32,
    np.dtype(np.int32): i32,
    np.dtype(np.uint16): IntegerType(16, Signedness.UNSIGNED),
    np.dtype(np.uint8): IntegerType(8, Signedness.UNSIGNED),
    np.dtype(np.int8): IntegerType(8, Signedness.SIGNED),
}


def _sparse_weight(value: SSAValue) -> tuple[loop.WeightOp, SparseAttr] | None:
    owner = value.owner
    if isinstance(owner, loop.WeightOp) and owner.sparse is not None and owner.sparse.is_sparse:
        return owner, owner.sparse
    return None


@dataclass
class Encoded:
    """The weights of a loop.spmm (operands values, index, row_ptr?, koff?) and its K."""

    arrays: list[np.ndarray | None]
    k: int
    kblocks: int = 1


def encode(
    fmt: SparseFormat, a: np.ndarray, columns: np.ndarray | None, need_koff: bool, blocks: np.ndarray | None = None
) -> Encoded:
    """Encode A [M, K]; `columns[k]` is the B row offset index of column k (None: k itself);
    `blocks[k]`: the CSR column block of column k."""
    if fmt == SparseFormat.CSR:
        csr = csr_encode(a, columns, blocks)
        return Encoded([csr.values, csr.indices, csr.row_ptr, None], a.shape[1], csr.kblocks)
    nm = nm24_encode(a)
    koff = None
    if need_koff or nm.k != a.shape[1]:
        cols = np.arange(a.shape[1]) if columns is None else columns
        koff = np.zeros(nm.k, dtype=np.int32)  # padded columns read row 0 with a zero weight
        koff[: a.shape[1]] = cols
    return Encoded([nm.values.ravel(), nm.meta.ravel(), None, koff], nm.k)


CSR_BLOCK_MIN_NNZ = 24  # nonzeros per row and column block below which a block costs more than it saves


def max_column_blocks(row_nnz: float) -> int:
    """The most CSR column blocks for rows of `row_nnz` nonzeros on average: every row starts and ends
    each block (its partial sums read from and written to C), which at 10 % density with 12-13
    nonzeros per row and block cost more than B rows from L2 (ResNet-50's 7x7 layers: 1.13-1.21x
    faster with half the blocks, kernel alone)."""
    return max(1, int(row_nnz // CSR_BLOCK_MIN_NNZ))


def column_blocks(k: int, row_nnz: float | None = None) -> np.ndarray | None:
    """CSR column blocks of B rows read whole (1x1 convs, im2col): about L1_BUDGET_BYTES of B rows
    per column tile, so that every row of A reads a block from L1 (the kernel sums block by block),
    and with `row_nnz` no more than max_column_blocks. Up to 256 rows are left whole: their partial
    sums in C would cost more (measured)."""
    rows = L1_BUDGET_BYTES // (4 * SPMM_TILE)
    if k <= 2 * rows:
        return None
    blocks = -(-k // rows)
    if row_nnz is not None:
        blocks = min(blocks, max_column_blocks(row_nnz))
    return np.arange(k) // -(-k // blocks) if blocks > 1 else None


def csr_tile_bytes(op: loop.QGemmOp) -> int:
    """B bytes one 128-column tile of the int8 CSR kernel reads for a conv read from a frame (per
    channel and stride phase, the tile's window of its plane; qcsr.hpp's csr_frame); 0 for B read in
    place (1x1 convs: measured no faster in k-chunks)."""
    if op.b_im2col is None:
        return 0
    c, _, _, kh, kw, sh, sw, _, _, _, _, ho, wo = ints(op.b_im2col)
    hq, wq = ho + (kh - 1) // sh, wo + (kw - 1) // sw
    window = min(hq * wq, 128 + (kh - 1) // sh * wq + (kw - 1) // sw)
    return c * min(sh, kh) * min(sw, kw) * window


class Lowering:
    def __init__(self, store: WeightStore) -> None:
        self.store = store

    def weights(self, enc: Encoded, handle: str, before: Operation) -> list[SSAValue]:
        out = []
        for name, arr in zip(("values", "index", "row_ptr", "koff"), enc.arrays):
            if arr is None:
                continue
            h = self.store.add(arr, f"{handle}.{name}", keep_dtype=True)
            typ = MemRefType(ELEMENT_TYPES[arr.dtype], [arr.size])
            w = loop.WeightOp.create(properties={"handle": StringAttr(h)}, result_types=[typ])
            Rewriter.insert_op(w, InsertPoint.before(before))
            out.append(w.result)
        return out

    def qgemm(self, op: loop.QGemmOp, weight: loop.WeightOp, attr: SparseAttr) -> bool:
        """A single-group loop.qgemm with a block1x4 or CSR int8 weight: A becomes its block encoding
        or its CSR quads (`a_csr`)."""
        m, n, k = ints(op.dims)
        if ints(op.batch)[1] != 1 or ints(op.a_strides)[0] or op.residual is not None or op.a_index is not None:
            return False
        a = self.store[weight.handle.data].reshape(m, k)
        props = dict(op.properties)
        if attr.kind == SparseFormat.CSR:
            quads = csr_quad_encode(a, csr_quad_chunks(csr_tile_bytes(op), float(np.count_nonzero(a)) / m))
            arrays = [quads.values, quads.indices, quads.row_ptr, None]
            props["a_csr"] = UnitAttr()
        else:  # (chunks keep B panel rows in L1 across rows; a GEMV reuses nothing and streams its rows whole)
            enc = block4_encode(a, block4_chunks(k, float(block4_groups(a).sum()) / m) if n > 1 else 1)
            arrays = [enc.values, enc.indices, enc.row_ptr, None]
        values, index, row_ptr = self.weights(Encoded(arrays, k), weight.handle.data, op)
        props["operandSegmentSizes"] = DenseArrayBase.from_list(i32, [1, 1, 1, 1, 1, 1, 0, 1])
        new = loop.QGemmOp.create(operands=[values, index, row_ptr, op.b, op.comp, op.mult, op.c], properties=props)
        Rewriter.replace_op(op, new)
        return True

    def spmm(self, op: Operation, attr: SparseAttr, enc: Encoded, handle: str, b: SSAValue, *, m: int,
             n: int, scale: int, batch: int, b_stride: int, c_strides: tuple[int, int],
             implicit: list[int] | None) -> None:  # fmt: skip
        w = self.weights(enc, handle, op)
        bias, residual, c = op.bias, op.residual, op.operands[-1]  # type: ignore[attr-defined]
        has_rp, has_koff = enc.arrays[2] is not None, enc.arrays[3] is not None
        operands = [*w, b, *([bias] if bias else []), *([residual] if residual else []), c]
        segments = [1, 1, int(has_rp), int(has_koff), 1, int(bias is not None), int(residual is not None), 1]
        props = {
            "format": attr, "dims": i64_array([m, n, enc.k]), "b_scale": IntegerAttr(scale, i64),
            "batch": IntegerAttr(batch, i64), "b_stride": IntegerAttr(b_stride, i64),
            "c_strides": i64_array(list(c_strides)), "epilogue": op.epilogue,  # type: ignore[attr-defined]
            "operandSegmentSizes": DenseArrayBase.from_list(i32, segments),
        }  # fmt: skip
        if implicit is not None:
            props["b_implicit"] = i64_array(implicit)
        if enc.kblocks > 1:
            props["kblocks"] = IntegerAttr(enc.kblocks, i64)
        new = loop.SpMMOp.create(operands=operands, properties=props)
        Rewriter.replace_op(op, new)

    def conv(self, op: loop.Conv2dOp, weight: loop.WeightOp, attr: SparseAttr) -> None:
        n, c, h, w = memref_shape(op.input)
        m, cg, kh, kw = memref_shape(op.weight)
        _, _, ho, wo = memref_shape(op.output)
        g = op.group.value.data
        (sh, sw), (pt, pl, pb, pr), (dh, dw) = ints(op.strides), ints(op.pads), ints(op.dilations)
        fmt = attr.kind if g == 1 else SparseFormat.CSR
        filt = self.store[weight.handle.data].reshape(m, cg * kh * kw)
        full = np.zeros((m, c * kh * kw), dtype=np.float32)  # block-diagonal over groups
        mg, kg = m // g, cg * kh * kw
        for gi in range(g):
            full[gi * mg : (gi + 1) * mg, gi * kg : (gi + 1) * kg] = filt[gi * mg : (gi + 1) * mg]
        chan = np.arange(c * kh * kw) // (kh * kw)
        row_nnz = float(np.count_nonzero(full)) / m
        hw = ho * wo
        common = {"m": m, "n": hw, "batch": n, "c_strides": (hw, m * hw)}
        if kh == kw == sh == sw == 1 and pt == pl == pb == pr == 0:
            enc = encode(fmt, full, None, False, column_blocks(c, row_nnz))
            self.spmm(op, attr, enc, weight.handle.data, op.input, scale=h * w, b_stride=c * h * w,
                      implicit=None, **common)  # fmt: skip
        elif (dh, dw) == (1, 1):
            ph, pw, _, wq = frame_shape(kh, kw, ho, wo, sh, sw)
            columns = implicit_columns(c, kh, kw, ho, wo, sh, sw)
            # channel blocks whose frame rows for one column tile fit in L1 (see sparse.hpp)
            per_channel = 4 * ph * pw * (((kh - 1) // sh) * wq + (kw - 1) // sw + SPMM_TILE)
            group = max(1, L1_BUDGET_BYTES // per_channel)
            group = max(group, -(-c // max_column_blocks(row_nnz)))  # (few nonzeros per row: fewer blocks)
            enc = encode(fmt, full, columns, True, chan // group if c > group else None)
            view = [c, h, w, kh, kw, sh, sw, pt, pl, 1, 1, ho, wo]
            self.spmm(op, attr, enc, weight.handle.data, op.input, scale=1, b_stride=c * h * w,
                      implicit=view, **common)  # fmt: skip
        else:
            col = loop.AllocOp.create(result_types=[memref((n, c * kh * kw, hw))])
            geometry = [n, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo]
            im2col = loop.Im2ColOp.create(operands=[op.input, col.result], properties={"geometry": i64_array(geometry)})
            Rewriter.insert_op([col, im2col], InsertPoint.before(op))
            enc = encode(fmt, full, None, False, column_blocks(c * kh * kw, row_nnz))
            self.spmm(op, attr, enc, weight.handle.data, col.result, scale=hw, b_stride=c * kh * kw * hw,
                      implicit=None, **common)  # fmt: skip

    def fc(self, op: loop.MatMulOp, weight: loop.WeightOp, attr: SparseAttr) -> bool:
        rows, n_out, k = ints(op.dims)
        if ints(op.batch) != (1, 1) or ints(op.leading) != (k, n_out, n_out) or op.b_im2col is not None:
            return False
        a = np.ascontiguousarray(self.store[weight.handle.data].reshape(k, n_out).T)
        enc = encode(attr.kind, a, None, False)
        self.spmm(op, attr, enc, weight.handle.data, op.a, m=n_out, n=1, scale=1, batch=rows, b_stride=k,
                  c_strides=(1, n_out), implicit=None)  # fmt: skip
        return True


@dataclass(frozen=True)
class ConvertSparseToSpMMPass(ModulePass):
    """Lower loop.conv2d / loop.matmul with a CSR or 2:4 weight to loop.spmm."""

    name = "convert-sparse-to-spmm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lowering = Lowering(weights_context(ctx, self.name))
        for target in list(op.walk()):
            if isinstance(target, loop.Conv2dOp):
                found = _sparse_weight(target.weight)
                if found is None or found[1].kind == SparseFormat.BLOCK4:  # (int8 weights only)
                    continue
                weight, attr = found
                lowering.conv(target, weight, attr)
            elif isinstance(target, loop.QGemmOp):
                found = _sparse_weight(target.a)
                int8 = (SparseFormat.BLOCK4, SparseFormat.CSR)
                if found is None or found[1].kind not in int8 or not lowering.qgemm(target, *found):
                    continue
                weight = found[0]
            elif isinstance(target, loop.MatMulOp):
                found = _sparse_weight(target.b)
                if found is None or found[1].kind == SparseFormat.BLOCK4 or not lowering.fc(target, *found):
                    continue
                weight = found[0]
            else:
                continue
            if not weight.result.uses:
                Rewriter.erase_op(weight)
