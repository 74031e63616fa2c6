"""Gymnasium pixel environments; importing this package registers their ids.

- ``noether_rl/PixelPendulum-v0``: Pendulum-v1 dynamics and reward, observation ``uint8 [H, W, 3]``
  (default 64x64, ``size=`` kwarg), true state in ``info["state"]``; 200 steps per episode.
- ``noether_rl/SyntheticRamp-v0``: an object sliding down a ramp into a resting object (``envs/ramp.py``),
  no actions, 15 fps, 21 steps per episode.
"""

from __future__ import annotations

import gymnasium

from noether_rl.envs.pixel_pendulum import PixelPendulumEnv

PIXEL_PENDULUM_ID = "noether_rl/PixelPendulum-v0"

if PIXEL_PENDULUM_ID not in gymnasium.registry:
    gymnasium.register(
        id=PIXEL_PENDULUM_ID,
        entry_point="noether_rl.envs.pixel_pendulum:PixelPendulumEnv",
        max_episode_steps=200,
        kwargs={"size": 64},
    )

# no actions (Discrete(1) no-op; record with the "zero" policy); 21 steps = 22 frames at 15 fps (2 + 20)
SYNTHETIC_RAMP_ID = "noether_rl/SyntheticRamp-v0"
if SYNTHETIC_RAMP_ID not in gymnasium.registry:
    gymnasium.register(
        id=SYNTHETIC_RAMP_ID,
        entry_point="noether_rl.envs.ramp:SyntheticRampEnv",
        max_episode_steps=21,
        kwargs={"size": 64},
    )

__all__ = ["PIXEL_PENDULUM_ID", "SYNTHETIC_RAMP_ID", "PixelPendulumEnv"]
