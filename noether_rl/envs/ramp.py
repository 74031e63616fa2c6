"""``noether_rl/SyntheticRamp-v0``: an object slides down an incline and hits a resting object (pixels).

An offline stand-in for the Physics 101 ramp videos with the same shapes (15 fps, 2 + 20 frames, square
frames). Every episode draws, from the env's seeded ``np_random``: the incline angle, a sliding object and
a resting object of random shape (box, disc, triangle, ring), colour, size, mass and friction, the slider's
start on the incline, and optionally an occluder (a block entering from the top edge and stopping in
front of the scene).

Physics, in metres and seconds along the surface (1 frame width = 1 m): on the incline the slider
accelerates at ``g (sin a - mu cos a)`` (``mu < tan a`` is drawn, so it always slides), keeps its speed
through the corner, decelerates at ``mu g`` on the table, and hits the resting object in a 1D collision
with a random restitution; both then slide until friction stops them. Each frame step integrates
``substeps`` steps of ``1 / (fps * substeps)`` s, exactly for the constant acceleration within a step.

Observations are ``uint8 [size, size, 3]`` drawn with ``pygame.gfxdraw`` on an off-screen surface (no
window, no display driver, no change to ``SDL_VIDEODRIVER``). There are no actions: the action space is
``Discrete(1)`` (the single no-op action 0; a ``Box(0, 0)`` makes Gymnasium's checker warn on every make),
``step`` accepts 0 as an int or any one-element zero array (the recorder's ``zero`` policy gives float32
``[0.]``, stored as ``actions float32 [T, 1]`` zeros), and any other action is an error.
``info["state"]`` is ``float32 [2] = (s, v)`` of the slider (path coordinate from the incline top, speed);
``info["full_state"]`` is ``float32 [4] = (s1, v1, s2, v2)`` of both objects. The reward is always 0.
"""

from __future__ import annotations

import colorsys
import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from noether_rl.errors import UserError

G = 9.81
SHAPES = ("box", "disc", "triangle", "ring")
X_CORNER = 0.5  # frame x (fraction of width) where the incline meets the table
Y_TABLE = 0.72  # frame y (fraction of height, downwards) of the table top
BACKGROUND = (236, 232, 222)
RAMP_COLOR = (120, 110, 100)
TABLE_COLOR = (150, 120, 90)


def _pygame() -> Any:
    """Import pygame without its support banner and without touching the process environment."""
    with contextlib.redirect_stdout(io.StringIO()):
        import pygame
        import pygame.gfxdraw  # noqa: F401
    return pygame


@dataclass
class _Body:
    shape: str
    color: tuple[int, int, int]
    half: float  # half-extent along the surface (m)
    height: float  # height above the surface (m)
    mass: float
    mu: float
    s: float  # path coordinate of the centre's contact point (m)
    v: float  # speed along the path (m/s)


@dataclass
class _Occluder:
    x: float  # left edge (frame fraction)
    width: float
    depth: float  # final bottom edge (frame fraction)
    t0: float  # entry time (s)
    speed: float  # frame fractions per second
    color: tuple[int, int, int]


