"""Invariants of the timing engine under random valid configurations (small models, any cluster).

- conservation: every link carries each weight chunk (down) or reduced gradient chunk (up) exactly
  once, as many bytes as the model's layers say; every CS-2 receives all the bytes MemoryX sent;
- every gradient chunk is reduced exactly once per step (nothing pending, every (step, layer, micro-
  batch) complete; with a counting payload, MemoryX gets each system's contribution exactly once,
  and no pass reads weights older or newer than its step);
- the step is never shorter than the compute bound, the stream bounds or the optimizer bound;
- throughput never decreases when a bandwidth increases;
- two runs with the same inputs give the same report; symmetry changes nothing.
"""

import collections
import dataclasses

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models.spec import ModelSpec
from wsim.engine import closed_form
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec, CS2Spec, MemoryXSpec, SwarmXSpec
from wsim.cluster.job import TrainingJob

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REL = 1e-9


@st.composite
def configs(draw, max_systems=24):
    heads = draw(st.sampled_from([1, 2, 4]))
    hidden = heads * draw(st.integers(4, 48))
    model = ModelSpec("rand", layers=draw(st.integers(1, 3)), hidden=hidden, heads=heads,
                      ffn=draw(st.sampled_from([0, hidden, 3 * hidden + 1])), vocab=draw(st.integers(10, 600)),
                      positions=256, tied_embeddings=draw(st.booleans()))
    n = draw(st.integers(1, max_systems))
    k = draw(st.integers(1, 6))
    job = TrainingJob(model, seq=draw(st.sampled_from([8, 32, 64, 128, 256])), batch_seqs=n * k,
                      micro_batches=draw(st.one_of(st.just("auto"), st.integers(1, k))),
                      steps=draw(st.integers(1, 3)), bytes_per_element=draw(st.sampled_from([1, 2, 4])),
                      grad_bytes_per_param=draw(st.sampled_from([1, 2, 4])))
    scale = st.floats(1e-3, 10.0)
    cluster = ClusterSpec(
        systems=n,
        cs2=CS2Spec(peak_flops_per_s=7.5e15 * draw(scale), io_bytes_per_s=150e9 * draw(scale),
                    # small buffers force back-pressure; large ones prefetch freely
                    weight_buffer_bytes=draw(st.sampled_from([64e3, 1e6, 512e6])),
                    # a tight wafer forces micro-batching or activation recompute
                    sram_bytes=draw(st.sampled_from([40e9, 1.02e9, 1.001e9])),
                    sram_reserved_bytes=1e9 - 1e6 * draw(st.sampled_from([0, 1]))),
        memoryx=MemoryXSpec(stream_bytes_per_s=150e9 * draw(scale), ingest_bytes_per_s=150e9 * draw(scale),
                            optimizer_params_per_s=1e11 * draw(scale), full_duplex=draw(st.booleans())),
        swarmx=SwarmXSpec(fanout=draw(st.sampled_from([2, 4])), port_bytes_per_s=12.5e9 * draw(scale),
                          ports_per_link=draw(st.integers(1, 12)),
                          hop_latency_s=draw(st.sampled_from([0.0, 2e-6, 1e-4]))),
    )
    return job, cluster


def build(job, cluster, **kw):
    try:
        return Simulation(job, cluster, SimOptions(**kw))
    except ConfigError:  # e.g. activations that fit nowhere: not what these tests are about
        assume(False)


def expected_bytes(job, sim):
    """Weight and gradient bytes of the whole run, from the layer specs alone."""
    layers = job.layers()
    m, steps = sim.plan.micro_batches, job.steps
    down = up = 0.0
    for l in layers:
        streams = 1 + int(l.needs_weights_in_backward) + int(sim.plan.recompute and l.kind == "block")
        down += streams * l.params * job.bytes_per_element
        up += l.params * job.grad_bytes_per_param
    return down * m * steps, up * m * steps


def check_conservation(job, sim):
    down, up = expected_bytes(job, sim)
    sx = sim.swarmx
    n_stream, n_grad = len(sim.stream_bytes), len(sim.grad_bytes)
    assert sum(sim.stream_bytes) == pytest.approx(down, rel=REL)
    assert sum(sim.grad_bytes) == pytest.approx(up, rel=REL)
    shared = not sim.cluster.memoryx.full_duplex
    for link in sx.links_down[1:] + ([] if shared else sx.links_down[:1]):
        assert link.bytes == pytest.approx(down, rel=REL), link.name
        assert link.transfers == n_stream, link.name
    for link in sx.links_up[1:] + ([] if shared else sx.links_up[:1]):
        assert link.bytes == pytest.approx(up, rel=REL), link.name
        assert link.transfers == n_grad, link.name
    if shared:  # one half-duplex MemoryX link carries both directions
        assert sim.memoryx.egress.bytes == pytest.approx(down + up, rel=REL)
    # received = sent: every CS-2 got every chunk and used it; MemoryX's buffer accounting is back to 0
    for c in sim.cs2s:
        assert c.arrived == n_stream and c.next_item == sim.n_items
        assert abs(c.held_bytes) <= 1e-6 * max(sim.stream_bytes)
    assert sim.memoryx.inflight_bytes == 0.0
    assert all(d == sim.n_leaves for d in sim.memoryx.done_count)


