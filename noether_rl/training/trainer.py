"""Baseline SVG training and Noether meta-training (paper Alg. 1) in one loop.

Reads top to bottom: config -> data on device -> models -> optimiser -> resume -> epochs of steps
-> checkpoint each epoch. ``cfg.noether is None`` trains the SVG baseline with teacher forcing;
otherwise each step is Alg. 1: predict, inner step(s) on the Noether loss, final prediction with the
tailored tensors, outer task loss back-propagated (second order) to g_phi and, if
``cfg.train_predictor``, to the predictor.

Launch with ``torchrun --nproc-per-node N -m noether_rl.cli.main train ...`` for DDP; the global
batch ``cfg.batch_size`` is split across ranks.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from noether_rl.data import load_manifest, open_episode, split_episodes
from noether_rl.errors import UserError
from noether_rl.models import SVG
from noether_rl.noether import NoetherNetwork
from noether_rl.training.checkpoint import load_checkpoint, save_checkpoint
from noether_rl.training.config import DataConfig, TrainConfig
from noether_rl.training.distributed import DistInfo, cleanup_distributed, init_distributed
from noether_rl.utils.device import resolve_device, seed_everything


# --------------------------------------------------------------------------- data on device
class EpisodeWindows:
    """All windows of some episodes, gathered on the device by index (no per-example Python loop).

    frames: uint8 [E, T+1, H, W, C]; actions: float32 [E, T, A]; index: long [N, 2] (episode, start).
    """

    def __init__(self, data: DataConfig, episodes: list[int], device: torch.device) -> None:
        self.L = data.n_past + data.n_future
        eps = [open_episode(data.root, i) for i in episodes]
        T1 = min(e["frames"].shape[0] for e in eps)
        if T1 < self.L:
            raise UserError(f"episodes in {data.root} have {T1} frames; windows need n_past+n_future={self.L}")
        self.frames = torch.stack([torch.from_numpy(e["frames"][:T1]) for e in eps]).to(device)
        self.actions = torch.stack([torch.from_numpy(e["actions"][: T1 - 1]) for e in eps]).float().to(device)
        starts = torch.arange(0, T1 - self.L + 1, data.stride)
        ep_idx = torch.arange(len(eps)).repeat_interleave(len(starts))
        self.index = torch.stack([ep_idx, starts.repeat(len(eps))], 1).to(device)  # [N, 2]

    def __len__(self) -> int:
        return self.index.shape[0]

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """idx [B] -> frames float [B, L, C, H, W] in [0,1], actions [B, L-1, A]."""
        ep, start = self.index[idx, 0], self.index[idx, 1]
        t = start[:, None] + torch.arange(self.L, device=idx.device)  # [B, L]
        frames = self.frames[ep[:, None], t]  # [B, L, H, W, C] uint8
        actions = self.actions[ep[:, None], t[:, :-1]]  # [B, L-1, A]
        return frames.permute(0, 1, 4, 2, 3).float().div_(255.0), actions


# --------------------------------------------------------------------------- objectives
def frame_mse(pred: Tensor, target: Tensor) -> Tensor:
    """[B, T, C, H, W] x2 -> [B]: per-frame mean squared error, summed over time (as SVG)."""
    return (pred - target).pow(2).mean(dim=(2, 3, 4)).sum(1)


class Objective(nn.Module):
    """Per-example training loss [B]; the module DDP wraps (so DDP sees one forward per step)."""

    def __init__(self, cfg: TrainConfig, svg: SVG) -> None:
        super().__init__()
        self.cfg = cfg
        self.net: nn.Module = NoetherNetwork(svg, cfg.noether) if cfg.noether is not None else svg

    @property
    def svg(self) -> SVG:
        return self.net.predictor if isinstance(self.net, NoetherNetwork) else self.net  # type: ignore[return-value]

    def forward(self, frames: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """-> (per-example loss [B], ok [B] bool: inner loop finite)."""
        d = self.cfg.data
        if isinstance(self.net, NoetherNetwork):
            out = self.net.predict(frames, actions, d.n_past, d.n_future)
            loss = frame_mse(out.frames, frames[:, d.n_past :])
            kl = out.kl
            ok = out.result.ok if out.result is not None else torch.ones_like(loss, dtype=torch.bool)
        else:
            r = self.net.rollout(frames, actions, d.n_past, d.n_future, teacher_forcing=True)
            pred = torch.cat([r.context_frames, r.frames], 1)  # [B, L-1, C, H, W]
            loss = frame_mse(pred, frames[:, 1:])
            kl = r.kl
            ok = torch.ones_like(loss, dtype=torch.bool)
        if kl is not None:
            loss = loss + self.cfg.beta * kl
        return loss, ok


# --------------------------------------------------------------------------- the loop
def _check_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UserError(f"epochs and batch size must be positive (got {cfg.epochs}, {cfg.batch_size})")
    if not Path(cfg.data.root, "manifest.json").is_file():
        raise UserError(f"{cfg.data.root} is not a recording (no manifest.json); run `noether-rl record` first")


def _param_groups(cfg: TrainConfig, obj: Objective) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    svg = obj.svg
    if cfg.noether is None or cfg.train_predictor:
        groups.append({"params": list(svg.parameters()), "lr": cfg.lr})
    else:
        svg.requires_grad_(False)
    if isinstance(obj.net, NoetherNetwork):
        groups.append({"params": list(obj.net.embedding.parameters()), "lr": cfg.emb_lr})
        if obj.net.cfg.learn_inner_lr:
            groups.append({"params": [obj.net.log_inner_lr], "lr": cfg.inner_lr_lr})
    return groups


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) a training job; returns the path of the final checkpoint ``<out>/last.pt``."""
    _check_config(cfg)
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(cfg, device, dist_info)
    finally:
        cleanup_distributed()


