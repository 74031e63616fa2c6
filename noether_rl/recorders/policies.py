"""Scripted pendulum policies.

A policy is a callable ``policy(obs, state, rng) -> action`` with ``state = float32 [2]`` the true
(theta, theta_dot) (theta in [-pi, pi), 0 = upright) and ``action`` float32 ``[1]`` (torque in [-2, 2]).
``POLICIES`` maps a name to a factory ``factory(rng) -> policy``, called once per episode (so per-episode
parameters such as the sine's frequency are drawn from the episode's rng).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Policy = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
PolicyFactory = Callable[[np.random.Generator], Policy]

MAX_TORQUE = 2.0
DT = 0.05
# Pendulum-v1 dynamics: theta_ddot = A sin(theta) + B u  (g=10, m=l=1)
A = 3 * 10.0 / 2
B = 3.0
# energy E = 0.5 theta_dot^2 + A cos(theta), dE/dt = B u theta_dot; upright at rest: E = A
E_TOP = A
# balancing gains (PD / LQR-like on the linearisation around upright): closed loop w^2 = B*KP - A
KP, KD = 10.0, 2.0
BALANCE_ANGLE = 0.6  # rad; balance when close to upright and the energy is about right
BALANCE_ENERGY_TOL = 4.0


def _action(u: float) -> np.ndarray:
    return np.array([min(MAX_TORQUE, max(-MAX_TORQUE, u))], dtype=np.float32)


def swingup_torque(theta: float, theta_dot: float) -> float:
    """Energy-pumping swing-up far from upright, PD balance near it. Returns the (clipped) torque."""
    energy = 0.5 * theta_dot**2 + A * math.cos(theta)
    if abs(theta) < BALANCE_ANGLE and abs(energy - E_TOP) < BALANCE_ENERGY_TOL:
        return max(-MAX_TORQUE, min(MAX_TORQUE, -(KP * theta + KD * theta_dot)))
    direction = theta_dot if abs(theta_dot) > 1e-3 else 1.0  # kick a pendulum at rest
    return MAX_TORQUE * math.copysign(1.0, (E_TOP - energy) * direction)


def make_swingup(rng: np.random.Generator) -> Policy:
    """Energy-pumping swing-up then PD balance near upright (torque clipped to [-2, 2])."""

    def policy(obs: np.ndarray, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _action(swingup_torque(float(state[0]), float(state[1])))

    return policy


def make_random(rng: np.random.Generator) -> Policy:
    """Uniform random torques in [-2, 2]."""

    def policy(obs: np.ndarray, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=1).astype(np.float32)

    return policy


def make_sine(rng: np.random.Generator) -> Policy:
    """``u_t = amp sin(2 pi f t dt + phase)`` with f ~ U[0.1, 1] Hz, phase ~ U[0, 2pi), amp ~ U[0.5, 2]."""
    freq = float(rng.uniform(0.1, 1.0))
    phase = float(rng.uniform(0.0, 2 * math.pi))
    amp = float(rng.uniform(0.5, MAX_TORQUE))
    t = [0]

    def policy(obs: np.ndarray, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = amp * math.sin(2 * math.pi * freq * t[0] * DT + phase)
        t[0] += 1
        return _action(u)

    return policy


def make_zero(rng: np.random.Generator) -> Policy:
    """No torque (the pendulum swings passively)."""

    def policy(obs: np.ndarray, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)

    return policy


def make_mixed(rng: np.random.Generator) -> Policy:
    """Varied data for world models: per episode, one of sine (1/2), random (1/4) or a noisy swing-up (1/4,
    swing-up torque plus N(0, 0.5) noise)."""
    kind = rng.choice(["sine", "sine", "random", "swingup"])
    if kind == "sine":
        return make_sine(rng)
    if kind == "random":
        return make_random(rng)

    def policy(obs: np.ndarray, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = swingup_torque(float(state[0]), float(state[1])) + float(rng.normal(0.0, 0.5))
        return _action(max(-MAX_TORQUE, min(MAX_TORQUE, u)))

    return policy


POLICIES: dict[str, PolicyFactory] = {
    "swingup": make_swingup,
    "random": make_random,
    "sine": make_sine,
    "zero": make_zero,
    "mixed": make_mixed,
}


def swingup_success(states: np.ndarray, last: int = 50, tol: float = 0.3) -> bool:
    """Whether ``|theta| < tol`` over all of the last ``last`` states. ``states``: ``[T+1, 2]``."""
    return bool(np.all(np.abs(states[-last:, 0]) < tol))