def check_reduced_once(job, sim):
    def nodes(node):
        yield node
        for child, _ in node.children:
            yield from nodes(child)

    assert all(not n.pending for n in nodes(sx_root(sim)))
    assert all(left == 0 for left in sim.memoryx.grad_chunks_left)
    layers = range(len(sim.schedule.layers))
    assert set(sim.memoryx.mb_done) == {(s, l) for s in range(job.steps) for l in layers}
    assert all(v == sim.plan.micro_batches for v in sim.memoryx.mb_done.values())
    assert set(sim.memoryx.update_end) == {(s, l) for s in range(job.steps) for l in layers}


def sx_root(sim):
    return sim.swarmx.memoryx


def check_bounds(job, cluster, report, sim):
    a = closed_form.step_time(job, cluster)
    t = report.step_time_s
    lower = max(a.compute_s, a.stream_s)
    if cluster.memoryx.full_duplex:
        lower = max(lower, a.gradient_s)
    else:
        # one MemoryX link, both directions, at stream_bytes_per_s: the engine ignores
        # ingest_bytes_per_s then (closed_form.gradient_s still uses it, so it is no bound here)
        lower = max(lower, (sum(sim.stream_bytes) + sum(sim.grad_bytes)) / job.steps
                    / cluster.memoryx.stream_bytes_per_s)
        fabric = min(cluster.swarmx.link_bytes_per_s, cluster.cs2.io_bytes_per_s)
        lower = max(lower, sum(sim.grad_bytes) / job.steps / fabric)
    lower = max(lower, job.model.params / cluster.memoryx.optimizer_params_per_s)
    assert t >= lower * (1 - REL), (t, a)


def _engine_case(outcomes, cfg, prop):
    job, cluster = cfg
    sim = build(job, cluster)
    report = sim.run()
    check_conservation(job, sim)
    check_reduced_once(job, sim)
    check_bounds(job, cluster, report, sim)
    again = build(job, cluster).run()
    assert again.to_dict() == report.to_dict()
    outcomes(prop, "held")


@FAST
@given(cfg=configs())
def test_conservation_reduction_bounds_determinism(outcomes, cfg):
    _engine_case(outcomes, cfg, "invariants: engine")


@pytest.mark.slow
@SLOW
@given(cfg=configs())
def test_conservation_reduction_bounds_determinism_many(outcomes, cfg):
    _engine_case(outcomes, cfg, "invariants: engine (slow)")


@FAST
@given(cfg=configs(max_systems=9))
def test_symmetry_changes_nothing(outcomes, cfg):
    job, cluster = cfg
    full = build(job, cluster, symmetry=False)
    r_full = full.run()
    check_conservation(job, full)
    check_reduced_once(job, full)
    r_sym = build(job, cluster, symmetry=True).run()
    assert r_full.step_time_s == pytest.approx(r_sym.step_time_s, rel=1e-12)
    outcomes("invariants: symmetry", "held")


FIELDS = [("memoryx", "stream_bytes_per_s"), ("memoryx", "ingest_bytes_per_s"),
          ("swarmx", "port_bytes_per_s"), ("cs2", "io_bytes_per_s"), ("memoryx", "optimizer_params_per_s")]


@FAST
@given(cfg=configs(), field=st.sampled_from(FIELDS), factor=st.floats(1.0, 20.0))
def test_more_bandwidth_never_slower(outcomes, cfg, field, factor):
    job, cluster = cfg
    sec, name = field
    spec = getattr(cluster, sec)
    faster = dataclasses.replace(cluster, **{sec: dataclasses.replace(spec, **{name: getattr(spec, name) * factor})})
    base = build(job, cluster).run()
    more = build(job, faster).run()
    assert more.tokens_per_s >= base.tokens_per_s * (1 - REL), (field, factor, base.step_time_s, more.step_time_s)
    outcomes("invariants: monotone bandwidth", "held")


class CountingPayload:
    """Tokens instead of tensors: weights carry (layer, version); a gradient is a multiset of the
    systems that contributed to it."""

    def __init__(self, sim):
        self.sim = sim
        self.version = [0] * len(sim.schedule.layers)
        self.received = collections.Counter()
        self.bad: list = []

    def stream_weights(self, p):
        deps = self.sim.schedule.update_deps[p.layer]
        seen = {d: self.version[d] for d in deps}
        if any(v != p.step for v in seen.values()):
            self.bad.append(("weights of the wrong step", p, seen))
        return (p.layer, p.step)

    def compute(self, system, p, weights):
        if p.streams_weights and weights != (p.layer, p.step):
            self.bad.append(("computed with the wrong weights", p, weights))
        return collections.Counter({system: 1}) if p.phase == "bwd" else None

    def reduce(self, parts):
        total = collections.Counter()
        for part in parts:
            total.update(part)
        return total

    def receive_gradient(self, p, grad):
        self.received[(p.step, p.micro_batch, p.layer)] += 1
        if grad != collections.Counter({i: 1 for i in range(self.sim.cluster.systems)}):
            self.bad.append(("gradient not summed exactly once over systems", p, dict(grad)))

    def update(self, step, layer):
        self.version[layer] = step + 1


@FAST
@given(cfg=configs(max_systems=12))
def test_each_system_gradient_reduced_exactly_once(outcomes, cfg):
    job, cluster = cfg
    try:
        sim = Simulation(job, cluster, SimOptions(), payload=object())
    except ConfigError:
        assume(False)
    sim.payload = payload = CountingPayload(sim)
    sim.run()
    assert not payload.bad, payload.bad[:3]
    bwd = {(p.step, p.micro_batch, p.layer) for p in sim.passes if p.phase == "bwd"}
    assert payload.received == collections.Counter({k: 1 for k in bwd})
    check_reduced_once(job, sim)
    outcomes("invariants: counted reduction", "held")
