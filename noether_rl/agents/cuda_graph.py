"""CUDA graphs of a function of tensors, one per input shape: the bookkeeping behind
``WorldModel(cuda_graph=True)`` (the candidate rollouts of a planner, a few hundred small kernels per step).

:class:`GraphCache` keeps, per key (the caller's key plus the shapes, dtypes and devices of the inputs), a
captured graph with its static input buffers and static outputs. A call with a known key copies the inputs
into the static buffers (``copy_``), replays the graph and returns CLONES of the static outputs (the next
replay overwrites those); a new key is captured first: static buffers cloned from the inputs, the function
run ``warmup`` times on a side stream, then captured (as the PyTorch CUDA-graphs docs prescribe). At most
``max_graphs`` graphs are kept (least recently used evicted; each holds its own memory pool, about the
activations of one eager call).

The capture itself is a *backend*: :class:`CudaGraphBackend` (``torch.cuda.CUDAGraph``) or
:class:`EagerReplay` (re-runs the function on the static buffers and copies its results into the static
outputs: the same semantics on any device; tests use it on CPU).

Rules for a captured function: only tensor work on the static inputs (no ``.item()``, no host syncs, no
Python branching on tensor values), randomness only from the default CUDA generator (each replay draws
fresh numbers), and parameters are read from their storage at replay: in-place updates of the weights
(``load_state_dict``, an optimiser step) are seen, replaced parameters (``module.to(...)`` producing new
tensors) are not: call :meth:`GraphCache.clear` after such a change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

GraphFn = Callable[..., Sequence[Tensor]]


class CaptureBackend(Protocol):
    def capture(self, fn: GraphFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...], Any]:
        """-> (replay: recomputes the static outputs from the static inputs, static outputs, a handle to keep)."""
        ...


class CudaGraphBackend:
    """``torch.cuda.CUDAGraph`` capture: ``warmup`` runs on a side stream, then one captured run."""

    def __init__(self, warmup: int = 2) -> None:
        self.warmup = int(warmup)

    def capture(self, fn: GraphFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...], Any]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = tuple(fn(*static_inputs))
        return graph.replay, outputs, graph


class EagerReplay:
    """A stand-in for a graph on any device: capture runs ``fn`` once; a replay re-runs it on the static
    inputs and copies the results into the static outputs (so the outputs are overwritten like a graph's)."""

    def __init__(self) -> None:
        self.runs = 0

    def capture(self, fn: GraphFn, static_inputs: Sequence[Tensor]) -> tuple[Callable[[], None], tuple[Tensor, ...], Any]:
        outputs = tuple(fn(*static_inputs))

        def replay() -> None:
            self.runs += 1
            for o, n in zip(outputs, fn(*static_inputs), strict=True):
                o.copy_(n)

        return replay, outputs, None


@dataclass
class _Entry:
    inputs: list[Tensor]
    outputs: tuple[Tensor, ...]
    replay: Callable[[], None]
    handle: Any  # the graph (its memory pool lives as long as it does)
    keep: Any  # objects the graph refers to (e.g. a generator), kept alive with it


def input_signature(inputs: Sequence[Tensor]) -> tuple:
    """What a graph is specialised to besides the caller's key: shape, dtype and device of every input."""
    return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)


class GraphCache:
    """Per-key graphs of functions of tensors (see the module docstring). ``captures`` and ``replays``
    count what happened (a benchmark reports them)."""

    def __init__(self, backend: CaptureBackend | None = None, *, max_graphs: int = 8) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.backend: CaptureBackend = backend if backend is not None else CudaGraphBackend()
        self.max_graphs = int(max_graphs)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.captures = 0
        self.replays = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every graph (and its memory pool); the next call re-captures."""
        self._entries.clear()

    def __call__(self, key: Hashable, fn: GraphFn, inputs: Sequence[Tensor], keep: Any = None) -> tuple[Tensor, ...]:
        """``fn(*inputs)`` through the graph of ``(key, input_signature(inputs))``, captured on first use
        (``fn`` is only used then: the same key must mean the same function). Returns clones of the outputs."""
        full = (key, input_signature(inputs))
        entry = self._entries.get(full)
        if entry is None:
            static = [x.detach().clone() for x in inputs]
            replay, outputs, handle = self.backend.capture(fn, static)
            entry = _Entry(static, outputs, replay, handle, keep)
            self._entries[full] = entry
            self.captures += 1
            while len(self._entries) > self.max_graphs:
                self._entries.popitem(last=False)
        else:
            for s, x in zip(entry.inputs, inputs, strict=True):
                s.copy_(x)
            self._entries.move_to_end(full)
        entry.replay()
        self.replays += 1
        return tuple(o.clone() for o in entry.outputs)


__all__ = ["CaptureBackend", "CudaGraphBackend", "EagerReplay", "GraphCache", "input_signature"]
