"""The one on-disk trajectory format for state-space data (``.npz``).

Arrays (``N`` trajectories, ``T`` time points, ``D`` state dimensions):

- ``x``        float ``[N, T, D]`` observed states (required, finite)
- ``t``        float ``[N, T]`` or ``[T]`` times, strictly increasing along T; or
- ``dt``       float scalar time step (then ``t = dt * arange(T)``); one of ``t``/``dt`` is required
- ``x_clean``  float ``[N, T, D]`` noise-free states (optional; evaluation targets when present)
- ``dxdt``     float ``[N, T, D]`` exact time derivatives (optional; training targets when present,
               otherwise finite differences of ``x`` are used)
- ``names``    str ``[D]`` state names (optional; default ``x0, x1, ...``)
- ``units``    str scalar, ``"q=L, p=M*L/T"`` (optional; parsed by the formula-discovery code)
- ``system``   str scalar (optional): where the data came from

Writes are atomic; reads validate everything and raise a one-line :class:`UserError`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from noether_rl.errors import UserError
from noether_rl.utils.io import atomic_open


@dataclass(frozen=True)
class Trajectories:
    """In-memory form of the ``.npz`` format (see the module docstring). ``t`` is always ``[N, T]``."""

    x: np.ndarray
    t: np.ndarray
    names: tuple[str, ...]
    units: str = ""
    x_clean: np.ndarray | None = None
    dxdt: np.ndarray | None = None
    system: str = ""

    def __post_init__(self) -> None:
        _validate(self.x, self.t, self.names, self.x_clean, self.dxdt, "trajectories")

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[2])

    def subset(self, idx: np.ndarray | list[int] | slice, time: slice = slice(None)) -> Trajectories:
        """Trajectories ``idx`` restricted to time points ``time`` (e.g. HNN's 80 %/20 % time split)."""
        def s(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[idx][:, time])

        return Trajectories(x=s(self.x), t=s(self.t), names=self.names, units=self.units, x_clean=s(self.x_clean),
                            dxdt=s(self.dxdt), system=self.system)

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Training pairs ``(x [M, D], dx/dt [M, D])`` over all trajectories.

        With ``dxdt`` stored: every point with its exact derivative. Otherwise forward finite
        differences ``(x[t+1] - x[t]) / (t[t+1] - t[t])``, only across steps of the most common spacing
        (a gap in the time stamps is not a derivative).
        """
        if self.dxdt is not None:
            return self.x.reshape(-1, self.dim), self.dxdt.reshape(-1, self.dim)
        h = np.diff(self.t, axis=1)  # [N, T-1]
        nominal = self.nominal_dt()
        keep = np.abs(h - nominal) <= 1e-3 * nominal
        fd = np.diff(self.x, axis=1) / h[..., None]
        return self.x[:, :-1][keep], fd[keep]

    def nominal_dt(self) -> float:
        """The most common time step (the data's sampling interval)."""
        h = np.diff(self.t, axis=1).ravel()
        vals, counts = np.unique(np.round(h, 9), return_counts=True)
        return float(vals[np.argmax(counts)])


def _validate(x: np.ndarray, t: np.ndarray, names: tuple[str, ...], x_clean: np.ndarray | None,
              dxdt: np.ndarray | None, where: str) -> None:
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 2 or x.shape[2] < 1:
        raise UserError(f"{where}: x must have shape [N, T, D] with N >= 1, T >= 2, D >= 1, got {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise UserError(f"{where}: x must be finite floats ({int((~np.isfinite(x)).sum())} non-finite values)")
    if t.shape != x.shape[:2]:
        raise UserError(f"{where}: t must have shape {list(x.shape[:2])} (or [T]), got {list(t.shape)}")
    if not np.isfinite(t).all() or (np.diff(t, axis=1) <= 0).any():
        raise UserError(f"{where}: times must be finite and strictly increasing within each trajectory")
    if len(names) != x.shape[2]:
        raise UserError(f"{where}: {len(names)} state names for D={x.shape[2]} dimensions")
    for key, a in (("x_clean", x_clean), ("dxdt", dxdt)):
        if a is None:
            continue
        if a.shape != x.shape:
            raise UserError(f"{where}: {key} must have the shape of x {list(x.shape)}, got {list(a.shape)}")
        if not np.isfinite(a).all():
            raise UserError(f"{where}: {key} has {int((~np.isfinite(a)).sum())} non-finite values")


def save_trajectories(path: str | os.PathLike[str], traj: Trajectories) -> None:
    """Write ``traj`` to ``path`` (``.npz``) atomically."""
    arrays: dict[str, np.ndarray] = {
        "x": traj.x.astype(np.float64), "t": traj.t.astype(np.float64),
        "names": np.array(traj.names, dtype=str), "units": np.array(traj.units, dtype=str),
        "system": np.array(traj.system, dtype=str),
    }
    if traj.x_clean is not None:
        arrays["x_clean"] = traj.x_clean.astype(np.float64)
    if traj.dxdt is not None:
        arrays["dxdt"] = traj.dxdt.astype(np.float64)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_trajectories(path: str | os.PathLike[str]) -> Trajectories:
    """Read and validate a trajectory ``.npz`` (see the module docstring); :class:`UserError` on any problem."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UserError(f"trajectory file {p} does not exist")
    objects = None  # the first array that holds Python objects (never unpickled)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {}
            for k in z.files:
                try:
                    data[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    objects = k
                    break
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{p}: not a readable .npz trajectory file ({type(e).__name__}: {e})") from None
    if objects is not None:
        raise UserError(f"{p}: array '{objects}' holds Python objects (dtype=object), which are not loaded; save it "
                        f"as a plain array, e.g. np.array({objects}, dtype=str) for names or dtype=float for numbers")
    if "x" not in data:
        raise UserError(f"{p}: missing array 'x' [N, T, D]")
    x = np.asarray(data["x"])
    if x.ndim != 3:
        raise UserError(f"{p}: x must have shape [N, T, D], got {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{p}: x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    N, T, D = x.shape
    if "t" in data:
        t = np.asarray(data["t"], dtype=np.float64) if np.issubdtype(data["t"].dtype, np.number) else None
        if t is None:
            raise UserError(f"{p}: t must be numeric")
        if t.ndim == 1 and t.shape[0] == T:
            t = np.broadcast_to(t, (N, T)).copy()
    elif "dt" in data:
        dt = np.asarray(data["dt"])
        if dt.size != 1 or not np.issubdtype(dt.dtype, np.number) or not np.isfinite(dt).all() or float(dt) <= 0:
            raise UserError(f"{p}: dt must be one positive finite number")
        t = np.broadcast_to(float(dt) * np.arange(T), (N, T)).copy()
    else:
        raise UserError(f"{p}: needs 't' ([T] or [N, T]) or 'dt' (a scalar)")
    names = tuple(str(s) for s in np.atleast_1d(data["names"])) if "names" in data else \
        tuple(f"x{i}" for i in range(D))
    units = str(data["units"]) if "units" in data else ""
    system = str(data["system"]) if "system" in data else ""
    opt = {k: (np.asarray(data[k], dtype=np.float64) if k in data else None) for k in ("x_clean", "dxdt")}
    for k in ("x_clean", "dxdt"):
        if k in data and not np.issubdtype(data[k].dtype, np.number):
            raise UserError(f"{p}: {k} must be numeric")
    _validate(x, t, names, opt["x_clean"], opt["dxdt"], p)
    return Trajectories(x=x, t=t, names=names, units=units, x_clean=opt["x_clean"], dxdt=opt["dxdt"], system=system)


__all__ = ["Trajectories", "load_trajectories", "save_trajectories"]
