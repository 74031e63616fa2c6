"""A world model for agents: a predictor (optionally a Noether Network, tailored at prediction time) plus a
reward model, with ONE batched entry point :meth:`WorldModel.imagine`.

Shapes (``C, H, W`` the model's frame shape, ``A`` the action dim):

- ``context``          ``[B, n_past, C, H, W]`` float in [0, 1] (or uint8 ``[B, n_past, H, W, C]``): the
  last ``n_past`` observed frames of ``B`` independent problems (envs);
- ``context_actions``  ``[B, n_past-1, A]``: the actions that produced context frames 1..n_past-1;
- ``action_seqs``      ``[B, N, T, A]``: ``N`` candidate sequences of ``T`` actions per problem; action
  ``t`` takes imagined frame ``t-1`` (the last context frame for t = 0) to imagined frame ``t``;
- returns :class:`Imagined` with ``frames [B, N, T, C, H, W]`` and ``rewards [B, N, T]``.

Everything runs under ``torch.no_grad()`` on the model's device, all ``B * N`` candidates in one rollout.

Two stages (:meth:`WorldModel.prepare`, then :meth:`WorldModel.imagine_prepared`; :meth:`WorldModel.imagine`
does both). ``prepare`` does everything that does not depend on the candidates, once per planning step, on
the ``B`` problems only: the tailoring (if any) and the predictor's warm start (encoding the context and
running the LSTM over it). ``imagine_prepared`` then rolls all ``B * N`` candidates out in one batch from
that shared warm start (its recurrent state expanded over the candidates, the decoder's skip features
broadcast, not copied) and scores them with the reward model. A planner calls ``prepare`` once per
planning step and ``imagine_prepared`` once per optimiser iteration (:class:`~noether_rl.agents.mpc.MPCAgent`).

When tailoring happens (``tailor=True`` and the model is a Noether Network), mode ``"shared"`` (default):
once per ``prepare``, per problem, on the context and a rollout of ONE reference plan (MPC: the planner's
warm start, i.e. the previous plan shifted; ``imagine``: the mean candidate): ``NoetherNetwork``'s inner loop
on ``B`` examples returns the adapted tensors ``[B, ...]``, which are then shared by (expanded over) the ``N``
candidates of that problem and every optimiser iteration of that planning step. Cost: one tailoring call on
``B`` examples (an inner-loss rollout and its backward, both of size ``B``, on the warm start the candidates
share; no final rollout: ``NoetherNetwork.tailor_adaptables``) per planning step, i.e. well under one extra
candidate rollout, not one per candidate nor one per iteration. Mode
``"per_candidate"`` (the alternative, for measurements) tailors every candidate on its own rollout:
``predict`` on ``B * N`` examples (~3-4x the untailored cost). ``benchmarks/mpc_speed.py`` measures the
modes (speed, and the frame error against the real env).
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import sys
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from noether_rl.agents.cuda_graph import CaptureBackend, GraphCache
from noether_rl.agents.reward import RewardModel
from noether_rl.errors import UserError
from noether_rl.models.svg import WarmStart
from noether_rl.noether import NoetherNetwork, frames_to_tensor, tensor_to_frames
from noether_rl.tailoring import TailorConfig

TailorMode = Literal["shared", "per_candidate"]
Precision = Literal["float32", "bfloat16"]


# -- observation <-> tensor: the package's one uint8 observation <-> model tensor conversion (public API of
# noether_rl.noether), under the names the agents use
obs_to_tensor = frames_to_tensor
tensor_to_obs = tensor_to_frames
ArrayLike = Tensor | np.ndarray


def _as_tensor(x: ArrayLike) -> Tensor:
    """A tensor (as is) or a numpy array (copied when its strides are negative, e.g. ``np.flip``)."""
    return x if isinstance(x, Tensor) else torch.as_tensor(np.ascontiguousarray(x))


@dataclass
class Imagined:
    frames: Tensor  # [B, N, T, C, H, W] imagined frames in [0, 1]
    rewards: Tensor  # [B, N, T] predicted rewards (may be non-finite: planners treat those as -inf)


@dataclass
class Prepared:
    """What :meth:`WorldModel.prepare` computed once for ``B`` problems (shared by all their candidates)."""

    context: Tensor  # [B, n_past, C, H, W] float in [0, 1]
    context_actions: Tensor  # [B, n_past-1, A]
    horizon: int
    adapt: dict[str, Tensor] | None  # tailored adaptables [B, ...]; None = untailored (or no step taken)
    warm: Any | None  # the predictor's warm start on the B problems (None: the rollout encodes the context)
    tailored: bool  # tailoring was requested and the model can tailor


_HEAP_KEPT = False


def keep_cpu_heap() -> bool:
    """Have glibc keep freed tensor memory in the process heap (``mallopt``: no ``mmap`` for blocks up to
    32 MiB, heap top trimmed only beyond 1 GiB). PyTorch's CPU allocator does not cache: by default every
    rollout step's activation maps (~0.5-4 MiB) are mmap'ed, page-faulted in and unmapped again: on the
    default small model 7% (idle machine) to 35% (loaded machine) of the candidate rollouts' CPU time.
    Process-wide and idempotent; called by :class:`WorldModel` on CPU; a no-op (False) off glibc or when the
    environment sets ``NOETHER_RL_KEEP_CPU_HEAP=0``. Cost: the process keeps up to ~1 GiB of freed memory
    instead of returning it to the OS."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return True
    if os.environ.get("NOETHER_RL_KEEP_CPU_HEAP", "1") == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _HEAP_KEPT = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
    return _HEAP_KEPT


