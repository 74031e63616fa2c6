"""Evaluate trained models on validation or test windows, with episode-level statistics and provenance.

Split: the recording's episodes are split train / val / test by :func:`noether_rl.data.episode_split`
(first ``train_episodes``, next ``val_episodes``, the rest). ``EvalConfig.split`` chooses the episodes
scored: ``"val"`` (for every selection: hyper-parameters, variants, epochs) or ``"test"`` (final reports
only). Unless given, ``train_episodes`` / ``val_episodes`` are the largest of the evaluated checkpoints'
own values (``config["data"]``; a missing ``val_episodes`` counts as 0), so no model sees the scored
episodes. :func:`evaluate` refuses, in one line, a model whose own training episodes (or, for the test split,
validation episodes) are among the scored ones.

Windows: every window of ``n_past + n_future`` frames (stride ``stride``) of the scored episodes; if there are
more than ``max_windows``, a seeded random subset (``seed``) of that size, the same for every model.

Scores per window and prediction step: MSE, PSNR (per frame, capped at ``PSNR_CAP_DB``: an exactly
predicted frame would be +inf), SSIM, optional LPIPS, and on ``noether_rl/PixelPendulum-v0`` recordings the
pendulum angle error in degrees (angle decoded from the predicted frame, :mod:`noether_rl.eval.pendulum_angle`,
against the recorded true angle) and ``rod_missing`` (1 where no rod could be decoded; its angle error counts
as 180 deg). A "copy last frame" floor (the last context frame repeated) is scored on the same windows.
Pendulum windows are split into ``upright`` (|theta| < ``UPRIGHT_RAD`` at every frame of the window, true
state from the recording) and ``swinging`` (the others).

Statistics: :mod:`noether_rl.eval.stats` (window means, standard errors clustered by episode, paired
differences on the same windows).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from noether_rl.data import EpisodeSplit, EpisodeWindows, episode_split, load_manifest
from noether_rl.errors import UserError
from noether_rl.eval import per_step_metrics, plot_all, side_by_side_video, write_results
from noether_rl.eval.pendulum_angle import angle_error_deg, decode_angle
from noether_rl.eval.stats import WindowScores, compare, save_scores
from noether_rl.noether import NoetherNetwork
from noether_rl.training.loading import LoadedModel, load_model
from noether_rl.utils.device import resolve_device
from noether_rl.utils.io import sha256_file

# (frames [B, L, C, H, W], actions [B, L-1, A]) -> predicted frames [B, n_future, C, H, W], or an output object
# with ``.pred`` (and optionally ``.result`` TailorResult, ``.initial``, ``.inner_lr``, ``.step_rule``)
Predict = Callable[[Tensor, Tensor], Any]

COPY_LAST = "copy last frame"
PSNR_CAP_DB = 100.0
UPRIGHT_RAD = 0.3
PENDULUM_ENV = "noether_rl/PixelPendulum-v0"
SPLITS = ("val", "test")
STATISTICS = ("mean over windows; se: standard error clustered by episode (Liang-Zeger with factor E/(E-1); "
              "equals sd(episode means)/sqrt(E) when episodes contribute equally); paired differences on the same "
              "windows with the same se; significant: |difference| > 2 se")


@dataclass(frozen=True)
class EvalConfig:
    data: str
    checkpoints: Mapping[str, str] = field(default_factory=dict)  # model name -> checkpoint path
    out: str = "eval"
    split: str = "test"  # "val" (selection) or "test" (final report)
    n_past: int = 4
    n_future: int = 26
    train_episodes: int | None = None  # None: the largest of the checkpoints' own values
    val_episodes: int | None = None  # None: the largest of the checkpoints' own values (missing = 0)
    stride: int = 5
    max_windows: int = 512
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    video: bool = True
    lpips: bool = False
    inner_steps: int | None = None  # override the Noether models' inner steps (None: as trained)
    inner_lr: float | None = None  # an explicit inner lr for the Noether models (None: as trained / learned)
    reference: str | None = None  # paired differences reference - every other model (and the floor) + verdict
    floor: bool = True  # also score the copy-last-frame predictor
    untailored: bool = False  # also score each Noether model's untailored prediction ("<name> (untailored)")
    progress: bool = True


# ------------------------------------------------------------------------------------------- predictors
def make_predict(model: LoadedModel, n_past: int, n_future: int, inner_steps: int | None = None,
                 inner_lr: float | None = None) -> Predict:
    """A prediction function for a loaded model. Noether models return their full output (tailored ``pred``,
    ``initial``, ``result``, ``inner_lr``, ``step_rule``); under ``torch.no_grad`` the inner step is first order."""
    module = model.module
    if isinstance(module, NoetherNetwork):
        tcfg = module.cfg.tailor if inner_steps is None else replace(module.cfg.tailor, steps=inner_steps)

        def predict(frames: Tensor, actions: Tensor) -> Any:
            context = frames[:, :n_past]
            out = module.predict(context, actions, n_future, tailor_cfg=tcfg, inner_lr=inner_lr)
            after = None
            if out.result is not None and out.result.final_losses is None:
                after = module.inner_loss(context, out.pred)  # [B] inner loss of the final prediction (one g_phi pass)
            return EvalOutput(pred=out.pred, initial=out.initial, result=out.result, inner_lr=out.inner_lr,
                              step_rule=out.step_rule, inner_loss_after=after)

        return predict

    def predict_plain(frames: Tensor, actions: Tensor) -> Tensor:
        return module.rollout(frames[:, :n_past], actions, n_future).pred  # type: ignore[operator]

    return predict_plain


@dataclass
class EvalOutput:
    """What the evaluation keeps of a Noether prediction (:class:`NoetherOutput` plus the inner loss after the
    step when the engine did not evaluate it)."""

    pred: Tensor
    initial: Tensor
    result: Any  # TailorResult | None
    inner_lr: float | None = None
    step_rule: str | None = None
    inner_loss_after: Tensor | None = None  # [B]


def copy_last_frame(n_past: int, n_future: int) -> Predict:
    """The floor every model must beat: the last context frame, repeated ``n_future`` times."""

    def predict(frames: Tensor, actions: Tensor) -> Tensor:
        return frames[:, n_past - 1 : n_past].expand(-1, n_future, -1, -1, -1)

    return predict


def _unpack(out: Any) -> tuple[Tensor, Any]:
    if isinstance(out, Tensor):
        return out, None
    pred = getattr(out, "pred", None)
    if pred is None:
        pred = out.frames
    return pred, out


# ------------------------------------------------------------------------------------------------ splits
def training_split(config: Any) -> dict[str, Any]:
    """``{"root", "train_episodes", "val_episodes"}`` of a training config (a ``TrainConfig`` or the dict stored
    in a checkpoint); a missing ``val_episodes`` counts as 0."""
    data = config["data"] if isinstance(config, Mapping) else config.data
    get = data.get if isinstance(data, Mapping) else (lambda k, d=None: getattr(data, k, d))
    if get("train_episodes") is None:
        raise UserError("the checkpoint's config has no data.train_episodes; cannot tell which episodes it trained on")
    return {"root": str(get("root", "")), "train_episodes": int(get("train_episodes")),
            "val_episodes": int(get("val_episodes", 0) or 0)}


def _shard_hashes(root: str | Path) -> list[str] | None:
    try:
        return [s["sha256"] for s in load_manifest(root)["shards"]]
    except Exception:  # noqa: BLE001  (the checkpoint's recording may be gone or moved: fall back to indices)
        return None


def resolve_split(cfg: EvalConfig, n_episodes: int, model_splits: Mapping[str, Mapping[str, Any]]) -> EpisodeSplit:
    """The evaluation's train / val / test episodes (see the module docstring)."""
    if cfg.split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    train = cfg.train_episodes
    if train is None:
        if not model_splits:
            raise UserError("give train_episodes (no checkpoint to read the training split from)")
        train = max(s["train_episodes"] for s in model_splits.values())
    val = cfg.val_episodes
    if val is None:
        val = max((s["val_episodes"] for s in model_splits.values()), default=0)
    split = episode_split(n_episodes, train, val)
    if not getattr(split, cfg.split):
        raise UserError(f"{cfg.data} has no {cfg.split} episodes ({n_episodes} episodes, {train} train, {val} val)")
    return split


