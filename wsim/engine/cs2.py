"""A CS-2: computes its data-parallel share of each layer as the layer's weight chunks arrive.

Work items run strictly in schedule order on one processor (the wafer). An item that needs a
weight chunk waits for it; a backward item emits its gradient chunk up the tree while it is being
computed (head at the compute start, tail at the end). Weights are kept only from arrival until
the item that uses them is done: the CS-2 holds no weights between a layer's forward and backward.

The two event callbacks, ``arrive`` and ``done``, are functions of one tuple (the engine's event
loop batches calls of one callback, ``wsim.engine.events``), closures over the flat per-item lists
that ``Simulation._flatten`` precomputes.
"""

from __future__ import annotations

PHASES = ("fwd", "recompute", "bwd")


class CS2:
    __slots__ = ("sim", "node", "next_item", "busy", "arrived", "weights", "held_bytes",
                 "peak_held_bytes", "busy_s", "first_start", "last_bwd_end", "last_end", "spans",
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
        self.busy_s = [0.0, 0.0, 0.0]  # compute seconds by phase, PHASES order
        self.first_start: dict[int, float] = {}  # step -> first compute start
        self.last_bwd_end: dict[int, float] = {}  # step -> last backward compute end
        self.last_end: dict[int, float] = {}  # step -> last compute end (any phase)
        self.spans: list | None = [] if sim.trace else None

    @property
    def busy_by_phase(self) -> dict[str, float]:
        return dict(zip(PHASES, self.busy_s))



def callbacks(sim):
    """The CS-2 model's callbacks for ``sim``: ``start(cs2)``, ``arrive((cs2, j, payload))`` and
    ``done((cs2, k, start_s))``; closures over the simulation's flat per-item lists."""
    env, at = sim.env, sim.at
    n_items = sim.n_items
    item_stream, item_seconds, item_phase = sim.item_stream, sim.item_seconds, sim.item_phase
    item_pass, item_last, item_grad = sim.item_pass, sim.item_last, sim.item_grad
    first_of_step, last_of_step = sim.item_first_of_step, sim.item_last_of_step
    last_bwd_of_step = sim.item_last_bwd_of_step
    stream_bytes, stream_pass = sim.stream_bytes, sim.stream_pass
    grad_bytes, grad_label, pass_label = sim.grad_bytes, sim.grad_label, sim.pass_label
    functional = sim.functional

    def start(cs2) -> None:
        """Start the next item if its weights are here (the wafer is idle)."""
        k = cs2.next_item
        if k >= n_items or item_stream[k] >= cs2.arrived:  # j = -1 (no weights needed) passes
            return  # done, or its weights are not here yet
        cs2.busy = True
        cs2.next_item = k + 1
        now = env._now
        at(now + item_seconds[k] * cs2.slowdown, done, (cs2, k, now))

    def arrive(value) -> None:
        """Weight chunk j (and its payload, functional mode) reaches a CS-2."""
        cs2, j, payload = value
        cs2.arrived += 1
        held = cs2.held_bytes + stream_bytes[j]
        cs2.held_bytes = held
        if held > cs2.peak_held_bytes:
            cs2.peak_held_bytes = held
        if payload is not None:
            cs2.weights[stream_pass[j]] = payload
        if not cs2.busy:
            start(cs2)

    def done(value) -> None:
        """Compute item k, started at ``t0``, ends now."""
        cs2, k, t0 = value
        now = env._now
        cs2.busy = False
        cs2.busy_s[item_phase[k]] += now - t0
        step = first_of_step[k]
        if step >= 0:
            cs2.first_start[step] = t0
        if cs2.spans is not None:
            cs2.spans.append((t0, now - t0, pass_label[item_pass[k]]))
        last_chunk = item_last[k]
        result = None
        if last_chunk and functional:
            p = item_pass[k]
            ps = sim.passes[p]
            weights = cs2.weights.pop(p, None) if ps.streams_weights else None
            result = sim.payload.compute(cs2.node.index, ps, weights)
        j = item_stream[k]
        if j >= 0:
            cs2.held_bytes -= stream_bytes[j]
            sim.memoryx.consumed(j)
        step = last_of_step[k]
        if step >= 0:
            cs2.last_end[step] = now
        g = item_grad[k]
        if g >= 0:
            step = last_bwd_of_step[k]
            if step >= 0:
                cs2.last_bwd_end[step] = now
            node = cs2.node
            h, t = node.up.send(t0, now, grad_bytes[g], grad_label[g])
            at(t, sim.reduce, (node.parent, node, g, h, result if last_chunk else None))
        start(cs2)

    return start, arrive, done
