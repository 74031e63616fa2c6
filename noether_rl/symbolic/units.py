"""Physical dimensions as exponent vectors over the base dimensions (M, L, T).

A :class:`Dim` is an immutable triple of exponents, e.g. momentum ``M*L/T`` is ``Dim(1, 1, -1)``.
Inputs carry integer exponents (what the parser accepts); a fitted Parameter may need rational ones
(``sqrt(k/m)``), so exponents are :class:`fractions.Fraction`.

Grammar accepted by :func:`parse_dim` (whitespace ignored)::

    dim    := "1" | factor (("*" | "/") factor)*
    factor := base (("^" | "**") ["-"] integer)?
    base   := "M" | "L" | "T"

and by :func:`parse_units`: ``name=dim`` items separated by commas, e.g. ``"q=L, p=M*L/T"``.
Anything else raises :class:`noether_rl.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from noether_rl.errors import UserError

BASES = ("M", "L", "T")


@dataclass(frozen=True)
class Dim:
    """Exponents of mass, length and time."""

    m: Fraction = Fraction(0)
    l: Fraction = Fraction(0)  # noqa: E741 - the base dimension is called L
    t: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        for name in ("m", "l", "t"):
            object.__setattr__(self, name, Fraction(getattr(self, name)))

    @property
    def vec(self) -> tuple[Fraction, Fraction, Fraction]:
        return (self.m, self.l, self.t)

    @property
    def dimensionless(self) -> bool:
        return self.m == 0 and self.l == 0 and self.t == 0

    def __mul__(self, other: Dim) -> Dim:
        return Dim(self.m + other.m, self.l + other.l, self.t + other.t)

    def __truediv__(self, other: Dim) -> Dim:
        return Dim(self.m - other.m, self.l - other.l, self.t - other.t)

    def __pow__(self, k: int | Fraction) -> Dim:
        return Dim(self.m * k, self.l * k, self.t * k)

    def __str__(self) -> str:
        num, den = [], []
        for base, e in zip(BASES, self.vec):
            if e == 0:
                continue
            a = abs(e)
            s = base if a == 1 else f"{base}^{a}" if a.denominator == 1 else f"{base}^({a})"
            (num if e > 0 else den).append(s)
        if not num and not den:
            return "1"
        out = "*".join(num) if num else "1"
        if den:
            out += "/" + (den[0] if len(den) == 1 else "(" + "*".join(den) + ")")
        return out


DIMENSIONLESS = Dim()
_BASE = {"M": Dim(1, 0, 0), "L": Dim(0, 1, 0), "T": Dim(0, 0, 1)}
_FACTOR = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)(?:(?:\^|\*\*)(-?\d+))?$")


def parse_dim(text: str) -> Dim:
    """Parse one dimension such as ``"M*L^2/T"`` (see the module docstring for the grammar)."""
    s = re.sub(r"\s+", "", text)
    if s == "1":
        return DIMENSIONLESS
    if not s:
        raise UserError("empty unit; write e.g. 'L', 'M*L/T', 'M*L^2/T' or '1' for dimensionless")
    # split on * and / but not on the ** power operator
    tokens = re.split(r"(?<!\*)([*/])(?!\*)", s.replace("**", "^"))
    out = DIMENSIONLESS
    sign = 1
    for i, tok in enumerate(tokens):
        if i % 2 == 1:
            sign = 1 if tok == "*" else -1
            continue
        if tok == "1":  # "1/T"
            continue
        m = _FACTOR.match(tok)
        if m is None or m.group(1) not in _BASE:
            raise UserError(
                f"cannot parse unit {text!r} at {tok!r}: use products, quotients and integer powers of "
                "M, L, T (e.g. 'M*L^2/T'), or '1' for dimensionless"
            )
        power = int(m.group(2)) if m.group(2) is not None else 1
        out = out * (_BASE[m.group(1)] ** (sign * power))
    return out


def parse_units(text: str) -> dict[str, Dim]:
    """Parse ``"q=L, p=M*L/T"`` into an ordered name -> :class:`Dim` mapping."""
    items = [it.strip() for it in text.split(",")]
    if not text.strip() or any(not it for it in items):
        raise UserError(f"cannot parse units {text!r}: write 'name=unit' items separated by commas, e.g. 'q=L, p=M*L/T'")
    out: dict[str, Dim] = {}
    for it in items:
        if it.count("=") != 1:
            raise UserError(f"cannot parse units item {it!r}: write 'name=unit', e.g. 'p=M*L/T'")
        name, dim = (s.strip() for s in it.split("="))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", name):
            raise UserError(f"bad input name {name!r} in units {text!r}: use a letter followed by letters/digits")
        if name in out:
            raise UserError(f"input {name!r} is given units twice in {text!r}")
        out[name] = parse_dim(dim)
    return out


def format_units(units: dict[str, Dim]) -> str:
    return ", ".join(f"{k}={v}" for k, v in units.items())


__all__ = ["BASES", "DIMENSIONLESS", "Dim", "format_units", "parse_dim", "parse_units"]