def check_unseen(cfg: EvalConfig, episodes: list[int], manifest: Mapping[str, Any],
                 model_splits: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise one-line UserError if a model trained on a scored episode (or, for the test split, selected on one).

    Episodes are compared by shard sha256 when the checkpoint's own recording is readable (so a copy or a
    different recording is judged by content), else by index in the evaluated recording.
    """
    eval_hashes = [s["sha256"] for s in manifest["shards"]]
    scored = {eval_hashes[i]: i for i in episodes}
    for name, s in model_splits.items():
        own = _shard_hashes(s["root"]) if s.get("root") else None
        own = own if own is not None else eval_hashes
        sets = [("trained", range(0, s["train_episodes"]))]
        if cfg.split == "test":
            sets.append(("validated", range(s["train_episodes"], s["train_episodes"] + s["val_episodes"])))
        for verb, ids in sets:
            hit = sorted(scored[own[i]] for i in ids if i < len(own) and own[i] in scored)
            if hit:
                raise UserError(
                    f"model {name!r} {verb} on episodes {_ranges(hit)} of the {cfg.split} split; score it on "
                    f"episodes it never saw (its config: train_episodes={s['train_episodes']}, "
                    f"val_episodes={s['val_episodes']}; evaluation: train_episodes/val_episodes set the split)")


def _ranges(ids: list[int]) -> str:
    out, start, prev = [], ids[0], ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


def eval_windows(root: str, episodes: list[int], n_past: int, n_future: int, stride: int, max_windows: int,
                 seed: int, device: torch.device) -> tuple[EpisodeWindows, Tensor]:
    """All windows of ``episodes`` and the seeded subset ``idx`` (sorted) of at most ``max_windows`` of them."""
    data = EpisodeWindows(root, n_past, n_future, episodes=episodes, stride=stride, device=device)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:max_windows].sort().values.to(device)
    return data, idx


def heldout_windows(cfg: EvalConfig, device: torch.device) -> tuple[EpisodeWindows, Tensor]:
    """Windows of ``cfg.split`` for a split given explicitly in ``cfg`` (no checkpoints consulted)."""
    manifest = load_manifest(cfg.data)
    split = resolve_split(cfg, len(manifest["shards"]), {})
    return eval_windows(cfg.data, getattr(split, cfg.split), cfg.n_past, cfg.n_future, cfg.stride, cfg.max_windows,
                        cfg.seed, device)


# ------------------------------------------------------------------------------------------------ scoring
@dataclass
class Scored:
    """scores: per-window metrics of every predictor (and the floor); first: the first window's predictions per
    model (``"ground truth"`` first) for a video; tailoring: model -> inner-loop statistics; angle_decoder:
    decoder error on the ground-truth frames (pendulum only)."""

    scores: WindowScores
    first: dict[str, Tensor]
    tailoring: dict[str, dict[str, Any]]
    angle_decoder: dict[str, Any] | None = None


class _TailorStats:
    """Inner-loop statistics accumulated on the device (one host sync in :meth:`summary`)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.labels: dict[str, Any] = {}

    def add(self, out: Any) -> None:
        res = getattr(out, "result", None)
        for key in ("inner_lr", "step_rule"):
            if getattr(out, key, None) is not None:
                self.labels[key] = getattr(out, key)
        if res is None:
            return
        ok = res.ok
        zero = torch.zeros((), dtype=torch.float64, device=ok.device)
        before = res.inner_losses[0].double()
        parts = {"windows": ok.numel() + zero, "fallbacks": (~ok).sum() + zero,
                 "loss_before_sum": torch.where(ok, before, 0.0).sum()}
        after = res.final_losses if res.final_losses is not None else getattr(out, "inner_loss_after", None)
        if after is not None:
            after = after.detach().double()
            parts["loss_after_sum"] = torch.where(ok, after, 0.0).sum()
            parts["improved"] = (ok & (after < before)).sum() + zero
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, zero) + v

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.labels)
        if not self.sums:
            return out
        keys = list(self.sums)
        vals = dict(zip(keys, torch.stack([self.sums[k] for k in keys]).cpu().tolist()))
        n, fb = int(vals["windows"]), int(vals["fallbacks"])
        kept = n - fb
        out.update({"windows": n, "fallbacks": fb, "fallback_fraction": fb / n if n else math.nan,
                    "inner_loss_before": vals["loss_before_sum"] / kept if kept else math.nan})
        if "loss_after_sum" in vals:
            out["inner_loss_after"] = vals["loss_after_sum"] / kept if kept else math.nan
            out["improved_fraction"] = vals["improved"] / kept if kept else math.nan
        return out


