"""Pixel-pendulum swing-up from pixels with a (tailored) world model (``noether-rl reproduce pendulum-control``).

Pipeline (every stage is reused by a rerun: recordings resume, finished training runs are skipped, the
reward model, the SB3 agent and each evaluated row are cached in ``out``):

1. record ``episodes`` episodes of the ``mixed`` policy (per episode sine, random or a noisy swing-up:
   varied actions and states including the upright ones a swing-up needs; a swing-up-only dataset makes the
   SVG memorise its episodes) -- split train / val / test by episode (:func:`episode_split`);
2. train the small SVG on the train episodes (teacher forcing), fine-tune it on its own rollouts
   (``free_running_epochs``: the teacher-forced model ignores the actions, see ``Scale``);
3. fit the reward CNN on the train episodes' recorded rewards (its MSE on val episodes is reported);
   then data aggregation (``aggregate_rounds``, see ``Scale`` and :func:`aggregate`): untailored MPC with the
   current predictor collects real-env episodes on collection seeds, they join the training episodes, and
   the predictor is fine-tuned on them; finally g_phi is meta-trained (Alg. 1, predictor frozen) from the
   aggregated predictor on the aggregated recording;
4. world-model quality on the TEST episodes, BEFORE any planning (``results.json`` is written with it
   first, ``"stage": "world model"``): per-step pendulum angle error of SVG, Noether and the
   copy-last-frame floor (``noether_rl.experiments.evaluation``); fidelity of the model *environment*
   (sliding window, as ``WorldModelEnv`` steps) against the recording under the recorded actions: frame MSE
   at horizons 10 / 25 / 50, tailored vs untailored, paired per test episode;
5. real-env returns over ``eval_episodes`` seeded episodes, the SAME seeds for every row: random, scripted
   swing-up (true state), MPC untailored, MPC tailored (same Noether checkpoint, tailoring off / on), and an
   SB3 agent trained inside the (tailored) model. Paired differences with standard errors over episodes.

Earlier reduced run (an older recipe: 50 ``sine`` episodes (40 / 5 / 5), SVG 8 epochs and Noether 1 epoch at
stride 10, 100-step evaluation episodes, 2 heavily shared cores): the SVG's held-out angle error equalled the
copy-last-frame floor (7.6 / 37 / 70 degrees at steps 1 / 5 / 10) and MPC did not beat random. The defaults
follow the issue's measured recipe instead (small SVG 32x32, width 16, LSTM 2x128, layer norm, 20 epochs at
stride 5 on 60 training episodes: 2.5 / 14 / 33 degrees vs 7.5 / 38 / 72 for copy-last on ``sine`` data), on
``mixed`` data, with 40 teacher-forced epochs since 34a345d (``Scale.svg_epochs``: the plateau). Per-stage wall and CPU seconds go to ``results.json`` (``wall_time_s``, ``cpu_time_s``).

Nothing is selected on the test episodes or on the evaluation seeds: settings are fixed in advance or chosen on
non-test data, each with its reason in ``Scale`` (the val episodes chose ``free_running_epochs`` and report the
reward model's error; selection seeds 100-109 chose the planner's replanning interval and, for ``small``, the
optimiser (iCEM); training-loss curves chose ``svg_epochs``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noether_rl.agents.model_env import WorldModelVectorEnv
from noether_rl.agents.runs import (
    DreamConfig,
    PlanConfig,
    RewardSpec,
    build_reward,
    load_world_model,
    make_real_env,
    mean_se,
    random_policy,
    run_dream_train,
    run_episodes,
    run_plan,
)
from noether_rl.agents.world_model import WorldModel, obs_to_tensor
from noether_rl.data import episode_split, load_manifest, open_episode
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.errors import UserError
from noether_rl.eval.results import write_results
from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.recorders import RecordConfig, record
from noether_rl.recorders.policies import swingup_torque
from noether_rl.tailoring import TailorConfig
from noether_rl.training import DataConfig, TrainConfig, train
from noether_rl.utils.device import resolve_device
from noether_rl.utils.io import read_json_or_none, sha256_file


@dataclass(frozen=True)
class Scale:
    """One recipe of the demo. The field defaults are scale ``small-long``'s; ``SCALES`` holds the named ones."""

    size: int = 32
    width: int = 16
    g_dim: int = 64
    rnn_size: int = 128
    policy: str = "mixed"  # recording policy (noether_rl.recorders.POLICIES)
    episodes: int = 80  # recorded episodes: train / val / test below
    train_episodes: int = 60
    val_episodes: int = 10
    steps: int = 200
    n_past: int = 4
    n_future: int = 10
    stride: int = 5
    # teacher-forced epochs. 40, not 20 (the recipe of every figure before 2026-11-29): the teacher-forced SVG
    # first sits on a plateau (training loss ~0.05: a blurred rod-free frame) and leaves it (to ~0.011) at an
    # epoch that depends on the float path: epoch 6 (before 215ec17), 11 / 12 (seed 1 / seed 0, 1 thread) and
    # 22 (seed 0, 2 threads: the default run at 42b8df1, stuck after its 20). Decided on these TRAINING-loss
    # curves only (benchmarks-free: rerun ``train`` on the recording); costs ~4 min on 2 cores.
    svg_epochs: int = 40
    # then the SVG is fine-tuned on its own n_future-frame rollouts (TrainConfig.objective "free_running").
    # Why: teacher forcing barely sees the torque (one step moves the rod < 1 degree), and the teacher-forced
    # model ignores actions (benchmarks/action_sensitivity.py on the VALIDATION episodes: shuffling the future
    # actions changes its step-10 angle error by -0.1 +- 0.4 degrees, while the true dynamics move the angle
    # 16.6 degrees), so MPC cannot plan with it. 5 epochs at lr 5e-4 (2f468d2) were not enough. Chosen on the
    # validation episodes (step-10 angle error under the recorded actions, lr 1e-3 fixed in advance) among 20 /
    # 40 / 60 / 80 epochs: 15.2 / 10.6 / 7.8 / 7.7 degrees (teacher-forced SVG: 22.6), shuffle effect
    # +3.1 / +6.9 / +7.9 / +9.7 degrees (80 chosen for small-long; the default small uses 60 to fit the budget).
    free_running_epochs: int = 80
    free_running_lr: float = 1e-3
    # then data aggregation (``noether_rl.agents.aggregation``; PETS / PlaNet style): per round, untailored MPC
    # with the current predictor runs ``aggregate_episodes`` real-env episodes on COLLECTION seeds
    # (``aggregate_seed + 100 r + i``, never the evaluation seeds), they join the training episodes, and the
    # predictor is fine-tuned ``aggregate_epochs`` more free-running epochs. Why: the model trained on the mixed
    # recording is much worse on the action sequences CEM proposes than on recorded ones (step-15 angle error
    # 36 vs 17 degrees), and MPC stayed at the random return. Rounds / episodes / epochs fixed in advance (not
    # selected); the per-round collection returns are reported.
    aggregate_rounds: int = 3
    aggregate_episodes: int = 10
    # 15 per round, every scale. Tried for small's one round (3fd1001, reverted in the next commits): 35. On
    # SELECTION seeds 100-109 (benchmarks/finetune_arms.py: 20 more free-running epochs on the round's recording
    # from the round-0 predictor of the run at 34a345d, fresh optimiser; iCEM 64 x 15 x 3, replanning every 3,
    # untailored): -817 +- 24 vs -984 +- 27, paired +167 +- 41 (no rule fixed before that arm ran: it was the
    # control of the pyramid arm). But the recipe with 35 epochs, run from scratch, took 65.7 min on 2 cores (over
    # the 60-minute budget; the machine ran ~1.3x slower than for the 50.4-min run: the identical collection round
    # took 237 vs 183 s), so it was reverted on the budget. Its evaluation rows, reported once: untailored -966 +-
    # 55, tailored -900 +- 46 (paired against this recipe's -36 +- 86 / +4 +- 72). Two other arms, same start,
    # data and epochs, against the plain arm (rule fixed before they ran: keep if better by > 1 paired s.e.): the
    # pyramid loss (TrainConfig.pyramid_levels 3) -863 +- 17, paired -46 +- 22; n_future 15 = the planning
    # horizon -927 +- 91, paired -111 +- 85: neither kept.
    aggregate_epochs: int = 15
    aggregate_seed: int = 1000
    aggregate_replan_every: int = 3  # the collecting MPC's replanning interval (the reported rounds' setting)
    aggregate_planner: str = "cem"  # the collecting MPC's optimiser (every reported round's); ``planner``: the rows'
    # std of Gaussian noise added to the collecting MPC's executed actions (``with_action_noise``; 0 = none, the
    # setting of every reported run). Measured once, on SELECTION seeds 100-109 (benchmarks/aggregation_noise.py:
    # one more round from small-long's round-2 model, 10 episodes on collection seeds 1400-1409, 15 epochs; MPC
    # untailored replanning every 3): noise 1.0 -766 +- 20 vs none -901 +- 26, paired +135 +- 25; reported once on
    # the evaluation seeds 0-9 (nothing chosen there): -753 +- 34 vs -810 +- 38, paired +58 +- 46 (n.s.). Not the
    # default: the gain did not clearly carry over, and the default run's figures were measured without it.
    aggregate_action_noise: float = 0.0
    noether_epochs: int = 4
    batch_size: int = 16
    reward_epochs: int = 10
    eval_windows: int = 256
    fidelity_starts: tuple[int, ...] = (0, 70, 140)  # window starts per test episode (fidelity)
    eval_episodes: int = 10
    eval_steps: int = 200  # real-env episode length for every row
    # the MPC rows' optimiser (cem | icem | mppi). "small" uses icem: chosen for its trained model (the run at
    # 34a345d) on SELECTION seeds 100-109 by benchmarks/plan_sweep.py's rule fixed in advance (best mean; among
    # those within one paired s.e. the cheapest, ties in grid order), 64 x 15 x 3, replanning every 3, untailored:
    # cem -1098 +- 20, icem -984 +- 27, mppi -938 +- 51. small-long's figures are cem's.
    planner: str = "cem"
    horizon: int = 15  # 0.75 s of the 0.05 s steps
    population: int = 64  # 10 episodes x 64 candidates x 15 steps x 3 iterations = 28800 imagined frames per plan
    iterations: int = 3
    # replan every step: chosen for the aggregated model on SELECTION seeds 100-109 (benchmarks/plan_sweep.py,
    # rule fixed in advance: best mean, cheapest within one paired s.e.): every step -777 +- 30, every 3 steps
    # -921 +- 34 (small-long's setting; the default small replans every 3 to fit the budget: every step triples
    # the MPC rows' cost)
    replan_every: int = 1
    precision: str = "float32"  # of the MPC candidate rollouts (WorldModel precision)
    dream_algo: str = "ppo"
    dream_steps: int = 20000
    dream_envs: int = 8


