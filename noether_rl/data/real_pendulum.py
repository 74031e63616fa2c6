"""Loader for the real-pendulum measurements of Schmidt & Lipson (Science 2009), ``real_pend_h_1``.

Format (as used by HNN, Greydanus et al. 2019): plain text, whitespace-separated, one header line
(e.g. ``%o v``), then rows of four numbers: trial index, time t [s], angle o [rad], angular
velocity v [rad/s]. Sampling interval 1/6 s with a few gaps; friction, so energy is not conserved.

The file's licence is unclear: it is read from a path the user gives and never copied into this
repository. Each trial becomes one trajectory of ``(q, p) = (angle, angular velocity)``; with one
trial (the published file) HNN's split is by time: train = the first 80 % of the points, test = the
next 20 % (:func:`time_split`).
"""

from __future__ import annotations

import os

import numpy as np

from noether_rl.data.trajectories import Trajectories
from noether_rl.errors import UserError

UNITS = "q=1, p=1/T"  # angle (dimensionless), angular velocity


def load_real_pendulum(path: str | os.PathLike[str]) -> Trajectories:
    """Read the file at ``path``; one trajectory per trial (all trials must have the same length).

    Validates: a header line, 4 numeric columns, finite values, integral trial ids, strictly increasing
    time within a trial, at least 2 points per trial. Any problem -> one-line :class:`UserError`.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UserError(f"real-pendulum file {p} does not exist (pass --data PATH to the measurements)")
    with open(p, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if not lines:
        raise UserError(f"{p}: empty file; expected a header line and rows 'trial t angle velocity'")
    rows: list[list[float]] = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise UserError(f"{p}:{i}: expected 4 columns (trial t angle velocity), got {len(parts)}")
        try:
            rows.append([float(s) for s in parts])
        except ValueError:
            raise UserError(f"{p}:{i}: not a number in {line.strip()!r}") from None
    if not rows:
        raise UserError(f"{p}: no data rows after the header line")
    a = np.asarray(rows)
    bad = ~np.isfinite(a).all(1)
    if bad.any():
        raise UserError(f"{p}:{int(np.argmax(bad)) + 2}: non-finite value")
    trial = a[:, 0]
    if (trial != np.round(trial)).any():
        raise UserError(f"{p}: the trial column must hold integers")
    xs, ts = [], []
    for k in np.unique(trial):  # a handful of trials at most
        sel = a[trial == k]
        if sel.shape[0] < 2:
            raise UserError(f"{p}: trial {int(k)} has fewer than 2 points")
        if (np.diff(sel[:, 1]) <= 0).any():
            j = int(np.argmax(np.diff(sel[:, 1]) <= 0))
            raise UserError(f"{p}: time is not strictly increasing in trial {int(k)} at t={sel[j + 1, 1]:g}")
        xs.append(sel[:, 2:4])
        ts.append(sel[:, 1])
    if len({len(x) for x in xs}) != 1:
        raise UserError(f"{p}: trials have different lengths {[len(x) for x in xs]}; split the file per trial")
    return Trajectories(x=np.stack(xs), t=np.stack(ts), names=("q", "p"), units=UNITS, system="real_pendulum")


def time_split(traj: Trajectories, train_frac: float = 0.8) -> tuple[Trajectories, Trajectories]:
    """HNN's split: the first ``train_frac`` of each trajectory's points train, the rest test."""
    T = traj.x.shape[1]
    k = int(T * train_frac)
    if not 2 <= k <= T - 2:
        raise UserError(f"time split {train_frac} of {T} points leaves fewer than 2 points on one side")
    return traj.subset(slice(None), slice(0, k)), traj.subset(slice(None), slice(k, T))


def write_real_pendulum_format(path: str | os.PathLike[str], t: np.ndarray, q: np.ndarray, v: np.ndarray,
                               trial: int = 0) -> None:
    """Write one trial in the measurement file's format (synthetic data for tests and demos)."""
    from noether_rl.utils.io import atomic_open

    with atomic_open(path, "w") as f:
        f.write("%o v\n")
        for ti, qi, vi in zip(t, q, v):
            f.write(f"  {float(trial):.16e}  {ti:.16e}  {qi:.16e}  {vi:.16e} \n")


__all__ = ["UNITS", "load_real_pendulum", "time_split", "write_real_pendulum_format"]
