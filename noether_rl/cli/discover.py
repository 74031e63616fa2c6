"""``noether-rl discover``: find the conserved quantity whose Noether loss best helps prediction (issue 12).

    noether-rl discover --system spring|pendulum|real [--data PATH] --out DIR
    noether-rl discover --trajectories FILE.npz --units "q=L, p=M*L/T" --out DIR

Writes DIR/formulas.json (counts per stage, survivors with fitted parameters, the winner, RMSE),
DIR/winner.png and DIR/summary.txt; prints the summary. Bad input: one line, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from noether_rl.cli import argtypes
from noether_rl.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noether_rl.symbolic.search import SearchConfig

    p = sub.add_parser("discover", help="units-checked formula discovery of a useful conserved quantity",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", choices=["spring", "pendulum", "real"],
                     help="HNN's ideal spring / pendulum (generated) or the real pendulum (--data)")
    src.add_argument("--trajectories", help="a trajectory .npz (x [N, T, D], t or dt, optional x_clean, names)")
    p.add_argument("--data", help="real-pendulum measurement file (with --system real)")
    p.add_argument("--units", help='input units, e.g. "q=L, p=M*L/T" (default: the system\'s or the file\'s)')
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seeds", type=argtypes.seed, nargs="+", default=[0, 1, 2],
                   help="evaluation seeds (discovery runs on the first)")
    p.add_argument("--data-seed", type=argtypes.seed, default=0, help="seed of the generated data (--system)")
    p.add_argument("--max-size", type=argtypes.positive_int, default=7, help="largest formula size (nodes)")
    p.add_argument("--min-ratio", type=argtypes.positive_float, default=100.0,
                   help="conservation filter: true data must be this many times more conserved than random")
    p.add_argument("--filter-data", choices=["auto", "observed"], default="auto",
                   help="auto: filter on noise-free x_clean when present, else on the observed x (its noise is "
                        "estimated from the data and discounted)")
    p.add_argument("--select-rule", choices=["one_se", "lowest"], default="one_se",
                   help="final pick on the validation split: one_se = the best conserved law among the formulas "
                        "within one standard error of the lowest validation rollout RMSE; lowest = that lowest")
    p.add_argument("--step-rule", choices=["sgd", "polyak"], default=SearchConfig.step_rule,
                   help="the tailoring step: sgd = the paper's lr * gradient over inner lrs 10^-3 .. 10 (its effect "
                        "grows with the state: it can overshoot beyond the training range); polyak = the step that "
                        "zeroes the linearised Noether loss, times lr in 0.5 .. 3.5 (the same effect at every state)")
    p.add_argument("--top-k", type=argtypes.positive_int, default=20, help="formulas meta-tailored")
    p.add_argument("--meta-epochs", type=argtypes.positive_int, default=100, help="meta-tailoring epochs")
    p.add_argument("--pretrain-steps", type=argtypes.positive_int, default=2000, help="MLP pre-training steps")
    p.add_argument("--train-frac", type=float, default=0.8,
                   help="time split for single-trajectory data (real pendulum: HNN's 80 %%)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _refuse_object_arrays(path: str) -> None:
    """One clear line for a ``.npz`` holding object arrays (numpy would only say "allow_pickle=False")."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if not member.endswith(".npy"):
                    continue
                with z.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    _, _, dtype = read(f)  # the header only, no data
                if dtype.hasobject:
                    name = member[:-4]
                    raise UserError(f"{path}: array '{name}' holds Python objects (dtype=object), which are not "
                                    f"loaded; save it as a plain array, e.g. np.array({name}, dtype=str) for names "
                                    "or dtype=float for numbers")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return  # not a readable .npz: load_trajectories says so


def _load(args: argparse.Namespace):  # -> (train, test, units text, reference callable or None)
    from noether_rl.data.trajectories import load_trajectories

    if args.system in ("spring", "pendulum"):
        if args.data:
            raise UserError("--data is only for --system real (spring and pendulum are generated)")
        from noether_rl.data.systems import GenerateConfig, generate, get_system

        sysm = get_system(args.system)
        traj = generate(sysm, GenerateConfig(seed=args.data_seed))
        half = traj.n // 2
        return traj.subset(slice(0, half)), traj.subset(slice(half, traj.n)), sysm.units, sysm.hamiltonian
    if args.system == "real":
        if not args.data:
            raise UserError("--system real needs --data PATH (the real-pendulum measurement file)")
        from noether_rl.data.real_pendulum import load_real_pendulum, time_split

        traj = load_real_pendulum(args.data)
        train, test = time_split(traj, args.train_frac)
        return train, test, traj.units, None
    if args.data:
        raise UserError("--data is only for --system real; give your data with --trajectories FILE.npz")
    _refuse_object_arrays(args.trajectories)
    traj = load_trajectories(args.trajectories)
    if traj.n >= 2:  # first half of the trajectories train, the rest test
        half = traj.n // 2
        train, test = traj.subset(slice(0, half)), traj.subset(slice(half, traj.n))
    else:
        from noether_rl.data.real_pendulum import time_split

        train, test = time_split(traj, args.train_frac)
    return train, test, traj.units, None


def run(args: argparse.Namespace) -> int:
    from noether_rl.symbolic.pipeline import DiscoverConfig, discover, summary, write_outputs
    from noether_rl.symbolic.units import parse_units

    if not 0.0 < args.train_frac < 1.0:
        raise UserError(f"--train-frac must be in (0, 1), got {args.train_frac}")
    train, test, file_units, reference = _load(args)
    text = args.units or file_units
    if not text:
        raise UserError("the data carry no units: give them with --units, e.g. --units \"q=L, p=M*L/T\"")
    units = parse_units(text)
    if len(units) != train.dim:
        raise UserError(f"--units names {len(units)} inputs ({', '.join(units)}) but the data have {train.dim}")
    if args.units and list(units) != list(train.names) and not all(n.startswith("x") for n in train.names):
        raise UserError(f"--units names {list(units)} but the data's inputs are {list(train.names)}, in that order")
    # names from the units; the data's names may be generic x0, x1, ...
    train = replace(train, names=tuple(units))
    test = replace(test, names=tuple(units))
    cfg = DiscoverConfig(seeds=tuple(args.seeds), filter_data=args.filter_data, progress=not args.no_progress,
                         select_rule=args.select_rule)
    cfg = replace(cfg, enumeration=replace(cfg.enumeration, max_size=args.max_size),
                  filter=replace(cfg.filter, min_ratio=args.min_ratio),
                  search=replace(cfg.search, top_k=args.top_k, meta_epochs=args.meta_epochs,
                                 pretrain_steps=args.pretrain_steps,
                                 weight_decay=1e-5 if args.system == "real" else 1e-4))
    if args.step_rule == "sgd":
        from noether_rl.symbolic.search import LR_EXPONENTS

        cfg = replace(cfg, search=replace(cfg.search, step_rule="sgd", lr_exponents=LR_EXPONENTS))
    ref_fn = None
    if reference is not None:
        def ref_fn(x):  # the generator's energy as a torch function (the oracle column only)
            return reference(x)
    t0 = time.perf_counter()
    report = discover(train, test, units, cfg, reference=ref_fn)
    report["source"] = {"system": args.system, "trajectories": args.trajectories, "data": args.data,
                        "data_seed": args.data_seed if args.system in ("spring", "pendulum") else None}
    report["times_s"]["total"] = time.perf_counter() - t0
    write_outputs(args.out, report)
    print(summary(report))
    t = report["times_s"]
    print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    print(f"wrote {args.out}/formulas.json, winner.png, summary.txt")
    return 0
