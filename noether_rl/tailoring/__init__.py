"""Generic, domain-free tailoring engine (see :mod:`noether_rl.tailoring.engine`)."""

from noether_rl.tailoring.engine import LossFn, TailorConfig, TailorResult, tailor
from noether_rl.tailoring.functional import call_per_example, per_example_params

__all__ = ["LossFn", "TailorConfig", "TailorResult", "tailor", "call_per_example", "per_example_params"]
