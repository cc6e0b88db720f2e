"""Converter for Einsum with one or two operands: sums over the letters only one operand has, then
transposes and reshapes around one batched `graph.matmul` (batch letters, free letters of each
operand, contracted letters), then the output's transpose. An ellipsis stands for the leading
dimensions (numpy broadcasting between the operands); a letter repeated within one operand (a
diagonal) and three or more operands are reported as unsupported."""

from __future__ import annotations

import math
import string

import numpy as np
from onnx import NodeProto
from xdsl.ir import SSAValue

from inferon.frontend.onnx.importer import ImportContext, Value
from inferon.frontend.onnx.ops_nn import matmul
from inferon.frontend.onnx.ops_reduce import reduce
from inferon.frontend.onnx.ops_shape import reshape, transpose
from inferon.frontend.onnx.registry import converter
from inferon.ir.attrs import ReduceKind
from inferon.ir.dialects.graph import shape_of

Operand = SSAValue | np.ndarray
# ellipsis dimensions get letters ONNX equations cannot contain
_ELLIPSIS = "".join(chr(0x3B1 + i) for i in range(24))  # α, β, ...


def _shape(x: Operand) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, np.ndarray) else shape_of(x)


def _parse(ctx: ImportContext, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operands' and the output's letters, an ellipsis expanded to one letter per dimension."""
    lhs, arrow, out = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ctx.error(f"equation '{equation}' has {len(terms)} operand terms for {len(ranks)} inputs")
    ell = 0
    for term, rank in zip(terms, ranks):
        named = len(term.replace("...", ""))
        if "..." in term:
            ell = max(ell, rank - named)
        elif named != rank:
            raise ctx.error(f"term '{term}' of '{equation}' names {named} axes of a rank-{rank} input")
    expanded = []
    for term, rank in zip(terms, ranks):
        count = rank - len(term.replace("...", ""))
        expanded.append(term.replace("...", _ELLIPSIS[ell - count : ell]) if "..." in term else term)
    if not arrow:  # implicit output: the ellipsis, then the letters used once, sorted
        letters = "".join(expanded)
        out = _ELLIPSIS[:ell] + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c in string.ascii_letters))
    else:
        out = out.replace("...", _ELLIPSIS[:ell])
    for term in [*expanded, out]:
        if len(set(term)) != len(term):
            raise ctx.unsupported(f"equation '{equation}': a letter repeated within one term (a diagonal or trace)")
        if not set(term) <= set(string.ascii_letters + _ELLIPSIS):
            raise ctx.error(f"equation '{equation}' has characters other than letters, ',', '->' and '...'")
    missing = set(out) - set("".join(expanded))
    if missing:
        raise ctx.error(f"output letters {sorted(missing)} of '{equation}' are in no operand")
    return expanded, out


def _sum_out(ctx: ImportContext, x: Operand, letters: str, keep: set[str]) -> tuple[Operand, str]:
    """x summed over its letters outside `keep` (the reduced axes dropped)."""
    axes = [i for i, c in enumerate(letters) if c not in keep]
    if not axes:
        return x, letters
    kept = "".join(c for c in letters if c in keep)
    shape = tuple(d for i, d in enumerate(_shape(x)) if i not in axes)
    if isinstance(x, np.ndarray):
        return x.sum(axis=tuple(axes), dtype=np.float64).astype(np.float32), kept
    return reshape(ctx, reduce(ctx, x, ReduceKind.SUM, axes), shape), kept


def _arrange(ctx: ImportContext, x: Operand, letters: str, order: str, shape: tuple[int, ...]) -> SSAValue:
    """x with its axes in `order`, then reshaped to `shape` (constants folded in numpy)."""
    perm = tuple(letters.index(c) for c in order)
    if isinstance(x, np.ndarray):
        return ctx.weight(np.ascontiguousarray(x.transpose(perm)).reshape(shape))
    if perm != tuple(range(len(perm))):
        x = transpose(ctx, x, perm)
    return reshape(ctx, x, shape)


@converter("Einsum", since=12)
def convert_einsum(ctx: ImportContext, node: NodeProto) -> list[Value]:
    names = [n for n in node.input if n]
    if not 1 <= len(names) <= 2:
        raise ctx.unsupported(f"Einsum of {len(names)} operands (one or two are supported)")
    equation = ctx.attr("equation", b"")
    equation = equation.decode() if isinstance(equation, bytes) else str(equation)
    ops: list[Operand] = []
    for name in names:
        const = ctx.const(name)
        ops.append(const.astype(np.float32) if const is not None else ctx.value(name))
    terms, out = _parse(ctx, equation, [len(_shape(x)) for x in ops])
    sizes: dict[str, int] = {}
    for x, term in zip(ops, terms):
        for c, d in zip(term, _shape(x)):
            if sizes.get(c, 1) not in (1, d) and d != 1:
                raise ctx.error(f"letter '{c}' of '{equation}' has sizes {sizes[c]} and {d}")
            sizes[c] = max(sizes.get(c, 1), d)
    if len(ops) == 1:
        x, letters = _sum_out(ctx, ops[0], terms[0], set(out))
        return [_arrange(ctx, x, letters, out, tuple(sizes[c] for c in out))]
    (a, la), (b, lb) = _sum_out(ctx, ops[0], terms[0], set(out) | set(terms[1])), _sum_out(ctx, ops[1], terms[1], set(out) | set(terms[0]))
    batch = "".join(c for c in out if c in la and c in lb)
    contracted = "".join(c for c in la if c in lb and c not in out)
    free_a = "".join(c for c in la if c not in lb)
    free_b = "".join(c for c in lb if c not in la)
    prod = lambda letters: math.prod(sizes[c] for c in letters)  # noqa: E731
    dims_a, dims_b = dict(zip(la, _shape(a))), dict(zip(lb, _shape(b)))
    a2 = _arrange(ctx, a, la, batch + free_a + contracted, (*(dims_a[c] for c in batch), prod(free_a), prod(contracted)))
    b2 = _arrange(ctx, b, lb, batch + contracted + free_b, (*(dims_b[c] for c in batch), prod(contracted), prod(free_b)))
    y = reshape(ctx, matmul(ctx, a2, b2), tuple(sizes[c] for c in batch + free_a + free_b))
    have = batch + free_a + free_b
    perm = tuple(have.index(c) for c in out)
    return [transpose(ctx, y, perm) if perm != tuple(range(len(perm))) else y]
