"""Agents: the (tailored) world model for planning and for model-free RL.

- :mod:`~noether_rl.agents.planners`: CEM, iCEM, MPPI -- optimisers of an objective over action sequences
  (they know nothing of models).
- :mod:`~noether_rl.agents.world_model`: :class:`WorldModel` -- predictor / Noether Network + reward model,
  one batched ``imagine`` call (optionally replayed as CUDA graphs: :mod:`~noether_rl.agents.cuda_graph`).
- :mod:`~noether_rl.agents.reward`: learned reward CNN and user reward functions.
- :mod:`~noether_rl.agents.mpc`: :class:`MPCAgent` -- the glue, with SB3's ``predict`` interface.
- :mod:`~noether_rl.agents.model_env`: the world model as Gymnasium env / vector env / SB3 VecEnv.
- :mod:`~noether_rl.agents.aggregation`: data aggregation -- the planner's own real-env episodes recorded and
  spliced into a recording's training episodes.
- :mod:`~noether_rl.agents.dream`, :mod:`~noether_rl.agents.runs`: SB3 agents for small frames; the recipes
  behind ``noether-rl plan`` and ``noether-rl dream-train``.

The names below are importable from ``noether_rl.agents``; the env classes (``WorldModelEnv``,
``WorldModelVectorEnv``, ``SB3WorldModelVecEnv``, ``EnvContexts``, ``RecordingContexts``), ``make_sb3_agent`` and
the CLI recipes are imported from their modules (:mod:`~noether_rl.agents.model_env`, ``.dream``, ``.runs``),
which load Stable-Baselines3. Examples: ``docs/AGENTS.md``.
"""

from noether_rl.agents.aggregation import record_policy_episodes, spliced_recording, with_action_noise
from noether_rl.agents.mpc import MPCAgent, MPCConfig
from noether_rl.agents.planners import (
           CEM,
           ICEM,
           MPPI,
           CEMConfig,
           ICEMConfig,
           MPPIConfig,
           Planner,
           make_planner,
)
from noether_rl.agents.reward import FunctionReward, RewardCNN, fit_reward, load_reward
from noether_rl.agents.world_model import Imagined, WorldModel

__all__ = ["CEM", "ICEM", "MPPI", "CEMConfig", "ICEMConfig", "MPPIConfig", "Planner", "make_planner", "MPCAgent",
           "MPCConfig", "FunctionReward", "RewardCNN", "fit_reward", "load_reward", "Imagined", "WorldModel",
           "record_policy_episodes", "spliced_recording", "with_action_noise"]
