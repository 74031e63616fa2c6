"""Tailoring a toy predictor with a hand-written conservation loss (no training needed).

A ball thrown upward: the predictor (Euler with a wrong gravity) drifts in energy; one inner step
on |E(x0) - E(x_t)|^2 per example, over a per-example velocity correction, pulls the prediction back.

    python examples/tailor_toy.py
"""

from __future__ import annotations

import torch

from noether_rl.tailoring import TailorConfig, tailor


def rollout(x0: torch.Tensor, dv: torch.Tensor, steps: int = 20, dt: float = 0.05, g: float = 12.0) -> torch.Tensor:
    """x0: [B, 2] (height, velocity); dv: [B, 1] velocity correction -> [B, steps, 2]."""
    xs, x = [], x0 + torch.cat([torch.zeros_like(dv), dv], 1)
    for _ in range(steps):
        h, v = x[:, :1], x[:, 1:]
        x = torch.cat([h + dt * v, v - dt * g], 1)
        xs.append(x)
    return torch.stack(xs, 1)


def energy(x: torch.Tensor) -> torch.Tensor:
    return 9.81 * x[..., 0] + 0.5 * x[..., 1] ** 2


x0 = torch.tensor([[0.0, 5.0], [1.0, 2.0], [2.0, -1.0]])


def noether_loss(adapt: dict[str, torch.Tensor]) -> torch.Tensor:  # [B]
    return (energy(x0)[:, None] - energy(rollout(x0, adapt["dv"]))).pow(2).sum(1)


res = tailor(noether_loss, {"dv": torch.zeros(3, 1)}, TailorConfig(steps=20, lr=0.05, optimizer="adam"))
print("inner loss before:", res.inner_losses[0].tolist())
print("inner loss after: ", noether_loss(res.adapted).tolist())
