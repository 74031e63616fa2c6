"""The pixel-video recipe on the generic loop: SVG baseline training and Noether meta-training (Alg. 1).

``train(TrainConfig)`` builds the data (training episodes of a recording), the model (SVG, or a
:class:`NoetherNetwork` of SVG + conv g_phi), the per-example objective and the parameter groups, then
hands them to :func:`noether_rl.training.fit.fit` — the loop every domain shares.

- ``cfg.noether is None``: SVG with teacher forcing (its own training objective), all frames 1..L-1.
- otherwise each step is Alg. 1: predict from the context, inner step(s) on the Noether loss, final
  prediction with the tailored tensors, free-running frame MSE back-propagated (second order) to g_phi
  and, if ``cfg.train_predictor``, to the predictor.

Launch with ``torchrun --nproc-per-node N -m noether_rl.cli.main train ...`` for DDP.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from noether_rl.data import EpisodeWindows, episode_split, load_manifest
from noether_rl.errors import UserError
from noether_rl.models import SVG, NoetherEmbedding
from noether_rl.noether import LearnedAdaptation, NoetherNetwork
from noether_rl.training.checkpoint import load_checkpoint, save_checkpoint
from noether_rl.training.config import TrainConfig
from noether_rl.training.distributed import cleanup_distributed, init_distributed
from noether_rl.training.fit import FitConfig, StepOutput, fit
from noether_rl.utils.device import resolve_device


def frame_mse(pred: Tensor, target: Tensor) -> Tensor:
    """[B, T, C, H, W] x2 -> [B]: per-frame mean squared error, summed over time (as SVG)."""
    return (pred - target).pow(2).mean(dim=(2, 3, 4)).sum(1)


def frame_loss(pred: Tensor, target: Tensor, pyramid_levels: int = 0) -> Tensor:
    """:func:`frame_mse` plus the same on 2x, 4x, ..., ``2**pyramid_levels`` average-pooled frames -> [B]
    (``TrainConfig.pyramid_levels``; 0: ``frame_mse`` itself). H and W must be divisible by ``2**pyramid_levels``
    (``build_network`` checks the config; pooling would drop an odd last row/column)."""
    loss = frame_mse(pred, target)
    for _ in range(pyramid_levels):
        pred, target = _pool2(pred), _pool2(target)
        loss = loss + frame_mse(pred, target)
    return loss


def _pool2(x: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [B, T, C, H/2, W/2] (2x2 average pooling)."""
    B, T = x.shape[:2]
    y = F.avg_pool2d(x.flatten(0, 1), 2)
    return y.view(B, T, *y.shape[1:])


OBJECTIVES = ("teacher_forced", "free_running")


def build_network(cfg: TrainConfig) -> nn.Module:
    """SVG; NoetherNetwork(SVG, conv g_phi) when ``cfg.noether`` is set; or the free-running fine-tune
    control ``LearnedAdaptation(SVG)`` when ``cfg.learned_adapt`` is set (untrained weights)."""
    svg = SVG(cfg.model)
    if cfg.noether is not None and cfg.learned_adapt:
        raise UserError("a run is either a Noether Network (noether) or the free-running control (learned_adapt)")
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.objective != "teacher_forced" and (cfg.noether is not None or cfg.learned_adapt):
        raise UserError("objective applies to baseline SVG training only (Noether and the control roll out already)")
    if cfg.pyramid_levels < 0 or cfg.model.image_size % (2 ** cfg.pyramid_levels):
        raise UserError(f"pyramid_levels must be >= 0 with image_size ({cfg.model.image_size}) divisible by "
                        f"2**pyramid_levels, got {cfg.pyramid_levels}")
    if cfg.learned_adapt:
        return LearnedAdaptation(svg, cfg.learned_adapt, cfg.data.n_future)
    if cfg.noether is None:
        return svg
    return NoetherNetwork(svg, NoetherEmbedding(cfg.embedding), cfg.noether)


def run_kind(cfg: TrainConfig) -> str:
    """Checkpoint kind: "svg", "noether" or "svg_adapted" (the free-running fine-tune control)."""
    return "noether" if cfg.noether is not None else ("svg_adapted" if cfg.learned_adapt else "svg")