def _over(N: int, x: Tensor) -> Tensor:
    """[B, ...] -> [B*N, ...] example-major (each problem's row repeated for its N candidates)."""
    return x[:, None].expand(x.shape[0], N, *x.shape[1:]).reshape(x.shape[0] * N, *x.shape[1:])


class WorldModel:
    """predictor or Noether Network + reward model; see the module docstring.

    model: an ``nn.Module`` implementing the ``Predictor`` protocol, or a :class:`NoetherNetwork`.
    reward: a reward model (:mod:`noether_rl.agents.reward`).
    n_past: context frames the model is conditioned on.
    tailor_cfg: the inner loop used when tailoring (default: the network's own, first order).
    inner_lr: an explicit inner lr, used as given; default: the network's own (its learned lr when it learns
        one, else ``tailor_cfg.lr``), read once here as a float so tailoring makes no device sync per call.
    precision: "float32", or "bfloat16": the candidate rollouts and the reward run under autocast to
        bfloat16 (tailoring and the warm start stay float32; returned tensors are float32). Frames then differ
        by ~1e-2; fast on CPUs with AMX / AVX512-BF16 and on GPUs (``benchmarks/mpc_speed.py --precision``).
    channels_last: store the conv weights channels-last (same values, ~10% faster convolutions on CPU);
        default (None): on when the model is on the CPU. This changes the memory format of ``model``'s
        (and a module reward's) parameters in place.
    cuda_graph: run :meth:`imagine_prepared` (the rollout of all candidates under the prepared, possibly
        tailored, tensors + the reward) as a CUDA graph, captured per (B, N, T, preparation structure,
        precision) on first use and replayed after copying the inputs into its static buffers (outputs are
        clones); ``prepare`` (warm start, tailoring) stays eager. For launch-bound GPUs (small models, many
        steps). Needs the model on a CUDA device: on CPU it is refused (UserError). A stochastic predictor
        draws from the default CUDA generator inside the graph (fresh numbers per replay, not the eager
        stream); an explicit ``generator`` with a stochastic predictor is refused (UserError). If capture
        fails the candidates run eagerly from then on, with one warning. After replacing the model's
        parameter tensors (not in-place updates) call :meth:`use_cuda_graph` again. See
        :mod:`noether_rl.agents.cuda_graph`; ``benchmarks/mpc_speed.py --cuda-graph``.

    On CPU, constructing a WorldModel calls :func:`keep_cpu_heap` (a process-wide allocator setting that
    saves 7-35% of the candidate rollouts' CPU time; same values). Inputs of :meth:`imagine` /
    :meth:`prepare` are torch tensors or numpy arrays (a uint8 context is converted). To load a checkpoint use
    :meth:`from_checkpoint`; a user guide with examples is ``docs/AGENTS.md``.
    """

    def __init__(self, model: nn.Module, reward: RewardModel, *, n_past: int, action_dim: int,
                 frame_shape: tuple[int, int, int], tailor_cfg: TailorConfig | None = None,
                 tailor_mode: TailorMode = "shared", inner_lr: float | None = None,
                 precision: Precision = "float32", channels_last: bool | None = None,
                 cuda_graph: bool = False) -> None:
        if n_past < 1:
            raise UserError(f"n_past must be >= 1, got {n_past}")
        if tailor_mode not in ("shared", "per_candidate"):
            raise UserError(f"tailor_mode must be 'shared' or 'per_candidate', got {tailor_mode!r}")
        if precision not in ("float32", "bfloat16"):
            raise UserError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
        self.precision: Precision = precision
        self.model = model.eval()
        p = next(itertools.chain(model.parameters(), model.buffers()), None)
        on_cpu = p is None or p.device.type == "cpu"
        if on_cpu:
            keep_cpu_heap()
        if channels_last is None:
            channels_last = on_cpu
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            if isinstance(reward, nn.Module):
                reward.to(memory_format=torch.channels_last)
        self.network = model if isinstance(model, NoetherNetwork) else None
        self.predictor = model.predictor if self.network is not None else model
        self.reward = reward
        if isinstance(reward, nn.Module):
            reward.eval()
        self.n_past = int(n_past)
        self.action_dim = int(action_dim)
        self.frame_shape = tuple(int(s) for s in frame_shape)  # (C, H, W)
        if self.network is not None:
            tc = tailor_cfg or self.network.cfg.tailor
            self.tailor_cfg: TailorConfig | None = replace(tc, order="first")
            lr = self.network.inner_lr(inner_lr) if inner_lr is not None or self.network.cfg.learn_inner_lr \
                else tc.lr
            self.inner_lr: float | None = float(lr.detach()) if isinstance(lr, Tensor) else float(lr)
        else:
            self.tailor_cfg = None
            self.inner_lr = None
        self.tailor_mode: TailorMode = tailor_mode
        self._graphs: GraphCache | None = None
        self._graph_failed = False
        if cuda_graph:
            self.use_cuda_graph(True)

    def use_cuda_graph(self, enabled: bool = True, *, backend: CaptureBackend | None = None,
                       max_graphs: int = 8) -> None:
        """Turn the CUDA graphs of :meth:`imagine_prepared` on (dropping any captured ones) or off.
        ``backend``: the capture backend (default ``torch.cuda.CUDAGraph``, which needs the model on CUDA;
        tests pass :class:`~noether_rl.agents.cuda_graph.EagerReplay` to run the bookkeeping on CPU)."""
        self._graphs = None
        self._graph_failed = False
        if not enabled:
            return
        if backend is None and self.device.type != "cuda":
            raise UserError(f"cuda_graph needs the world model on a CUDA device, it is on {self.device.type}; "
                            "leave cuda_graph off there (WorldModel(cuda_graph=False); benchmarks: drop --cuda-graph)")
        self._graphs = GraphCache(backend, max_graphs=max_graphs)

    @property
    def cuda_graph(self) -> bool:
        """True when :meth:`imagine_prepared` runs through CUDA graphs."""
        return self._graphs is not None and not self._graph_failed

    def graph_stats(self) -> dict[str, Any]:
        """Graphs held, captures and replays so far, and whether capture failed (then: eager)."""
        g = self._graphs
        return {"enabled": g is not None, "failed": self._graph_failed, "graphs": 0 if g is None else len(g),
                "captures": 0 if g is None else g.captures, "replays": 0 if g is None else g.replays}

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], reward: RewardModel, *, device: torch.device | str = "cpu",
                        n_past: int | None = None, inner_steps: int | None = None, inner_lr: float | None = None,
                        tailor_mode: TailorMode = "shared", cuda_graph: bool = False) -> WorldModel:
        """An SVG or Noether checkpoint (``noether-rl train`` / ``meta-train``). ``n_past`` defaults to the
        training context length; ``inner_steps``/``inner_lr`` override the tailoring inner loop."""
        from noether_rl.training.loading import load_model

        return cls.from_loaded(load_model(path, device), reward, n_past=n_past, inner_steps=inner_steps,
                               inner_lr=inner_lr, tailor_mode=tailor_mode, cuda_graph=cuda_graph)

    @staticmethod
    def check_loaded(loaded: Any) -> None:
        """UserError (one line) unless the ``LoadedModel`` is an SVG or Noether checkpoint (e.g. not the
        ``svg_adapted`` control of the video recipe, whose learned adaptation the world model would drop)."""
        if loaded.kind not in ("svg", "noether"):
            raise UserError(f"{loaded.path} is a {loaded.kind!r} checkpoint; a world model needs an SVG or Noether "
                            "checkpoint (noether-rl train / meta-train)")

    @classmethod
    def from_loaded(cls, loaded: Any, reward: RewardModel, *, n_past: int | None = None,
                    inner_steps: int | None = None, inner_lr: float | None = None,
                    tailor_mode: TailorMode = "shared", cuda_graph: bool = False) -> WorldModel:
        """As :meth:`from_checkpoint`, from a ``noether_rl.training.loading.LoadedModel`` (the one place that
        decides which checkpoint kinds a world model accepts)."""
        cls.check_loaded(loaded)
        module = loaded.module
        svg = loaded.svg
        cfg = svg.cfg
        tcfg = None
        if isinstance(module, NoetherNetwork) and inner_steps is not None:
            tcfg = replace(module.cfg.tailor, steps=inner_steps)
        return cls(module, reward, n_past=n_past or loaded.config.data.n_past, action_dim=cfg.action_dim,
                   frame_shape=(cfg.channels, cfg.image_size, cfg.image_size), tailor_cfg=tcfg,
                   tailor_mode=tailor_mode, inner_lr=inner_lr, cuda_graph=cuda_graph)

    # -- properties -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        t = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return t.device if t is not None else torch.device("cpu")

    @property
    def can_tailor(self) -> bool:
        return self.network is not None and self.tailor_cfg is not None and self.tailor_cfg.steps > 0

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Observation shape ``(H, W, C)`` (uint8) the model sees."""
        C, H, W = self.frame_shape
        return (H, W, C)

    # -- model calls (the only places that talk to the core) -------------------------------------------
    def _rollout(self, context: Tensor, actions: Tensor, horizon: int, adapt: dict[str, Tensor] | None,
                 generator: torch.Generator | None, warm: Any | None = None) -> Tensor:
        kw = {} if warm is None else {"warm": warm}
        return self.predictor.rollout(context, actions, horizon, adapt=adapt, generator=generator, **kw).pred

    def _tailored(self, context: Tensor, actions: Tensor, horizon: int, generator: torch.Generator | None,
                  warm: Any | None = None) -> dict[str, Tensor] | None:
        """One tailoring call (``NoetherNetwork.tailor_adaptables``: the inner loop without the final rollout,
        on the given warm start): the tailored adaptables [B, ...], or None if no step was taken."""
        assert self.network is not None
        res = self.network.tailor_adaptables(context, actions, horizon, tailor_cfg=self.tailor_cfg,
                                             inner_lr=self.inner_lr, generator=generator, warm=warm)
        return None if res is None else res.adapted

    def _tailored_prediction(self, context: Tensor, actions: Tensor, horizon: int,
                             generator: torch.Generator | None) -> Tensor:
        """Every example tailored on its own rollout: ``NoetherNetwork.predict`` -> [B, horizon, C, H, W]."""
        assert self.network is not None
        return self.network.predict(context, actions, horizon, tailor_cfg=self.tailor_cfg, inner_lr=self.inner_lr,
                                    generator=generator).pred

    def _warm(self, context: Tensor, context_actions: Tensor, horizon: int, kind: str,
              generator: torch.Generator | None) -> Any | None:
        """The predictor's warm start (context encoding + LSTM warm-up) on ``B`` problems for adaptables of
        ``kind`` (None where the predictor has none, e.g. for "cn"), advancing ``generator``."""
        if not hasattr(self.predictor, "warm_start"):
            return None
        B, _, A = context_actions.shape
        acts = torch.cat([context_actions, context_actions.new_zeros(B, horizon, A)], 1)  # only the context part is read
        return self.predictor.warm_start(context, acts, horizon, kind=kind, generator=generator)

    # -- the entry points -----------------------------------------------------------------------------
    def _check_context(self, context: ArrayLike, context_actions: ArrayLike) -> tuple[Tensor, Tensor]:
        """uint8 frames [B, T, H, W, C] (numpy or torch) or float [B, T, C, H, W] in [0, 1]; actions array-like."""
        context, context_actions = _as_tensor(context), _as_tensor(context_actions)
        if context.dtype == torch.uint8:
            context = obs_to_tensor(context, self.device)
        context = context.to(self.device, torch.float32)
        if context.dim() != 5 or tuple(context.shape[2:]) != self.frame_shape or context.shape[1] < self.n_past:
            raise UserError(f"context must be [B, >={self.n_past}, {', '.join(map(str, self.frame_shape))}] frames, "
                            f"got {list(context.shape)}")
        B = context.shape[0]
        if tuple(context_actions.shape) != (B, self.n_past - 1, self.action_dim):
            raise UserError(f"context_actions must be [B={B}, n_past-1={self.n_past - 1}, A={self.action_dim}], "
                            f"got {list(context_actions.shape)}")
        return context[:, -self.n_past:], context_actions.to(self.device, torch.float32)

    def _check_seqs(self, action_seqs: ArrayLike, B: int, horizon: int | None = None) -> Tensor:
        action_seqs = _as_tensor(action_seqs)
        if action_seqs.dim() != 4 or action_seqs.shape[0] != B or action_seqs.shape[-1] != self.action_dim \
                or (horizon is not None and action_seqs.shape[2] != horizon):
            T = "T" if horizon is None else f"T={horizon}"
            raise UserError(f"action_seqs must be [B={B}, N, {T}, A={self.action_dim}], got {list(action_seqs.shape)}")
        return action_seqs.to(self.device, torch.float32)

    @torch.no_grad()
    def prepare(self, context: ArrayLike, context_actions: ArrayLike, horizon: int, *, tailor: bool = True,
                plan: ArrayLike | None = None, generator: torch.Generator | None = None) -> Prepared:
        """The candidate-independent part of imagining, for ``B`` problems: tailoring on the context and a
        rollout of ``plan`` ``[B, horizon, A]`` (default: zero actions) when ``tailor`` and the model can, and
        the predictor's warm start. Pass the result to :meth:`imagine_prepared` (any number of times)."""
        context, ctx_a = self._check_context(context, context_actions)
        B = context.shape[0]
        if horizon < 1:
            raise UserError(f"horizon must be >= 1, got {horizon}")
        tailored = bool(tailor and self.can_tailor)
        # the warm start is computed once: the tailoring's rollouts and every candidate rollout share it
        kind = self.network.cfg.adapt if tailored and self.network is not None else "hidden"
        warm = self._warm(context, ctx_a, horizon, kind, generator)
        adapt = None
        if tailored:
            ref = ctx_a.new_zeros(B, horizon, self.action_dim) if plan is None else \
                self._check_seqs(plan[:, None], B, horizon)[:, 0]
            adapt = self._tailored(context, torch.cat([ctx_a, ref], 1), horizon, generator, warm)
        return Prepared(context=context, context_actions=ctx_a, horizon=int(horizon), adapt=adapt,
                        warm=warm if isinstance(warm, WarmStart) else None, tailored=tailored)

    @torch.no_grad()
    def imagine_prepared(self, prep: Prepared, action_seqs: Tensor, *,
                         generator: torch.Generator | None = None) -> Imagined:
        """Imagine ``N`` candidates ``[B, N, horizon, A]`` per prepared problem in ONE batched rollout."""
        B = prep.context.shape[0]
        seqs = self._check_seqs(action_seqs, B, prep.horizon)
        if self._graphs is not None and not self._graph_failed:
            return self._imagine_graphed(prep, seqs, generator)
        return self._imagine_seqs(prep, seqs, generator)

    def _imagine_seqs(self, prep: Prepared, seqs: Tensor, generator: torch.Generator | None,
                      graphed: bool = False) -> Imagined:
        """The candidate scoring path (eager, or the function a CUDA graph captures when ``graphed``)."""
        B, N, T, A = seqs.shape
        P = self.n_past

        full = torch.cat([prep.context_actions[:, None].expand(B, N, P - 1, A), seqs], 2).reshape(B * N, P - 1 + T, A)
        adapt = None if prep.adapt is None else {k: _over(N, v) for k, v in prep.adapt.items()}
        # a graph must not use autocast's weight cache (its casts would live in the captured pool)
        cache = {"cache_enabled": False} if graphed else {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16", **cache):
            pred = self._candidates(prep, full, T, adapt, N, generator)
            last = _over(N, prep.context[:, -1:])
            out = self._score(last, pred, seqs)
        return Imagined(frames=out.frames.float(), rewards=out.rewards.float())

    def _imagine_graphed(self, prep: Prepared, seqs: Tensor, generator: torch.Generator | None) -> Imagined:
        """:meth:`_imagine_seqs` through the graph of this (shape, preparation structure, precision)."""
        assert self._graphs is not None
        if generator is not None and bool(getattr(self.predictor, "stochastic", False)):
            raise UserError("cuda_graph with a stochastic predictor samples from the default CUDA generator; "
                            "pass generator=None (seed with torch.cuda.manual_seed) or turn cuda_graph off")
        flat, spec = _flatten_prep(prep)

        def fn(seqs: Tensor, *tensors: Tensor) -> tuple[Tensor, Tensor]:
            out = self._imagine_seqs(_unflatten_prep(list(tensors), spec), seqs, None, graphed=True)
            return out.frames, out.rewards

        try:
            # the modules themselves in the key: a replaced reward or model gets its own graph
            key = ("imagine", spec, self.precision, self.predictor, self.reward)
            frames, rewards = self._graphs(key, fn, [seqs, *flat])
        except UserError:
            raise
        except RuntimeError as e:  # capture failed (e.g. a reward function that syncs): eager from now on
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            warnings.warn(f"CUDA graph capture/replay of the candidate rollouts failed ({first}); running them "
                          "eagerly from now on", RuntimeWarning, stacklevel=3)
            self._graph_failed = True
            self._graphs.clear()
            return self._imagine_seqs(prep, seqs, generator)
        return Imagined(frames=frames, rewards=rewards)

    def _candidates(self, prep: Prepared, full: Tensor, T: int, adapt: dict[str, Tensor] | None, N: int,
                    generator: torch.Generator | None) -> Tensor:
        """One rollout of all B*N candidates from the prepared warm start -> [B*N, T, C, H, W]."""

        if prep.warm is not None:
            w: WarmStart = prep.warm
            # the recurrent state and codes per candidate; the decoder's skip parts stay [B, 1, ...] and are
            # broadcast over the B*N example-major rows by the decoder (no copy)
            warm = dataclasses.replace(
                w, h_gt=_over(N, w.h_gt), kl=None if w.kl is None else _over(N, w.kl),
                states={k: [(_over(N, h), _over(N, c)) for h, c in v] for k, v in w.states.items()})
            ctx = _over(N, prep.context)
            return self._rollout(ctx, full, T, adapt, generator, warm)
        return self._rollout(_over(N, prep.context), full, T, adapt, generator)

    def _score(self, last: Tensor, pred: Tensor, seqs: Tensor) -> Imagined:
        """last context frame [B*N, 1, C, H, W], predictions [B*N, T, C, H, W], actions [B, N, T, A]."""
        B, N, T, A = seqs.shape
        score_sequence = getattr(self.reward, "score_sequence", None)
        if score_sequence is not None:  # e.g. RewardCNN: no (prev, next) pairs built
            r = score_sequence(last[:, 0], pred, seqs.reshape(B * N, T, A))
        else:
            prev = torch.cat([last, pred[:, :-1]], 1)
            r = self.reward(prev.flatten(0, 1), seqs.reshape(B * N * T, A), pred.flatten(0, 1))
        return Imagined(frames=pred.view(B, N, T, *pred.shape[2:]), rewards=r.reshape(B, N, T))

    @torch.no_grad()
    def imagine(self, context: ArrayLike, context_actions: ArrayLike, action_seqs: ArrayLike, *, tailor: bool = True,
                generator: torch.Generator | None = None) -> Imagined:
        """Imagine ``N`` candidate futures per problem (shapes in the module docstring), batched. Mode
        "shared": ``prepare`` tailored on the mean candidate, then ``imagine_prepared``."""
        context, ctx_a = self._check_context(context, context_actions)
        B = context.shape[0]
        seqs = self._check_seqs(action_seqs, B)
        _, N, T, A = seqs.shape
        if tailor and self.can_tailor and (self.tailor_mode == "per_candidate" or N == 1):
            # every candidate tailored on its own rollout (with N = 1 both modes coincide): predict's own
            # final rollout is the answer, one rollout less than prepare + imagine_prepared
            P = self.n_past
            full = torch.cat([ctx_a[:, None].expand(B, N, P - 1, A), seqs], 2).reshape(B * N, P - 1 + T, A)
            ctx = context[:, None].expand(B, N, *context.shape[1:]).reshape(B * N, *context.shape[1:])
            pred = self._tailored_prediction(ctx, full, T, generator)
            return self._score(ctx[:, -1:], pred, seqs)
        prep = self.prepare(context, ctx_a, T, tailor=tailor, plan=seqs.mean(1), generator=generator)
        return self.imagine_prepared(prep, seqs, generator=generator)


def _flatten_prep(prep: Prepared) -> tuple[list[Tensor], tuple]:
    """The tensors of a preparation in a fixed order, and a hashable spec of everything else (keys, counts,
    ints) from which :func:`_unflatten_prep` rebuilds it."""
    tensors = [prep.context, prep.context_actions]
    akeys = None if prep.adapt is None else tuple(sorted(prep.adapt))
    if akeys is not None:
        assert prep.adapt is not None
        tensors += [prep.adapt[k] for k in akeys]
    wspec = None
    w = prep.warm
    if w is not None:
        skeys = tuple(w.states)
        tensors.append(w.h_gt)
        tensors += list(w.skip_outs)
        for k in skeys:
            for h, c in w.states[k]:
                tensors += [h, c]
        if w.kl is not None:
            tensors.append(w.kl)
        wspec = (w.n_past, w.horizon, w.posterior, len(w.skip_outs), tuple((k, len(w.states[k])) for k in skeys),
                 w.kl is not None)
    return tensors, (prep.horizon, prep.tailored, akeys, wspec)


def _unflatten_prep(tensors: list[Tensor], spec: tuple) -> Prepared:
    horizon, tailored, akeys, wspec = spec
    it = iter(tensors)
    context, context_actions = next(it), next(it)
    adapt = None if akeys is None else {k: next(it) for k in akeys}
    warm = None
    if wspec is not None:
        n_past, w_horizon, posterior, n_skips, skeys, has_kl = wspec
        h_gt = next(it)
        skip_outs = [next(it) for _ in range(n_skips)]
        states = {k: [(next(it), next(it)) for _ in range(n)] for k, n in skeys}
        kl = next(it) if has_kl else None
        warm = WarmStart(n_past=n_past, horizon=w_horizon, h_gt=h_gt, skip_outs=skip_outs, states=states, kl=kl,
                         posterior=posterior)
    rest = list(it)
    assert not rest, f"{len(rest)} tensors left over"
    return Prepared(context=context, context_actions=context_actions, horizon=horizon, adapt=adapt, warm=warm,
                    tailored=tailored)


__all__ = ["Imagined", "Prepared", "TailorMode", "WorldModel", "keep_cpu_heap", "obs_to_tensor", "tensor_to_obs"]
