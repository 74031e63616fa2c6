"""Units-checked formula discovery (paper §4.1-4.2): enumerate DSL formulas, keep the ones conserved
along trajectories, and pick the one whose conservation loss best helps a predictor.

Knows nothing of video, envs or the CLI; imports torch, numpy and sympy only.
"""