class SyntheticRampEnv(gym.Env):
    """Objects sliding down a ramp into a resting object; ``uint8 [size, size, 3]`` frames, no actions.

    Args:
        render_mode: ``None`` or ``"rgb_array"``.
        size: frame height and width in pixels.
        fps: frames per second of the observations (Physics 101 protocol: 15).
        angle_range: incline angle in degrees, drawn uniformly per episode.
        occluder_prob: probability that an episode has an occluder entering the frame.
        substeps: physics steps per frame.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        render_mode: str | None = None,
        size: int = 64,
        fps: float = 15.0,
        angle_range: tuple[float, float] = (15.0, 30.0),
        occluder_prob: float = 0.0,
        substeps: int = 10,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if int(size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        lo, hi = (float(a) for a in angle_range)
        if not 5.0 <= lo <= hi <= 40.0:
            raise ValueError(f"angle_range must satisfy 5 <= low <= high <= 40 degrees, got {angle_range}")
        if not 0.0 <= float(occluder_prob) <= 1.0:
            raise ValueError(f"occluder_prob must be in [0, 1], got {occluder_prob}")
        if not (math.isfinite(fps) and fps > 0) or int(substeps) < 1:
            raise ValueError(f"need fps > 0 and substeps >= 1, got {fps}, {substeps}")
        self.render_mode = render_mode
        self.size = int(size)
        self.fps = float(fps)
        self.angle_range = (lo, hi)
        self.occluder_prob = float(occluder_prob)
        self.substeps = int(substeps)
        self.metadata = {**self.metadata, "render_fps": self.fps}
        self.observation_space = spaces.Box(0, 255, shape=(self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(1)
        self._surf: Any = None
        self.angle = 0.0
        self.t = 0.0
        self.bodies: list[_Body] = []
        self.occluder: _Occluder | None = None

    # ------------------------------------------------------------------------------------- geometry
    @property
    def incline_length(self) -> float:
        return X_CORNER / math.cos(self.angle)

    def _y_top(self) -> float:
        return Y_TABLE - X_CORNER * math.tan(self.angle)

    def _surface(self, s: float) -> tuple[float, float, float]:
        """(x, y, surface angle) in frame fractions (y down) of path coordinate ``s``."""
        a, ell = self.angle, self.incline_length
        if s <= ell:
            return s * math.cos(a), self._y_top() + s * math.sin(a), a
        return X_CORNER + (s - ell), Y_TABLE, 0.0

    # ------------------------------------------------------------------------------------- episodes
    def _random_body(self, rng: np.random.Generator, half: float) -> _Body:
        shape = str(rng.choice(SHAPES))
        color = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.45, 0.95))
        if shape in ("disc", "ring"):
            height = 2 * half
        else:
            height = half * float(rng.uniform(1.2, 2.0) if shape == "triangle" else rng.uniform(0.8, 2.0))
        mass = float(rng.uniform(0.5, 2.0)) * half * height  # random density x area
        return _Body(shape, color, half, height, mass, mu=0.0, s=0.0, v=0.0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        self.angle = math.radians(rng.uniform(*self.angle_range))
        self.t = 0.0
        tan_a = math.tan(self.angle)
        slider = self._random_body(rng, float(rng.uniform(0.045, 0.08)))
        target = self._random_body(rng, float(rng.uniform(0.045, 0.09)))
        slider.mu = float(rng.uniform(0.05, 0.5) * tan_a)  # always slides down the incline
        target.mu = float(rng.uniform(0.05, 0.3))
        ell = self.incline_length
        slider.s = float(rng.uniform(0.25, 0.6) * ell)
        target.s = float(ell + target.half + rng.uniform(0.03, 0.15))
        self.bodies = [slider, target]
        self.restitution = float(rng.uniform(0.2, 0.8))
        self.occluder = None
        if rng.uniform() < self.occluder_prob:
            width = rng.uniform(0.12, 0.3)
            self.occluder = _Occluder(
                x=float(rng.uniform(0.0, 1.0 - width)), width=float(width), depth=float(rng.uniform(0.3, 0.7)),
                t0=float(rng.uniform(0.0, 1.0)), speed=float(rng.uniform(0.8, 2.0)),
                color=_hsv_to_rgb(rng.uniform(0.02, 0.1), 0.45, 0.85),  # skin-like
            )
        return self._frame(), self._info()

    def step(self, action: int | np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,) or not np.all(a == 0.0):
            raise UserError("SyntheticRamp-v0 has no actions: pass zeros (record it with --policy zero)")
        if not self.bodies:
            raise gym.error.ResetNeeded("call reset() before step()")
        dt = 1.0 / (self.fps * self.substeps)
        for _ in range(self.substeps):
            self._physics(dt)
        return self._frame(), 0.0, False, False, self._info()

    def _physics(self, dt: float) -> None:
        ell, a = self.incline_length, self.angle
        for b in self.bodies:  # exact for the constant acceleration within a step
            if b.s + 1e-9 < ell:
                acc = G * (math.sin(a) - b.mu * math.cos(a))
                b.s += b.v * dt + 0.5 * acc * dt * dt
                b.v += acc * dt
            elif b.v > 0:
                dec = b.mu * G
                if b.v <= dec * dt:  # stops within this step
                    b.s += b.v * b.v / (2 * dec)
                    b.v = 0.0
                else:
                    b.s += b.v * dt - 0.5 * dec * dt * dt
                    b.v -= dec * dt
        s1, s2 = self.bodies
        gap = (s2.s - s2.half) - (s1.s + s1.half)
        if gap <= 0 and s1.v > s2.v:  # 1D collision with restitution e
            m1, m2, e = s1.mass, s2.mass, self.restitution
            u1, u2 = s1.v, s2.v
            s1.v = (m1 * u1 + m2 * u2 - m2 * e * (u1 - u2)) / (m1 + m2)
            s2.v = (m1 * u1 + m2 * u2 + m1 * e * (u1 - u2)) / (m1 + m2)
            s1.v = max(s1.v, 0.0)
            s1.s = s2.s - s2.half - s1.half
        self.t += dt

    def _info(self) -> dict[str, Any]:
        s1, s2 = self.bodies
        return {
            "state": np.array([s1.s, s1.v], dtype=np.float32),
            "full_state": np.array([s1.s, s1.v, s2.s, s2.v], dtype=np.float32),
        }

    def render(self) -> np.ndarray | None:
        return None if self.render_mode is None else self._frame()

    def close(self) -> None:
        self._surf = None

    # -------------------------------------------------------------------------------------- drawing
    def _frame(self) -> np.ndarray:
        pg = _pygame()
        n = self.size
        if self._surf is None:
            self._surf = pg.Surface((n, n))
        surf = self._surf
        surf.fill(BACKGROUND)
        px = [(0.0, self._y_top()), (X_CORNER, Y_TABLE), (1.0, Y_TABLE), (1.0, 1.0), (0.0, 1.0)]
        _polygon(pg, surf, [(x * n, y * n) for x, y in px], RAMP_COLOR)
        _polygon(pg, surf, [(X_CORNER * n, Y_TABLE * n), (n, Y_TABLE * n), (n, n), (X_CORNER * n, n)],
                 TABLE_COLOR)
        for b in reversed(self.bodies):
            self._draw_body(pg, surf, b)
        if self.occluder is not None and self.t >= self.occluder.t0:
            o = self.occluder
            bottom = min(o.depth, -0.05 + o.speed * (self.t - o.t0))
            if bottom > 0:
                rect = [(o.x * n, 0), ((o.x + o.width) * n, 0), ((o.x + o.width) * n, bottom * n),
                        (o.x * n, bottom * n)]
                _polygon(pg, surf, rect, o.color)
        pixels = pg.surfarray.array3d(surf)  # [W, H, 3]
        return np.ascontiguousarray(pixels.transpose(1, 0, 2))

    def _draw_body(self, pg: Any, surf: Any, b: _Body) -> None:
        n = self.size
        ell = self.incline_length
        x, y, _ = self._surface(b.s)
        # blend the orientation through the corner over one body length
        w = min(1.0, max(0.0, (b.s - (ell - b.half)) / (2 * b.half)))
        ang = (1 - w) * self.angle
        c, s = math.cos(ang), math.sin(ang)
        nx, ny = s, -c  # surface normal pointing up, in frame coordinates (y down)

        def pt(u: float, h: float) -> tuple[float, float]:  # along-surface u, height h above it
            return ((x + u * c + h * nx) * n, (y + u * s + h * ny) * n)

        if b.shape in ("disc", "ring"):
            cx, cy = pt(0.0, b.half)
            r = max(1, round(b.half * n))
            pg.gfxdraw.aacircle(surf, int(cx), int(cy), r, b.color)
            if b.shape == "ring":
                pg.draw.circle(surf, b.color, (int(cx), int(cy)), r, width=max(1, r // 2))
            else:
                pg.gfxdraw.filled_circle(surf, int(cx), int(cy), r, b.color)
        elif b.shape == "triangle":
            _polygon(pg, surf, [pt(-b.half, 0), pt(b.half, 0), pt(0, b.height)], b.color)
        else:
            _polygon(pg, surf, [pt(-b.half, 0), pt(b.half, 0), pt(b.half, b.height), pt(-b.half, b.height)],
                     b.color)


def _polygon(pg: Any, surf: Any, pts: list[tuple[float, float]], color: tuple[int, int, int]) -> None:
    pg.gfxdraw.aapolygon(surf, pts, color)
    pg.gfxdraw.filled_polygon(surf, pts, color)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(float(h), float(s), float(v))
    return round(255 * r), round(255 * g), round(255 * b)
