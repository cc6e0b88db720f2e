"""pack-weights: pack constant GEMM weights into the microkernel's panel layout at compile time.

Preconditions: vec level (every `vec.gemm` has its register tile and `tiles`). For each `vec.gemm`
whose A operand is a weight (convolutions: A = filters [G, M, K]) with more than one register tile of
rows (M > mr), the weight is rewritten as the runtime's packed-A layout and the gemm is marked
`a_packed`: the kernel then reads panels straight from the weight blob instead of packing A on every
inference. Layout, per batch item (group): for each KC block p (kc = min(tiles.kc, K)), for each
MR-row panel i, the kcur x MR panel k-major (rows past M zero): offset p*Mpad + i*MR*kcur, where
Mpad = M rounded up to MR. The unpacked weight is dropped when nothing else reads it.

With `f32_lanes` (models that will run with AVX-512F) a weight-A `vec.gemm` with few columns
(`lanes_pay`) is packed as vector lanes instead (`a_lanes`): per batch item, panels of 32 rows,
[ceil(M / 32)][K][32] (rows past M zero), the layout of the runtime's lanes kernel
(gemm_lanes.hpp), which vectorises along A's rows and broadcasts B's row k.

Likewise a `vec.gemm` whose B operand is a weight (MatMul / Gemm of activations by a constant matrix
with more than MR rows: transformer projections, batched FC) gets it as NR-column panels over the
whole K (`b_packed`): panel j (columns j*NR ..) k-major at offset j*NR*K, columns past N zero. The
GEMM then reads B's panels in place instead of packing K x N floats on every call (ViT-Tiny: 21 MB
per inference).

Every `vec.qgemm` (int8 weights) is packed too, always: per group, panels of mr rows, each
[ceil(K/4)][mr][4] int8 (zero padded), the layout of the runtime's quantized kernels (qgemm.hpp).
With `pair_safe` (models that will run without AVX512-VNNI), a dense row-panel `vec.qgemm` with one
weight matrix is stored *pair-safe* where that takes few corrections (`pair_safe_split`, at most `fix_max_density(K)` of the weights): the packed panels hold
weights whose same-sign pairs (k = 2j, 2j + 1) sum to at most 128 in magnitude, which AVX2's
vpmaddubsw multiplies exactly against any uint8 activations (twice the rate of widening to int16 on
CPUs without VNNI), and `a_fix` holds the corrections back to the true weights, which every kernel
adds to its sums: exact results on every instruction set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, StringAttr, UnitAttr, i32
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from inferon.errors import PassError
from inferon.ir.dialects import loop, vec
from inferon.ir.dialects.graph import i64_array, ints
from inferon.ir.weights import WeightStore
from inferon.passes.conversion.graph_to_loop import memref
from inferon.passes.graph.fold_constants import weights_context


def pack_a(a: np.ndarray, mr: int, kc: int) -> np.ndarray:
    """Pack an M x K matrix into the microkernel's A panels (see the module docstring)."""
    m, k = a.shape
    mpad = -(-m // mr) * mr
    padded = np.zeros((mpad, k), dtype=np.float32)
    padded[:m] = a
    kc = max(1, min(kc, k))
    blocks = [padded[:, p : p + kc].reshape(mpad // mr, mr, -1).transpose(0, 2, 1).ravel() for p in range(0, k, kc)]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def pack_a_lanes(a: np.ndarray, lanes: int = vec.GEMM_LANES) -> np.ndarray:
    """Pack an M x K matrix into vector-lane panels [ceil(M / lanes)][K][lanes] (rows past M zero)."""
    m, k = a.shape
    mpad = -(-m // lanes) * lanes
    padded = np.zeros((mpad, k), dtype=np.float32)
    padded[:m] = a
    return np.ascontiguousarray(padded.reshape(mpad // lanes, lanes, k).transpose(0, 2, 1)).ravel()


def lanes_pay(m: int, n: int, k: int, image: bool = False, zmm_rows: bool = False, taps: int = 1) -> bool:
    """Whether the AVX-512 lanes kernel beats the row-panel kernel on an M x N x K weight GEMM.
    Measured (Zen 4, 1 thread, weights cold as in a model, `gemm_lanes.hpp` against pre-packed
    6-row panels): N = 49 1.10-1.35x (ResNet-50's 7x7 layers, K = 128-4608), N = 16 (Winograd
    batches, 8-column tiles) 1.2x, N = 100-392 1.05-1.08x, N = 784 1.0-1.1x, but 64 x 3136 x 64
    0.98x, 96 x 196 x 96 0.97x and 1024^3 0.97x (gemm_bench); rows are padded to whole 32-row panels.
    Convolution images too: ResNet-50's 7x7 stem (N = 12544) as lanes was no faster in the model.
    Many columns with few rows: the row panels pack each B block for only ceil(M / 6) panels, while
    the lanes kernel reads B in place, so lanes win there where K amortises their transposes and B
    stays in cache (B streams once per 32-row panel): 32 x 3136 x 128-256 1.15-1.19x, 64 x 3136 x 256
    1.02x, 64 x 3136 x 576 1.05-1.07x; not 64 x 3136 x 128 (0.99x), 128 rows (0.96x) nor B of
    3.6M floats or more (64 x 3136 x 1152 0.98x, 64 x 12544 x 576 0.90x). A convolution's `image` is
    read from one bordered copy of it, much smaller than its im2col matrix: the 7x7 stem (64 x 12544 x
    147) as lanes 2.81 -> 2.46 ms per op, ResNet-50 FP32 1.020x, its 90 %-pruned version 1.011-1.015x
    (session 25; session 24, before the B panels' padding and the column split, measured 0.998x).

    Up to 800 columns whole models say more than those per-GEMM figures: K down to 32 and rows padded
    by up to 3/4 (e.g. 80 -> 128) as lanes, against K >= 128 and at most 1/8 padding before (session
    27, a 2-core Intel Xeon with AVX-512 before its zmm row panels, i.e. lanes against the ymm row
    panels as on Zen 4; interleaved A/B of whole models, 1 / 2 threads): MobileNetV3 1.19 / 1.14x,
    EfficientNet-B0 1.10 / 1.09x, ShuffleNetV2 1.16 / 0.98x, SqueezeNet 1.05 / 1.05x, ShuffleNet
    1.08 / 1.09x, Inception v1 1.06 / 1.06x, v2 1.05 / 1.05x (K = 8 and 3x padding: no further
    gain). Part of it is the blocked layout (`assign-layout`), which lanes outputs make possible.

    `zmm_rows` (Intel CPUs with AVX-512F: the row panels run 6 x 32 zmm tiles at up to ~160 % of the
    AVX2 peak, `inferon.cpu.zmm_row_panels`): lanes only up to 200 columns (100 since session 28,
    below), where the zmm row tiles waste columns (49 = 32 + 17). Whole models against lanes up to 800 columns (same session, a
    2-core Intel Xeon, 1 / 2 threads): ResNet-50 1.03 / 1.05x, SqueezeNet 1.00 / 1.02x, Inception v2
    1.00 / 1.01x, MobileNetV3 0.97 / 1.00x, EfficientNet-B0 1.00 / 1.03x; up to 64 columns only:
    0.89-1.04x. Convolution images keep the rules above (read in place, no im2col gather; ResNet-50
    1.013 / 1.007x: its 7x7 stem and 28x28 stride-2 3x3).

    Session 28 (same machine, after a fix that made every row-panel GEMM run its zmm tiles): an
    image of a 1x1 convolution (`taps` = kh * kw = 1: a strided 1x1, whose im2col gather is one
    strided copy of B) with more than 200 columns goes to the row panels too: ResNet-50's 56x56 ->
    28x28 projection (512 x 784 x 256) 2.6-2.8 -> 1.5 ms per op; its 7x7 stem as row panels was
    2.0-2.1 -> 2.3-2.4 ms, so images of KxK kernels keep the lanes. And lanes only up to 100 columns
    (13x13 / 14x14 planes, N = 169 / 196, on the row panels), whole models (interleaved, 1 / 2
    threads): ResNet-50 1.012 / 1.024x, ShuffleNet 1.09 / 1.09x, Inception v1 1.018 / 1.055x, v2
    1.005 / 1.04x, SqueezeNet 0.99 / 1.03x, DenseNet-121 0.964 / 1.028x (its 128 x 196 x 256-1024
    layers, few rows and a long K, were faster as lanes at 1 thread; keeping lanes for M <= 128 and
    K >= 256 lost at 2 threads what it won at 1)."""
    mpad = -(-m // vec.GEMM_LANES) * vec.GEMM_LANES
    if m < vec.GEMM_LANES or (zmm_rows and n > 100 and (not image or taps == 1)):
        return False
    if n <= 800:
        return k >= 32 and mpad * 4 <= m * 7
    if k < 128 or mpad * 8 > m * 9 or m > 64:
        return False
    return image or (k >= (128 if m <= 32 else 256) and k * n <= 1 << 21)


def pack_b(b: np.ndarray, nr: int) -> np.ndarray:
    """Pack a K x N matrix into nr-column panels over the whole K (see the module docstring)."""
    k, n = b.shape
    npad = -(-n // nr) * nr
    padded = np.zeros((k, npad), dtype=np.float32)
    padded[:, :n] = b
    return padded.reshape(k, npad // nr, nr).transpose(1, 0, 2).ravel()


def _matrices(weights: np.ndarray, items: int, item_stride: int, rows: int, cols: int, ld: int) -> list[np.ndarray] | None:
    """The `items` rows x cols matrices (row stride ld, item_stride apart) in `weights`, or None if
    they do not fit."""
    flat = weights.ravel()
    if (items - 1) * item_stride + (rows - 1) * ld + cols > flat.size:
        return None
    size = flat.itemsize
    return [np.lib.stride_tricks.as_strided(flat[g * item_stride :], shape=(rows, cols), strides=(size * ld, size))
            for g in range(items)]  # fmt: skip


def _pack_gemm_b(op: vec.GemmOp, weights: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """The packed B weight of `op` and its new b_strides, or None if this gemm's B is not packable."""
    m, n, k = ints(op.dims)
    ldb = ints(op.leading)[1]
    outer, inner = ints(op.batch)
    s_outer, s_inner = ints(op.b_strides)
    nr = op.nr.value.data
    if m <= vec.PACKED_MR or n <= 1 or k < 1 or ldb < n or (outer > 1 and s_outer != 0):
        return None
    if op.b_im2col is not None or op.b_implicit is not None:
        return None
    items = inner if s_inner != 0 else 1
    matrices = _matrices(weights, items, s_inner, k, n, ldb)
    if matrices is None:
        return None
    panels = [pack_b(b, nr) for b in matrices]
    stride = panels[0].size if items > 1 else 0
    return np.concatenate(panels), [0, stride]


def _pack_gemm(op: vec.GemmOp, weights: np.ndarray, mr: int, lanes: bool = False) -> tuple[np.ndarray, list[int]] | None:
    """The packed weights of `op` (6-row panels, or vector-lane panels with `lanes`) and its new
    a_strides, or None if this gemm is not packable."""
    m, n, k = ints(op.dims)
    lda = ints(op.leading)[0]
    outer, inner = ints(op.batch)
    s_outer, s_inner = ints(op.a_strides)
    if m <= mr or n <= 1 or k < 1 or lda < k or (outer > 1 and s_outer != 0):
        return None
    items = inner if s_inner != 0 else 1
    matrices = _matrices(weights, items, s_inner, m, k, lda)
    if matrices is None:
        return None
    panels = [pack_a_lanes(a) if lanes else pack_a(a, mr, op.tiles.values()[1]) for a in matrices]
    stride = panels[0].size if items > 1 else 0
    return np.concatenate(panels), [0, stride]


def pack_a_int8(a: np.ndarray, mr: int) -> np.ndarray:
    """Pack an int8 M x K matrix into panels [ceil(M/mr)][ceil(K/4)][mr][4]."""
    m, k = a.shape
    mpad, kpad = -(-m // mr) * mr, -(-k // 4) * 4
    padded = np.zeros((mpad, kpad), dtype=np.int8)
    padded[:m, :k] = a
    return np.ascontiguousarray(padded.reshape(mpad // mr, mr, kpad // 4, 4).transpose(0, 2, 1, 3)).ravel()


def fix_max_density(k: int) -> float:
    """The share of corrected weights up to which a pair-safe A beats widening to int16 (AVX2).
    Measured per layer (1 thread, Zen 3, interleaved): K = 16 at 8 / 13 / 21 % corrections 1.30 /
    1.18 / 1.08x faster pair-safe; K = 32 at 13 % 1.11x; K = 96 at 12 % 1.09x but at 17 % 0.95x;
    K = 64 / 128 at 18 % 0.87x. (The corrections' cost grows with K, the int16 path's saving does
    not keep up: its epilogue is per output like the pair-safe one's.)"""
    return 0.20 if k <= 32 else 0.12


def pair_safe_split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split int8 weights [M, K] into pair-safe weights plus sparse corrections (see the module
    docstring): returns (safe [M, K] int8, fix int32 [M + 1 + nfix]). In a pair of consecutive k with
    the same sign and |a0| + |a1| > 128, the larger one moves towards zero by the excess (it stays
    >= 0 in magnitude: 128 - |other|), and the entry k << 8 | (r & 0xff), r = the excess with its
    sign (an int8), records it under the row; fix starts with the M + 1 row starts of the entries."""
    m, k = a.shape
    safe = np.zeros((m, k + k % 2), dtype=np.int16)
    safe[:, :k] = a
    pairs = safe.reshape(m, -1, 2)
    mag = np.abs(pairs)
    excess = mag.sum(axis=2) - 128
    bad = (pairs[..., 0] * pairs[..., 1] > 0) & (excess > 0)
    rows, js = np.nonzero(bad)
    which = (mag[rows, js, 1] > mag[rows, js, 0]).astype(np.int64)  # the larger one of the pair
    r = (np.sign(pairs[rows, js, which]) * excess[rows, js]).astype(np.int16)
    pairs[rows, js, which] -= r
    cols = 2 * js + which
    entries = (cols.astype(np.int64) << 8) | (r.astype(np.int64) & 0xFF)  # row-major order: sorted by row
    starts = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
    return safe[:, :k].astype(np.int8), np.concatenate([starts, entries]).astype(np.int32)


def pair_safe_if_cheap(a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`pair_safe_split(a)` where at most `fix_max_density` of the weights need a correction, else None
    (the widening kernel is then faster than applying the corrections)."""
    safe, fix = pair_safe_split(a)
    return (safe, fix) if fix.size - (a.shape[0] + 1) <= fix_max_density(a.shape[1]) * a.size else None


def _qgemm_matrices(op: vec.QGemmOp, weights: np.ndarray) -> list[np.ndarray]:
    """The int8 [M, K] weight matrix of each group of `op` (one when the groups share it)."""
    m, _, k = ints(op.dims)
    _, inner = ints(op.batch)
    s_inner = ints(op.a_strides)[1]
    mats = _matrices(weights, inner if s_inner != 0 else 1, s_inner, m, k, k)
    if mats is None:
        raise PassError(f"pack-weights: the int8 weight of {op.name} is smaller than its {m} x {k} matrices")
    return mats


def _pack_all_qgemms(module: ModuleOp, store: WeightStore, pair_safe: bool) -> None:
    for gemm in list(module.walk()):
        if not isinstance(gemm, vec.QGemmOp) or gemm.a_packed is not None or gemm.a_index is not None:
            continue
        owner = gemm.a.owner
        if not isinstance(owner, loop.WeightOp):
            raise PassError("pack-weights: the A operand of vec.qgemm must be a weight")
        mats, mr = _qgemm_matrices(gemm, store[owner.handle.data]), gemm.mr.value.data
        fix = None
        if pair_safe and len(mats) == 1 and gemm.a_lanes is None and (split := pair_safe_if_cheap(mats[0])):
            mats, fix = [split[0]], split[1]
        panels = [pack_a_int8(a, mr) for a in mats]
        data, strides = np.concatenate(panels), [0, panels[0].size if len(panels) > 1 else 0]
        handle = store.add(data, f"{owner.handle.data}.qpacked{mr}", keep_dtype=True)
        _use_packed(gemm, owner, handle, data.size, strides)
        if fix is not None:
            _add_fix(gemm, store.add(fix, f"{owner.handle.data}.qfix", keep_dtype=True), fix.size)


def _add_fix(gemm: vec.QGemmOp, handle: str, size: int) -> None:
    """Give `gemm` (without a_fix yet) the pair-safe corrections `handle` as its a_fix operand: a new
    op, since the operand segments change."""
    weight = loop.WeightOp.create(properties={"handle": StringAttr(handle)}, result_types=[memref((size,), i32)])
    Rewriter.insert_op(weight, InsertPoint.before(gemm))
    props = dict(gemm.properties)
    segments = list(gemm.properties["operandSegmentSizes"].get_values())  # type: ignore[union-attr]
    props["operandSegmentSizes"] = DenseArrayBase.from_list(i32, [1, *segments[1:]])
    Rewriter.replace_op(gemm, vec.QGemmOp.create(operands=[weight.result, *gemm.operands], properties=props))


def _use_packed(gemm: Operation, owner: loop.WeightOp, handle: str, size: int, strides: list[int], which: str = "a",
                lanes: bool = False) -> None:
    """Make the packed weight `handle` the A (`which` = "a") or B ("b") operand of `gemm`, marked
    a_packed / b_packed (a_lanes with `lanes`) with the new batch strides; drop the unpacked weight
    when nothing else reads it."""
    element = owner.result.type.element_type  # type: ignore[attr-defined]
    new_weight = loop.WeightOp.create(properties={"handle": StringAttr(handle)}, result_types=[memref((size,), element)])
    Rewriter.insert_op(new_weight, InsertPoint.before(owner))
    gemm.operands[0 if which == "a" else 1] = new_weight.result
    gemm.properties[f"{which}_strides"] = i64_array(strides)
    gemm.properties["a_lanes" if lanes else f"{which}_packed"] = UnitAttr()
    if not owner.result.uses:
        Rewriter.erase_op(owner)


@dataclass(frozen=True)
class PackWeightsPass(ModulePass):
    """Rewrite constant A operands of vec.gemm / vec.qgemm into packed panels (a_packed), and constant B
    operands of vec.gemm (b_packed). `pair_safe`:
    store quantized row panels pair-safe where cheap (for models that run without AVX512-VNNI: the
    VNNI kernels would only pay for the corrections). `f32_lanes`: pack float weights of GEMMs with
    few columns as vector lanes (`a_lanes`, for models that run with AVX-512F)."""

    name = "pack-weights"
    pair_safe: bool = True
    f32_lanes: bool = False
    zmm_rows: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = weights_context(ctx, self.name)
        _pack_all_qgemms(op, store, self.pair_safe)
        for gemm in list(op.walk()):
            if not isinstance(gemm, vec.GemmOp) or gemm.a_packed is not None:
                continue
            owner = gemm.a.owner
            if not isinstance(owner, loop.WeightOp):
                continue
            mr = vec.PACKED_MR
            m, n, k = ints(gemm.dims)
            view = ints(gemm.b_im2col) if gemm.b_im2col is not None else None  # C, H, W, kh, kw, ...
            taps = view[3] * view[4] if view else 1
            lanes = self.f32_lanes and gemm.b_implicit is None and lanes_pay(m, n, k, view is not None, self.zmm_rows,
                                                                             taps)
            packed = _pack_gemm(gemm, store[owner.handle.data], mr, lanes)
            if packed is None:
                continue
            data, strides = packed
            name = f"lanes{vec.GEMM_LANES}" if lanes else f"packed{mr}x{gemm.tiles.values()[1]}"
            handle = store.add(data, f"{owner.handle.data}.{name}")
            _use_packed(gemm, owner, handle, data.size, strides, "a", lanes)
        for gemm in list(op.walk()):
            if isinstance(gemm, vec.GemmOp) and gemm.b_packed is None and isinstance(gemm.b.owner, loop.WeightOp):
                owner = gemm.b.owner
                packed = _pack_gemm_b(gemm, store[owner.handle.data])
                if packed is not None:
                    data, strides = packed
                    handle = store.add(data, f"{owner.handle.data}.packed_b{gemm.nr.value.data}")
                    _use_packed(gemm, owner, handle, data.size, strides, "b")
