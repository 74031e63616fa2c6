"""Diagnostic: does a pixel-pendulum world model use its actions?

For MPC the model must predict how the CANDIDATE actions change the future, not only continue the motion it
sees in the context. This script rolls a checkpoint's predictor (SVG, or a Noether checkpoint's predictor,
untailored) out free-running from context windows of a recording's episodes (by default the VALIDATION
episodes of the demo's split: nothing here is chosen on test data) under

- the recorded actions ("true"),
- the same windows' future actions shuffled across windows ("shuffled": same marginal, wrong sequence),

and reads the pendulum angle off every predicted frame (``noether_rl.eval.pendulum_angle``). Reported per
step k: angle error (degrees) against the true angle, for both, and their paired difference (shuffled - true)
with the s.e. over episodes (the windows of one episode are averaged first). A model that ignores actions
has difference ~0; the "ideal" gain is what the true dynamics give: the same two action sequences applied
to the true state (the angle difference between them), printed as "true-dynamics effect".

    python benchmarks/action_sensitivity.py --checkpoint RUN/svg/last.pt --data RUN/data --episodes 60-69
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from mpc_oracle import PendulumOracle  # benchmarks/ (this script's folder is on sys.path)
from torch import Tensor

from noether_rl.agents.runs import mean_se
from noether_rl.data import EpisodeWindows
from noether_rl.eval.pendulum_angle import angle_error_deg, decode_angle
from noether_rl.training.loading import load_model
from noether_rl.utils.io import atomic_write_json


def true_thetas(state: Tensor, actions: Tensor) -> Tensor:
    """Pendulum-v1's exact dynamics (``mpc_oracle.PendulumOracle``, constants read from the env): state [B, 2]
    (theta, theta_dot), actions [B, T] -> theta [B, T] after each action."""
    env = gym.make("Pendulum-v1")
    oracle = PendulumOracle(env)
    env.close()
    th, thd = state[:, 0].double(), state[:, 1].double()
    out = []
    for t in range(actions.shape[1]):  # sequential by nature; every window at once
        th, thd, _ = oracle.step(th, thd, actions[:, t].double())
        out.append(th)
    return torch.stack(out, 1)


def _parse_range(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", default="60-69",
                   help="episode ids, e.g. 60-69 (the small pendulum-control scale's validation split)")
    p.add_argument("--n-past", type=int, default=4)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args()

    lm = load_model(a.checkpoint)
    svg = lm.svg
    ds = EpisodeWindows(a.data, a.n_past, a.horizon, episodes=_parse_range(a.episodes), stride=a.stride)
    idx = torch.arange(len(ds))
    frames, actions = ds.batch(idx)  # [B, L, C, H, W], [B, L-1, A]
    states = ds.states(idx)  # [B, L, 2]
    owner = ds.episode_of(idx).numpy()
    P, T = a.n_past, a.horizon
    g = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(len(idx), generator=g)
    shuffled = actions.clone()
    shuffled[:, P - 1:] = actions[perm, P - 1:]
    true_theta = states[:, P:, 0]
    res: dict[str, object] = {"checkpoint": a.checkpoint, "windows": len(idx), "episodes": len(set(owner))}
    errs = {}
    for name, act in (("true", actions), ("shuffled", shuffled)):
        gen = torch.Generator().manual_seed(a.seed)  # SVG-LP: the same prior noise for both
        pred = svg.rollout(frames[:, :P], act, T, generator=gen).pred  # [B, T, C, H, W]
        errs[name] = angle_error_deg(decode_angle(pred), true_theta).numpy()  # [B, T]
    # what the true dynamics make of the two action sequences from the same true state
    th_a = true_thetas(states[:, P - 1], actions[:, P - 1:, 0])
    th_b = true_thetas(states[:, P - 1], shuffled[:, P - 1:, 0])
    effect = angle_error_deg(th_a, th_b).numpy()  # [B, T] wrapped to [0, 180]

    def per_episode(x: np.ndarray) -> np.ndarray:
        return np.stack([x[owner == o].mean(0) for o in sorted(set(owner))])

    for k in sorted({1, 5, 10, T} & set(range(1, T + 1))):
        e_t, e_s = per_episode(errs["true"])[:, k - 1], per_episode(errs["shuffled"])[:, k - 1]
        res[f"step {k}"] = {"true actions": mean_se(e_t), "shuffled actions": mean_se(e_s),
                            "shuffled - true": mean_se(e_s - e_t),
                            "true-dynamics effect of the shuffle": mean_se(per_episode(effect)[:, k - 1])}
        f = res[f"step {k}"]
        print(f"step {k:2d}: angle err true {f['true actions']['mean']:.1f}  shuffled {f['shuffled actions']['mean']:.1f}"
              f"  diff {f['shuffled - true']['mean']:+.1f} ± {f['shuffled - true']['se']:.1f}"
              f"  (true dynamics: shuffle moves the angle {f['true-dynamics effect of the shuffle']['mean']:.1f})")
    if a.out:
        atomic_write_json(a.out, res)


if __name__ == "__main__":
    main()
