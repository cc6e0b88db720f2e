"""C++ emitter: prints the vec/loop-level `@main` as calls into the runtime's kernels.

The printer makes no decisions: every size, stride, tile and epilogue is a property in the IR. It maps
each op to one kernel call (`singledispatchmethod`), names buffers (`in[i]`, `out[j]`, `arena + off`,
`W + off`) and fills the fixed file skeleton (`templates/model.cpp.j2`) with the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import singledispatchmethod
from pathlib import Path

import jinja2
import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    FloatAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from inferon.backend.kernel_table import (
    ACTIVATIONS,
    BINARY_KERNELS,
    PAD_MODES,
    REDUCE_KERNELS,
    SPARSE_FORMATS,
    UNARY_KERNELS,
)
from inferon.cpu import target_level
from inferon.errors import InferonError
from inferon.ir import quant
from inferon.ir.attrs import EpilogueAttr, SparseFormat
from inferon.ir.dialects import loop, vec
from inferon.ir.dialects.graph import ints
from inferon.ir.layout import is_nchwc8
from inferon.ir.weights import WeightStore
from inferon.ir.winograd import tile_grid


def c_string(text: str) -> str:
    """`text` as the body of a C string literal: UTF-8 bytes, printable ASCII kept, the rest escaped."""
    out = []
    for byte in str(text).encode():
        ch = chr(byte)
        out.append(f"\\{ch}" if ch in '"\\?' else ch if 32 <= byte < 127 else f"\\{byte:03o}")
    return "".join(out)


TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)  # fmt: skip
TEMPLATES.filters["c_string"] = c_string
# in // comments: no line break and no trailing backslash (a line splice) may get through
TEMPLATES.filters["c_comment"] = lambda text: "".join(c if " " <= c < "\x7f" and c != "\\" else "?" for c in str(text))


@dataclass(frozen=True)
class TensorDecl:
    name: str
    symbol: str
    shape: tuple[int, ...]
    dtype: str = "INFERON_FLOAT32"  # the runtime's inferon_dtype of a model input / output


@dataclass(frozen=True)
class ConstArray:
    symbol: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class EmittedOp:
    """One kernel call of model_run: a profiling label and its C++ lines."""

    label: str
    lines: tuple[str, ...]


def op_label(op: Operation) -> str:
    """Profiling label: the op name and its output shape (GEMMs: M x N x K and batch)."""
    if isinstance(op, vec.SpMMOp):
        m, n, k = ints(op.dims)
        batch = f" x{op.batch.value.data}" if op.batch.value.data > 1 else ""
        fmt = op.format
        return f"{op.name} {fmt.kind} {100 * fmt.density.value.data:.0f}% {m}x{n}x{k}{batch}"
    if isinstance(op, vec.QGemmOp):
        m, n, k = ints(op.dims)
        outer, inner = ints(op.batch)
        batch = f" x{outer * inner}" if outer * inner > 1 else ""
        sparse = (" csr" if op.a_csr is not None else " block1x4") if op.a_index is not None else ""
        return f"{op.name}{sparse} {ctype(op.b.type)[:-2]}x{ctype(op.a.type)[:-2]} {m}x{n}x{k}{batch}"
    if isinstance(op, vec.GemmOp):
        m, n, k = ints(op.dims)
        outer, inner = ints(op.batch)
        batch = f" x{outer * inner}" if outer * inner > 1 else ""
        return f"{op.name} {m}x{n}x{k}{batch}"
    shape = tuple(op.operands[-1].type.get_shape()) if op.operands else ()
    return f"{op.name} [{','.join(str(d) for d in shape)}]"


@dataclass
class EmittedModel:
    """What the toolchain needs: the C++ source and the weight blob it indexes."""

    source: str
    weights: bytes
    arena_bytes: int
    inputs: list[TensorDecl]
    outputs: list[TensorDecl]


def _float(value: float) -> str:
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return f"{value!r}f" if "e" in repr(value) or "." in repr(value) else f"{value!r}.0f"


def _f(attr: FloatAttr) -> str:  # type: ignore[type-arg]
    return _float(float(attr.value.data))


def _depthwise_geometry(op: loop.DepthwiseConv2dOp | loop.QDepthwiseConv2dOp) -> str:
    """`N, C, H, W, M, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw` of a (quantized) depthwise conv."""
    n, c, h, w = op.input.type.get_shape()  # type: ignore[attr-defined]
    m, _, kh, kw = op.weight.type.get_shape()  # type: ignore[attr-defined]
    ho, wo = op.output.type.get_shape()[2:]  # type: ignore[attr-defined]
    (sh, sw), (pt, pl, _, _), (dh, dw) = ints(op.strides), ints(op.pads), ints(op.dilations)
    return ", ".join(str(v) for v in (n, c, h, w, m, ho, wo, kh, kw, sh, sw, pt, pl, dh, dw))


def _qadd_constants(values: DenseArrayBase, output: Attribute) -> tuple[float, float, float, float, float]:
    """(ra, rb, fixed, lo_q, hi_q) of a quantized Add given [sa, za, sb, zb, sy, zy, lo, hi]."""
    sa, za, sb, zb, sy, zy, lo, hi = (float(v) for v in values.get_values())
    dtype = {"uint8_t": np.uint8, "int8_t": np.int8}[ctype(output)]
    return quant.qadd_constants((sa, int(za)), (sb, int(zb)), (sy, int(zy)), dtype, lo, hi)


def _pool_quant(op: loop.Pool2dOp | loop.GlobalPoolOp) -> str:
    """`sx, zx, sy, zy` of an average pool over quantized planes."""
    if op.quant is None:
        raise InferonError(f"C++ emitter: {op.name} averaging a quantized tensor needs its quant property")
    sx, zx, sy, zy = (float(v) for v in op.quant.get_values())
    return f"{_float(sx)}, {int(zx)}, {_float(sy)}, {int(zy)}"


def ctype(memref: Attribute) -> str:
    """The C++ element type of a memref (the arena and the weight blob are float arrays)."""
    element = memref.element_type  # type: ignore[attr-defined]
    if isinstance(element, IntegerType):
        signed = element.signedness.data != Signedness.UNSIGNED
        return f"{'' if signed else 'u'}int{element.width.data}_t"
    return "float"


# C++ element type -> the runtime's inferon_dtype of a model input / output
DTYPES = {
    "float": "INFERON_FLOAT32", "uint8_t": "INFERON_UINT8", "int8_t": "INFERON_INT8", "int32_t": "INFERON_INT32",
    "int64_t": "INFERON_INT64",
}  # fmt: skip


def _typed(expr: str, memref: Attribute, const: bool = False) -> str:
    """`expr` (a float pointer) as a pointer to the memref's element type."""
    t = ctype(memref)
    return expr if t == "float" else f"reinterpret_cast<{'const ' if const else ''}{t}*>{expr}"