@torch.no_grad()
def score_predictors(predictors: Mapping[str, Predict], data: EpisodeWindows, idx: Tensor, n_past: int,
                     batch_size: int, *, lpips: bool = False, progress: bool = True, floor: bool = True,
                     angles: bool | None = None, untailored: bool = False) -> Scored:
    """Score every predictor on the windows ``idx`` of ``data``, batched on the data's device.

    Per-window metrics stay on the device until the end (one transfer). ``angles``: decode pendulum angles
    (None: when the recording is of ``noether_rl/PixelPendulum-v0`` and has true states). With ``floor`` the
    copy-last-frame predictor is added as ``COPY_LAST``; with ``untailored`` each output's ``.initial``
    (the prediction before the inner step) is scored as ``"<name> (untailored)"``.
    """
    if len(idx) == 0:
        raise UserError("no windows to evaluate")
    n_future = data.L - n_past
    preds: dict[str, Predict] = dict(predictors)
    if floor:
        if COPY_LAST in preds:
            raise UserError(f"model name {COPY_LAST!r} is reserved for the floor")
        preds[COPY_LAST] = copy_last_frame(n_past, n_future)
    if angles is None:
        angles = _is_pendulum(data)
    chunks: dict[str, dict[str, list[Tensor]]] = {}
    tstats: dict[str, _TailorStats] = {}
    first: dict[str, Tensor] = {}
    upright: list[Tensor] = []
    decoder_err: list[Tensor] = []

    def add(name: str, metrics: dict[str, Tensor]) -> None:
        per = chunks.setdefault(name, {})
        for k, v in metrics.items():
            per.setdefault(k, []).append(v)

    for i in tqdm(range(0, len(idx), batch_size), desc="evaluate", disable=not progress, unit="batch"):
        b = idx[i : i + batch_size]
        frames, actions = data.batch(b)
        target = frames[:, n_past:]
        true_theta = None
        if angles:
            theta = data.states(b)[..., 0]  # [B, L]
            upright.append((theta.abs() < UPRIGHT_RAD).all(1))
            true_theta = theta[:, n_past:]
            decoder_err.append(angle_error_deg(decode_angle(target), true_theta))
        if not first:
            first["ground truth"] = target[0].cpu()
        for name, predict in preds.items():
            pred, out = _unpack(predict(frames, actions))
            if out is not None:
                tstats.setdefault(name, _TailorStats()).add(out)
            rows = [(name, pred)]
            if untailored and getattr(out, "initial", None) is not None:
                rows.append((f"{name} (untailored)", out.initial))
            for row, p in rows:
                add(row, _window_metrics(p, target, true_theta, lpips))
                if row not in first and row != COPY_LAST:
                    first[row] = p[0].cpu()

    ep = data.episode_of(idx)
    start = data.index[idx, 1]
    flat = [ep, start] + [torch.cat(v) for per in chunks.values() for v in per.values()]
    flat += [torch.cat(upright)] if upright else []
    flat_cpu = [t.cpu() for t in flat]  # transfers after all batches are queued
    ep_c, start_c = flat_cpu[0].long(), flat_cpu[1].long()
    it = iter(flat_cpu[2:])
    metrics = {name: {k: next(it).double() for k in per} for name, per in chunks.items()}
    masks: dict[str, Tensor] = {}
    if upright:
        up = next(it).bool()
        masks = {"swinging": ~up, "upright": up}
    decoder = None
    if decoder_err:
        e = torch.cat(decoder_err).cpu()
        decoder = {"mean_deg": float(e.mean()), "max_deg": float(e.max()),
                   "note": "decoder error on the ground-truth frames vs the recorded angle (its noise floor)"}
    return Scored(WindowScores(ep_c, start_c, metrics, masks), first,
                  {k: v.summary() for k, v in tstats.items()}, decoder)


