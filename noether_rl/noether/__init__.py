"""Noether Networks: a sequence predictor + a learned conservation loss, tailored at prediction time.

- :mod:`~noether_rl.noether.predictor`: the ``Predictor`` protocol every domain implements.
- :mod:`~noether_rl.noether.network`: ``NoetherNetwork`` = predictor + g_phi + one call of the
  domain-free :mod:`noether_rl.tailoring` engine.
Training, evaluation and agents all predict through here.
"""

from noether_rl.noether.network import NoetherConfig, NoetherNetwork, NoetherOutput  # noqa: I001
from noether_rl.noether.controls import LearnedAdaptation
from noether_rl.noether.predict import Predict, frames_to_tensor, make_predict, tensor_to_frames
from noether_rl.noether.predictor import Prediction, Predictor

__all__ = ["LearnedAdaptation", "Prediction", "Predictor", "NoetherConfig", "NoetherNetwork", "NoetherOutput", "Predict",
           "frames_to_tensor", "make_predict", "tensor_to_frames"]