@dataclass
class CppEmitter:
    """Prints one `@main` function; create one per module."""

    weight_offsets: dict[str, int]
    num_inputs: int
    names: dict[SSAValue, str] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)
    constants: list[ConstArray] = field(default_factory=list)

    def const_array(self, values: tuple[int, ...]) -> str:
        symbol = f"kC{len(self.constants)}"
        self.constants.append(ConstArray(symbol, values))
        return symbol

    def buf(self, value: SSAValue | None) -> str:
        if value is None:
            return "nullptr"
        return self.names[value]

    def line(self, text: str) -> None:
        self.body.append(text)

    # -- buffers ------------------------------------------------------------------------------
    @singledispatchmethod
    def emit(self, op: Operation) -> None:
        raise InferonError(f"C++ emitter: unable to find a printer for op {op.name}")

    @emit.register
    def _(self, op: loop.WeightOp) -> None:
        self.names[op.result] = _typed(f"(W + {self.weight_offsets[op.handle.data]})", op.result.type, const=True)

    @emit.register
    def _(self, op: loop.AllocOp) -> None:
        if op.offset is None:
            raise InferonError("C++ emitter: loop.alloc without an offset (run plan-memory first)")
        self.names[op.result] = _typed(f"(arena + {op.offset.value.data})", op.result.type)

    @emit.register
    def _(self, op: loop.SliceOp) -> None:
        self.names[op.result] = f"({self.buf(op.base)} + {op.offset.value.data})"

    @emit.register
    def _(self, op: func.ReturnOp) -> None:
        return

    # -- kernels ------------------------------------------------------------------------------
    @emit.register
    def _(self, op: vec.GemmOp) -> None:
        m, n, k = ints(op.dims)
        lda, ldb, ldc = ints(op.leading)
        outer, inner = ints(op.batch)
        sa, sb, sc = ints(op.a_strides), ints(op.b_strides), ints(op.c_strides)
        bias_s = ints(op.bias_strides)
        epi: EpilogueAttr = op.epilogue
        mc, kc, nc = op.tiles.values()
        o = "o * " if outer > 1 else "0 * "
        self.line("{")
        self.line("  inferon::Epilogue ep; inferon::GemmTiles t;")
        self.line(f"  t.mr = {op.mr.value.data}; t.nr = {op.nr.value.data}; t.mc = {mc}; t.kc = {kc}; t.nc = {nc};")
        if op.a_packed is not None:
            self.line("  t.a_packed = true;")
        if op.a_lanes is not None:
            self.line("  t.a_lanes = true;")
        if op.b_packed is not None:
            self.line("  t.b_packed = true;")
        if is_nchwc8(op.b.type):
            self.line("  t.b_nchwc8 = true;")
        if is_nchwc8(op.c.type):
            self.line("  t.c_nchwc8 = true;")
        self.line(f"  ep.act = {ACTIVATIONS[epi.activation]}; ep.alpha = {_f(epi.alpha)}; ep.beta = {_f(epi.beta)};")
        self.line(f"  ep.bias_axis = {op.bias_axis.value.data}; ep.bias_batch_stride = {bias_s[1]};")
        self.line(f"  for (int64_t o = 0; o < {outer}; ++o) {{")
        if op.bias is not None:
            self.line(f"    ep.bias = {self.buf(op.bias)} + {o}{bias_s[0]};")
        if op.residual is not None:
            self.line(f"    ep.residual = {self.buf(op.residual)} + {o}{sc[0]};")
        im2col = ""
        if op.b_im2col is not None:
            fields = [*ints(op.b_im2col), int(op.b_implicit is not None)]
            self.line(f"    static const inferon::Im2col q = {{{', '.join(str(v) for v in fields)}}};")
            im2col = ", &q"
        self.line(
            f"    inferon::gemm({inner}, {m}, {n}, {k}, {self.buf(op.a)} + {o}{sa[0]}, {lda}, {sa[1]}, "
            f"{self.buf(op.b)} + {o}{sb[0]}, {ldb}, {sb[1]}, {self.buf(op.c)} + {o}{sc[0]}, {ldc}, {sc[1]}, "
            f"ep, t, nt{im2col});"
        )
        self.line("  }")
        self.line("}")

    @emit.register
    def _(self, op: vec.SpMMOp) -> None:
        m, n, k = ints(op.dims)
        ldc, s_c = ints(op.c_strides)
        epi: EpilogueAttr = op.epilogue
        csr = op.format.kind == SparseFormat.CSR
        index_bytes = op.index.type.element_type.bitwidth // 8  # type: ignore[attr-defined]
        self.line("{")
        self.line("  inferon::SparseA a; inferon::Epilogue ep;")
        self.line(f"  a.format = {SPARSE_FORMATS[op.format.kind]}; a.index_bytes = {index_bytes}; a.M = {m}; a.K = {k};")
        self.line(f"  a.values = {self.buf(op.values)}; a.index = {self.buf(op.index)};")
        if csr:
            self.line(f"  a.row_ptr = reinterpret_cast<const int32_t*>({self.buf(op.row_ptr)});")
            if op.kblocks is not None:
                self.line(f"  a.kblocks = {op.kblocks.value.data};")
        if op.koff is not None:
            self.line(f"  a.koff = reinterpret_cast<const int32_t*>({self.buf(op.koff)});")
        self.line(f"  a.scale = {op.b_scale.value.data};")
        self.line(f"  ep.bias = {self.buf(op.bias)}; ep.residual = {self.buf(op.residual)};")
        self.line(f"  ep.act = {ACTIVATIONS[epi.activation]}; ep.alpha = {_f(epi.alpha)}; ep.beta = {_f(epi.beta)};")
        implicit = "nullptr"
        if op.b_implicit is not None:
            fields = [*ints(op.b_implicit), 1]
            self.line(f"  static const inferon::Im2col q = {{{', '.join(str(v) for v in fields)}}};")
            implicit = "&q"
        self.line(
            f"  inferon::spmm(a, {op.batch.value.data}, {self.buf(op.b)}, {op.b_stride.value.data}, {n}, "
            f"{self.buf(op.c)}, {ldc}, {s_c}, ep, {op.nr.value.data}, nt, {implicit});"
        )
        self.line("}")

    @emit.register
    def _(self, op: vec.QGemmOp) -> None:
        if op.a_packed is None and op.a_index is None:
            raise InferonError("C++ emitter: vec.qgemm without packed weights (run pack-weights first)")
        m, n, k = ints(op.dims)
        outer, inner = ints(op.batch)
        sa, sb, sc, sr = ints(op.a_strides), ints(op.b_strides), ints(op.c_strides), ints(op.row_strides)
        zy, lo, hi = ints(op.requant)
        ldc, ldc_col = ints(op.c_leading)
        b_signed = ctype(op.b.type).startswith("int")
        c_signed = ctype(op.c.type).startswith("int")
        self.line("{")
        self.line("  inferon::QGemm g;")
        self.line(f"  g.M = {m}; g.N = {n}; g.K = {k}; g.ldb = {op.ldb.value.data}; g.ldc = {ldc}; g.ldc_col = {ldc_col};")
        self.line(f"  g.zy = {zy}; g.lo = {lo}; g.hi = {hi}; g.pad = {op.pad.value.data};")
        self.line(f"  g.b_trans = {str(op.b_trans is not None).lower()}; g.b_signed = {str(b_signed).lower()}; "
                  f"g.c_signed = {str(c_signed).lower()};")  # fmt: skip
        if op.residual is not None and op.residual_add is not None:
            ra, rb, fixed, lo_q, hi_q = _qadd_constants(op.residual_add, op.c.type)
            gemm_first = op.residual_lhs is None  # the GEMM value is the Add's first operand
            r_gemm, r_res = (ra, rb) if gemm_first else (rb, ra)
            res_signed = str(ctype(op.residual.type).startswith("int")).lower()
            self.line(f"  static const inferon::QResidual r = {{{_float(r_gemm)}, {_float(r_res)}, {_float(fixed)}, "
                      f"{_float(lo_q)}, {_float(hi_q)}, {str(gemm_first).lower()}, {res_signed}}};")  # fmt: skip
            self.line("  g.add = &r;")
        if op.b_im2col is not None:
            fields = [*ints(op.b_im2col), int(op.b_implicit is not None)]
            self.line(f"  static const inferon::Im2col q = {{{', '.join(str(v) for v in fields)}}};")
            self.line("  g.im2col = &q;")
        if op.a_lanes is not None:
            self.line("  g.a_lanes = true;")
        if op.a_fix is not None:
            self.line(f"  g.fix = reinterpret_cast<const int32_t*>({self.buf(op.a_fix)});")
        if op.a_index is not None and op.a_row_ptr is not None:
            wide = str(ctype(op.a_index.type).startswith("int32")).lower()
            kchunks = op.a_row_ptr.type.get_shape()[0] // (m + 1)  # type: ignore[attr-defined]
            quads = str(op.a_csr is not None).lower()
            self.line(f"  g.sparse = {{{self.buf(op.a_index)}, {self.buf(op.a_row_ptr)}, {wide}, {kchunks}, {quads}}};")
        b = f"reinterpret_cast<const uint8_t*>({self.buf(op.b)})"
        self.line(f"  for (int64_t o = 0; o < {outer}; ++o)")
        self.line(f"    for (int64_t i = 0; i < {inner}; ++i) {{")
        self.line(f"      g.a = {self.buf(op.a)} + o * {sa[0]} + i * {sa[1]};")
        self.line(f"      g.b = {b} + o * {sb[0]} + i * {sb[1]};")
        self.line(f"      g.c = {self.buf(op.c)} + o * {sc[0]} + i * {sc[1]};")
        self.line(f"      g.comp = {self.buf(op.comp)} + o * {sr[0]} + i * {sr[1]};")
        self.line(f"      g.rq = reinterpret_cast<const inferon::Requant*>({self.buf(op.mult)}) + o * {sr[0]} + i * {sr[1]};")
        if op.residual is not None:
            self.line(f"      g.residual = {self.buf(op.residual)} + o * {sc[0]} + i * {sc[1]};")
        self.line("      inferon::qgemm(g, nt);")
        self.line("    }")
        self.line("}")

    @emit.register
    def _(self, op: loop.QDepthwiseConv2dOp) -> None:
        zy, lo, hi = ints(op.requant)
        self.line("{")
        self.line(
            f"  const inferon::QDepthwise g{{{_depthwise_geometry(op)}, {self.buf(op.weight)}, {self.buf(op.comp)}, "
            f"reinterpret_cast<const inferon::Requant*>({self.buf(op.mult)}), {zy}, {lo}, {hi}, {op.pad.value.data}}};"
        )
        self.line(f"  inferon::qdepthwise_conv2d(g, {self.buf(op.input)}, {self.buf(op.output)}, nt);")
        self.line("}")

    @emit.register
    def _(self, op: loop.PadOp) -> None:
        shape = ints(op.shape)
        s, st, p = self.const_array(shape), self.const_array(ints(op.strides)), self.const_array(ints(op.pads))
        self.line(
            f"inferon::pad({len(shape)}, {s}, {st}, {p}, {PAD_MODES[op.mode.data]}, {self.buf(op.input)} + "
            f"{op.offset.value.data}, {self.buf(op.output)}, {_f(op.value)}, nt);"
        )

    @emit.register
    def _(self, op: loop.ResizeOp) -> None:
        p, h, w, ho, wo, ty, tx = ints(op.geometry)
        tables = ", ".join(self.buf(v) for v in (op.y_index, op.y_weight, op.x_index, op.x_weight))
        self.line("{")
        self.line(f"  const inferon::ResizeTables t{{{tables}}};")
        self.line(
            f"  inferon::resize({self.buf(op.input)}, {self.buf(op.output)}, {p}, {h}, {w}, {ho}, {wo}, {ty}, {tx}, "
            f"{op.x_repeat.value.data}, t, nt);"
        )
        self.line("}")

    @emit.register
    def _(self, op: loop.QAddOp) -> None:
        ra, rb, fixed, lo_q, hi_q = _qadd_constants(op.quant, op.output.type)
        self.line(
            f"inferon::qadd({self.buf(op.lhs)}, {self.buf(op.rhs)}, {self.buf(op.output)}, {_float(ra)}, {_float(rb)}, "
            f"{_float(fixed)}, {_float(lo_q)}, {_float(hi_q)}, {op.size.value.data}, nt);"
        )

    @emit.register
    def _(self, op: loop.QTableOp) -> None:
        rows = op.table.type.get_shape()[0]  # type: ignore[attr-defined]
        self.line(
            f"inferon::qtable({self.buf(op.input)}, {self.buf(op.table)}, {self.buf(op.output)}, {op.batch.value.data}, "
            f"{op.channels.value.data}, {op.plane.value.data}, {int(rows > 1)}, nt);"
        )

    @emit.register(loop.QuantizeOp)
    @emit.register(loop.DequantizeOp)
    def _(self, op: loop.QuantCastBase) -> None:
        kernel = "quantize_linear" if isinstance(op, loop.QuantizeOp) else "dequantize_linear"
        self.line(
            f"inferon::{kernel}({self.buf(op.input)}, {self.buf(op.output)}, {op.size.value.data}, "
            f"{_f(op.scale)}, {op.zero_point.value.data}, nt);"
        )

    @emit.register
    def _(self, op: loop.DynamicQuantizeOp) -> None:
        self.line(
            f"inferon::dynamic_quantize({self.buf(op.input)}, {self.buf(op.values)}, {self.buf(op.scale)}, "
            f"{self.buf(op.zero_point)}, {op.size.value.data}, nt);"
        )

    @emit.register
    def _(self, op: loop.Im2ColOp) -> None:
        n, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo = ints(op.geometry)
        img, col = c * h * w, c * kh * kw * ho * wo
        args = f"{c}, {h}, {w}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {dh}, {dw}, {ho}, {wo}"
        self.line(
            f"for (int64_t i = 0; i < {n}; ++i) inferon::im2col({self.buf(op.input)} + i * {img}, {args}, "
            f"{self.buf(op.output)} + i * {col}, nt);"
        )

    @emit.register
    def _(self, op: loop.Col2ImOp) -> None:
        g = ", ".join(str(v) for v in ints(op.geometry))
        epi: EpilogueAttr = op.epilogue
        self.line(
            f"inferon::col2im({self.buf(op.input)}, {self.buf(op.bias)}, {self.buf(op.residual)}, {self.buf(op.output)}, "
            f"{g}, {ACTIVATIONS[epi.activation]}, {_f(epi.alpha)}, {_f(epi.beta)}, nt);"
        )

    @emit.register
    def _(self, op: loop.ChannelAffineOp) -> None:
        shape = op.input.type.get_shape()  # type: ignore[attr-defined]
        epi: EpilogueAttr = op.epilogue
        self.line(
            f"inferon::channel_affine({self.buf(op.input)}, {self.buf(op.output)}, {shape[0]}, {shape[1]}, "
            f"{math.prod(shape[2:])}, {self.buf(op.scale)}, {self.buf(op.bias)}, {self.buf(op.residual)}, "
            f"{ACTIVATIONS[epi.activation]}, {_f(epi.alpha)}, {_f(epi.beta)}, nt);"
        )

    @emit.register
    def _(self, op: loop.WinogradInputOp) -> None:
        n, c, h, w = op.input.type.get_shape()  # type: ignore[attr-defined]
        _, a2, stride = op.output.type.get_shape()  # type: ignore[attr-defined]
        m = op.tile.value.data
        th, tw = tile_grid(*ints(op.out_size), m)
        pt, pl = ints(op.pads)
        self.line(
            f"for (int64_t i = 0; i < {n}; ++i) inferon::winograd_input({m}, {self.buf(op.input)} + i * {c * h * w}, "
            f"{c}, {h}, {w}, {pt}, {pl}, {th}, {tw}, {self.buf(op.output)} + i * {a2 * stride}, {stride}, nt);"
        )

    @emit.register
    def _(self, op: loop.WinogradOutputOp) -> None:
        n, mo, ho, wo = op.output.type.get_shape()  # type: ignore[attr-defined]
        _, a2, stride = op.input.type.get_shape()  # type: ignore[attr-defined]
        m = op.tile.value.data
        th, tw = tile_grid(ho, wo, m)
        epi: EpilogueAttr = op.epilogue
        residual = "nullptr" if op.residual is None else f"{self.buf(op.residual)} + i * {mo * ho * wo}"
        self.line(
            f"for (int64_t i = 0; i < {n}; ++i) inferon::winograd_output({m}, {self.buf(op.input)} + i * {a2 * stride}, "
            f"{mo}, {th}, {tw}, {stride}, {self.buf(op.output)} + i * {mo * ho * wo}, {self.buf(op.bias)}, {residual}, "
            f"{ho}, {wo}, {ACTIVATIONS[epi.activation]}, {_f(epi.alpha)}, {_f(epi.beta)}, nt);"
        )

    @emit.register
    def _(self, op: loop.DepthwiseConv2dOp) -> None:
        epi: EpilogueAttr = op.epilogue
        self.line(
            f"inferon::depthwise_conv2d({self.buf(op.input)}, {self.buf(op.weight)}, {self.buf(op.bias)}, "
            f"{self.buf(op.residual)}, {self.buf(op.output)}, {_depthwise_geometry(op)}, "
            f"{ACTIVATIONS[epi.activation]}, {_f(epi.alpha)}, {_f(epi.beta)}, nt, "
            f"{int(is_nchwc8(op.input.type)) | 2 * int(is_nchwc8(op.output.type))});"
        )

    @emit.register
    def _(self, op: loop.GroupedConv2dOp) -> None:
        epi: EpilogueAttr = op.epilogue
        n, c, h, w = op.input.type.get_shape()  # type: ignore[attr-defined]
        m, _, kh, kw = op.weight.type.get_shape()  # type: ignore[attr-defined]
        ho, wo = op.output.type.get_shape()[2:]  # type: ignore[attr-defined]
        (sh, sw), (pt, pl, _, _) = ints(op.strides), ints(op.pads)
        geometry = ", ".join(str(v) for v in (n, c, h, w, m, op.group.value.data, ho, wo, kh, kw, sh, sw, pt, pl))
        self.line(
            f"inferon::grouped_conv2d({self.buf(op.input)}, {self.buf(op.weight)}, {self.buf(op.bias)}, "
            f"{self.buf(op.residual)}, {self.buf(op.output)}, {geometry}, "
            f"{ACTIVATIONS[epi.activation]}, {_f(epi.alpha)}, {_f(epi.beta)}, nt);"
        )

    @emit.register
    def _(self, op: loop.Pool2dOp) -> None:
        g = ", ".join(str(v) for v in ints(op.geometry))
        if ctype(op.input.type) != "float":
            args = f"{self.buf(op.input)}, {self.buf(op.output)}, {g}"
            if op.is_max.value.data:
                self.line(f"inferon::qmax_pool2d({args}, nt);")
            else:
                include = int(op.count_include_pad.value.data)
                self.line(f"inferon::qavg_pool2d({args}, {include}, {_pool_quant(op)}, nt);")
            return
        self.line(
            f"inferon::pool2d({self.buf(op.input)}, {self.buf(op.output)}, {g}, "
            f"{int(op.is_max.value.data)}, {int(op.count_include_pad.value.data)}, nt);"
        )

    @emit.register
    def _(self, op: loop.GlobalPoolOp) -> None:
        if ctype(op.input.type) != "float":
            args = f"{self.buf(op.input)}, {self.buf(op.output)}, {op.planes.value.data}, {op.plane_size.value.data}"
            if op.is_max.value.data:
                self.line(f"inferon::qglobal_max_pool({args}, nt);")
            else:
                self.line(f"inferon::qglobal_avg_pool({args}, {_pool_quant(op)}, nt);")
            return
        self.line(
            f"inferon::global_pool({self.buf(op.input)}, {self.buf(op.output)}, {op.planes.value.data}, "
            f"{op.plane_size.value.data}, {int(op.is_max.value.data)}, nt, {int(is_nchwc8(op.input.type))});"
        )

    @emit.register
    def _(self, op: loop.BinaryOp) -> None:
        shape = ints(op.shape)
        s, a, b = self.const_array(shape), self.const_array(ints(op.lhs_strides)), self.const_array(ints(op.rhs_strides))
        self.line(
            f"inferon::binary({BINARY_KERNELS[op.kind.data]}, {len(shape)}, {s}, {self.buf(op.lhs)}, {a}, "
            f"{self.buf(op.rhs)}, {b}, {self.buf(op.output)}, nt);"
        )

    @emit.register
    def _(self, op: loop.SelectOp) -> None:
        shape = ints(op.shape)
        s = self.const_array(shape)
        c, a, b = (self.const_array(ints(st)) for st in (op.cond_strides, op.lhs_strides, op.rhs_strides))
        self.line(
            f"inferon::select({len(shape)}, {s}, {self.buf(op.cond)}, {c}, {self.buf(op.lhs)}, {a}, "
            f"{self.buf(op.rhs)}, {b}, {self.buf(op.output)}, nt);"
        )

    @emit.register
    def _(self, op: loop.UnaryOp) -> None:
        self.line(
            f"inferon::unary({UNARY_KERNELS[op.kind.data]}, {op.size.value.data}, {self.buf(op.input)}, "
            f"{self.buf(op.output)}, {_f(op.alpha)}, {_f(op.beta)}, nt);"
        )

    @emit.register
    def _(self, op: loop.CopyOp) -> None:
        rows, row_len, stride, offset = (a.value.data for a in (op.rows, op.row_len, op.stride, op.offset))
        self.line(
            f"inferon::copy_rows({self.buf(op.input)}, {self.buf(op.output)} + {offset}, {rows}, {row_len}, {stride});"
        )

    @emit.register
    def _(self, op: loop.StridedCopyOp) -> None:
        shape, strides = ints(op.shape), ints(op.strides)
        s, st = self.const_array(shape), self.const_array(strides)
        self.line(
            f"inferon::strided_copy({len(shape)}, {s}, {st}, {self.buf(op.input)} + {op.offset.value.data}, "
            f"{self.buf(op.output)}, nt);"
        )

    @emit.register
    def _(self, op: loop.TransposeOp) -> None:
        shape, perm = ints(op.shape), ints(op.perm)
        s, p = self.const_array(shape), self.const_array(perm)
        self.line(f"inferon::transpose({len(shape)}, {s}, {p}, {self.buf(op.input)}, {self.buf(op.output)}, nt);")

    @emit.register
    def _(self, op: loop.SoftmaxOp) -> None:
        outer, axis, inner = ints(op.view)
        self.line(
            f"inferon::softmax({self.buf(op.input)}, {self.buf(op.output)}, {outer}, {axis}, {inner}, "
            f"{int(op.log.value.data)}, nt);"
        )

    @emit.register
    def _(self, op: loop.LRNOp) -> None:
        n, c, hw = ints(op.view)
        self.line(
            f"inferon::lrn({self.buf(op.input)}, {self.buf(op.output)}, {n}, {c}, {hw}, {op.size.value.data}, "
            f"{_f(op.alpha)}, {_f(op.beta)}, {_f(op.bias)}, nt);"
        )


    @emit.register
    def _(self, op: loop.ReduceOp) -> None:
        outer, r, inner = ints(op.view)
        self.line(
            f"inferon::reduce({REDUCE_KERNELS[op.kind.data]}, {self.buf(op.input)}, {self.buf(op.output)}, "
            f"{outer}, {r}, {inner}, nt);"
        )

    @emit.register
    def _(self, op: loop.ArgReduceOp) -> None:
        outer, r, inner = ints(op.view)
        self.line(
            f"inferon::arg_reduce({REDUCE_KERNELS[op.kind.data]}, {int(op.select_last.value.data)}, "
            f"{self.buf(op.input)}, {self.buf(op.output)}, {outer}, {r}, {inner}, nt);"
        )

    @emit.register
    def _(self, op: loop.RowNormOp) -> None:
        rows, groups, cpr, hw = ints(op.view)
        self.line(
            f"inferon::row_norm({self.buf(op.input)}, {self.buf(op.output)}, {self.buf(op.scale)}, "
            f"{self.buf(op.bias)}, {rows}, {groups}, {cpr}, {hw}, {_f(op.epsilon)}, nt);"
        )


