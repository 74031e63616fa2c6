"""Noether Networks: a sequence predictor + a learned conservation loss, tailored at prediction time.

Composes :mod:`noether_rl.models` (predictor, g_phi, loss) with the domain-free
:mod:`noether_rl.tailoring` engine. Training, evaluation and agents all predict through here.
"""

from noether_rl.noether.network import NoetherConfig, NoetherNetwork, NoetherOutput

__all__ = ["NoetherConfig", "NoetherNetwork", "NoetherOutput"]
