"""Units, DSL type checking and enumeration counts (noether_rl.symbolic)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from noether_rl.errors import UserError
from noether_rl.symbolic.dsl import (
    FREE,
    Input,
    Parameter,
    binary,
    infer_unit,
    parameter_units,
    to_sympy,
    type_checks,
    unary,
)
from noether_rl.symbolic.enumerate import EnumerationConfig, count_formulas, enumerate_formulas
from noether_rl.symbolic.units import DIMENSIONLESS, Dim, parse_dim, parse_units

L, MLT, ML2T = Dim(0, 1, 0), Dim(1, 1, -1), Dim(1, 2, -1)


@pytest.mark.parametrize(
    "text, dim",
    [("1", DIMENSIONLESS), ("L", L), ("M*L/T", MLT), ("M*L^2/T", ML2T), ("M * L**2 / T", ML2T),
     ("1/T", Dim(0, 0, -1)), ("T^-2", Dim(0, 0, -2)), ("L/T/T", Dim(0, 1, -2))],
)
def test_parse_dim(text: str, dim: Dim) -> None:
    assert parse_dim(text) == dim


@pytest.mark.parametrize("bad", ["X", "L^a", "M+L", "", "L^2.5", "kg", "(M*L)/T", "q=L"])
def test_parse_dim_rejects(bad: str) -> None:
    with pytest.raises(UserError) as e:
        parse_dim(bad)
    assert "\n" not in str(e.value)


def test_parse_units() -> None:
    assert parse_units("q=L, p=M*L/T") == {"q": L, "p": MLT}
    for bad in ["q=L,", "q=L, q=T", "q", "q=L=M", "2q=L", ""]:
        with pytest.raises(UserError):
            parse_units(bad)


def test_unit_checking_accepts_and_rejects() -> None:
    q, p, c = Input(0), Input(1), Parameter
    spring = [L, MLT]
    pend = [DIMENSIONLESS, ML2T]
    # + only on equal units; a parameter factor makes it work
    assert not type_checks(binary("+", unary("sq", q), unary("sq", p)), spring)
    assert type_checks(binary("+", unary("sq", q), binary("*", c(), unary("sq", p))), spring)
    assert infer_unit(binary("+", unary("sq", q), binary("*", c(), unary("sq", p))), spring) == L ** 2
    # sin/cos only of dimensionless arguments
    assert type_checks(unary("cos", q), pend)
    assert not type_checks(unary("cos", p), pend)
    assert not type_checks(unary("cos", q), spring)
    assert type_checks(unary("cos", binary("*", c(), q)), spring)
    assert not type_checks(unary("sin", binary("+", c(), p)), pend)  # P takes p's unit; sin(p-unit) invalid
    # parameter-only subtrees and a lone parameter are rejected
    assert not type_checks(binary("+", q, binary("*", c(), c())), pend)
    assert not type_checks(c(), pend)
    assert infer_unit(binary("*", c(), p), pend) is FREE
    # the inferred parameter unit of p^2 - c cos q (pendulum) is that of p^2
    ru, pu = parameter_units(binary("-", unary("sq", p), binary("*", c(), unary("cos", q))), pend)
    assert ru == ML2T ** 2 and pu == [ML2T ** 2]
    ru, pu = parameter_units(unary("cos", binary("*", c(), q)), spring)
    assert ru == DIMENSIONLESS and pu == [Dim(0, -1, 0)]
    ru, pu = parameter_units(binary("*", c(), binary("+", q, q)), spring)
    assert ru is FREE
    assert str(to_sympy(binary("-", unary("sq", p), binary("*", c(), unary("cos", q))), ["q", "p"], [2.5])) == \
        "p**2 - 2.5*cos(q)"
    assert Fraction(1, 2) * 2 == 1


def test_enumeration_hand_count_tiny_grammar() -> None:
    # one dimensionless input x, ops {+, *}, parameters, size <= 3:
    # size 1: x;  size 3: x+x, x*x, x+P, x*P  (P+P, P*P parameter-only; P+x, P*x commuted away)
    cfg = EnumerationConfig(max_size=3, unary=(), binary=("+", "*"))
    assert count_formulas([DIMENSIONLESS], cfg) == {1: 1, 2: 0, 3: 4}
    # adding - and /: x-x, x/x constant; x-P, P-x, x/P, P/x new -> 8
    cfg = EnumerationConfig(max_size=3, unary=(), binary=("+", "-", "*", "/"))
    assert count_formulas([DIMENSIONLESS], cfg) == {1: 1, 2: 0, 3: 8}
    # with units: q in L, p in M*L/T, no parameters, {+, sq}: q, p, sq q, sq p, sq sq q, sq sq p, q+q, p+p
    cfg = EnumerationConfig(max_size=3, unary=("sq",), binary=("+",), parameters=False)
    assert count_formulas([L, MLT], cfg) == {1: 2, 2: 2, 3: 4}
    # sin/cos of a dimensioned input are rejected; of a dimensionless one accepted
    cfg = EnumerationConfig(max_size=2, unary=("sin", "cos"), binary=(), parameters=False)
    assert count_formulas([L, DIMENSIONLESS], cfg) == {1: 2, 2: 2}


def test_enumeration_drops_constants_by_construction() -> None:
    cfg = EnumerationConfig(max_size=7, unary=("sin", "cos", "sq"), binary=("+", "/", "*"), parameters=False)
    keys = {c.expr.key for c in enumerate_formulas([DIMENSIONLESS], cfg)}
    assert "(sq(cos(x0))+sq(sin(x0)))" not in keys and "(x0/x0)" not in keys
    assert "(sq(cos(x0))+sq(x0))" in keys
    cfg = EnumerationConfig(max_size=5, unary=(), binary=("*", "/"))
    keys = {c.expr.key for c in enumerate_formulas([L], cfg)}
    assert "((c*x0)/x0)" not in keys and "((c*x0)/c)" in keys


def test_enumeration_contains_energy_forms_and_is_canonical() -> None:
    pend = enumerate_formulas([DIMENSIONLESS, ML2T], EnumerationConfig(max_size=7))
    keys = [c.expr.key for c in pend]
    assert len(keys) == len(set(keys))
    assert "(sq(x1)-(c*cos(x0)))" in keys or "((c*cos(x0))-sq(x1))" in keys
    spring = enumerate_formulas([L, MLT], EnumerationConfig(max_size=7))
    skeys = {c.expr.key for c in spring}
    assert "((c*sq(x1))+sq(x0))" in skeys or "(sq(x0)+(c*sq(x1)))" in skeys
    assert not any("sin(x0)" in k or "cos(x1)" in k for k in skeys)


def test_drop_parameter_redundant() -> None:
    from noether_rl.symbolic.enumerate import Candidate, drop_parameter_redundant

    q, p, c = Input(0), Input(1), Parameter
    energy = binary("-", unary("sq", p), binary("*", c(), unary("cos", q)))
    keep = [energy, binary("/", c(), q), unary("cos", binary("*", c(), q)), binary("+", q, binary("*", c(), p))]
    drop = [binary("*", c(), energy), binary("/", energy, c()), binary("+", c(), energy), binary("-", energy, c()),
            binary("-", unary("sq", p), binary("*", c(), binary("*", c(), unary("cos", q)))),
            binary("+", q, binary("+", c(), binary("-", p, c())))]
    out = drop_parameter_redundant([Candidate(e, None) for e in keep + drop])
    assert [o.expr.key for o in out] == [e.key for e in keep]


def test_validation_split_and_rollout_windows() -> None:
    import numpy as np

    from noether_rl.data.trajectories import Trajectories
    from noether_rl.symbolic.pipeline import validation_split
    from noether_rl.symbolic.search import rollout_windows

    x = np.random.default_rng(0).normal(size=(10, 12, 2))
    t = np.tile(np.arange(12.0), (10, 1))
    tr = Trajectories(x=x, t=t, names=("q", "p"))
    fit, val, _ = validation_split(tr, 0.2)
    assert fit.n == 8 and val.n == 2 and np.array_equal(val.x, x[8:])
    one = tr.subset(slice(0, 1))
    fit, val, _ = validation_split(one, 0.25)
    assert fit.x.shape[1] == 9 and val.x.shape[1] == 3
    assert np.array_equal(np.concatenate([fit.x, val.x], 1), one.x)
    with pytest.raises(UserError, match="too short"):
        validation_split(one.subset(slice(None), slice(0, 6)), 0.2)
    xw, tw = rollout_windows(x[:2], t[:2], 4)
    assert xw.shape == (2 * 8, 5, 2) and tw.shape == (16, 5)
    assert np.array_equal(xw[9], x[1, 1:6]) and np.array_equal(tw[3], t[0, 3:8])
    xw, _ = rollout_windows(x[:2], t[:2], 50)  # shorter trajectories: whole
    assert xw.shape == (2, 12, 2)
