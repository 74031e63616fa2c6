"""noether_rl: Noether Networks for model-based RL.

Importing the package registers its Gymnasium environments (``noether_rl/PixelPendulum-v0``).
"""

from noether_rl import envs as envs  # noqa: F401  (registers the Gymnasium ids)
from noether_rl._version import __version__

__all__ = ["__version__"]