# "small": the CPU default, sized for the 60-minute budget on 2 cores: measured from scratch at 34a345d's
# recipe, 50.4 min (teacher-forced SVG 40 epochs 9.8, free-running 60 epochs 17.1, one aggregation round 7.2,
# meta-training 7.6, MPC rows 3.0 + 3.1 (replanning every 3 steps), PPO 2.1, the rest 0.5; results.json ->
# wall_time_s). What the budget costs, measured on non-test data only: 60 instead of 80
# free-running epochs (validation step-10 angle error 7.8 vs 7.7 degrees, see ``Scale.free_running_epochs``);
# one aggregation round instead of three (MPC return on each round's own collection seeds: -1165 before, -892
# after one round, -902 / -911 after two / three); replanning every 3 steps instead of every step (selection
# seeds 100-109: -921 +- 34 vs -777 +- 30). "small-long": the recipe behind the README's main agents figures
# except svg_epochs (20 there; ~2 h on 2 cores). "paper": the paper's 64x64 frames, GPU-sized budgets (the names the
# other ``reproduce`` experiments use; its svg_epochs=30 (the 32x32 plateau study argues for >= 40 there),
# free_running_epochs=30 and aggregation settings are guesses, not chosen on validation data: never run).
SCALES: dict[str, Scale] = {
    "small": Scale(free_running_epochs=60, aggregate_rounds=1, replan_every=3, planner="icem"),
    "small-long": Scale(),
    "paper": Scale(size=64, width=64, g_dim=128, rnn_size=256, episodes=240, train_episodes=200, val_episodes=20,
                 stride=2, svg_epochs=30, free_running_epochs=30, noether_epochs=10, population=256, iterations=3, horizon=15,
                 replan_every=1, dream_steps=200_000, dream_envs=32, eval_episodes=20),
}