def _is_pendulum(data: Any) -> bool:
    """True for windows of a ``noether_rl/PixelPendulum-v0`` recording that carries the true states."""
    root = getattr(data, "root", None)
    if root is None or not callable(getattr(data, "states", None)):
        return False
    try:
        env = load_manifest(root).get("env_id")
        data.states(data.index.new_zeros(1))
    except (UserError, OSError):  # DataError is a UserError
        return False
    return env == PENDULUM_ENV


def _window_metrics(pred: Tensor, target: Tensor, true_theta: Tensor | None, lpips: bool) -> dict[str, Tensor]:
    m = per_step_metrics(pred, target, lpips=lpips)
    m["psnr"] = m["psnr"].clamp(max=PSNR_CAP_DB)
    if true_theta is not None:
        theta = decode_angle(pred.clamp(0.0, 1.0))
        m["angle_error"] = angle_error_deg(theta, true_theta)
        m["rod_missing"] = theta.isnan().float()
    return m


def evaluate_predictors(predictors: Mapping[str, Predict], data: EpisodeWindows, idx: Tensor, n_past: int,
                        batch_size: int, lpips: bool = False, progress: bool = True,
                        floor: bool = False) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """-> (model name -> summary over all windows, first-window predictions per model for videos).

    A summary is ``{"n_examples", "n_steps", "n_episodes", "metrics": {metric: {"mean", "se", "mean_per_step",
    "se_per_step", ...}}}`` with episode-level standard errors. :func:`score_predictors` keeps the windows.
    """
    s = score_predictors(predictors, data, idx, n_past, batch_size, lpips=lpips, progress=progress, floor=floor)
    return {name: _summary(s.scores, name, "all") for name in s.scores.metrics}, s.first


