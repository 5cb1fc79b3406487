"""Faults in the timing model, and what each one costs.

Two families:

- **Slow-downs** run through the engine on a modified SwarmX graph (``wsim.cluster.topology.build``):
  ``Straggler(system, factor)`` makes one CS-2 compute ``factor`` times slower (data parallelism waits
  for the slowest system at every reduction); ``DegradedLink(node, factor)`` divides the bandwidth of
  the link from ``node``'s parent down to ``node`` (both directions) by ``factor``. ``node="memoryx"``
  means MemoryX's own link (its stream and ingest rates: the engine takes those from the cluster
  spec, not from the graph, so that one is applied to the spec).
- **Stops** are modelled at step level, around engine runs of the nominal and the recovered
  cluster: ``FailStop`` (a CS-2 or a SwarmX link dies at fraction ``at_fraction`` of a step; the step
  is lost and rerun from MemoryX's state, with the surviving systems or after a repair) and
  ``MemoryXLoss`` (a MemoryX server is lost; training restarts from the last MemoryX checkpoint).

Every ``evaluate`` returns a ``FaultResult`` whose ``report`` is a JSON-ready dict with the nominal
and faulted step times and the cost in seconds, and whose spans make a Chrome trace
(``write_fault_trace``). Assumptions (none of them is published by Cerebras) are the fields of
``FaultAssumptions``; each states its reason and every report repeats them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import networkx as nx

from wsim.cluster import topology
from wsim.errors import ConfigError, positive, require
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.job import TrainingJob


# ---- assumptions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultAssumptions:
    # Assumption: a fail-stop is noticed by a heartbeat / collective timeout of the runtime; 10 s is
    # a typical order for such timeouts (NCCL-style watchdogs are set from seconds to minutes).
    detection_s: float = 10.0
    # Assumption: dropping the lost systems from the SwarmX routes, re-planning the batch over N-1
    # systems and restarting the input workers. No recompile: weight streaming compiles one layer for
    # one system, independent of N (Cerebras' "cluster size scales independently" claim).
    reconfigure_s: float = 60.0
    # Assumption: a field repair (reseat/replace a 100 GbE optic or cable, or power-cycle a CS-2 and
    # reload its program); half an hour with an engineer on site.
    repair_s: float = 1800.0
    # Assumption: replace or restart the lost MemoryX server process before reloading state.
    restart_s: float = 120.0
    # Assumption: MemoryX reloads weights + optimizer state from checkpoint storage at 10 GB/s in
    # aggregate (a parallel file system or NVMe across the MemoryX servers).
    reload_bytes_per_s: float = 10e9
    # Assumption: a checkpoint is written at the same aggregate 10 GB/s from a step-boundary
    # snapshot, and the next step waits for it (conservative: an asynchronous write would hide most).
    checkpoint_bytes_per_s: float = 10e9
    # Assumption: for amortising, one fault of the kind every this many steps (pessimistic: at ~20 s
    # per 13B step, a fail-stop every ~6 hours).
    failure_interval_steps: int = 1000

    def __post_init__(self) -> None:
        for name in ("detection_s", "reconfigure_s", "repair_s", "restart_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ConfigError(f"{name} must be a non-negative number of seconds, got {v!r}")
        positive("reload_bytes_per_s", self.reload_bytes_per_s)
        positive("checkpoint_bytes_per_s", self.checkpoint_bytes_per_s)
        positive("failure_interval_steps", self.failure_interval_steps, integer=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _factor(name: str, value) -> None:
    positive(name, value)
    require(value >= 1, f"{name} must be at least 1 (a fault slows things down), got {value!r}")


# ---- the faults ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Straggler:
    """CS-2 number ``system`` computes ``factor`` times slower than nominal."""

    system: int
    factor: float = 2.0

    def __post_init__(self) -> None:
        require(isinstance(self.system, int) and not isinstance(self.system, bool) and self.system >= 0,
                f"straggler system must be a CS-2 index >= 0, got {self.system!r}")
        _factor("straggler factor", self.factor)

    def describe(self) -> str:
        return f"straggler cs2.{self.system} x{self.factor:g} slower"


@dataclass(frozen=True)
class DegradedLink:
    """The link from ``node``'s parent down to ``node`` runs at 1/``factor`` of its bandwidth, both
    ways (``node`` is ``cs2.i``, ``sx{level}.{i}`` or ``memoryx`` for MemoryX's own link)."""

    node: str
    factor: float = 2.0

    def __post_init__(self) -> None:
        require(isinstance(self.node, str) and self.node != "",
                f"degraded link must name the node it feeds, got {self.node!r}")
        _factor("degraded link factor", self.factor)

    def describe(self) -> str:
        return f"degraded link ->{self.node} at 1/{self.factor:g} bandwidth"


POLICIES = ("shrink", "repair")
BATCH_POLICIES = ("keep", "largest-divisible")


@dataclass(frozen=True)
class FailStop:
    """A CS-2 (``kind="cs2"``, ``target`` its index) or a SwarmX link (``kind="link"``, ``target`` the
    node it feeds) dies at ``at_fraction`` of a step. The step's work is lost; MemoryX still holds
    the state before the step (see ``evaluate``) and the step reruns:
    ``policy="shrink"``: at once, with the systems still reachable; the global batch is kept
    (``batch_policy="keep"``: it must divide over the survivors, else ConfigError) or cut to the
    largest batch that divides (``"largest-divisible"``: the dropped sequences are reported);
    ``policy="repair"``: with all N systems after ``repair_s``."""

    kind: str = "cs2"
    target: int | str = 0
    at_fraction: float = 0.5
    policy: str = "shrink"
    batch_policy: str = "keep"

    def __post_init__(self) -> None:
        require(self.kind in ("cs2", "link"), f"fail-stop kind must be cs2 or link, got {self.kind!r}")
        f = self.at_fraction
        require(not isinstance(f, bool) and isinstance(f, (int, float)) and 0 <= f <= 1,
                f"at_fraction must be in [0, 1], got {f!r}")
        require(self.policy in POLICIES, f"policy must be one of {POLICIES}, got {self.policy!r}")
        require(self.batch_policy in BATCH_POLICIES,
                f"batch_policy must be one of {BATCH_POLICIES}, got {self.batch_policy!r}")

    def node(self) -> str:
        return topology.cs2_node(self.target) if self.kind == "cs2" and isinstance(self.target, int) \
            else str(self.target)

    def describe(self) -> str:
        what = f"CS-2 cs2.{self.target}" if self.kind == "cs2" else f"link ->{self.target}"
        return f"{what} fails at {self.at_fraction:.0%} of a step, {self.policy}"


@dataclass(frozen=True)
class MemoryXLoss:
    """A MemoryX server is lost at ``at_fraction`` of a step; training restarts from the last MemoryX
    checkpoint, written every ``checkpoint_every`` steps."""

    checkpoint_every: int = 100
    at_fraction: float = 0.5

    def __post_init__(self) -> None:
        positive("checkpoint_every", self.checkpoint_every, integer=True)
        f = self.at_fraction
        require(not isinstance(f, bool) and isinstance(f, (int, float)) and 0 <= f <= 1,
                f"at_fraction must be in [0, 1], got {f!r}")

    def describe(self) -> str:
        return f"MemoryX server lost, checkpoint every {self.checkpoint_every} steps"


SLOWDOWNS = (Straggler, DegradedLink)


# ---- slow-downs through the engine ---------------------------------------------------------------
def apply(cluster: ClusterSpec, faults) -> tuple[ClusterSpec, nx.DiGraph]:
    """The cluster (MemoryX link faults change its spec) and SwarmX graph with ``faults`` applied."""
    g = topology.build(cluster)
    for f in faults:
        if isinstance(f, Straggler):
            require(f.system < cluster.systems,
                    f"straggler system {f.system} does not exist: the cluster has CS-2 0..{cluster.systems - 1}")
            g.nodes[topology.cs2_node(f.system)]["slowdown"] *= f.factor
        elif isinstance(f, DegradedLink):
            if f.node == topology.MEMORYX:
                mx = cluster.memoryx
                cluster = dataclasses.replace(cluster, memoryx=dataclasses.replace(
                    mx, stream_bytes_per_s=mx.stream_bytes_per_s / f.factor,
                    ingest_bytes_per_s=mx.ingest_bytes_per_s / f.factor))
                (top,) = g.successors(topology.MEMORYX)  # the engine reads MemoryX's links here
                edge = g.edges[topology.MEMORYX, top]
                edge["bytes_per_s"] /= f.factor
                edge["up_bytes_per_s"] = edge.get("up_bytes_per_s", edge["bytes_per_s"] * f.factor) / f.factor
                continue
            require(f.node in g and g.nodes[f.node]["kind"] != "memoryx",
                    f"degraded link: no node {f.node!r}; nodes are memoryx, "
                    f"{', '.join(n for n in sorted(g) if n.startswith('sx'))} and cs2.0..cs2.{cluster.systems - 1}")
            (parent,) = g.predecessors(f.node)
            edge = g.edges[parent, f.node]
            edge["up_bytes_per_s"] = edge.get("up_bytes_per_s", edge["bytes_per_s"]) / f.factor
            edge["bytes_per_s"] /= f.factor
        else:
            raise ConfigError(f"{type(f).__name__} is not a slow-down fault; use evaluate()")
    return cluster, g


def simulate_faulted(job: TrainingJob, cluster: ClusterSpec, faults, options=None):
    """Run the engine with slow-down ``faults``; returns (StepReport, Simulation)."""
    from wsim.engine.run import SimOptions, Simulation

    faulted, g = apply(cluster, faults)
    sim = Simulation(job, faulted, options or SimOptions(), graph=g)
    return sim.run(), sim


# ---- results -------------------------------------------------------------------------------------
@dataclass
class FaultResult:
    report: dict
    spans: list = field(default_factory=list)  # (track, start_s, dur_s, label): the fault timeline
    sim: object = None  # the faulted engine run (slow-downs), for its trace


def _nominal(job, cluster, options, cache: dict | None = None):
    from wsim.engine.run import SimOptions, Simulation

    key = (job, cluster)
    if cache is not None and key in cache:
        return cache[key]
    report = Simulation(job, cluster, options or SimOptions()).run()
    if cache is not None:
        cache[key] = report
    return report


def _lost_systems(cluster: ClusterSpec, fault: FailStop) -> list[int]:
    g = topology.build(cluster)
    node = fault.node()
    require(node in g and g.nodes[node]["kind"] != "memoryx",
            f"fail-stop target {fault.target!r} is not a CS-2 index or a SwarmX/CS-2 node of this cluster")
    if fault.kind == "cs2":
        require(g.nodes[node]["kind"] == "cs2", f"fail-stop kind cs2 needs a CS-2 index, got {fault.target!r}")
        return [g.nodes[node]["index"]]
    cut = [node] + list(nx.descendants(g, node))
    return sorted(g.nodes[v]["index"] for v in cut if g.nodes[v]["kind"] == "cs2")


def _rerun_job(job: TrainingJob, survivors: int, batch_policy: str) -> tuple[TrainingJob, int]:
    b = job.batch_seqs
    if b % survivors == 0:
        return job, b
    if batch_policy == "keep":
        raise ConfigError(
            f"batch {b} does not divide over the {survivors} surviving systems; choose a batch that "
            f"does, policy repair, or batch_policy (--batch-policy) largest-divisible (drops {b % survivors} sequences)")
    new = b - b % survivors
    require(new > 0, f"batch {b} is smaller than the {survivors} surviving systems")
    return dataclasses.replace(job, batch_seqs=new), new


def evaluate(job: TrainingJob, cluster: ClusterSpec, fault, assumptions: FaultAssumptions | None = None,
             options=None, trace: bool = False, cache: dict | None = None) -> FaultResult:
    """The cost of one fault (or a list of slow-downs together) on ``job`` x ``cluster``."""
    from wsim.engine.run import SimOptions

    a = assumptions or FaultAssumptions()
    options = options or SimOptions()
    job1 = dataclasses.replace(job, steps=1)
    nominal = _nominal(job1, cluster, options, cache)
    t = nominal.step_time_s
    base = {"fault": None, "nominal_step_s": t, "systems": cluster.systems, "batch": job.batch_seqs,
            "model": job.model.name}
    faults = fault if isinstance(fault, (list, tuple)) else [fault]
    if all(isinstance(f, SLOWDOWNS) for f in faults):
        opts = dataclasses.replace(options, trace=trace)
        report, sim = simulate_faulted(job1, cluster, faults, opts)
        tf = report.step_time_s
        r = base | {
            "fault": "; ".join(f.describe() for f in faults), "kind": "slowdown",
            "faulted_step_s": tf, "cost_s": tf - t, "cost_per_step_s": tf - t,
            "slowdown": tf / t, "bottleneck": report.bottleneck,
            "nominal_bottleneck": nominal.bottleneck,
            "note": "every step, while the fault lasts",
        }
        spans = [("steps", 0.0, t, "nominal step"), ("steps", t, tf, "faulted step")]
        return FaultResult(r, spans, sim)
    require(len(faults) == 1, "give one stop fault (FailStop or MemoryXLoss) at a time")
    f = faults[0]
    if isinstance(f, FailStop):
        return _fail_stop(job1, cluster, f, a, options, t, base, cache)
    if isinstance(f, MemoryXLoss):
        return _memoryx_loss(job1, cluster, f, a, t, base)
    raise ConfigError(f"unknown fault {f!r}")


def _fail_stop(job, cluster, f: FailStop, a: FaultAssumptions, options, t, base, cache) -> FaultResult:
    lost = _lost_systems(cluster, f)
    wasted = f.at_fraction * t
    if f.policy == "shrink":
        survivors = cluster.systems - len(lost)
        require(survivors > 0, f"{f.describe()}: no CS-2 is left reachable; use policy repair")
        job2, batch2 = _rerun_job(job, survivors, f.batch_policy)
        rerun = _nominal(job2, cluster.with_systems(survivors), options, cache)
        t2, recovery, what = rerun.step_time_s, a.reconfigure_s, "reconfigure to N-%d" % len(lost)
    else:
        survivors, batch2, t2, recovery, what = cluster.systems, job.batch_seqs, t, a.repair_s, "repair"
    faulted = wasted + a.detection_s + recovery + t2
    cost = faulted - t
    r = base | {
        "fault": f.describe(), "kind": "fail-stop", "lost_systems": lost,
        "systems_after": survivors, "batch_after": batch2, "dropped_seqs_per_step": job.batch_seqs - batch2,
        "wasted_s": wasted, "detection_s": a.detection_s, "recovery_s": recovery,
        "rerun_step_s": t2, "faulted_step_s": faulted, "cost_s": cost,
        "steady_step_s_after": t2,
        "tokens_per_s_ratio_after": (batch2 / t2) / (job.batch_seqs / t),
        "cost_per_step_s": cost / a.failure_interval_steps,
        "note": ("rollback to MemoryX's state before the step; assumption: MemoryX keeps each layer's "
                 "pre-update weights and AdamW state until the step's last update (a shadow copy), "
                 "since updates start during the backward pass"),
    }
    spans = [("steps", 0.0, t, "nominal step k-1"),
             ("steps", t, wasted, f"step k lost at {f.at_fraction:.0%} ({f.describe()})"),
             ("recovery", t + wasted, a.detection_s, "detection timeout"),
             ("recovery", t + wasted + a.detection_s, recovery, what),
             ("steps", t + wasted + a.detection_s + recovery, t2,
              f"step k rerun on {survivors} CS-2, batch {batch2}")]
    return FaultResult(r, spans)


def _memoryx_loss(job, cluster, f: MemoryXLoss, a: FaultAssumptions, t, base) -> FaultResult:
    from wsim.cluster.memory import memoryx_bytes

    state = memoryx_bytes(job, cluster)
    reload = state / a.reload_bytes_per_s
    k = f.checkpoint_every
    # the loss is equally likely in any of the k steps after a checkpoint: on average (k-1)/2 whole
    # steps plus the fraction of the current one are lost; at worst k-1 steps and that fraction
    lost_expected = (k - 1) / 2 * t + f.at_fraction * t
    lost_worst = (k - 1) * t + f.at_fraction * t
    cost = a.detection_s + a.restart_s + reload + lost_expected
    write = state / a.checkpoint_bytes_per_s
    r = base | {
        "fault": f.describe(), "kind": "memoryx-loss", "memoryx_bytes": state,
        "detection_s": a.detection_s, "restart_s": a.restart_s, "reload_s": reload,
        "lost_work_expected_s": lost_expected, "lost_work_worst_s": lost_worst,
        "faulted_step_s": t + cost, "cost_s": cost,
        "cost_worst_s": a.detection_s + a.restart_s + reload + lost_worst,
        "checkpoint_write_s": write, "checkpoint_overhead_per_step_s": write / k,
        "cost_per_step_s": cost / a.failure_interval_steps + write / k,
        "note": "expected cost: the loss falls uniformly within the checkpoint interval",
    }
    lost_steps = max(k - 1, 0) // 2
    spans = [("steps", 0.0, t, "nominal step"),
             ("steps", t, f.at_fraction * t, "step lost with the MemoryX server"),
             ("recovery", t + f.at_fraction * t, a.detection_s, "detection timeout"),
             ("recovery", t + f.at_fraction * t + a.detection_s, a.restart_s, "MemoryX restart"),
             ("recovery", t + f.at_fraction * t + a.detection_s + a.restart_s, reload,
              f"reload {state / 1e9:.3g} GB from checkpoint")]
    start = t + f.at_fraction * t + a.detection_s + a.restart_s + reload
    spans.append(("steps", start, lost_expected - f.at_fraction * t + t,
                  f"replay ~{lost_steps} steps since the checkpoint, then the lost step"))
    return FaultResult(r, spans)


# ---- the table and the trace ---------------------------------------------------------------------
def default_faults(cluster: ClusterSpec, batch_seqs: int | None = None) -> list:
    """One of each kind, placed on system 3 (or the last) and the first SwarmX node above it. The
    CS-2 shrink row keeps the global batch when it divides over the N-1 survivors (or when
    ``batch_seqs`` is not given), else cuts it to the largest that does: the default table runs for
    every batch the cluster runs (a batch of 8 per system on 8 CS-2 does not divide over 7)."""
    n = cluster.systems
    s = min(3, n - 1)
    g = topology.build(cluster)
    (parent,) = g.predecessors(topology.cs2_node(s))
    out = [Straggler(s, 1.2), Straggler(s, 2.0), Straggler(s, 10.0),
           DegradedLink(topology.cs2_node(s), 2.0), DegradedLink(topology.MEMORYX, 2.0)]
    if g.nodes[parent]["kind"] == "swarmx" and next(g.predecessors(parent)) != topology.MEMORYX:
        out.append(DegradedLink(parent, 2.0))
    if n > 1:
        keep = batch_seqs is None or batch_seqs % (n - 1) == 0
        out.append(FailStop("cs2", s, 0.5, "shrink", "keep" if keep else "largest-divisible"))
    out.append(FailStop("cs2", s, 0.5, "repair"))
    if n > 1 and next(g.predecessors(parent)) != topology.MEMORYX:
        out.append(FailStop("link", parent, 0.5, "shrink", "largest-divisible"))
    out.append(MemoryXLoss(100, 0.5))
    return out


def fault_table(job: TrainingJob, cluster: ClusterSpec, faults=None,
                assumptions: FaultAssumptions | None = None, options=None) -> list[dict]:
    cache: dict = {}
    return [evaluate(job, cluster, f, assumptions, options, cache=cache).report
            for f in (faults if faults is not None else default_faults(cluster, job.batch_seqs))]


def format_table(rows: list[dict]) -> str:
    head = f"{'fault':<58} {'nominal s':>10} {'faulted s':>11} {'cost s':>10} {'cost/step s':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['fault']:<58} {r['nominal_step_s']:>10.4g} {r['faulted_step_s']:>11.5g} "
                     f"{r['cost_s']:>10.4g} {r['cost_per_step_s']:>12.4g}")
    return "\n".join(lines)


