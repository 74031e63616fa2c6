"""A tiny DSL for physical formulas with unit checking (paper §4.1, "Domain specific language").

Vocabulary: ``Input(i)`` (the i-th state variable, carrying its units), ``Parameter`` (a trainable
scalar whose units are *inferred* so that the expression type-checks), unary ``sin``, ``cos``,
``sq`` (x²) and binary ``+ - * /``.

Unit checking. Every Parameter leaf is its own unknown unit, and a parameter-only subtree is not
allowed (``P + P``, ``sin(P)``), so parameters sit in disjoint subtrees. A subtree's unit is then
either a fixed :class:`~noether_rl.symbolic.units.Dim` or ``FREE``: some parameter in it can still
absorb any unit (``P*q``). The rules:

- ``a + b``, ``a - b``: equal fixed units; a FREE side takes the other side's unit (the result is
  fixed); two FREE sides stay FREE.
- ``a * b``, ``a / b``: add / subtract exponents; FREE if either side is FREE.
- ``sin a``, ``cos a``: ``a`` dimensionless or FREE (its parameter becomes the reciprocal unit);
  the result is dimensionless.
- ``sq a``: doubles the exponents; FREE stays FREE.

This is exact: with distinct parameters in disjoint subtrees, every FREE subtree can be given any
unit (exponents may be rational, e.g. a fitted ``sqrt(k/m)``), so the rules accept precisely the
expressions for which parameter units exist. :func:`parameter_units` recovers one consistent
assignment (free choices set to dimensionless) for reporting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from noether_rl.symbolic.units import DIMENSIONLESS, Dim

UNARY = ("sin", "cos", "sq")
BINARY = ("+", "-", "*", "/")
COMMUTATIVE = ("+", "*")
FREE = None  # the unit of a subtree whose parameters can still absorb any unit
Unit = Dim | None


@dataclass(frozen=True)
class Expr:
    """A formula tree. ``op`` is ``"x"`` (Input ``index``), ``"c"`` (Parameter), a unary or a binary op."""

    op: str
    children: tuple[Expr, ...] = ()
    index: int = -1
    _key: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op == "x":
            key = f"x{self.index}"
        elif self.op == "c":
            key = "c"
        elif self.op in UNARY:
            key = f"{self.op}({self.children[0].key})"
        else:
            key = f"({self.children[0].key}{self.op}{self.children[1].key})"
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        """Canonical string (parameters anonymous); also the total order used for commutativity."""
        return self._key

    @property
    def size(self) -> int:
        return 1 + sum(c.size for c in self.children)

    @property
    def n_params(self) -> int:
        return int(self.op == "c") + sum(c.n_params for c in self.children)

    @property
    def has_input(self) -> bool:
        return self.op == "x" or any(c.has_input for c in self.children)

    def postfix(self) -> list[Expr]:
        """Nodes in post-order (children before parents; the root last)."""
        out: list[Expr] = []
        for c in self.children:
            out.extend(c.postfix())
        out.append(self)
        return out


def Input(i: int) -> Expr:  # noqa: N802 - DSL constructor names
    return Expr("x", index=i)


def Parameter() -> Expr:  # noqa: N802
    return Expr("c")


def unary(op: str, a: Expr) -> Expr:
    if op not in UNARY:
        raise ValueError(f"unknown unary op {op!r}")
    return Expr(op, (a,))


def binary(op: str, a: Expr, b: Expr) -> Expr:
    if op not in BINARY:
        raise ValueError(f"unknown binary op {op!r}")
    return Expr(op, (a, b))


class UnitMismatch(ValueError):
    """The expression does not type-check."""


def combine_units(op: str, a: Unit, b: Unit = FREE) -> Unit:
    """Unit of ``op`` applied to children of units ``a`` (and ``b``); raises :class:`UnitMismatch`."""
    if op in ("sin", "cos"):
        if a is not FREE and not a.dimensionless:
            raise UnitMismatch(f"{op} of a quantity with units {a}")
        return DIMENSIONLESS
    if op == "sq":
        return FREE if a is FREE else a ** 2
    if op in ("+", "-"):
        if a is FREE:
            return b
        if b is FREE:
            return a
        if a != b:
            raise UnitMismatch(f"{a} {op} {b}")
        return a
    if op in ("*", "/"):
        if a is FREE or b is FREE:
            return FREE
        return a * b if op == "*" else a / b
    raise ValueError(f"unknown op {op!r}")


def infer_unit(e: Expr, units: Sequence[Dim]) -> Unit:
    """Unit of ``e`` given the inputs' units (FREE when a parameter can set it); raises UnitMismatch."""
    if e.op == "x":
        return units[e.index]
    if e.op == "c":
        return FREE
    if not e.has_input:
        raise UnitMismatch("parameter-only subtree")
    return combine_units(e.op, *(infer_unit(c, units) for c in e.children))