def _summary(scores: WindowScores, model: str, subset: str) -> dict[str, Any]:
    s = scores.summary(model, subset)
    n_steps = next(iter(scores.metrics[model].values())).shape[1]
    return {"n_examples": s["n_windows"], "n_episodes": s["n_episodes"], "n_steps": n_steps, "metrics": s["metrics"]}


def results_block(scored: Scored, reference: str | None = None) -> dict[str, Any]:
    """The statistics part of ``results.json`` (see :func:`evaluate`) from scored windows."""
    sc = scored.scores
    models = {name: {"subsets": {sub: _summary(sc, name, sub) for sub in sc.subsets}} for name in sc.metrics}
    for name, block in models.items():
        block.update(block["subsets"]["all"])  # n_examples, n_steps, metrics of all windows at the top level
        if name in scored.tailoring:
            block["tailoring"] = scored.tailoring[name]
    paired: dict[str, Any] = {}
    verdict: list[dict[str, Any]] | None = None
    if reference is not None:
        if reference not in sc.metrics:
            raise UserError(f"reference model {reference!r} is not among the evaluated models {sorted(sc.metrics)}")
        controls = [m for m in sc.metrics if m != reference]  # incl. "<reference> (untailored)": the inner step's effect
        paired[reference] = {c: {sub: sc.paired(reference, c, sub) for sub in sc.subsets} for c in controls}
        verdict = compare(reference, controls, sc, metrics=("mse", "ssim", "angle_error"))
    elif COPY_LAST in sc.metrics:
        paired = {m: {COPY_LAST: {sub: sc.paired(m, COPY_LAST, sub) for sub in sc.subsets}}
                  for m in sc.metrics if m != COPY_LAST}
    windows = {"n": int(sc.episode.numel()), "n_episodes": int(torch.unique(sc.episode).numel()),
               "subsets": {sub: int(sc.mask(sub).sum()) if sub != "all" else int(sc.episode.numel())
                           for sub in sc.subsets},
               "episode": sc.episode.tolist(), "start": sc.start.tolist()}
    return {"statistics": STATISTICS, "windows": windows, "models": models, "paired": paired, "verdict": verdict,
            "angle_decoder": scored.angle_decoder}


# ------------------------------------------------------------------------------------------------ provenance
def checkpoint_provenance(name: str, model: LoadedModel, path: str | None, cfg: EvalConfig) -> dict[str, Any]:
    """Config, sha256, epoch and training split of a checkpoint, and the inner-loop settings used here."""
    out: dict[str, Any] = {"path": path, "sha256": sha256_file(path) if path and Path(path).is_file() else None,
                           "kind": model.kind,
                           "epoch": model.epoch, "config": dataclasses.asdict(model.config),
                           "training_split": training_split(model.config)}
    module = model.module
    if isinstance(module, NoetherNetwork):
        tcfg = module.cfg.tailor if cfg.inner_steps is None else replace(module.cfg.tailor, steps=cfg.inner_steps)
        lr = module.inner_lr(cfg.inner_lr) if callable(getattr(module, "inner_lr", None)) else cfg.inner_lr
        lr = lr.detach() if isinstance(lr, Tensor) else lr
        out["inner"] = {"steps": tcfg.steps, "step_rule": getattr(tcfg, "step_rule", None),
                        "label": getattr(tcfg, "label", None), "optimizer": tcfg.optimizer,
                        "configured_lr": tcfg.lr, "effective_lr": float(lr) if lr is not None else None,
                        "lr_source": "override" if cfg.inner_lr is not None else
                        ("learned" if module.cfg.learn_inner_lr else "config")}
    return out


