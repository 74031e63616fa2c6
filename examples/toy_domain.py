"""A new domain in under 100 lines: a frictionless oscillator predicted by a one-layer net whose weights
are tailored per example against a learned conservation g_phi, trained by the package's one loop.

    python examples/toy_domain.py

The domain supplies only a Predictor (rollout + adaptables), data with ``len``/``batch`` and a per-example
objective; the engine, NoetherNetwork and fit() are the package's, unchanged.
"""

from __future__ import annotations

import tempfile

import torch
from torch import Tensor, nn

from noether_rl.noether import NoetherConfig, NoetherNetwork, Prediction
from noether_rl.tailoring import TailorConfig, call_per_example, per_example_params
from noether_rl.training import FitConfig, StepOutput, fit

DT, H = 0.1, 10  # time step, predicted steps


class OscillatorPredictor(nn.Module):
    """x_{t+1} = x_t + DT * f(x_t) with f a linear layer; adaptables: its weights, per example."""

    stochastic = False

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(2, 2)

    def adaptables(self, batch_size: int, horizon: int, *, kind: str = "weights", device=None, dtype=None):
        return per_example_params(self.f, batch_size)

    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, adapt=None, generator=None,
                target=None) -> Prediction:
        x, out = context[:, -1], []  # [B, 2]
        for _ in range(horizon):
            x = x + DT * (self.f(x) if adapt is None else call_per_example(self.f, adapt, x))
            out.append(x)
        return Prediction(torch.stack(out, 1))  # [B, H, 2]


class Trajectories:
    """Windows of 1 + H states of q'' = -q from random initial states (exact solution)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        r, phase = 0.5 + torch.rand(n, 1, generator=g), 6.283 * torch.rand(n, 1, generator=g)
        t = DT * torch.arange(1 + H)
        self.x = torch.stack([r * torch.cos(t + phase), -r * torch.sin(t + phase)], -1)  # [n, 1+H, 2]

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, idx: Tensor) -> Tensor:
        return self.x[idx]


class Objective(nn.Module):
    def __init__(self, net: NoetherNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> StepOutput:  # x [B, 1+H, 2]
        out = self.net.predict(x[:, :1], x.new_zeros(x.shape[0], H, 0), H)
        return StepOutput((out.pred - x[:, 1:]).pow(2).sum((1, 2)), out.result.ok)


def rollout_error(net: NoetherNetwork, data: Trajectories, tailor: bool) -> float:
    x = data.x
    tcfg = None if tailor else TailorConfig(steps=0)
    with torch.no_grad():
        return float((net.predict(x[:, :1], x.new_zeros(len(data), H, 0), H, tailor_cfg=tcfg).pred - x[:, 1:]).pow(2).mean())


if __name__ == "__main__":
    torch.manual_seed(0)
    g_phi = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 4))
    net = NoetherNetwork(OscillatorPredictor(), g_phi, NoetherConfig(tailor=TailorConfig(lr=0.1, step_rule="polyak"),
                                                                     adapt="weights"))
    train, test = Trajectories(256, seed=0), Trajectories(128, seed=1)
    obj = Objective(net)
    with tempfile.TemporaryDirectory() as out:
        fit(FitConfig(out=out, epochs=30, batch_size=64, tensorboard=False, progress=False), obj, train,
            [{"params": list(net.parameters()), "lr": 3e-3}], device=torch.device("cpu"), run_config={"toy": 1})
    print(f"test MSE  untailored {rollout_error(net, test, False):.5f}   tailored {rollout_error(net, test, True):.5f}")