class Objective(nn.Module):
    """Per-example training loss of a video model on a batch (frames [B, L, C, H, W], actions [B, L-1, A])."""

    def __init__(self, net: nn.Module, n_past: int, n_future: int, beta: float, freeze_predictor: bool = False,
                 free_running: bool = False, pyramid_levels: int = 0) -> None:
        super().__init__()
        self.net = net
        self.pyramid_levels = pyramid_levels  # TrainConfig.pyramid_levels
        self.n_past, self.n_future, self.beta = n_past, n_future, beta
        self.freeze_predictor = freeze_predictor
        self.free_running = free_running  # baseline SVG trained on its own rollout (TrainConfig.objective)

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        if self.freeze_predictor:  # a frozen predictor stays in eval mode (SVG-LP: prior sampling, as at test time)
            self.svg.eval()
        return self

    @property
    def svg(self) -> SVG:
        return self.net.predictor if isinstance(self.net, (NoetherNetwork, LearnedAdaptation)) else self.net  # type: ignore[return-value]

    def forward(self, batch: tuple[Tensor, Tensor]) -> StepOutput:
        frames, actions = batch
        P = self.n_past
        if isinstance(self.net, LearnedAdaptation) or self.free_running:  # build_network: never with Noether
            # free-running loss, no inner step: the control's outer loss, or SVG with objective "free_running"
            p = self.net.rollout(frames[:, :P], actions, self.n_future, target=frames[:, P:])
            loss = frame_loss(p.pred, frames[:, P:], self.pyramid_levels)
            return StepOutput(loss if p.kl is None else loss + self.beta * p.kl, torch.ones_like(loss, dtype=torch.bool))
        if not isinstance(self.net, NoetherNetwork):
            p = self.net.teacher_forced(frames, actions, P)
            loss = frame_loss(p.pred, frames[:, 1:], self.pyramid_levels)
            return StepOutput(loss if p.kl is None else loss + self.beta * p.kl, torch.ones_like(loss, dtype=torch.bool))
        context, target = frames[:, :P], frames[:, P:]
        out = self.net.predict(context, actions, self.n_future, target=target)
        loss = frame_loss(out.pred, target, self.pyramid_levels)
        if out.kl is not None:
            loss = loss + self.beta * out.kl
        stats: dict[str, Tensor] = {"inner_lr": torch.full_like(loss, out.inner_lr)}
        ok = torch.ones_like(loss, dtype=torch.bool)
        if out.result is not None:
            with torch.no_grad():
                before = out.result.inner_losses[0]
                after = self.net.inner_loss(context, out.pred.detach())
            ok = out.result.ok
            stats.update(inner_before=before, inner_after=after, inner_improved=(after < before).float(),
                         fallback=(~ok).float())
        return StepOutput(loss, ok, stats)


def _param_groups(cfg: TrainConfig, obj: Objective) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    if _predictor_trains(cfg):
        groups.append({"params": list(obj.svg.parameters()), "lr": cfg.lr})
    else:
        obj.svg.requires_grad_(False)
    if isinstance(obj.net, LearnedAdaptation):  # same optimiser settings as g_phi: the same budget
        groups.append({"params": list(obj.net.adapt.parameters()), "lr": cfg.emb_lr})
    if isinstance(obj.net, NoetherNetwork):
        if cfg.freeze_embedding:  # the random-g_phi control
            obj.net.embedding.requires_grad_(False)
        else:
            groups.append({"params": list(obj.net.embedding.parameters()), "lr": cfg.emb_lr})
        if obj.net.cfg.learn_inner_lr:
            groups.append({"params": [obj.net.log_inner_lr], "lr": cfg.inner_lr_lr})
    if not groups and not cfg.freeze_embedding:
        raise UserError("nothing to train: the predictor is frozen and there is no g_phi, learned inner lr or "
                        "learned adaptation")
    return groups  # empty only for the random-g_phi control with a fixed inner lr: nothing is meta-trained


def _predictor_trains(cfg: TrainConfig) -> bool:
    return (cfg.noether is None and not cfg.learned_adapt) or cfg.train_predictor


def _file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    """What must match to resume a run: the config without settings that may change between a run and its
    resumption (epochs, device, progress, ...), with paths replaced by what they hold (the recording's
    manifest hash, the init checkpoint's hash), so ``./x`` vs ``/abs/x`` or a moved directory still resume."""
    d = json.loads(json.dumps(cfg.to_dict()))
    for k in ("out", "epochs", "device", "progress", "resume", "tensorboard", "amp", "val_windows"):
        d.pop(k, None)
    if d.get("objective") == "teacher_forced":  # the default, absent from runs made before the field existed
        d.pop("objective")
    if d.get("pyramid_levels") == 0:  # likewise
        d.pop("pyramid_levels")
    d["data"]["root"] = _file_hash(Path(cfg.data.root, "manifest.json"))
    if cfg.init_from:
        d["init_from"] = _file_hash(cfg.init_from)
    return d