@dataclass(frozen=True)
class PendulumControlConfig:
    out: str
    scale: str = "small"
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # Scale fields to change (toy runs, studies)

    @property
    def spec(self) -> Scale:
        if self.scale not in SCALES:
            raise UserError(f"unknown scale {self.scale!r}; choose one of {sorted(SCALES)}")
        return replace(SCALES[self.scale], **self.overrides)


def _train_configs(cfg: PendulumControlConfig, s: Scale, root: Path) -> tuple[TrainConfig, TrainConfig, TrainConfig]:
    """(teacher-forced SVG, its free-running fine-tune (the world model's predictor), Noether from the latter)."""
    out = Path(cfg.out)
    data = DataConfig(root=str(root), n_past=s.n_past, n_future=s.n_future, train_episodes=s.train_episodes,
                      val_episodes=s.val_episodes, stride=s.stride)
    model = SVGConfig(image_size=s.size, width=s.width, g_dim=s.g_dim, rnn_size=s.rnn_size, norm="layer")
    svg = TrainConfig(out=str(out / "svg"), data=data, model=model, epochs=s.svg_epochs, batch_size=s.batch_size,
                      seed=cfg.seed, device=cfg.device, progress=cfg.progress, val_windows=0)
    noether = NoetherConfig(tailor=TailorConfig(steps=1, lr=1.0, step_rule="normalized", order="second"),
                            adapt="code", form="a", learn_inner_lr=True)
    free = replace(svg, out=str(out / "svg_free_running"), init_from=str(out / "svg" / "last.pt"),
                   objective="free_running", epochs=s.free_running_epochs, lr=s.free_running_lr)
    base = free if s.free_running_epochs > 0 else svg
    meta = replace(svg, out=str(out / "noether"), noether=noether, init_from=str(Path(base.out) / "last.pt"),
                   train_predictor=False, epochs=s.noether_epochs,
                   embedding=EmbeddingConfig(kind="conv", channels=3, image_size=s.size, emb_dim=64))
    return svg, free, meta


