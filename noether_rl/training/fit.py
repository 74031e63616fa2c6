"""The one training loop every domain uses: a model, a dataset and a per-example objective.

Reads top to bottom: resume (or start clean) -> epochs of steps -> per-epoch log + validation ->
atomic checkpoint. It knows nothing of frames, SVG or tailoring:

- ``objective``: an ``nn.Module`` (the thing DDP wraps) whose ``forward(batch)`` returns a
  :class:`StepOutput`: per-example losses ``[B]``, per-example ``ok`` flags (False where the example's
  inner loop went non-finite) and optional per-example statistics ``[B]`` to average per epoch.
- ``data``: anything with ``len(data)`` windows and ``data.batch(idx [B] long) -> batch`` (on the device).
- ``param_groups``: what the optimiser (Adam) trains, with per-group learning rates.

Non-finite values are never silent: examples whose inner loop failed are dropped from the step (the
step is recomputed on the others, so one bad example cannot poison the meta-gradient) and counted; a
step with no usable example is skipped and counted; an epoch in which every step was skipped, or a
non-finite training loss or gradient, stops the run with a :class:`UserError` and leaves the last good
checkpoint in place. Launch under ``torchrun`` for DDP (the global batch is split across ranks).
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from noether_rl.errors import UserError
from noether_rl.training.checkpoint import load_checkpoint, save_checkpoint
from noether_rl.training.distributed import DistInfo


@dataclass
class StepOutput:
    """loss: [B] per-example training loss; ok: [B] bool (inner loop finite); stats: name -> [B]."""

    loss: Tensor
    ok: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


class WindowData(Protocol):
    def __len__(self) -> int: ...

    def batch(self, idx: Tensor) -> Any: ...


@dataclass(frozen=True)
class FitConfig:
    """out: run directory (last.pt, metrics.csv, tb/). An epoch is one pass over ``data`` in a seeded order."""

    out: str
    epochs: int
    batch_size: int
    seed: int = 0
    grad_clip: float | None = 10.0
    amp: bool = True  # bf16 autocast on CUDA
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True
    desc: str = "train"


def fit(cfg: FitConfig, objective: nn.Module, data: WindowData, param_groups: list[dict[str, Any]], *,
        device: torch.device, dist_info: DistInfo = DistInfo(), kind: str = "model",
        run_config: dict[str, Any] | None = None, identity: dict[str, Any] | None = None,
        validate: Callable[[], dict[str, float]] | None = None) -> Path:
    """Train ``objective``'s parameters in ``param_groups``; returns ``<out>/last.pt``.

    run_config: stored in the checkpoint (primitives); identity: what must match to resume a run in the
    same ``out`` (default: ``run_config``); validate: called on the main process after each epoch, its
    numbers go in the log (e.g. validation MSE with and without tailoring).
    """
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    run_config = run_config or {}
    identity = run_config if identity is None else identity
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UserError(f"epochs and batch size must be positive (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.batch_size % dist_info.world_size:
        raise UserError(f"batch size {cfg.batch_size} is not divisible by the {dist_info.world_size} processes")
    if len(data) == 0:
        raise UserError("no training windows: the episodes are shorter than one window")
    out.mkdir(parents=True, exist_ok=True)
    if dist_info.is_main:
        for tmp in out.glob(".last.pt.*.tmp"):  # a kill during an earlier save
            tmp.unlink(missing_ok=True)
        if not cfg.resume:  # the old checkpoint goes first: an interrupted fresh run must not resume it
            ckpt_path.unlink(missing_ok=True)
            (out / "metrics.csv").unlink(missing_ok=True)
    if dist_info.enabled:
        torch.distributed.barrier()
    torch.manual_seed(cfg.seed + dist_info.rank)
    opt = torch.optim.Adam(param_groups, betas=(0.9, 0.999))
    start_epoch, step, last_row = 0, 0, None
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        if ckpt.get("identity") != _jsonable(identity):
            raise UserError(f"{out} holds a run with a different configuration; use another --out, or pass "
                            f"--no-resume (train / meta-train) or delete {out} to start this stage over")
        objective.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, step, last_row = int(ckpt["epoch"]), int(ckpt["step"]), ckpt.get("log_row")
        _restore_rng(ckpt.get("rng"), dist_info.rank)
    logger = _Logger(out, enabled=dist_info.is_main, tensorboard=cfg.tensorboard, upto=start_epoch, last_row=last_row)
    if start_epoch >= cfg.epochs:
        logger.close()
        return ckpt_path
    model: nn.Module = objective
    if dist_info.enabled:
        model = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)

    local_bs = cfg.batch_size // dist_info.world_size
    sampler = DistributedSampler(range(len(data)), num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=False)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") else contextlib.nullcontext()
    trainable = [p for g in param_groups for p in g["params"]]
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               disable=not (cfg.progress and dist_info.is_main), desc=cfg.desc)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=device)
        objective.train()
        t0 = time.perf_counter()
        sums: dict[str, Tensor] = {}
        counts = torch.zeros(4, device=device)  # examples used, steps taken, steps skipped, examples dropped
        for i in range(0, len(order), local_bs):
            idx = order[i : i + local_bs]
            with amp:
                o = model(data.batch(idx))
            n_ok = _all_sum(o.ok.sum(), dist_info)  # host sync: one per step
            if int(n_ok) < _all_sum(torch.tensor(idx.numel(), device=device), dist_info):
                counts[3] += idx.numel() - o.ok.sum()
                if int(_all_min(o.ok.any().to(torch.int64), dist_info)) == 0:  # a rank has nothing usable
                    counts[2] += 1
                    continue
                with amp:  # recompute on the usable examples only: their meta-gradients stay exact
                    o = model(data.batch(idx[o.ok]))
            loss = o.loss.float().sum() * dist_info.world_size / n_ok  # = mean over usable examples (all ranks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip if cfg.grad_clip else math.inf)
            finite = _all_min(torch.stack([loss.detach(), norm]).isfinite().all().to(torch.int64), dist_info)
            if not int(finite):
                raise UserError(f"training loss or gradient became non-finite at epoch {epoch + 1}, step {step + 1} "
                                f"(lower the learning rate, or check the data); the last good checkpoint "
                                f"{ckpt_path if ckpt_path.exists() else '(none yet)'} is kept")
            opt.step()
            step += 1
            counts[0] += o.loss.shape[0]
            counts[1] += 1
            for k, v in {"loss": o.loss, **o.stats}.items():
                sums[k] = sums.get(k, 0) + v.detach().float().sum()
            bar.update(1)
        c = counts.tolist()  # one host sync per epoch
        if c[1] == 0:
            raise UserError(f"every step of epoch {epoch + 1} was skipped (non-finite inner loop for all examples); "
                            "lower the inner lr or use the 'polyak' inner step rule")
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step}
        row.update({k: float(v) / max(c[0], 1) for k, v in sums.items()})
        row.update({"skipped_steps": int(c[2]), "dropped_examples": int(c[3]), "seconds": time.perf_counter() - t0})
        if validate is not None and dist_info.is_main:
            row.update(validate())
        if dist_info.is_main:
            save_checkpoint(ckpt_path, {
                "kind": kind, "config": _jsonable(run_config), "identity": _jsonable(identity), "epoch": epoch + 1,
                "step": step, "model": objective.state_dict(), "optimizer": opt.state_dict(),
                "finished": epoch + 1 == cfg.epochs, "rng": _rng_state(), "log_row": row,
            })
            logger.log(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}")
    bar.close()
    logger.close()
    if dist_info.enabled:
        torch.distributed.barrier()
    return ckpt_path


def _all_sum(x: Tensor, d: DistInfo) -> Tensor:
    if d.enabled:
        x = x.clone()
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)
    return x


def _all_min(x: Tensor, d: DistInfo) -> Tensor:
    if d.enabled:
        x = x.clone()
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.MIN)
    return x


def _jsonable(d: Any) -> Any:
    """Primitives only (tuples -> lists), as stored in checkpoints and compared on resume."""
    import json

    return json.loads(json.dumps(d))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any] | None, rank: int) -> None:
    if not state or rank != 0:  # other ranks reseed from cfg.seed + rank (their streams are not saved)
        return
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class _Logger:
    """CSV (metrics.csv) + TensorBoard scalars, main process only. On resume, rows past the checkpoint's
    epoch (a kill between log and save) are dropped and a row the checkpoint has but the CSV lacks (a kill
    between save and log) is restored, so every epoch appears exactly once."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, upto: int, last_row: dict[str, Any] | None) -> None:
        self.enabled = enabled
        self.path = out / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= upto]
        if last_row is not None and upto and not any(int(r["epoch"]) == upto for r in rows):
            rows.append(last_row)
        self.path.unlink(missing_ok=True)
        for r in rows:
            self._append(r)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))

    def _append(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
