"""A CS-2: computes its data-parallel share of each layer as the layer's weight chunks arrive.

Work items run strictly in schedule order on one processor (the wafer). An item that needs a
weight chunk waits for it; a backward item emits its gradient chunk up the tree while it is being
computed (head at the compute start, tail at the end). Weights are kept only from arrival until
the item that uses them is done: the CS-2 holds no weights between a layer's forward and backward.
"""

from __future__ import annotations

from wsim.engine.schedule import BWD


class CS2:
    __slots__ = ("sim", "node", "next_item", "busy", "arrived", "weights", "held_bytes",
                 "peak_held_bytes", "busy_by_phase", "first_start", "last_bwd_end", "last_end", "spans",
                 "slowdown")

    def __init__(self, sim, node):
        self.sim = sim
        self.node = node
        node.leaf = self
        self.slowdown = node.slowdown
        self.next_item = 0
        self.busy = False
        self.arrived = 0  # weight chunks arrived so far (they arrive in stream order)
        self.weights: dict[int, object] = {}  # pass index -> payload, functional mode only
        self.held_bytes = 0.0  # weight bytes on the wafer now (arrived, not yet used)
        self.peak_held_bytes = 0.0
        self.busy_by_phase = {"fwd": 0.0, "recompute": 0.0, "bwd": 0.0}
        self.first_start: dict[int, float] = {}  # step -> first compute start
        self.last_bwd_end: dict[int, float] = {}  # step -> last backward compute end
        self.last_end: dict[int, float] = {}  # step -> last compute end (any phase)
        self.spans: list | None = [] if sim.trace else None

    def arrive(self, j: int, payload) -> None:
        sim = self.sim
        self.arrived += 1
        self.held_bytes += sim.stream_bytes[j]
        if self.held_bytes > self.peak_held_bytes:
            self.peak_held_bytes = self.held_bytes
        if payload is not None:
            self.weights[sim.stream_pass[j]] = payload
        if not self.busy:
            self._start()

    def _start(self) -> None:
        sim = self.sim
        k = self.next_item
        if k >= sim.n_items:
            return
        j = sim.item_stream[k]
        if j >= 0 and j >= self.arrived:
            return  # its weights are not here yet
        self.busy = True
        self.next_item = k + 1
        now = sim.env.now
        sim.at(now + sim.item_seconds[k] * self.slowdown, self._done, (k, now))

    def _done(self, ev) -> None:
        k, start = ev._value
        sim = self.sim
        now = sim.env.now
        self.busy = False
        p = sim.item_pass[k]
        ps = sim.passes[p]
        self.busy_by_phase[ps.phase] += now - start
        if ps.step not in self.first_start:
            self.first_start[ps.step] = start
        if self.spans is not None:
            self.spans.append((start, now - start, sim.pass_label[p]))
        j = sim.item_stream[k]
        last_chunk = sim.item_last[k]
        result = None
        if last_chunk and sim.functional:
            weights = self.weights.pop(p, None) if ps.streams_weights else None
            result = sim.payload.compute(self.node.index, ps, weights)
        if j >= 0:
            self.held_bytes -= sim.stream_bytes[j]
            sim.memoryx.consumed(j)
        self.last_end[ps.step] = now
        if ps.phase == BWD:
            self.last_bwd_end[ps.step] = now
            sim.swarmx.send_up(self.node, sim.item_grad[k], start, result if last_chunk else None)
        self._start()