def collect_mpc_episodes(ckpt: Path, reward: RewardSpec, s: Scale, seeds: list[int], out: Path, first_index: int,
                         device: torch.device, run_dir: Path,
                         noise_seed: int | None = None) -> tuple[list[float], float]:
    """Untailored MPC (``s.aggregate_planner`` with the scale's planner settings, replanning every ``s.aggregate_replan_every`` steps) with the predictor ``ckpt`` on real-env episodes seeded
    ``seeds`` (lockstep, one batched plan per step), written as recording shards ``first_index, ...`` to ``out``.
    ``s.aggregate_action_noise`` > 0: exploration noise on the executed actions from a generator seeded
    ``noise_seed`` (default: the first collection seed). -> (returns, control rate in Hz)."""
    from noether_rl.agents.aggregation import record_policy_episodes, with_action_noise
    from noether_rl.agents.mpc import MPCAgent, MPCConfig
    from noether_rl.agents.planners import make_planner

    wm, _ = load_world_model(str(ckpt), reward, device, run_dir)
    wm.precision = s.precision  # type: ignore[assignment]
    probe = make_real_env(PIXEL_PENDULUM_ID, wm.obs_shape)
    low, high = probe.action_space.low, probe.action_space.high
    probe.close()
    planner = make_planner(s.aggregate_planner, s.horizon, low, high, population=s.population, iterations=s.iterations,
                           seed=seeds[0], device=device)
    agent = MPCAgent(wm, planner, MPCConfig(replan_every=s.aggregate_replan_every, tailor=False))
    make_env = partial(make_real_env, PIXEL_PENDULUM_ID, wm.obs_shape, s.steps)
    policy = with_action_noise(agent.predict, s.aggregate_action_noise, low, high,
                               seeds[0] if noise_seed is None else noise_seed)
    returns = record_policy_episodes(policy, make_env, seeds, s.steps, out, first_index=first_index)
    return returns, agent.stats()["control_rate_hz"]


