"""``noether-rl dream-train``: train a Stable-Baselines3 agent inside the world model, evaluate it for real."""

from __future__ import annotations

import argparse

from noether_rl.cli import argtypes
from noether_rl.cli.common import positive_int
from noether_rl.cli.plan import add_reward_args, reward_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noether_rl.agents.runs import DreamConfig as D

    p = sub.add_parser("dream-train", help="train PPO/SAC inside a trained world model; evaluate in the real env")
    p.add_argument("--checkpoint", required=True, help="SVG or Noether checkpoint (train / meta-train)")
    p.add_argument("--algo", choices=["ppo", "sac"], default=D.algo, help="Stable-Baselines3 algorithm")
    p.add_argument("--steps", type=positive_int, default=D.steps, help="environment steps in the model")
    p.add_argument("--out", required=True, help="output directory (results.json, agent.zip, sb3/progress.csv)")
    p.add_argument("--env", default=D.env_id, help="Gymnasium id of the real env")
    p.add_argument("--n-envs", type=positive_int, default=D.n_envs, help="imagined envs stepped in one batch")
    p.add_argument("--no-tailor", action="store_true", help="do not tailor a Noether model in the imagined env")
    p.add_argument("--max-episode-steps", type=positive_int, default=D.max_episode_steps, help="imagined episode length")
    p.add_argument("--eval-episodes", type=positive_int, default=D.eval_episodes, help="real-env evaluation episodes")
    p.add_argument("--seed", type=argtypes.seed, default=D.seed,
                   help="seed of the real-env episodes (SEED, SEED+1, ...), the model-env contexts and SB3")
    p.add_argument("--device", type=argtypes.device, default=D.device, help="auto | cpu | cuda | cuda:N")
    add_reward_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noether_rl.agents.runs import DreamConfig, run_dream_train

    res = run_dream_train(DreamConfig(checkpoint=args.checkpoint, out=args.out, algo=args.algo, steps=args.steps,
                                      env_id=args.env, n_envs=args.n_envs, tailor=not args.no_tailor,
                                      max_episode_steps=args.max_episode_steps, eval_episodes=args.eval_episodes,
                                      seed=args.seed, reward=reward_spec(args), device=args.device))
    r = res["returns"]
    print(f"{args.algo.upper()} trained in the model: real-env return {r['mean']:.1f} ± {r['se']:.1f} "
          f"over {r['n']} episodes")
    print(f"results: {args.out}/results.json")
    return 0
