"""``noether-rl record``: record scripted-policy episodes of a pixel env to a directory of shards."""

from __future__ import annotations

import argparse

from noether_rl.envs import PIXEL_PENDULUM_ID


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "record",
        help="record episodes (frames, actions, states) to DIR",
        description="Record scripted-policy episodes to DIR: one .npz per episode plus manifest.json. "
        "Rerunning the same command resumes an interrupted recording.",
    )
    p.add_argument("--env", default=PIXEL_PENDULUM_ID, help="Gymnasium env id")
    p.add_argument("--policy", default="swingup", help="swingup | random | sine | zero | mixed (sine / random / noisy swing-up per episode)")
    p.add_argument("--episodes", type=int, default=200, help="number of episodes")
    p.add_argument("--steps", type=int, default=200, help="steps per episode")
    p.add_argument("--size", type=int, default=64, help="frame height = width in pixels")
    p.add_argument("--seed", type=int, default=0, help="root seed")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--num-envs", type=int, default=1, help="parallel worker processes")
    p.add_argument("--preview", action="store_true", help="write mp4 previews of the first episodes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from noether_rl.recorders import RecordConfig, record

    cfg = RecordConfig(
        env_id=args.env,
        policy=args.policy,
        episodes=args.episodes,
        steps=args.steps,
        size=args.size,
        seed=args.seed,
        out=args.out,
        num_envs=args.num_envs,
        preview=args.preview,
        progress=not args.no_progress,
    )
    out = record(cfg)
    print(out)
    return 0
