"""MemoryX: streams weight chunks, accumulates gradients, runs the optimizer layer by layer.

- The stream is one simpy process that sends chunks in schedule order while the wafers' weight
  buffers have room (the prefetch bound: bytes sent but not yet used by every CS-2 never exceed
  ``cs2.weight_buffer_bytes``; one chunk may always be in flight).
- A forward pass of step k > 0 may not read a layer before that layer's step k-1 update is done
  (glossary "MemoryX": the one exception to pipelining is the iteration boundary).
- When a layer's gradients for the last micro-batch are in (with the head's share for a tied
  embedding), its update is booked on the optimizer (FIFO) while the backward goes on.
"""

from __future__ import annotations

from wsim.engine.fabric import Processor
from wsim.engine.schedule import FWD


class MemoryX:
    def __init__(self, sim, egress, ingress):
        self.sim = sim
        self.egress = egress
        self.ingress = ingress
        self.optimizer = Processor("MemoryX optimizer", sim.trace)
        self.buffer_bytes = sim.cluster.cs2.weight_buffer_bytes
        self.inflight_bytes = 0.0
        self.done_count = [0] * len(sim.stream_bytes)
        self.wake = None
        layers = len(sim.schedule.layers)
        self.version = [0] * layers  # steps whose update is applied, per layer
        self.grad_chunks_left = [p.chunks if p.phase == "bwd" else 0 for p in sim.passes]
        # per (step, layer): micro-batches whose gradients are complete
        self.mb_done: dict[tuple[int, int], int] = {}
        self.update_end: dict[tuple[int, int], float] = {}
        self.deferred: list[tuple[int, int]] = []
        self.updated = self._updated  # one bound method: the event loop batches calls of one callback

    # ---- weights out --------------------------------------------------------------------------
    def stream(self):
        sim = self.sim
        env = sim.env
        deps = sim.schedule.update_deps
        # inference has no updates to wait for; the stale-weight fault (tests only) ignores them
        stale = sim.options.stale_weights_fault or not sim.schedule.training
        root = sim.swarmx.root
        broadcast = sim.broadcast
        for j, nbytes in enumerate(sim.stream_bytes):
            while self.inflight_bytes > 0 and self.inflight_bytes + nbytes > self.buffer_bytes:
                self.wake = env.event()
                yield self.wake
            p = sim.passes[sim.stream_pass[j]]
            if p.phase == FWD and p.step > 0 and sim.stream_first[j] and not stale:
                for dep in deps[p.layer]:
                    while self.version[dep] < p.step:
                        self.wake = env.event()
                        yield self.wake
            payload = None
            if sim.functional and sim.stream_first[j]:
                payload = sim.payload.stream_weights(p)
            self.inflight_bytes += nbytes
            now = env.now
            h, t = self.egress.send(now, now, nbytes, sim.stream_label[j])
            sim.at(t, broadcast, (root, j, h, payload))

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def consumed(self, j: int) -> None:
        """A CS-2 (class) is done with chunk j; when all are, its buffer space is free again."""
        self.done_count[j] += 1
        if self.done_count[j] == self.sim.n_leaves:
            self.inflight_bytes -= self.sim.stream_bytes[j]
            if self.inflight_bytes < 1e-6:
                self.inflight_bytes = 0.0
            self._wake()

    # ---- gradients in, updates ----------------------------------------------------------------
    def gradient(self, g: int, part) -> None:
        sim = self.sim
        p = sim.grad_pass[g]
        ps = sim.passes[p]
        if part is not None:
            sim.payload.receive_gradient(ps, part)
        self.grad_chunks_left[p] -= 1
        if self.grad_chunks_left[p]:
            return
        key = (ps.step, ps.layer)
        self.mb_done[key] = self.mb_done.get(key, 0) + 1
        for owner in sim.grad_owners[ps.layer]:
            sources = sim.schedule.grad_sources[owner]
            if all(self.mb_done.get((ps.step, s), 0) == sim.schedule.micro_batches for s in sources):
                self._ready(ps.step, owner)

    def _ready(self, step: int, layer: int) -> None:
        sim = self.sim
        if not sim.options.global_update:
            self._book(step, layer)
            return
        # gradient clipping needs the global norm: every update waits for the last gradient
        self.deferred.append((step, layer))
        if len(self.deferred) == len(sim.schedule.layers):
            for s, l in self.deferred:
                self._book(s, l)
            self.deferred = []

    def _book(self, step: int, layer: int) -> None:
        sim = self.sim
        params = sim.schedule.update_params
        owned = params[layer] if params is not None else sim.schedule.layers[layer].owned_params
        seconds = owned / sim.cluster.memoryx.optimizer_params_per_s
        end = self.optimizer.book(sim.env.now, seconds, f"update {sim.schedule.layers[layer].name}")
        sim.at(end, self.updated, (step, layer))

    def _updated(self, value) -> None:
        step, layer = value
        sim = self.sim
        if sim.functional:
            sim.payload.update(step, layer)
        self.version[layer] = step + 1
        self.update_end[(step, layer)] = sim.env.now
        self._wake()
