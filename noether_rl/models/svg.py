"""Action-conditioned SVG video predictor (Denton & Fergus 2018, "Stochastic Video Generation with a
Learned Prior"), as modified in Noether Networks (Alet et al. 2021, Sec. 4.3): the action ``a_{t-1}`` is
concatenated to the encoding of frame ``t-1`` before the frame-predictor LSTM; the learned prior (SVG-LP)
is optional (``stochastic``).

Per-example *adaptables* (tensors with leading dim B) modulate either the LSTM activations during the
predicted steps (``kind="lstm"``, the paper's pendulum setting) or the conditional-normalisation layers of
encoder and decoder (``kind="cn"``, CNGRAD). Identity adaptables reproduce ``adapt=None`` exactly.

Batch norm in train mode couples the examples of a batch (shared statistics): per-example losses are then
not independent. For tailoring use ``norm="layer"`` or ``"group"`` (or eval mode).

Hot path: with teacher forcing, all ground-truth frames are encoded in ONE batched encoder call and all
steps decoded in ONE batched decoder call after the LSTM loop; in free-running mode only the predicted
frames go through encoder/decoder step by step. The decoder's skip-connection convolutions are split
(``conv(cat(d, s)) = conv_d(d) + conv_s(s)``), so the skip half is computed once per skip frame rather
than once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.models.layers import AdaptDict, CNRegistry, ConvBlock
from noether_rl.noether.predictor import Prediction

LSTMState = list[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class SVGConfig:
    """Configuration of :class:`SVG` (all primitives: ``dataclasses.asdict`` is checkpoint-safe)."""

    image_size: int = 64  # 32, 64 or 128 (dcgan supports 32 and 64; vgg supports 64 and 128)
    channels: int = 3
    encoder: str = "dcgan"  # "dcgan" | "vgg"
    width: int = 64  # base number of conv filters (nf); dcgan: width, 2w, 4w, 8w
    g_dim: int = 128
    rnn_size: int = 256
    rnn_layers: int = 2
    action_dim: int = 1
    stochastic: bool = False  # SVG-LP: learned prior & posterior LSTMs
    z_dim: int = 64
    posterior_rnn_layers: int = 1
    prior_rnn_layers: int = 1
    norm: str = "layer"  # "layer" | "group" | "batch" | "none" (batch norm couples the examples of a batch)
    skip_from: str = "last"  # "last": skips from frame n_past-1; "svg": original off-by-one (frame n_past-2)

    def __post_init__(self) -> None:
        ok_sizes = {"dcgan": (32, 64), "vgg": (64, 128)}
        if self.encoder not in ok_sizes:
            raise UserError(f"SVGConfig.encoder must be 'dcgan' or 'vgg', got {self.encoder!r}")
        if self.image_size not in ok_sizes[self.encoder]:
            raise UserError(
                f"SVGConfig: encoder {self.encoder!r} supports image_size {ok_sizes[self.encoder]}, "
                f"got {self.image_size}"
            )
        if self.norm not in ("batch", "group", "layer", "none"):
            raise UserError(f"SVGConfig.norm must be batch | group | layer | none, got {self.norm!r}")
        if self.skip_from not in ("last", "svg"):
            raise UserError(f"SVGConfig.skip_from must be 'last' or 'svg', got {self.skip_from!r}")
        for name in ("channels", "width", "g_dim", "rnn_size", "rnn_layers", "z_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"SVGConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.action_dim < 0:
            raise UserError(f"SVGConfig.action_dim must be >= 0, got {self.action_dim}")


# ---------------------------------------------------------------------------------------------------------
# encoder / decoder


def _levels(cfg: SVGConfig) -> list[tuple[int, int]]:
    """(channels, n_conv_layers) per resolution level, shallow to deep."""
    w = cfg.width
    if cfg.encoder == "dcgan":
        chans = [w, 2 * w, 4 * w, 8 * w] if cfg.image_size == 64 else [w, 2 * w, 4 * w]
        return [(c, 1) for c in chans]
    levels = [(w, 2), (2 * w, 2), (4 * w, 3), (8 * w, 3)]
    if cfg.image_size == 128:
        levels.append((8 * w, 3))
    return levels


class Encoder(nn.Module):
    """DCGAN (4x4 stride-2 convs) or VGG (3x3 convs + maxpool) encoder; returns code and skip features."""

    def __init__(self, cfg: SVGConfig, cn: CNRegistry) -> None:
        super().__init__()
        self.kind = cfg.encoder
        levels = _levels(cfg)
        blocks = []
        c_in = cfg.channels
        for c, n in levels:
            if self.kind == "dcgan":
                layers = [ConvBlock(nn.Conv2d(c_in, c, 4, 2, 1), cfg.norm, cn)]
            else:
                layers = [ConvBlock(nn.Conv2d(c_in if i == 0 else c, c, 3, 1, 1), cfg.norm, cn) for i in range(n)]
            blocks.append(nn.ModuleList(layers))
            c_in = c
        self.levels = nn.ModuleList(blocks)
        self.last = ConvBlock(nn.Conv2d(c_in, cfg.g_dim, 4, 1, 0), cfg.norm, cn, act="tanh")

    def forward(self, x: Tensor, adapt: AdaptDict | None = None) -> tuple[Tensor, list[Tensor]]:
        """x: [N, C, H, W] (example-major when N = B*T) -> (code [N, g_dim], skips shallow->deep [N, Ci, Hi, Wi])."""
        skips = []
        h = x
        for i, level in enumerate(self.levels):
            if self.kind == "vgg" and i > 0:
                h = F.max_pool2d(h, 2)
            for blk in level:
                h = blk(h, adapt)
            skips.append(h)
        if self.kind == "vgg":
            h = F.max_pool2d(h, 2)
        conv = self.last.conv
        if tuple(h.shape[-2:]) == conv.kernel_size and conv.padding == (0, 0) and conv.dilation == (1, 1) \
                and conv.groups == 1:  # the conv covers the whole map: one matmul (faster on CPU, same values)
            N, G = h.shape[0], conv.out_channels
            y = F.linear(h.permute(0, 2, 3, 1).reshape(N, -1), conv.weight.permute(0, 2, 3, 1).reshape(G, -1),
                         conv.bias)
            h = self.last._post(y.view(N, G, 1, 1), adapt)
        else:
            h = self.last(h, adapt)  # [N, g_dim, 1, 1]
        return h.flatten(1), skips


class Decoder(nn.Module):
    """Mirror of :class:`Encoder` with skip connections (concatenation at each resolution), sigmoid output."""

    def __init__(self, cfg: SVGConfig, cn: CNRegistry) -> None:
        super().__init__()
        self.kind = cfg.encoder
        self.g_dim = cfg.g_dim
        levels = _levels(cfg)
        c_top = levels[-1][0]
        self.head = ConvBlock(nn.ConvTranspose2d(cfg.g_dim, c_top, 4, 1, 0), cfg.norm, cn)  # 1x1 -> 4x4
        blocks = []
        self.n_main: list[int] = []  # main (non-skip) channels entering each level's first conv
        for i in reversed(range(len(levels))):
            c, n = levels[i]
            c_prev = levels[i - 1][0] if i > 0 else cfg.channels
            self.n_main.append(c)
            if self.kind == "dcgan":
                conv = nn.ConvTranspose2d(2 * c, c_prev, 4, 2, 1)
                if i > 0:
                    layers = [ConvBlock(conv, cfg.norm, cn)]
                else:
                    layers = [ConvBlock(conv, cfg.norm, cn, act="sigmoid", use_norm=False)]
            else:
                layers = [ConvBlock(nn.Conv2d(2 * c, c, 3, 1, 1), cfg.norm, cn)]
                layers += [ConvBlock(nn.Conv2d(c, c, 3, 1, 1), cfg.norm, cn) for _ in range(n - 2)]
                if i > 0:
                    layers.append(ConvBlock(nn.Conv2d(c, c_prev, 3, 1, 1), cfg.norm, cn))
                else:
                    layers.append(
                        ConvBlock(nn.ConvTranspose2d(c, c_prev, 3, 1, 1), cfg.norm, cn, act="sigmoid", use_norm=False)
                    )
            blocks.append(nn.ModuleList(layers))
        self.levels = nn.ModuleList(blocks)  # deep -> shallow

    def _start(self, g: Tensor, adapt: AdaptDict | None) -> Tensor:
        """The head: a transposed conv of the 1x1 code, i.e. one matmul (as such: faster on CPU, same values)."""
        N, G = g.shape
        conv = self.head.conv
        C, kh, kw = conv.out_channels, *conv.kernel_size
        bias = None if conv.bias is None else conv.bias.repeat_interleave(kh * kw)
        y = F.linear(g, conv.weight.reshape(G, C * kh * kw).t(), bias).view(N, C, kh, kw)
        return self.head._post(y, adapt)  # [N, c_top, 4, 4]

    def forward(self, g: Tensor, skips: list[Tensor], adapt: AdaptDict | None = None) -> Tensor:
        """Reference path. g: [N, g_dim]; skips shallow->deep [N, Ci, Hi, Wi] -> frames [N, C, H, W]."""
        d = self._start(g, adapt)
        for j, level in enumerate(self.levels):
            if self.kind == "vgg":
                d = F.interpolate(d, scale_factor=2, mode="nearest")
            d = level[0](torch.cat([d, skips[-1 - j]], 1), adapt)
            for blk in level[1:]:
                d = blk(d, adapt)
        return d

    def skip_parts(self, skips: list[Tensor]) -> list[Tensor]:
        """Skip halves of the first conv of each level. skips shallow->deep [B, S, Ci, Hi, Wi]
        -> deep->shallow list of [B, S, Co, Ho, Wo] (no bias)."""
        out = []
        for j, level in enumerate(self.levels):
            s = skips[-1 - j]
            B, S = s.shape[:2]
            y = level[0].skip_part(s.flatten(0, 1), self.n_main[j])
            out.append(y.view(B, S, *y.shape[1:]))
        return out

    def forward_split(self, g: Tensor, skip_outs: list[Tensor], adapt: AdaptDict | None = None) -> Tensor:
        """Same as :meth:`forward` given ``skip_outs = skip_parts(...)`` ([B, N or 1, Co, Ho, Wo] each,
        deep->shallow). g: [B*N, g_dim] example-major -> frames [B*N, C, H, W]. On CPU the frame-producing
        transposed conv (few output channels) runs as :func:`_deconv_k4s2_phases` (faster there, same values
        up to float rounding)."""
        d = self._start(g, adapt)
        for j, level in enumerate(self.levels):
            if self.kind == "vgg":
                d = F.interpolate(d, scale_factor=2, mode="nearest")
            first = level[0]
            if d.device.type == "cpu" and _phases_apply(first.conv):
                y = _deconv_k4s2_phases(d, first.conv.weight[: d.shape[1]], first.conv.bias)
                BN, Co, Ho, Wo = y.shape
                B = skip_outs[j].shape[0]
                d = first._post((y.view(B, BN // B, Co, Ho, Wo) + skip_outs[j]).view(BN, Co, Ho, Wo), adapt)
            else:
                d = first.forward_split(d, skip_outs[j], adapt)
            for blk in level[1:]:
                d = blk(d, adapt)
        return d


_PHASE_MAX_OUT = 4  # output channels up to which the phase form of a stride-2 transposed conv is used (CPU)
_PHASE_TAP = ((3, 1), (2, 0))  # kernel tap of output phase a for input-window offset dy


def _phases_apply(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.ConvTranspose2d) and conv.out_channels <= _PHASE_MAX_OUT
            and conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.padding == (1, 1)
            and conv.output_padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)


def _deconv_k4s2_phases(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv_transpose2d(x, weight, bias, stride=2, padding=1)`` for 4x4 kernels as ONE stride-1 2x2
    convolution computing the four output phases (output pixel (2i+a, 2j+b) only sees a 2x2 input window),
    then one interleaving copy. x [N, Ci, H, W], weight [Ci, Co, 4, 4] -> [N, Co, 2H, 2W]."""
    N, _, H, W = x.shape
    Ci, Co = weight.shape[:2]
    tap = torch.tensor(_PHASE_TAP, device=weight.device)
    wk = weight[:, :, tap][..., tap]  # [Ci, Co, a, dy, b, dx]
    w2 = wk.permute(2, 4, 1, 0, 3, 5).reshape(4 * Co, Ci, 2, 2)  # output channels ordered (a, b, o)
    y = F.conv2d(x, w2, None if bias is None else bias.repeat(4), 1, 1)  # [N, 4*Co, H+1, W+1]
    sN, sC, sH, sW = y.stride()
    # out[n, o, i, a, j, b] = y[n, (a, b, o), i + a, j + b]
    z = y.as_strided((N, Co, H, 2, W, 2), (sN, sC, sH, 2 * Co * sC + sH, sW, Co * sC + sW), y.storage_offset())
    return z.reshape(N, Co, 2 * H, 2 * W)