def _train(cfg: TrainConfig, device: torch.device, dist_info: DistInfo) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    seed_everything(cfg.seed + dist_info.rank)

    manifest = load_manifest(cfg.data.root)
    train_ids, _ = split_episodes(len(manifest["shards"]), cfg.data.train_episodes)
    data = EpisodeWindows(cfg.data, list(train_ids), device)
    if cfg.batch_size % dist_info.world_size:
        raise UserError(f"batch size {cfg.batch_size} is not divisible by the {dist_info.world_size} processes")
    local_bs = cfg.batch_size // dist_info.world_size

    svg = SVG(cfg.model)
    obj = Objective(cfg, svg).to(device)
    start_epoch, step = 0, 0
    if cfg.init_from:
        init = load_checkpoint(cfg.init_from)
        _load_predictor(obj.svg, init, cfg.init_from)
    if cfg.noether is not None and not cfg.train_predictor:
        obj.svg.eval()  # frozen predictor: eval-mode norms keep examples independent
    groups = _param_groups(cfg, obj)
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999))

    resumed = cfg.resume and ckpt_path.exists()
    if resumed:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        if _run_identity(ckpt["config"]) != _run_identity(json.loads(json.dumps(cfg.to_dict()))):
            raise UserError(f"{out} holds a run with a different configuration; use another --out or delete it")
        obj.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        if start_epoch >= cfg.epochs:
            return ckpt_path
    model: nn.Module = obj
    if dist_info.enabled:
        model = DDP(obj, device_ids=[device.index] if device.type == "cuda" else None)

    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    sampler = DistributedSampler(
        range(len(data)), num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    logger = _Logger(out, enabled=dist_info.is_main, tensorboard=cfg.tensorboard, append=resumed)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") else contextlib.nullcontext()
    trainable = [p for g in groups for p in g["params"]]
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, disable=not (cfg.progress and dist_info.is_main),
               desc="meta-train" if cfg.noether else "train", unit="step")

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=device)
        if cfg.noether is None or cfg.train_predictor:
            obj.svg.train()
        t0 = time.perf_counter()
        sums = torch.zeros(3, device=device)  # loss sum, examples, skipped steps
        for i in range(0, len(order), local_bs):
            idx = order[i : i + local_bs]
            frames, actions = data.batch(idx)
            with amp:
                loss_b, ok = model(frames, actions)  # [B], [B]
            loss = loss_b.float().mean()
            opt.zero_grad(set_to_none=True)
            if cfg.noether is not None:
                all_ok = ok.all().to(torch.int32)
                if dist_info.enabled:  # every rank must take (or skip) the step together
                    torch.distributed.all_reduce(all_ok, op=torch.distributed.ReduceOp.MIN)
                if not bool(all_ok):  # host sync: skip steps whose inner loop hit a non-finite value
                    sums[2] += 1
                    continue
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            opt.step()
            step += 1
            sums[0] += loss_b.detach().float().sum()
            sums[1] += loss_b.shape[0]
            bar.update(1)
        stats = sums.tolist()  # one host sync per epoch
        row = {"epoch": epoch + 1, "step": step, "loss": stats[0] / max(stats[1], 1), "skipped_steps": int(stats[2]),
               "seconds": time.perf_counter() - t0}
        logger.log(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if dist_info.is_main:
            save_checkpoint(ckpt_path, _checkpoint(cfg, obj, opt, epoch + 1, step, finished=epoch + 1 == cfg.epochs))
    bar.close()
    logger.close()
    if dist_info.enabled:
        torch.distributed.barrier()
    return ckpt_path


# settings that may change between a run and its resumption (more epochs, another device, ...)
_RESUMABLE_KEYS = ("epochs", "device", "progress", "resume", "tensorboard", "amp")


def _run_identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RESUMABLE_KEYS}


def _checkpoint(cfg: TrainConfig, obj: Objective, opt: torch.optim.Optimizer, epoch: int, step: int, finished: bool) -> dict[str, Any]:
    return {
        "kind": "noether" if cfg.noether is not None else "svg",
        "config": json.loads(json.dumps(cfg.to_dict())),  # primitives only (tuples -> lists)
        "epoch": epoch,
        "step": step,
        "model": obj.state_dict(),
        "optimizer": opt.state_dict(),
        "finished": finished,
    }


def _load_predictor(svg: SVG, ckpt: dict[str, Any], path: str) -> None:
    prefix = "net.predictor." if ckpt.get("kind") == "noether" else "net."
    state = {k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    try:
        svg.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path} does not match this model configuration: {str(e).splitlines()[0]}") from None
    # fields that change how the predictor is tailored or wired at prediction time, not its weights
    free = ("adapt_target", "adapt_per_step", "skip_from", "cn")
    mine = {k: v for k, v in dataclasses.asdict(svg.cfg).items() if k not in free}
    theirs = {k: v for k, v in ckpt["config"]["model"].items() if k not in free}
    if mine != {**mine, **theirs}:
        raise UserError(f"{path} was trained with a different model configuration")


class _Logger:
    """CSV (metrics.csv) + TensorBoard scalars, main process only."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, append: bool) -> None:
        self.enabled = enabled
        self.path = out / "metrics.csv"
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        if enabled and not append:
            self.path.unlink(missing_ok=True)

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
