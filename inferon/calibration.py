"""Calibration for `inferon compile --quantize int8`: run the float model on sample inputs and turn
the values each tensor takes into a quantization range.

The float model is compiled by Inferon itself (a *probe*: the graph with the tensors to calibrate
added as outputs, lowered by the float pipeline and cached like any model), run on every sample, and
each tensor's values summarised. Ranges: `minmax` (the extremes seen), `percentile` (the 0.01 /
99.99 percentiles: a few outliers do not stretch the scale) and `entropy` (the clipping threshold
whose 8-bit histogram is closest, in KL divergence, to the float one; TensorRT's method).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import SSAValue

from inferon.errors import InferonError

METHODS = ("minmax", "percentile", "entropy")
MAX_SAMPLES_PER_TENSOR = 1 << 20  # values kept per tensor for percentile / entropy
ROWS_PER_INPUT = 64  # input rows (conv patches) per sample for a layer's E[x x^T]: 64 per weight of a row,
ROWS_WORK_PER_SAMPLE = 2e9  # at most this many multiply-adds (rows x K^2) per sample,
ROWS_PER_SAMPLE = (256, 4096)  # within these bounds
MOMENT_SAMPLES = 32  # calibration samples that contribute to the input moments (the first ones)


def load_calibration(data: str | Path | Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
                     inputs: Mapping[str, Sequence[int | None]]) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """Calibration samples as float32 feed dicts, from an .npz file (arrays named like the model
    inputs, the first axis indexing the samples; a single-input model may use any one array name), a
    dict of such arrays, or an iterable of feed dicts (a Python data reader). `inputs` maps each model
    input to its shape (None for a dimension not known yet); a sample lacking a leading batch axis of
    1 gets it, any other shape mismatch is an error."""
    input_names = list(inputs)
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise InferonError(f"calibration data '{path}' does not exist")
        try:
            with np.load(path) as npz:
                data = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise InferonError(f"calibration data '{path}' is not a readable .npz file: {exc}") from exc
    if isinstance(data, Mapping):
        arrays = dict(data)
        if len(input_names) == 1 and len(arrays) == 1 and input_names[0] not in arrays:
            arrays = {input_names[0]: next(iter(arrays.values()))}
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise InferonError(f"calibration data has no array for input(s) {missing}; it has {sorted(arrays)}")
        counts = {len(arrays[n]) for n in input_names}
        if len(counts) != 1:
            raise InferonError(f"calibration arrays hold different numbers of samples: {sorted(counts)}")
        samples = [{n: np.asarray(arrays[n][i]) for n in input_names} for i in range(counts.pop())]
    else:
        samples = [dict(feed) for feed in data]
    if not samples:
        raise InferonError("calibration data holds no samples")
    return [{k: _as_input(v, inputs.get(k), k, i) for k, v in feed.items()} for i, feed in enumerate(samples)]


def _as_input(value: np.ndarray, shape: Sequence[int | None] | None, name: str, index: int) -> np.ndarray:
    """One calibration sample of input `name` of the input's shape (float32 unless it holds integers,
    for a uint8 / int8 input)."""
    x = np.asarray(value)
    x = np.ascontiguousarray(x, None if x.dtype.kind in "iu" else np.float32)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = "NaN" if np.isnan(x).any() else "infinite"
        raise InferonError(f"calibration sample {index} of input '{name}' holds {bad} values")
    if shape is None:
        return x
    given = list(x.shape)
    if x.ndim == len(shape) - 1 and shape[0] == 1:
        x = x[None]  # a stack of single images for a batch-1 model
    if x.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, x.shape, strict=True)):
        want = "x".join("?" if d is None else str(d) for d in shape)
        raise InferonError(f"calibration sample {index} of input '{name}' has shape {given}, the model takes {want}")
    return x


@dataclass
class TensorStats:
    """Running summary of one tensor's values over the calibration samples."""

    lo: float = float("inf")
    hi: float = float("-inf")
    values: list[np.ndarray] = field(default_factory=list)
    kept: int = 0

    def add(self, x: np.ndarray, rng: np.random.Generator, keep_values: bool) -> None:
        flat = np.asarray(x, np.float32).ravel()
        self.lo, self.hi = min(self.lo, float(flat.min())), max(self.hi, float(flat.max()))
        if keep_values and self.kept < MAX_SAMPLES_PER_TENSOR:
            take = min(flat.size, MAX_SAMPLES_PER_TENSOR // 4, MAX_SAMPLES_PER_TENSOR - self.kept)
            self.values.append(flat if take == flat.size else rng.choice(flat, take, replace=False))
            self.kept += take

    def range(self, method: str) -> tuple[float, float]:
        if method == "minmax" or not self.values:
            return self.lo, self.hi
        values = np.concatenate(self.values)
        if method == "percentile":
            lo = float(np.percentile(values, 0.01)) if self.lo < 0 else 0.0
            return min(lo, 0.0), float(np.percentile(values, 99.99))
        t = entropy_threshold(np.abs(values), bins_out=128 if self.lo < 0 else 255)
        return (-t if self.lo < 0 else 0.0), t


@dataclass
class ConvPatches:
    """The geometry of a convolution's input patches (NCHW input, weights [M, C / groups, kh, kw])."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    groups: int

    def columns(self, x: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
        """[groups, C / groups * kh * kw, positions]: the input patches of at most `limit` output
        positions (all, or a random choice) as columns, their entries ordered like a weight row
        (channel, then kernel row, then kernel column); the batch is folded into the positions."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        t, left, b, r = self.pads
        x = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 0), (t, b), (left, r)))
        n, c, h, w = x.shape
        ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        every = n * ho * wo <= limit
        count = n * ho * wo if every else limit
        out = np.empty((c, kh * kw, count), np.float32)
        if not every:
            img, pos = np.divmod(np.sort(rng.choice(n * ho * wo, limit, replace=False)), ho * wo)
            oy, ox = np.divmod(pos, wo)
        for i in range(kh):
            for j in range(kw):
                if every:  # a strided view of the whole tap, batch last-but-spatial
                    tap = x[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
                    out[:, i * kw + j] = tap.transpose(1, 0, 2, 3).reshape(c, count)
                else:
                    out[:, i * kw + j] = x[img, :, i * dh + sh * oy, j * dw + sw * ox].T
        return out.reshape(self.groups, c // self.groups * kh * kw, count)


def row_limit(k: int) -> int:
    """How many of a sample's input rows of `k` values InputMoments uses at most."""
    return int(np.clip(min(ROWS_PER_INPUT * k, ROWS_WORK_PER_SAMPLE / (k * k)), *ROWS_PER_SAMPLE))


@dataclass
class InputMoments:
    """E[x x^T] of one layer's input rows over the calibration samples (for adaptive weight
    rounding): a conv's input patches per group (`patches`), or a MatMul's input rows (None: the
    last axis). Of each sample at most `row_limit(K)` rows are used, chosen at random."""

    patches: ConvPatches | None
    total: np.ndarray | None = None  # [groups, K, K] float32 sums of x x^T
    rows_seen: int = 0

    def add(self, x: np.ndarray, rng: np.random.Generator) -> None:
        if self.patches is not None:
            (kh, kw), groups = self.patches.kernel, self.patches.groups
            cols = self.patches.columns(x, rng, row_limit(x.shape[1] // groups * kh * kw))
        else:
            rows = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
            limit = row_limit(x.shape[-1])
            if len(rows) > limit:
                rows = rows[np.sort(rng.choice(len(rows), limit, replace=False))]
            cols = np.ascontiguousarray(rows.T)[None]
        sums = np.matmul(cols, cols.transpose(0, 2, 1))
        if self.total is None:
            self.total = sums
        else:
            self.total += sums
        self.rows_seen += cols.shape[2]

    def moment(self) -> np.ndarray:
        """[groups, K, K]: the mean of x x^T over the rows seen."""
        assert self.total is not None, "no calibration sample added"
        return self.total.astype(np.float64) / self.rows_seen


def entropy_threshold(values: np.ndarray, bins: int = 2048, bins_out: int = 128) -> float:
    """The clipping threshold of |values| minimising KL(P || Q), P the clipped float histogram and
    Q its `bins_out`-level quantization (TensorRT's entropy calibration). Exact zeros (ReLU
    outputs) are left out: zero is always representable, and their spike would dominate P."""
    values = values[values != 0]
    top = float(values.max()) if values.size else 0.0
    if top <= 0:
        return 1e-8
    hist, edges = np.histogram(values, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best, best_kl = bins, np.inf
    for i in range(bins_out, bins + 1, 16):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # P: the clipped distribution (outliers in the last bin)
        q = np.zeros(i)  # Q: the unclipped bins quantized to bins_out levels, expanded back
        for idx in np.array_split(np.arange(i), bins_out):
            nonzero = hist[idx] > 0
            if nonzero.any():
                q[idx[nonzero]] = hist[idx].sum() / nonzero.sum()
        mask = p > 0
        ps, qs = p / p.sum(), q / max(q.sum(), 1e-12)
        kl = np.sum(ps[mask] * np.log(ps[mask] / np.maximum(qs[mask], 1e-12)))
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[best])


def _producer(value: SSAValue) -> str:
    """The graph op computing `value`, for messages."""
    owner = value.owner
    return f"a {owner.name} op" if hasattr(owner, "name") else "a graph input"


def collect_stats(
    module: ModuleOp, weights: object, values: list[SSAValue], samples: list[dict[str, np.ndarray]],
    *, method: str, verbose: bool = False, moments: Sequence[tuple[int, InputMoments]] = (),
) -> tuple[list[TensorStats], list[list[np.ndarray]]]:  # fmt: skip
    """Compile the float graph `module` with `values` as extra outputs, run every sample; return
    each value's statistics and the model's own outputs per sample (for the deviation report).
    `moments` (index into `values`, accumulator): layer inputs whose E[x x^T] to accumulate too."""
    import inferon
    from inferon.backend.emitter import emit_cpp
    from inferon.backend.toolchain import build_shared_library
    from inferon.ir.context import make_context
    from inferon.passes import get_pass
    from inferon.pipeline import DEFAULT_PASSES, Pipeline

    if method not in METHODS:
        raise InferonError(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    mapping: dict[SSAValue, SSAValue] = {}
    probe = module.clone(value_mapper=mapping)
    fn = next(op for op in probe.ops if isinstance(op, func.FuncOp))
    ret = fn.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    n_out = len(ret.operands)
    extra = [mapping[v] for v in values]
    new_ret = func.ReturnOp(*ret.operands, *extra)
    fn.body.block.insert_op_before(new_ret, ret)
    fn.body.block.erase_op(ret)
    names = list(fn.res_attrs.data) if fn.res_attrs else []
    names += [DictionaryAttr({"inferon.name": StringAttr(f"__calib_{i}")}) for i in range(len(extra))]
    fn.res_attrs = ArrayAttr(names)
    fn.function_type = func.FunctionType.from_lists(fn.function_type.inputs.data, [v.type for v in new_ret.operands])

    ctx = make_context(weights)  # type: ignore[arg-type]
    start = next(i for i, (_, name) in enumerate(DEFAULT_PASSES) if name == "fuse-epilogue")
    passes = [(stage, get_pass(name)(**({"mode": "off"} if name == "sparsify" else {})))
              for stage, name in DEFAULT_PASSES[start:]]  # fmt: skip
    Pipeline(passes).run(ctx, probe)  # type: ignore[arg-type]
    emitted = emit_cpp(probe, ctx.weights, source="calibration")
    with tempfile.TemporaryDirectory() as tmp:
        so = build_shared_library(emitted.source, emitted.weights, Path(tmp) / "probe.so")
        model = inferon.load(so)
        stats = [TensorStats() for _ in values]
        outputs: list[list[np.ndarray]] = []
        rng, rows_rng = np.random.default_rng(0), np.random.default_rng(1)
        for i, feed in enumerate(samples):
            named = model.run(dict(feed))
            result = [named[n] for n in model.output_names]
            outputs.append([np.array(r) for r in result[:n_out]])
            for j, (s, r) in enumerate(zip(stats, result[n_out:], strict=True)):
                if not np.isfinite(r).all():
                    raise InferonError(
                        f"calibration sample {i}: the float model computes NaN or infinite values (in the "
                        f"output of {_producer(values[j])}); its activations cannot be given an INT8 range"
                    )
                s.add(r, rng, keep_values=method != "minmax")
            for j, acc in moments if i < MOMENT_SAMPLES else ():
                acc.add(result[n_out + j], rows_rng)
            if verbose:
                print(f"\rinferon: calibration sample {i + 1}/{len(samples)}", end="", file=sys.stderr)
        if verbose:
            print(file=sys.stderr)
        model.close()
    return stats, outputs
