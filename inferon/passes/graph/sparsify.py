"""sparsify: choose dense, CSR or 2:4 storage for every conv/FC weight from its zeros.

Finds the zeros already in the weights (models pruned elsewhere, or by `prune`) and predicts each
layer's time with the cost model below, calibrated by `benchmarks/calibrate_sparse.py`. The figures
(`sparse_cost.json`) come in one section per instruction-set level (avx512, avx2, scalar), since the
kernels' relative speeds differ between them (on a Zen 3 with AVX2 alone CSR runs at 0.39x the dense
GEMM's FLOP rate, on a Zen 4 with AVX-512 at 0.60x) and model.so picks its kernels when loaded while
the storage is fixed here: the section used is the level the model will run with on this machine
(`cpu.model_isa`: the CPU's best level, capped by the `target` option, lowered by INFERON_ISA).
With the scalar kernels (`--target scalar`) the CSR kernel outruns the scalar GEMM per FLOP, so
there even 50 % goes sparse. The avx512 section's INT8 figures are VNNI's (an AVX-512 CPU without
VNNI runs the AVX2 INT8 kernels: not modelled). CPUs whose dense GEMM runs zmm row panels
(`cpu.zmm_row_panels`: Intel with AVX-512F, two 512-bit FMA units) have a section of their own,
`avx512_zmm`: there the dense GEMM is ~1.4x faster against the same sparse kernels (session 28, an
Intel Xeon: dense 135 GFLOP/s, CSR 59, 2:4 70), so 2:4 stays dense and CSR needs sparser weights.

Dense GEMM at `dense_gflops`; CSR at `csr_gflops` FLOP/s over the lanes computed (2 * nnz * N
rounded up to whole vectors: 16 columns with AVX-512, 8 with AVX2) plus `tile_ns` per row and column
tile; 2:4 (only if every aligned group of four along K holds at most two nonzeros) at `nm24_gflops`
on half the dense FLOPs over the same lanes, or at `nm24_frame_gflops` for convs whose B is read
from a bordered frame of the image (KxK, strided or padded: a column offset table per group, rows
not a whole number of cache lines apart; ResNet-50's 3x3 layers ran 2:4 at 0.84-1.0x their dense
GEMM with the 1x1 layers' figure); fully-connected layers at batch 1 stream their weights
(`gemv_*_gbps`); a dense 3x3 conv that `conv-to-winograd` will compute with Winograd is predicted
`WINOGRAD_SPEEDUP` times faster than its GEMM. Quantized convs (int8 weights, single group) and
quantized FC layers choose between the dense quantized GEMM (`int8_dense_gops`), CSR (convs without
dilation where the section has `int8_csr_gops`, the VNNI levels: 2 * 4 * quads * N in whole 64-column
blocks, a row's nonzeros in quads of four, N the wide grid of its frame) and block1x4
(`int8_block4_gops` over 2 * 4 * blocks * N rounded up to whole B panels: 32 columns with VNNI, 8
with AVX2, the blocks being the aligned groups of four along K that hold a nonzero; at N = 1 the
bytes streamed: one per weight against 6 per block); where the section has them, a quantized
stride-1 KxK conv's dense GEMM reads the image in place (`int8_implicit_speedup` x the dense rate)
while a block1x4 conv with a frame first writes and packs K x N im2col bytes (`int8_im2col_gbps`),
except with VNNI, where block1x4 KxK convs without dilation read a frame in place too (on the Ho x
(Wo + (kw - 1) / sw) wide grid) at `int8_block4_frame_gops` where the section has it. A KxK conv's blocks are counted as they will be stored: four input channels at one tap (the
implicit order) where convert-graph-to-loop orders them so.
A sparse format is chosen only if it is
predicted at most `margin` x the dense time (per level: 0.85, with AVX2 0.9, see its `margin_note`),
so layers at moderate sparsity (e.g. 30 %; with AVX2 alone, 50 % and 2:4) stay dense.

Preconditions: graph level, after fuse-epilogue (and `prune` if any). Produces: `sparse =
#graph.sparse<format, density, index_bits>` on every layer weight (dense ones too, so IR dumps show
each layer's density). `mode`: auto (the cost model), off (all dense), csr or 2:4 (that format
wherever it applies and the layer has any zero; for int8 weights csr means CSR where the int8 CSR
kernel runs, block1x4 elsewhere). `winograd`: the
setting `conv-to-winograd` runs with. `target`: the compile target (native, avx2, avx512, scalar).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from inferon.cpu import model_isa, zmm_row_panels
from inferon.errors import PassError
from inferon.ir.attrs import SparseAttr, SparseFormat
from inferon.ir.dialects import graph
from inferon.ir.dialects.graph import ints, shape_of
from inferon.ir.sparse import SPMM_TILE, block4_groups, block4_groups_by_tap, is_nm24
from inferon.passes.graph.fold_constants import weights_context
from inferon.passes.graph.sparse_layers import SparseLayer, sparse_layers
from inferon.passes.loop.conv_to_winograd import WINOGRAD_SPEEDUP, winograd_tile

COST_FILE = Path(__file__).with_name("sparse_cost.json")
MODES = ("auto", "off", "csr", "2:4")
# Columns per vector of the float sparse kernel at each level (scalar: column by column), and per
# B panel of the block-sparse int8 kernel (VNNI: 32; the AVX2 and scalar paths: 8).
SPARSE_VECTOR = {"scalar": 1, "avx2": 8, "avx512": 16}
QSPARSE_PANEL = {"scalar": 8, "avx2": 8, "avx512": 32}


@dataclass(frozen=True)
class SparseCostModel:
    dense_gflops: float
    csr_gflops: float
    nm24_gflops: float
    tile_ns: float
    gemv_dense_gbps: float
    gemv_sparse_gbps: float
    margin: float
    int8_dense_gops: float = 1.0
    int8_block4_gops: float = 1.0
    nm24_frame_gflops: float = 0.0  # 2:4 read through a conv's frame; 0: as nm24_gflops
    int8_implicit_speedup: float = 1.0  # a dense quantized stride-1 KxK conv (read in place) over int8_dense_gops
    int8_im2col_gbps: float = 0.0  # block1x4 convs with a frame: im2col + packing of K x N bytes; 0: free
    int8_block4_frame_gops: float = 0.0  # block1x4 KxK convs reading their frame in place; 0: int8_block4_gops
    int8_csr_gops: float = 0.0  # int8 CSR quads (VNNI): 2 * 4 * quads * N in whole 64-column blocks; 0: none
    isa: str = "avx512"  # the instruction-set level the figures were measured at

    @staticmethod
    def load(isa: str | None = None, path: Path = COST_FILE, zmm_rows: bool | None = None) -> SparseCostModel:
        """The figures for `isa` (default: the level a model compiled here runs with, `cpu.model_isa`),
        from its `avx512_zmm` section where the dense GEMM runs zmm row panels (default: as a model
        compiled here for `isa` would, `cpu.zmm_row_panels`) and the file has one."""
        isa = isa or model_isa()
        if zmm_rows is None:
            zmm_rows = zmm_row_panels(isa)
        return _load(isa, path, cost_section(isa, zmm_rows))

    def seconds(self, fmt: SparseFormat, m: int, k: int, n: int, nnz: int, frame: bool = False) -> float:
        """Predicted time of one layer: A [m, k] with nnz nonzeros times B [k, n] (`frame`: B is read
        from a conv's bordered frame)."""
        index_bytes = 2 if k < 1 << 16 else 4
        if n <= 4:  # GEMV-like: the weight stream dominates
            if fmt == SparseFormat.DENSE:
                return n * m * k * 4 / (self.gemv_dense_gbps * 1e9)
            per_row = nnz * (4 + index_bytes) if fmt == SparseFormat.CSR else m * k * 2.25
            return n * per_row / (self.gemv_sparse_gbps * 1e9)
        tiles = m * math.ceil(n / SPMM_TILE) * self.tile_ns * 1e-9
        if fmt == SparseFormat.DENSE:
            return 2.0 * m * k * n / (self.dense_gflops * 1e9)
        lanes = sparse_lanes(n, self.isa)  # whole vectors: 49 columns cost 64 with 16-float zmm, 56 with ymm
        if fmt == SparseFormat.CSR:
            return 2.0 * nnz * lanes / (self.csr_gflops * 1e9) + tiles
        rate = self.nm24_frame_gflops if frame and self.nm24_frame_gflops else self.nm24_gflops
        return 1.0 * m * k * lanes / (rate * 1e9) + tiles

    def int8_seconds(self, fmt: SparseFormat, m: int, k: int, n: int, blocks: int, frame: bool = False,
                     implicit: bool = False, in_place: bool = False) -> float:  # fmt: skip
        """Predicted time of one quantized layer: int8 A [m, k] (`blocks` nonzero 1x4 groups) x B [k, n];
        `frame`: a conv whose block1x4 GEMM reads im2col rows, `implicit`: one whose dense GEMM reads
        the image in place, `in_place`: one whose block1x4 GEMM reads a frame in place (n: its wide grid)."""
        if n == 1:  # a GEMV streams the weights: 1 byte per weight, or 4 + 2 (index) per block
            return (m * k if fmt == SparseFormat.DENSE else 6 * blocks) / (self.gemv_dense_gbps * 1e9)
        if fmt == SparseFormat.DENSE:
            speedup = self.int8_implicit_speedup if implicit else 1.0
            return 2.0 * m * k * n / (self.int8_dense_gops * speedup * 1e9)
        if fmt == SparseFormat.CSR:  # (blocks: the quads; n: a conv's wide grid)
            return 2.0 * 4 * blocks * -(-n // 64) * 64 / (self.int8_csr_gops * 1e9)
        im2col = k * n / (self.int8_im2col_gbps * 1e9) if frame and self.int8_im2col_gbps else 0.0
        rate = self.int8_block4_frame_gops if in_place and self.int8_block4_frame_gops else self.int8_block4_gops
        return 2.0 * 4 * blocks * qsparse_lanes(n, self.isa) / (rate * 1e9) + im2col


def cost_section(isa: str, zmm_rows: bool) -> str:
    """The section of sparse_cost.json measured on CPUs like this one: `avx512_zmm` for AVX-512 CPUs
    whose dense GEMM runs zmm row panels, else the instruction-set level."""
    return f"{isa}_zmm" if isa == "avx512" and zmm_rows else isa


@cache
def _load(isa: str, path: Path, section: str) -> SparseCostModel:
    sections = json.loads(path.read_text())["isa"]
    if section not in sections:
        section = isa  # no figures for the zmm-row CPUs: those of the level
    if section not in sections:
        raise PassError(f"sparsify: {path.name} has no figures for instruction set '{isa}' (it has "
                        f"{', '.join(sections)}); run benchmarks/calibrate_sparse.py on such a CPU")  # fmt: skip
    figures = {k: float(v) for k, v in sections[section].items() if not isinstance(v, str)}  # not the notes
    return SparseCostModel(**figures, isa=isa)


def qsparse_lanes(n: int, isa: str) -> int:
    """Columns the block-sparse quantized kernel computes at level `isa` for n output columns: whole panels."""
    return -(-n // QSPARSE_PANEL[isa]) * QSPARSE_PANEL[isa]


def sparse_lanes(n: int, isa: str) -> int:
    """Columns the sparse kernel computes at level `isa` for n output columns: whole vectors."""
    return -(-n // SPARSE_VECTOR[isa]) * SPARSE_VECTOR[isa]


def dense_speedup(layer: SparseLayer, winograd: str) -> float:
    """How much faster than its GEMM the dense layer runs: Winograd's measured gain where it applies."""
    if not layer.winograd or winograd == "off":
        return 1.0
    c = layer.k // 9
    tile = winograd_tile(layer.m, c, *layer.out_size) if winograd == "auto" else int(winograd)
    return WINOGRAD_SPEEDUP.get(tile, 1.0) if tile is not None else 1.0


def choose_format(
    layer: SparseLayer, a: np.ndarray, mode: str, model: SparseCostModel, winograd: str = "auto"
) -> SparseAttr:
    """The storage of one layer's weight matrix `a` [M, K]."""
    if layer.quantized:
        return choose_int8_format(layer, a, mode, model)
    nnz = int(np.count_nonzero(a))
    density = nnz / max(a.size, 1)
    bits = 16 if layer.k < 1 << 16 else 32
    nm24 = nnz < a.size and is_nm24(a) and not layer.is_fc and layer.groups == 1  # the 2:4 kernel's scope
    attr = {
        SparseFormat.DENSE: SparseAttr.make(SparseFormat.DENSE, density),
        SparseFormat.CSR: SparseAttr.make(SparseFormat.CSR, density, bits),
        SparseFormat.NM24: SparseAttr.make(SparseFormat.NM24, density, 2),
    }
    if mode == "off" or nnz == a.size:
        return attr[SparseFormat.DENSE]
    if mode == "csr":
        return attr[SparseFormat.CSR]
    if mode == "2:4":
        return attr[SparseFormat.NM24 if nm24 else SparseFormat.DENSE]
    candidates = [SparseFormat.CSR] + ([SparseFormat.NM24] if nm24 else [])
    cost = {f: model.seconds(f, layer.m, layer.k, layer.n, nnz, layer.frame) for f in [SparseFormat.DENSE, *candidates]}
    cost[SparseFormat.DENSE] /= dense_speedup(layer, winograd)
    best = min(candidates, key=lambda f: cost[f])
    return attr[best] if cost[best] <= model.margin * cost[SparseFormat.DENSE] else attr[SparseFormat.DENSE]


def choose_int8_format(layer: SparseLayer, a: np.ndarray, mode: str, model: SparseCostModel) -> SparseAttr:
    """The storage of a quantized layer's int8 matrix `a` [M, K]: dense, block1x4 or CSR (quads; convs
    without dilation, where the section has `int8_csr_gops`: the VNNI levels)."""
    nnz = int(np.count_nonzero(a))
    density = nnz / max(a.size, 1)
    dense = SparseAttr.make(SparseFormat.DENSE, density)
    block = SparseAttr.make(SparseFormat.BLOCK4, density, 16 if -(-layer.k // 4) < 1 << 16 else 32)
    csr = SparseAttr.make(SparseFormat.CSR, density, 16 if layer.k < 1 << 16 else 32)
    conv = isinstance(layer.op, graph.QConv2dOp)
    # (the kernel addresses B, a frame of it or its rows 64 bytes apart, by 32-bit offsets)
    csr_ok = (conv and model.int8_csr_gops > 0 and layer.n > 1 and ints(layer.op.dilations) == (1, 1)  # type: ignore[attr-defined]
              and layer.k * (layer.n + 64) < 1 << 30)  # fmt: skip
    if mode in ("off", "2:4") or nnz == a.size:
        return dense
    if mode == "csr":
        return csr if csr_ok else block
    # KxK convs store their blocks in implicit order (four input channels at one tap) where
    # convert-graph-to-loop orders them so: with VNNI, and stride-1 convs whose channels fill groups of
    # four; with VNNI those without dilation read a frame in place (the Ho x (Wo + (kw - 1) / sw) wide
    # grid, no im2col; strided 1x1 convs: measured faster through im2col and packed panels)
    vnni = model.isa == "avx512"
    cin, kh, kw, sw, dilated = layer.k, 1, 1, 1, False
    if isinstance(layer.op, graph.QConv2dOp):
        cin, kh, kw = shape_of(layer.weight.result)[1:]
        sw, dilated = ints(layer.op.strides)[1], ints(layer.op.dilations) != (1, 1)
    by_tap = layer.frame and (vnni or (layer.implicit and cin % 4 == 0))
    blocks = block4_groups_by_tap(a, kh * kw) if by_tap else int(block4_groups(a).sum())
    in_place = layer.frame and vnni and not dilated and kh * kw > 1
    ho, wo = layer.out_size
    n = layer.n // (ho * wo) * ho * (wo + (kw - 1) // sw) if in_place else layer.n  # (batch x wide grid)
    cost = model.int8_seconds(SparseFormat.BLOCK4, layer.m, layer.k, n, blocks, frame=layer.frame and not in_place,
                              in_place=in_place)  # fmt: skip
    dense_cost = model.int8_seconds(SparseFormat.DENSE, layer.m, layer.k, layer.n, 0, implicit=layer.implicit)
    best = block
    if csr_ok:  # every conv but an unpadded 1x1 one reads a frame: the product runs on its wide grid
        quads = int((-(-np.count_nonzero(a, axis=1) // 4)).sum())
        wide = layer.n // (ho * wo) * ho * (wo + (kw - 1) // sw)
        csr_cost = model.int8_seconds(SparseFormat.CSR, layer.m, layer.k, wide, quads)
        best, cost = (csr, csr_cost) if csr_cost < cost else (block, cost)
    return best if cost <= model.margin * dense_cost else dense


@dataclass(frozen=True)
class SparsifyPass(ModulePass):
    """Mark each conv/FC weight with its storage format (#graph.sparse) from its zeros and a cost model."""

    name = "sparsify"
    mode: str = "auto"
    winograd: str = "auto"
    target: str = "native"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.mode not in MODES:
            raise PassError(f"sparsify: unknown mode '{self.mode}'; choose one of {', '.join(MODES)}")
        store = weights_context(ctx, self.name)
        model = SparseCostModel.load(model_isa(self.target))  # and its zmm-row section where that applies
        for layer in sparse_layers(op, quantized=True):
            a = layer.matrix(store[layer.weight.handle.data])
            attr = choose_format(layer, a, self.mode, model, self.winograd)
            previous = layer.weight.sparse
            if previous is not None and previous.is_sparse and not attr.is_sparse:
                continue  # a weight shared by layers: keep the sparse choice made for another one
            layer.weight.properties["sparse"] = attr