def fault_trace_events(result: FaultResult) -> list[dict]:
    """Chrome trace events: the faulted engine run (slow-downs) plus a 'Faults' process whose
    tracks show the fault timeline (lost work, detection, recovery, rerun)."""
    events: list[dict] = []
    if result.sim is not None and getattr(result.sim, "trace", False):
        from wsim.engine.trace import trace_events

        events = trace_events(result.sim)
    pid = 4
    events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                   "args": {"name": f"Faults: {result.report['fault']}"}})
    tids: dict[str, int] = {}
    for track, start, dur, label in result.spans:
        if track not in tids:
            tids[track] = len(tids) + 1
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tids[track],
                           "args": {"name": track}})
        events.append({"ph": "X", "name": label, "pid": pid, "tid": tids[track],
                       "ts": start * 1e6, "dur": max(dur, 0.0) * 1e6})
    events.append({"ph": "i", "s": "g", "name": f"fault: {result.report['fault']}", "pid": pid,
                   "tid": 0, "ts": 0.0, "args": {k: v for k, v in result.report.items()
                                                  if isinstance(v, (int, float, str))}})
    return events


def write_fault_trace(result: FaultResult, path: str) -> None:
    try:
        with open(path, "w") as fh:
            json.dump({"traceEvents": fault_trace_events(result), "displayTimeUnit": "ms"}, fh)
    except OSError as exc:
        raise ConfigError(f"cannot write trace {path!r}: {exc.strerror}") from None


