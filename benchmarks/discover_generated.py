"""Write a generated system to a trajectory ``.npz`` for ``noether-rl discover --trajectories`` (issue 12).

    python benchmarks/discover_generated.py --system spring --constants k=3,m=0.7 --npz runs/spring_k3.npz
    python benchmarks/discover_generated.py --system pendulum --constants m=1,l=0.8,g=9.8 --npz runs/pend.npz
    python benchmarks/discover_generated.py --system spring --constants k=4,m=1 --units "q=1, p=1" --npz F.npz

Generates the system with the state-space data module exactly as ``benchmarks/discover_speed.py``
does (HNN's protocol, ``--seed`` 0 by default: 50 trajectories, the first 25 train and the last 25
test once ``discover`` splits the file), writes it with ``save_trajectories`` (x, x_clean, dxdt, t,
names, units) and prints the ``discover`` command to run on it. The file carries the data and the
units only; the generator's constants and energy stay here (``--print-truth`` prints them, for the
report, never for the pipeline). ``--seed`` other than 0 gives new data from the same system (e.g.
extra trajectories for a diagnosis), never the test split of seed 0.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace

from noether_rl.data import systems
from noether_rl.data.systems import GenerateConfig, generate
from noether_rl.data.trajectories import save_trajectories


def parse_constants(text: str | None) -> dict[str, float]:
    """``"k=3,m=0.7"`` -> {"k": 3.0, "m": 0.7} (as ``discover_speed.py --constants``)."""
    if not text:
        return {}
    return {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["pendulum", "spring"], required=True)
    ap.add_argument("--constants", help='e.g. "k=3,m=0.7" or "m=1,l=0.8,g=9.8" (default: the system\'s)')
    ap.add_argument("--units", help='units written into the file (default: the system\'s), e.g. "q=1, p=1"')
    ap.add_argument("--seed", type=int, default=0, help="generator seed (discover_speed.py uses 0)")
    ap.add_argument("--n-trajectories", type=int, default=50)
    ap.add_argument("--npz", required=True, help="output .npz")
    ap.add_argument("--out", default="DIR", help="the discover output directory printed in the command")
    ap.add_argument("--print-truth", action="store_true", help="print the generator's constants and energy")
    args = ap.parse_args()
    sysm = getattr(systems, args.system)(**parse_constants(args.constants))
    traj = generate(sysm, GenerateConfig(seed=args.seed, n_trajectories=args.n_trajectories))
    units = args.units or traj.units
    traj = replace(traj, units=units, system="generated")  # the file does not name the generator
    save_trajectories(args.npz, traj)
    print(f"wrote {args.npz}: x {list(traj.x.shape)}, units {units!r}, generator seed {args.seed}")
    if args.print_truth:
        print(f"generator: {sysm.name} {dict(sysm.params)}, H = {sysm.formula}")
    cmd = ["noether-rl", "discover", "--trajectories", args.npz, "--units", units, "--out", args.out]
    print("nice -n 15 env OMP_NUM_THREADS=1 " + " ".join(shlex.quote(c) for c in cmd))


if __name__ == "__main__":
    main()
