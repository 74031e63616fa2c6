"""The video Noether Network: SVG predictor + g_phi + one tailoring call (paper Alg. 1, PREDICTSEQUENCE).

    x̃  = rollout(context, actions, adapt=identity)                  # initial prediction
    adapt' = tailor(L_Noether(g_phi; x0, x̃(adapt)), adapt)           # K inner steps
    x̂  = rollout(context, actions, adapt=adapt')                     # final prediction

What is adapted is the predictor's choice (``SVG.adaptables(kind=...)``: LSTM activations or CN
gamma/beta); the engine never looks inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, noether_loss
from noether_rl.tailoring import TailorConfig, TailorResult, tailor


@dataclass(frozen=True)
class NoetherConfig:
    """embedding: g_phi architecture. tailor: inner loop (steps, lr, optimizer, order).
    adapt: what the inner loop adapts, "lstm" (LSTM activations; the paper's pendulum choice) or
    "cn" (conditional-normalisation gamma/beta; the paper's real-video choice).
    form: Noether loss 2(a) ("a": vs the ground-truth embedding) or 2(b) ("b": consecutive).
    distance: "mse" or "cosine".
    feedback_grad: False truncates the inner gradient at the pixel feedback loop (predictions re-enter
        the encoder as constants): no encoder backward in the inner step; the final prediction and the
        outer (meta) gradient are unaffected by this switch except through the inner step itself.
    learn_inner_lr: meta-learn log(inner lr) with the outer loss (initialised at ``tailor.lr``).
    """

    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    tailor: TailorConfig = field(default_factory=lambda: TailorConfig(steps=1, lr=1.0, normalize=True, order="second"))
    adapt: str = "lstm"
    form: str = "a"
    distance: str = "mse"
    feedback_grad: bool = True  # inner gradient also flows through the predicted-frame feedback (False: cheaper)
    learn_inner_lr: bool = False  # Meta-SGD: the inner lr is a parameter trained by the outer loss

    def __post_init__(self) -> None:
        if self.adapt not in ("lstm", "cn"):
            raise ValueError(f"NoetherConfig.adapt must be 'lstm' or 'cn', got {self.adapt!r}")
        if self.form not in ("a", "b"):
            raise ValueError(f"NoetherConfig.form must be 'a' or 'b', got {self.form!r}")


@dataclass
class NoetherOutput:
    frames: Tensor  # [B, n_future, C, H, W] final (tailored) prediction
    initial: Tensor  # [B, n_future, C, H, W] untailored prediction (detached)
    result: TailorResult | None  # None when no inner step was taken
    kl: Tensor | None  # [B] (stochastic predictor), else None


class NoetherNetwork(nn.Module):
    """predictor (SVG) + embedding g_phi. No recurrent state, batch size or device stored."""

    def __init__(self, predictor: SVG, cfg: NoetherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor = predictor
        self.embedding = NoetherEmbedding(cfg.embedding)
        # Meta-SGD inner learning rate (log scale); a plain buffer-like parameter when not learned
        self.log_inner_lr = nn.Parameter(torch.tensor(math.log(max(cfg.tailor.lr, 1e-12))),
                                         requires_grad=cfg.learn_inner_lr)

    def inner_lr(self, tcfg: TailorConfig) -> Tensor | None:
        """The learned inner lr (a tensor) when ``learn_inner_lr`` and ``tcfg`` keeps the configured lr.

        An override whose lr differs from ``cfg.tailor.lr`` uses that lr instead; an override equal to
        the configured (initial) lr still uses the learned one.
        """
        if not self.cfg.learn_inner_lr or tcfg.lr != self.cfg.tailor.lr:
            return None
        return self.log_inner_lr.exp()

    def conditioning_frames(self, frames: Tensor, n_past: int) -> Tensor:
        """Ground-truth frames the Noether loss anchors on: [B, 2 or 1, C, H, W] ending at frame n_past-1."""
        k = 2 if self.cfg.embedding.pairs else 1
        if n_past < k:
            raise ValueError(f"g_phi takes {k} frames but n_past={n_past}")
        return frames[:, n_past - k : n_past]

    def predict(
        self,
        frames: Tensor,
        actions: Tensor,
        n_past: int,
        n_future: int,
        *,
        tailor_cfg: TailorConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> NoetherOutput:
        """frames [B, >=n_past, C, H, W]; actions [B, n_past+n_future-1, A] -> tailored prediction.

        ``tailor_cfg`` overrides ``cfg.tailor`` (e.g. steps=0 for the untailored baseline, or
        order="first" at evaluation time where no meta-gradient is needed).
        """
        tcfg = tailor_cfg or self.cfg.tailor
        B = frames.shape[0]
        if generator is None and self.predictor.cfg.stochastic:
            # every rollout of this call must see the same z samples: fix them with a fresh seeded generator
            seed = int(torch.randint(2**62, (), device="cpu"))  # CPU RNG draw, no device sync
            generator = torch.Generator(device=frames.device).manual_seed(seed)
        context = frames[:, :n_past]
        x0 = self.conditioning_frames(frames, n_past)
        adapt0 = self.predictor.adaptables(B, n_future, kind=self.cfg.adapt, device=frames.device, dtype=frames.dtype)
        if tcfg.steps == 0:
            r = self.predictor.rollout(context, actions, n_past, n_future, adapt=adapt0, generator=generator,
                                       decode_context=False)
            return NoetherOutput(frames=r.frames, initial=r.frames.detach(), result=None, kl=r.kl)

        initial: list[Tensor] = []

        def inner_loss(adapt: dict[str, Tensor]) -> Tensor:  # [B]
            # the same generator state for every rollout of this call: tailoring must not resample z
            g = _fork(generator)
            r = self.predictor.rollout(context, actions, n_past, n_future, adapt=adapt, generator=g, decode_context=False,
                                       detach_feedback=not self.cfg.feedback_grad)
            if not initial:
                initial.append(r.frames.detach())
            return noether_loss(self.embedding, x0, r.frames, form=self.cfg.form, distance=self.cfg.distance)

        res = tailor(inner_loss, adapt0, tcfg, lr=self.inner_lr(tcfg))
        r = self.predictor.rollout(context, actions, n_past, n_future, adapt=res.adapted, generator=_fork(generator),
                                   decode_context=False)
        return NoetherOutput(frames=r.frames, initial=initial[0], result=res, kl=r.kl)


def _fork(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    g = torch.Generator(device=generator.device)
    g.set_state(generator.get_state())
    return g
