"""``noether_rl/PixelPendulum-v0``: Gymnasium's Pendulum-v1 dynamics and reward, RGB-frame observations.

The frame is drawn headless with ``pygame.gfxdraw`` directly at the target size (the geometry of
Gymnasium's 500x500 renderer scaled down: rod, pivot, end cap, torque arrow, axle), which is much faster
than rendering at 500x500 and resizing. ``info["state"]`` carries the true state
``float32 [2] = (theta, theta_dot)`` with theta normalised to [-pi, pi) (0 = upright).
"""

from __future__ import annotations

import math
import os
from os import path as osp
from typing import Any

import gymnasium.envs.classic_control.pendulum as _gym_pendulum
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv, angle_normalize

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (drawing on Surfaces needs no display: SDL_VIDEODRIVER is left alone)
from pygame import gfxdraw  # noqa: E402

ROD_COLOR = (204, 77, 77)
BOUND = 2.2  # world half-width shown, as in Gymnasium
_ARROW_PATH = osp.join(osp.dirname(_gym_pendulum.__file__), "assets", "clockwise.png")


class PixelPendulumEnv(PendulumEnv):
    """Pendulum-v1 with ``uint8 [size, size, 3]`` RGB observations and the true state in ``info``.

    Args:
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the current frame).
        size: frame height and width in pixels.
        g: gravity, as in Pendulum-v1.

    Reset options: ``{"state": [theta, theta_dot]}`` sets the initial state exactly; otherwise
    Pendulum-v1's ``x_init``/``y_init`` bounds apply (theta ~ U[-pi, pi], theta_dot ~ U[-1, 1]).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, size: int = 64, g: float = 10.0) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if int(size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        super().__init__(render_mode=None, g=g)
        self.render_mode = render_mode
        self.size = int(size)
        self.observation_space = spaces.Box(0, 255, shape=(self.size, self.size, 3), dtype=np.uint8)
        self.last_u: float | None = None
        self._surf: pygame.Surface | None = None
        self._arrow: pygame.Surface | None = None

    # ----------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = dict(options or {})
        state = options.pop("state", None)
        super().reset(seed=seed, options=options or None)
        if state is not None:
            state = np.asarray(state, dtype=np.float64).reshape(-1)
            if state.shape != (2,):
                raise ValueError(f"options['state'] must be [theta, theta_dot], got shape {state.shape}")
            self.state = state.copy()
        return self._get_obs(), self._info()

    def step(self, u: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One step of Pendulum-v1 with torque ``u`` (one finite number, clipped to [-2, 2]).

        Raises ``ValueError`` for a missing, non-numeric, wrongly sized, NaN or infinite action, before the
        state changes (the env stays usable).
        """
        if u is None:
            raise ValueError("PixelPendulum-v0: action is None; pass a torque array of shape (1,)")
        try:
            a = np.asarray(u, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"PixelPendulum-v0: action {u!r} is not a number; pass a torque array of shape (1,)") from None
        if a.shape != (1,):
            raise ValueError(f"PixelPendulum-v0: action has {a.size} values; pass a torque array of shape (1,)")
        if not np.isfinite(a).all():
            raise ValueError(f"PixelPendulum-v0: action {float(a[0])} is not finite; the torque must be a finite number")
        obs, reward, terminated, truncated, _ = super().step(a)
        return obs, float(reward), terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._get_obs()

    def close(self) -> None:
        self._surf = None
        self._arrow = None

    # ---------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        return {"state": self.true_state()}

    def true_state(self) -> np.ndarray:
        """``float32 [2]``: (theta normalised to [-pi, pi), theta_dot)."""
        th, thdot = self.state
        return np.array([angle_normalize(th), thdot], dtype=np.float32)

    def _get_obs(self) -> np.ndarray:
        return draw_pendulum(self, float(self.state[0]), self.last_u)


def _load_arrow() -> pygame.Surface:
    return pygame.image.load(_ARROW_PATH)


def draw_pendulum(env: PixelPendulumEnv, theta: float, last_u: float | None) -> np.ndarray:
    """Draw the pendulum at angle ``theta`` as Gymnasium does, at ``env.size``. Returns ``uint8 [H, W, 3]``."""
    n = env.size
    if env._surf is None:
        env._surf = pygame.Surface((n, n))
        env._arrow = _load_arrow()
    surf = env._surf
    surf.fill((255, 255, 255))
    scale = n / (BOUND * 2)
    offset = n / 2
    rod_length = 1.0 * scale
    rod_width = 0.2 * scale
    angle = theta + math.pi / 2
    c, s = math.cos(angle), math.sin(angle)
    half = rod_width / 2
    corners = [(0.0, -half), (0.0, half), (rod_length, half), (rod_length, -half)]
    poly = [(x * c - y * s + offset, x * s + y * c + offset) for x, y in corners]
    gfxdraw.aapolygon(surf, poly, ROD_COLOR)
    gfxdraw.filled_polygon(surf, poly, ROD_COLOR)
    r = max(1, round(half))
    o = int(offset)
    gfxdraw.aacircle(surf, o, o, r, ROD_COLOR)
    gfxdraw.filled_circle(surf, o, o, r, ROD_COLOR)
    ex, ey = int(rod_length * c + offset), int(rod_length * s + offset)
    gfxdraw.aacircle(surf, ex, ey, r, ROD_COLOR)
    gfxdraw.filled_circle(surf, ex, ey, r, ROD_COLOR)
    if last_u is not None and env._arrow is not None:
        side = scale * abs(float(last_u)) / 2
        if side >= 1.0:
            img = pygame.transform.smoothscale(env._arrow, (side, side))
            img = pygame.transform.flip(img, bool(last_u > 0), True)
            rect = img.get_rect()
            surf.blit(img, (o - rect.centerx, o - rect.centery))
    axle = max(1, round(0.05 * scale))
    gfxdraw.aacircle(surf, o, o, axle, (0, 0, 0))
    gfxdraw.filled_circle(surf, o, o, axle, (0, 0, 0))
    # pygame's y axis points down; Gymnasium flips vertically so that theta=0 is up
    pixels = pygame.surfarray.array3d(surf)  # [W, H, 3]
    return np.ascontiguousarray(pixels.transpose(1, 0, 2)[::-1])