def aggregate(cfg: PendulumControlConfig, s: Scale, root: Path, free_cfg: TrainConfig, start: Path,
              reward: RewardSpec, device: torch.device) -> tuple[TrainConfig | None, list[dict[str, Any]]]:
    """Data-aggregation rounds (see ``Scale.aggregate_*``) starting from the predictor ``start``, fine-tuned with
    ``free_cfg``'s free-running objective. Layout: ``out/aggregate/mpc_data`` (the MPC episodes),
    ``round{r}/collect.json`` (that round's returns, cached by the predictor's and reward model's hashes and the
    settings; a round collected again retrains its fine-tune from scratch), ``round{r}/data`` (the spliced
    recording), ``round{r}/svg`` (the fine-tuned predictor). -> (the last round's train config or None, rows)."""
    from noether_rl.agents.aggregation import spliced_recording

    if s.aggregate_rounds <= 0:
        return None, []
    if s.aggregate_episodes > 100:
        raise UserError(f"aggregate_episodes={s.aggregate_episodes} must be <= 100 (round r uses collection seeds "
                        "aggregate_seed + 100 r + i)")
    eval_seeds = set(range(cfg.seed, cfg.seed + s.eval_episodes))
    agg = Path(cfg.out) / "aggregate"
    ckpt, last, rows = start, None, []
    for r in range(s.aggregate_rounds):
        seeds = [s.aggregate_seed + 100 * r + i for i in range(s.aggregate_episodes)]
        if eval_seeds & set(seeds):
            raise UserError(f"aggregate_seed={s.aggregate_seed} makes collection seeds overlap the evaluation seeds")
        key = {"predictor_sha256": sha256_file(ckpt),
               "reward": sha256_file(reward.path) if reward.path else reward.kind,
               "seeds": seeds, "steps": s.steps, "planner": s.aggregate_planner, "horizon": s.horizon, "population": s.population, "iterations": s.iterations,
               "replan_every": s.aggregate_replan_every, "tailor": False, "precision": s.precision}
        if s.aggregate_action_noise:  # only when used: keeps the cached rounds of earlier runs valid
            key["action_noise"] = s.aggregate_action_noise
        path = agg / f"round{r}" / "collect.json"
        row = _cached(path, key)
        fresh = row is None
        if fresh:
            t = time.perf_counter()
            returns, rate = collect_mpc_episodes(ckpt, reward, s, seeds, agg / "mpc_data", r * s.aggregate_episodes,
                                                 device, Path(cfg.out))
            row = {"config": key, "round": r, "predictor": str(ckpt), "returns": mean_se(returns),
                   "control_rate_hz": rate, "wall_time_s": time.perf_counter() - t}
            write_results(path, row)
        rows.append(row)
        n_extra = (r + 1) * s.aggregate_episodes
        data = spliced_recording(root, agg / "mpc_data", n_extra, s.train_episodes, agg / f"round{r}" / "data",
                                 tag="mpc")
        last = replace(free_cfg, out=str(agg / f"round{r}" / "svg"), init_from=str(ckpt), epochs=s.aggregate_epochs,
                       data=replace(free_cfg.data, root=str(data), train_episodes=s.train_episodes + n_extra))
        train(replace(last, resume=False) if fresh else last)  # new data: an old fine-tune of this round is stale
        ckpt = Path(last.out) / "last.pt"
    return last, rows


@torch.no_grad()
def model_env_fidelity(wm: WorldModel, root: str, episodes: list[int], starts: tuple[int, ...],
                       horizons: tuple[int, ...] = (10, 25, 50)) -> dict[str, Any]:
    """Frame MSE of the model env (stepped like :class:`WorldModelVectorEnv`) against the recording under the
    recorded actions, at each horizon; per episode (mean over its window starts), tailored and untailored,
    and their paired difference (mean ± s.e. over episodes)."""
    from gymnasium import spaces

    T = max(horizons)
    P = wm.n_past
    manifest = load_manifest(root)
    frames, actions, owner = [], [], []
    for e in episodes:
        ep = open_episode(root, e, check_hash=False, manifest=manifest)
        for s0 in starts:
            if s0 + P + T <= len(ep["frames"]):
                frames.append(ep["frames"][s0 : s0 + P + T])
                actions.append(ep["actions"][s0 : s0 + P - 1 + T])
                owner.append(e)
    if not frames:
        raise UserError(f"test episodes are too short for a {T}-step fidelity window")
    fr, ac = np.stack(frames), np.stack(actions).astype(np.float32)
    n = len(fr)
    out: dict[str, Any] = {"units": f"{len(set(owner))} test episodes x up to {len(starts)} windows"}
    per: dict[str, np.ndarray] = {}
    for tailor in (False, True):
        venv = WorldModelVectorEnv(wm, _NoContexts(), spaces.Box(-2.0, 2.0, (wm.action_dim,), np.float32), n,
                                   max_episode_steps=T + 1, tailor=tailor)
        venv._batch.set(np.arange(n), fr[:, :P], ac[:, : P - 1])
        venv._ready = True
        errs = []
        for t in range(T):
            obs, _, _ = venv.step_tensor(torch.as_tensor(ac[:, P - 1 + t], device=wm.device))
            real = obs_to_tensor(fr[:, P + t], wm.device)
            errs.append((obs_to_tensor(obs) - real).pow(2).mean((1, 2, 3)))
        e = torch.stack(errs, 1).cpu().numpy()  # [n, T]
        key = "tailored" if tailor else "untailored"
        owners = np.asarray(owner)
        per[key] = np.stack([np.stack([e[owners == o, h - 1].mean() for h in horizons]) for o in sorted(set(owner))])
    for key, v in per.items():
        out[key] = {f"h{h}": mean_se(v[:, i]) for i, h in enumerate(horizons)}
    out["tailored_minus_untailored"] = {f"h{h}": mean_se(per["tailored"][:, i] - per["untailored"][:, i])
                                        for i, h in enumerate(horizons)}
    return out