# ---- parsing (CLI) -------------------------------------------------------------------------------
def _split(text: str, flag: str, example: str) -> tuple[str, float]:
    head, sep, tail = text.rpartition(":")
    try:
        value = float(tail)
    except ValueError:
        value = float("nan")
    if not sep or not head or not math.isfinite(value):
        raise ConfigError(f"{flag} must look like {example}, got {text!r}")
    return head, value


def parse_straggler(text: str) -> Straggler:
    head, factor = _split(text, "--straggler", "3:2.0 (CS-2 index:slowdown factor)")
    try:
        system = int(head)
    except ValueError:
        raise ConfigError(f"--straggler must look like 3:2.0 (CS-2 index:factor), got {text!r}") from None
    return Straggler(system, factor)


def parse_degraded_link(text: str) -> DegradedLink:
    node, factor = _split(text, "--degraded-link", "cs2.3:2.0 or sx1.0:4 or memoryx:2 (node:factor)")
    return DegradedLink(node, factor)


def parse_fail(text: str) -> tuple[str, int | str]:
    kind, sep, target = text.partition(":")
    if kind == "cs2" and sep:
        try:
            return "cs2", int(target)
        except ValueError:
            pass
    elif kind == "link" and sep and target:
        return "link", target
    raise ConfigError(f"--fail must look like cs2:3 or link:sx1.0, got {text!r}")
