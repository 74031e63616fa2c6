"""Sampling-based trajectory optimisers: CEM, iCEM and MPPI.

A planner maximises an objective over action sequences and knows nothing of models:

    objective(action_seqs [N, H, A]) -> scores [N]                  plan(objective)
    objective(action_seqs [B, N, H, A]) -> scores [B, N]            plan(objective, batch_size=B)

(the batched form solves ``B`` independent problems in one objective call, e.g. one per vectorised
env). All candidates of an iteration are scored in ONE call. Candidates always lie inside the bounds
``[low, high]`` (per action dimension). A NaN or infinite score (either sign) counts as ``-inf``; when
every candidate of a problem is ``-inf`` the planner keeps its current mean rather than failing.

Warm start: after :meth:`Planner.plan` the planner remembers its solution; :meth:`Planner.advance`
shifts it by the number of executed steps (the vacated tail starts at the centre of the bounds), and the
next ``plan`` starts from it. :meth:`Planner.reset` clears it (and optionally reseeds). Sampling uses the
planner's own ``torch.Generator`` (seeded), so equal seeds give equal plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from noether_rl.errors import UserError

Bounds = Sequence[float] | Tensor  # per-dimension action bounds [A] (floats, a numpy array or a tensor)

Objective = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class CEMConfig:
    """Cross-entropy method. population N, elites K, iterations; ``alpha``: weight of the old mean/std in
    the update (momentum); ``init_std``: initial std as a fraction of the half-range; ``min_std`` likewise."""

    population: int = 128
    elites: int = 16
    iterations: int = 3
    alpha: float = 0.1
    init_std: float = 1.0
    min_std: float = 0.05


@dataclass(frozen=True)
class ICEMConfig(CEMConfig):
    """iCEM (Pinneri et al. 2020): the CEM settings plus coloured noise (power spectrum ~ 1/f^beta along time),
    population decay ``N_i = max(N * decay^-i, 2K)``, a fraction ``keep_elites`` of the elites carried to the
    next iteration (and, shifted, to the next plan), the mean added as a candidate at the last iteration, and
    the best sequence seen returned."""

    beta: float = 2.0
    decay: float = 1.25
    keep_elites: float = 0.3


@dataclass(frozen=True)
class MPPIConfig:
    """MPPI: Gaussian perturbations of the mean with std ``noise_std`` (fraction of the half-range);
    the new mean is the softmax(score / temperature)-weighted average. With ``scale_free`` the scores of
    each problem are first divided by their standard deviation (so ``temperature`` is scale-free)."""

    population: int = 128
    iterations: int = 3
    temperature: float = 0.5
    noise_std: float = 0.5
    scale_free: bool = True


def sanitize_scores(scores: Tensor) -> Tensor:
    """NaN and +-inf -> -inf (float)."""
    scores = scores.float() if not scores.is_floating_point() else scores
    return torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -math.inf))


class Planner:
    """Common machinery: bounds, batch handling, warm start, seeded sampling.

    horizon: H steps per action sequence; low/high: per-dimension bounds ``[A]`` (floats or a tensor).
    """

    def __init__(self, horizon: int, low: Bounds, high: Bounds, *,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        if horizon < 1:
            raise UserError(f"planner horizon must be >= 1, got {horizon}")
        self.device = torch.device(device)
        self.low = torch.as_tensor(low, dtype=torch.float32, device=self.device).reshape(-1)
        self.high = torch.as_tensor(high, dtype=torch.float32, device=self.device).reshape(-1)
        if self.low.shape != self.high.shape or not bool((self.high > self.low).all()):
            raise UserError(f"planner bounds need low < high per dimension, got low={self.low.tolist()} "
                            f"high={self.high.tolist()}")
        self.horizon = int(horizon)
        self.action_dim = int(self.low.numel())
        self.seed = seed
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._mean: Tensor | None = None  # warm start [B, H, A]
        self._elites: Tensor | None = None  # iCEM: carried elites [B, K', H, A]

    # -- public ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start; reseed the sampler if ``seed`` is given."""
        self._mean = None
        self._elites = None
        if seed is not None:
            self.seed = seed
            self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def forget(self, mask: Tensor | Sequence[bool]) -> None:
        """Reset the warm start of the problems where ``mask`` [B] is True (e.g. envs starting an episode)."""
        if self._mean is None:
            return
        m = torch.as_tensor(mask, dtype=torch.bool, device=self.device).reshape(-1)
        if m.numel() != self._mean.shape[0]:
            self.reset()
            return
        self._mean = torch.where(m[:, None, None], self.centre.expand_as(self._mean), self._mean)
        self._elites = None

    def advance(self, steps: int = 1) -> None:
        """Shift the warm start by ``steps`` executed actions (tail filled with the centre of the bounds)."""
        if steps <= 0 or self._mean is None:
            return
        self._mean = self._shift(self._mean, steps)
        if self._elites is not None:
            self._elites = self._shift(self._elites, steps)

    def warm_start(self, batch_size: int | None = None) -> Tensor:
        """The sequence the next :meth:`plan` starts from (``[H, A]``, or ``[B, H, A]`` with ``batch_size``):
        the shifted previous solution, or the centre of the bounds without one."""
        B = 1 if batch_size is None else int(batch_size)
        m = self._mean if self._mean is not None and self._mean.shape[0] == B else None
        out = m.clone() if m is not None else self.centre.expand(B, self.horizon, self.action_dim).clone()
        return out[0] if batch_size is None else out

    def plan(self, objective: Objective, batch_size: int | None = None) -> Tensor:
        """Optimise; returns the plan ``[H, A]`` (or ``[B, H, A]`` with ``batch_size``)."""
        B = 1 if batch_size is None else int(batch_size)

        def f(x: Tensor) -> Tensor:  # x [B, N, H, A] -> [B, N]
            N = x.shape[1]
            s = objective(x[0]) if batch_size is None else objective(x)
            s = s.reshape(-1)
            if s.numel() != B * N:
                raise UserError(f"objective returned {s.numel()} scores for {B * N} candidates")
            return sanitize_scores(s.to(self.device).view(B, N))

        if self._mean is not None and self._mean.shape[0] != B:
            self.reset()
        out = self._optimize(f, B)
        return out[0] if batch_size is None else out

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def half_range(self) -> Tensor:
        return (self.high - self.low) / 2

    @property
    def centre(self) -> Tensor:
        return (self.high + self.low) / 2

    def _initial_mean(self, B: int) -> Tensor:
        if self._mean is not None:
            return self._mean.clone()
        return self.centre.expand(B, self.horizon, self.action_dim).clone()

    def _shift(self, x: Tensor, k: int) -> Tensor:
        k = min(k, self.horizon)
        tail = self.centre.expand(*x.shape[:-2], k, self.action_dim)
        return torch.cat([x[..., k:, :], tail], -2)

    def _clip(self, x: Tensor) -> Tensor:
        return torch.maximum(torch.minimum(x, self.high), self.low)

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _optimize(self, f: Callable[[Tensor], Tensor], B: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _track_best(best: Tensor, best_score: Tensor, cand: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Keep per problem the best candidate seen: best [B, H, A], best_score [B]; cand [B, N, H, A]."""
    s, i = scores.max(1)
    top = cand[torch.arange(cand.shape[0], device=cand.device), i]
    better = s > best_score
    return torch.where(better[:, None, None], top, best), torch.where(better, s, best_score)


def _elite_stats(cand: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """-> elites [B, K, H, A], their mean and std [B, H, A]."""
    idx = scores.topk(k, dim=1).indices  # [B, K]
    elites = cand.gather(1, idx[:, :, None, None].expand(-1, -1, *cand.shape[2:]))
    return elites, elites.mean(1), elites.std(1, unbiased=False)


class CEM(Planner):
    """Cross-entropy method with a Gaussian sampler clipped to the bounds; returns the best sequence seen.
    The current mean is always one of the first iteration's candidates (so the warm start is scored)."""

    def __init__(self, horizon: int, low: Bounds, high: Bounds, cfg: CEMConfig = CEMConfig(), *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(horizon, low, high, seed=seed, device=device)
        if not 1 <= cfg.elites <= cfg.population:
            raise UserError(f"CEM needs 1 <= elites <= population, got {cfg.elites} of {cfg.population}")
        self.cfg = cfg

    def _optimize(self, f, B):
        c = self.cfg
        mean = self._initial_mean(B)
        std = (self.half_range * c.init_std).expand_as(mean).clone()
        min_std = self.half_range * c.min_std
        best, best_score = mean.clone(), torch.full((B,), -math.inf, device=self.device)
        for i in range(c.iterations):
            cand = self._clip(mean[:, None] + std[:, None] * self._randn(B, c.population, self.horizon,
                                                                          self.action_dim))
            if i == 0:
                cand[:, 0] = mean
            scores = f(cand)
            best, best_score = _track_best(best, best_score, cand, scores)
            _, m, s = _elite_stats(cand, scores, c.elites)
            mean = c.alpha * mean + (1 - c.alpha) * m
            std = torch.maximum(c.alpha * std + (1 - c.alpha) * s, min_std)
        self._mean = mean
        return best


def colored_noise(beta: float, shape: tuple[int, ...], horizon: int, generator: torch.Generator,
                  device: torch.device) -> Tensor:
    """Unit-variance Gaussian noise ``[*shape, horizon]`` with power spectrum ~ 1/f^beta along the last
    dim (beta=0: white). As the ``colorednoise`` package's ``powerlaw_psd_gaussian``, normalised exactly."""
    f = torch.fft.rfftfreq(horizon, device=device)
    fmin = 1.0 / horizon
    f = torch.clamp(f, min=fmin)
    scale = f.pow(-beta / 2.0)  # [F]
    # exact variance of the irfft output for the component variances set below (DC and Nyquist real)
    F = scale.numel()
    var = 2 * scale[0] ** 2 + 4 * (scale[1:].pow(2).sum() - (scale[-1] ** 2 if horizon % 2 == 0 else 0))
    if horizon % 2 == 0 and F > 1:
        var = var + 2 * scale[-1] ** 2
    sigma = var.sqrt() / horizon
    sr = torch.randn((*shape, F), generator=generator, device=device) * scale
    si = torch.randn((*shape, F), generator=generator, device=device) * scale
    if horizon % 2 == 0:
        si[..., -1] = 0
        sr[..., -1] = sr[..., -1] * math.sqrt(2)
    si[..., 0] = 0
    sr[..., 0] = sr[..., 0] * math.sqrt(2)
    return torch.fft.irfft(torch.complex(sr, si), n=horizon) / sigma


class ICEM(Planner):
    """Improved CEM (see :class:`ICEMConfig`)."""

    def __init__(self, horizon: int, low: Bounds, high: Bounds, cfg: ICEMConfig = ICEMConfig(), *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(horizon, low, high, seed=seed, device=device)
        if not 1 <= cfg.elites <= cfg.population:
            raise UserError(f"iCEM needs 1 <= elites <= population, got {cfg.elites} of {cfg.population}")
        self.cfg = cfg

    def _noise(self, B: int, N: int) -> Tensor:
        e = colored_noise(self.cfg.beta, (B, N, self.action_dim), self.horizon, self.generator, self.device)
        return e.transpose(-1, -2)  # [B, N, H, A]

    def _optimize(self, f, B):
        c = self.cfg
        mean = self._initial_mean(B)
        std = (self.half_range * c.init_std).expand_as(mean).clone()
        min_std = self.half_range * c.min_std
        best, best_score = mean.clone(), torch.full((B,), -math.inf, device=self.device)
        n_keep = max(1, int(round(c.keep_elites * c.elites))) if c.keep_elites > 0 else 0
        kept = self._elites if (self._elites is not None and self._elites.shape[0] == B) else None
        for i in range(c.iterations):
            N = max(int(c.population * c.decay ** (-i)), 2 * c.elites)
            cand = self._clip(mean[:, None] + std[:, None] * self._noise(B, N))
            extra = [cand]
            if kept is not None:
                extra.append(kept[:, :n_keep])
            if i == 0 or i == c.iterations - 1:
                extra.append(mean[:, None])
            cand = torch.cat(extra, 1)
            scores = f(cand)
            best, best_score = _track_best(best, best_score, cand, scores)
            elites, m, s = _elite_stats(cand, scores, c.elites)
            kept = elites if n_keep else None
            mean = c.alpha * mean + (1 - c.alpha) * m
            std = torch.maximum(c.alpha * std + (1 - c.alpha) * s, min_std)
        self._mean = mean
        self._elites = kept
        return best


class MPPI(Planner):
    """Model-predictive path integral control (see :class:`MPPIConfig`); returns the weighted mean."""

    def __init__(self, horizon: int, low: Bounds, high: Bounds, cfg: MPPIConfig = MPPIConfig(), *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(horizon, low, high, seed=seed, device=device)
        if cfg.temperature <= 0 or cfg.population < 1:
            raise UserError(f"MPPI needs temperature > 0 and population >= 1, got {cfg}")
        self.cfg = cfg

    def _optimize(self, f, B):
        c = self.cfg
        mean = self._initial_mean(B)
        std = self.half_range * c.noise_std
        for _ in range(c.iterations):
            cand = self._clip(mean[:, None] + std * self._randn(B, c.population, self.horizon, self.action_dim))
            cand[:, 0] = mean
            scores = f(cand)
            finite = torch.isfinite(scores)
            any_ok = finite.any(1, keepdim=True)
            top = torch.where(any_ok, scores.max(1, keepdim=True).values, torch.zeros_like(scores[:, :1]))
            z = torch.where(finite, scores - top, torch.full_like(scores, -math.inf))  # <= 0, -inf for bad
            if c.scale_free:
                zf = torch.where(finite, z, torch.zeros_like(z))
                cnt = finite.sum(1, keepdim=True).clamp(min=1)
                mu = zf.sum(1, keepdim=True) / cnt
                var = (torch.where(finite, z - mu, torch.zeros_like(z)) ** 2).sum(1, keepdim=True) / cnt
                z = z / (var.sqrt() + 1e-8)
            w = torch.softmax(z / c.temperature, dim=1)
            w = torch.where(any_ok, w, torch.full_like(w, 1.0 / w.shape[1]))  # all bad: keep the mean
            new = (w[:, :, None, None] * cand).sum(1)
            mean = torch.where(any_ok[:, :, None], new, mean)
        self._mean = mean
        return self._clip(mean)


PLANNERS = {"cem": (CEM, CEMConfig), "icem": (ICEM, ICEMConfig), "mppi": (MPPI, MPPIConfig)}


def make_planner(name: str, horizon: int, low, high, *, population: int = 128, iterations: int = 3,
                 seed: int = 0, device: torch.device | str = "cpu") -> Planner:
    """A planner by name (``cem`` | ``icem`` | ``mppi``) with the given population and iteration count
    (elites: population // 8 for the CEMs)."""
    if name not in PLANNERS:
        raise UserError(f"unknown planner {name!r}; choose one of {sorted(PLANNERS)}")
    cls, cfg_cls = PLANNERS[name]
    if name == "mppi":
        cfg = cfg_cls(population=population, iterations=iterations)
    else:
        cfg = cfg_cls(population=population, elites=max(2, population // 8), iterations=iterations)
    return cls(horizon, low, high, cfg, seed=seed, device=device)


__all__ = ["CEM", "CEMConfig", "ICEM", "ICEMConfig", "MPPI", "MPPIConfig", "PLANNERS", "Objective", "Planner",
           "colored_noise", "make_planner", "sanitize_scores"]
