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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.models.layers import AdaptDict, CNRegistry, ConvBlock

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
    norm: str = "batch"  # "batch" | "group" | "layer" | "none"
    cn: bool = False  # conditional normalisation layers (per-example gamma/beta) after each norm layer
    skip_from: str = "last"  # "last": skips from frame n_past-1; "svg": original off-by-one (frame n_past-2)
    adapt_target: str = "hidden"  # LSTM activations the "lstm" adaptables modulate: hidden | cell | output
    adapt_per_step: bool = False  # if True the LSTM modulation has a time axis [B, n_future, ...]

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
        if self.adapt_target not in ("hidden", "cell", "output"):
            raise UserError(f"SVGConfig.adapt_target must be hidden | cell | output, got {self.adapt_target!r}")
        for name in ("channels", "width", "g_dim", "rnn_size", "rnn_layers", "z_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"SVGConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.action_dim < 0:
            raise UserError(f"SVGConfig.action_dim must be >= 0, got {self.action_dim}")


@dataclass
class Rollout:
    """Output of :meth:`SVG.rollout`."""

    frames: Tensor  # [B, n_future, C, H, W] predictions of frames n_past..n_past+n_future-1, in [0, 1]
    context_frames: Tensor | None  # [B, n_past-1, C, H, W] predictions of frames 1..n_past-1, or None
    kl: Tensor | None  # [B] KL(q || p) summed over steps (stochastic only), else None


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
        N, G = g.shape
        return self.head(g.view(N, G, 1, 1), adapt)  # [N, c_top, 4, 4]

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
        deep->shallow). g: [B*N, g_dim] example-major -> frames [B*N, C, H, W]."""
        d = self._start(g, adapt)
        for j, level in enumerate(self.levels):
            if self.kind == "vgg":
                d = F.interpolate(d, scale_factor=2, mode="nearest")
            d = level[0].forward_split(d, skip_outs[j], adapt)
            for blk in level[1:]:
                d = blk(d, adapt)
        return d


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
# the model


class SVG(nn.Module):
    """Action-conditioned SVG (deterministic, or SVG-LP when ``cfg.stochastic``). No recurrent state is
    stored on the module: :meth:`rollout` starts from :meth:`init_state`."""

    def __init__(self, cfg: SVGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cn = CNRegistry(cfg.cn)
        self.encoder = Encoder(cfg, cn)
        self.decoder = Decoder(cfg, cn)
        self.cn_channels: list[int] = [layer.channels for layer in cn.layers]
        z = cfg.z_dim if cfg.stochastic else 0
        self.frame_predictor = FramePredictor(cfg.g_dim + cfg.action_dim + z, cfg.g_dim, cfg.rnn_size, cfg.rnn_layers)
        if cfg.stochastic:
            self.posterior = GaussianLSTM(cfg.g_dim, cfg.z_dim, cfg.rnn_size, cfg.posterior_rnn_layers)
            self.prior = GaussianLSTM(cfg.g_dim, cfg.z_dim, cfg.rnn_size, cfg.prior_rnn_layers)

    # -- helpers ------------------------------------------------------------------------------------------

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        """Zero state of the frame-predictor LSTM: list (one per layer) of (h, c), each [B, rnn_size]."""
        return _zero_state(self.frame_predictor.cells, batch_size, device, dtype)

    def adaptables(self, batch_size: int, n_future: int, *, kind: str = "lstm", device=None,
                   dtype=None) -> dict[str, Tensor]:
        """Identity-initialised per-example tensors (leading dim B; ``requires_grad`` not set; device and
        dtype default to the model's).

        kind="lstm": ``lstm_scale`` ones / ``lstm_shift`` zeros, shape [B, rnn_layers, rnn_size]
            ([B, n_future, rnn_layers, rnn_size] with ``adapt_per_step``; [B, g_dim] / [B, n_future, g_dim]
            for ``adapt_target="output"``). Applied during the n_future predicted steps only.
        kind="cn": ``cn_gamma_<i>`` ones / ``cn_beta_<i>`` zeros [B, C_i, 1, 1] for every CN layer.
        """
        cfg = self.cfg
        B = batch_size
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        if kind == "lstm":
            tail = (cfg.g_dim,) if cfg.adapt_target == "output" else (cfg.rnn_layers, cfg.rnn_size)
            shape = (B, n_future, *tail) if cfg.adapt_per_step else (B, *tail)
            return {
                "lstm_scale": torch.ones(shape, device=device, dtype=dtype),
                "lstm_shift": torch.zeros(shape, device=device, dtype=dtype),
            }
        if kind == "cn":
            if not cfg.cn:
                raise UserError("adaptables(kind='cn') needs an SVG built with SVGConfig(cn=True)")
            out = {}
            for i, C in enumerate(self.cn_channels):
                out[f"cn_gamma_{i}"] = torch.ones(B, C, 1, 1, device=device, dtype=dtype)
                out[f"cn_beta_{i}"] = torch.zeros(B, C, 1, 1, device=device, dtype=dtype)
            return out
        raise UserError(f"unknown adaptables kind {kind!r}; expected 'lstm' or 'cn'")

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

    # -- rollout ------------------------------------------------------------------------------------------

    def rollout(
        self,
        frames: Tensor,
        actions: Tensor,
        n_past: int,
        n_future: int,
        *,
        adapt: dict[str, Tensor] | None = None,
        teacher_forcing: bool = False,
        generator: torch.Generator | None = None,
        use_posterior: bool | None = None,
        decode_context: bool = True,
        chunk_examples: int | None = None,
        detach_feedback: bool = False,
    ) -> Rollout:
        """Predict frames ``n_past .. n_past+n_future-1``.

        frames: [B, T, C, H, W] in [0, 1], T >= n_past (T >= n_past+n_future with teacher forcing or when
            the posterior is used); actions: [B, >= n_past+n_future-1, A], ``actions[:, t]`` produces frame t+1.
        Step t = 1..n_past+n_future-1 feeds cat(enc(x_{t-1}), a_{t-1}[, z_t]) to the LSTM; x_{t-1} is ground
        truth for t-1 < n_past (always with ``teacher_forcing``), else the previous prediction.
        Skip features come from frame ``min(t-1, skip_index(n_past))`` (so context predictions never see
        their own target).
        use_posterior (stochastic): sample z from the posterior at every step (default: ``self.training``);
            otherwise posterior for the context steps and the prior for the predicted ones (SVG's generation).
            ``kl`` sums KL(q||p) over the steps where the posterior was evaluated.
        decode_context: also decode the context predictions (``context_frames``; None when n_past == 1).
        detach_feedback: free-running only: feed predictions back to the encoder as constants, so gradients
            w.r.t. the adaptables flow through the LSTM state but not through the pixel feedback loop (a
            cheaper, truncated inner gradient: no encoder backward).
        chunk_examples: split the batched encoder/decoder calls into groups of this many examples
            (0 = never). Default: automatic on CPU (cache-sized chunks are ~30% faster there), never on
            GPU, and never with batch norm in train mode (chunking would change the batch statistics).
        """
        cfg = self.cfg
        B, T, C, H, W = frames.shape
        L = n_past + n_future
        S = L - 1  # predictor steps t = 1 .. L-1
        if n_past < 1 or n_future < 1:
            raise UserError(f"rollout needs n_past >= 1 and n_future >= 1, got {n_past}, {n_future}")
        if (C, H, W) != (cfg.channels, cfg.image_size, cfg.image_size):
            raise UserError(f"frames have shape [C,H,W]={[C, H, W]}, model expects "
                            f"{[cfg.channels, cfg.image_size, cfg.image_size]}")
        if actions.dim() != 3 or actions.shape[0] != B or actions.shape[1] < S or actions.shape[2] != cfg.action_dim:
            raise UserError(f"actions must be [B={B}, >={S}, A={cfg.action_dim}], got {list(actions.shape)}")
        posterior = cfg.stochastic and (self.training if use_posterior is None else use_posterior)
        if (teacher_forcing or posterior) and T < L:
            raise UserError(f"teacher forcing / posterior sampling needs T >= n_past+n_future={L} frames, got {T}")
        if T < n_past:
            raise UserError(f"frames has T={T} < n_past={n_past}")
        device, dtype = frames.device, frames.dtype
        actions = actions[:, :S].to(dtype)
        adapt = adapt if adapt else None
        cn_adapt = adapt if cfg.cn else None
        lstm_scale = adapt.get("lstm_scale") if adapt is not None else None
        lstm_shift = adapt.get("lstm_shift") if adapt is not None else None
        modulate = lstm_scale is not None or lstm_shift is not None
        target = cfg.adapt_target
        per_step = cfg.adapt_per_step

        # --- encode ground truth in one batched call -------------------------------------------------------
        n_enc = L if posterior else (S if teacher_forcing else n_past)
        s_idx = self.skip_index(n_past)
        n_skip = s_idx + 1 if decode_context else 1  # skip frames needed: 0..s_idx, or only s_idx
        first_skip = s_idx + 1 - n_skip
        chunk = self._chunk_examples(device, n_enc) if chunk_examples is None else chunk_examples
        # h_gt [B, n_enc, g_dim]; skip_outs deep->shallow [B, n_skip, Co, Ho, Wo]
        h_gt, skip_outs = self._encode_gt(frames[:, :n_enc], cn_adapt, slice(first_skip, s_idx + 1), chunk)
        skip_future = [so[:, -1:] for so in skip_outs]  # [B, 1, Co, Ho, Wo]

        def mod_at(x: Tensor | None, k: int, layer: int | None) -> Tensor | None:
            if x is None:
                return None
            if per_step:
                x = x[:, k]
            return x if layer is None else x[:, layer]

        def out_mod(g: Tensor, k0: int) -> Tensor:
            """Apply output modulation to predictor outputs g [B, N, g_dim] of future steps k0..k0+N-1."""
            if not (modulate and target == "output"):
                return g
            N = g.shape[1]
            if lstm_scale is not None:
                g = g * (lstm_scale[:, k0 : k0 + N] if per_step else lstm_scale[:, None])
            if lstm_shift is not None:
                g = g + (lstm_shift[:, k0 : k0 + N] if per_step else lstm_shift[:, None])
            return g

        fp = self.frame_predictor
        state = self.init_state(B, device, dtype)
        if cfg.stochastic:
            post_state = self.posterior.init_state(B, device, dtype)
            prior_state = self.prior.init_state(B, device, dtype)
        kl = None
        tops: list[Tensor] = []  # top-layer h per step, [B, rnn_size]
        future: list[Tensor] = []  # free-running predicted frames, [B, C, H, W]
        g_prev: Tensor | None = None  # encoding of the previous predicted frame (free-running)
        for t in range(1, L):
            k = t - n_past  # index among predicted frames (>= 0 for predicted steps)
            g_in = h_gt[:, t - 1] if (t - 1 < n_past or teacher_forcing) else g_prev
            parts = [g_in, actions[:, t - 1]]
            if cfg.stochastic:
                mu_p, lv_p, prior_state = self.prior.step(g_in, prior_state)
                if posterior or t < n_past:
                    mu_q, lv_q, post_state = self.posterior.step(h_gt[:, t], post_state)
                    z = _sample(mu_q, lv_q, generator)
                    kl_t = gaussian_kl(mu_q, lv_q, mu_p, lv_p)
                    kl = kl_t if kl is None else kl + kl_t
                else:
                    z = _sample(mu_p, lv_p, generator)
                parts.append(z)
            x = fp.embed(torch.cat(parts, 1))  # [B, rnn_size]
            for li, cell in enumerate(fp.cells):
                hp, cp = state[li]
                if modulate and k >= 0 and target == "cell":
                    h, c = _lstm_cell_modulated_c(cell, x, hp, cp, mod_at(lstm_scale, k, li), mod_at(lstm_shift, k, li))
                else:
                    h, c = cell(x, (hp, cp))
                    if modulate and k >= 0 and target == "hidden":
                        sc, sh = mod_at(lstm_scale, k, li), mod_at(lstm_shift, k, li)
                        if sc is not None:
                            h = h * sc
                        if sh is not None:
                            h = h + sh
                state[li] = (h, c)
                x = h
            tops.append(x)
            if not teacher_forcing and k >= 0:
                g_out = out_mod(torch.tanh(fp.out(x))[:, None], k)[:, 0]  # [B, g_dim]
                frame = self.decoder.forward_split(g_out, skip_future, cn_adapt)  # [B, C, H, W]
                future.append(frame)
                if t < L - 1:
                    g_prev = self.encoder(frame.detach() if detach_feedback else frame, cn_adapt)[0]

        # --- batched decoding of the steps not decoded in the loop ----------------------------------------
        top = torch.stack(tops, 1)  # [B, S, rnn_size]
        ctx_steps = n_past - 1 if decode_context else 0
        t0 = n_past - ctx_steps  # first step decoded here
        t1 = L if teacher_forcing else n_past  # one past the last step decoded here
        context_frames = None
        frames_out = torch.stack(future, 1) if future else None
        if t1 > t0:
            N = t1 - t0
            g = torch.tanh(fp.out(top[:, t0 - 1 : t1 - 1]))  # [B, N, g_dim]
            if teacher_forcing:
                g = torch.cat([g[:, :ctx_steps], out_mod(g[:, ctx_steps:], 0)], 1)
            # skip frame of step t is min(t-1, s_idx), stored at position (.. - first_skip)
            idx = [min(t - 1, s_idx) - first_skip for t in range(t0, t1)]
            if all(i == idx[0] for i in idx):
                sk = [so[:, idx[0] : idx[0] + 1] for so in skip_outs]
            else:
                index = torch.tensor(idx, device=device)
                sk = [so.index_select(1, index) for so in skip_outs]
            dec = self._decode(g, sk, cn_adapt, self._chunk_examples(device, N) if chunk_examples is None
                               else chunk_examples)  # [B, N, C, H, W]
            if ctx_steps > 0:
                context_frames = dec[:, :ctx_steps]
            if teacher_forcing:
                frames_out = dec[:, ctx_steps:]
        return Rollout(frames=frames_out, context_frames=context_frames, kl=kl)

    def forward(self, frames: Tensor, actions: Tensor, n_past: int, n_future: int, **kwargs) -> Rollout:
        """Alias of :meth:`rollout` (so hooks / DDP wrappers work)."""
        return self.rollout(frames, actions, n_past, n_future, **kwargs)
