"""Control rate of MPC with a (tailored) world model, and the cost/fidelity of the two tailoring modes.

    python benchmarks/mpc_speed.py                       # CPU: default small model, 128 x 15 x 3
    python benchmarks/mpc_speed.py --scale paper --population 256 --device cuda   # 64x64 model on a GPU
    python benchmarks/mpc_speed.py --checkpoint RUN/last.pt --fidelity-contexts 10  # + shared vs per-candidate

Speed does not depend on the weights, so without ``--checkpoint`` a randomly initialised model of the
scale's architecture (with an untrained g_phi) is timed. Modes: ``untailored`` (plain rollout of all
candidates), ``shared`` (the default: one tailoring call per planning step on the planner's warm start, its
adapted tensors shared by all candidates of every optimiser iteration), ``per_iteration`` (one tailoring
call per optimiser iteration, on the mean candidate), ``per_candidate`` (every candidate tailored on its own
rollout, every iteration). Control rate = planning steps per second for one env (replan every step), median
over ``--repeats``; also reported: CPU seconds per step of this process (``time.process_time``), the figure
to compare on a loaded machine, and the extra cost of each tailored mode relative to ``untailored``.

Fidelity (``--checkpoint``, a trained Noether model): for ``--fidelity-contexts`` seeded real-env contexts
(PixelPendulum, random actions), ``--fidelity-candidates`` random candidate sequences each are imagined
in the three modes and also executed in the real env; reported: frame MSE per mode (mean over steps and
candidates, then mean ± s.e. over contexts) and paired differences against ``untailored``.
Writes JSON to ``--out`` (default: print only).

CUDA graphs (``WorldModel(cuda_graph=True)``: the candidate rollouts + reward replayed as one graph per shape;
the per-step preparation and tailoring stay eager). ``--cuda-graph`` times the modes with graphs on; they apply
to untailored / shared / per_iteration only: per_candidate tailors every candidate through
``NoetherNetwork.predict`` and never replays a graph. Each mode's row says what happened: ``"cuda_graph"``
(true when its plan calls replayed graphs, counted by ``WorldModel.graph_stats``) and ``"graph_replays"``.
``--compare-graph`` (one process, ``--deadline-s`` wall): for each ``--precisions`` and mode untailored /
shared, eager vs graph arms (median of ``--repeats`` plan calls after one warm-up plan, which captures), the
eager ``prepare`` alone (the part graphs do not touch: a floor on the step time), and checks that graph and
eager agree on the same inputs (max abs difference of rewards, scores and frames on a second set of
candidates and a second context after the capture; the planned actions of two plan calls from the same
seed). Each arm catches its own exception and the JSON is rewritten after every arm. On a CPU the graph
arms run through the EagerReplay backend (re-runs eagerly: checks the plumbing, times nothing real).

    python benchmarks/mpc_speed.py --scale paper --population 256 --device cuda --compare-graph --out g.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import noether_rl.envs  # noqa: F401
from noether_rl.agents.mpc import MPCAgent, MPCConfig
from noether_rl.agents.planners import make_planner
from noether_rl.agents.reward import RewardCNN, RewardConfig
from noether_rl.agents.world_model import WorldModel, obs_to_tensor
from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork
from noether_rl.utils.device import resolve_device

SCALES = {
    "small": dict(image_size=32, width=16, g_dim=64, rnn_size=128),
    "paper": dict(image_size=64, width=64, g_dim=128, rnn_size=256),
}


def random_world_model(scale: str, device: torch.device, n_past: int) -> WorldModel:
    torch.manual_seed(0)
    s = SCALES[scale]
    svg = SVG(SVGConfig(image_size=s["image_size"], width=s["width"], g_dim=s["g_dim"], rnn_size=s["rnn_size"],
                        rnn_layers=2, norm="layer"))
    net = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=s["image_size"], emb_dim=64)),
                         NoetherConfig())
    reward = RewardCNN(RewardConfig(image_size=s["image_size"]))  # a learned reward's cost
    return WorldModel(net.to(device), reward.to(device), n_past=n_past, action_dim=1,
                      frame_shape=(3, s["image_size"], s["image_size"]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(wm: WorldModel, mode: str, population: int, horizon: int, iterations: int, repeats: int,
              device: torch.device, planner_name: str = "cem") -> dict:
    wm.tailor_mode = "per_candidate" if mode == "per_candidate" else "shared"
    planner = make_planner(planner_name, horizon, [-2.0], [2.0], population=population, iterations=iterations,
                           seed=0, device=device)
    every = "plan" if mode in ("untailored", "shared") else "iteration"
    agent = MPCAgent(wm, planner, MPCConfig(tailor=mode != "untailored", tailor_every=every))
    replays0 = wm.graph_stats()["replays"]
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=wm.obs_shape, dtype=np.uint8)
    agent.predict(obs)  # warm-up (allocations, cudnn autotune)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        agent.predict(obs, episode_start=np.array([False]))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    replays = wm.graph_stats()["replays"] - replays0  # per_candidate: 0 (its rollouts never run as graphs)
    return {"median_s_per_step": med, "control_rate_hz": 1.0 / med, "median_cpu_s_per_step": statistics.median(cpu),
            "repeats": repeats, "cuda_graph": replays > 0, "graph_replays": replays}


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.double() - b.double()).abs()
    both_nan = torch.isnan(a) & torch.isnan(b)
    return float(torch.where(both_nan, torch.zeros_like(d), d).max())


@torch.no_grad()
def graph_agreement(wm: WorldModel, mode: str, population: int, horizon: int, iterations: int,
                    device: torch.device, backend=None) -> dict:
    """Graph vs eager on the same inputs: imagine_prepared on two candidate sets and two contexts after the
    capture, and two plan calls of a seeded planner (``backend``: the capture backend, None = CUDA graphs)."""
    tailor = mode != "untailored"
    g = torch.Generator().manual_seed(123)
    C, Hs, Ws = wm.frame_shape
    P = wm.n_past

    def inputs():
        ctx = torch.rand(1, P, C, Hs, Ws, generator=g).to(device)
        ca = (torch.rand(1, P - 1, wm.action_dim, generator=g) * 4 - 2).to(device)
        seqs = (torch.rand(1, population, horizon, wm.action_dim, generator=g) * 4 - 2).to(device)
        return ctx, ca, seqs

    out: dict = {}
    sets = [inputs() for _ in range(3)]
    preps = [wm.prepare(ctx, ca, horizon, tailor=tailor, plan=seqs.mean(1)) for ctx, ca, seqs in sets]
    # the first call captures on set 0; sets 1 (new candidates, same preparation) and 2 (new context) replay
    calls = [(preps[0], sets[0][2]), (preps[0], sets[1][2]), (preps[2], sets[2][2])]
    wm.use_cuda_graph(False)
    eager = [wm.imagine_prepared(p, s) for p, s in calls]
    wm.use_cuda_graph(True, backend=backend)
    graphed = [wm.imagine_prepared(p, s) for p, s in calls]
    _sync(device)
    out["graph_stats_imagine"] = wm.graph_stats()
    for i, (e, gr) in enumerate(zip(eager, graphed, strict=True)):
        se, sg = e.rewards.sum(-1), gr.rewards.sum(-1)
        out[f"call{i}"] = {"rewards_max_abs_diff": _max_abs(gr.rewards, e.rewards),
                           "scores_max_abs_diff": _max_abs(sg, se),
                           "scores_max_abs": float(se.abs().max()),
                           "frames_max_abs_diff": _max_abs(gr.frames, e.frames),
                           "best_candidate_same": bool((se.argmax(1) == sg.argmax(1)).all())}
    # whole plan calls (seeded planner): eager, then graphs
    rng = np.random.default_rng(7)
    obs = [rng.integers(0, 256, size=wm.obs_shape, dtype=np.uint8) for _ in range(2)]
    plans = {}
    for name, on in (("eager", False), ("graph", True)):
        wm.use_cuda_graph(on, backend=backend if on else None)
        planner = make_planner("cem", horizon, [-2.0], [2.0], population=population, iterations=iterations, seed=0,
                               device=device)
        agent = MPCAgent(wm, planner, MPCConfig(tailor=tailor))
        a0, _ = agent.predict(obs[0])
        p0 = agent._plan.clone()
        a1, _ = agent.predict(obs[1], episode_start=np.array([False]))
        plans[name] = (a0, a1, p0, agent._plan.clone())
    e, gr = plans["eager"], plans["graph"]
    out["plan"] = {"action_max_abs_diff": max(float(np.abs(e[0] - gr[0]).max()), float(np.abs(e[1] - gr[1]).max())),
                   "plan_max_abs_diff": max(_max_abs(gr[2], e[2]), _max_abs(gr[3], e[3])),
                   "actions_eager": [e[0].tolist(), e[1].tolist()], "actions_graph": [gr[0].tolist(), gr[1].tolist()]}
    wm.use_cuda_graph(False)
    return out


@torch.no_grad()
def time_prepare(wm: WorldModel, mode: str, horizon: int, repeats: int, device: torch.device) -> dict:
    """Median wall seconds of the eager per-step preparation (warm start + tailoring in mode shared)."""
    g = torch.Generator().manual_seed(0)
    C, Hs, Ws = wm.frame_shape
    ctx = torch.rand(1, wm.n_past, C, Hs, Ws, generator=g).to(device)
    ca = torch.zeros(1, wm.n_past - 1, wm.action_dim, device=device)
    plan = torch.zeros(1, horizon, wm.action_dim, device=device)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        wm.prepare(ctx, ca, horizon, tailor=mode != "untailored", plan=plan)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "repeats": repeats}


def compare_graph(wm: WorldModel, args: argparse.Namespace, device: torch.device, res: dict) -> None:
    """The ``--compare-graph`` arms (see the module docstring); fills ``res`` and rewrites ``args.out``."""
    import traceback

    from noether_rl.agents.cuda_graph import EagerReplay

    backend = None if device.type == "cuda" else EagerReplay()
    res["graph_backend"] = "torch.cuda.CUDAGraph" if backend is None else \
        "EagerReplay (no CUDA: re-runs eagerly; checks the plumbing, the graph timings mean nothing)"
    res["arms"], res["agreement"], res["prepare"] = {}, {}, {}
    deadline = time.time() + args.deadline_s

    def save() -> None:
        if args.out:
            from noether_rl.utils.io import atomic_write_json

            atomic_write_json(args.out, res)

    def arm(name: str, fn) -> dict | None:
        if time.time() > deadline - 5:
            print(f"{name:32s} skipped (deadline)", flush=True)
            return {"skipped": "deadline"}
        t0 = time.time()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001  (one failing arm must not lose the others)
            r = {"error": f"{type(e).__name__}: {e}"[:1000], "traceback": traceback.format_exc()[-3000:]}
            print(f"{name:32s} FAILED {r['error']}", flush=True)
        r["arm_wall_s"] = time.time() - t0
        if device.type == "cuda":
            r["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
        return r

    for prec in args.precisions:
        wm.precision = prec
        for mode in ("untailored", "shared"):
            key = f"{prec}/{mode}"
            for kind in ("eager", "graph"):
                def run(kind=kind, mode=mode):  # noqa: ANN202
                    wm.use_cuda_graph(kind == "graph", backend=backend if kind == "graph" else None)
                    r = time_mode(wm, mode, args.population, args.horizon, args.iterations, args.repeats, device, args.planner)
                    r["graph_stats"] = wm.graph_stats()
                    wm.use_cuda_graph(False)
                    return r

                r = arm(f"{key}/{kind}", run)
                res["arms"][f"{key}/{kind}"] = r
                if "control_rate_hz" in r:
                    print(f"{key + '/' + kind:32s} {r['control_rate_hz']:7.2f} Hz  "
                          f"({r['median_s_per_step'] * 1e3:.1f} ms/step wall, {r['median_cpu_s_per_step'] * 1e3:.1f} "
                          f"ms CPU)", flush=True)
                save()
            eg, gr = res["arms"].get(f"{key}/eager", {}), res["arms"].get(f"{key}/graph", {})
            if "median_s_per_step" in eg and "median_s_per_step" in gr:
                gr["speedup_vs_eager"] = eg["median_s_per_step"] / gr["median_s_per_step"]
            if prec == args.precisions[0]:
                res["prepare"][mode] = arm(f"{key}/prepare", lambda mode=mode: time_prepare(
                    wm, mode, args.horizon, args.repeats, device))
                if "median_s" in res["prepare"][mode]:
                    res["prepare"][mode]["rate_hz_if_candidates_cost_nothing"] = 1 / res["prepare"][mode]["median_s"]
                    print(f"{key + '/prepare (eager)':32s} {res['prepare'][mode]['median_s'] * 1e3:7.1f} ms", flush=True)
            res["agreement"][key] = a = arm(f"{key}/agreement", lambda mode=mode: graph_agreement(
                wm, mode, args.population, args.horizon, args.iterations, device, backend))
            if "plan" in a:
                d = max(a[c]["scores_max_abs_diff"] for c in ("call0", "call1", "call2"))
                print(f"{key + '/agreement':32s} scores max|diff| {d:.3g}, planned action max|diff| "
                      f"{a['plan']['action_max_abs_diff']:.3g}", flush=True)
            save()
    res["total_wall_s"] = time.time() - (deadline - args.deadline_s)
    save()


@torch.no_grad()
def fidelity(wm: WorldModel, contexts: int, candidates: int, horizon: int, seed: int) -> dict:
    import gymnasium as gym

    H = wm.obs_shape[0]
    env = gym.make("noether_rl/PixelPendulum-v0", size=H)
    rng = np.random.default_rng(seed)
    per_mode: dict[str, list[float]] = {"untailored": [], "shared": [], "per_candidate": []}
    for c in range(contexts):
        obs, _ = env.reset(seed=seed + c)
        frames, acts = [obs], []
        for _ in range(wm.n_past - 1):
            a = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, *_ = env.step(a)
            frames.append(obs)
            acts.append(a)
        state = env.unwrapped.state.copy()
        last_u = env.unwrapped.last_u
        seqs = rng.uniform(-2, 2, size=(candidates, horizon, 1)).astype(np.float32)
        # smooth candidates, like a planner's: cumulative sums of small steps, clipped
        seqs = np.clip(np.cumsum(seqs * 0.5, axis=1), -2, 2).astype(np.float32)
        real = []
        for j in range(candidates):
            env.unwrapped.state = state.copy()
            env.unwrapped.last_u = last_u
            fr = []
            for t in range(horizon):
                o, *_ = env.unwrapped.step(seqs[j, t])
                fr.append(o)
            real.append(np.stack(fr))
        real_t = obs_to_tensor(np.stack(real), wm.device)  # [N, T, C, H, W]
        ctx = obs_to_tensor(np.stack(frames)[None], wm.device)
        ctx_a = torch.as_tensor(np.stack(acts)[None], device=wm.device)
        s = torch.as_tensor(seqs[None], device=wm.device)
        for mode in per_mode:
            wm.tailor_mode = "per_candidate" if mode == "per_candidate" else "shared"
            pred = wm.imagine(ctx, ctx_a, s, tailor=mode != "untailored").frames[0]
            per_mode[mode].append(float((pred - real_t).pow(2).mean()))
    env.close()

    def ms(x):
        a = np.asarray(x)
        return {"mean": float(a.mean()), "se": float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None}

    out = {m: ms(v) for m, v in per_mode.items()}
    for m in ("shared", "per_candidate"):
        out[f"{m}_minus_untailored"] = ms(np.asarray(per_mode[m]) - np.asarray(per_mode["untailored"]))
    out["per_candidate_minus_shared"] = ms(np.asarray(per_mode["per_candidate"]) - np.asarray(per_mode["shared"]))
    out["units"] = f"{contexts} contexts (seeds {seed}..{seed + contexts - 1}) x {candidates} candidates x {horizon} steps"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--checkpoint", help="time (and measure fidelity of) a trained model instead")
    p.add_argument("--population", type=int, default=128)
    p.add_argument("--planner", choices=["cem", "icem", "mppi"], default="cem",
                   help="icem: its population decays per iteration (128 -> 102 -> 81 with the defaults), so it "
                        "scores fewer candidates than 128 x iterations")
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--n-past", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--modes", nargs="+", default=["untailored", "shared", "per_iteration", "per_candidate"],
                   choices=["untailored", "shared", "per_iteration", "per_candidate"])
    p.add_argument("--fidelity-contexts", type=int, default=0)
    p.add_argument("--fidelity-candidates", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="of the candidate rollouts and the reward (WorldModel precision)")
    p.add_argument("--memory-format", choices=["auto", "channels-last", "contiguous"], default="auto",
                   help="of the conv weights (WorldModel channels_last; auto: channels-last on CPU)")
    p.add_argument("--reward-model", help="with --checkpoint: a learned reward model (reward.pt) to time "
                   "(default: the hand-written pixel reward)")
    p.add_argument("--cuda-graph", action="store_true", help="time the modes with WorldModel(cuda_graph=True)")
    p.add_argument("--compare-graph", action="store_true",
                   help="eager vs CUDA-graph arms, untailored and shared, and their agreement (see above)")
    p.add_argument("--precisions", nargs="+", choices=["float32", "bfloat16"], default=["float32"],
                   help="with --compare-graph (in this order; arms past --deadline-s are skipped)")
    p.add_argument("--deadline-s", type=float, default=200.0, help="with --compare-graph: wall seconds for all arms")
    p.add_argument("--out")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.checkpoint:
        from noether_rl.agents.runs import RewardSpec, load_world_model

        spec = RewardSpec(kind="learned", path=args.reward_model) if args.reward_model else \
            RewardSpec(kind="pendulum-pixels")
        if args.reward_model and not Path(args.reward_model).is_file():
            p.error(f"--reward-model {args.reward_model} does not exist")
        wm, _ = load_world_model(args.checkpoint, spec, device, Path("."))
    else:
        wm = random_world_model(args.scale, device, args.n_past)
    wm.precision = args.precision
    if args.memory_format != "auto":
        wm.model.to(memory_format=torch.contiguous_format)
        if isinstance(wm.reward, torch.nn.Module):
            wm.reward.to(memory_format=torch.contiguous_format)
        wm = WorldModel(wm.model, wm.reward, n_past=wm.n_past, action_dim=wm.action_dim, frame_shape=wm.frame_shape,
                        tailor_cfg=wm.tailor_cfg, inner_lr=wm.inner_lr, precision=args.precision,
                        channels_last=args.memory_format == "channels-last")
    res = {"device": str(device), "torch_threads": torch.get_num_threads(), "scale": args.scale,
           "precision": args.precision, "memory_format": args.memory_format, "reward_model": args.reward_model,
           "checkpoint": args.checkpoint, "planner": args.planner, "population": args.population, "horizon": args.horizon,
           "iterations": args.iterations, "cuda_graph": args.cuda_graph, "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "modes": {}}
    if args.cuda_graph:
        res["cuda_graph_note"] = ("graphs apply to untailored / shared / per_iteration; per_candidate runs eagerly "
                                  "(NoetherNetwork.predict per candidate); see each mode's cuda_graph")
    if args.compare_graph:
        res["repeats"] = args.repeats
        res.pop("modes")
        compare_graph(wm, args, device, res)
        return
    if args.cuda_graph:
        wm.use_cuda_graph(True)
    for mode in args.modes:
        res["modes"][mode] = time_mode(wm, mode, args.population, args.horizon, args.iterations, args.repeats, device,
                                       args.planner)
        m = res["modes"][mode]
        base = res["modes"].get("untailored")
        if base is not None and mode != "untailored":
            m["cpu_relative_to_untailored"] = m["median_cpu_s_per_step"] / base["median_cpu_s_per_step"]
        rel = f", {m['cpu_relative_to_untailored']:.2f}x untailored CPU" if "cpu_relative_to_untailored" in m else ""
        eager = ", eager (graphs do not apply)" if mode == "per_candidate" else ", eager (capture failed: no replays)"
        graphs = (", CUDA graphs" if m["cuda_graph"] else eager) if args.cuda_graph else ""
        print(f"{mode:14s} {m['control_rate_hz']:.2f} Hz ({m['median_s_per_step'] * 1e3:.0f} ms/step wall, "
              f"{m['median_cpu_s_per_step'] * 1e3:.0f} ms/step CPU{rel}{graphs})", flush=True)
    if args.fidelity_contexts:
        res["fidelity"] = fidelity(wm, args.fidelity_contexts, args.fidelity_candidates, args.horizon, seed=1000)
        print(json.dumps(res["fidelity"], indent=1))
    if args.out:
        from noether_rl.utils.io import atomic_write_json

        atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
