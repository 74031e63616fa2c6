"""Diagnostic: the package's MPC planners with an ORACLE objective (true pendulum dynamics and reward).

Is the pendulum-control demo's MPC failure (it does not swing up) due to the planner settings or to the learned
world model / reward? This script runs the SAME planner classes (``noether_rl.agents.planners``: CEM, iCEM,
MPPI via ``make_planner``, as ``noether-rl plan`` builds them) with the MPC loop of ``MPCAgent`` (one batched
plan call for all episodes in lockstep, replan every k steps, warm start shifted by the executed steps, the
plan's next action executed in between), but the objective is exact: Pendulum-v1's dynamics and reward
(constants read from the env: g, m, l, dt, max speed, max torque) rolled out in torch float64 over ALL
candidates at once, from the env's true state at each planning step. Score = undiscounted sum of the true
rewards over the horizon (``MPCConfig.discount`` defaults to 1.0).

Rows (real-env returns of seeded 200-step episodes, mean ± s.e. over episodes, paired by seed):
random and scripted swing-up (the package's baselines: ``runs.random_policy``/``run_episodes`` and
``experiments.pendulum_control.scripted_returns``), oracle MPC at the demo's settings (cem / icem / mppi,
population 64, horizon 15, iterations 3, replan every step: scale small-long's settings) on the demo's
evaluation seeds 0..9. ``--from-pixels`` adds rows planning with the true dynamics from the state READ OFF the
observations (angle from the rod's pixels, velocity from two frames) next to the true state, per
``--pixel-horizons``: what the frame resolution alone allows a perfect model.

Selection (``--sweep``): a grid of CEM settings (horizon x population x iterations x replan) is run on
SELECTION seeds (default 100..109, disjoint from the evaluation seeds); the rule, fixed in advance: the best
mean selection return, and the reported choice is the cheapest setting (CPU seconds per plan call) whose paired
difference to the best is within one s.e. The chosen setting (and the best one) are then run ONCE on the
evaluation seeds. Swing-up is also counted: an episode is "balanced" when |theta| < 0.5 rad on >= 90 % of its
last 50 steps.

Cost: CPU seconds (``time.process_time``, this process, 1 torch thread) per plan call for one problem
(``--timing-repeats`` calls from a fixed hanging state, warm start on), and per batched call during the
episodes. Wall time on a shared machine is not a figure.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/mpc_oracle.py --sweep --out /tmp/mpc_oracle.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.envs.classic_control.pendulum import angle_normalize
from torch import Tensor

import noether_rl.envs  # noqa: F401  (registers the env ids)
from noether_rl.agents.planners import make_planner
from noether_rl.agents.runs import make_real_env, mean_se, random_policy, run_episodes
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.experiments.pendulum_control import SCALES, scripted_returns

BALANCE_RAD = 0.5
LAST = 50


@dataclass(frozen=True)
class Setting:
    planner: str = "cem"
    population: int = 64
    horizon: int = 15
    iterations: int = 3
    replan_every: int = 3

    @property
    def name(self) -> str:
        return (f"{self.planner} N={self.population} H={self.horizon} it={self.iterations} "
                f"replan={self.replan_every}")


class PendulumOracle:
    """Pendulum-v1's exact dynamics and reward, batched over any leading dims (float64).

    For the tolerance rows a deliberately wrong planning model: gravity scaled by ``g_scale``, the torque's
    effect by ``u_scale`` (0: the model ignores actions), and i.i.d. Gaussian noise of std ``reward_noise_sd``
    added to every predicted reward (seeded)."""

    def __init__(self, env: Any, *, g_scale: float = 1.0, u_scale: float = 1.0, reward_noise_sd: float = 0.0,
                 seed: int = 0) -> None:
        u = env.unwrapped
        self.g, self.m, self.l, self.dt = float(u.g) * g_scale, float(u.m), float(u.l), float(u.dt)
        self.max_speed, self.max_torque = float(u.max_speed), float(u.max_torque)
        self.u_scale, self.reward_noise_sd = float(u_scale), float(reward_noise_sd)
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def angle_normalize(x: Tensor) -> Tensor:
        return ((x + math.pi) % (2 * math.pi)) - math.pi

    def step(self, th: Tensor, thd: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> next theta, next theta_dot, reward of (state, u) -- as ``PendulumEnv.step``."""
        u = u.clamp(-self.max_torque, self.max_torque)
        r = -(self.angle_normalize(th) ** 2 + 0.1 * thd ** 2 + 0.001 * u ** 2)
        thd = thd + (3 * self.g / (2 * self.l) * torch.sin(th) + 3.0 / (self.m * self.l ** 2) * u * self.u_scale) * self.dt
        thd = thd.clamp(-self.max_speed, self.max_speed)
        return th + thd * self.dt, thd, r

    def returns(self, state: Tensor, seqs: Tensor, last_u: Tensor | None = None) -> Tensor:
        """state [B, 2] (theta, theta_dot), seqs [B, N, H, 1] -> summed true reward [B, N]. One loop over the
        horizon (sequential by nature); every candidate of every problem is stepped at once. ``last_u``: the
        executed action before the plan (unused here; the learned-reward oracle draws it)."""
        B, N, H, _ = seqs.shape
        u = seqs[..., 0].to(torch.float64)
        th = state[:, 0:1].to(torch.float64).expand(B, N)
        thd = state[:, 1:2].to(torch.float64).expand(B, N)
        total = torch.zeros(B, N, dtype=torch.float64)
        for t in range(H):
            th, thd, r = self.step(th, thd, u[:, :, t])
            total = total + r
        if self.reward_noise_sd > 0:
            total = total + self.reward_noise_sd * math.sqrt(H) * torch.randn(
                B, N, dtype=torch.float64, generator=self.generator)  # sum of H i.i.d. per-step errors
        return total

    @torch.no_grad()
    def angle_error_deg(self, truth: PendulumOracle, steps: tuple[int, ...] = (1, 5, 10), n: int = 1024,
                        seed: int = 0) -> dict[str, float]:
        """Mean |angle error| (degrees) of this model's open-loop rollout against ``truth`` after k steps, from
        states theta ~ U[-pi, pi), theta_dot ~ U[-4, 4] under i.i.d. uniform random torques."""
        g = torch.Generator().manual_seed(seed)
        th0 = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
        thd0 = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 4
        u = (torch.rand(n, max(steps), generator=g, dtype=torch.float64) * 2 - 1) * self.max_torque
        a, ad, b, bd, out = th0, thd0, th0, thd0, {}
        for t in range(max(steps)):
            a, ad, _ = self.step(a, ad, u[:, t])
            b, bd, _ = truth.step(b, bd, u[:, t])
            if t + 1 in steps:
                out[f"step {t + 1}"] = float(self.angle_normalize(a - b).abs().mean() * 180 / math.pi)
        return out


