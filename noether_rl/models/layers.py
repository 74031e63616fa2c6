"""Building blocks for the SVG encoders/decoders: norm factory, conditional normalisation, conv blocks.

Conditional normalisation (CN, as in CNGRAD) is an element-wise affine map ``y = x * gamma + beta`` whose
``gamma``/``beta`` are *per example* tensors ``[B, C, 1, 1]`` supplied at call time through an
``adapt`` dict (keys ``cn_gamma_<i>`` / ``cn_beta_<i>``). Batched calls over several frames per example
must be example-major (row ``r`` belongs to example ``r // (N // B)``), which is what
``x.reshape(B * T, ...)`` of a ``[B, T, ...]`` tensor gives.

Note: ``BatchNorm2d`` in train mode couples the examples of a batch (shared statistics), so per-example
losses are then not independent; use ``norm="layer"`` (or ``"group"``) for tailoring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AdaptDict = dict[str, Tensor]


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer over ``channels`` feature maps: ``batch | group | layer | none``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = min(32, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # layer norm over (C, H, W), per example
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected batch | group | layer | none")


class CondNorm(nn.Module):
    """Per-example affine ``y = x * gamma + beta``; identity when the adapt dict lacks its keys.

    ``gamma``/``beta``: ``[B, C, 1, 1]``; ``x``: ``[B * N, C, H, W]`` example-major (N frames per example).
    """

    def __init__(self, index: int, channels: int) -> None:
        super().__init__()
        self.index = index
        self.channels = channels
        self.gamma_key = f"cn_gamma_{index}"
        self.beta_key = f"cn_beta_{index}"

    def forward(self, x: Tensor, adapt: AdaptDict | None) -> Tensor:
        if adapt is None:
            return x
        gamma = adapt.get(self.gamma_key)
        beta = adapt.get(self.beta_key)
        if gamma is None and beta is None:
            return x
        BN, C, H, W = x.shape
        ref = gamma if gamma is not None else beta
        B = ref.shape[0]
        xv = x.view(B, BN // B, C, H, W)  # [B, N, C, H, W]
        if gamma is not None:
            xv = xv * gamma.reshape(B, 1, C, 1, 1)
        if beta is not None:
            xv = xv + beta.reshape(B, 1, C, 1, 1)
        return xv.reshape(BN, C, H, W)


class CNRegistry:
    """Hands out consecutive CN indices while a network is being built."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.layers: list[CondNorm] = []

    def make(self, channels: int) -> CondNorm | None:
        if not self.enabled:
            return None
        layer = CondNorm(len(self.layers), channels)
        self.layers.append(layer)
        return layer


class ConvBlock(nn.Module):
    """conv (or transposed conv) -> norm -> [CN] -> activation.

    ``split`` > 0 declares that the input is ``cat(main, skip)`` on channels with ``split`` main channels;
    :meth:`forward_split` then takes the two parts separately (mathematically identical to the concat,
    but the skip part can be computed once and broadcast over time — see :class:`SVG`).
    """

    def __init__(
        self,
        conv: nn.Conv2d | nn.ConvTranspose2d,
        norm: str,
        cn: CNRegistry,
        act: str = "lrelu",
        use_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = conv
        out = conv.out_channels
        self.norm = make_norm(norm, out) if use_norm else nn.Identity()
        self.cn = cn.make(out) if use_norm else None
        self.act = act

    def _post(self, y: Tensor, adapt: AdaptDict | None) -> Tensor:
        y = self.norm(y)
        if self.cn is not None:
            y = self.cn(y, adapt)
        if self.act == "lrelu":
            return F.leaky_relu(y, 0.2)
        if self.act == "tanh":
            return torch.tanh(y)
        if self.act == "sigmoid":
            return torch.sigmoid(y)
        return y

    def forward(self, x: Tensor, adapt: AdaptDict | None = None) -> Tensor:
        return self._post(self.conv(x), adapt)

    def skip_part(self, skip: Tensor, n_main: int) -> Tensor:
        """The conv applied to the skip channels only (no bias): ``[N, C_skip, H, W] -> [N, C_out, H', W']``."""
        conv = self.conv
        if isinstance(conv, nn.ConvTranspose2d):
            w = conv.weight[n_main:]  # [C_in, C_out, k, k]
            return F.conv_transpose2d(
                skip, w, None, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
            )
        w = conv.weight[:, n_main:]  # [C_out, C_in, k, k]
        return F.conv2d(skip, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    def forward_split(self, x: Tensor, skip_out: Tensor, adapt: AdaptDict | None = None) -> Tensor:
        """``forward(cat(x, skip))`` given ``skip_out = skip_part(skip)`` broadcastable to the main output.

        ``x``: ``[B * N, C_main, H, W]``; ``skip_out``: ``[B, N or 1, C_out, H', W']``.
        """
        conv = self.conv
        n_main = x.shape[1]
        if isinstance(conv, nn.ConvTranspose2d):
            y = F.conv_transpose2d(
                x, conv.weight[:n_main], conv.bias, conv.stride, conv.padding, conv.output_padding,
                conv.groups, conv.dilation,
            )
        else:
            y = F.conv2d(
                x, conv.weight[:, :n_main], conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
            )
        BN, Co, Ho, Wo = y.shape
        B = skip_out.shape[0]
        y = (y.view(B, BN // B, Co, Ho, Wo) + skip_out).view(BN, Co, Ho, Wo)
        return self._post(y, adapt)