def type_checks(e: Expr, units: Sequence[Dim]) -> bool:
    try:
        infer_unit(e, units)
    except UnitMismatch:
        return False
    return e.has_input


def to_sympy(e: Expr, names: Sequence[str], params: Sequence[float] | None = None) -> sympy.Expr:
    """Sympy expression; parameters are symbols c0, c1, ... (DFS order) or the given values."""
    counter = iter(range(e.n_params))
    syms = [sympy.Symbol(n, real=True) for n in names]

    def go(n: Expr) -> sympy.Expr:
        if n.op == "x":
            return syms[n.index]
        if n.op == "c":
            j = next(counter)
            return sympy.Symbol(f"c{j}", real=True) if params is None else sympy.Float(float(params[j]), 4)
        args = [go(c) for c in n.children]
        if n.op == "sin":
            return sympy.sin(args[0])
        if n.op == "cos":
            return sympy.cos(args[0])
        if n.op == "sq":
            return args[0] ** 2
        a, b = args
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[n.op]

    return go(e)


def parameter_units(e: Expr, units: Sequence[Dim]) -> tuple[Unit, list[Dim]]:
    """(formula unit, one consistent unit per parameter in DFS order; free choices dimensionless).

    The formula unit is FREE when an overall parameter factor can give it any unit.
    """
    n = e.n_params
    syms = [[sympy.Symbol(f"u{j}_{b}") for b in range(3)] for j in range(n)]
    counter = iter(range(n))
    eqs: list[sympy.Expr] = []

    def go(node: Expr) -> list[sympy.Expr]:  # affine exponent forms [3]
        if node.op == "x":
            return [sympy.Rational(v.numerator, v.denominator) for v in units[node.index].vec]
        if node.op == "c":
            return list(syms[next(counter)])
        ch = [go(c) for c in node.children]
        if node.op in ("sin", "cos"):
            eqs.extend(ch[0])
            return [sympy.Integer(0)] * 3
        if node.op == "sq":
            return [2 * v for v in ch[0]]
        a, b = ch
        if node.op in ("+", "-"):
            eqs.extend(x - y for x, y in zip(a, b))
            return a
        return [x + y for x, y in zip(a, b)] if node.op == "*" else [x - y for x, y in zip(a, b)]

    root = go(e)
    flat = [s for row in syms for s in row]
    eqs = [q for q in (sympy.expand(q) for q in eqs) if q != 0]
    if any(not q.free_symbols for q in eqs):
        raise UnitMismatch(f"{e.key} does not type-check")
    sol = sympy.solve(eqs, flat, dict=True) if eqs else [{}]
    if not sol:
        raise UnitMismatch(f"no parameter units make {e.key} type-check")
    zero = {s: 0 for s in flat}
    sub = {k: v.subs(zero) for k, v in sol[0].items()}
    sub.update({s: 0 for s in flat if s not in sub})
    pu = [Dim(*(Fraction(str(sympy.nsimplify(v.subs(sub)))) for v in row)) for row in syms]
    free = any(v.free_symbols - set(sol[0]) for v in (r.subs(sol[0]) for r in root))
    ru = FREE if free else Dim(*(Fraction(str(sympy.nsimplify(v.subs(sub)))) for v in root))
    return ru, pu


__all__ = [
    "BINARY", "COMMUTATIVE", "FREE", "UNARY", "Expr", "Input", "Parameter", "Unit", "UnitMismatch",
    "binary", "combine_units", "infer_unit", "parameter_units", "to_sympy", "type_checks", "unary",
]
