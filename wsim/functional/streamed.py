"""Autograd for a layer whose weights pass through: the graph keeps activations, never weights.

In forward, each streamed weight enters the graph through ``_Streamed`` (an alias of the weight
whose backward hands the weight's gradient to a sink) and every tensor autograd saves is checked
by a saved-tensor hook: a weight (or a view of one) is saved as a *name*, not a tensor. In
backward, the hook resolves the name against the weights streamed for the backward pass. So the
graph holds no weight between forward and backward, and a backward without freshly streamed
weights fails loudly instead of silently reusing stale ones.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _Streamed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchor: Tensor, weight: Tensor, sink, name: str) -> Tensor:
        ctx.sink, ctx.name = sink, name
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.sink(ctx.name, grad)
        return None, None, None, None


class WeightRef:
    """What the graph keeps instead of a weight: its name and the view's geometry."""

    __slots__ = ("name", "size", "stride", "offset")

    def __init__(self, name: str, t: Tensor):
        self.name, self.size, self.stride, self.offset = name, t.size(), t.stride(), t.storage_offset()


class StreamedLayer:
    """One layer pass on one CS-2: ``forward`` records the graph, ``backward`` replays it with the
    weights streamed again, returning the input gradient and the weight gradients by name."""

    def __init__(self):
        self.anchor: Tensor | None = None
        self.backward_weights: dict[str, Tensor] | None = None
        self.grads: dict[str, Tensor] = {}

    def _sink(self, name: str, grad: Tensor) -> None:
        prev = self.grads.get(name)
        self.grads[name] = grad if prev is None else prev + grad

    def _pack(self, storages: dict[int, str]):
        def pack(t: Tensor):
            try:
                ptr = t.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                return t
            name = storages.get(ptr)
            return t if name is None else WeightRef(name, t)

        return pack

    def _unpack(self, saved):
        if not isinstance(saved, WeightRef):
            return saved
        if self.backward_weights is None or saved.name not in self.backward_weights:
            raise RuntimeError(f"backward needs weight {saved.name!r} but it was not streamed again")
        w = self.backward_weights[saved.name]
        return w.as_strided(saved.size, saved.stride, saved.offset)

    def forward(self, fn, weights: dict[str, Tensor], dtype: torch.dtype):
        """Run ``fn(ws)`` where ``ws`` are graph entries for ``weights``; returns fn's output."""
        self.anchor = torch.zeros((), dtype=dtype, requires_grad=True)
        storages = {w.untyped_storage().data_ptr(): n for n, w in weights.items()}
        with torch.autograd.graph.saved_tensors_hooks(self._pack(storages), self._unpack):
            ws = {n: _Streamed.apply(self.anchor, w, self._sink, n) for n, w in weights.items()}
            return fn(ws)

    def backward(self, output: Tensor, grad_output: Tensor | None, inputs: list[Tensor],
                 weights: dict[str, Tensor] | None) -> dict[str, Tensor]:
        self.backward_weights = weights
        targets = [t for t in inputs if t is not None] + [self.anchor]
        torch.autograd.backward(output, grad_output, inputs=targets)
        self.backward_weights = None
        self.anchor = None
        grads, self.grads = self.grads, {}
        return grads
