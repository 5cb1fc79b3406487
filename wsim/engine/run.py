"""Run the weight-streaming engine: ``simulate(job, cluster) -> StepReport``.

The engine is callback-driven simpy: every hop of a chunk, every compute item and every update is
one call booked on simpy's event queue (``wsim.engine.events``: calls of one callback at one
instant, booked back to back, share one queue entry; the order is simpy's); the MemoryX stream is a
simpy process that blocks on the prefetch bound and on updates. Identical CS-2 subtrees are
simulated once (``symmetry``), which changes no timing; functional mode turns it off and carries
tensors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import simpy

from wsim.engine import closed_form
from wsim.cluster import topology
from wsim.engine import schedule as sched
from wsim.engine import cs2 as cs2_model
from wsim.engine.cs2 import CS2, PHASES
from wsim.engine.events import EventLoop
from wsim.engine.fabric import Link
from wsim.engine.memoryx import MemoryX
from wsim.engine.swarmx import SwarmX
from wsim.errors import ConfigError, positive
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.job import TrainingJob
from wsim.cluster.memory import WaferPlan, check_memoryx


@dataclass(frozen=True)
class SimOptions:
    """How to simulate (not what hardware): grain, symmetry, tracing, test-only fault switches."""

    chunk_bytes: float | None = None  # None: auto (see schedule.choose_chunk_bytes)
    max_chunks_per_layer: int = 16
    target_chunk_passes: int = 12_000
    # refuse larger runs: measured about 24 us per chunk pass on 16 CS-2 (111M, this repo's
    # engine), so the default bounds one simulation near a minute and a few hundred MB
    max_chunk_passes: int = 2_000_000
    symmetry: bool = True
    trace: bool = False
    global_update: bool = False  # gradient clipping: updates wait for the global norm
    stale_weights_fault: bool = False  # test-only: forward may read weights before their update
    drop_gradient_fault: bool = False  # test-only: SwarmX loses one child's gradient

    def __post_init__(self) -> None:
        if self.chunk_bytes is not None:
            positive("chunk_bytes", self.chunk_bytes)
        positive("max_chunks_per_layer", self.max_chunks_per_layer, integer=True)
        positive("target_chunk_passes", self.target_chunk_passes, integer=True)
        positive("max_chunk_passes", self.max_chunk_passes, integer=True)


class NullPayload:
    """Timing only: nothing rides on the events."""

    def stream_weights(self, p):  # pragma: no cover - functional mode only
        return None

    def compute(self, system, p, weights):
        return None

    def reduce(self, parts):
        return None

    def receive_gradient(self, p, grad):
        pass

    def update(self, step, layer):
        pass


class Simulation:
    def __init__(self, job: TrainingJob | None, cluster: ClusterSpec, options: SimOptions = SimOptions(),
                 payload=None, plan: WaferPlan | None = None, graph=None,
                 schedule: sched.Schedule | None = None):
        """A training step of ``job``, or (``schedule`` given, ``job`` None) any prebuilt schedule,
        such as the forward-only passes of inference (``wsim.engine.inference``)."""
        self.job, self.cluster, self.options = job, cluster, options
        self.functional = payload is not None
        self.payload = payload if payload is not None else NullPayload()
        self.trace = options.trace
        if schedule is None:
            check_memoryx(job, cluster)
            self.choice = None
            if plan is None:
                self.choice = closed_form.choose_plan(job, cluster)
                plan = self.choice.plan
            self.plan = plan
            if self.functional:
                chunk = float("inf")  # one chunk per layer: a layer's tensors travel whole
            elif options.chunk_bytes is not None:
                chunk = options.chunk_bytes
            else:
                chunk = sched.choose_chunk_bytes(job, cluster, self.plan, options.max_chunks_per_layer,
                                                 options.target_chunk_passes)
            schedule = sched.build(job, cluster, self.plan, chunk, job.steps, options.max_chunk_passes)
        else:
            self.plan = plan
        self.schedule = schedule
        self.passes = self.schedule.passes
        self._flatten()
        self.env = simpy.Environment()
        self.loop = EventLoop(self.env)
        self.at = self.loop.at
        if graph is None:
            self.graph = topology.build(cluster)  # a valid tree by construction (tests/cluster/test_topology.py)
        else:
            self.graph = graph
            topology.validate(graph, cluster.swarmx.fanout)
        quotient = topology.symmetry_classes(self.graph, options.symmetry and not self.functional)
        mx = cluster.memoryx
        # MemoryX's own links come from the graph's memoryx edge (built from cluster.memoryx), so a
        # graph with a degraded MemoryX edge is honoured like any other link
        (top,) = self.graph.successors(topology.MEMORYX)
        edge = self.graph.edges[topology.MEMORYX, top]
        lat = edge["latency_s"]
        egress = Link("MemoryX egress", edge["bytes_per_s"], lat, self.trace)
        ingress = egress if not mx.full_duplex else Link(
            "MemoryX ingress", edge.get("up_bytes_per_s", edge["bytes_per_s"]), lat, self.trace)
        self.swarmx = SwarmX(self, quotient, egress, ingress)
        self.broadcast, self.reduce = self.swarmx.callbacks()
        self.start, self.arrive, self.done = cs2_model.callbacks(self)
        self.cs2s = [CS2(self, leaf) for leaf in self.swarmx.leaves]
        self.n_leaves = len(self.cs2s)
        self.memoryx = MemoryX(self, egress, ingress)

    def _flatten(self) -> None:
        """Per-chunk arrays: the hot loop reads lists, not objects (built a pass at a time)."""
        self.stream_bytes, self.stream_pass, self.stream_first, self.stream_label = [], [], [], []
        self.item_pass, self.item_stream, self.item_seconds, self.item_last, self.item_grad = [], [], [], [], []
        self.item_phase = []  # index into wsim.engine.cs2.PHASES
        self.grad_bytes, self.grad_pass, self.grad_label, self.pass_label = [], [], [], []
        names = [l.name for l in self.schedule.layers]
        pass_start = []  # each pass's first item
        for pi, p in enumerate(self.passes):
            label = f"{p.phase} {names[p.layer]} s{p.step} mb{p.micro_batch}"
            self.pass_label.append(label)
            n = p.chunks
            pass_start.append(len(self.item_pass))
            if p.streams_weights:
                first = len(self.stream_bytes)
                self.item_stream.extend(range(first, first + n))
                self.stream_bytes.extend([p.weight_chunk_bytes] * n)
                self.stream_pass.extend([pi] * n)
                self.stream_first.extend([True] + [False] * (n - 1))
                self.stream_label.extend([label] * n)
            else:
                self.item_stream.extend([-1] * n)
            if p.phase == sched.BWD:
                first = len(self.grad_bytes)
                self.item_grad.extend(range(first, first + n))
                self.grad_bytes.extend([p.grad_chunk_bytes] * n)
                self.grad_pass.extend([pi] * n)
                self.grad_label.extend([label] * n)
            else:
                self.item_grad.extend([-1] * n)
            self.item_pass.extend([pi] * n)
            self.item_phase.extend([PHASES.index(p.phase)] * n)
            self.item_seconds.extend([p.compute_s / n] * n)
            self.item_last.extend([False] * (n - 1) + [True])
        self.n_items = n = len(self.item_pass)
        # the step an item opens or closes (-1: none): the CS-2 records only those times
        self.item_first_of_step, self.item_last_of_step, self.item_last_bwd_of_step = [-1] * n, [-1] * n, [-1] * n
        seen_first, seen_last, seen_bwd = set(), set(), set()
        for pi, p in enumerate(self.passes):
            if p.step not in seen_first:
                seen_first.add(p.step)
                self.item_first_of_step[pass_start[pi]] = p.step
        for pi in reversed(range(len(self.passes))):
            p = self.passes[pi]
            last = pass_start[pi] + p.chunks - 1
            if p.step not in seen_last:
                seen_last.add(p.step)
                self.item_last_of_step[last] = p.step
            if p.phase == sched.BWD and p.step not in seen_bwd:
                seen_bwd.add(p.step)
                self.item_last_bwd_of_step[last] = p.step
        owners: list[list[int]] = [[] for _ in self.schedule.layers]
        for owner, sources in enumerate(self.schedule.grad_sources):
            for s in sources:
                owners[s].append(owner)
        self.grad_owners = owners

    def run(self):
        """Run to the end; a training schedule returns its ``StepReport``, others return None (read
        the simulation's state, as ``wsim.engine.inference`` does)."""
        self.env.process(self.memoryx.stream())
        self.loop.run()
        if not self.schedule.training:
            return None
        if self.memoryx.update_end.keys() != {(s, l) for s in range(self.schedule.steps)
                                              for l in range(len(self.schedule.layers))}:
            raise RuntimeError("engine finished with updates missing: a schedule deadlock")  # pragma: no cover
        from wsim.engine.report import build_report

        report = build_report(self)
        if not math.isfinite(report.step_time_s) or report.step_time_s <= 0:
            raise ConfigError(f"the configuration's numbers give a step time of {report.step_time_s!r} s: "
                              f"a rate or latency is outside any physical range")
        return report

    @property
    def events(self) -> int:
        """simpy queue entries processed (``wsim.engine.events``: a batch of calls is one)."""
        return self.loop.events

    @property
    def calls(self) -> int:
        """Engine callbacks run: every hop, compute item and update (batched or not)."""
        return self.loop.calls


def simulate(job: TrainingJob, cluster: ClusterSpec, options: SimOptions | None = None, **kwargs):
    """Simulate ``job.steps`` weight-streaming steps of ``job`` on ``cluster``."""
    if not isinstance(cluster, ClusterSpec):
        raise ConfigError(f"cluster must be a ClusterSpec, got {type(cluster).__name__}")
    if options is None:
        options = SimOptions(**kwargs)
    elif kwargs:
        options = dataclasses.replace(options, **kwargs)
    return Simulation(job, cluster, options).run()
