"""Run the weight-streaming engine: ``simulate(job, cluster) -> StepReport``.

The engine is callback-driven simpy: every hop of a chunk, every compute item and every update is
one simpy event (a ``Timeout`` whose callback moves the chunk on); the MemoryX stream is a simpy
process that blocks on the prefetch bound and on updates. Identical CS-2 subtrees are simulated
once (``symmetry``), which changes no timing; functional mode turns it off and carries tensors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from heapq import heappush

import simpy
from simpy.events import NORMAL, Event

from wsim import analytic, topology
from wsim.engine import schedule as sched
from wsim.engine.cs2 import CS2
from wsim.engine.fabric import Link
from wsim.engine.memoryx import MemoryX
from wsim.engine.swarmx import SwarmX
from wsim.errors import ConfigError, positive
from wsim.hardware import ClusterSpec
from wsim.job import TrainingJob
from wsim.memory import WaferPlan, check_memoryx


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


class _Hop(Event):
    """A triggered event carrying its value and its one callback: a lean ``simpy.Timeout`` (the
    environment's ``step`` reads only ``callbacks`` and ``_ok``; the callback reads ``_value``)."""

    _ok = True

    def __init__(self, value, callback):
        self.callbacks = [callback]
        self._value = value


def _scheduler(env: simpy.Environment):
    """``at(t, callback, value)``: one event at absolute time t, pushed as ``env.schedule`` would."""
    queue, eid = env._queue, env._eid

    def at(t: float, callback, value) -> None:
        now = env._now
        heappush(queue, (t if t > now else now, NORMAL, next(eid), _Hop(value, callback)))

    return at


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
                self.choice = analytic.choose_plan(job, cluster)
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
        self.at = _scheduler(self.env)
        self.graph = graph if graph is not None else topology.build(cluster)
        topology.validate(self.graph, cluster.swarmx.fanout)
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
        self.cs2s = [CS2(self, leaf) for leaf in self.swarmx.leaves]
        self.n_leaves = len(self.cs2s)
        self.memoryx = MemoryX(self, egress, ingress)

    def _flatten(self) -> None:
        """Per-chunk arrays: the hot loop reads lists, not objects."""
        self.stream_bytes, self.stream_pass, self.stream_first, self.stream_label = [], [], [], []
        self.item_pass, self.item_stream, self.item_seconds, self.item_last, self.item_grad = [], [], [], [], []
        self.grad_bytes, self.grad_pass, self.grad_label, self.pass_label = [], [], [], []
        names = [l.name for l in self.schedule.layers]
        for pi, p in enumerate(self.passes):
            label = f"{p.phase} {names[p.layer]} s{p.step} mb{p.micro_batch}"
            self.pass_label.append(label)
            seconds = p.compute_s / p.chunks
            for c in range(p.chunks):
                if p.streams_weights:
                    self.item_stream.append(len(self.stream_bytes))
                    self.stream_bytes.append(p.weight_chunk_bytes)
                    self.stream_pass.append(pi)
                    self.stream_first.append(c == 0)
                    self.stream_label.append(label)
                else:
                    self.item_stream.append(-1)
                if p.phase == sched.BWD:
                    self.item_grad.append(len(self.grad_bytes))
                    self.grad_bytes.append(p.grad_chunk_bytes)
                    self.grad_pass.append(pi)
                    self.grad_label.append(label)
                else:
                    self.item_grad.append(-1)
                self.item_pass.append(pi)
                self.item_seconds.append(seconds)
                self.item_last.append(c == p.chunks - 1)
        self.n_items = len(self.item_pass)
        owners: list[list[int]] = [[] for _ in self.schedule.layers]
        for owner, sources in enumerate(self.schedule.grad_sources):
            for s in sources:
                owners[s].append(owner)
        self.grad_owners = owners

    def run(self):
        """Run to the end; a training schedule returns its ``StepReport``, others return None (read
        the simulation's state, as ``wsim.engine.inference`` does)."""
        self.env.process(self.memoryx.stream())
        self.env.run()
        if not self.schedule.training:
            return None
        if self.memoryx.update_end.keys() != {(s, l) for s in range(self.schedule.steps)
                                              for l in range(len(self.schedule.layers))}:
            raise RuntimeError("engine finished with updates missing: a schedule deadlock")  # pragma: no cover
        from wsim.report import build_report

        report = build_report(self)
        if not math.isfinite(report.step_time_s) or report.step_time_s <= 0:
            raise ConfigError(f"the configuration's numbers give a step time of {report.step_time_s!r} s: "
                              f"a rate or latency is outside any physical range")
        return report

    @property
    def events(self) -> int:
        """simpy events processed: simpy numbers every scheduled event with ``_eid``."""
        return next(self.env._eid)


def simulate(job: TrainingJob, cluster: ClusterSpec, options: SimOptions | None = None, **kwargs):
    """Simulate ``job.steps`` weight-streaming steps of ``job`` on ``cluster``."""
    if not isinstance(cluster, ClusterSpec):
        raise ConfigError(f"cluster must be a ClusterSpec, got {type(cluster).__name__}")
    if options is None:
        options = SimOptions(**kwargs)
    elif kwargs:
        options = dataclasses.replace(options, **kwargs)
    return Simulation(job, cluster, options).run()