class LearnedRewardOracle(PendulumOracle):
    """TRUE dynamics, LEARNED reward: every imagined state is drawn as the env draws it (a table of frames
    rendered once by the env's own ``draw_pendulum`` over ``theta_bins`` angles x the torque-arrow classes,
    looked up in torch) and the reward CNN scores (prev frame, action, next frame) as in ``WorldModel``. The
    table's fidelity to the env's frames is measured by :meth:`table_check`."""

    def __init__(self, env: Any, reward: Any, *, theta_bins: int = 720, chunk: int = 4096) -> None:
        super().__init__(env)
        from noether_rl.envs.pixel_pendulum import BOUND, draw_pendulum

        self.reward, self.bins, self.chunk = reward, int(theta_bins), int(chunk)
        u = env.unwrapped
        self.size = int(u.size)
        self.half_scale = self.size / (BOUND * 2) / 2  # the arrow's side (pixels) per unit |torque|
        self.kmax = int(math.floor(self.half_scale * self.max_torque))
        reps = [None] + [sg * min((k + 0.5) / self.half_scale, self.max_torque)
                         for sg in (1.0, -1.0) for k in range(1, self.kmax + 1)]
        thetas = -math.pi + (np.arange(self.bins) + 0.5) * 2 * math.pi / self.bins
        table = np.stack([np.stack([draw_pendulum(u, float(t), r) for t in thetas]) for r in reps])
        self.table = torch.from_numpy(table).permute(0, 1, 4, 2, 3).contiguous()  # uint8 [classes, bins, C, H, W]

    def u_class(self, u: Tensor) -> Tensor:
        k = torch.floor(self.half_scale * u.abs()).clamp(max=self.kmax).long()
        return torch.where(k == 0, torch.zeros_like(k), torch.where(u > 0, k, k + self.kmax))

    def frames(self, th: Tensor, u: Tensor) -> Tensor:
        b = torch.floor((self.angle_normalize(th) + math.pi) / (2 * math.pi) * self.bins).long() % self.bins
        return self.table[self.u_class(u), b]

    def table_check(self, env: Any, n: int = 256, seed: int = 0) -> dict[str, float]:
        """Looked-up vs drawn frames on random (theta, torque): mean |pixel difference| (0..255) and the
        fraction of pixels that differ."""
        from noether_rl.envs.pixel_pendulum import draw_pendulum

        rng = np.random.default_rng(seed)
        th, u = rng.uniform(-math.pi, math.pi, n), rng.uniform(-2, 2, n)
        drawn = np.stack([draw_pendulum(env.unwrapped, float(a), float(b)) for a, b in zip(th, u)])
        got = self.frames(torch.tensor(th), torch.tensor(u)).permute(0, 2, 3, 1).numpy()
        d = np.abs(drawn.astype(np.int16) - got.astype(np.int16))
        return {"mean_abs_pixel_diff": float(d.mean()), "frac_pixels_differing": float(d.any(-1).mean()),
                "theta_bins": self.bins}

    @torch.no_grad()
    def returns(self, state: Tensor, seqs: Tensor, last_u: Tensor | None = None) -> Tensor:
        B, N, H, _ = seqs.shape
        u = seqs[..., 0].to(torch.float64).clamp(-self.max_torque, self.max_torque)  # [B, N, H]
        th = state[:, 0:1].to(torch.float64).expand(B, N)
        thd = state[:, 1:2].to(torch.float64).expand(B, N)
        ths = [th]
        for t in range(H):
            th, thd, _ = self.step(th, thd, u[:, :, t])
            ths.append(th)
        th_all = torch.stack(ths, 2)  # [B, N, H+1]
        lu = torch.zeros(B, dtype=torch.float64) if last_u is None else last_u.to(torch.float64)
        u_prev = torch.cat([lu[:, None, None].expand(B, N, 1), u[:, :, :-1]], 2)
        prev = self.frames(th_all[:, :, :-1], u_prev).flatten(0, 2)  # [B*N*H, C, h, w] uint8
        nxt = self.frames(th_all[:, :, 1:], u).flatten(0, 2)
        acts = seqs.reshape(-1, seqs.shape[-1]).float()
        out = torch.cat([self.reward(prev[i:i + self.chunk].float() / 255, acts[i:i + self.chunk],
                                     nxt[i:i + self.chunk].float() / 255)
                         for i in range(0, prev.shape[0], self.chunk)])
        return out.view(B, N, H).to(torch.float64).sum(-1)


