"""Training configuration: one frozen dataclass composed of the component configs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from noether_rl.models import EmbeddingConfig, SVGConfig
from noether_rl.noether import NoetherConfig
from noether_rl.tailoring import TailorConfig


@dataclass(frozen=True)
class DataConfig:
    """root: a recording written by ``noether-rl record``. Windows of n_past + n_future frames
    (stride ``stride``) from the first ``train_episodes`` episodes are the training set; the next
    ``val_episodes`` are the validation set (all selection, per-epoch validation); the rest are test
    episodes, touched only for the final report (see :func:`noether_rl.data.episode_split`)."""

    root: str = ""
    n_past: int = 4
    n_future: int = 26
    train_episodes: int = 5
    val_episodes: int = 0
    stride: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``noether`` None = baseline SVG training (teacher forcing, as SVG);
    otherwise Alg. 1 meta-training of g_phi (and of the predictor if ``train_predictor``).

    epoch: one pass over all training windows (``DataConfig``), in a seeded random order.
    """

    out: str
    data: DataConfig = field(default_factory=DataConfig)
    model: SVGConfig = field(default_factory=SVGConfig)
    noether: NoetherConfig | None = None
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)  # g_phi (used when ``noether`` is set)
    init_from: str | None = None  # checkpoint whose predictor weights start this run
    freeze_embedding: bool = False  # control "random g_phi": g_phi stays at its random init (rest meta-trained)
    learned_adapt: str | None = None  # control "free-running fine-tune": these adaptables as plain parameters
    train_predictor: bool = True  # meta-training: also update the predictor (paper pendulum: False)
    # baseline SVG's loss: "teacher_forced" (SVG's own: every next frame from the true previous one) or
    # "free_running" (n_future frames rolled out from n_past, the model's own frames fed back). Teacher forcing
    # barely sees an action's effect (one step of torque moves the pixel pendulum < 1 degree); a free-running
    # loss accumulates it over the horizon, which a world model for planning needs.
    objective: str = "teacher_forced"
    # extra training-loss terms: the same frame MSE on 2x, 4x, ..., 2^pyramid_levels average-pooled frames
    # (0 = plain frame MSE; validation always scores the plain MSE). Why: the pixel MSE of a thin object (the
    # pendulum's rod) stops pointing towards its true position once prediction and target no longer overlap;
    # pooled copies still overlap over larger displacements. Measured for the pendulum demo with
    # benchmarks/finetune_arms.py (not kept for the default: README, Agents).
    pyramid_levels: int = 0
    epochs: int = 50
    batch_size: int = 16
    lr: float = 2e-3  # predictor (Adam, betas (0.9, 0.999) as SVG)
    emb_lr: float = 1e-3  # g_phi
    inner_lr_lr: float = 1e-2  # log inner lr (NoetherConfig.learn_inner_lr)
    beta: float = 1e-4  # KL weight (stochastic SVG-LP)
    grad_clip: float | None = 10.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (fp32 on CPU)
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True
    val_windows: int = 64  # validation windows scored after every epoch (0 = none; needs data.val_episodes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, d: dict[str, Any] | None) -> Any:
    if d is None:
        return None
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :meth:`TrainConfig.to_dict` (as stored in checkpoints)."""
    d = dict(d)
    noether = None
    if d.get("noether") is not None:
        n = dict(d["noether"])
        t = dict(n.get("tailor") or {})
        if t.pop("normalize", False):  # checkpoints from before step rules
            t["step_rule"] = "normalized"
        n["tailor"] = t
        noether = NoetherConfig(
            tailor=_build(TailorConfig, n.get("tailor")),
            **{k: v for k, v in n.items() if k != "tailor" and k in _fields(NoetherConfig)},
        )
    return dataclasses.replace(
        _build(TrainConfig, {k: v for k, v in d.items() if k not in ("data", "model", "noether", "embedding")}),
        data=_build(DataConfig, d["data"]),
        model=_build(SVGConfig, d["model"]),
        noether=noether,
        embedding=_build(EmbeddingConfig, d.get("embedding") or {}),
    )


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
