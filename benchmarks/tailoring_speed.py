"""P1/P2 benchmarks of the Noether core (prints JSON; GPU when available, CPU otherwise).

P1: tailored prediction time / plain prediction time (same model and batch; 64x64, 4+26 frames,
    batch 32, the shipped default NoetherConfig: 1 inner step on the LSTM hidden states). Target <= 2.5.
P2: meta-training step (Alg. 1, frozen SVG, second order) / baseline SVG training step. Target <= 2.5.

Warm-up, device synchronisation around every timed call, medians of --repeats.

    python benchmarks/tailoring_speed.py [--device cuda] [--repeats 5] [--small]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch

from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.training import DataConfig, Objective, TrainConfig, build_network
from noether_rl.utils.device import resolve_device


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="32x32, width 16, rnn 128 (quick CPU check)")
    ap.add_argument("--emb-width", type=int, default=EmbeddingConfig().width, help="g_phi conv width (paper 32)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if args.small:
        model = SVGConfig(image_size=32, width=16, g_dim=64, rnn_size=128, norm="layer")
    else:
        model = SVGConfig(image_size=64, width=64, g_dim=128, rnn_size=256, norm="layer")
    B, n_past, n_future = 32, 4, 26
    data = DataConfig(root="", n_past=n_past, n_future=n_future)
    noether = NoetherConfig()  # the shipped default
    emb = EmbeddingConfig(image_size=model.image_size, width=args.emb_width)
    frames = torch.rand(B, n_past + n_future, 3, model.image_size, model.image_size, device=device)
    actions = torch.rand(B, n_past + n_future - 1, 1, device=device) * 4 - 2
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    base = Objective(build_network(TrainConfig(out="", data=data, model=model)), n_past, n_future, 1e-4).to(device)
    opt_b = torch.optim.Adam(base.parameters(), lr=1e-4)
    mcfg = TrainConfig(out="", data=data, model=model, noether=noether, embedding=emb, train_predictor=False)
    meta = Objective(build_network(mcfg), n_past, n_future, 1e-4, freeze_predictor=True).to(device)
    meta.svg.requires_grad_(False)
    meta.svg.eval()
    opt_m = torch.optim.Adam(meta.net.embedding.parameters(), lr=1e-4)
    net = meta.net
    first = dataclasses.replace(noether.tailor, order="first")

    def base_step() -> None:
        with amp:
            loss = base((frames, actions)).loss.mean()
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    def meta_step() -> None:
        with amp:
            loss = meta((frames, actions)).loss.mean()
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_m.step()

    @torch.no_grad()
    def plain() -> None:
        with amp:
            net.predictor.rollout(frames[:, :n_past], actions, n_future)

    @torch.no_grad()
    def tailored() -> None:
        with amp:
            net.predict(frames[:, :n_past], actions, n_future, tailor_cfg=first)

    t_plain = timed(plain, device, args.repeats)
    t_tail = timed(tailored, device, args.repeats)
    t_base = timed(base_step, device, args.repeats)
    t_meta = timed(meta_step, device, args.repeats)
    print(json.dumps({
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "model": {"image_size": model.image_size, "width": model.width, "rnn_size": model.rnn_size, "batch": B,
                  "frames": f"{n_past}+{n_future}"},
        "noether": {"step_rule": noether.tailor.label, "adapt": noether.adapt, "emb_width": args.emb_width},
        "seconds": {"plain_prediction": t_plain, "tailored_prediction": t_tail, "baseline_train_step": t_base,
                    "meta_train_step": t_meta},
        "P1_tailored_over_plain": t_tail / t_plain, "P1_target": 2.5,
        "P2_meta_over_baseline_step": t_meta / t_base, "P2_target": 2.5,
    }, indent=2))


if __name__ == "__main__":
    main()