def _arg_names(fn: func.FuncOp) -> list[str]:
    names = []
    for i, attrs in enumerate(fn.arg_attrs.data if fn.arg_attrs else []):
        name = attrs.data.get("inferon.name") if isinstance(attrs, DictionaryAttr) else None
        names.append(name.data if isinstance(name, StringAttr) else f"t{i}")
    return names


def _bool_args(fn: func.FuncOp) -> set[int]:
    """Arguments the importer marked `inferon.dtype = "bool"` (bytes 0 / 1 in the model's ABI)."""
    marked = set()
    for i, attrs in enumerate(fn.arg_attrs.data if fn.arg_attrs else []):
        dtype = attrs.data.get("inferon.dtype") if isinstance(attrs, DictionaryAttr) else None
        if isinstance(dtype, StringAttr) and dtype.data == "bool":
            marked.add(i)
    return marked


def emit_cpp(
    module: ModuleOp, weights: WeightStore, *, source: str = "model", version: str = "", target: str = "native"
) -> EmittedModel:
    """Print the lowest-level module as model.cpp and pack the weights it uses.

    `target` caps the instruction set the model's kernels may use (see `cpu.TARGETS`); the runtime
    still detects the CPU when the model is loaded and uses the best level up to that cap.
    """
    max_isa = target_level(target)
    fn = next((op for op in module.ops if isinstance(op, func.FuncOp)), None)
    if fn is None:
        raise InferonError("C++ emitter: module has no @main")
    num_inputs_attr = fn.attributes.get("inferon.num_inputs")
    arena_attr = fn.attributes.get("inferon.arena_floats")
    if num_inputs_attr is None or arena_attr is None:
        raise InferonError("C++ emitter: @main is not at the loop/vec level with a memory plan")
    num_inputs = num_inputs_attr.value.data  # type: ignore[attr-defined]
    block: Block = fn.body.block
    handles = [op.handle.data for op in block.ops if isinstance(op, loop.WeightOp)]
    blob, offsets = weights.pack(handles)
    emitter = CppEmitter(offsets, num_inputs)
    names, bools = _arg_names(fn), _bool_args(fn)
    decls = []
    for i, arg in enumerate(block.args):
        is_input = i < num_inputs
        emitter.names[arg] = (_typed(f"(in[{i}])", arg.type, const=True) if is_input
                              else _typed(f"(out[{i - num_inputs}])", arg.type))  # fmt: skip
        dtype = "INFERON_BOOL" if i in bools and ctype(arg.type) == "uint8_t" else DTYPES[ctype(arg.type)]
        decls.append(TensorDecl(names[i] if i < len(names) else f"t{i}", f"kT{i}", tuple(arg.type.get_shape()),
                                dtype))  # fmt: skip
    ops: list[EmittedOp] = []
    for op in block.ops:
        start = len(emitter.body)
        emitter.emit(op)
        if len(emitter.body) > start:
            ops.append(EmittedOp(op_label(op), tuple(emitter.body[start:])))
    arena_bytes = 4 * arena_attr.value.data  # type: ignore[attr-defined]
    source_text = TEMPLATES.get_template("model.cpp.j2").render(
        version=version, source=source, tensors=decls, inputs=decls[:num_inputs], outputs=decls[num_inputs:],
        constants=emitter.constants, ops=ops, arena_bytes=arena_bytes, max_isa=max_isa,
    )  # fmt: skip
    return EmittedModel(source_text, blob, arena_bytes, decls[:num_inputs], decls[num_inputs:])
