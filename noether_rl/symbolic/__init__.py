"""Units-checked formula discovery (paper §4.1-4.2): enumerate DSL formulas, keep the ones conserved
along trajectories, and pick the one whose conservation loss best helps a predictor.

- :mod:`~noether_rl.symbolic.units`, :mod:`~noether_rl.symbolic.dsl`, :mod:`~noether_rl.symbolic.enumerate`,
  :mod:`~noether_rl.symbolic.program`, :mod:`~noether_rl.symbolic.fit`: the formula side; torch, numpy,
  sympy and :mod:`noether_rl.errors` only.
- :mod:`~noether_rl.symbolic.search`, :mod:`~noether_rl.symbolic.pipeline`: screening and meta-tailoring
  with the state-space MLP (``noether_rl.models.statespace``), the generic ``NoetherNetwork`` and the
  tailoring engine; trajectories in the state-space ``.npz`` format (``noether_rl.data.trajectories``).

Knows nothing of video, envs or the CLI (``noether-rl discover`` lives in ``noether_rl.cli.discover``).
"""