def self_check(n: int = 256, seed: int = 0) -> dict[str, float]:
    """Oracle vs the env on random states and actions: max |difference| of next state and reward."""
    rng = np.random.default_rng(seed)
    env = make_real_env(PIXEL_PENDULUM_ID, (32, 32, 3))
    oracle = PendulumOracle(env)
    env.reset(seed=seed)
    ds, dr = 0.0, 0.0
    for _ in range(n):
        s = np.array([rng.uniform(-math.pi, math.pi), rng.uniform(-8, 8)])
        a = rng.uniform(-2, 2, size=1).astype(np.float32)
        env.unwrapped.state = s.copy()
        _, r, _, _, _ = env.step(a)
        th, thd, ro = oracle.step(torch.tensor(s[0:1]), torch.tensor(s[1:2]), torch.tensor(a, dtype=torch.float64))
        ds = max(ds, abs(float(th[0]) - env.unwrapped.state[0]), abs(float(thd[0]) - env.unwrapped.state[1]))
        dr = max(dr, abs(float(ro[0]) - r))
    env.close()
    return {"max_abs_state_diff": ds, "max_abs_reward_diff": dr, "transitions": n}


def pixel_state(obs: np.ndarray, prev: np.ndarray, dt: float) -> Tensor:
    """The state a perfect model could at best read off the observations: theta from the current frame's rod
    pixels (``pendulum_angle_from_frames``), theta_dot from its wrapped difference to the previous frame's
    angle over ``dt``. obs, prev: uint8 [n, H, W, 3] -> [n, 2] float64."""
    from noether_rl.agents.reward import pendulum_angle_from_frames

    def angle(o: np.ndarray) -> Tensor:
        return pendulum_angle_from_frames(torch.from_numpy(o).permute(0, 3, 1, 2).double() / 255)

    th, th_prev = angle(obs), angle(prev)
    return torch.stack([th, PendulumOracle.angle_normalize(th - th_prev) / dt], 1)


