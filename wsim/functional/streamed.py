"""Autograd for a layer whose weights pass through: the graph keeps activations, never weights.

In forward, each streamed weight enters the graph through ``_Streamed`` (an alias of the weight
whose backward hands the weight's gradient to a sink) and every tensor autograd saves is checked
by a saved-tensor hook (``torch.autograd.graph.saved_tensors_hooks``): a weight (or a view of one)
is saved as a *name*, not a tensor. In backward, the hook resolves the name against the weights
streamed for the backward pass. So the graph holds no weight between forward and backward, and a
backward without freshly streamed weights fails loudly instead of silently reusing stale ones.

The same hook guards against weights kept in another form: a saved tensor computed from weights
alone (a copy, a cast, ``weight * 1.0``: its autograd history reaches streamed weights and no layer
input) would hold the weight's bytes until the backward. It is saved as it is (the math stays
right) and counted in ``held_tensors`` / ``held_bytes``, which the executor reports and the tests
require to be zero.
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
        self.held_tensors = 0  # saved tensors computed from weights alone (must stay 0)
        self.held_bytes = 0  # their storage bytes, each storage once
        self._held_storages: set[int] = set()
        self._origin: dict = {}  # autograd node -> (reaches a streamed weight, reaches a layer input)

    def _sink(self, name: str, grad: Tensor) -> None:
        prev = self.grads.get(name)
        self.grads[name] = grad if prev is None else prev + grad

    def _origin_of(self, root) -> tuple[bool, bool]:
        """(reaches a streamed weight, reaches a layer input) for autograd node ``root``: a walk of
        its history down to the leaves (the anchor behind every ``_Streamed``, or an input)."""
        origin = self._origin
        stack = [root]
        while stack:
            node = stack[-1]
            if node in origin:
                stack.pop()
                continue
            if hasattr(node, "variable"):  # AccumulateGrad: a leaf
                origin[node] = (node.variable is self.anchor, node.variable is not self.anchor)
                stack.pop()
                continue
            pending = [n for n, _ in node.next_functions if n is not None and n not in origin]
            if pending:
                stack.extend(pending)
                continue
            parts = [origin[n] for n, _ in node.next_functions if n is not None]
            origin[node] = (any(p[0] for p in parts), any(p[1] for p in parts))
            stack.pop()
        return origin[root]

    def _pack(self, storages: dict[int, str]):
        def pack(t: Tensor):
            try:
                ptr = t.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                return t
            name = storages.get(ptr)
            if name is not None:
                return WeightRef(name, t)
            if t.grad_fn is not None:
                from_weights, from_inputs = self._origin_of(t.grad_fn)
                if from_weights and not from_inputs:  # a copy of weights, kept until the backward
                    self.held_tensors += 1
                    if ptr not in self._held_storages:
                        self._held_storages.add(ptr)
                        self.held_bytes += t.untyped_storage().nbytes()
            return t

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
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack(storages), self._unpack):
                ws = {n: _Streamed.apply(self.anchor, w, self._sink, n) for n, w in weights.items()}
                return fn(ws)
        finally:
            self._origin = {}  # no autograd node outlives the forward here

    def backward(self, output: Tensor, grad_output: Tensor | None, inputs: list[Tensor],
                 weights: dict[str, Tensor] | None) -> dict[str, Tensor]:
        self.backward_weights = weights
        targets = [t for t in inputs if t is not None] + [self.anchor]
        torch.autograd.backward(output, grad_output, inputs=targets)
        self.backward_weights = None
        self.anchor = None
        grads, self.grads = self.grads, {}
        return grads
