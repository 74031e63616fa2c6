"""``noether-rl plan``: model-predictive control in a real env with a trained (tailored) world model."""

from __future__ import annotations

import argparse
import os

from noether_rl.cli import argtypes
from noether_rl.cli.common import positive_int


def saved_reward_model(s: str) -> str:
    """``--reward-model``: an existing file only (a mistyped path would otherwise fit and save a new model)."""
    if not os.path.isfile(s):
        what = "is a directory" if os.path.isdir(s) else "does not exist"
        raise argparse.ArgumentTypeError(f"{s} {what}; give a saved reward model (an earlier run's OUT/reward.pt) "
                                         "or leave --reward-model out to fit one")
    return s


def add_reward_args(p: argparse.ArgumentParser) -> None:
    from noether_rl.agents.runs import RewardSpec

    p.add_argument("--reward", choices=["learned", "pendulum-pixels"], default=RewardSpec.kind,
                   help="learned: a reward CNN fit on the recorded rewards of the checkpoint's training episodes "
                        "(saved as OUT/reward.pt, reused by reruns fit with the same settings); pendulum-pixels: -(angle^2 + 0.001 torque^2), "
                        "the angle read off the frame")
    p.add_argument("--reward-model", type=saved_reward_model,
                   help="a saved reward model to use instead of fitting one (e.g. an earlier run's OUT/reward.pt)")
    p.add_argument("--reward-data", help="recording to fit the reward model on (default: the checkpoint's)")
    p.add_argument("--reward-epochs", type=positive_int,
                   help=f"epochs of the reward CNN fit on recorded rewards (default: {RewardSpec.epochs})")


def reward_spec(args: argparse.Namespace):
    """The reward flags as a RewardSpec; flags that would be ignored (fit settings next to a saved model, or any
    learned-reward flag next to ``--reward pendulum-pixels``) are a user mistake."""
    from noether_rl.agents.runs import RewardSpec
    from noether_rl.errors import UserError

    fit_flags = [f for f, v in (("--reward-data", args.reward_data), ("--reward-epochs", args.reward_epochs))
                 if v is not None]
    if args.reward == "pendulum-pixels" and (fit_flags or args.reward_model):
        raise UserError(f"{' / '.join(fit_flags + ['--reward-model'] * bool(args.reward_model))} are only used with "
                        "--reward learned; drop them or drop --reward pendulum-pixels")
    if args.reward_model and fit_flags:
        raise UserError(f"{' / '.join(fit_flags)} set how a reward model is fit, but --reward-model uses a saved "
                        "one as is; drop one of them")
    epochs = {} if args.reward_epochs is None else {"epochs": args.reward_epochs}
    return RewardSpec(kind=args.reward, path=args.reward_model, data=args.reward_data, **epochs)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noether_rl.agents.runs import PlanConfig as C

    p = sub.add_parser("plan", help="MPC (CEM / iCEM / MPPI) with a trained world model in the real env")
    p.add_argument("--checkpoint", required=True, help="SVG or Noether checkpoint (train / meta-train)")
    p.add_argument("--env", default=C.env_id, help="Gymnasium id of the real env")
    p.add_argument("--planner", choices=["cem", "icem", "mppi"], default=C.planner, help="trajectory optimiser")
    p.add_argument("--no-tailor", action="store_true", help="do not tailor a Noether model while planning")
    p.add_argument("--episodes", type=positive_int, default=C.episodes, help="seeded real-env episodes (seed, seed+1, ...)")
    p.add_argument("--out", required=True, help="output directory (results.json, video)")
    p.add_argument("--horizon", type=positive_int, default=C.horizon, help="planning horizon (steps)")
    p.add_argument("--population", type=positive_int, default=C.population, help="candidate action sequences per iteration")
    p.add_argument("--iterations", type=positive_int, default=C.iterations, help="optimiser iterations per plan")
    p.add_argument("--replan-every", type=positive_int, default=C.replan_every, help="replan every k env steps")
    p.add_argument("--max-steps", type=positive_int, help="episode length (default: the env's)")
    p.add_argument("--no-video", action="store_true", help="skip the real | imagined video")
    p.add_argument("--seed", type=argtypes.seed, default=C.seed,
                   help="seed of the real-env episodes (SEED, SEED+1, ...) and the planner (the reward fit has its own, 0)")
    p.add_argument("--device", type=argtypes.device, default=C.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default=C.precision,
                   help="of the candidate rollouts and reward (tailoring stays float32); bfloat16 is faster on "
                        "GPUs and AMX/AVX512-BF16 CPUs, frames differ by ~1e-2")
    add_reward_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noether_rl.agents.runs import PlanConfig, run_plan

    res = run_plan(PlanConfig(checkpoint=args.checkpoint, out=args.out, env_id=args.env, planner=args.planner,
                              tailor=not args.no_tailor, episodes=args.episodes, seed=args.seed, horizon=args.horizon,
                              population=args.population, iterations=args.iterations,
                              replan_every=args.replan_every, max_steps=args.max_steps, reward=reward_spec(args),
                              video=not args.no_video, device=args.device, precision=args.precision))
    r = res["returns"]
    print(f"return {r['mean']:.1f} ± {r['se']:.1f} over {r['n']} episodes; control rate "
          f"{res['control_rate_hz']:.2f} Hz ({res['envs_per_call']} envs per call)")
    print(f"results: {args.out}/results.json")
    return 0