def run_oracle_mpc(s: Setting, seeds: list[int], steps: int, size: int, planner_seed: int = 0,
                   model: dict[str, float] | None = None, reward: Any = None,
                   from_pixels: bool = False) -> dict[str, Any]:
    """Seeded real-env episodes in lockstep, planned as MPCAgent does (batched over episodes). ``model``:
    PendulumOracle keyword arguments of a deliberately wrong planning model (the tolerance rows); ``reward``: a
    learned reward model (true dynamics, learned reward on the drawn frames); ``from_pixels``: plan from the
    state read off the last two observations (:func:`pixel_state`) instead of the env's true state (true
    dynamics and reward): what the observation's resolution alone allows a perfect model."""
    envs = [make_real_env(PIXEL_PENDULUM_ID, (size, size, 3), steps) for _ in seeds]
    obs = np.stack([e.reset(seed=int(sd))[0] for e, sd in zip(envs, seeds)])
    prev_obs = obs.copy()
    state_err: list[np.ndarray] = []
    oracle = (LearnedRewardOracle(envs[0], reward) if reward is not None
              else PendulumOracle(envs[0], seed=planner_seed, **(model or {})))
    space = envs[0].action_space
    planner = make_planner(s.planner, s.horizon, space.low, space.high, population=s.population,
                           iterations=s.iterations, seed=planner_seed)
    n = len(envs)
    returns = np.zeros(n)
    thetas = np.zeros((n, steps))
    done = np.zeros(n, dtype=bool)
    plan: Tensor | None = None
    since, calls, cpu = 0, 0, 0.0
    t = 0
    while not done.all():
        if plan is None or since >= s.replan_every:
            state = torch.tensor(np.stack([e.unwrapped.state for e in envs]), dtype=torch.float64)  # [n, 2]
            if from_pixels:
                est = pixel_state(obs, prev_obs, oracle.dt)
                live = ~done
                err = (est - state).numpy()
                err[:, 0] = PendulumOracle.angle_normalize(torch.from_numpy(err[:, 0])).numpy()
                state_err.append(np.abs(err[live]))
                state = est
            last_u = torch.tensor([float(e.unwrapped.last_u or 0.0) for e in envs], dtype=torch.float64)
            c0 = time.process_time()
            if plan is not None:
                planner.advance(since)
            plan = planner.plan(lambda seqs, st=state, lu=last_u: oracle.returns(st, seqs, lu), batch_size=n)
            cpu += time.process_time() - c0
            calls += 1
            since = 0
        actions = plan[:, since].numpy().astype(np.float32)
        since += 1
        prev_obs = obs.copy()
        for i, env in enumerate(envs):
            if done[i]:
                continue
            thetas[i, t] = PendulumOracle.angle_normalize(torch.tensor(float(env.unwrapped.state[0]))).item()
            obs[i], r, term, trunc, _ = env.step(actions[i])
            returns[i] += r
            done[i] = term or trunc
        t += 1
    for e in envs:
        e.close()
    upright = (np.abs(thetas[:, max(0, t - LAST):t]) < BALANCE_RAD).mean(1)
    res = {"setting": asdict(s), "seeds": seeds, "returns": mean_se(returns.tolist()),
            "balanced_episodes": int((upright >= 0.9).sum()), "upright_frac_last50": upright.tolist(),
            "plan_calls": calls, "cpu_s_per_batched_plan": cpu / max(calls, 1), "problems_per_call": n}
    if from_pixels:
        e = np.concatenate(state_err)
        res["pixel_state_abs_error"] = {"theta_deg_mean": float(np.degrees(e[:, 0]).mean()),
                                        "theta_dot_mean": float(e[:, 1].mean()), "plan_calls": int(len(e))}
    if isinstance(oracle, LearnedRewardOracle):
        res["frame_table_check"] = oracle.table_check(envs[0])
    if model:
        res["planning_model"] = dict(model)
        res["planning_model_angle_error_deg"] = oracle.angle_error_deg(PendulumOracle(envs[0]))
    return res


def time_single(s: Setting, repeats: int, planner_seed: int = 0, reward: Any = None, size: int = 32) -> float:
    """CPU seconds per plan call for ONE problem (hanging down at rest, warm start shifted by replan_every)."""
    env = make_real_env(PIXEL_PENDULUM_ID, (size, size, 3))
    oracle = LearnedRewardOracle(env, reward) if reward is not None else PendulumOracle(env)
    space = env.action_space
    env.close()
    planner = make_planner(s.planner, s.horizon, space.low, space.high, population=s.population,
                           iterations=s.iterations, seed=planner_seed)
    state = torch.tensor([[math.pi, 0.0]], dtype=torch.float64)
    planner.plan(lambda x: oracle.returns(state, x), batch_size=1)  # warm-up
    c0 = time.process_time()
    for _ in range(repeats):
        planner.advance(s.replan_every)
        planner.plan(lambda x: oracle.returns(state, x), batch_size=1)
    return (time.process_time() - c0) / repeats


