"""Noether embedding g_phi and the Noether (conservation) loss, eq. 2 of Alet et al. 2021.

The paper's video g_phi (Sec. 4.3) is a two-layer CNN on two consecutive frames followed by a
fully-connected projection to 64 dims. No batch-coupling layers: loss[i] depends on example i only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from noether_rl.errors import UserError


@dataclass(frozen=True)
class EmbeddingConfig:
    """Configuration of :class:`NoetherEmbedding`."""

    kind: str = "conv"  # "conv" (frames) | "mlp" (state vectors)
    channels: int = 3  # per frame (conv); the conv input is 2 consecutive frames stacked on channels
    image_size: int = 64
    emb_dim: int = 64
    width: int = 32  # conv: channels of the first conv (the second has 2 * width); paper: 32
    in_dim: int = 2  # mlp: state dimension (2 consecutive states concatenated if pairs=True)
    hidden: int = 64  # mlp hidden
    pairs: bool = True  # the paper's design takes two consecutive frames

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "mlp"):
            raise UserError(f"EmbeddingConfig.kind must be 'conv' or 'mlp', got {self.kind!r}")
        if self.width < 1:
            raise UserError(f"EmbeddingConfig.width must be >= 1, got {self.width}")
        if self.kind == "conv" and self.image_size % 4:
            raise UserError(f"EmbeddingConfig.image_size must be divisible by 4, got {self.image_size}")


class NoetherEmbedding(nn.Module):
    """g_phi. conv: [2C, H, W] -> conv5x5(w)+ReLU+maxpool2 -> conv5x5(2w)+ReLU+maxpool2 -> linear -> emb_dim
    (w = ``cfg.width``, paper 32);
    mlp: [in_dim * (2 if pairs else 1)] -> hidden -> hidden -> emb_dim (ReLU)."""

    def __init__(self, cfg: EmbeddingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k = 2 if cfg.pairs else 1
        if cfg.kind == "conv":
            w = cfg.width
            self.conv1 = nn.Conv2d(k * cfg.channels, w, 5, 1, 2)
            self.conv2 = nn.Conv2d(w, 2 * w, 5, 1, 2)
            side = cfg.image_size // 4
            self.proj = nn.Linear(2 * w * side * side, cfg.emb_dim)
        else:
            self.mlp = nn.Sequential(
                nn.Linear(k * cfg.in_dim, cfg.hidden), nn.ReLU(),
                nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                nn.Linear(cfg.hidden, cfg.emb_dim),
            )

    @property
    def pairs(self) -> bool:
        return self.cfg.pairs

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, 2C, H, W] (conv) or [N, in_dim * (2 if pairs else 1)] (mlp) -> [N, emb_dim]."""
        if self.cfg.kind == "mlp":
            return self.mlp(x)
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # [N, 32, H/2, W/2]
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # [N, 64, H/4, W/4]
        return self.proj(h.flatten(1))

    def embed_sequence(self, seq: Tensor) -> Tensor:
        """See :func:`embed_sequence`."""
        return embed_sequence(self, seq, self.cfg.pairs)


def embed_sequence(g: nn.Module, seq: Tensor, pairs: bool) -> Tensor:
    """seq: [B, T, *obs] -> [B, T', D]: embeddings of consecutive pairs cat(seq[:, t-1], seq[:, t]) on dim 1
    (T' = T-1) if ``pairs``, else of each step (T' = T). One batched call of ``g`` over B*T' rows."""
    B, T = seq.shape[:2]
    if pairs:
        if T < 2:
            raise UserError(f"an embedding of consecutive pairs needs T >= 2 steps, got {T}")
        x = torch.cat([seq[:, :-1], seq[:, 1:]], 2)  # [B, T-1, 2C, H, W] or [B, T-1, 2D]
        T = T - 1
    else:
        x = seq
    e = g(x.reshape(B * T, *x.shape[2:]))  # [B*T', D]
    return e.view(B, T, -1)


def _dist(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """a, b: [B, T, D] -> [B, T]."""
    if distance == "mse":
        return (a - b).pow(2).sum(-1)
    if distance == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)
    raise UserError(f"unknown Noether distance {distance!r}; expected 'mse' or 'cosine'")


def noether_loss(g: nn.Module, x0: Tensor, preds: Tensor, *, form: str = "a", distance: str = "mse",
                 pairs: bool | None = None) -> Tensor:
    """Per-example Noether loss [B] (eq. 2).

    g: any module [N, *in] -> [N, D] (g_phi, or a fixed formula); pairs: g reads two consecutive steps
    (default: ``g.pairs`` if it has that attribute, else False).
    x0: observed conditioning steps [B, T0, ...] (T0 = 2 when g takes pairs, 1 otherwise);
    preds: predicted steps [B, T, ...]. With s = cat(x0, preds) and e = embed_sequence(g, s) ([B, T', D]):
    form "a": sum_{t>=1} dist(e_0, e_t) (conservation w.r.t. the ground-truth embedding e_0);
    form "b": sum_{t>=1} dist(e_{t-1}, e_t). distance "mse": squared L2 over D; "cosine": 1 - cos.
    """
    if x0.shape[0] != preds.shape[0] or x0.shape[2:] != preds.shape[2:]:
        raise UserError(f"noether_loss: x0 {list(x0.shape)} and preds {list(preds.shape)} do not match")
    s = torch.cat([x0.to(preds.dtype), preds], 1)  # [B, T0+T, ...]
    e = embed_sequence(g, s, bool(getattr(g, "pairs", False)) if pairs is None else pairs)  # [B, T', D]
    if form == "a":
        d = _dist(e[:, :1].expand_as(e[:, 1:]), e[:, 1:], distance)
    elif form == "b":
        d = _dist(e[:, :-1], e[:, 1:], distance)
    else:
        raise UserError(f"unknown Noether loss form {form!r}; expected 'a' or 'b'")
    return d.sum(1)  # [B]