def add_pendulum_control_parser(exp: argparse._SubParsersAction) -> None:
    """``noether-rl reproduce pendulum-control`` (registered by :mod:`noether_rl.cli.reproduce`)."""
    pc = exp.add_parser("pendulum-control", help="pixel-pendulum swing-up: MPC with tailored world models, SB3 in the model")
    pc.add_argument("--out", required=True, help="output directory; a rerun reuses every finished stage")
    from noether_rl.cli.reproduce import scale_help
    from noether_rl.experiments.pendulum_control import SCALES, PendulumControlConfig

    pc.add_argument("--scale", choices=sorted(SCALES), default=PendulumControlConfig.scale,
                    help=scale_help(SCALES, lambda s: f"{s.size}x{s.size} SVG (width {s.width}, LSTM {s.rnn_size}), "
                                                      f"{s.episodes} recorded episodes, {s.svg_epochs} SVG + "
                                                      f"{s.free_running_epochs} free-running + "
                                                      f"{s.aggregate_rounds} x {s.aggregate_epochs} aggregation + "
                                                      f"{s.noether_epochs} meta epochs, {s.planner.upper()} MPC with "
                                                      f"{s.population} candidates replanning every {s.replan_every}, "
                                                      f"{s.dream_steps} SB3 steps")
                         + "; small: measured 50.4 min on 2 CPU cores; small-long (the README's main figures, but with 40 "
                           "instead of 20 SVG epochs) takes about 2 h")
    pc.add_argument("--seed", type=argtypes.seed, default=PendulumControlConfig.seed,
                    help="the one seed of recording, training, planner and SB3 (one model per scale: this "
                         "experiment has no --seeds); the evaluation episodes use seeds SEED, SEED+1, ...")
    pc.add_argument("--device", type=argtypes.device, default=PendulumControlConfig.device,
                    help="auto | cpu | cuda | cuda:N")
    pc.add_argument("--no-progress", action="store_true", help="no progress bars")
    pc.set_defaults(func=run_pendulum_control_cli)


def run_pendulum_control_cli(args: argparse.Namespace) -> int:
    from noether_rl.experiments.pendulum_control import PendulumControlConfig, run_pendulum_control

    res = run_pendulum_control(PendulumControlConfig(out=args.out, scale=args.scale, seed=args.seed, device=args.device,
                                                     progress=not args.no_progress))
    for name, r in res["returns"].items():
        print(f"{name:22s} return {r['mean']:8.1f} ± {r['se']:.1f}")
    for name, d in res["paired"].items():
        print(f"{name:32s} {d['mean']:+8.1f} ± {d['se']:.1f} (paired)")
    for w in res.get("warnings", []):
        print(f"warning: {w}")
    print(f"results: {args.out}/results.json")
    return 0