def _circ_std(a: Tensor, dim: int) -> Tensor:
    """Circular standard deviation (radians) along ``dim``."""
    R = torch.complex(torch.cos(a), torch.sin(a)).mean(dim).abs().clamp(1e-12, 1.0)
    return (-2 * torch.log(R)).sqrt()


@torch.no_grad()
def score_agreement(checkpoint: str, reward_path: str, seeds: list[int], steps: int, *, n_contexts: int = 10,
                    population: int = 64, horizon: int = 15, check_steps: tuple[int, ...] = (1, 5, 15)) -> dict[str, Any]:
    """Does the world model rank candidate action sequences like the truth? At ``n_contexts`` real states of
    each seeded scripted swing-up episode (evenly spaced; the context is the real last ``n_past`` frames and
    actions), ``population`` candidates drawn as CEM's first iteration (N(centre, half-range) clipped) are
    scored by: the true dynamics + true reward; the true dynamics + the learned reward on the env's frames; the
    world model (untailored / tailored, shared mode) + the learned reward, i.e. the demo's MPC objective.
    Per context: Spearman correlation with the true score and the true-return regret of each score's best
    candidate; plus, per imagined step k, the circular spread over candidates of the pendulum angle read off
    the frames (imagined vs true frames, same pixel estimator) and the per-candidate angle error. Means over
    an episode's contexts, then mean ± s.e. over episodes."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from scipy.stats import spearmanr

    from noether_rl.agents.reward import pendulum_angle_from_frames
    from noether_rl.agents.runs import RewardSpec, load_world_model
    from noether_rl.recorders.policies import swingup_torque

    with TemporaryDirectory() as tmp:
        wm, _ = load_world_model(checkpoint, RewardSpec(kind="learned", path=reward_path), torch.device("cpu"),
                                 Path(tmp))
    P = wm.n_past
    size = wm.obs_shape[0]
    env0 = make_real_env(PIXEL_PENDULUM_ID, wm.obs_shape)
    env0.reset(seed=0)
    truth = PendulumOracle(env0)
    learned = LearnedRewardOracle(env0, wm.reward)
    keys = ("true dynamics + learned reward", "world model untailored + learned reward",
            "world model tailored + learned reward")
    per_ep: dict[str, list[float]] = {}

    def add(name: str, v: float) -> None:
        per_ep.setdefault(name, []).append(v)

    for sd in seeds:
        env = make_real_env(PIXEL_PENDULUM_ID, wm.obs_shape, steps)
        obs, _ = env.reset(seed=int(sd))
        frames, acts, states = [obs], [], []
        for _ in range(steps):
            states.append(np.array(env.unwrapped.state, dtype=np.float64))
            th, thd = angle_normalize(states[-1][0]), states[-1][1]
            a = np.array([swingup_torque(float(th), float(thd))], np.float32)
            obs, _, term, trunc, _ = env.step(a)
            frames.append(obs)
            acts.append(a)
            if term or trunc:
                break
        env.close()
        ts = np.linspace(P - 1, len(acts) - 1, n_contexts).round().astype(int)
        ctx = torch.from_numpy(np.stack([np.stack(frames[t - P + 1:t + 1]) for t in ts]))  # uint8 [B, P, H, W, C]
        ctx_a = torch.from_numpy(np.stack([np.stack(acts[t - P + 1:t]) for t in ts]))  # [B, P-1, 1]
        state = torch.from_numpy(np.stack([states[t] for t in ts]))  # [B, 2]
        last_u = torch.tensor([float(acts[t - 1][0]) for t in ts], dtype=torch.float64)
        g = torch.Generator().manual_seed(1000 + int(sd))
        B = len(ts)
        seqs = (torch.randn(B, population, horizon, 1, generator=g) * 2.0).clamp(-2.0, 2.0)
        scores = {"true": truth.returns(state, seqs), keys[0]: learned.returns(state, seqs, last_u)}
        torch.manual_seed(int(sd))
        ims = {}
        for tailor, key in ((False, keys[1]), (True, keys[2])):
            im = wm.imagine(ctx, ctx_a, seqs, tailor=tailor)
            scores[key] = im.rewards.double().sum(-1)
            ims[key] = im.frames
        # true angle per step, read off the env's frames with the same estimator as the imagined ones
        th, thd = state[:, 0:1].expand(B, population), state[:, 1:2].expand(B, population)
        ths = []
        for t in range(horizon):
            th, thd, _ = truth.step(th, thd, seqs[..., t, 0].double())
            ths.append(th)
        th_true = torch.stack(ths, 2)  # [B, N, H]
        ang_true = pendulum_angle_from_frames(learned.frames(th_true, seqs[..., 0].double()).flatten(0, 2).float() / 255)
        ang_true = ang_true.view(B, population, horizon).double()
        for k in keys:
            rho = [spearmanr(scores[k][b].numpy(), scores["true"][b].numpy())[0] for b in range(B)]
            add(f"spearman vs true: {k}", float(np.nanmean(rho)))
            best = scores[k].argmax(1)
            regret = scores["true"].max(1).values - scores["true"].gather(1, best[:, None])[:, 0]
            add(f"true-return regret of its best candidate: {k}", float(regret.mean()))
        rho = [spearmanr(scores[keys[1]][b].numpy(), scores[keys[0]][b].numpy())[0] for b in range(B)]
        add("spearman world model untailored vs true dynamics (same learned reward)", float(np.nanmean(rho)))
        add("true-return regret of a random candidate", float((scores["true"].max(1).values
                                                              - scores["true"].mean(1)).mean()))
        for k in check_steps:
            add(f"angle spread over candidates (deg), true frames, step {k}",
                float(_circ_std(ang_true[:, :, k - 1], 1).mean() * 180 / math.pi))
            for key in keys[1:]:
                a = pendulum_angle_from_frames(ims[key][:, :, k - 1].flatten(0, 1)).view(B, population).double()
                add(f"angle spread over candidates (deg), {key.split(' +')[0]}, step {k}",
                    float(_circ_std(a, 1).mean() * 180 / math.pi))
                err = PendulumOracle.angle_normalize(a - ang_true[:, :, k - 1]).abs().mean()
                add(f"angle error under candidate actions (deg), {key.split(' +')[0]}, step {k}",
                    float(err * 180 / math.pi))
    env0.close()
    return {"checkpoint": checkpoint, "reward_model": reward_path, "seeds": seeds, "contexts_per_episode": n_contexts,
            "population": population, "horizon": horizon, "frame_size": size,
            "candidates": "N(0, 2) clipped to [-2, 2] per step (CEM's first iteration from the centre)",
            "contexts": "evenly spaced states of the scripted swing-up episode; real last n_past frames/actions",
            "metrics": {k: mean_se(v) for k, v in per_ep.items()}}


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return mean_se((np.asarray(a["returns"]["values"]) - np.asarray(b["returns"]["values"])).tolist())


def fmt(ms: dict[str, Any]) -> str:
    return f"{ms['mean']:8.1f} ± {ms['se']:5.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="write JSON here")
    p.add_argument("--eval-seed", type=int, default=0, help="first evaluation seed (the demo's: 0)")
    p.add_argument("--select-seed", type=int, default=100, help="first selection seed (disjoint from eval)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per row (default: the demo's)")
    p.add_argument("--steps", type=int, default=None, help="steps per episode (default: the demo's)")
    p.add_argument("--sweep", action="store_true", help="select CEM settings on the selection seeds")
    p.add_argument("--horizons", type=int, nargs="+", default=[15, 25, 40])
    p.add_argument("--populations", type=int, nargs="+", default=[64, 256])
    p.add_argument("--iterations", type=int, nargs="+", default=[3, 5])
    p.add_argument("--replans", type=int, nargs="+", default=[1, 3])
    p.add_argument("--timing-repeats", type=int, default=20)
    p.add_argument("--tolerance", action="store_true",
                   help="also plan (demo settings, CEM) with deliberately wrong models: torque effect x0.5/x0.25/x0, "
                        "gravity x0.8/x1.25, i.i.d. reward noise of variance 0.68 (the learned reward's val MSE) "
                        "and 15 (the reward's variance); plus a zero-torque row. Nothing is selected here.")
    p.add_argument("--reward-model", default=None,
                   help="a learned reward (e.g. the demo's OUT/reward.pt): adds a row with the TRUE dynamics and this "
                        "reward on the env's frames, at the demo's settings (CEM)")
    p.add_argument("--checkpoint", default=None,
                   help="with --reward-model: the demo's world model (e.g. OUT/noether/last.pt): how well its "
                        "imagined candidate scores rank like the truth (score_agreement)")
    p.add_argument("--from-pixels", action="store_true",
                   help="also plan with the true dynamics and reward from the state read off the 32x32 observations "
                        "(angle from the rod's pixels, velocity from two frames): what the resolution alone allows, "
                        "at the demo's setting and replanning every step (CEM); with the true state too, per horizon")
    p.add_argument("--pixel-horizons", type=int, nargs="+", default=[15],
                   help="with --from-pixels: planning horizons to run (e.g. 5 8 10 15: how short a horizon still "
                        "balances with a perfect model)")
    p.add_argument("--only-agreement", action="store_true", help="with --checkpoint: skip the learned-reward episode rows")
    args = p.parse_args()
    if args.checkpoint and not args.reward_model:
        raise SystemExit("--checkpoint needs --reward-model (the reward the demo's MPC used)")
    for path in (args.checkpoint, args.reward_model):
        if path and not Path(path).is_file():  # a mistyped reward path would be fitted and written there
            raise SystemExit(f"{path} does not exist")
    torch.set_num_threads(1)

    demo = SCALES["small-long"]  # the settings of the README's main agents figures
    episodes = args.episodes or demo.eval_episodes
    steps = args.steps or demo.eval_steps
    eval_seeds = [args.eval_seed + i for i in range(episodes)]
    select_seeds = [args.select_seed + i for i in range(episodes)]
    if set(eval_seeds) & set(select_seeds):
        raise SystemExit("selection and evaluation seeds overlap; choose a different --select-seed")
    base = Setting(demo.planner, demo.population, demo.horizon, demo.iterations, demo.replan_every)
    size = demo.size
    t_start = time.process_time()
    out: dict[str, Any] = {"benchmark": "mpc_oracle", "self_check": self_check(), "demo_setting": asdict(base),
                           "eval_seeds": eval_seeds, "steps": steps, "torch_threads": torch.get_num_threads(),
                           "balanced_definition": f"|theta| < {BALANCE_RAD} rad on >= 90% of the last {LAST} steps"}

    # baselines (the package's)
    probe = make_real_env(PIXEL_PENDULUM_ID, (size, size, 3))
    rand = run_episodes(random_policy(probe.action_space, args.eval_seed),
                        lambda: make_real_env(PIXEL_PENDULUM_ID, (size, size, 3), steps), eval_seeds)
    probe.close()
    rows: dict[str, dict[str, Any]] = {
        "random": {"returns": mean_se(rand)},
        "scripted swing-up": {"returns": mean_se(scripted_returns(PIXEL_PENDULUM_ID, size, eval_seeds, steps))},
    }
    for name in ("cem", "icem", "mppi"):
        s = Setting(name, base.population, base.horizon, base.iterations, base.replan_every)
        r = run_oracle_mpc(s, eval_seeds, steps, size)
        r["cpu_s_per_plan_single"] = time_single(s, args.timing_repeats)
        rows[f"oracle {s.name} (demo)"] = r
    out["eval_rows"] = rows
    if args.checkpoint:
        if not args.reward_model:
            raise SystemExit("--checkpoint needs --reward-model (the reward the demo's MPC used)")
        c0 = time.process_time()
        agr = score_agreement(args.checkpoint, args.reward_model, eval_seeds, steps)
        agr["cpu_s"] = time.process_time() - c0
        out["score_agreement"] = agr
        print(f"\nscore agreement, scripted swing-up states of seeds {eval_seeds[0]}..{eval_seeds[-1]} "
              f"({agr['contexts_per_episode']} contexts each; mean ± s.e. over episodes)")
        for k, v in agr["metrics"].items():
            print(f"  {k:90s} {v['mean']:8.3f} ± {v['se']:6.3f}")
    if args.reward_model and not args.only_agreement:
        from noether_rl.agents.reward import load_reward

        rmodel = load_reward(args.reward_model, "cpu")
        r = run_oracle_mpc(base, eval_seeds, steps, size, reward=rmodel)
        r["cpu_s_per_plan_single"] = time_single(base, max(2, args.timing_repeats // 5), reward=rmodel, size=size)
        r["reward_model"] = args.reward_model
        rows[f"true dynamics + learned reward, {base.name}"] = r
    if args.from_pixels:
        for h, k in itertools.product(args.pixel_horizons, sorted({base.replan_every, 1})):
            s = Setting("cem", base.population, h, base.iterations, k)
            for label, fp in (("true state", False), ("state from pixels", True)):
                r = run_oracle_mpc(s, eval_seeds, steps, size, from_pixels=fp)
                r["cpu_s_per_plan_single"] = time_single(s, args.timing_repeats)
                rows[f"{label}, {s.name}"] = r
    if args.tolerance:
        zero = run_episodes(lambda o, *a: (np.zeros((len(o), 1), np.float32), None),
                            lambda: make_real_env(PIXEL_PENDULUM_ID, (size, size, 3), steps), eval_seeds)
        rows["zero torque"] = {"returns": mean_se(zero)}
        for label, kw in (("torque effect x0.5", {"u_scale": 0.5}), ("torque effect x0.25", {"u_scale": 0.25}),
                          ("torque effect x0 (ignores actions)", {"u_scale": 0.0}),
                          ("gravity x0.8", {"g_scale": 0.8}), ("gravity x1.25", {"g_scale": 1.25}),
                          ("reward noise var 0.68", {"reward_noise_sd": math.sqrt(0.68)}),
                          ("reward noise var 15", {"reward_noise_sd": math.sqrt(15.0)})):
            r = run_oracle_mpc(base, eval_seeds, steps, size, model=kw)
            r["cpu_s_per_plan_single"] = time_single(base, args.timing_repeats)
            rows[f"wrong model: {label}, {base.name}"] = r

    if args.sweep:
        sweep = []
        for h, n, it, k in itertools.product(args.horizons, args.populations, args.iterations, args.replans):
            if k > h:
                continue
            s = Setting("cem", n, h, it, k)
            r = run_oracle_mpc(s, select_seeds, steps, size)
            r["cpu_s_per_plan_single"] = time_single(s, args.timing_repeats)
            sweep.append(r)
            print(f"[select {select_seeds[0]}..{select_seeds[-1]}] {s.name:42s} {fmt(r['returns'])}  "
                  f"balanced {r['balanced_episodes']}/{episodes}  cpu/plan {1e3 * r['cpu_s_per_plan_single']:.2f} ms",
                  flush=True)
        best = max(sweep, key=lambda r: r["returns"]["mean"])
        ok = []
        for r in sweep:
            d = paired(best, r)
            r["best_minus_this"] = d
            if r is best or d["mean"] <= d["se"]:
                ok.append(r)
        chosen = min(ok, key=lambda r: r["cpu_s_per_plan_single"])
        out["selection"] = {"seeds": select_seeds, "planner": "cem",
                            "rule": "best selection mean; choice = cheapest (CPU s/plan, one problem) setting "
                                    "whose paired difference to the best is within one s.e.",
                            "grid": sweep, "best": best["setting"], "chosen": chosen["setting"]}
        picks = {"chosen": chosen["setting"]}
        if best is not chosen:
            picks["best"] = best["setting"]
        for tag, st in picks.items():
            s = Setting(**st)
            r = run_oracle_mpc(s, eval_seeds, steps, size)
            r["cpu_s_per_plan_single"] = time_single(s, args.timing_repeats)
            rows[f"oracle {s.name} ({tag} on seeds {select_seeds[0]}..{select_seeds[-1]})"] = r

    demo_row = rows[f"oracle {base.name} (demo)"]
    out["paired_eval"] = {f"{k} - random": paired(v, rows["random"]) for k, v in rows.items() if k != "random"}
    out["paired_eval"].update({f"scripted swing-up - {k}": paired(rows["scripted swing-up"], v)
                               for k, v in rows.items() if k.startswith("oracle")})
    out["paired_eval"].update({f"{k} - oracle demo": paired(v, demo_row)
                               for k, v in rows.items() if k.startswith(("oracle", "wrong", "true dyn", "true state", "state from")) and v is not demo_row})
    out["cpu_s_total"] = time.process_time() - t_start

    print(f"\nreal-env returns, {steps}-step episodes, evaluation seeds {eval_seeds[0]}..{eval_seeds[-1]} "
          f"(mean ± s.e. over {episodes} episodes; CPU ms per plan call for one problem, 1 thread, under load)")
    for k, v in rows.items():
        extra = ""
        if "balanced_episodes" in v:
            extra = (f"  balanced {v['balanced_episodes']}/{episodes}  cpu/plan "
                     f"{1e3 * v['cpu_s_per_plan_single']:.2f} ms ({1 / v['cpu_s_per_plan_single']:.0f} plans/CPU-s)")
        if "planning_model_angle_error_deg" in v:
            extra += "  model angle err " + "/".join(f"{x:.1f}" for x in v["planning_model_angle_error_deg"].values())
        print(f"  {k:72s} {fmt(v['returns'])}{extra}")
    print("paired differences (mean ± s.e. over seeds):")
    for k, v in out["paired_eval"].items():
        print(f"  {k:90s} {fmt(v)}")
    if args.out:
        from noether_rl.utils.io import atomic_write_json

        atomic_write_json(args.out, out)
        print(f"wrote {args.out}")
    else:
        print(json.dumps({"self_check": out["self_check"]}))


if __name__ == "__main__":
    main()