# ------------------------------------------------------------------------------------------------ entry point
def evaluate(cfg: EvalConfig, models: Mapping[str, LoadedModel] | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoints`` (or already loaded ``models``) on ``cfg.split``; writes results.json, plots
    (per metric, all windows and each subset), a side-by-side video. Returns the results dict.

    results.json: ``config``, ``device``, ``split`` (definition and episode ids), ``checkpoints`` (name ->
    provenance), ``statistics`` (the estimator), ``windows`` (count, episodes, subset sizes, each window's
    episode and start), ``models`` (name -> ``metrics`` over all windows, ``subsets`` -> the same per subset,
    ``tailoring`` for Noether models), ``paired`` (treatment -> control -> subset -> metric -> difference
    block), ``verdict`` (with ``reference``), ``angle_decoder``, ``plots``, ``video``, ``wall_time_s``,
    ``non_finite`` (null values and why), ``versions``, ``timestamp``, ``window_scores`` (the per-window
    metrics, :func:`noether_rl.eval.stats.load_scores`, for pooling runs later).
    """
    if not cfg.checkpoints and not models:
        raise UserError("nothing to evaluate: give at least one NAME=CHECKPOINT")
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    manifest = load_manifest(cfg.data)
    loaded = dict(models or {})
    for name, path in cfg.checkpoints.items():
        if not Path(path).is_file():
            raise UserError(f"checkpoint {path} of model {name!r} not found")
        loaded[name] = load_model(path, device)
    model_splits = {name: training_split(m.config) for name, m in loaded.items()}
    split = resolve_split(cfg, len(manifest["shards"]), model_splits)
    episodes = getattr(split, cfg.split)
    check_unseen(cfg, episodes, manifest, model_splits)
    out.mkdir(parents=True, exist_ok=True)

    predictors = {name: make_predict(m, cfg.n_past, cfg.n_future, cfg.inner_steps, cfg.inner_lr)
                  for name, m in loaded.items()}
    data, idx = eval_windows(cfg.data, episodes, cfg.n_past, cfg.n_future, cfg.stride, cfg.max_windows, cfg.seed,
                             device)
    scored = score_predictors(predictors, data, idx, cfg.n_past, cfg.batch_size, lpips=cfg.lpips, floor=cfg.floor,
                              progress=cfg.progress,
                              untailored=cfg.untailored)
    block = results_block(scored, cfg.reference)
    curves = {name: b for name, b in block["models"].items()}
    metrics = ("mse", "ssim", "psnr", "lpips", "angle_error")
    plots = plot_all(curves, out, metrics=metrics)
    for sub in scored.scores.subsets[1:]:
        sub_curves = {name: b["subsets"][sub] for name, b in block["models"].items()}
        plots += plot_all(sub_curves, out, metrics=("mse", "ssim", "angle_error"), suffix=f"_{sub}",
                          title_suffix=f" ({sub} windows)")
    video = side_by_side_video(scored.first, out / "side_by_side.mp4") if cfg.video else None
    results = {
        "config": dataclasses.asdict(cfg) | {"checkpoints": dict(cfg.checkpoints)},
        "device": str(device),
        "split": {"name": cfg.split, "recording": str(cfg.data), "n_episodes": len(manifest["shards"]),
                  "train_episodes": len(split.train), "val_episodes": len(split.val), "episodes": episodes,
                  "definition": "episodes [0, train) train, [train, train+val) val, the rest test (recording order)",
                  "source": "config" if cfg.train_episodes is not None else "checkpoints"},
        "checkpoints": {name: checkpoint_provenance(name, m, cfg.checkpoints.get(name) or getattr(m, "path", None) or None,
                                                    cfg) for name, m in loaded.items()},
        "n_windows": int(len(idx)),
        "window_scores": str(out / "window_scores.pt"),
        **block,
        "plots": [str(p) for p in plots],
        "video": str(video) if video else None,
        "wall_time_s": time.perf_counter() - t0,
    }
    save_scores(out / "window_scores.pt", scored.scores)
    write_results(out / "results.json", results)
    return results


__all__ = [
    "COPY_LAST",
    "EvalConfig",
    "EvalOutput",
    "Predict",
    "Scored",
    "check_unseen",
    "checkpoint_provenance",
    "copy_last_frame",
    "eval_windows",
    "evaluate",
    "evaluate_predictors",
    "heldout_windows",
    "make_predict",
    "resolve_split",
    "results_block",
    "score_predictors",
    "training_split",
]
