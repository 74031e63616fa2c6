"""Study: does training the world model on the planner's own episodes make pixel MPC swing up? (issue 10)

The pendulum-control demo's world model is trained on a ``mixed`` recording (random / sine / noisy swing-up
policies). On the action sequences CEM proposes it is much worse than on recorded ones (angle error at step 15:
36 deg under candidate actions vs 17 deg under recorded ones; ranking Spearman 0.35 with the true return) and
MPC stays at the random policy's return. Model-based RL methods (PETS, PlaNet, Dreamer) close this gap by
data aggregation: run the planner in the real env, add its episodes to the training data, fine-tune, repeat.
This script does exactly that with the package's pieces (``noether_rl.agents.aggregation``; the demo's
``aggregate`` stage runs the same rounds without the final measuring round), on top of a finished demo run:

    round r = 0 .. rounds-1:
      1. MPC (untailored, the demo's planner settings) with the current predictor in the real env on
         ``episodes`` fresh COLLECTION seeds (``collect_seed + 100 r + i``; never the demo's evaluation
         seeds 0..9 nor the selection seeds 100..109) -> their returns are this round's figure, and the
         episodes (frames, actions, rewards, states) are written as recording shards;
      2. a recording = the demo's training episodes + every MPC episode collected so far, followed by the demo's
         validation and test episodes unchanged (hard links; the split stays the demo's);
      3. the predictor is fine-tuned ``epochs`` more epochs free-running (the demo's free-running config: lr,
         horizon, batch) on that recording, starting from the current predictor.
    A final collection round measures the last model.

Everything is fixed in advance (rounds, episodes per round, epochs per round); nothing is selected. The reward
model is the demo's (fit on the mixed recording), unchanged. Resumes: finished episodes / training runs /
round results are reused.

    python benchmarks/mpc_data_aggregation.py --run /work/runs/pc3 --out /work/runs/agg
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import noether_rl.envs  # noqa: F401  (registers the env ids)
from noether_rl.agents.aggregation import spliced_recording
from noether_rl.agents.runs import RewardSpec, mean_se
from noether_rl.experiments.pendulum_control import (
    SCALES,
    PendulumControlConfig,
    _train_configs,
    collect_mpc_episodes,
)
from noether_rl.utils.io import atomic_write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished `reproduce pendulum-control` directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=10, help="MPC episodes collected per round")
    p.add_argument("--epochs", type=int, default=15, help="free-running epochs per round")
    p.add_argument("--collect-seed", type=int, default=1000)
    p.add_argument("--replan-every", type=int, default=3,
                   help="MPC replanning interval (3: the setting the reported study ran at)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from noether_rl.training import train

    scale = replace(SCALES["small-long"], aggregate_replan_every=args.replan_every)
    cfg = PendulumControlConfig(out=str(args.run), progress=False)
    _, free, _ = _train_configs(cfg, scale, args.run / "data")
    ckpt = str(Path(free.out) / "last.pt")
    reward = str(args.run / "reward.pt")
    mpc_dir = args.out / "mpc_data"
    mpc_dir.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"rounds": []}
    for r in range(args.rounds + 1):
        t0 = time.process_time()
        seeds = [args.collect_seed + 100 * r + i for i in range(args.episodes)]
        if r < len(summary["rounds"]):
            row = summary["rounds"][r]
        else:
            returns, rate = collect_mpc_episodes(Path(ckpt), RewardSpec(path=reward), scale, seeds, mpc_dir,
                                                 r * args.episodes, torch.device("cpu"), mpc_dir)
            print(f"collected {len(seeds)} episodes, control rate {rate:.2f} Hz", flush=True)
            row = {"round": r, "checkpoint": ckpt, "seeds": seeds, "returns": mean_se(returns),
                   "collect_cpu_s": time.process_time() - t0}
            summary["rounds"].append(row)
            atomic_write_json(summary_path, summary)
        print(f"round {r}: MPC return {row['returns']['mean']:.0f} ± {row['returns']['se']:.0f}", flush=True)
        if r == args.rounds:
            break
        t0 = time.process_time()
        n_mpc = (r + 1) * args.episodes
        data = spliced_recording(args.run / "data", mpc_dir, n_mpc, scale.train_episodes,
                                 args.out / f"round{r}" / "data", tag="mpc")
        run = replace(free, out=str(args.out / f"round{r}" / "svg"), init_from=ckpt, epochs=args.epochs,
                      data=replace(free.data, root=str(data), train_episodes=scale.train_episodes + n_mpc))
        train(run)
        ckpt = str(Path(run.out) / "last.pt")
        summary["rounds"][r]["train_cpu_s"] = time.process_time() - t0
        atomic_write_json(summary_path, summary)
    print(json.dumps([{k: v for k, v in row.items() if k != "checkpoint"} for row in summary["rounds"]]), flush=True)


if __name__ == "__main__":
    main()
