"""Hamiltonian state-space systems and their trajectories (the set-up of Greydanus et al. 2019, HNN).

A :class:`System` carries what the models and formula discovery need: state names with physical
units (a string in the grammar ``"q=L, p=M*L/T"`` that the symbolic helper parses: products,
quotients and integer powers of M, L, T, ``1`` for dimensionless), the true Hamiltonian, its
vector field and a sampler of initial states. Constants are arguments, never literals.

Conventions (``dq/dt = dH/dp``, ``dp/dt = -dH/dq``):

- spring: ``H = k q^2 / 2 + p^2 / (2 m)``. ``convention="hnn"`` (default) is HNN's code,
  ``k = 2, m = 1/2`` so ``H = q^2 + p^2``; ``convention="paper"`` is the Noether paper's
  ``H = (q^2 + p^2) / 2`` (``k = m = 1``). Explicit ``k``/``m`` override either.
- pendulum: ``H = p^2 / (2 m l^2) + m g l (1 - cos q)`` with ``p`` the angular momentum
  (units ``M*L^2/T``). HNN's code uses ``H = 3 (1 - cos q) + p^2``; their paper writes it as
  ``2mgl(1 - cos q) + l^2 p^2 / (2m)`` with ``m = 1/2, l = 1, g = 3``, which is not dimensionally
  an energy. We keep the physical form and reproduce HNN's numbers with ``m = 1/2, l = 1, g = 6``
  (``1/(2 m l^2) = 1``, ``m g l = 3``): the same data, correct units.

HNN's protocol (:class:`GenerateConfig`): 50 trajectories, ``t`` in [0, 3] with 30 (spring) or 45
(pendulum) points, initial radius U[0.1, 1] (spring) or U[1.3, 2.3] (pendulum) in the (q, p) plane
in a random direction, ``solve_ivp`` with ``rtol=1e-10``, Gaussian observation noise of std 0.1;
the first 25 trajectories train, the last 25 test. Targets ``dxdt`` are the exact vector field at the
clean states (as in HNN's code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from noether_rl.data.trajectories import Trajectories
from noether_rl.errors import UserError


# The formulas below accept numpy arrays and torch tensors alike (the oracle Noether loss evaluates the
# true H on tensors), without importing torch here.
def _cos(x: Any) -> Any:
    return x.cos() if hasattr(x, "cos") else np.cos(x)


def _sin(x: Any) -> Any:
    return x.sin() if hasattr(x, "sin") else np.sin(x)


def _stack(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np.stack([a, b], -1)
    import torch  # only reached with tensors, i.e. when torch is already imported

    return torch.stack([a, b], -1)


@dataclass(frozen=True)
class System:
    """A 1-degree-of-freedom Hamiltonian system on x = (q, p).

    hamiltonian: x [..., 2] -> [...]; vector_field: x [..., 2] -> dx/dt [..., 2] (numpy, vectorised).
    radius: initial states are drawn at radius U[radius] in the (q, p) plane, uniform direction.
    n_points: samples on ``t_span`` per trajectory (HNN: 30 spring, 45 pendulum).
    params: the constants (for reports and formula discovery tests).
    """

    name: str
    state_names: tuple[str, ...]
    units: str
    hamiltonian: Callable[[np.ndarray], np.ndarray]
    vector_field: Callable[[np.ndarray], np.ndarray]
    radius: tuple[float, float]
    n_points: int
    t_span: tuple[float, float] = (0.0, 3.0)
    params: tuple[tuple[str, float], ...] = ()
    formula: str = ""

    def sample_x0(self, rng: np.random.Generator) -> np.ndarray:
        """One initial state [2]: radius U[radius], direction uniform (HNN's sampler)."""
        r = rng.uniform(*self.radius)
        x = rng.standard_normal(2)
        return x / np.linalg.norm(x) * r


def spring(convention: str = "hnn", *, k: float | None = None, m: float | None = None) -> System:
    """Ideal spring ``H = k q^2/2 + p^2/(2m)`` (see the module docstring for the conventions)."""
    defaults = {"hnn": (2.0, 0.5), "paper": (1.0, 1.0)}
    if convention not in defaults:
        raise UserError(f"unknown spring convention {convention!r}; expected one of {sorted(defaults)}")
    k0, m0 = defaults[convention]
    kk = float(k0 if k is None else k)
    mm = float(m0 if m is None else m)
    if kk <= 0 or mm <= 0:
        raise UserError(f"spring constants must be positive, got k={kk}, m={mm}")

    def H(x: np.ndarray) -> np.ndarray:
        return 0.5 * kk * x[..., 0] ** 2 + x[..., 1] ** 2 / (2 * mm)

    def f(x: np.ndarray) -> np.ndarray:
        return _stack(x[..., 1] / mm, -kk * x[..., 0])

    return System(name="spring", state_names=("q", "p"), units="q=L, p=M*L/T", hamiltonian=H, vector_field=f,
                  radius=(0.1, 1.0), n_points=30, params=(("k", kk), ("m", mm)),
                  formula=f"{kk / 2:g}*q^2 + {1 / (2 * mm):g}*p^2")


def pendulum(*, m: float = 0.5, l: float = 1.0, g: float = 6.0) -> System:  # noqa: E741
    """Ideal pendulum ``H = p^2/(2 m l^2) + m g l (1 - cos q)``; defaults give HNN's ``p^2 + 3(1 - cos q)``."""
    if m <= 0 or l <= 0 or g <= 0:
        raise UserError(f"pendulum constants must be positive, got m={m}, l={l}, g={g}")
    a = 1.0 / (2 * m * l * l)
    b = m * g * l

    def H(x: np.ndarray) -> np.ndarray:
        return a * x[..., 1] ** 2 + b * (1 - _cos(x[..., 0]))

    def f(x: np.ndarray) -> np.ndarray:
        return _stack(2 * a * x[..., 1], -b * _sin(x[..., 0]))

    return System(name="pendulum", state_names=("q", "p"), units="q=1, p=M*L^2/T", hamiltonian=H, vector_field=f,
                  radius=(1.3, 2.3), n_points=45, params=(("m", m), ("l", l), ("g", g)),
                  formula=f"{a:g}*p^2 + {b:g}*(1 - cos(q))")


SYSTEMS: dict[str, Callable[[], System]] = {"spring": spring, "pendulum": pendulum}


def get_system(name: str) -> System:
    """The default system called ``name`` (``spring`` or ``pendulum``)."""
    if name not in SYSTEMS:
        raise UserError(f"unknown system {name!r}; expected one of {sorted(SYSTEMS)}")
    return SYSTEMS[name]()


@dataclass(frozen=True)
class GenerateConfig:
    """HNN's protocol; ``n_points``/``radius`` default to the system's."""

    n_trajectories: int = 50
    noise_std: float = 0.1
    seed: int = 0
    n_points: int | None = None
    rtol: float = 1e-10


def generate(system: System, cfg: GenerateConfig = GenerateConfig()) -> Trajectories:
    """Integrate ``cfg.n_trajectories`` trajectories with ``solve_ivp`` and add observation noise.

    Returns x (noisy) [N, T, 2], x_clean [N, T, 2], dxdt (vector field at the clean states) and t [N, T].
    Deterministic in ``cfg.seed``.
    """
    if cfg.n_trajectories < 1 or cfg.noise_std < 0:
        raise UserError(f"need n_trajectories >= 1 and noise_std >= 0, got {cfg.n_trajectories}, {cfg.noise_std}")
    n = cfg.n_points or system.n_points
    if n < 2:
        raise UserError(f"need at least 2 points per trajectory, got {n}")
    rng = np.random.default_rng(cfg.seed)
    t = np.linspace(system.t_span[0], system.t_span[1], n)
    clean = np.empty((cfg.n_trajectories, n, 2))
    for i in range(cfg.n_trajectories):  # data generation (not a model hot path): one ODE solve each
        x0 = system.sample_x0(rng)
        sol = solve_ivp(lambda _t, y: system.vector_field(y), system.t_span, x0, t_eval=t, rtol=cfg.rtol,
                        atol=1e-12)
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed for {system.name} trajectory {i}: {sol.message}")
        clean[i] = sol.y.T
    x = clean + rng.standard_normal(clean.shape) * cfg.noise_std
    return Trajectories(x=x, t=np.broadcast_to(t, (cfg.n_trajectories, n)).copy(), names=system.state_names,
                        units=system.units, x_clean=clean, dxdt=system.vector_field(clean), system=system.name)


__all__ = ["System", "GenerateConfig", "SYSTEMS", "generate", "get_system", "pendulum", "spring"]
