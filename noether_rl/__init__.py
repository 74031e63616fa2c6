"""noether_rl: Noether Networks for model-based RL.

Importing the package is light (torch is imported by the subpackages that need it, gymnasium and pygame
only by ``noether_rl.envs``). ``import noether_rl.envs`` registers the Gymnasium environments
(``noether_rl/PixelPendulum-v0``, ...); ``gymnasium.make("noether_rl.envs:noether_rl/PixelPendulum-v0")``
does it in one call.
"""

from noether_rl._version import __version__

__all__ = ["__version__"]
