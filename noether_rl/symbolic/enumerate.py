"""Enumerate every unit-valid formula of the DSL up to a given size.

Counting rule (documented because the paper's "depth 7" is ambiguous): the *size* of a formula is
its number of nodes (leaves Input/Parameter, unary sin/cos/sq, binary + - * /), and we enumerate all
formulas of size 1..``max_size`` that

1. type-check (:mod:`noether_rl.symbolic.dsl`: + and - only on equal units, sin/cos only of
   dimensionless arguments, parameters take whatever units make this work);
2. contain no parameter-only subtree (``P + P``, ``sin(P)``, ``P * P``; a Parameter leaf is fine as
   a child of a binary op) and are not a lone Parameter;
3. are canonical under commutativity of + and * (the children of a commutative node are ordered by
   their canonical key, so ``q*p`` and ``p*q`` count once; ``q+q`` is kept);
4. are not constant by construction: ``a - a`` and ``a / a`` are dropped syntactically, and the rest
   (``P*q/q``, ``sq(sin q) + sq(cos q)``) numerically -- a formula whose value does not change over 64
   random inputs for two random parameter draws is dropped.

Nothing else is pruned (no associativity, no ``P*(P*q)`` merging); observationally equivalent
formulas are removed later, after their parameters are fitted (:mod:`noether_rl.symbolic.fit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from noether_rl.symbolic.dsl import BINARY, COMMUTATIVE, FREE, UNARY, Expr, Unit, UnitMismatch, combine_units
from noether_rl.symbolic.units import Dim


@dataclass(frozen=True)
class EnumerationConfig:
    max_size: int = 7
    unary: tuple[str, ...] = UNARY
    binary: tuple[str, ...] = BINARY
    parameters: bool = True
    constant_check: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    expr: Expr
    unit: Unit  # FREE (None) when a parameter factor sets the formula's unit


def _eval_np(e: Expr, x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Reference numpy evaluation; x [N, D], params [>= n_params] in DFS order."""
    it = iter(params)

    def go(n: Expr) -> np.ndarray:
        if n.op == "x":
            return x[:, n.index]
        if n.op == "c":
            return np.full(x.shape[0], next(it))
        a = [go(c) for c in n.children]
        if n.op == "sin":
            return np.sin(a[0])
        if n.op == "cos":
            return np.cos(a[0])
        if n.op == "sq":
            return a[0] ** 2
        with np.errstate(all="ignore"):
            return {"+": a[0] + a[1], "-": a[0] - a[1], "*": a[0] * a[1], "/": a[0] / a[1]}[n.op]

    return go(e)


def _constant(e: Expr, x: np.ndarray, draws: np.ndarray) -> bool:
    for params in draws:
        v = _eval_np(e, x, params)
        if not np.all(np.isfinite(v)):
            return False
        if np.std(v) > 1e-9 * (1.0 + np.abs(np.mean(v))):
            return False
    return True


def enumerate_formulas(units: Sequence[Dim], cfg: EnumerationConfig = EnumerationConfig()) -> list[Candidate]:
    """All formulas of size <= ``cfg.max_size`` over inputs with the given units (rules in the module doc)."""
    if cfg.max_size < 1:
        raise ValueError("max_size must be >= 1")
    # by_size[s]: (expr, unit, has_input) of exactly size s, param-only entries only as the P leaf
    by_size: list[list[tuple[Expr, Unit, bool]]] = [[] for _ in range(cfg.max_size + 1)]
    by_size[1] = [(Expr("x", index=i), u, True) for i, u in enumerate(units)]
    if cfg.parameters:
        by_size[1].append((Expr("c"), FREE, False))
    for s in range(2, cfg.max_size + 1):
        out = by_size[s]
        for op in cfg.unary:
            for a, ua, ia in by_size[s - 1]:
                if not ia:
                    continue
                try:
                    out.append((Expr(op, (a,)), combine_units(op, ua), True))
                except UnitMismatch:
                    pass
        for op in cfg.binary:
            for sa in range(1, s - 1):
                sb = s - 1 - sa
                for a, ua, ia in by_size[sa]:
                    for b, ub, ib in by_size[sb]:
                        if not (ia or ib):
                            continue
                        if op in COMMUTATIVE and a.key > b.key:
                            continue
                        if op in ("-", "/") and a.key == b.key:
                            continue  # constant by construction
                        try:
                            out.append((Expr(op, (a, b)), combine_units(op, ua, ub), True))
                        except UnitMismatch:
                            pass
    cands = [Candidate(e, u) for level in by_size for e, u, has_in in level if has_in]
    if cfg.constant_check:
        rng = np.random.default_rng(cfg.seed)
        x = rng.normal(size=(64, len(units))) * 1.5
        draws = rng.normal(size=(2, cfg.max_size)) + 0.5
        cands = [c for c in cands if not _constant(c.expr, x, draws)]
    return cands


def count_formulas(units: Sequence[Dim], cfg: EnumerationConfig = EnumerationConfig()) -> dict[int, int]:
    """Number of enumerated formulas per size (sizes 1..max_size)."""
    counts = {s: 0 for s in range(1, cfg.max_size + 1)}
    for c in enumerate_formulas(units, cfg):
        counts[c.expr.size] += 1
    return counts


__all__ = ["Candidate", "EnumerationConfig", "count_formulas", "enumerate_formulas"]