class _NoContexts:
    def sample(self, rng, n):  # pragma: no cover - contexts are set directly
        raise RuntimeError("fidelity env contexts are set directly")


def scripted_returns(env_id: str, size: int, seeds: list[int], max_steps: int | None = None) -> list[float]:
    """The energy-pumping swing-up + PD balance policy on the TRUE state (an upper reference)."""
    out = []
    for s in seeds:
        env = make_real_env(env_id, (size, size, 3), max_steps)
        _, info = env.reset(seed=s)
        total, done = 0.0, False
        while not done:
            th, thd = info["state"]
            _, r, term, trunc, info = env.step(np.array([swingup_torque(float(th), float(thd))], np.float32))
            total += r
            done = term or trunc
        env.close()
        out.append(total)
    return out


def _paired(a: list[float], b: list[float]) -> dict[str, Any]:
    return mean_se(np.asarray(a) - np.asarray(b))


class _Clock:
    """Wall and CPU seconds per stage (CPU: this process and its finished children, ``os.times``): on a shared
    machine the CPU seconds are the comparable figure."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t, c = time.perf_counter(), self._cpu()
        yield
        self.wall[name] = time.perf_counter() - t
        self.cpu[name] = self._cpu() - c

    def to_dict(self) -> dict[str, Any]:
        return {"wall_time_s": self.wall, "cpu_time_s": self.cpu, "torch_threads": torch.get_num_threads()}


# Scale fields only the evaluation MPC rows read: those rows are cached by their full PlanConfig and the
# checkpoint's hash, so changing them reruns the rows alone (the collecting MPC has aggregate_planner /
# aggregate_replan_every) and a rerun with other values is no mix of recipes.
_ROW_ONLY = frozenset({"planner", "replan_every"})


def _check_recipe(out: Path, s: Scale) -> None:
    """A rerun into a directory made with another recipe would mix stages (training runs are resumed by their
    data and model, not their epochs): refuse it with one line naming the differences (``_ROW_ONLY`` fields
    excepted: a rerun with other ones reruns the MPC rows with the trained stages reused)."""
    old = read_json_or_none(out / "results.json")
    spec = old.get("config", {}).get("scale_spec") if isinstance(old, dict) else None
    if not isinstance(spec, dict):
        return
    new = json.loads(json.dumps(asdict(s)))
    diff = [f"{k} {spec[k]} there vs {new[k]} now" for k in new
            if k in spec and k not in _ROW_ONLY and spec[k] != new[k]]
    if diff:
        raise UserError(f"{out} was made with another recipe ({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
                        "rerun with the scale it was made with (the default before 42b8df1 is --scale small-long; "
                        "runs before 34a345d had svg_epochs 20, which no scale has now; small runs made between 3fd1001 and its "
                        "revert had aggregate_epochs 35, which no scale has now) or use another --out")


def run_pendulum_control(cfg: PendulumControlConfig) -> dict[str, Any]:
    s = cfg.spec
    out = Path(cfg.out)
    _check_recipe(out, s)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    split = episode_split(s.episodes, s.train_episodes, s.val_episodes)
    if not split.test:
        raise UserError("pendulum-control needs test episodes: episodes > train_episodes + val_episodes")
    clock = _Clock()

    root = out / "data"
    with clock("record"):
        record(RecordConfig(env_id=PIXEL_PENDULUM_ID, policy=s.policy, episodes=s.episodes, steps=s.steps,
                            size=s.size, seed=cfg.seed, out=root, num_envs=2, preview=False, progress=cfg.progress))

    svg_cfg, free_cfg, meta_cfg = _train_configs(cfg, s, root)
    stages = (("svg", svg_cfg),) + ((("svg_free_running", free_cfg),) if s.free_running_epochs > 0 else ())
    for name, c in stages:
        with clock(f"train_{name}"):
            train(c)
    fit = RewardSpec(kind="learned", epochs=s.reward_epochs, val_episodes=s.val_episodes)
    with clock("reward_fit"):  # OUT/reward.pt, reused by a rerun only when fit with the same settings
        reward_info = build_reward(fit, svg_cfg, device, out)[1]
    reward = replace(fit, path=str(out / "reward.pt"))  # the later stages use that file as is
    with clock("aggregate"):
        start = Path(free_cfg.out if s.free_running_epochs > 0 else svg_cfg.out) / "last.pt"
        agg_cfg, agg_rows = aggregate(cfg, s, root, free_cfg, start, reward, device)
    if agg_cfg is not None:  # g_phi is meta-trained from the aggregated predictor, on its data
        meta_cfg = replace(meta_cfg, init_from=str(Path(agg_cfg.out) / "last.pt"), data=agg_cfg.data)
    with clock("train_noether"):
        train(meta_cfg)
    svg_ckpt, noe_ckpt = Path(svg_cfg.out) / "last.pt", Path(meta_cfg.out) / "last.pt"
    models = {"SVG": str(svg_ckpt), "Noether": str(noe_ckpt)}
    if s.free_running_epochs > 0:
        models["SVG (free-running fine-tune)"] = str(Path(free_cfg.out) / "last.pt")
    if agg_cfg is not None:
        models["SVG (aggregated)"] = str(Path(agg_cfg.out) / "last.pt")

    # world-model quality on the test episodes (angle error per step vs the copy-last-frame floor), written
    # to results.json before any planning
    from noether_rl.experiments.evaluation import EvalConfig, evaluate

    with clock("heldout_eval"):
        # with aggregation: the last spliced recording (its test episodes are the base's, same files) so the
        # split covers every model's training episodes
        heldout = evaluate(EvalConfig(data=agg_cfg.data.root if agg_cfg else str(root), checkpoints=models,
                                      out=str(out / "heldout"), split="test", n_past=s.n_past, n_future=s.n_future,
                                      stride=s.stride, max_windows=s.eval_windows, device=cfg.device, video=True,
                                      reference="Noether", untailored=True))
    results: dict[str, Any] = {
        "experiment": "pendulum-control", "stage": "world model", "config": {**asdict(cfg), "scale_spec": asdict(s)},
        "device": str(device), "split": split.to_dict(),
        "definitions": {
            "returns": "undiscounted real-env return of one seeded episode; mean ± s.e. over episodes; the same "
                       "seeds for every row (paired differences per seed)",
            "heldout": "per-step metrics on test-episode windows (experiments.evaluation; copy-last floor); "
                       "angle error in degrees, s.e. over test episodes",
            "fidelity": "frame MSE of the model env vs the recording under recorded actions (test episodes)",
        },
        "reward_fit": reward_info,
        "heldout": {"results": str(out / "heldout" / "results.json"), "summary": _angle_summary(heldout),
                    "angle_error_deg_at_steps": _angle_at_steps(heldout, (1, 5, 10))},
    }
    results["warnings"] = below_floor_warnings(_angle_summary(heldout))
    results["aggregate"] = {"rounds": [{k: v for k, v in row.items() if k != "config"} for row in agg_rows],
                            "what": "MPC (untailored) returns on each round's collection seeds, with the predictor "
                                    "before that round's fine-tune"}
    write_results(out / "results.json", {**results, **clock.to_dict()})

    with clock("reward_load"):
        wm, wm_info = load_world_model(str(noe_ckpt), reward, device, out)
    with clock("fidelity"):
        fidelity = model_env_fidelity(wm, str(root), split.test, s.fidelity_starts)

    seeds = [cfg.seed + i for i in range(s.eval_episodes)]
    rows: dict[str, list[float]] = {}
    with clock("random_and_scripted"):
        probe = make_real_env(PIXEL_PENDULUM_ID, wm.obs_shape)
        rows["random"] = run_episodes(random_policy(probe.action_space, cfg.seed), lambda: make_real_env(
            PIXEL_PENDULUM_ID, wm.obs_shape, s.eval_steps), seeds)
        probe.close()
        rows["scripted swing-up"] = scripted_returns(PIXEL_PENDULUM_ID, s.size, seeds, s.eval_steps)
    plan_info: dict[str, Any] = {}
    for name, tailor in (("MPC untailored", False), ("MPC tailored", True)):
        pcfg = PlanConfig(checkpoint=str(noe_ckpt), out=str(out / name.replace(" ", "_").lower()), planner=s.planner,
                          tailor=tailor, episodes=s.eval_episodes, seed=cfg.seed, horizon=s.horizon,
                          population=s.population, iterations=s.iterations, replan_every=s.replan_every, reward=reward,
                          max_steps=s.eval_steps, video=tailor, device=cfg.device, progress=cfg.progress,
                          precision=s.precision)
        with clock(name):
            res = _cached(Path(pcfg.out) / "results.json", asdict(pcfg), noe_ckpt) or \
                _stamped(Path(pcfg.out) / "results.json", run_plan(pcfg, wm, wm_info), noe_ckpt)
        rows[name] = res["returns"]["values"]
        plan_info[name] = {"control_rate_hz": res["control_rate_hz"], "envs_per_call": res["envs_per_call"],
                           "video": res.get("video"), "stats": res.get("stats")}
    dcfg = DreamConfig(checkpoint=str(noe_ckpt), out=str(out / "dream"), algo=s.dream_algo, steps=s.dream_steps,
                       n_envs=s.dream_envs, tailor=True, max_episode_steps=s.steps, eval_episodes=s.eval_episodes,
                       eval_max_steps=s.eval_steps,
                       seed=cfg.seed, reward=reward, device=cfg.device, progress=cfg.progress)
    dream_row = f"{s.dream_algo.upper()} in the model"
    with clock("dream"):
        dres = _cached(Path(dcfg.out) / "results.json", asdict(dcfg), noe_ckpt) or \
            _stamped(Path(dcfg.out) / "results.json", run_dream_train(dcfg, wm, wm_info), noe_ckpt)
    rows[dream_row] = dres["returns"]["values"]

    table = {k: mean_se(v) for k, v in rows.items()}
    paired = {
        "MPC tailored - MPC untailored": _paired(rows["MPC tailored"], rows["MPC untailored"]),
        "MPC tailored - random": _paired(rows["MPC tailored"], rows["random"]),
        "MPC untailored - random": _paired(rows["MPC untailored"], rows["random"]),
        "scripted - MPC tailored": _paired(rows["scripted swing-up"], rows["MPC tailored"]),
        f"{dream_row} - random": _paired(rows[dream_row], rows["random"]),
    }
    results.update(stage="complete", eval_seeds=seeds, returns=table, paired=paired, plan=plan_info,
                   fidelity=fidelity, world_model=wm_info)
    results.update(clock.to_dict())
    write_results(out / "results.json", results)
    return results


def _angle_at_steps(heldout: dict[str, Any], steps: tuple[int, ...]) -> dict[str, Any]:
    """{model: {"step k": "mean ± se"}} of the per-step angle error (degrees), the copy-last floor included."""
    out: dict[str, Any] = {}
    for name, a in _angle_summary(heldout).items():
        m, se = a.get("mean_per_step") or [], a.get("se_per_step") or []
        out[name] = {f"step {k}": (f"{m[k - 1]:.1f} ± {se[k - 1]:.1f}" if k <= len(m) and k <= len(se)
                                   and se[k - 1] is not None else None) for k in steps}
    return out


def below_floor_warnings(angles: dict[str, Any], floor: str = "copy last frame") -> list[str]:
    """One line per model whose step-1 test angle error is not below the copy-last-frame floor's (``angles``:
    :func:`_angle_summary`): such a model learned nothing about the motion, e.g. a teacher-forced SVG still on
    the predict-a-blurred-frame plateau (see ``Scale.svg_epochs``)."""
    ref = (angles.get(floor) or {}).get("mean_per_step") or []
    out = []
    for name, a in angles.items():
        m = a.get("mean_per_step") or []
        if name != floor and ref and m and m[0] is not None and ref[0] is not None and not m[0] < ref[0]:
            out.append(f"{name}: step-1 test angle error {m[0]:.1f} deg is not below copying the last frame "
                       f"({ref[0]:.1f} deg); it has not learned the motion (teacher-forced SVG: more svg_epochs)")
    return out


def _angle_summary(heldout: dict[str, Any]) -> dict[str, Any]:
    """Per-step pendulum angle errors (degrees) per model from the evaluation results, where present."""
    out: dict[str, Any] = {}
    for name, m in (heldout.get("models") or {}).items():
        try:
            a = m["metrics"]["angle_error"]
            out[name] = {"mean_per_step": a.get("mean_per_step"), "se_per_step": a.get("se_per_step"),
                         "mean": a.get("mean"), "se": a.get("se")}
        except (KeyError, TypeError, AttributeError):
            continue
    return out


def _cached(path: Path, config: dict[str, Any], checkpoint: Path | None = None) -> dict[str, Any] | None:
    """A row's results.json from an earlier run with the same config (and, given ``checkpoint``, made with a
    checkpoint of the same content: a retrained model at the same path is not reused), else None."""
    res = read_json_or_none(path)
    if not isinstance(res, dict):
        return None
    if checkpoint is not None and res.get("checkpoint_sha256") != sha256_file(checkpoint):
        return None
    return res if res.get("config") == json.loads(json.dumps(config)) else None


def _stamped(path: Path, res: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """``res`` with the checkpoint's sha256, rewritten to ``path`` (what :func:`_cached` checks)."""
    res = {**res, "checkpoint_sha256": sha256_file(checkpoint)}
    write_results(path, res)
    return res

