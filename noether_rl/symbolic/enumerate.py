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

Nothing else is pruned by this count (no associativity, no ``P*(P*q)`` merging).
:func:`drop_parameter_redundant` then removes formulas equivalent to a simpler one for every parameter
value, before fitting; observationally equivalent fitted formulas are removed after the fit
(:mod:`noether_rl.symbolic.fit`).

Counts for ``max_size=7`` (all seven operations, parameters on; rules 1-3 / + rule 4 /
after :func:`drop_parameter_redundant`), next to the paper's "depth 7" counts:

=================  ====================  ======  ======  ======  =======
system             units                 1-3     1-4     pruned  paper
=================  ====================  ======  ======  ======  =======
pendulum           q=1, p=M*L^2/T        33,869  33,171  27,486  41,460
spring             q=L, p=M*L/T          13,603  12,984   9,835  72,372
real pendulum      q=1, p=1/T            33,869  33,171  27,486  --
both dimensionless q=1, p=1              82,106  81,290  71,206  --
=================  ====================  ======  ======  ======  =======

The paper does not state its counting rule or the units it gave the spring's inputs; that its spring
count is the larger one suggests fewer unit restrictions there (with both inputs dimensionless we get
81,290).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

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


def eval_numpy(e: Expr, x: np.ndarray, params: np.ndarray) -> np.ndarray:
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
    if cfg.constant_check and cands:
        from noether_rl.symbolic.program import compile_programs, evaluate  # the batched interpreter

        rng = np.random.default_rng(cfg.seed)
        x = torch.as_tensor(rng.normal(size=(64, len(units))) * 1.5)
        prog = compile_programs([c.expr for c in cands], cfg.max_size)
        varies = torch.zeros(len(cands), dtype=torch.bool)
        for _ in range(2):
            theta = torch.as_tensor(rng.normal(size=(len(cands), max(1, cfg.max_size))) + 0.5)
            v = evaluate(prog, x, theta)
            finite = torch.isfinite(v).all(1)
            spread = v.std(1) > 1e-9 * (1.0 + v.mean(1).abs())
            varies |= ~finite | spread
        cands = [c for c, k in zip(cands, varies.tolist()) if k]
    return cands


_SCALE = ("*", "/")
_SHIFT = ("+", "-")


def _family(op: str) -> str:
    return "scale" if op in _SCALE else "shift" if op in _SHIFT else ""


def _param_redundant(e: Expr, root: bool = True) -> bool:
    if root and e.op in ("*", "+", "-") and any(c.op == "c" for c in e.children):
        return True  # c*f, c+f, f-c, c-f: same conservation as f (the measure is scale/offset free)
    if root and e.op == "/" and e.children[1].op == "c":
        return True  # f/c
    if e.op in _SCALE + _SHIFT:
        a, b = e.children
        for p, g in ((a, b), (b, a)):
            # c1 op (c2 op' g) with op, op' in the same family (both scaling or both shifting) == c op'' g
            if p.op == "c" and g.op in _SCALE + _SHIFT and _family(g.op) == _family(e.op) and \
                    any(ch.op == "c" for ch in g.children):
                return True
    return any(_param_redundant(c, False) for c in e.children)


def drop_parameter_redundant(cands: Sequence[Candidate]) -> list[Candidate]:
    """Remove formulas equivalent to a simpler one for *every* parameter value, before any fitting:

    - an overall parameter scale or offset at the root (``c*f``, ``f/c``, ``c+f``, ``f-c``, ``c-f``):
      conservation is measured scale- and offset-free, so these are ``f``;
    - two parameters merged through the same kind of operation (``c1*(c2*g)``, ``c1/(g*c2)``,
      ``c1+(g-c2)``): one parameter does the same.

    (``c/f`` is kept: ``1/f`` is not an affine function of ``f``.)
    """
    return [c for c in cands if not _param_redundant(c.expr)]


def count_formulas(units: Sequence[Dim], cfg: EnumerationConfig = EnumerationConfig()) -> dict[int, int]:
    """Number of enumerated formulas per size (sizes 1..max_size)."""
    counts = {s: 0 for s in range(1, cfg.max_size + 1)}
    for c in enumerate_formulas(units, cfg):
        counts[c.expr.size] += 1
    return counts


__all__ = ["Candidate", "EnumerationConfig", "count_formulas", "drop_parameter_redundant", "enumerate_formulas"]