def _validation(cfg: TrainConfig, obj: Objective, device: torch.device):
    """-> a callback scoring ``cfg.val_windows`` validation windows after each epoch (or None)."""
    if cfg.val_windows <= 0 or cfg.data.val_episodes <= 0:
        return None
    split = episode_split(len(load_manifest(cfg.data.root)["shards"]), cfg.data.train_episodes, cfg.data.val_episodes)
    d = cfg.data
    val = EpisodeWindows(d.root, d.n_past, d.n_future, split.val, stride=max(d.stride, 5), device=device)
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[: cfg.val_windows].to(device)

    def validate() -> dict[str, float]:
        net, P, n_future = obj.net, d.n_past, d.n_future
        was_training = net.training
        net.eval()
        sums = torch.zeros(2, device=device)
        with torch.no_grad():
            for i in range(0, len(idx), cfg.batch_size):
                frames, actions = val.batch(idx[i : i + cfg.batch_size])
                ctx, tgt = frames[:, :P], frames[:, P:]
                if isinstance(net, NoetherNetwork):
                    out = net.predict(ctx, actions, n_future)
                    sums[0] += (out.pred - tgt).pow(2).mean(dim=(1, 2, 3, 4)).sum()
                    sums[1] += (out.initial - tgt).pow(2).mean(dim=(1, 2, 3, 4)).sum()
                else:
                    sums[0] += (net.rollout(ctx, actions, n_future).pred - tgt).pow(2).mean(dim=(1, 2, 3, 4)).sum()
        net.train(was_training)
        s = (sums / len(idx)).tolist()
        return {"val_mse": s[0], "val_mse_untailored": s[1]} if isinstance(net, NoetherNetwork) else {"val_mse": s[0]}

    return validate


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) a training job; returns the path of the final checkpoint ``<out>/last.pt``."""
    if not Path(cfg.data.root, "manifest.json").is_file():
        raise UserError(f"{cfg.data.root} is not a recording (no manifest.json); run `noether-rl record` first")
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    try:
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        split = episode_split(len(load_manifest(cfg.data.root)["shards"]), cfg.data.train_episodes,
                              cfg.data.val_episodes)
        d = cfg.data
        data = EpisodeWindows(d.root, d.n_past, d.n_future, split.train, stride=d.stride, device=device)
        frozen = not _predictor_trains(cfg)
        obj = Objective(build_network(cfg), d.n_past, d.n_future, cfg.beta, freeze_predictor=frozen,
                        free_running=cfg.objective == "free_running", pyramid_levels=cfg.pyramid_levels).to(device)
        if cfg.init_from:
            load_predictor(obj.svg, load_checkpoint(cfg.init_from), cfg.init_from)
        groups = _param_groups(cfg, obj)
        if not groups:  # the random-g_phi control with a fixed inner lr: the untrained network is the model
            return _save_untrained(cfg, obj, dist_info.is_main)
        fcfg = FitConfig(out=cfg.out, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                         grad_clip=cfg.grad_clip, amp=cfg.amp, resume=cfg.resume, progress=cfg.progress,
                         tensorboard=cfg.tensorboard, desc="meta-train" if cfg.noether else "train")
        return fit(fcfg, obj, data, groups, device=device, dist_info=dist_info,
                   kind=run_kind(cfg), run_config=cfg.to_dict(),
                   identity=run_identity(cfg), validate=_validation(cfg, obj, device))
    finally:
        cleanup_distributed()


def _save_untrained(cfg: TrainConfig, obj: Objective, is_main: bool) -> Path:
    path = Path(cfg.out) / "last.pt"
    if is_main:
        save_checkpoint(path, {"kind": run_kind(cfg), "config": json.loads(json.dumps(cfg.to_dict())),
                               "identity": run_identity(cfg), "epoch": cfg.epochs, "step": 0, "model": obj.state_dict(),
                               "optimizer": {}, "finished": True, "note": "nothing trainable: saved untrained"})
    return path


def load_predictor(svg: SVG, ckpt: dict[str, Any], path: str | Path) -> None:
    """Load the SVG weights of an SVG or Noether checkpoint into ``svg`` (architectures must match)."""
    prefix = "net.predictor." if ckpt.get("kind") in ("noether", "svg_adapted") else "net."
    state = {k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    theirs = ckpt["config"].get("model", {})
    mine = json.loads(json.dumps(svg.cfg.__dict__))
    diff = sorted(k for k in mine if k in theirs and theirs[k] != mine[k])
    if diff:
        raise UserError(f"{path} was trained with a different model configuration ({', '.join(diff)} differ)")
    try:
        svg.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path} does not match this model configuration: {str(e).splitlines()[0]}") from None