# ---------------------------------------------------------------------------------------------------------
# recurrent parts


def _zero_state(cells: nn.ModuleList, B: int, device, dtype) -> LSTMState:
    return [
        (torch.zeros(B, c.hidden_size, device=device, dtype=dtype),
         torch.zeros(B, c.hidden_size, device=device, dtype=dtype))
        for c in cells
    ]


def _lstm_cell_modulated_c(cell: nn.LSTMCell, x: Tensor, h: Tensor, c: Tensor, scale: Tensor | None,
                           shift: Tensor | None) -> tuple[Tensor, Tensor]:
    """LSTMCell step with the new cell state modulated *before* computing h = o * tanh(c)."""
    gates = F.linear(x, cell.weight_ih, cell.bias_ih) + F.linear(h, cell.weight_hh, cell.bias_hh)  # [B, 4R]
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    if scale is not None:
        c = c * scale
    if shift is not None:
        c = c + shift
    return torch.sigmoid(o) * torch.tanh(c), c


class FramePredictor(nn.Module):
    """SVG's deterministic ``lstm``: embed linear -> LSTMCell stack -> linear + tanh."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.cells = nn.ModuleList([nn.LSTMCell(hidden, hidden) for _ in range(n_layers)])
        self.out = nn.Linear(hidden, out_dim)


class GaussianLSTM(nn.Module):
    """SVG's ``gaussian_lstm``: embed -> LSTMCell stack -> (mu, logvar) of a diagonal Gaussian."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.cells = nn.ModuleList([nn.LSTMCell(hidden, hidden) for _ in range(n_layers)])
        self.mu = nn.Linear(hidden, out_dim)
        self.logvar = nn.Linear(hidden, out_dim)

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        return _zero_state(self.cells, batch_size, device, dtype)

    def step(self, x: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        """x: [B, in_dim] -> mu [B, z], logvar [B, z], new state."""
        h = self.embed(x)
        new_state = []
        for cell, (hp, cp) in zip(self.cells, state):
            h, c = cell(h, (hp, cp))
            new_state.append((h, c))
        return self.mu(h), self.logvar(h), new_state


_CPU_CHUNK_FLOATS = 2**21  # ~8 MB fp32: rows per CPU encoder/decoder call keep the largest map cache-sized


def _slice_adapt(adapt: AdaptDict | None, sl: slice) -> AdaptDict | None:
    return None if adapt is None else {k: v[sl] for k, v in adapt.items()}


def _sample(mu: Tensor, logvar: Tensor, generator: torch.Generator | None) -> Tensor:
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def gaussian_kl(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mu1, var1) || N(mu2, var2)) summed over the last dim: [B, Z] -> [B]."""
    kl = 0.5 * (logvar2 - logvar1) + (logvar1.exp() + (mu1 - mu2).pow(2)) / (2 * logvar2.exp()) - 0.5
    return kl.sum(-1)


# ---------------------------------------------------------------------------------------------------------
# per-example modulation of the predicted steps (the "lstm" adaptables)

ModTarget = Literal["hidden", "cell", "code"]
_MOD_TARGETS: tuple[ModTarget, ...] = ("hidden", "cell", "code")


@dataclass
class _Modulation:
    """``x * scale + shift`` applied to one activation of the predicted steps, per example.

    target: "hidden" (each LSTM layer's h), "cell" (each LSTM layer's c, before h = o * tanh(c)) or
    "code" (the decoder's input code, i.e. the frame predictor's output g). scale/shift:
    [B, layers, R] (hidden/cell) or [B, g_dim] (code), with an extra time axis [B, horizon, ...] when
    ``per_step``.
    """

    target: ModTarget | None = None
    scale: Tensor | None = None
    shift: Tensor | None = None
    per_step: bool = False

    @staticmethod
    def from_adapt(adapt: AdaptDict | None) -> _Modulation:
        for target in _MOD_TARGETS:
            sc, sh = (adapt or {}).get(f"{target}_scale"), (adapt or {}).get(f"{target}_shift")
            if sc is not None or sh is not None:
                ref = sc if sc is not None else sh
                base = 2 if target == "code" else 3  # dims without a time axis
                return _Modulation(target, sc, sh, ref.dim() == base + 1)
        return _Modulation()

    def params(self, target: str, k: int, layer: int | None = None) -> tuple[Tensor | None, Tensor | None]:
        """(scale, shift) for predicted step k (>= 0) and LSTM layer, or (None, None)."""
        if self.target != target or k < 0:
            return None, None

        def pick(x: Tensor | None) -> Tensor | None:
            if x is None:
                return None
            x = x[:, k] if self.per_step else x
            return x if layer is None else x[:, layer]

        return pick(self.scale), pick(self.shift)

    def apply(self, x: Tensor, target: str, k: int, layer: int | None = None) -> Tensor:
        scale, shift = self.params(target, k, layer)
        if scale is not None:
            x = x * scale
        if shift is not None:
            x = x + shift
        return x


@dataclass
class WarmStart:
    """Context part of an SVG rollout (see :meth:`SVG.warm_start`): codes of the observed frames
    h_gt [B, n_enc, g_dim], decoder skip parts, recurrent states after the context, its KL."""

    n_past: int
    horizon: int
    h_gt: Tensor
    skip_outs: list[Tensor]
    states: dict[str, LSTMState]
    kl: Tensor | None
    posterior: bool


def _cn_part(adapt: AdaptDict | None) -> AdaptDict | None:
    cn = {k: v for k, v in (adapt or {}).items() if k.startswith("cn_")}
    return cn or None


# ---------------------------------------------------------------------------------------------------------
# the model


class SVG(nn.Module):
    """Action-conditioned SVG (deterministic, or SVG-LP when ``cfg.stochastic``); a
    :class:`noether_rl.noether.Predictor`. No recurrent state is stored on the module.

    - :meth:`rollout`: free-running prediction of ``horizon`` frames after a context (the protocol).
    - :meth:`teacher_forced`: SVG's training pass, ground truth fed at every step.
    """

    def __init__(self, cfg: SVGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cn = CNRegistry(True)  # CN layers hold no weights: identity unless ``adapt`` carries cn_* tensors
        self.encoder = Encoder(cfg, cn)
        self.decoder = Decoder(cfg, cn)
        self.cn_channels: list[int] = [layer.channels for layer in cn.layers]
        z = cfg.z_dim if cfg.stochastic else 0
        self.frame_predictor = FramePredictor(cfg.g_dim + cfg.action_dim + z, cfg.g_dim, cfg.rnn_size, cfg.rnn_layers)
        if cfg.stochastic:
            self.posterior = GaussianLSTM(cfg.g_dim, cfg.z_dim, cfg.rnn_size, cfg.posterior_rnn_layers)
            self.prior = GaussianLSTM(cfg.g_dim, cfg.z_dim, cfg.rnn_size, cfg.prior_rnn_layers)

    @property
    def stochastic(self) -> bool:
        return self.cfg.stochastic

    # -- adaptables ---------------------------------------------------------------------------------------

    def adaptables(self, batch_size: int, horizon: int, *, kind: str = "hidden", device=None,
                   dtype=None) -> dict[str, Tensor]:
        """Identity-initialised per-example tensors (leading dim B; device/dtype default to the model's).

        kind "hidden" | "cell" | "code", optionally suffixed "_per_step": ``<kind>_scale`` ones and
            ``<kind>_shift`` zeros modulating the LSTM hidden states, cell states ([B, rnn_layers, rnn_size])
            or the decoder's input code ([B, g_dim]) during the ``horizon`` predicted steps;
            "_per_step" adds a time axis ([B, horizon, ...]).
        kind "cn": ``cn_gamma_<i>`` ones / ``cn_beta_<i>`` zeros [B, C_i, 1, 1] for every conditional-
            normalisation layer of encoder and decoder (the paper's real-video choice).
        """
        cfg = self.cfg
        ref = next(self.parameters())
        kw = {"device": ref.device if device is None else device, "dtype": ref.dtype if dtype is None else dtype}
        if kind == "cn":
            out = {}
            for i, C in enumerate(self.cn_channels):
                out[f"cn_gamma_{i}"] = torch.ones(batch_size, C, 1, 1, **kw)
                out[f"cn_beta_{i}"] = torch.zeros(batch_size, C, 1, 1, **kw)
            return out
        target, per_step = kind.removesuffix("_per_step"), kind.endswith("_per_step")
        if target not in _MOD_TARGETS:
            raise UserError(f"unknown SVG adaptables kind {kind!r}; expected hidden | cell | code (optionally "
                            "with _per_step) or cn")
        tail = (cfg.g_dim,) if target == "code" else (cfg.rnn_layers, cfg.rnn_size)
        shape = (batch_size, horizon, *tail) if per_step else (batch_size, *tail)
        return {f"{target}_scale": torch.ones(shape, **kw), f"{target}_shift": torch.zeros(shape, **kw)}

    # -- helpers ------------------------------------------------------------------------------------------

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        """Zero state of the frame-predictor LSTM: list (one per layer) of (h, c), each [B, rnn_size]."""
        return _zero_state(self.frame_predictor.cells, batch_size, device, dtype)

    def skip_index(self, n_past: int) -> int:
        """Frame whose encoder features feed the skip connections of the predicted steps."""
        return n_past - 1 if self.cfg.skip_from == "last" else max(n_past - 2, 0)

    def _chunk_examples(self, device: torch.device, rows_per_example: int) -> int:
        """Examples per encoder/decoder call (0 = all at once): cache-sized chunks on CPU."""
        if device.type != "cpu" or (self.training and self.cfg.norm == "batch"):
            return 0
        side = self.cfg.image_size if self.cfg.encoder == "vgg" else self.cfg.image_size // 2
        rows = max(1, _CPU_CHUNK_FLOATS // (self.cfg.width * side * side))  # rows whose largest map fits
        return max(1, rows // max(1, rows_per_example))

    def _encode_gt(self, x: Tensor, adapt: AdaptDict | None, skip_sl: slice,
                   chunk: int) -> tuple[Tensor, list[Tensor]]:
        """x: [B, N, C, H, W] -> codes [B, N, g_dim], decoder skip parts of frames ``skip_sl``
        (deep->shallow [B, n_skip, Co, Ho, Wo]). Batched over B*N rows, in example chunks if ``chunk``."""
        B, N, C, H, W = x.shape
        if chunk <= 0 or chunk >= B:
            code, skips = self.encoder(x.reshape(B * N, C, H, W), adapt)
            skips = [f.view(B, N, *f.shape[1:])[:, skip_sl] for f in skips]
            return code.view(B, N, -1), self.decoder.skip_parts(skips)
        codes, outs = [], []
        for b0 in range(0, B, chunk):
            sl = slice(b0, b0 + chunk)
            c, so = self._encode_gt(x[sl], _slice_adapt(adapt, sl), skip_sl, 0)
            codes.append(c)
            outs.append(so)
        return torch.cat(codes, 0), [torch.cat(parts, 0) for parts in zip(*outs)]

    def _decode(self, g: Tensor, skip_outs: list[Tensor], adapt: AdaptDict | None, chunk: int) -> Tensor:
        """g: [B, N, g_dim], skip_outs [B, N or 1, Co, Ho, Wo] -> frames [B, N, C, H, W]."""
        B, N, G = g.shape
        if chunk <= 0 or chunk >= B:
            y = self.decoder.forward_split(g.reshape(B * N, G), skip_outs, adapt)
            return y.view(B, N, *y.shape[1:])
        return torch.cat(
            [self._decode(g[b0 : b0 + chunk], [so[b0 : b0 + chunk] for so in skip_outs],
                          _slice_adapt(adapt, slice(b0, b0 + chunk)), 0) for b0 in range(0, B, chunk)],
            0,
        )

    def _check_inputs(self, frames: Tensor, actions: Tensor, steps: int) -> None:
        cfg = self.cfg
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (cfg.channels, cfg.image_size, cfg.image_size):
            raise UserError(f"frames must be [B, T, C={cfg.channels}, H={cfg.image_size}, W={cfg.image_size}], "
                            f"got {list(frames.shape)}")
        B = frames.shape[0]
        if actions.dim() != 3 or actions.shape[0] != B or actions.shape[1] < steps or actions.shape[2] != cfg.action_dim:
            raise UserError(f"actions must be [B={B}, >={steps}, A={cfg.action_dim}], got {list(actions.shape)}")

    # -- one recurrent step -------------------------------------------------------------------------------

    def _latent(self, states: dict[str, LSTMState], g_in: Tensor, g_next: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """SVG-LP latent of one step: z from the posterior on the next frame's code ``g_next`` when given
        (then also KL(q || p) [B]), else from the learned prior on ``g_in``."""
        mu_p, lv_p, states["prior"] = self.prior.step(g_in, states["prior"])
        if g_next is None:
            return _sample(mu_p, lv_p, generator), None
        mu_q, lv_q, states["posterior"] = self.posterior.step(g_next, states["posterior"])
        return _sample(mu_q, lv_q, generator), gaussian_kl(mu_q, lv_q, mu_p, lv_p)

    def _lstm_step(self, state: LSTMState, x_in: Tensor, mod: _Modulation, k: int) -> Tensor:
        """One step of the frame-predictor LSTM stack (state updated in place); -> top h [B, rnn_size].
        k: index of the predicted step (< 0 during the context: no modulation)."""
        fp = self.frame_predictor
        x = fp.embed(x_in)  # [B, rnn_size]
        for li, cell in enumerate(fp.cells):
            hp, cp = state[li]
            if mod.target == "cell" and k >= 0:
                h, c = _lstm_cell_modulated_c(cell, x, hp, cp, *mod.params("cell", k, li))
            else:
                h, c = cell(x, (hp, cp))
                h = mod.apply(h, "hidden", k, li)
            state[li] = (h, c)
            x = h
        return x

    def _step_inputs(self, g_in: Tensor, action: Tensor, states: dict[str, LSTMState], g_next: Tensor | None,
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """LSTM input cat(enc(x_{t-1}), a_{t-1}[, z_t]) [B, g_dim + A (+ z_dim)], and the step's KL or None."""
        if not self.cfg.stochastic:
            return torch.cat([g_in, action], 1), None
        z, kl = self._latent(states, g_in, g_next, generator)
        return torch.cat([g_in, action, z], 1), kl

    def _init_states(self, B: int, device, dtype) -> dict[str, LSTMState]:
        states = {"frame": self.init_state(B, device, dtype)}
        if self.cfg.stochastic:
            states["prior"] = self.prior.init_state(B, device, dtype)
            states["posterior"] = self.posterior.init_state(B, device, dtype)
        return states

    # -- the Predictor protocol ---------------------------------------------------------------------------

    def warm_start(self, context: Tensor, actions: Tensor, horizon: int, *, kind: str,
                   generator: torch.Generator | None = None, target: Tensor | None = None) -> WarmStart | None:
        """The part of :meth:`rollout` that adaptables of ``kind`` cannot change: encoding the context and
        the LSTM warm-up over it. A Noether Network computes it once and shares it between its initial and
        final rollouts (``rollout(..., warm=...)``). None for "cn" (CN changes the encoder itself).
        ``generator`` is advanced past the warm-up's samples; later rollouts fork from it."""
        if kind == "cn":
            return None
        return self._warm(context, actions, horizon, None, generator, target)

    def _warm(self, context: Tensor, actions: Tensor, horizon: int, cn: AdaptDict | None,
              generator: torch.Generator | None, target: Tensor | None) -> WarmStart:
        B, n_past = context.shape[:2]
        L = n_past + horizon
        if n_past < 1 or horizon < 1:
            raise UserError(f"rollout needs n_past >= 1 and horizon >= 1, got {n_past}, {horizon}")
        self._check_inputs(context, actions, L - 1)
        device, dtype = context.device, context.dtype
        posterior = self.cfg.stochastic and self.training and target is not None
        gt = torch.cat([context, target.to(dtype)], 1) if posterior else context  # [B, n_enc, C, H, W]
        s_idx = self.skip_index(n_past)
        h_gt, skip_outs = self._encode_gt(gt, cn, slice(s_idx, s_idx + 1), self._chunk_examples(device, gt.shape[1]))
        states = self._init_states(B, device, dtype)
        kl: Tensor | None = None
        no_mod = _Modulation()
        for t in range(1, n_past):  # context steps: LSTM only, nothing decoded
            g_next = h_gt[:, t] if self.cfg.stochastic else None
            x_in, kl_t = self._step_inputs(h_gt[:, t - 1], actions[:, t - 1].to(dtype), states, g_next, generator)
            kl = kl_t if kl is None else kl + kl_t
            self._lstm_step(states["frame"], x_in, no_mod, -1)
        return WarmStart(n_past=n_past, horizon=horizon, h_gt=h_gt, skip_outs=skip_outs, states=states, kl=kl,
                         posterior=posterior)

    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, adapt: AdaptDict | None = None,
                generator: torch.Generator | None = None, target: Tensor | None = None,
                warm: WarmStart | None = None) -> Prediction:
        """Free-running prediction of the ``horizon`` frames after ``context``.

        context: [B, n_past, C, H, W] in [0, 1]; actions: [B, >= n_past+horizon-1, A] (``actions[:, t]``
        produces frame t+1); adapt: from :meth:`adaptables` (modulation of the predicted steps and/or CN).
        Steps t = 1..n_past-1 read the context (LSTM warm-up, nothing decoded); steps t >= n_past decode a
        frame and feed its encoding back. Skip connections come from frame :meth:`skip_index`.
        Stochastic: the posterior runs over the context steps; over the predicted steps z comes from the
        posterior on ``target`` ([B, horizon, C, H, W]) when the module is in training mode and ``target``
        is given (SVG-LP training), otherwise from the learned prior. ``kl`` sums KL(q||p) where the
        posterior ran. warm: a :meth:`warm_start` of the same inputs (skips the context part).
        -> Prediction(pred [B, horizon, C, H, W], kl [B] or None).
        """
        cn, mod = _cn_part(adapt), _Modulation.from_adapt(adapt)
        if warm is None:
            warm = self._warm(context, actions, horizon, cn, generator, target)
        elif cn is not None:
            raise ValueError("a warm start cannot be shared with CN adaptables (they change the encoder)")
        n_past, L = warm.n_past, warm.n_past + horizon
        actions = actions[:, : L - 1].to(context.dtype)
        states = {k: list(v) for k, v in warm.states.items()}  # the warm start is shared: never mutate it
        kl, h_gt = warm.kl, warm.h_gt
        g_prev: Tensor = h_gt[:, n_past - 1]  # code of the last observed (then predicted) frame
        preds: list[Tensor] = []
        for t in range(n_past, L):
            k = t - n_past  # index of the predicted frame
            g_next = h_gt[:, t] if warm.posterior else None
            x_in, kl_t = self._step_inputs(g_prev, actions[:, t - 1], states, g_next, generator)
            kl = kl_t if kl is None else (kl if kl_t is None else kl + kl_t)
            top = self._lstm_step(states["frame"], x_in, mod, k)
            code = mod.apply(torch.tanh(self.frame_predictor.out(top)), "code", k)  # [B, g_dim]
            frame = self.decoder.forward_split(code, warm.skip_outs, cn)  # [B, C, H, W]
            preds.append(frame)
            if t < L - 1:
                g_prev = self.encoder(frame, cn)[0]
        return Prediction(pred=torch.stack(preds, 1), kl=kl)

    def teacher_forced(self, frames: Tensor, actions: Tensor, n_past: int) -> Prediction:
        """SVG's training pass: ground truth enters the LSTM at every step.

        frames: [B, L, C, H, W]; actions [B, >= L-1, A] -> Prediction(pred = predictions of frames 1..L-1
        [B, L-1, C, H, W], kl). Skips of step t come from frame min(t-1, skip_index(n_past)), so a context
        prediction never sees its own target. All frames are encoded in one batched call and all steps
        decoded in one batched call after the LSTM loop. Stochastic: posterior z at every step.
        """
        B, L = frames.shape[:2]
        if not 1 <= n_past < L:
            raise UserError(f"teacher_forced needs 1 <= n_past < T, got n_past={n_past}, T={L}")
        self._check_inputs(frames, actions, L - 1)
        device, dtype = frames.device, frames.dtype
        actions = actions[:, : L - 1].to(dtype)
        s_idx = self.skip_index(n_past)
        n_enc = L if self.cfg.stochastic else L - 1
        h_gt, skip_outs = self._encode_gt(frames[:, :n_enc], None, slice(0, s_idx + 1),
                                          self._chunk_examples(device, n_enc))
        states = self._init_states(B, device, dtype)
        kl: Tensor | None = None
        tops: list[Tensor] = []
        no_mod = _Modulation()
        for t in range(1, L):
            g_next = h_gt[:, t] if self.cfg.stochastic else None
            x_in, kl_t = self._step_inputs(h_gt[:, t - 1], actions[:, t - 1], states, g_next, None)
            kl = kl_t if kl is None else kl + kl_t
            tops.append(self._lstm_step(states["frame"], x_in, no_mod, -1))
        code = torch.tanh(self.frame_predictor.out(torch.stack(tops, 1)))  # [B, L-1, g_dim]
        skip_of_step = torch.tensor([min(t - 1, s_idx) for t in range(1, L)], device=device)
        sk = [so.index_select(1, skip_of_step) for so in skip_outs]  # [B, L-1, Co, Ho, Wo]
        pred = self._decode(code, sk, None, self._chunk_examples(device, L - 1))
        return Prediction(pred=pred, kl=kl)

    def forward(self, context: Tensor, actions: Tensor, horizon: int, **kwargs) -> Prediction:
        """Alias of :meth:`rollout` (so hooks / DDP wrappers work)."""
        return self.rollout(context, actions, horizon, **kwargs)
